//! PostgreSQL's filer on its own connection ([`super::pg_direct`]): the next batch is sent
//! while the one before it is still being written, so the database goes from one commit
//! straight to the next batch instead of waiting for the filer to hear of the commit, answer
//! its callers and build what comes next (~12% of a batch's time at concurrency 16:
//! docs/benchmarks.md).
//!
//! One connection runs its batches in the order they were sent, each a transaction (a batch
//! sent here is one statement, which is its own: [`super::batch::Batch::fuse_as_one`]; the long
//! way's, `BEGIN` to `COMMIT`). A batch sent behind another is built on the chain's head that
//! the one before leaves, and its head's lock fails unless that is the head when it runs
//! ([`super::audit::push_read_head_expecting`]): if the batch before rolled back, the one
//! behind it rolls back too. A batch that fails is written again the long way, its head read
//! first ([`super::filing::answer_all`]), so every caller's answer is the one a filer writing a
//! batch at a time would give.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TryRecvError};

use super::batch::BatchRow;
use super::filing::{self, Filing, Head, Own, Reply, Waiting, Work, Written, MAX_BATCH};
use super::pg_direct::{PgOwn, Sent};
use super::rulings::Ruling;
use super::{Store, StoreError};

/// Batches sent and not yet answered, at most (one more of the other kind may follow): the one
/// being written and the next.
const IN_FLIGHT: usize = 2;

/// A batch sent, with its callers.
struct Flight<W: Written> {
    items: Vec<(W, Reply<W::Answer>)>,
    sent: Sent,
    /// Whether it enqueues jobs (the workers are woken once it commits).
    enqueues: bool,
}

/// A batch of either kind.
enum AnyFlight {
    File(Flight<Filing>),
    Rule(Flight<Ruling>),
}

impl AnyFlight {
    /// How many callers it answers.
    fn len(&self) -> usize {
        match self {
            AnyFlight::File(f) => f.items.len(),
            AnyFlight::Rule(f) => f.items.len(),
        }
    }

    fn sent(&mut self) -> &mut Sent {
        match self {
            AnyFlight::File(f) => &mut f.sent,
            AnyFlight::Rule(f) => &mut f.sent,
        }
    }
}

/// What the filer sends in flights.
trait Flies: Written {
    fn flight(f: Flight<Self>) -> AnyFlight;
}

impl Flies for Filing {
    fn flight(f: Flight<Self>) -> AnyFlight {
        AnyFlight::File(f)
    }
}

impl Flies for Ruling {
    fn flight(f: Flight<Self>) -> AnyFlight {
        AnyFlight::Rule(f)
    }
}

/// The filer and what it has sent.
struct Pipeline {
    store: Store,
    own: Arc<PgOwn>,
    flights: VecDeque<AnyFlight>,
    /// The chain's head after every batch sent, if known; `None` until a batch written the long
    /// way has read it, and again once a batch fails.
    head: Option<Head>,
}

/// The filer's loop on PostgreSQL's own connection; ends when every sender is gone and every
/// batch sent is answered.
pub(super) async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Work>, own: Arc<PgOwn>) {
    let mut p = Pipeline {
        store,
        own,
        flights: VecDeque::new(),
        head: None,
    };
    let mut held: Waiting = (Vec::new(), Vec::new());
    let mut open = true;
    loop {
        let mut waiting = held.0.len() + held.1.len();
        while open && waiting < MAX_BATCH {
            match rx.try_recv() {
                Ok(work) => filing::hold(work, &mut held),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
            waiting = held.0.len() + held.1.len();
        }
        // With none in flight, sent now; behind the one in flight once as many wait as it
        // carries (most of the callers it answers are back by then, or all have come that
        // will), else when it lands: a batch sent at the first arrival would carry one or two,
        // and every batch costs a commit.
        let due = match p.flights.front() {
            None => true,
            Some(front) => p.flights.len() < IN_FLIGHT && waiting >= front.len(),
        };
        if waiting > 0 && due {
            let (filings, rulings) = std::mem::take(&mut held);
            p.send(filings).await;
            p.send(rulings).await;
            continue;
        }
        let Some(front) = p.flights.front_mut() else {
            match rx.recv().await {
                Some(work) => filing::hold(work, &mut held),
                None if waiting == 0 => break,
                None => open = false,
            }
            continue;
        };
        let next = if open && waiting < MAX_BATCH {
            tokio::select! {
                biased;
                rows = front.sent() => Ok(rows),
                work = rx.recv() => Err(work),
            }
        } else {
            Ok(front.sent().await)
        };
        match next {
            Ok(rows) => p.land_front(rows).await,
            Err(Some(work)) => filing::hold(work, &mut held),
            Err(None) => open = false,
        }
    }
    p.land_all().await;
}

impl Pipeline {
    /// Sends `items` as one batch behind those in flight if the head is known and they can be
    /// written in one; otherwise writes them the long way once every batch sent is answered.
    async fn send<W: Flies>(&mut self, mut items: Vec<(W, Reply<W::Answer>)>) {
        if items.is_empty() {
            return;
        }
        if let Some(head) = self.head.take() {
            let batch = {
                let refs: Vec<&W> = items.iter().map(|(w, _)| w).collect();
                W::in_one(&refs, head)
            };
            if let Ok(Some((batch, after))) = batch {
                let enqueues = batch.enqueues();
                // Nothing of it is sent if this fails: it goes the long way below.
                if let Ok(sent) = self.own.send(batch).await {
                    self.head = Some(after);
                    self.flights.push_back(W::flight(Flight {
                        items,
                        sent,
                        enqueues,
                    }));
                    return;
                }
            }
        }
        self.land_all().await;
        self.long_way(&mut items).await;
    }

    /// Answers the oldest batch sent, whose `rows` have come.
    async fn land_front(&mut self, rows: Result<Vec<BatchRow>, StoreError>) {
        match self.flights.pop_front() {
            Some(AnyFlight::File(f)) => self.land(f, rows).await,
            Some(AnyFlight::Rule(f)) => self.land(f, rows).await,
            None => {}
        }
    }

    /// Waits for every batch sent and answers each.
    async fn land_all(&mut self) {
        while let Some(front) = self.flights.front_mut() {
            let rows = front.sent().await;
            self.land_front(rows).await;
        }
    }

    /// Answers `flight`'s callers from its `rows`; if it failed, writes them again the long way.
    async fn land<W: Written>(
        &mut self,
        flight: Flight<W>,
        rows: Result<Vec<BatchRow>, StoreError>,
    ) {
        let Flight {
            mut items,
            enqueues,
            ..
        } = flight;
        match rows.and_then(|rows| W::answers(&rows, items.len())) {
            Ok(answers) => {
                if enqueues {
                    self.store.jobs_ready.notify_waiters();
                }
                for ((_, reply), answer) in items.drain(..).zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            // Committed, but its rows do not add up: said to each caller, not written again.
            Err(StoreError::Corrupt(why)) => {
                self.head = None;
                for (_, reply) in items.drain(..) {
                    let _ = reply.send(Err(StoreError::Corrupt(why.clone())));
                }
            }
            // Rolled back: a guess failed (an idempotency key taken, a ruling that lost, the head
            // moved by another writer or left where it was by a batch before it that failed) or
            // the connection did. Those sent after it were built on its head and fail too.
            Err(_) => self.long_way(&mut items).await,
        }
    }

    /// Writes `items` the long way (the head read first, [`filing::answer_all`]), behind
    /// anything in flight; the head it leaves is known after.
    async fn long_way<W: Written>(&mut self, items: &mut Vec<(W, Reply<W::Answer>)>) {
        self.head = None;
        // None kept: the long way reads the head.
        let _ = self.store.take_filed_head();
        let own = Own::Postgres(self.own.clone());
        filing::answer_all(&self.store, Some(&own), items).await;
        self.head = self.store.take_filed_head();
    }
}
