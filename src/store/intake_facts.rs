//! What intake reads before it decides (offboarding, held grants, delegations), read for every
//! intake waiting at once.
//!
//! Every `/access` reads these facts before its policy decision. Instead of one query per
//! request (a round trip to a reader connection's thread each, and on PostgreSQL a statement
//! for its backend each), [`Store::intake_facts`] asks through a [`SharedRead`]: the questions
//! waiting at that moment are answered with **one** query. A read is not part of the filing's
//! transaction either way: it sees what was committed when it ran.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::batch::Batch;
use super::reader::Reader;
use super::shared_read::SharedRead;
use super::{Backend, Store, StoreError};

/// At most this many questions share a query.
const MAX_BATCH: usize = 64;

/// A subject's active grants read for a decision: the first this many by expiry.
const HELD_LIMIT: i64 = 200;

/// What intake needs to know from the store before it decides, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeFacts {
    /// Of the people asked about, those who were offboarded (as stored).
    pub offboarded: Vec<String>,
    /// The subject's active grants as `app/entitlement`.
    pub held: Vec<String>,
    /// Approvers away: delegator → (delegate, until).
    pub delegations: HashMap<String, (String, i64)>,
}

impl IntakeFacts {
    /// Whether this person was offboarded.
    pub fn is_offboarded(&self, email: &str) -> bool {
        self.offboarded.iter().any(|o| o == email)
    }
}

/// One intake's question.
#[derive(Debug)]
pub(crate) struct Question {
    people: Vec<String>,
    subject: String,
    approvers: Vec<String>,
    now_ms: i64,
}

/// Intake's questions waiting to be read together.
pub(crate) type FactsQueue = SharedRead<Question, IntakeFacts>;

/// A queue for intake's questions.
pub(crate) fn queue() -> FactsQueue {
    SharedRead::new(MAX_BATCH)
}

impl Store {
    /// Reads what intake checks before deciding: which of `people` were offboarded, what
    /// `subject` holds (active grants, the first 200 by expiry), and which of `approvers`
    /// delegated until after `now_ms`. Concurrent callers share one query (see the module's doc).
    pub async fn intake_facts(
        &self,
        people: &[&str],
        subject: &str,
        approvers: &[&str],
        now_ms: i64,
    ) -> Result<IntakeFacts, StoreError> {
        let question = Question {
            people: people.iter().map(|p| p.to_string()).collect(),
            subject: subject.to_string(),
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            now_ms,
        };
        self.facts
            .ask(question, |qs| read(self.backend, &self.reader, qs))
            .await
    }
}

/// `values` without repeats, in their order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    values.filter(|v| seen.insert(*v)).collect()
}

/// `values` without repeats, padded with `""` (no one's email) to a power of two, so that
/// batches of different sizes share a few statement texts (each is prepared once).
fn padded<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut list = distinct(values);
    list.resize(super::padded_rows(list.len()), "");
    list
}

/// Answers `questions` with one query; one answer per question, in order.
async fn read(
    backend: Backend,
    pool: &Reader,
    questions: Vec<Arc<Question>>,
) -> Result<Vec<IntakeFacts>, StoreError> {
    let people = distinct(
        questions
            .iter()
            .flat_map(|q| q.people.iter().map(String::as_str)),
    );
    let subjects = padded(questions.iter().map(|q| q.subject.as_str()));
    let approvers = distinct(
        questions
            .iter()
            .flat_map(|q| q.approvers.iter().map(String::as_str)),
    );
    let since = questions.iter().map(|q| q.now_ms).min().unwrap_or_default();
    let batch = match backend {
        Backend::Sqlite => sqlite_batch(&people, &subjects, &approvers, since)?,
        Backend::Postgres => postgres_batch(
            &padded(people.into_iter()),
            &subjects,
            &padded(approvers.into_iter()),
            since,
        )?,
    };
    // SQLite: on this thread where it can be (reader.rs); PostgreSQL: on the reader connection
    // of grantry's own where there is one (one read at a time, as the shared read asks).
    let rows: Vec<FactRow> = pool
        .run_pipelined(batch)
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .collect::<Result<_, StoreError>>()?;

    let mut offboarded: HashSet<String> = HashSet::new();
    let mut held: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut away: HashMap<String, (String, i64)> = HashMap::new();
    for (k, a, b, n) in rows {
        match (k.as_str(), b) {
            ("o", _) => {
                offboarded.insert(a);
            }
            ("h", Some(grant)) => held.entry(a).or_default().push((n, grant)),
            ("d", Some(delegate)) => {
                away.insert(a, (delegate, n));
            }
            _ => {}
        }
    }
    for grants in held.values_mut() {
        grants.sort_unstable();
    }
    Ok(questions
        .iter()
        .map(|q| IntakeFacts {
            offboarded: distinct(q.people.iter().map(String::as_str))
                .into_iter()
                .filter(|p| offboarded.contains(*p))
                .map(str::to_string)
                .collect(),
            held: held
                .get(&q.subject)
                .map(|g| g.iter().map(|(_, grant)| grant.clone()).collect())
                .unwrap_or_default(),
            delegations: q
                .approvers
                .iter()
                .filter_map(|a| {
                    let (delegate, until) = away.get(a)?;
                    (*until > q.now_ms).then(|| (a.clone(), (delegate.clone(), *until)))
                })
                .collect(),
        })
        .collect())
}

/// One fact row: its kind (`o`ffboarded, `h`eld, `d`elegated), whose, what, and a number (the
/// held grant's place by expiry, the delegation's end).
type FactRow = (String, String, Option<String>, i64);

/// The statement SQLite reads intake's facts with, for `subjects` subjects: its values are the
/// people and the approvers (JSON arrays), the moment delegations must outlast, then each
/// subject. Public for the test that reads its plan.
pub fn sqlite_statement(subjects: usize) -> String {
    let mut sql = String::from(
        "SELECT 'o', o.email, NULL, 0 FROM json_each(?) AS p CROSS JOIN offboarded AS o \
         ON o.email = p.value \
         UNION ALL SELECT 'd', d.delegator_email, d.delegate_email, d.until_at \
         FROM json_each(?) AS a CROSS JOIN delegations AS d \
         ON d.delegator_email = a.value WHERE d.until_at > ?",
    );
    for _ in 0..subjects {
        // No expiry first (0), as SQLite orders NULL.
        sql.push_str(&format!(
            " UNION ALL SELECT * FROM (SELECT 'h', subject_email, app || '/' || entitlement, \
             COALESCE(expires_at, 0) FROM grants WHERE subject_email = ? AND state = 'active' \
             ORDER BY expires_at, id LIMIT {HELD_LIMIT})"
        ));
    }
    sql
}

/// SQLite's read: no temporary b-tree for any part (each would be a pager opened and closed per
/// read). People and approvers are JSON arrays walked by `json_each`, each looked up by its key;
/// each subject's first grants by expiry come from `grants_subject` in its order (subject, state,
/// expiry, id), `LIMIT` stopping the walk.
fn sqlite_batch(
    people: &[&str],
    subjects: &[&str],
    approvers: &[&str],
    since: i64,
) -> Result<Batch, StoreError> {
    let json = |list: &[&str]| {
        serde_json::to_string(list).map_err(|e| StoreError::Corrupt(format!("a list as JSON: {e}")))
    };
    let mut b = Batch::new(Backend::Sqlite);
    b.push(&sqlite_statement(subjects.len()));
    b.bind(json(people)?)?;
    b.bind(json(approvers)?)?;
    b.bind(since)?;
    for s in subjects {
        b.bind(*s)?;
    }
    Ok(b)
}

/// PostgreSQL's read: one statement, its lists as `IN` lists (padded to a power of two by the
/// caller: a few statement texts, each prepared once), a subject's first grants numbered by expiry.
fn postgres_batch(
    people: &[&str],
    subjects: &[&str],
    approvers: &[&str],
    since: i64,
) -> Result<Batch, StoreError> {
    let marks = |k: usize| vec!["?"; k].join(",");
    let sql = format!(
        "SELECT 'o' AS k, email AS a, CAST(NULL AS TEXT) AS b, CAST(0 AS BIGINT) AS n \
         FROM offboarded WHERE email IN ({}) \
         UNION ALL SELECT 'h', subject_email, a, rn FROM (SELECT subject_email, \
         app || '/' || entitlement AS a, \
         CAST(ROW_NUMBER() OVER (PARTITION BY subject_email ORDER BY expires_at, id) AS BIGINT) AS rn \
         FROM grants WHERE subject_email IN ({}) AND state = 'active') held WHERE rn <= {HELD_LIMIT} \
         UNION ALL SELECT 'd', delegator_email, delegate_email, until_at FROM delegations \
         WHERE delegator_email IN ({}) AND until_at > ?",
        marks(people.len()),
        marks(subjects.len()),
        marks(approvers.len()),
    );
    let mut b = Batch::new(Backend::Postgres);
    b.push(&sql);
    for v in people.iter().chain(subjects).chain(approvers) {
        b.bind(*v)?;
    }
    b.bind(since)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_lose_repeats_and_pad_to_a_power_of_two() {
        assert_eq!(super::padded(["a", "b", "a"].into_iter()), ["a", "b"]);
        assert_eq!(
            super::padded(["a", "b", "c"].into_iter()),
            ["a", "b", "c", ""]
        );
        assert_eq!(super::padded([].into_iter()), [""]);
    }
}
