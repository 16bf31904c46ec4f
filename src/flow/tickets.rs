//! Service-desk tickets, the flow side: which requests' tickets are behind (queued by the
//! sweeper, written by `Job::SyncTicket`), and a ticket filed in the desk becoming a request.

use super::intake::{self, IntakeReply, Submission};
use super::FlowError;
use crate::chat::command::{self, AccessCommand};
use crate::servicedesk::InboundTicket;
use crate::store::filing::TicketLink;
use crate::store::Job;
use crate::App;

/// How far back the sweeper looks for requests whose ticket is behind.
const LOOKBACK_MS: i64 = 30 * 86_400_000;

/// Tries of one ticket write: with the queue's backoff (at most 15 minutes apart by default)
/// a desk may be down for about two days before IT is told and the write is given up.
const DESK_ATTEMPTS: i64 = 200;

/// Queues a ticket sync for every request of an app with a service desk (or filed from one)
/// whose ticket has not been queued for its current state. Returns how many were queued.
pub async fn queue_due(app: &App) -> Result<usize, FlowError> {
    if app.service_desks.is_empty() {
        return Ok(0);
    }
    let apps: Vec<String> = app
        .catalog
        .apps
        .iter()
        .filter(|a| a.service_desk.is_some())
        .map(|a| a.id.clone())
        .collect();
    let now = app.now_ms();
    let due = app.store.tickets_due(&apps, now - LOOKBACK_MS, 200).await?;
    let mut queued = 0;
    for d in due {
        let desk = match app.catalog.app(&d.app).and_then(|a| a.service_desk.clone()) {
            Some(desk) => desk,
            // Filed from a desk: its row already names it.
            None => match app.store.ticket(&d.request_id).await? {
                Some(t) => t.desk,
                None => continue,
            },
        };
        let mut tx = app.store.begin().await?;
        if tx.claim_ticket_sync(&d.request_id, &desk, now).await? {
            let job = Job::SyncTicket {
                request_id: d.request_id.clone(),
            };
            tx.enqueue(&job, now, DESK_ATTEMPTS.max(app.config.jobs.max_attempts))
                .await?;
            queued += 1;
        }
        tx.commit().await?;
    }
    Ok(queued)
}

/// Files the request a desk's ticket asks for. `Err` says why it cannot be filed (nothing is
/// stored); a retried webhook files nothing new.
pub async fn file_inbound(
    app: &App,
    desk: &str,
    t: InboundTicket,
) -> Result<Result<IntakeReply, String>, FlowError> {
    let Some(person) = app.directory.by_email(&t.requester_email) else {
        return Ok(Err(format!(
            "{} is not in grantry's directory",
            t.requester_email
        )));
    };
    let platform = app.default_platform();
    let Some(chat_id) = app.directory.chat_id(platform, person) else {
        return Ok(Err(format!(
            "{} has no {platform} account in the directory: grantry could not tell them the outcome",
            person.email
        )));
    };
    let text = match command::parse(&t.text) {
        Ok(AccessCommand::Request(text)) => text,
        _ => return Ok(Err(format!("`{}` is not an access request", t.text))),
    };
    let reply = intake::submit(
        app,
        Submission {
            platform,
            requester_chat_id: chat_id.to_string(),
            reply_channel: None,
            idempotency_key: Some(format!("desk:{desk}:{}", t.ticket.key)),
            text,
            ticket: Some(t.ticket.url.clone().unwrap_or_else(|| t.ticket.key.clone())),
            subject_email: None,
            extends: None,
            confirm_by_dm: true,
            break_glass: false,
            inbound_ticket: Some(TicketLink {
                desk: desk.to_string(),
                key: t.ticket.key.clone(),
                url: t.ticket.url.clone(),
            }),
        },
    )
    .await?;
    if let IntakeReply::Invalid(why) = &reply {
        return Ok(Err(why.clone()));
    }
    Ok(Ok(reply))
}
