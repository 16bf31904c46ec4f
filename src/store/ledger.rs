//! Reads for the admin pages: requests and grants by filter, newest first, one page at a time.
//! Every filter is a bound parameter; the same statements run on both backends.

use super::grants::GrantRecord;
use super::{Store, StoreError};
use crate::domain::AccessRequest;

/// Which requests to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Part of the requester's or the subject's email (case-insensitive).
    pub person: Option<String>,
    /// The app, exactly.
    pub app: Option<String>,
    /// The request state, exactly (`pending_approval`, `active`, …).
    pub state: Option<String>,
    /// Opened at or after (ms).
    pub from_ms: Option<i64>,
    /// Opened before (ms).
    pub to_ms: Option<i64>,
}

/// Which grants to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Part of the holder's email (case-insensitive).
    pub person: Option<String>,
    /// The app, exactly.
    pub app: Option<String>,
    /// `active`, `revoking` or `revoked`.
    pub state: Option<String>,
    /// Only active grants ending in `[now, until)`: (now ms, until ms).
    pub expiring: Option<(i64, i64)>,
}

/// One page of rows, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub more: bool,
}

/// `%part%` for LIKE, with LIKE's own wildcards escaped (escape character `\`).
fn contains_pattern(part: &str) -> String {
    let mut p = String::from("%");
    for c in part.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A WHERE clause built from `$n` placeholders and the values bound to them, in order.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    texts: Vec<(usize, String)>,
    ints: Vec<(usize, i64)>,
    n: usize,
}

impl Where {
    fn text(&mut self, clause: impl Fn(usize) -> String, v: String) {
        self.n += 1;
        self.clauses.push(clause(self.n));
        self.texts.push((self.n, v));
    }
    fn int(&mut self, clause: impl Fn(usize) -> String, v: i64) {
        self.n += 1;
        self.clauses.push(clause(self.n));
        self.ints.push((self.n, v));
    }
    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
    /// The values in placeholder order (`$1`, `$2`, …).
    fn values(&self) -> Vec<Value> {
        let mut v: Vec<(usize, Value)> = self
            .texts
            .iter()
            .map(|(i, s)| (*i, Value::Text(s.clone())))
            .chain(self.ints.iter().map(|(i, x)| (*i, Value::Int(*x))))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, v)| v).collect()
    }
}

enum Value {
    Text(String),
    Int(i64),
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Store {
    /// Requests matching `f`, newest first: `limit` rows from `offset`.
    pub async fn ledger_requests(
        &self,
        f: &RequestFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let mut w = Where::default();
        if let Some(p) = nonempty(&f.person) {
            w.text(
                |n| {
                    format!(
                        "(LOWER(requester_email) LIKE ${n} ESCAPE '\\' OR LOWER(subject_email) LIKE ${n} ESCAPE '\\')"
                    )
                },
                contains_pattern(p),
            );
        }
        if let Some(a) = nonempty(&f.app) {
            w.text(|n| format!("app = ${n}"), a.to_string());
        }
        if let Some(s) = nonempty(&f.state) {
            w.text(|n| format!("state = ${n}"), s.to_string());
        }
        if let Some(t) = f.from_ms {
            w.int(|n| format!("created_at >= ${n}"), t);
        }
        if let Some(t) = f.to_ms {
            w.int(|n| format!("created_at < ${n}"), t);
        }
        let sql = format!(
            "SELECT {} FROM requests {} ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}",
            super::requests::COLUMNS,
            w.sql(),
            w.n + 1,
            w.n + 2
        );
        let mut q = sqlx::query_as::<_, super::requests::Row>(sqlx::AssertSqlSafe(sql));
        for v in w.values() {
            q = match v {
                Value::Text(s) => q.bind(s),
                Value::Int(i) => q.bind(i),
            };
        }
        let found = q
            .bind(limit + 1)
            .bind(offset.max(0))
            .fetch_all(&mut *self.read_conn().await?)
            .await?;
        let more = found.len() as i64 > limit;
        let rows = found
            .into_iter()
            .take(limit as usize)
            .map(AccessRequest::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { rows, more })
    }

    /// Grants matching `f`, newest first (expiring: soonest to end first): `limit` rows from `offset`.
    pub async fn ledger_grants(
        &self,
        f: &GrantFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Page<GrantRecord>, StoreError> {
        let mut w = Where::default();
        if let Some(p) = nonempty(&f.person) {
            w.text(
                |n| format!("LOWER(subject_email) LIKE ${n} ESCAPE '\\'"),
                contains_pattern(p),
            );
        }
        if let Some(a) = nonempty(&f.app) {
            w.text(|n| format!("app = ${n}"), a.to_string());
        }
        if let Some(s) = nonempty(&f.state) {
            w.text(|n| format!("state = ${n}"), s.to_string());
        }
        let order = if let Some((now, until)) = f.expiring {
            w.clauses
                .push("state = 'active' AND expires_at IS NOT NULL".into());
            w.int(|n| format!("expires_at >= ${n}"), now);
            w.int(|n| format!("expires_at < ${n}"), until);
            "expires_at, id"
        } else {
            "granted_at DESC, id DESC"
        };
        let sql = format!(
            "SELECT id, request_id, subject_email, app, entitlement, connector, account_id, target, \
             receipt, state, approved_by, granted_at, expires_at, revoked_at, revoked_by, revoke_reason \
             FROM grants {} ORDER BY {order} LIMIT ${} OFFSET ${}",
            w.sql(),
            w.n + 1,
            w.n + 2
        );
        let mut q = sqlx::query_as::<_, GrantRecord>(sqlx::AssertSqlSafe(sql));
        for v in w.values() {
            q = match v {
                Value::Text(s) => q.bind(s),
                Value::Int(i) => q.bind(i),
            };
        }
        let mut rows = q
            .bind(limit + 1)
            .bind(offset.max(0))
            .fetch_all(&mut *self.read_conn().await?)
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(Page { rows, more })
    }

    /// The audit event just before `seq` in the chain (`None` for the first).
    pub async fn audit_event_before(
        &self,
        seq: i64,
    ) -> Result<Option<super::audit::AuditRecord>, StoreError> {
        Ok(self
            .audit_events(seq - 2, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == seq - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(contains_pattern(" Al_i%ce "), "%al\\_i\\%ce%");
    }
}
