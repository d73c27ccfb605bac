//! Short calls that pile up travel together. A few calls on their way at once each go in a
//! message of their own, which a timeout or a dropped future withdraws or cancels on its own.
//! Beyond that, while the pool's calls take under a millisecond on their agents, calls of one
//! function that are started together share messages of up to [`MOST`] calls, as an `f_map`
//! chunk does: the broker's cost is per message, so this is what lets thousands of calls in
//! flight run at the rate of a map. Longer calls always go alone, so that one agent's worker
//! never runs one after another what several could run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Average, BrokerPool};
use crate::function::FnSpec;
use crate::transport::outcome::Attempt;
use crate::wire::Kind;
use crate::Error;

/// Calls on their way alone before calls start to share messages.
const ALONE: usize = 4;
/// The most calls one message carries.
const MOST: usize = 64;
/// Calls that take longer than this on their agents, on average, are not batched.
const SHORT: Duration = Duration::from_millis(1);

type Answer = Attempt<(Kind, Vec<u8>)>;

/// A pool's calls waiting to share a message, by function.
pub(crate) struct Batches {
    waiting: Mutex<HashMap<usize, Vec<Waiting>>>,
    alone: AtomicUsize,
    /// How long the pool's calls take on their agents, as they report it.
    call_time: Average,
}

impl Default for Batches {
    fn default() -> Self {
        Batches {
            waiting: Mutex::default(),
            alone: AtomicUsize::new(0),
            call_time: Average::new(),
        }
    }
}

impl Batches {
    /// Notes how long calls took on their agent, per call.
    pub(crate) fn took(&self, micros: u32) {
        self.call_time
            .note(Duration::from_micros(u64::from(micros)));
    }

    fn short(&self) -> bool {
        self.call_time.below(SHORT)
    }
}

struct Waiting {
    frame: Vec<u8>,
    answer: oneshot::Sender<Answer>,
}

impl BrokerPool {
    /// One attempt at a call without a timeout: alone while few calls are on their way or calls run
    /// long, else in a message shared with the calls of the same function started with it. A shared
    /// call whose future is dropped runs on unless all the calls of its message were dropped.
    pub(crate) async fn attempt(&'static self, spec: &'static FnSpec, frame: Vec<u8>) -> Answer {
        let batches = &self.batches;
        if batches.alone.fetch_add(1, Ordering::Relaxed) < ALONE || !batches.short() {
            let _alone = Alone(&batches.alone);
            return match self.start_call(spec, frame).await {
                Ok(started) => started.finish(|kind, reply| (kind, reply.to_vec())).await,
                Err(attempt) => attempt.widen(),
            };
        }
        batches.alone.fetch_sub(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.enqueue(spec, vec![Waiting { frame, answer }]);
        answered.await.unwrap_or_else(|_| {
            Attempt::Failed(Error::Broker {
                detail: "the task sending the call stopped (its runtime shut down)".into(),
            })
        })
    }

    fn enqueue(&'static self, spec: &'static FnSpec, calls: Vec<Waiting>) {
        let first = {
            let mut waiting = self.lock_waiting();
            let queue = waiting.entry(key(spec)).or_default();
            let first = queue.is_empty();
            queue.extend(calls);
            first
        };
        if first {
            tokio::spawn(self.send_waiting(spec));
        }
    }

    /// Sends the calls of `spec` waiting now, and those that join them meanwhile, a message of
    /// up to [`MOST`] at a time.
    async fn send_waiting(&'static self, spec: &'static FnSpec) {
        // Calls started together by the caller's task join before the first message goes.
        tokio::task::yield_now().await;
        loop {
            let (batch, last) = {
                let mut waiting = self.lock_waiting();
                let Some(queue) = waiting.get_mut(&key(spec)) else {
                    return;
                };
                let batch: Vec<Waiting> = queue.drain(..queue.len().min(MOST)).collect();
                let last = queue.is_empty();
                if last {
                    waiting.remove(&key(spec));
                }
                (batch, last)
            };
            tokio::spawn(self.send_batch(spec, batch));
            if last {
                return;
            }
        }
    }

    async fn send_batch(&'static self, spec: &'static FnSpec, mut batch: Vec<Waiting>) {
        batch.retain(|call| !call.answer.is_closed());
        if batch.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = batch.iter().map(|call| &call.frame[..]).collect();
        let mut chunk = match self.chunk(spec, &frames).await {
            Ok(chunk) => chunk,
            Err(error) => {
                for call in batch {
                    let _ = call.answer.send(Attempt::Failed(error.clone()));
                }
                return;
            }
        };
        let unsent = batch.split_off(chunk.len());
        if !unsent.is_empty() {
            self.enqueue(spec, unsent);
        }
        let mut again = Vec::new();
        let mut calls = batch.into_iter();
        while let Some(call) = calls.next() {
            if call.answer.is_closed() && calls.as_slice().iter().all(|c| c.answer.is_closed()) {
                // Nobody waits for the rest: dropping the chunk cancels them on the agent.
                break;
            }
            let answer = match chunk.next(|kind, reply| (kind, reply.to_vec())).await {
                Attempt::NotStarted(_) => {
                    again.push(call);
                    continue;
                }
                // Handed back for another attempt, should retries allow one.
                Attempt::Lost { worker, exit, .. } => Attempt::Lost {
                    worker,
                    exit,
                    frame: call.frame,
                },
                answer => answer,
            };
            let _ = call.answer.send(answer);
        }
        if !again.is_empty() {
            self.enqueue(spec, again);
        }
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Vec<Waiting>>> {
        self.batches
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A function's place in the table of waiting calls: its spec's address, unique and fixed.
fn key(spec: &'static FnSpec) -> usize {
    spec as *const FnSpec as usize
}

struct Alone<'a>(&'a AtomicUsize);

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
