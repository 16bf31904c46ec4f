//! Statements sent together, each with its values. On SQLite's own connections
//! ([`super::direct`]) they run one after another where the caller is; through sqlx (inside a
//! transaction) they go as one query of several statements with their values bound in order (one
//! round trip to sqlx's SQLite thread instead of one per statement, each a wake-up of that thread
//! and of the caller's). On PostgreSQL's filer connection ([`super::pg_direct`]) each statement
//! is prepared once and the batch is sent as one pipeline of its executions. Through sqlx, whose
//! extended protocol takes one statement with parameters per round trip, the values are written
//! into the query as typed literals (`E'…'::text`, `42::int8`, `NULL::text`, see [`PgParam`]) and
//! the whole batch goes as one simple query; a batch that fails midway fails whole, as its
//! transaction does. A batch of one statement (a read, say) goes prepared instead, its values
//! bound: sqlx keeps it prepared on the connection, so PostgreSQL plans it once there.
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
    /// PostgreSQL: every statement with its `?`s and its typed values.
    pg: Vec<PgStatement>,
    /// Whether a job is enqueued by it (its transaction then wakes the workers on commit).
    enqueues: bool,
}

impl Batch {
    pub(crate) fn new(backend: Backend) -> Self {
        Batch {
            backend,
            statements: Vec::new(),
            pg: Vec::new(),
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
        self.statements.is_empty() && self.pg.is_empty()
    }

    /// How many statements were added.
    pub(crate) fn len(&self) -> usize {
        self.statements.len() + self.pg.len()
    }

    /// PostgreSQL: the statements added from the `from`th on, which only write (none returns
    /// rows that are read), each made a `WITH` item of the next: `WITH fused_1 AS (…), fused_2
    /// AS (…) <last>`. PostgreSQL runs every such item once, to its end, whether read or not; so
    /// the statement writes what they wrote one by one, as long as no two of them change the
    /// same row. One execution instead of several: on the filer's connection one answer, and one
    /// flush of PostgreSQL's, instead of one each ([`super::pg_direct`]). A statement with a
    /// `WITH` of its own ends a group (data-modifying items must be at the top level): its items
    /// follow the group's. SQLite runs a batch where it is: nothing changes.
    pub(crate) fn fuse_writes(&mut self, from: usize) {
        if self.backend != Backend::Postgres || from >= self.pg.len() {
            return;
        }
        let mut rest = self.pg.split_off(from).into_iter().peekable();
        let mut group = Vec::new();
        while let Some(s) = rest.next() {
            if s.sql.starts_with("WITH ") || rest.peek().is_none() {
                self.pg.push(fused(std::mem::take(&mut group), s));
            } else {
                group.push(s);
            }
        }
    }

    /// PostgreSQL: the whole batch as **one** statement, which is its own transaction where no
    /// `BEGIN` came before it: the first statement becomes a `WITH` item named `first`
    /// (`MATERIALIZED`: run once, when first read), the second the statement's query (which
    /// reads `first`), and every later one a `WITH` item that only writes (its own `WITH` items
    /// hoisted before it). PostgreSQL runs the query first, then every item the query does not
    /// read, each once, to its end; so all of them follow the first's row locks, as they would
    /// in a transaction of separate statements. No two may change the same row, except that a
    /// later one may update a row the first locked. One execution and one answer instead of one
    /// each, and no `BEGIN` or `COMMIT` to send ([`super::pg_direct`]). SQLite: nothing changes.
    pub(crate) fn fuse_as_one(&mut self, first: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres || self.pg.len() < 2 {
            return Ok(());
        }
        let mut rest = std::mem::take(&mut self.pg).into_iter();
        let (Some(lock), Some(main)) = (rest.next(), rest.next()) else {
            return Ok(());
        };
        let mut sql = format!("WITH {first} AS MATERIALIZED ({}), ", lock.sql);
        let mut params = lock.params;
        let mut placeholders = lock.placeholders;
        for (k, s) in rest.enumerate() {
            use std::fmt::Write;
            let body = match s.sql.strip_prefix("WITH ") {
                Some(with) => {
                    let (items, body) = split_with(with).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "a statement's WITH items do not end: {}",
                            s.sql
                        ))
                    })?;
                    let _ = write!(sql, "{items}, ");
                    body
                }
                None => s.sql.as_str(),
            };
            let _ = write!(sql, "fused_{} AS ({body}), ", k + 1);
            placeholders += s.placeholders;
            params.extend(s.params);
        }
        // The last item's comma becomes the space before the query.
        sql.truncate(sql.len() - 2);
        sql.push(' ');
        sql.push_str(&main.sql);
        placeholders += main.placeholders;
        params.extend(main.params);
        self.pg.push(PgStatement {
            sql,
            placeholders,
            params,
        });
        Ok(())
    }

    /// Adds a statement written with `?` placeholders; bind its values next, in order.
    pub(crate) fn push(&mut self, sql: &str) {
        match self.backend {
            Backend::Sqlite => self.statements.push(Statement {
                sql: sql.to_string(),
                values: Vec::new(),
            }),
            Backend::Postgres => self.pg.push(PgStatement {
                sql: sql.to_string(),
                placeholders: sql.matches('?').count(),
                params: Vec::new(),
            }),
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
                let Some(last) = self
                    .pg
                    .last_mut()
                    .filter(|s| s.params.len() < s.placeholders)
                else {
                    return Err(StoreError::Corrupt(
                        "more values bound than the statement has placeholders".into(),
                    ));
                };
                last.params.push(value.pg_param()?);
                Ok(())
            }
        }
    }

    /// SQLite: the statements with their values, for [`super::direct`].
    pub(crate) fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// PostgreSQL: the statements with their values, for [`super::pg_direct`]; an error if a
    /// placeholder was left without a value.
    pub(crate) fn pg_statements(&self) -> Result<&[PgStatement], StoreError> {
        if self.pg.iter().any(|s| s.params.len() != s.placeholders) {
            return Err(StoreError::Corrupt(
                "a statement's placeholder was left without a value".into(),
            ));
        }
        Ok(&self.pg)
    }

    /// [`Batch::pg_statements`], taken.
    pub(crate) fn into_pg_statements(self) -> Result<Vec<PgStatement>, StoreError> {
        self.pg_statements()?;
        Ok(self.pg)
    }

    /// The query for sqlx with the values it binds (in order), and whether sqlx is to send it
    /// as a simple query (PostgreSQL's several statements, their values written in as
    /// literals). SQLite: every statement, each value bound. PostgreSQL, one statement alone:
    /// prepared, its values bound (sqlx keeps it prepared on the connection, so it is parsed
    /// and planned once there, not on every read).
    fn finish(self) -> Result<(String, AnyArguments, bool), StoreError> {
        let mut args = AnyArguments::default();
        let encode = |e| StoreError::Database(sqlx::Error::Encode(e));
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
                .map_err(encode)?;
            }
            return Ok((sql, args, false));
        }
        if let [statement] = self.pg_statements()? {
            for p in statement.params() {
                match p.clone() {
                    PgParam::Text(t) => args.add(t),
                    PgParam::Int8(n) => args.add(n),
                    PgParam::Int4(n) => args.add(n),
                    PgParam::Bool(b) => args.add(b),
                }
                .map_err(encode)?;
            }
            return Ok((statement.prepared_sql(), args, false));
        }
        let mut sql = String::new();
        for (n, statement) in self.pg_statements()?.iter().enumerate() {
            if n > 0 {
                sql.push_str(";\n");
            }
            statement.write_with_literals(&mut sql);
        }
        Ok((sql, args, true))
    }

    /// Runs the statements on a sqlx connection; returns the rows they return, in order.
    pub(crate) async fn fetch(self, conn: &mut AnyConnection) -> Result<Vec<BatchRow>, StoreError> {
        let (sql, args, simple) = self.finish()?;
        let rows = if simple {
            conn.fetch_all(sqlx::AssertSqlSafe(sql)).await?
        } else {
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .fetch_all(&mut *conn)
                .await?
        };
        Ok(rows.into_iter().map(BatchRow::Any).collect())
    }

    /// Runs the statements, returning nothing.
    pub(crate) async fn execute(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        let (sql, args, simple) = self.finish()?;
        if simple {
            conn.execute(sqlx::AssertSqlSafe(sql)).await?;
        } else {
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// `group` as `WITH` items of `last`, one statement ([`Batch::fuse_writes`]).
fn fused(group: Vec<PgStatement>, last: PgStatement) -> PgStatement {
    if group.is_empty() {
        return last;
    }
    let mut sql = String::from("WITH ");
    let mut params = Vec::new();
    let mut placeholders = 0;
    for (k, s) in group.into_iter().enumerate() {
        use std::fmt::Write;
        let _ = write!(sql, "fused_{} AS ({}), ", k + 1, s.sql);
        placeholders += s.placeholders;
        params.extend(s.params);
    }
    match last.sql.strip_prefix("WITH ") {
        Some(items) => sql.push_str(items),
        None => {
            // The last item's comma becomes the space before the statement.
            sql.truncate(sql.len() - 2);
            sql.push(' ');
            sql.push_str(&last.sql);
        }
    }
    PgStatement {
        sql,
        placeholders: placeholders + last.placeholders,
        params: {
            params.extend(last.params);
            params
        },
    }
}

/// A statement's `WITH` items (what follows its `WITH `) and its query: the items end at the
/// first `)` that closes a parenthesis opened at depth zero and is not followed by a comma.
/// Quoted text is skipped. `None` if they do not end.
fn split_with(with: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in with.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let after = with[i + 1..].trim_start();
                    if !after.starts_with(',') {
                        return Some((&with[..=i], after));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// One SQLite statement of a [`Batch`] and its values, in order.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value>,
}

/// One PostgreSQL statement of a [`Batch`] and its values, in order.
pub(crate) struct PgStatement {
    /// With `?` placeholders.
    sql: String,
    placeholders: usize,
    params: Vec<PgParam>,
}

impl PgStatement {
    /// Its values, in order.
    pub(crate) fn params(&self) -> &[PgParam] {
        &self.params
    }

    /// Its values, taken.
    pub(crate) fn into_params(self) -> Vec<PgParam> {
        self.params
    }

    /// The statement to prepare: each `?` as a parameter cast to its value's type (`$1::text`),
    /// so the same statement with other values (or `NULL`s) is the same text.
    pub(crate) fn prepared_sql(&self) -> String {
        let mut out = String::with_capacity(self.sql.len() + 12 * self.params.len());
        self.render(&mut out, |out, n, p| {
            use std::fmt::Write;
            let _ = write!(out, "${n}::{}", p.type_name());
        });
        out
    }

    /// Appends the statement with its values written in as literals.
    fn write_with_literals(&self, out: &mut String) {
        self.render(out, |out, _, p| p.write_literal(out));
    }

    /// Appends the text to `out` with the `n`th `?` (from 1) replaced by what `value` writes
    /// for it.
    fn render(&self, out: &mut String, mut value: impl FnMut(&mut String, usize, &PgParam)) {
        let mut parts = self.sql.split('?');
        out.push_str(parts.next().unwrap_or_default());
        for (n, (part, p)) in parts.zip(&self.params).enumerate() {
            value(out, n + 1, p);
            out.push_str(part);
        }
    }
}

/// A row a [`Batch`] returned: from sqlx, from [`super::direct`] as SQLite's values, or from
/// [`super::pg_direct`].
pub(crate) enum BatchRow {
    Any(AnyRow),
    Sqlite(Vec<Value>),
    Pg(tokio_postgres::Row),
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
            BatchRow::Pg(row) => row.try_get(i).map_err(|e| {
                StoreError::Corrupt(format!("a batch's column {i} is not {}: {e}", T::EXPECTED))
            }),
        }
    }
}

/// A type a [`BatchRow`]'s column is read as.
pub(crate) trait Column:
    Sized + for<'r> Decode<'r, Any> + Type<Any> + for<'r> tokio_postgres::types::FromSql<'r>
{
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

/// A value a [`Batch`] can take: on SQLite the value bound; on PostgreSQL a [`PgParam`] of the
/// type sqlx would have bound it as (text, int8, int4 or bool), so a statement means the same
/// whichever way it is sent.
pub(crate) trait Literal {
    /// A `NULL` of the type it is bound as on PostgreSQL.
    const PG_NULL: PgParam;

    /// The value PostgreSQL is given; text holding a NUL, which PostgreSQL's text cannot hold,
    /// is refused.
    fn pg_param(self) -> Result<PgParam, StoreError>;

    /// The value SQLite is given (as sqlx would bind it: a bool as 0 or 1); an owned string is
    /// moved, not copied.
    fn sqlite_value(self) -> Value;
}

/// A PostgreSQL value with its type. Written into a query ([`PgParam::write_literal`]) it is a
/// literal of that type: text an escape string (`E'…'`: `'` and `\` doubled, nothing else
/// special), which reads the same whatever `standard_conforming_strings` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgParam {
    Text(Option<String>),
    Int8(Option<i64>),
    Int4(Option<i32>),
    Bool(Option<bool>),
}

impl PgParam {
    /// Its type's name, as a cast writes it.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            PgParam::Text(_) => "text",
            PgParam::Int8(_) => "int8",
            PgParam::Int4(_) => "int4",
            PgParam::Bool(_) => "bool",
        }
    }

    /// Appends it as a typed literal (`E'…'::text`, `42::int8`, `NULL::text`, `TRUE`).
    fn write_literal(&self, out: &mut String) {
        match self {
            PgParam::Text(None)
            | PgParam::Int8(None)
            | PgParam::Int4(None)
            | PgParam::Bool(None) => {
                out.push_str("NULL::");
                out.push_str(self.type_name());
            }
            PgParam::Text(Some(t)) => {
                out.reserve(t.len() + 10);
                out.push_str("E'");
                for c in t.chars() {
                    match c {
                        '\'' => out.push_str("''"),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push_str("'::text");
            }
            PgParam::Int8(Some(n)) => write_integer(out, *n, "int8"),
            PgParam::Int4(Some(n)) => write_integer(out, i64::from(*n), "int4"),
            PgParam::Bool(Some(b)) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        }
    }
}

impl tokio_postgres::types::ToSql for PgParam {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgParam::Text(v) => v.to_sql_checked(ty, out),
            PgParam::Int8(v) => v.to_sql_checked(ty, out),
            PgParam::Int4(v) => v.to_sql_checked(ty, out),
            PgParam::Bool(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <String as tokio_postgres::types::ToSql>::accepts(ty)
            || <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <i32 as tokio_postgres::types::ToSql>::accepts(ty)
            || <bool as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

fn text_param(t: String) -> Result<PgParam, StoreError> {
    if t.contains('\0') {
        return Err(StoreError::Database(sqlx::Error::Encode(
            "a text value holds a NUL character, which PostgreSQL cannot store".into(),
        )));
    }
    Ok(PgParam::Text(Some(t)))
}

impl Literal for &str {
    const PG_NULL: PgParam = PgParam::Text(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        text_param(self.to_string())
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Literal for String {
    const PG_NULL: PgParam = PgParam::Text(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        text_param(self)
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self)
    }
}

impl Literal for &String {
    const PG_NULL: PgParam = PgParam::Text(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        text_param(self.clone())
    }

    fn sqlite_value(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Literal for i64 {
    const PG_NULL: PgParam = PgParam::Int8(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        Ok(PgParam::Int8(Some(self)))
    }

    fn sqlite_value(self) -> Value {
        Value::Integer(self)
    }
}

impl Literal for i32 {
    const PG_NULL: PgParam = PgParam::Int4(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        Ok(PgParam::Int4(Some(self)))
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
    const PG_NULL: PgParam = PgParam::Bool(None);

    fn pg_param(self) -> Result<PgParam, StoreError> {
        Ok(PgParam::Bool(Some(self)))
    }

    fn sqlite_value(self) -> Value {
        Value::Integer(i64::from(self))
    }
}

impl<T: Literal> Literal for Option<T> {
    const PG_NULL: PgParam = T::PG_NULL;

    fn pg_param(self) -> Result<PgParam, StoreError> {
        match self {
            Some(v) => v.pg_param(),
            None => Ok(T::PG_NULL),
        }
    }

    fn sqlite_value(self) -> Value {
        self.map_or(Value::Null, Literal::sqlite_value)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Arguments;

    use super::{Batch, Literal, PgParam};
    use crate::store::Backend;

    #[test]
    fn writes_fuse_into_with_items_of_the_next_statement_and_keep_their_values_in_order() {
        let mut b = Batch::new(Backend::Postgres);
        b.push("SELECT seq FROM audit_head WHERE id = ? FOR UPDATE");
        b.bind(1i64).unwrap();
        let from = b.len();
        b.push("INSERT INTO decisions (request_id) VALUES (?)");
        b.bind("R-1").unwrap();
        b.push("UPDATE audit_head SET seq = ? WHERE id = 1");
        b.bind(7i64).unwrap();
        b.push("WITH a AS (INSERT INTO approvals (request_id) VALUES (?) RETURNING id) INSERT INTO jobs (payload) SELECT ? FROM a");
        b.bind("R-1").unwrap();
        b.bind("card").unwrap();
        b.push("INSERT INTO jobs (payload) VALUES (?)");
        b.bind("provision").unwrap();
        b.fuse_writes(from);
        let texts: Vec<String> = b
            .pg_statements()
            .unwrap()
            .iter()
            .map(|s| s.prepared_sql())
            .collect();
        assert_eq!(
            texts,
            [
                "SELECT seq FROM audit_head WHERE id = $1::int8 FOR UPDATE",
                "WITH fused_1 AS (INSERT INTO decisions (request_id) VALUES ($1::text)), \
                 fused_2 AS (UPDATE audit_head SET seq = $2::int8 WHERE id = 1), \
                 a AS (INSERT INTO approvals (request_id) VALUES ($3::text) RETURNING id) \
                 INSERT INTO jobs (payload) SELECT $4::text FROM a",
                "INSERT INTO jobs (payload) VALUES ($1::text)",
            ]
        );
        let mut fused = String::new();
        b.pg_statements().unwrap()[1].write_with_literals(&mut fused);
        assert!(fused
            .contains("VALUES (E'R-1'::text)), fused_2 AS (UPDATE audit_head SET seq = 7::int8"));
        assert!(fused.ends_with("SELECT E'card'::text FROM a"), "{fused}");

        // SQLite runs a batch where it is: its statements stay as they are.
        let mut b = Batch::new(Backend::Sqlite);
        b.push("INSERT INTO decisions (request_id) VALUES (?)");
        b.push("UPDATE audit_head SET seq = ? WHERE id = 1");
        b.fuse_writes(0);
        assert_eq!(b.statements().len(), 2);
    }

    #[test]
    fn a_batch_fused_as_one_reads_its_first_statement_queries_its_second_and_writes_the_rest() {
        let mut b = Batch::new(Backend::Postgres);
        b.push("SELECT seq FROM audit_head WHERE id = ? FOR UPDATE");
        b.bind(1i64).unwrap();
        b.push("INSERT INTO requests (id) SELECT * FROM (VALUES (?)) AS v WHERE EXISTS (SELECT FROM head) RETURNING id");
        b.bind("R-1").unwrap();
        b.push("INSERT INTO decisions (request_id, reasons) VALUES (?, '(not a parenthesis')");
        b.bind("R-1").unwrap();
        b.push(
            "WITH a AS (INSERT INTO approvals (request_id) VALUES (?) RETURNING id), \
                b AS (SELECT id FROM a) INSERT INTO jobs (payload) SELECT ? FROM b",
        );
        b.bind("R-1").unwrap();
        b.bind("card").unwrap();
        b.push("UPDATE audit_head SET seq = ? WHERE id = 1");
        b.bind(7i64).unwrap();
        b.fuse_as_one("head").unwrap();
        let statements = b.pg_statements().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].prepared_sql(),
            "WITH head AS MATERIALIZED (SELECT seq FROM audit_head WHERE id = $1::int8 FOR UPDATE), \
             fused_1 AS (INSERT INTO decisions (request_id, reasons) VALUES ($2::text, '(not a parenthesis')), \
             a AS (INSERT INTO approvals (request_id) VALUES ($3::text) RETURNING id), \
             b AS (SELECT id FROM a), \
             fused_2 AS (INSERT INTO jobs (payload) SELECT $4::text FROM b), \
             fused_3 AS (UPDATE audit_head SET seq = $5::int8 WHERE id = 1) \
             INSERT INTO requests (id) SELECT * FROM (VALUES ($6::text)) AS v \
             WHERE EXISTS (SELECT FROM head) RETURNING id"
        );
        // Its values in the text's order.
        let expected: Vec<PgParam> = vec![
            1i64.pg_param().unwrap(),
            "R-1".pg_param().unwrap(),
            "R-1".pg_param().unwrap(),
            "card".pg_param().unwrap(),
            7i64.pg_param().unwrap(),
            "R-1".pg_param().unwrap(),
        ];
        assert_eq!(statements[0].params(), &expected[..]);

        // Items that never end are refused, not sent.
        let mut b = Batch::new(Backend::Postgres);
        b.push("SELECT 1");
        b.push("SELECT 2");
        b.push("WITH a AS (SELECT 1");
        assert!(b.fuse_as_one("head").is_err());
    }

    fn literal(v: impl Literal) -> String {
        let mut out = String::new();
        v.pg_param().unwrap().write_literal(&mut out);
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
        assert!("a\0b".pg_param().is_err());
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
        let (sql, _, simple) = update_then_select().finish().unwrap();
        assert_eq!(
            sql,
            "UPDATE t SET a = E'?'::text, b = NULL::int8 WHERE id = 7::int8;\nSELECT 1"
        );
        assert!(simple, "several statements go as one simple query");
    }

    #[test]
    fn postgres_sends_a_lone_statement_prepared_with_its_values_bound() {
        let mut b = Batch::new(Backend::Postgres);
        b.push("SELECT a FROM t WHERE id = ? AND b = ?");
        b.bind("x'y").unwrap();
        b.bind(None::<i64>).unwrap();
        let (sql, args, simple) = b.finish().unwrap();
        assert!(!simple);
        assert_eq!(sql, "SELECT a FROM t WHERE id = $1::text AND b = $2::int8");
        assert_eq!(args.len(), 2, "both values bound, none written in");
    }

    #[test]
    fn postgres_prepares_each_placeholder_as_a_parameter_of_its_values_type() {
        let b = update_then_select();
        let statements = b.pg_statements().unwrap();
        assert_eq!(
            statements[0].prepared_sql(),
            "UPDATE t SET a = $1::text, b = $2::int8 WHERE id = $3::int8"
        );
        assert_eq!(
            statements[0].params(),
            &[
                PgParam::Text(Some("?".into())),
                PgParam::Int8(None),
                PgParam::Int8(Some(7))
            ]
        );
        assert_eq!(statements[1].prepared_sql(), "SELECT 1");
        let mut b = Batch::new(Backend::Postgres);
        b.push("SELECT ? + ?");
        b.bind(1_i32).unwrap();
        assert!(
            b.pg_statements().is_err(),
            "a placeholder left without a value"
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
        let (sql, args, simple) = b.finish().unwrap();
        assert_eq!(sql, "UPDATE t SET a = ? WHERE id = ?;\nSELECT 1");
        assert!(!simple);
        assert_eq!(args.len(), 2);
    }
}
