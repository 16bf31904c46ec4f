//! Questions asked of the store at the same moment, answered by one query.
//!
//! Each caller queues its question; whichever caller holds the right to read answers every
//! question waiting at that moment (up to a limit) with **one** query, and the others wait for
//! their share or, once the reader is done, read next. Alone, a caller reads its own question at
//! once, with no hand-off to another task. A caller cancelled while reading leaves the
//! questions it took to be read again by their askers. A read is not part of any transaction
//! either way: it sees what was committed when it ran. Why: one query per question is a round
//! trip each (on PostgreSQL a statement for a backend each, and its wake-up); under load the
//! questions waiting at once share one (docs/benchmarks.md).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::StoreError;

/// A question and where its answer goes. The question is shared with its queue entry, so that
/// its caller can still ask it alone if the caller that took it is cancelled.
type Waiting<Q, A> = (Arc<Q>, oneshot::Sender<Result<A, StoreError>>);

/// Questions waiting for a read, and the right to read them.
pub(crate) struct SharedRead<Q, A> {
    waiting: Mutex<Vec<Waiting<Q, A>>>,
    reading: tokio::sync::Mutex<()>,
    /// At most this many questions share a query.
    max: usize,
}

impl<Q, A> SharedRead<Q, A> {
    /// At most `max` questions in one query.
    pub(crate) fn new(max: usize) -> Self {
        SharedRead {
            waiting: Mutex::new(Vec::new()),
            reading: tokio::sync::Mutex::new(()),
            max: max.max(1),
        }
    }

    fn take(&self) -> Vec<Waiting<Q, A>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let n = waiting.len().min(self.max);
        waiting.drain(..n).collect()
    }

    fn put(&self, w: Waiting<Q, A>) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// Answers `question` with the questions waiting beside it: `read` answers a list of
    /// questions with one answer each, in order.
    pub(crate) async fn ask<F, Fut>(&self, question: Q, read: F) -> Result<A, StoreError>
    where
        F: Fn(Vec<Arc<Q>>) -> Fut,
        Fut: Future<Output = Result<Vec<A>, StoreError>>,
    {
        let question = Arc::new(question);
        let (reply, mut answer) = oneshot::channel();
        self.put((Arc::clone(&question), reply));
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => {
                    return match answered {
                        Ok(answer) => answer,
                        // Whoever took the question was cancelled mid-read: ask alone.
                        Err(_) => alone(&read, question).await,
                    };
                }
                _reading = self.reading.lock() => {
                    // The reader now: every question waiting (this one, unless already answered).
                    let batch = self.take();
                    if !batch.is_empty() {
                        answer_all(&read, batch).await;
                    }
                }
            }
        }
    }
}

/// `question` read by itself.
async fn alone<Q, A, F, Fut>(read: &F, question: Arc<Q>) -> Result<A, StoreError>
where
    F: Fn(Vec<Arc<Q>>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    read(vec![question])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a read answered no question".into()))
}

/// Reads for `batch` in one query and answers each; if that fails, each is read alone (the
/// error is the database's, not a question's, and each caller gets its own answer).
async fn answer_all<Q, A, F, Fut>(read: &F, batch: Vec<Waiting<Q, A>>)
where
    F: Fn(Vec<Arc<Q>>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    let questions: Vec<Arc<Q>> = batch.iter().map(|(q, _)| Arc::clone(q)).collect();
    match read(questions).await {
        Ok(answers) if answers.len() == batch.len() => {
            for ((_, reply), answer) in batch.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(_) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Corrupt(
                    "a read answered another number of questions than asked".into(),
                )));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some((_, reply)) = batch.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(_) => {
            for (q, reply) in batch {
                let _ = reply.send(alone(read, q).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::SharedRead;
    use crate::store::StoreError;

    #[tokio::test]
    async fn questions_asked_at_once_share_a_read_and_each_gets_its_own_answer() {
        let shared = Arc::new(SharedRead::<u32, u32>::new(64));
        let reads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut asks = Vec::new();
        for n in 0..10u32 {
            let (shared, reads, gate) = (shared.clone(), reads.clone(), gate.clone());
            asks.push(tokio::spawn(async move {
                shared
                    .ask(n, |qs| {
                        let (reads, gate) = (reads.clone(), gate.clone());
                        async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            // The first read waits until every question is queued.
                            let _ = gate.acquire().await;
                            Ok(qs.iter().map(|q| **q * 10).collect())
                        }
                    })
                    .await
            }));
        }
        while shared.waiting.lock().unwrap().len() < 9 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        for (n, ask) in asks.into_iter().enumerate() {
            assert_eq!(ask.await.unwrap().unwrap(), n as u32 * 10);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the first alone, then the other nine"
        );
    }

    #[tokio::test]
    async fn a_failed_shared_read_is_asked_again_question_by_question() {
        let shared = SharedRead::<u32, u32>::new(64);
        let read = |qs: Vec<Arc<u32>>| async move {
            if qs.len() > 1 || *qs[0] == 3 {
                return Err(StoreError::Corrupt("no".into()));
            }
            Ok(vec![*qs[0] + 1])
        };
        let (a, b, c) = tokio::join!(
            shared.ask(1, read),
            shared.ask(2, read),
            shared.ask(3, read)
        );
        assert_eq!(a.unwrap(), 2);
        assert_eq!(b.unwrap(), 3);
        assert!(c.is_err());
    }
}
