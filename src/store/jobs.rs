//! The durable job queue: enqueue inside a change's transaction, claim with a lease, retry
//! with backoff, give up into `failed` with the error kept.
//!
//! Claiming is one `UPDATE … RETURNING` on the single writer connection, so two workers never
//! hold the same job; a worker that dies leaves its lease to run out, and the job is claimed again.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::batch::Batch;
use super::{Store, StoreError, Tx};

/// Work that runs after the ack, outside any request handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Send one approver their card.
    PostApprovalCard { approval_id: i64 },
    /// Show the decision on every approver's card.
    UpdateApprovalCards { request_id: String },
    /// Grant the approved access through the app's connector.
    Provision { request_id: String },
    /// Remove a grant's access through its connector. `by` and `reason` say who asked and why
    /// (absent: the grant expired).
    Revoke {
        grant_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Tell a grant's holder it ends soon, with an Extend button.
    WarnExpiry { grant_id: String },
    /// Ask one owner about one grant in an access review (Keep / Revoke).
    PostReviewCard {
        item_id: String,
        owner_email: String,
    },
    /// Show a review item's decision on every owner's card.
    UpdateReviewCards { item_id: String },
    /// Tell someone something: `to` is a user (a DM) or a channel; with `ephemeral_channel`,
    /// `to` is the user who alone sees it there.
    Notify {
        platform: String,
        to: String,
        text: String,
        ephemeral_channel: Option<String>,
    },
    /// Refresh a person's home page (Slack App Home).
    PublishHome { platform: String, user: String },
    /// Post a manual fulfilment task to IT's channel.
    PostFulfilmentTask { task_id: String },
    /// Show a manual task's outcome on its message.
    UpdateFulfilmentTask { task_id: String },
    /// Start the owners' after-the-fact review of a break-glass grant.
    BreakGlassReview { request_id: String },
    /// Send a person the guided request form as a message (Teams' Adaptive Card form).
    SendRequestForm { platform: String, to: String },
    /// Post IT's digest of `[from_ms, to_ms)` in `channel`; its chart follows as
    /// [`Job::PostDigestChart`].
    PostDigest {
        platform: String,
        channel: String,
        from_ms: i64,
        to_ms: i64,
    },
    /// Write a request's progress to its service-desk ticket (create it first if needed).
    SyncTicket { request_id: String },
    /// Post the chart of a digest (platforms without images skip it).
    PostDigestChart {
        platform: String,
        channel: String,
        from_ms: i64,
        to_ms: i64,
    },
}

impl Job {
    /// The stored kind, for listings and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::PostApprovalCard { .. } => "post_approval_card",
            Job::UpdateApprovalCards { .. } => "update_approval_cards",
            Job::Provision { .. } => "provision",
            Job::Revoke { .. } => "revoke",
            Job::WarnExpiry { .. } => "warn_expiry",
            Job::PostReviewCard { .. } => "post_review_card",
            Job::UpdateReviewCards { .. } => "update_review_cards",
            Job::Notify { .. } => "notify",
            Job::PublishHome { .. } => "publish_home",
            Job::PostFulfilmentTask { .. } => "post_fulfilment_task",
            Job::UpdateFulfilmentTask { .. } => "update_fulfilment_task",
            Job::SendRequestForm { .. } => "send_request_form",
            Job::BreakGlassReview { .. } => "break_glass_review",
            Job::PostDigest { .. } => "post_digest",
            Job::PostDigestChart { .. } => "post_digest_chart",
            Job::SyncTicket { .. } => "sync_ticket",
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, FromRow)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Tries so far, including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

impl JobRecord {
    /// The job itself.
    pub fn job(&self) -> Result<Job, StoreError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("job {} payload: {e}", self.id)))
    }
}

/// A job as listed (any state).
#[derive(Debug, Clone, FromRow)]
pub struct JobListing {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at: i64,
}

impl Tx {
    /// Enqueues a job, runnable at `run_at_ms`; it becomes visible when this transaction commits.
    pub async fn enqueue(
        &mut self,
        job: &Job,
        run_at_ms: i64,
        max_attempts: i64,
    ) -> Result<i64, StoreError> {
        let payload = serde_json::to_string(job)
            .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?;
        let id = sqlx::query_scalar(
            "INSERT INTO jobs (kind, payload, max_attempts, run_at, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6) RETURNING id",
        )
        .bind(job.kind())
        .bind(payload)
        .bind(max_attempts)
        .bind(run_at_ms)
        .bind(run_at_ms)
        .bind(run_at_ms)
        .fetch_one(self.conn())
        .await?;
        self.enqueued = true;
        Ok(id)
    }
}

impl Tx {
    /// Enqueues several jobs with one insert, all runnable at `run_at_ms`.
    pub async fn enqueue_many(
        &mut self,
        jobs: &[Job],
        run_at_ms: i64,
        max_attempts: i64,
    ) -> Result<(), StoreError> {
        let rows: Vec<(&Job, i64, i64)> =
            jobs.iter().map(|j| (j, run_at_ms, max_attempts)).collect();
        self.enqueue_rows(&rows).await
    }

    /// Enqueues jobs, each `(job, run_at_ms, max_attempts)`, with as few inserts as the
    /// parameter limit allows; ids are given in order.
    pub(crate) async fn enqueue_rows(
        &mut self,
        jobs: &[(&Job, i64, i64)],
    ) -> Result<(), StoreError> {
        let mut b = Batch::new(self.backend());
        push_enqueue_rows(&mut b, jobs)?;
        if b.enqueues() {
            b.execute(self.conn()).await?;
            self.enqueued = true;
        }
        Ok(())
    }
}

/// Adds the inserts of jobs, each `(job, run_at_ms, max_attempts)`, to `b` (one statement per
/// 1,000; ids are given in order).
pub(crate) fn push_enqueue_rows(
    b: &mut Batch,
    jobs: &[(&Job, i64, i64)],
) -> Result<(), StoreError> {
    for chunk in jobs.chunks(1_000) {
        b.mark_enqueues();
        b.push_values(
            "INSERT INTO jobs (kind, payload, max_attempts, run_at, created_at, updated_at) VALUES ",
            chunk.len(),
            6,
            "",
        );
        for (job, run_at_ms, max_attempts) in chunk {
            let payload = serde_json::to_string(job)
                .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?;
            b.bind(job.kind())?;
            b.bind(payload)?;
            b.bind(*max_attempts)?;
            b.bind(*run_at_ms)?;
            b.bind(*run_at_ms)?;
            b.bind(*run_at_ms)?;
        }
    }
    Ok(())
}

/// Adds a [`Job::PostApprovalCard`] for every step-0 approval of each request in `requests`,
/// each `(request id, run_at_ms, max_attempts)`, to `b`: one insert that takes the approvals'
/// ids from their rows (inserted earlier in the same batch), so no round trip reads them back.
/// Cards are enqueued in approval order.
pub(crate) fn push_enqueue_first_cards(
    b: &mut Batch,
    requests: &[(&str, i64, i64)],
) -> Result<(), StoreError> {
    let kind = Job::PostApprovalCard { approval_id: 0 }.kind();
    let payload = match b.backend() {
        super::Backend::Sqlite => "json_object('kind', ?, 'approval_id', a.id)",
        super::Backend::Postgres => "json_build_object('kind', ?::text, 'approval_id', a.id)::text",
    };
    for chunk in requests.chunks(1_000) {
        b.mark_enqueues();
        let head = format!(
            "INSERT INTO jobs (kind, payload, max_attempts, run_at, created_at, updated_at) \
             SELECT ?, {payload}, v.column2, v.column3, v.column3, v.column3 FROM (VALUES "
        );
        b.push_values(
            &head,
            chunk.len(),
            3,
            ") AS v JOIN approvals a ON a.request_id = v.column1 AND a.step = 0 ORDER BY a.id",
        );
        bind_cards(b, kind, chunk)?;
    }
    Ok(())
}

/// Binds the cards' kind (the column's, then the payload's) and each carded request's values,
/// `(request id, max_attempts, run_at_ms)` in its `VALUES` row.
fn bind_cards(b: &mut Batch, kind: &str, carded: &[(&str, i64, i64)]) -> Result<(), StoreError> {
    b.bind(kind)?;
    b.bind(kind)?;
    for (request_id, run_at_ms, max_attempts) in carded {
        b.bind(*request_id)?;
        b.bind(*max_attempts)?;
        b.bind(*run_at_ms)?;
    }
    Ok(())
}

/// PostgreSQL: new step-0 `approvals` and a [`Job::PostApprovalCard`] for each, in one statement
/// (each `carded` is `(request id, run_at_ms, max_attempts)`, every approval's request among
/// them). The cards take their approvals' ids from the insert's `RETURNING` (a data-modifying
/// `WITH`), so no plan reads the `approvals` table: [`push_enqueue_first_cards`]'s join with it,
/// prepared while the table was nearly empty, kept a plan that scanned all of it (26 ms a call on
/// average once it had grown, where the table is never analysed; docs/benchmarks.md).
pub(crate) fn push_insert_approvals_with_cards(
    b: &mut Batch,
    approvals: &[super::approvals::NewApproval<'_>],
    carded: &[(&str, i64, i64)],
) -> Result<(), StoreError> {
    let kind = Job::PostApprovalCard { approval_id: 0 }.kind();
    b.mark_enqueues();
    let head = format!(
        "WITH a AS ({}) \
         INSERT INTO jobs (kind, payload, max_attempts, run_at, created_at, updated_at) \
         SELECT ?, json_build_object('kind', ?::text, 'approval_id', a.id)::text, \
         v.column2, v.column3, v.column3, v.column3 FROM (VALUES ",
        super::approvals::insert_sql(approvals.len(), " RETURNING id, request_id")
    );
    b.push_values(
        &head,
        carded.len(),
        3,
        ") AS v JOIN a ON a.request_id = v.column1 ORDER BY a.id",
    );
    for a in approvals {
        super::approvals::bind_new_approval(b, a)?;
    }
    bind_cards(b, kind, carded)
}

impl Store {
    /// Enqueues a job on its own (when no other change goes with it), runnable now.
    pub async fn enqueue_now(
        &self,
        job: &Job,
        now_ms: i64,
        max_attempts: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = tx.enqueue(job, now_ms, max_attempts).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claims the oldest runnable job (queued and due, or running with an expired lease).
    pub async fn claim_job(
        &self,
        now_ms: i64,
        lease_ms: i64,
        worker: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let sql = match self.backend {
            // One UPDATE on the single writer connection: no other writer can interleave.
            super::Backend::Sqlite => {
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1, \
                 locked_by = $2, updated_at = $3 \
                 WHERE id = (SELECT id FROM ( \
                     SELECT id, run_at AS due FROM jobs WHERE state = 'queued' AND run_at <= $3 \
                     UNION ALL \
                     SELECT id, locked_until AS due FROM jobs WHERE state = 'running' AND locked_until < $3 \
                 ) ORDER BY due, id LIMIT 1) \
                 RETURNING id, kind, payload, attempts, max_attempts"
            }
            // Replicas claim concurrently: SKIP LOCKED hands each job to one of them.
            super::Backend::Postgres => {
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1, \
                 locked_by = $2, updated_at = $3 \
                 WHERE id = (SELECT id FROM jobs \
                     WHERE (state = 'queued' AND run_at <= $3) OR (state = 'running' AND locked_until < $3) \
                     ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, kind, payload, attempts, max_attempts"
            }
        };
        Ok(sqlx::query_as(sql)
            .bind(now_ms + lease_ms)
            .bind(worker)
            .bind(now_ms)
            .fetch_optional(&mut *self.write_conn().await?)
            .await?)
    }

    /// Marks a claimed job done (only if this worker still holds it).
    pub async fn complete_job(&self, id: i64, worker: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET state = 'done', locked_until = NULL, last_error = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND locked_by = $3",
        )
        .bind(now_ms)
        .bind(id)
        .bind(worker)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    /// Puts a claimed job back to run again at `run_at_ms`, keeping the error.
    pub async fn retry_job(
        &self,
        id: i64,
        worker: &str,
        run_at_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $1, locked_until = NULL, locked_by = NULL, \
             last_error = $2, updated_at = $3 WHERE id = $4 AND state = 'running' AND locked_by = $5",
        )
        .bind(run_at_ms)
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .bind(worker)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    /// Gives a job up: `failed`, with the error kept for IT.
    pub async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET state = 'failed', locked_until = NULL, last_error = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'running' AND locked_by = $4",
        )
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .bind(worker)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    /// Puts the jobs these workers hold back to `queued`, runnable now, for another worker to take
    /// at once (a shutdown interrupted them). The interrupted try is not counted. Returns how many.
    pub async fn release_jobs(&self, workers: &[String], now_ms: i64) -> Result<u64, StoreError> {
        let mut released = 0;
        for w in workers {
            released += sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = $1, updated_at = $1, locked_until = NULL, \
                 locked_by = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
                 WHERE state = 'running' AND locked_by = $2",
            )
            .bind(now_ms)
            .bind(w)
            .execute(&mut *self.write_conn().await?)
            .await?
            .rows_affected();
        }
        Ok(released)
    }

    /// How many jobs there are, by state and kind.
    pub async fn count_jobs(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT state, kind, COUNT(*) FROM jobs GROUP BY state, kind ORDER BY state, kind",
        )
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }

    /// When the oldest job that is due and still waiting became due.
    pub async fn oldest_queued_job(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND attempts = 0",
        )
        .fetch_one(&mut *self.read_conn().await?)
        .await?)
    }

    /// When the next queued job becomes due, if any.
    pub async fn next_job_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = 'queued'")
                .fetch_one(&mut *self.read_conn().await?)
                .await?,
        )
    }

    /// Jobs, newest first, optionally of one state.
    pub async fn jobs(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobListing>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, kind, payload, state, attempts, last_error, run_at FROM jobs \
             WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit)
        .fetch_all(&mut *self.read_conn().await?)
        .await?)
    }
}
