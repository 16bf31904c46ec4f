//! Workers: claim a job, run it, record the outcome; retry with exponential backoff and jitter
//! (never sooner than a server's `Retry-After`); give up into `failed` after `max_attempts`,
//! with the error kept and the people concerned told. Also the expiry sweeper.
//!
//! Workers wake the moment a transaction that enqueued a job commits, and poll as a fallback
//! for jobs another replica enqueued or that became due.

mod handlers;
pub mod reconcile;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chat::ChatError;
use crate::connectors::ConnectorError;
use crate::store::{JobRecord, StoreError};
use crate::App;

/// How a job run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later (after `retry_after` at the soonest, when given).
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help.
    #[error("{message}")]
    Permanent { message: String },
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Transient {
            message: e.to_string(),
            retry_after: None,
        }
    }
}

impl From<ChatError> for JobError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Transient {
                message,
                retry_after,
            } => JobError::Transient {
                message,
                retry_after,
            },
            ChatError::Permanent { message } => JobError::Permanent { message },
        }
    }
}

impl From<ConnectorError> for JobError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Transient {
                message,
                retry_after,
            } => JobError::Transient {
                message,
                retry_after,
            },
            ConnectorError::Permanent { message } => JobError::Permanent { message },
        }
    }
}

impl JobError {
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        JobError::Permanent {
            message: message.into(),
        }
    }
}

/// The delay before try `attempts + 1`: base·2^(attempts−1), capped, with jitter in [½, 1],
/// and never shorter than `retry_after`.
pub fn backoff_ms(base_ms: i64, max_ms: i64, attempts: i64, retry_after: Option<Duration>) -> i64 {
    let exp = base_ms
        .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
        .min(max_ms);
    let jittered = rand::rng().random_range(exp / 2..=exp.max(1));
    let floor = retry_after.map(|d| d.as_millis() as i64).unwrap_or(0);
    jittered.max(floor)
}

/// Starts the workers and the sweeper; they stop when `stop` turns true.
pub fn spawn_all(app: Arc<App>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    let instance: u32 = rand::rng().random();
    for n in 0..app.config.jobs.workers {
        let worker = format!("{}-{instance:08x}-{n}", std::process::id());
        handles.push(tokio::spawn(work(app.clone(), worker, stop.clone())));
    }
    if app.config.jobs.workers > 0 {
        handles.push(tokio::spawn(sweeper::run(app.clone(), stop)));
    }
    handles
}

async fn work(app: Arc<App>, worker: String, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.jobs.poll_interval_ms.max(10));
    let notify = app.store.jobs_ready().clone();
    while !*stop.borrow() {
        // Register for the wake-up before looking, so a commit in between is not missed.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match run_one(&app, &worker).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::error!(worker, error = %e, "job queue unavailable"),
        }
        let wait = match app.store.next_job_due().await {
            Ok(Some(due)) => {
                Duration::from_millis((due - app.now_ms()).clamp(0, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        };
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Claims and runs one job. Returns whether there was one.
pub async fn run_one(app: &App, worker: &str) -> Result<bool, StoreError> {
    let cfg = &app.config.jobs;
    let Some(rec) = app
        .store
        .claim_job(app.now_ms(), cfg.lease_secs * 1000, worker)
        .await?
    else {
        return Ok(false);
    };
    let outcome = match rec.job() {
        Ok(job) => handlers::run(app, &job).await,
        Err(e) => Err(JobError::permanent(e.to_string())),
    };
    let now = app.now_ms();
    match outcome {
        Ok(()) => app.store.complete_job(rec.id, worker, now).await?,
        Err(JobError::Transient {
            message,
            retry_after,
        }) if rec.attempts < rec.max_attempts => {
            let delay = backoff_ms(
                cfg.backoff_base_ms,
                cfg.backoff_max_ms,
                rec.attempts,
                retry_after,
            );
            tracing::warn!(job = rec.id, kind = %rec.kind, attempt = rec.attempts, delay_ms = delay, error = %message, "job failed; will retry");
            app.store
                .retry_job(rec.id, worker, now + delay, &message, now)
                .await?;
        }
        Err(e) => give_up(app, &rec, worker, &e.to_string()).await?,
    }
    Ok(true)
}

async fn give_up(app: &App, rec: &JobRecord, worker: &str, error: &str) -> Result<(), StoreError> {
    tracing::error!(job = rec.id, kind = %rec.kind, attempts = rec.attempts, error, "job failed for good");
    app.store
        .fail_job(rec.id, worker, error, app.now_ms())
        .await?;
    if let Ok(job) = rec.job() {
        handlers::on_give_up(app, &job, error).await?;
    }
    Ok(())
}
