//! The process's life: serve HTTP and run the background tasks; on shutdown, drain, stop
//! accepting, finish what is in hand, and exit within a bound.
//!
//! Order on shutdown: `/readyz` turns 503 at once (load balancers stop routing here) and requests
//! are still served for `server.shutdown_drain_secs`; then the listener closes (new connections
//! are refused), in-flight requests finish, workers finish the job in hand and claim no more.
//! At `server.shutdown_timeout_secs` after the signal, whatever still runs is stopped and the jobs
//! it held are put back in the queue for another replica (handlers are idempotent, so a job cut
//! off after its effect changes nothing when it runs again).

use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use crate::{http, jobs, App};

pub(crate) async fn run(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut background = jobs::spawn_all(app.clone(), stop_rx.clone());
    background
        .handles
        .push(tokio::spawn(crate::jobs::directory_sync::run(
            app.clone(),
            stop_rx.clone(),
        )));
    if app.on_call.is_on() {
        // Every process that takes requests keeps its own snapshot (the intake reads it).
        background.handles.push(tokio::spawn(crate::oncall::run(
            app.clone(),
            stop_rx.clone(),
        )));
    }
    if app.config.slack.mode == "socket" && app.chat("slack").is_some() {
        let token = app.slack_app_token.clone();
        background
            .handles
            .push(tokio::spawn(http::slack::socket::run(
                app.clone(),
                token,
                stop_rx,
            )));
    }
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(app.clone()))
        .with_graceful_shutdown(async move {
            let _ = close_rx.await;
        })
        .into_future();
    let mut server = tokio::spawn(server);

    let early = tokio::select! {
        _ = shutdown => None,
        r = &mut server => Some(r),
    };
    let cfg = &app.config.server;
    let deadline = Instant::now() + Duration::from_secs(cfg.shutdown_timeout_secs);
    app.draining.store(true, Ordering::SeqCst);
    if early.is_none() && cfg.shutdown_drain_secs > 0 {
        tracing::info!(
            drain_secs = cfg.shutdown_drain_secs,
            "shutting down: /readyz answers 503; still serving while traffic moves away"
        );
        let drain_end = Instant::now() + Duration::from_secs(cfg.shutdown_drain_secs);
        tokio::time::sleep_until(drain_end.min(deadline)).await;
    }
    tracing::info!("shutting down: no new connections; finishing requests and jobs in hand");
    let _ = close_tx.send(());
    let _ = stop_tx.send(true);

    let result = match early {
        Some(r) => r,
        None => match timeout_at(deadline, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("shutdown bound reached: cutting off requests still in flight (unacknowledged: Slack retries them, and a retry finds what was stored)");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    let mut cut_off = 0;
    for h in background.handles.iter_mut() {
        if timeout_at(deadline, &mut *h).await.is_err() {
            h.abort();
            let _ = (&mut *h).await;
            cut_off += 1;
        }
    }
    if cut_off > 0 {
        match background.release_leases(&app).await {
            Ok(n) => tracing::warn!(
                tasks = cut_off,
                released = n,
                "shutdown bound reached: jobs in hand released to other workers"
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not release jobs in hand; their leases will run out")
            }
        }
    }
    tracing::info!("shutdown complete");
    match result {
        Ok(r) => r,
        Err(join) => Err(std::io::Error::other(join)),
    }
}
