//! Workers: claim a job, run it, record the outcome; retry with exponential backoff and jitter
//! (never sooner than a server's `Retry-After`); give up into `failed` after `max_attempts`,
//! with the error kept and the people concerned told. Also the expiry sweeper.
//!
//! Workers wake the moment a transaction that enqueued a job commits, and poll as a fallback
//! for jobs another replica enqueued or that became due.

pub mod directory_sync;
mod handlers;
pub mod reconcile;
pub mod sweeper;
mod tickets;

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

/// The background tasks of one process, and the name its workers lease jobs under.
pub struct Background {
    pub handles: Vec<JoinHandle<()>>,
    /// `locked_by` of every job this process's workers claim is `<instance>-<n>`.
    pub instance: String,
}

impl Background {
    /// Puts the jobs this process's workers still hold back in the queue, for another replica to
    /// take at once (after their tasks were stopped). Returns how many.
    pub async fn release_leases(&self, app: &App) -> Result<u64, StoreError> {
        let names: Vec<String> = (0..app.config.jobs.workers)
            .map(|n| format!("{}-{n}", self.instance))
            .collect();
        app.store.release_jobs(&names, app.now_ms()).await
    }
}

/// This process's name in `jobs.locked_by`: the host (the pod's name in Kubernetes), the pid
/// and a random part, so IT can tell which replica holds a job.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 63)
        .unwrap_or_else(|| "grantry".into());
    let random: u32 = rand::rng().random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

/// Starts the workers and the sweeper; they stop when `stop` turns true, a worker after the job
/// in hand.
pub fn spawn_all(app: Arc<App>, stop: watch::Receiver<bool>) -> Background {
    let mut handles = Vec::new();
    let instance = instance_name();
    for n in 0..app.config.jobs.workers {
        let worker = format!("{instance}-{n}");
        handles.push(tokio::spawn(work(app.clone(), worker, stop.clone())));
    }
    if app.config.jobs.workers > 0 {
        handles.push(tokio::spawn(sweeper::run(app.clone(), stop)));
    }
    Background { handles, instance }
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
        Ok(()) => {
            crate::metrics::job_run(&rec.kind, "done");
            app.store.complete_job(rec.id, worker, now).await?
        }
        Err(JobError::Transient {
            message,
            retry_after,
        }) if rec.attempts < rec.max_attempts => {
            crate::metrics::job_run(&rec.kind, "retry");
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
        Err(e) => {
            crate::metrics::job_run(&rec.kind, "failed");
            give_up(app, &rec, worker, &e.to_string()).await?
        }
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
