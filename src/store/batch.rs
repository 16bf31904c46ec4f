//! Statements sent together. On SQLite a batch is one query of several statements: one round
//! trip to sqlx's SQLite thread instead of one per statement (each a wake-up of that thread and
//! of the caller's). On PostgreSQL, whose extended protocol takes one statement with parameters
//! at a time, the statements run one after another on the same connection.
//!
//! Statements are written with `?` placeholders and bound in order; PostgreSQL gets them
//! numbered (`$1`, `$2`, …, from 1 in each statement).

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, Encode, Type};

use super::{Backend, StoreError};

/// Statements to run together, in order, inside the caller's transaction.
pub(crate) struct Batch {
    backend: Backend,
    /// SQLite: one entry holding every statement. PostgreSQL: one entry per statement.
    statements: Vec<(String, AnyArguments)>,
    /// Whether a job is enqueued by it (its transaction then wakes the workers on commit).
    enqueues: bool,
}

impl Batch {
    pub(crate) fn new(backend: Backend) -> Self {
        Batch {
            backend,
            statements: Vec::new(),
            enqueues: false,
        }
    }

    /// Notes that a statement added enqueues a job.
    pub(crate) fn mark_enqueues(&mut self) {
        self.enqueues = true;
    }

    /// Whether a statement added enqueues a job.
    pub(crate) fn enqueues(&self) -> bool {
        self.enqueues
    }

    /// Which database the batch is for.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Adds a multi-row statement: `head`, `rows` groups of `cols` placeholders, then `tail`.
    pub(crate) fn push_values(&mut self, head: &str, rows: usize, cols: usize, tail: &str) {
        self.push(&super::values_sql(Backend::Sqlite, head, rows, cols, tail));
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds a statement written with `?` placeholders; bind its values next, in order.
    pub(crate) fn push(&mut self, sql: &str) {
        match (self.backend, self.statements.last_mut()) {
            (Backend::Sqlite, Some((all, _))) => {
                all.push_str(";\n");
                all.push_str(sql);
            }
            (Backend::Sqlite, None) => self
                .statements
                .push((sql.to_string(), AnyArguments::default())),
            (Backend::Postgres, _) => self
                .statements
                .push((numbered(sql), AnyArguments::default())),
        }
    }

    /// Binds the next placeholder of the statement added last.
    pub(crate) fn bind<'t, T>(&mut self, value: T) -> Result<(), StoreError>
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        let Some((_, args)) = self.statements.last_mut() else {
            return Err(StoreError::Corrupt(
                "a value bound before any statement".into(),
            ));
        };
        args.add(value)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
    }

    /// Runs the statements; returns the rows they return, in order.
    pub(crate) async fn fetch(self, conn: &mut AnyConnection) -> Result<Vec<AnyRow>, StoreError> {
        let mut rows = Vec::new();
        for (sql, args) in self.statements {
            rows.extend(
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        Ok(rows)
    }

    /// Runs the statements, returning nothing.
    pub(crate) async fn execute(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        for (sql, args) in self.statements {
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// `?` placeholders numbered `$1`, `$2`, … (our statements have no `?` in literals).
fn numbered(sql: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            let _ = write!(out, "${n}");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_gets_numbered_placeholders_from_one_in_each_statement() {
        assert_eq!(
            super::numbered("UPDATE t SET a = ?, b = ? WHERE id = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3"
        );
    }
}
