//! Many inputs through one process-mode function: the counterpart of `Executor.map` with a
//! `chunksize`, and of `asyncio.gather` over many calls.
//!
//! One driver task per worker leases a worker and sends it a chunk of calls in one write; the
//! worker runs them in order and the driver reads the replies, several per read, handing each
//! result out as it completes. Inputs are encoded only when a driver takes them, and results
//! wait in a bounded channel, so memory stays bounded however many inputs there are. A worker
//! that dies fails only the call it was running; the calls sent behind it never started, so
//! they go back to be sent again.

use std::any::Any;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{after_loss, within_timeout, Remote};
use crate::function::codec::{decode, encode_call};
use crate::function::{FnSpec, Transferable};
use crate::transport::{Attempt, Backend};
use crate::Error;

/// The results of a process-mode function's `f_map(inputs)` companion: `(input index, result)`
/// pairs in the order they complete, one per input. Nothing runs until it is first polled.
/// Dropping it cancels the calls still running, as dropping their futures would.
///
/// It is a [`Stream`], so stream combinators work on it (`StreamExt::take`,
/// `buffer_unordered`, progress wrappers), and it is `Unpin`, so `StreamExt::next(&mut map)`
/// needs no pinning. Its `size_hint` is that of the inputs, less the results already out.
/// The inherent [`next`](Map::next) and [`collect`](Map::collect) take precedence over
/// `StreamExt`'s methods of those names; call `StreamExt::collect(map)` for the stream's own.
#[must_use = "a Map does nothing until polled: await `next` or `collect`, or use it as a Stream"]
pub struct Map<R> {
    start: Option<Start<R>>,
    /// Set by `chunk_size`; else the transport's own default.
    chunk: Option<usize>,
    running: Option<Running<R>>,
    /// The inputs' `size_hint` when the map was made, and how many results went out since.
    inputs: (usize, Option<usize>),
    delivered: usize,
}

struct Running<R> {
    results: mpsc::Receiver<(usize, Result<R, Error>)>,
    /// The panic of the caller's iterator, if it panicked: resumed on the caller once the
    /// inputs taken before it have their results.
    panicked: Arc<Panicked>,
    _drivers: JoinSet<()>,
}

type Panicked = Mutex<Option<Box<dyn Any + Send>>>;

/// Starts the drivers, given the chunk size `chunk_size` set, if it was.
type Start<R> = Box<dyn FnOnce(Option<usize>) -> Running<R> + Send>;

impl<R: Send + 'static> Map<R> {
    /// Sends up to `calls` calls to a worker in one frame batch (default 16; for a broker pool,
    /// 64 to a message): larger chunks cost fewer system calls, or messages, and smaller ones
    /// spread uneven work better.
    pub fn chunk_size(mut self, calls: usize) -> Self {
        self.chunk = Some(calls.max(1));
        self
    }

    /// The next result to complete, with the index of its input; `None` once all are out.
    /// The same as `StreamExt::next`.
    ///
    /// # Panics
    ///
    /// If the iterator of inputs panicked: once every input taken before the panic has its
    /// result, the panic is resumed here, on the caller, as a joined thread's would be.
    pub async fn next(&mut self) -> Option<(usize, Result<R, Error>)> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Every result, in the order of the inputs.
    ///
    /// # Panics
    ///
    /// As [`next`](Map::next) does.
    pub async fn collect(mut self) -> Vec<Result<R, Error>> {
        let mut all = Vec::new();
        while let Some((index, result)) = self.next().await {
            all.push((index, result));
        }
        all.sort_unstable_by_key(|(index, _)| *index);
        all.into_iter().map(|(_, result)| result).collect()
    }
}

impl<R: Send + 'static> Stream for Map<R> {
    type Item = (usize, Result<R, Error>);

    /// # Panics
    ///
    /// As [`Map::next`] does.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(start) = this.start.take() {
            this.running = Some(start(this.chunk));
        }
        let Some(running) = this.running.as_mut() else {
            return Poll::Ready(None);
        };
        let Some(next) = ready!(running.results.poll_recv(cx)) else {
            // Every driver has ended; drop them, so that the map reads as terminated.
            let panicked = this.running.take().and_then(|running| {
                let mut panicked = running.panicked.lock().unwrap_or_else(|p| p.into_inner());
                panicked.take()
            });
            if let Some(payload) = panicked {
                std::panic::resume_unwind(payload);
            }
            return Poll::Ready(None);
        };
        this.delivered += 1;
        Poll::Ready(Some(next))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.start.is_none() && self.running.is_none() {
            return (0, Some(0));
        }
        let (low, high) = self.inputs;
        let left = |count: usize| count.saturating_sub(self.delivered);
        (left(low), high.map(left))
    }
}

impl<R: Send + 'static> FusedStream for Map<R> {
    fn is_terminated(&self) -> bool {
        self.start.is_none() && self.running.is_none()
    }
}

/// One encoded call waiting to be sent, and how often it was already tried.
struct Item {
    index: usize,
    frame: Vec<u8>,
    attempts: u32,
}

struct Inputs<I> {
    /// The caller's iterator, until it panicked, and how many inputs it gave.
    inputs: Mutex<(Option<I>, usize)>,
    /// Calls sent to a worker that died before starting them: sent again first.
    again: Mutex<Vec<Item>>,
    panicked: Arc<Panicked>,
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
        let resolved = function.resolve();
        let chunk = match &resolved {
            Ok((backend, _)) => chunk.unwrap_or(backend.chunk_size()),
            Err(_) => 1,
        };
        let (send, results) = mpsc::channel(chunk * 4);
        let mut drivers = JoinSet::new();
        let panicked = Arc::new(Mutex::new(None));
        match resolved {
            Ok((backend, index)) => {
                let shared = Arc::new(Inputs {
                    inputs: Mutex::new((Some(inputs), 0)),
                    again: Mutex::new(Vec::new()),
                    panicked: panicked.clone(),
                });
                for _ in 0..backend.workers() {
                    drivers.spawn(drive::<_, _, W, R>(
                        function,
                        backend,
                        index,
                        shared.clone(),
                        chunk,
                        send.clone(),
                    ));
                }
            }
            Err(error) => {
                let count = inputs.count();
                drivers.spawn(async move {
                    for index in 0..count {
                        if send.send((index, Err(error.clone()))).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Running {
            results,
            panicked,
            _drivers: drivers,
        }
    };
    Map {
        start: Some(Box::new(start)),
        chunk: None,
        running: None,
        inputs: hint,
        delivered: 0,
    }
}

async fn drive<I, A, W, R>(
    function: &'static Remote,
    backend: Backend,
    index: u32,
    shared: Arc<Inputs<I>>,
    chunk: usize,
    results: mpsc::Sender<(usize, Result<R, Error>)>,
) where
    I: Iterator<Item = A>,
    A: Serialize,
    W: DeserializeOwned,
    R: From<W>,
{
    let spec = &function.spec;
    let deliver = |index: usize, result: Result<R, Error>| {
        backend.ended(&result);
        results.send((index, result))
    };
    loop {
        let (batch, refused) = take(spec, backend, index, &shared, chunk);
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
            if deliver(item.index, result).await.is_err() {
                return;
            }
        }
        drop(sent);
        again.extend(batch);
        shared
            .again
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(again);
    }
}

/// Takes up to `chunk` calls, those to send again first, encoding fresh inputs; an input that
/// does not encode is refused at once.
fn take<I, A>(
    spec: &FnSpec,
    backend: Backend,
    index: u32,
    shared: &Inputs<I>,
    chunk: usize,
) -> (Vec<Item>, Vec<(usize, Error)>)
where
    I: Iterator<Item = A>,
    A: Serialize,
{
    let mut batch = Vec::with_capacity(chunk);
    {
        let mut again = shared.again.lock().unwrap_or_else(|p| p.into_inner());
        let keep = again.len().saturating_sub(chunk);
        batch.extend(again.drain(keep..));
    }
    let mut refused = Vec::new();
    let mut inputs = shared.inputs.lock().unwrap_or_else(|p| p.into_inner());
    while batch.len() < chunk {
        let Some(iterator) = inputs.0.as_mut() else {
            break;
        };
        // The caller's iterator runs here, on a driver task: its panic is kept for the caller
        // (see `Map::poll_next`) rather than lost with the task, and no input is taken after it.
        let input = match std::panic::catch_unwind(AssertUnwindSafe(|| iterator.next())) {
            Ok(Some(input)) => input,
            Ok(None) => break,
            Err(payload) => {
                inputs.0 = None;
                *shared.panicked.lock().unwrap_or_else(|p| p.into_inner()) = Some(payload);
                break;
            }
        };
        let position = inputs.1;
        inputs.1 += 1;
        match encode_call(spec, backend.max_frame(), index, &input) {
            Ok(frame) => batch.push(Item {
                index: position,
                frame,
                attempts: 0,
            }),
            Err(error) => refused.push((position, error)),
        }
    }
    (batch, refused)
}
