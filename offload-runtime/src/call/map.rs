//! Many inputs through one process-mode function: the counterpart of `Executor.map` with a
//! `chunksize`, and of `asyncio.gather` over many calls.
//!
//! One driver task per worker leases a worker and sends it a chunk of calls in one write; the
//! worker runs them in order and the driver reads the replies, several per read, handing each
//! result out as it completes. The caller's iterator runs, and each input is encoded, on a
//! thread of the map's own, a few chunks ahead of the drivers (see [`Inputs`]), and results
//! wait in a bounded channel, so memory stays bounded however many inputs there are; results
//! the caller has no room for wait on a driver that gave its worker back. A worker that dies
//! fails only the call it was running; the calls sent behind it never started, so they go back
//! to be sent again.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{after_loss, within_timeout, Remote};
use crate::function::codec::{decode, encode_call};
use crate::function::Transferable;
use crate::map::{Inputs, Map, Running};
use crate::transport::{Attempt, Backend};
use crate::Error;

/// One encoded call waiting to be sent, and how often it was already tried.
struct Item {
    index: usize,
    frame: Vec<u8>,
    attempts: u32,
}

/// What a map's drivers share: the caller's inputs, encoded where the iterator runs, and the
/// calls to send again.
struct Shared {
    inputs: Inputs<Result<Vec<u8>, Error>>,
    /// Calls sent to a worker that died before starting them: sent again first.
    again: Mutex<Vec<Item>>,
}

/// Runs `function` once per input on its process pool; see [`Map`]. Results travel as `W` and
/// reach the caller as `R`: a `Vec<u8>` result travels as
/// [`Bytes`](crate::function::bytes::Bytes), one byte string, as it does for a plain call.
pub fn map_in_process_as<I, A, W, R>(function: &'static Remote, inputs: I) -> Map<R>
where
    I: IntoIterator<Item = A>,
    I::IntoIter: Send + 'static,
    A: Transferable + 'static,
    W: Transferable + 'static,
    R: From<W> + Send + 'static,
{
    let inputs = inputs.into_iter();
    let hint = inputs.size_hint();
    let start = move |chunk: Option<usize>| {
        let resolved =
            crate::error::in_runtime(function.spec.name).and_then(|()| function.resolve());
        let (backend, index) = match resolved {
            Ok(resolved) => resolved,
            Err(error) => return Running::failing(inputs, error),
        };
        let chunk = chunk.unwrap_or(backend.chunk_size());
        let (send, results) = mpsc::channel(chunk * 4);
        let panicked = Arc::new(Mutex::new(None));
        let spec = &function.spec;
        let limit = backend.max_frame();
        let depth = backend.max_depth();
        let encode = move |input: A| encode_call(spec, limit, depth, index, &input);
        let ahead = chunk * backend.workers();
        let shared = Arc::new(Shared {
            inputs: Inputs::read(inputs, ahead, panicked.clone(), encode),
            again: Mutex::new(Vec::new()),
        });
        let mut drivers = JoinSet::new();
        for _ in 0..backend.workers() {
            drivers.spawn(drive::<W, R>(
                function,
                backend,
                shared.clone(),
                chunk,
                send.clone(),
            ));
        }
        Running::new(results, panicked, drivers)
    };
    Map::new(hint, Box::new(start))
}

async fn drive<W, R>(
    function: &'static Remote,
    backend: Backend,
    shared: Arc<Shared>,
    chunk: usize,
    results: mpsc::Sender<(usize, Result<R, Error>)>,
) where
    W: DeserializeOwned,
    R: From<W>,
{
    let spec = &function.spec;
    let deliver = |index: usize, result: Result<R, Error>| {
        backend.ended(&result);
        results.send((index, result))
    };
    loop {
        let (batch, refused) = take(&shared, chunk).await;
        for (index, error) in refused {
            if deliver(index, Err(error)).await.is_err() {
                return;
            }
        }
        // Calls sent back by a worker's death go to `again` from a driver that is still in its
        // loop, which will send them; so an empty take means this driver's work is done.
        if batch.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = batch.iter().map(|item| &item.frame[..]).collect();
        let mut sent = match backend.chunk(spec, &frames).await {
            Ok(sent) => sent,
            Err(error) => {
                for item in batch {
                    if deliver(item.index, Err(error.clone())).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        // Calls the worker was not sent (it may not run that many more), and calls that never
        // started, go again.
        let mut again = Vec::new();
        let mut unread_results = Vec::new();
        let mut batch = batch.into_iter();
        for mut item in batch.by_ref().take(sent.len()) {
            let read = |kind, payload: &[u8]| {
                decode::<W>(spec.name, backend.max_depth(), kind, payload).map(R::from)
            };
            let attempt = within_timeout(spec, sent.next(read)).await;
            if matches!(attempt, Attempt::Failed(Error::Timeout { .. })) {
                // Its worker is stopped: the calls behind it never start there.
                sent.stop();
            }
            let result = match attempt {
                Attempt::Answered(result) => result,
                Attempt::Failed(error) => Err(error),
                Attempt::NotStarted(_) => {
                    again.push(item);
                    continue;
                }
                Attempt::Lost { worker, exit, .. } => {
                    match after_loss(spec, backend, worker, exit, item.attempts) {
                        Ok(()) => {
                            item.attempts += 1;
                            again.push(item);
                            continue;
                        }
                        Err(error) => Err(error),
                    }
                }
            };
            // A caller that stops reading must not keep the worker: what it has no room for
            // waits here, and the worker goes back to the pool once the chunk is read, for the
            // caller's other calls.
            backend.ended(&result);
            match results.try_send((item.index, result)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(unread)) => unread_results.push(unread),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        drop(sent);
        again.extend(batch);
        shared
            .again
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(again);
        for unread in unread_results.drain(..) {
            if results.send(unread).await.is_err() {
                return;
            }
        }
    }
}

/// Takes up to `chunk` calls: those to send again first, then fresh inputs, waiting for one
/// only while there is nothing else to send; an input that did not encode is refused at once.
async fn take(shared: &Shared, chunk: usize) -> (Vec<Item>, Vec<(usize, Error)>) {
    let mut batch = Vec::with_capacity(chunk);
    {
        let mut again = shared.again.lock().unwrap_or_else(|p| p.into_inner());
        let keep = again.len().saturating_sub(chunk);
        batch.extend(again.drain(keep..));
    }
    let mut refused = Vec::new();
    while batch.len() < chunk {
        let input = if batch.is_empty() {
            shared.inputs.next().await
        } else {
            shared.inputs.ready()
        };
        match input {
            Some((position, Ok(frame))) => batch.push(Item {
                index: position,
                frame,
                attempts: 0,
            }),
            Some((position, Err(error))) => refused.push((position, error)),
            None => break,
        }
    }
    (batch, refused)
}
