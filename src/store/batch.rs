//! Statements sent together. On SQLite each statement keeps its values: on SQLite's own
//! connections ([`super::direct`]) they run one after another where the caller is; through sqlx
//! (inside a transaction) they go as one query of several statements with their values bound in
//! order (one round trip to sqlx's SQLite thread instead of one per statement, each a wake-up of
//! that thread and of the caller's). PostgreSQL's extended protocol
//! takes one statement with parameters per round trip, so there the values are written into the
//! query as typed literals (`E'…'::text`, `42::int8`, `NULL::text`, see [`Literal`]) and the whole
//! batch goes as one simple query; a batch that fails midway fails whole, as its transaction does.
//!
//! Statements are written with `?` placeholders (none of ours has a `?` anywhere else) and bound
//! in order.

use rusqlite::types::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, Decode, Executor, Row, Type};

use super::{Backend, StoreError};

/// Statements to run together, in order, inside the caller's transaction.
pub(crate) struct Batch {
    backend: Backend,
    /// SQLite: every statement with its `?`s and its values.
    statements: Vec<Statement>,
    /// PostgreSQL: every statement, `;`-separated, with its values written in, up to the
    /// statement added last's next `?`.
    sql: String,
    /// PostgreSQL: what is left of the statement added last after its values so far.
    pending: String,
    /// Whether a job is enqueued by it (its transaction then wakes the workers on commit).
    enqueues: bool,
}

impl Batch {
    pub(crate) fn new(backend: Backend) -> Self {
        Batch {
            backend,
            statements: Vec::new(),
            sql: String::new(),
            pending: String::new(),
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
        self.statements.is_empty() && self.sql.is_empty() && self.pending.is_empty()
    }

    /// Adds a statement written with `?` placeholders; bind its values next, in order.
    pub(crate) fn push(&mut self, sql: &str) {
        match self.backend {
            Backend::Sqlite => self.statements.push(Statement {
                sql: sql.to_string(),
                values: Vec::new(),
            }),
            Backend::Postgres => {
                self.flush_pending();
                if !self.sql.is_empty() {
                    self.sql.push_str(";\n");
                }
                self.pending.push_str(sql);
            }
        }
    }

    /// Binds the next placeholder of the statement added last.
    pub(crate) fn bind<T: Literal>(&mut self, value: T) -> Result<(), StoreError> {
        if self.is_empty() {
            return Err(StoreError::Corrupt(
                "a value bound before any statement".into(),
            ));
        }
        match self.backend {
            Backend::Sqlite => {
                if let Some(last) = self.statements.last_mut() {
                    last.values.push(value.sqlite_value());
                }
                Ok(())
            }
            Backend::Postgres => {
                let Some(at) = self.pending.find('?') else {
                    return Err(StoreError::Corrupt(
                        "more values bound than the statement has placeholders".into(),
                    ));
                };
                self.sql.push_str(&self.pending[..at]);
                value.write_literal(&mut self.sql)?;
                self.pending.drain(..=at);
                Ok(())
            }
        }
    }

    /// PostgreSQL: the statement added last's text after its last value, into the query.
    fn flush_pending(&mut self) {
        self.sql.push_str(&self.pending);
        self.pending.clear();
    }

    /// SQLite: the statements with their values, for [`super::direct`].
    pub(crate) fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The query for sqlx, and SQLite's values for it (bound in order).
    fn finish(mut self) -> Result<(String, AnyArguments), StoreError> {
        let mut args = AnyArguments::default();
        if self.backend == Backend::Sqlite {
            let sql: Vec<&str> = self.statements.iter().map(|s| s.sql.as_str()).collect();
            let sql = sql.join(";\n");
            for v in self.statements.into_iter().flat_map(|s| s.values) {
                match v {
                    Value::Null => args.add(None::<i64>),
                    Value::Integer(n) => args.add(n),
                    Value::Real(x) => args.add(x),
                    Value::Text(t) => args.add(t),
                    Value::Blob(b) => args.add(b),
                }
                .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
            }
            return Ok((sql, args));
        }
        if self.pending.contains('?') {
            return Err(StoreError::Corrupt(
                "a statement's placeholder was left without a value".into(),
            ));
        }
        self.flush_pending();
        Ok((self.sql, args))
    }

    /// Runs the statements on a sqlx connection; returns the rows they return, in order.
    pub(crate) async fn fetch(self, conn: &mut AnyConnection) -> Result<Vec<BatchRow>, StoreError> {
        let backend = self.backend;
        let (sql, args) = self.finish()?;
        let rows = match backend {
            Backend::Sqlite => {
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Backend::Postgres => conn.fetch_all(sqlx::AssertSqlSafe(sql)).await?,
        };
        Ok(rows.into_iter().map(BatchRow::Any).collect())
    }

    /// Runs the statements, returning nothing.
    pub(crate) async fn execute(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        let backend = self.backend;
        let (sql, args) = self.finish()?;
        match backend {
            Backend::Sqlite => {
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Postgres => {
                conn.execute(sqlx::AssertSqlSafe(sql)).await?;
            }
        }
        Ok(())
    }
}

/// One SQLite statement of a [`Batch`] and its values, in order.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value>,
}

/// A row a [`Batch`] returned: from sqlx, or from [`super::direct`] as SQLite's values.
pub(crate) enum BatchRow {
    Any(AnyRow),
    Sqlite(Vec<Value>),
}

impl BatchRow {
    /// The value of column `i`.
    pub(crate) fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        match self {
            BatchRow::Any(row) => Ok(row.try_get(i)?),
            BatchRow::Sqlite(values) => {
                let v = values.get(i).ok_or_else(|| {
                    StoreError::Corrupt(format!("a batch's row has no column {i}"))
                })?;
                T::from_sqlite(v).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "a batch's column {i} holds {:?}, not {}",
                        v.data_type(),
                        T::EXPECTED
                    ))
                })
            }
        }
    }
}

/// A type a [`BatchRow`]'s column is read as.
pub(crate) trait Column: Sized + for<'r> Decode<'r, Any> + Type<Any> {
    /// What it is called in an error.
    const EXPECTED: &'static str;

    /// It from SQLite's value, if that is one.
    fn from_sqlite(v: &Value) -> Option<Self>;
}

impl Column for String {
    const EXPECTED: &'static str = "text";

    fn from_sqlite(v: &Value) -> Option<Self> {
        match v {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl Column for i64 {
    const EXPECTED: &'static str = "an integer";

    fn from_sqlite(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

impl<T: Column> Column for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;

    fn from_sqlite(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_sqlite(v).map(Some),
        }
    }
}

/// A value a [`Batch`] can take. On SQLite, the value bound. On PostgreSQL, as it reads it
/// written into a query: a literal of the
/// type sqlx would have bound it as (text, int8, int4 or bool), so a statement means the same
/// either way. Text is an escape string (`E'…'`: `'` and `\` doubled, nothing else special),
/// which reads the same whatever `standard_conforming_strings` says; a NUL, which PostgreSQL's
/// text cannot hold (bound, it is refused too), is refused here.
pub(crate) trait Literal {
    /// The PostgreSQL type it is bound as, for a `NULL` of it.
    const PG_TYPE: &'static str;

    /// Appends the literal to `out`.
    fn write_literal(&self, out: &mut String) -> Result<(), StoreError>;

    /// The value SQLite is given (as sqlx would bind it: a bool as 0 or 1); an owned string is
    /// moved, not copied.
    fn sqlite_value(self) -> Value;
}

impl Literal for &str {
    const PG_TYPE: &'static str = "text";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        if self.contains('\0') {
            return Err(StoreError::Database(sqlx::Error::Encode(
                "a text value holds a NUL character, which PostgreSQL cannot store".into(),
            )));
        }
        out.reserve(self.len() + 10);
        out.push_str("E'");
        for c in self.chars() {
            match c {
                '\'' => out.push_str("''"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push_str("'::text");
        Ok(())
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Literal for String {
    const PG_TYPE: &'static str = "text";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        self.as_str().write_literal(out)
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self)
    }
}

impl Literal for &String {
    const PG_TYPE: &'static str = "text";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        self.as_str().write_literal(out)
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Literal for i64 {
    const PG_TYPE: &'static str = "int8";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        write_integer(out, *self, Self::PG_TYPE);
        Ok(())
    }

    fn sqlite_value(self) -> Value {
        Value::Integer(self)
    }
}

impl Literal for i32 {
    const PG_TYPE: &'static str = "int4";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        write_integer(out, i64::from(*self), Self::PG_TYPE);
        Ok(())
    }

    fn sqlite_value(self) -> Value {
        Value::Integer(i64::from(self))
    }
}

/// An integer as a literal of `ty`, parenthesised when negative (`-9223372036854775808::int8`
/// would cast before negating).
fn write_integer(out: &mut String, n: i64, ty: &str) {
    use std::fmt::Write;
    let _ = if n < 0 {
        write!(out, "({n})::{ty}")
    } else {
        write!(out, "{n}::{ty}")
    };
}

impl Literal for bool {
    const PG_TYPE: &'static str = "bool";

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        out.push_str(if *self { "TRUE" } else { "FALSE" });
        Ok(())
    }

    fn sqlite_value(self) -> Value {
        Value::Integer(i64::from(self))
    }
}

impl<T: Literal> Literal for Option<T> {
    const PG_TYPE: &'static str = T::PG_TYPE;

    fn write_literal(&self, out: &mut String) -> Result<(), StoreError> {
        match self {
            Some(v) => v.write_literal(out),
            None => {
                out.push_str("NULL::");
                out.push_str(T::PG_TYPE);
                Ok(())
            }
        }
    }

    fn sqlite_value(self) -> Value {
        self.map_or(Value::Null, Literal::sqlite_value)
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, Literal};
    use crate::store::Backend;

    fn literal(v: impl Literal) -> String {
        let mut out = String::new();
        v.write_literal(&mut out).unwrap();
        out
    }

    #[test]
    fn text_is_an_escape_string_with_quotes_and_backslashes_doubled() {
        assert_eq!(literal("plain"), "E'plain'::text");
        assert_eq!(
            literal(r"it's \'; DROP TABLE requests; --"),
            r"E'it''s \\''; DROP TABLE requests; --'::text"
        );
        assert_eq!(literal("é ✓ ?\n$1"), "E'é ✓ ?\n$1'::text");
        assert!("a\0b".write_literal(&mut String::new()).is_err());
    }

    #[test]
    fn numbers_and_nulls_keep_the_type_they_would_be_bound_as() {
        assert_eq!(literal(42_i64), "42::int8");
        assert_eq!(literal(i64::MIN), "(-9223372036854775808)::int8");
        assert_eq!(literal(-3_i32), "(-3)::int4");
        assert_eq!(literal(true), "TRUE");
        assert_eq!(literal(None::<i64>), "NULL::int8");
        assert_eq!(literal(None::<&str>), "NULL::text");
        assert_eq!(literal(Some("x")), "E'x'::text");
    }

    /// An update with its three values, then a statement with none.
    fn update_then_select() -> Batch {
        let mut b = Batch::new(Backend::Postgres);
        b.push("UPDATE t SET a = ?, b = ? WHERE id = ?");
        b.bind("?").unwrap();
        b.bind(None::<i64>).unwrap();
        b.bind(7_i64).unwrap();
        b.push("SELECT 1");
        b
    }

    #[test]
    fn postgres_gets_one_query_with_the_values_in_place_of_the_placeholders() {
        let mut b = update_then_select();
        assert!(b.bind(1_i64).is_err(), "a value with no placeholder left");
        b.push("DELETE FROM t WHERE id = ?");
        assert!(b.finish().is_err(), "a placeholder left without a value");
        let (sql, _) = update_then_select().finish().unwrap();
        assert_eq!(
            sql,
            "UPDATE t SET a = E'?'::text, b = NULL::int8 WHERE id = 7::int8;\nSELECT 1"
        );
    }

    #[test]
    fn sqlite_gets_one_query_with_its_placeholders() {
        let mut b = Batch::new(Backend::Sqlite);
        assert!(b.bind(1_i64).is_err(), "a value before any statement");
        b.push("UPDATE t SET a = ? WHERE id = ?");
        b.bind("x").unwrap();
        b.bind(7_i64).unwrap();
        b.push("SELECT 1");
        let (sql, _) = b.finish().unwrap();
        assert_eq!(sql, "UPDATE t SET a = ? WHERE id = ?;\nSELECT 1");
    }
}
