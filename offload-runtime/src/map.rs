//! What `f_map` returns: the results of many calls of one function, handed out as they
//! complete. The drivers that make the calls are the mode's (`call::map` for process mode,
//! `thread::map_in_thread`); they send `(index, result)` pairs into a bounded channel that the
//! [`Map`] reads.

use std::any::Any;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::Error;

/// The results of an offloaded function's `f_map(inputs)` companion: `(input index, result)`
/// pairs in the order they complete, one per input. Nothing runs until it is first polled.
/// Dropping it cancels the calls still running, as dropping their futures would. The inputs'
/// iterator runs on a thread of the map's own, a few inputs ahead of the calls, so it may
/// block without stalling the event loop; a map that is not read keeps no worker.
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

pub(crate) struct Running<R> {
    results: mpsc::Receiver<(usize, Result<R, Error>)>,
    /// The panic of the caller's iterator, if it panicked: resumed on the caller once the
    /// inputs taken before it have their results.
    panicked: Arc<Panicked>,
    _drivers: JoinSet<()>,
}

pub(crate) type Panicked = Mutex<Option<Box<dyn Any + Send>>>;

/// Starts the drivers, given the chunk size `chunk_size` set, if it was.
pub(crate) type Start<R> = Box<dyn FnOnce(Option<usize>) -> Running<R> + Send>;

impl<R: Send + 'static> Map<R> {
    /// Sends up to `calls` calls to a worker in one frame batch (default 16; for a broker pool,
    /// 64 to a message): larger chunks cost fewer system calls, or messages, and smaller ones
    /// spread uneven work better. A thread-mode map runs each call as a task of its own, and
    /// ignores it.
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

impl<R> Map<R> {
    /// A map over inputs whose `size_hint` is `inputs`, whose drivers `start` starts when it
    /// is first polled.
    pub(crate) fn new(inputs: (usize, Option<usize>), start: Start<R>) -> Map<R> {
        Map {
            start: Some(start),
            chunk: None,
            running: None,
            inputs,
            delivered: 0,
        }
    }
}

impl<R> Running<R> {
    pub(crate) fn new(
        results: mpsc::Receiver<(usize, Result<R, Error>)>,
        panicked: Arc<Panicked>,
        drivers: JoinSet<()>,
    ) -> Running<R> {
        Running {
            results,
            panicked,
            _drivers: drivers,
        }
    }
}

impl<R: Send + 'static> Running<R> {
    /// Every input fails with `error`, one result each: counted out by a task as the caller
    /// reads them, or, outside a tokio runtime (where no task can run), all at once.
    pub(crate) fn failing<I>(inputs: I, error: Error) -> Running<R>
    where
        I: Iterator + Send + 'static,
    {
        let panicked = Arc::new(Mutex::new(None));
        let mut drivers = JoinSet::new();
        let results = if tokio::runtime::Handle::try_current().is_ok() {
            let (send, results) = mpsc::channel(16);
            let inputs = Inputs::read(inputs, 16, panicked.clone(), drop);
            drivers.spawn(async move {
                while let Some((index, ())) = inputs.next().await {
                    if send.send((index, Err(error.clone()))).await.is_err() {
                        return;
                    }
                }
            });
            results
        } else {
            let mut inputs = Some(inputs);
            let mut count = 0;
            while next_input(&mut inputs, &panicked).is_some() {
                count += 1;
            }
            let (send, results) = mpsc::channel(count.max(1));
            for index in 0..count {
                // Cannot fail: the channel holds them all and its receiver is right here.
                let _ = send.try_send((index, Err(error.clone())));
            }
            results
        };
        Running::new(results, panicked, drivers)
    }
}

/// The caller's inputs, as a map's drivers take them, each with its index. The iterator runs
/// on a thread of its own, never on the runtime's threads: it may be slow (the lines
/// of a file, a database cursor), and a driver waiting for it must leave the event loop free.
/// The thread keeps at most `ahead` inputs ready, so memory stays bounded, and is woken only
/// once the drivers took half of them, not for every input.
pub(crate) struct Inputs<T>(Arc<Ready<T>>);

struct Ready<T> {
    queue: Mutex<Queue<T>>,
    /// The reading thread waits here for room.
    room: std::sync::Condvar,
    /// Drivers wait here for inputs.
    filled: tokio::sync::Notify,
    ahead: usize,
}

struct Queue<T> {
    inputs: std::collections::VecDeque<(usize, T)>,
    /// The iterator ended or panicked: no more inputs come.
    ended: bool,
    /// The map was dropped: the reading thread stops.
    dropped: bool,
}

impl<T: Send + 'static> Inputs<T> {
    /// Starts reading `inputs`, each made ready for the drivers by `prepare` on the same
    /// thread; the iterator's panic, should it panic, goes to `panicked`, for the caller. Once
    /// the map is dropped, the thread ends as soon as the iterator gives its next input.
    pub(crate) fn read<I>(
        inputs: I,
        ahead: usize,
        panicked: Arc<Panicked>,
        mut prepare: impl FnMut(I::Item) -> T + Send + 'static,
    ) -> Inputs<T>
    where
        I: Iterator + Send + 'static,
    {
        let ready = Arc::new(Ready {
            queue: Mutex::new(Queue {
                inputs: std::collections::VecDeque::new(),
                ended: false,
                dropped: false,
            }),
            room: std::sync::Condvar::new(),
            filled: tokio::sync::Notify::new(),
            ahead: ahead.max(1),
        });
        let reading = ready.clone();
        let panicked_too = panicked.clone();
        let mut inputs = Some(inputs);
        // A thread of its own, not one of tokio's blocking pool: readers parked there (a map
        // waiting for its drivers, an iterator blocked on a socket) would take the threads that
        // thread-mode calls and `tokio::fs` need, and a runtime waits for them as it shuts down.
        let reader = std::thread::Builder::new().name("offload-map-inputs".into());
        let started = reader.spawn(move || {
            let mut index = 0;
            while let Some(input) = next_input(&mut inputs, &panicked) {
                // A panic of `prepare` (a `Serialize` impl of the caller's) is the caller's too.
                let input = match std::panic::catch_unwind(AssertUnwindSafe(|| prepare(input))) {
                    Ok(input) => input,
                    Err(payload) => {
                        *panicked.lock().unwrap_or_else(|p| p.into_inner()) = Some(payload);
                        break;
                    }
                };
                let mut queue = reading.lock();
                while queue.inputs.len() >= reading.ahead && !queue.dropped {
                    queue = reading.room.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.dropped {
                    return;
                }
                queue.inputs.push_back((index, input));
                drop(queue);
                reading.filled.notify_one();
                index += 1;
            }
            reading.lock().ended = true;
            reading.filled.notify_waiters();
        });
        if let Err(error) = started {
            // No thread for the iterator: the map ends at once, as if it had panicked.
            *panicked_too.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(format!(
                "offload: no thread to read a map's inputs on: {error}"
            )));
            let mut queue = ready.lock();
            queue.ended = true;
        }
        Inputs(ready)
    }

    /// The next input and its index, once the iterator gave it; `None` once it ended or
    /// panicked.
    pub(crate) async fn next(&self) -> Option<(usize, T)> {
        loop {
            let filled = self.0.filled.notified();
            tokio::pin!(filled);
            // Registered before the queue is read, so that no notification falls in between.
            filled.as_mut().enable();
            if let Some(taken) = self.taken() {
                return taken;
            }
            filled.await;
        }
    }

    /// The next input, if one is ready now.
    #[cfg(unix)]
    pub(crate) fn ready(&self) -> Option<(usize, T)> {
        self.0.take(&mut self.0.lock())
    }

    /// The next input, or `Some(None)` once none will come; `None` while the drivers must wait.
    fn taken(&self) -> Option<Option<(usize, T)>> {
        let mut queue = self.0.lock();
        match self.0.take(&mut queue) {
            Some(input) => Some(Some(input)),
            None => queue.ended.then_some(None),
        }
    }
}

impl<T> Ready<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, queue: &mut Queue<T>) -> Option<(usize, T)> {
        let input = queue.inputs.pop_front()?;
        if queue.inputs.len() == self.ahead / 2 {
            self.room.notify_one();
        }
        Some(input)
    }
}

impl<T> Drop for Inputs<T> {
    fn drop(&mut self) {
        self.0.lock().dropped = true;
        self.0.room.notify_one();
    }
}

/// The next item of the caller's iterator: its panic is kept for the caller (see
/// [`Map::next`]) rather than lost with the thread, and `None` is all it gives after.
fn next_input<I: Iterator>(inputs: &mut Option<I>, panicked: &Panicked) -> Option<I::Item> {
    let iterator = inputs.as_mut()?;
    match std::panic::catch_unwind(AssertUnwindSafe(|| iterator.next())) {
        Ok(Some(input)) => Some(input),
        Ok(None) => None,
        Err(payload) => {
            *inputs = None;
            *panicked.lock().unwrap_or_else(|p| p.into_inner()) = Some(payload);
            None
        }
    }
}
