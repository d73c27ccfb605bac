//! The process pool: admission, the queue of calls waiting for a worker, leases, recycling and
//! shutdown.
//!
//! A call is first admitted (at most `workers + max_queue` calls hold an encoded request at
//! once; the rest wait, in order, before encoding anything). Then it takes a free slot, a
//! [`Lease`] on one worker, or joins the queue. A lease ends by passing its slot, worker
//! included, to the first call still queued, so queued calls go to workers in arrival order. A
//! call that holds a lease takes queued calls along, sending them ahead of its own in one write
//! (see `process.rs`); a worker still runs one call at a time. Dropping a lease mid-call (a
//! timeout, a cancelled future) kills its worker, unless the pool lets cancelled calls finish;
//! the next call to need a worker starts a fresh one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore, SemaphorePermit};

use crate::config::{self, Pools};
use crate::error::Exit;
use crate::function::DEFAULT_MAX_DEPTH;
use crate::stats::{Counters, PoolStats};
use crate::sys::image::{self, Program};
use crate::sys::poll::POLL_FOR;
use crate::sys::shm::Region;
use crate::transport::local::conn::{Fault, Worker};
use crate::transport::local::placement::Placed;
use crate::transport::local::spawn;
use crate::tuning::LONG_CALL;
use crate::wire::{Kind, HEADER};
use crate::worker::{self, Marker};
use crate::Error;

static POOLS: Pools<PoolConfig, ProcessPool> = Pools::new();

/// A pool of worker processes, each a re-executed copy of this program.
///
/// Functions name their pool with `#[offload(process, pool = "heavy")]`; without `pool = …`
/// they use the pool called `"default"`. A pool starts its workers lazily, on the first call
/// that finds none idle, or all at once with [`ProcessPool::start`]. Its size comes from
/// [`ProcessPool::configure`], else from `OFFLOAD_WORKERS` (default pool) or
/// `OFFLOAD_WORKERS_<NAME>`, else the number of available cores.
///
/// A worker that dies fails only the call it was running, and the next call starts a
/// replacement. Calls waiting for a worker are never lost: they wait, in arrival order.
///
/// Once a pool's calls take over a millisecond on average, each call wakes its worker on the
/// core the fewest such calls of this process run on (Linux; see
/// [`spread`](ProcessPoolBuilder::spread)).
pub struct ProcessPool {
    name: String,
    config: PoolConfig,
    workers: usize,
    admission: Semaphore,
    state: Mutex<State>,
    broken: OnceLock<Error>,
    /// A moving average of how long calls take, in nanoseconds, replies included.
    call_nanos: AtomicU64,
    pub(crate) counters: Counters,
}

#[derive(Default)]
struct State {
    /// Slots no lease holds.
    free: usize,
    /// Calls waiting for a slot, in arrival order.
    queue: VecDeque<Waiting>,
    /// Boxed once, at launch, like the worker a lease holds: workers move between this list
    /// and leases, and a lease handed through the queue stays small.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Worker>>,
    /// Pids of the workers that leases hold, for [`ProcessPool::shutdown_now`] to kill.
    busy: Vec<u32>,
    /// Set by either shutdown: no new call is admitted.
    refusing: bool,
    /// Set by [`ProcessPool::shutdown_now`]: a worker that dies now was killed by it.
    killing: bool,
    /// Set once a shutdown is complete: no call gets a slot any more.
    closed: bool,
}

/// A call waiting in the queue, with its encoded frame.
pub(crate) struct Waiting {
    pub frame: Vec<u8>,
    /// Whether a lease holder may send this call ahead of its own (calls with a timeout wait
    /// for a worker of their own, so that their time runs only while they run).
    pub combine: bool,
    pub reply: oneshot::Sender<Turn>,
}

/// How a queued call's wait ends.
pub(crate) enum Turn {
    /// A slot of its own, with the caller's frame handed back.
    Lease(Lease, Vec<u8>),
    /// Another caller's lease ran the call: the reply's kind and payload.
    Answered(Kind, Vec<u8>),
    /// The call was running when its worker died.
    Died {
        pid: u32,
        exit: Exit,
        frame: Vec<u8>,
    },
    /// The call was sent behind one that failed and never started: queue it again.
    Again(Vec<u8>),
    /// The call failed for another reason.
    Failed(Error),
}

/// What happens to a running process-mode call whose future is dropped (a `select!` that took
/// another branch, a cancelled task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCancel {
    /// Kill the worker running it, so the work stops at once, and start a replacement when
    /// needed. The default.
    #[default]
    Kill,
    /// Let the worker finish the call and discard its result, keeping the worker. A call that
    /// times out is still killed: a timeout means the work must stop.
    Finish,
}

#[derive(Debug, Clone)]
struct PoolConfig {
    workers: Option<usize>,
    max_queue: usize,
    handshake_timeout: Duration,
    max_frame: usize,
    max_depth: u32,
    idle_timeout: Option<Duration>,
    max_calls_per_worker: Option<u64>,
    max_worker_memory: Option<u64>,
    /// `None` for the default: 16, and none for long calls.
    max_batch: Option<usize>,
    poll: Duration,
    /// `None` for the default: 10 once calls run long on the CPU.
    nice: Option<u8>,
    /// Whether long calls wake their workers on cores of their own (see `cores.rs`).
    spread: bool,
    on_cancel: OnCancel,
    program: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: None,
            max_queue: 4096,
            handshake_timeout: Duration::from_secs(5),
            max_frame: 1 << 30,
            max_depth: DEFAULT_MAX_DEPTH,
            idle_timeout: None,
            max_calls_per_worker: None,
            max_worker_memory: None,
            max_batch: None,
            poll: POLL_FOR,
            nice: None,
            spread: true,
            on_cancel: OnCancel::Kill,
            program: None,
        }
    }
}

/// Settings for a [`ProcessPool`], applied with [`ProcessPoolBuilder::apply`].
#[must_use = "a builder does nothing until `apply` is called"]
pub struct ProcessPoolBuilder {
    name: String,
    config: PoolConfig,
}

impl ProcessPoolBuilder {
    /// Runs at most `count` worker processes (and so `count` calls) at once.
    pub fn workers(mut self, count: usize) -> Self {
        self.config.workers = Some(count);
        self
    }

    /// How many calls may wait, encoded, for a worker (default 4096). Callers beyond that wait
    /// before encoding their arguments, so memory stays bounded however many calls are made.
    pub fn max_queue(mut self, count: usize) -> Self {
        self.config.max_queue = count;
        self
    }

    /// How long a new worker may take to start and announce itself (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// The largest frame either side accepts, in bytes (default 1 GiB): it bounds the encoded
    /// arguments and the encoded result of one call.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.min(u32::MAX as usize - HEADER);
        self
    }

    /// How deeply nested a value either side decodes (default 1024 levels: each `Vec`, struct,
    /// tuple, map, enum or `Some` is one level down). Beyond it a call fails with
    /// [`Error::Codec`] instead of recursing: a result nested 100,000 deep would overflow the
    /// caller's stack, and bytes from a corrupt worker could ask for that with 100 kB.
    pub fn max_depth(mut self, levels: u32) -> Self {
        self.config.max_depth = levels;
        self
    }

    /// Lets a worker that has waited this long for a call exit, giving its memory back (loky's
    /// `timeout`); the next call that needs a worker starts a fresh one. Default: workers wait
    /// for as long as the pool lives. An idle worker that left is reaped when its slot is next
    /// used, or at shutdown.
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.config.idle_timeout = Some(after);
        self
    }

    /// Replaces a worker after it has served `count` calls, as a guard against leaks.
    pub fn max_calls_per_worker(mut self, count: u64) -> Self {
        self.config.max_calls_per_worker = Some(count);
        self
    }

    /// Replaces a worker whose resident memory exceeds `bytes` after a call (Linux).
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.config.max_worker_memory = Some(bytes);
        self
    }

    /// How many queued calls a worker is sent in one write when calls queue up (default 16).
    /// It runs them one after the other; a call that finds every worker busy would wait anyway,
    /// and batching saves system calls. Unless this is set, calls that have lately taken over a
    /// millisecond are not batched: the system calls saved would not show, and a worker slowed
    /// down would hold calls that another could run. `1` sends one call at a time, so a queued
    /// call always goes to the first worker to finish, whatever the others run.
    pub fn max_batch(mut self, calls: usize) -> Self {
        self.config.max_batch = Some(calls.max(1));
        self
    }

    /// How long a caller polls for a reply, and a worker for the next call, before sleeping
    /// (default 50 µs); `Duration::ZERO` turns polling off.
    ///
    /// Waking a sleeping process costs tens of microseconds when it sits on another core, more
    /// than a small call itself, so while calls come one after another and no call waits for a
    /// worker, both ends keep an eye on their pipe for that long. Polling stops by itself after
    /// a few polls in a row that did not pay (a slow function, a caller that pauses between
    /// calls), but for one try every 16 waits, and it never takes a core a worker is waiting
    /// for. Turn it off where spare CPU time is worth more than a call's latency.
    pub fn poll(mut self, window: Duration) -> Self {
        self.config.poll = window;
        self
    }

    /// How far below the caller's scheduling priority workers run, as a nice increment (0 to
    /// 19; Unix).
    ///
    /// By default a worker lowers its priority by 10 for good once its calls use over a
    /// millisecond of CPU time each (two such calls in a row; a call that only waited does not
    /// count): CPU-heavy work then gives way to the caller's event loop and to anything else at
    /// normal priority whenever both want a core, and runs at full speed otherwise.
    /// Workers that only ever run short calls keep the caller's priority, so small calls keep
    /// their throughput when the caller is busy too. Setting it applies the increment to every
    /// worker from its start instead; `nice(0)` keeps workers at the caller's priority.
    pub fn nice(mut self, increment: u8) -> Self {
        self.config.nice = Some(increment.min(19));
        self
    }

    /// Whether long calls wake their workers on cores of their own (default `true`; Linux).
    ///
    /// A pipe write wakes its reader on the writer's core unless a core is idle at that instant, so
    /// when the caller's threads are busy sending several calls, two workers can wake on one core
    /// and share it while another core idles for up to a scheduler tick. So once the pool's calls
    /// take over a millisecond on average, each call first narrows its worker's affinity to the
    /// core the fewest such calls of this process run on, and the worker widens it back to what it
    /// started with as the call starts. A core where a call placed alone had under a quarter of the
    /// CPU, because other work keeps it busy, is left out for a second, and longer if that happens
    /// again. Widening also undoes any affinity the function's own code gave its worker:
    /// `spread(false)` leaves workers where the kernel and the function put them.
    pub fn spread(mut self, spread: bool) -> Self {
        self.config.spread = spread;
        self
    }

    /// What happens to a running call whose future is dropped; see [`OnCancel`].
    pub fn on_cancel(mut self, policy: OnCancel) -> Self {
        self.config.on_cancel = policy;
        self
    }

    /// Runs `program` as the worker instead of this program's own executable. It must be the
    /// same build: each worker sends a hash of its executable's bytes in its handshake, and a
    /// different one fails the call with [`Error::VersionMismatch`] (hashing costs a worker start
    /// about a millisecond per megabyte of executable).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.config.program = Some(program.into());
        self
    }

    /// Records the settings; an error if the pool already served a call or a count is zero.
    pub fn apply(self) -> Result<(), Error> {
        let zero = |what: &str| Error::Config {
            detail: format!("process pool `{}` needs {what}", self.name),
        };
        if self.config.workers == Some(0) {
            return Err(zero("at least one worker"));
        }
        if self.config.max_calls_per_worker == Some(0) {
            return Err(zero("at least one call per worker"));
        }
        POOLS.configure(&self.name, self.config)
    }
}

impl ProcessPool {
    /// Starts configuring the pool called `name`; call before the pool's first call.
    pub fn configure(name: &str) -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            name: name.to_owned(),
            config: PoolConfig::default(),
        }
    }

    /// The pool called `name`, built from its configuration on first use (without starting
    /// any worker).
    pub fn get(name: &str) -> Result<&'static ProcessPool, Error> {
        POOLS.get(name, |config| {
            let config = config.unwrap_or_default();
            let var = config::env_var("OFFLOAD_WORKERS", name);
            let workers = config::size(config.workers, &var, config::cores())?;
            Ok(ProcessPool {
                name: name.to_owned(),
                workers,
                admission: Semaphore::new(workers.saturating_add(config.max_queue)),
                state: Mutex::new(State {
                    free: workers,
                    ..State::default()
                }),
                broken: OnceLock::new(),
                call_nanos: AtomicU64::new(0),
                counters: Counters::default(),
                config,
            })
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the pool has done so far, and what it is doing: see [`PoolStats`].
    pub fn stats(&self) -> PoolStats {
        let (queued, running) = {
            let state = self.lock();
            (state.queue.len(), state.busy.len())
        };
        self.counters.snapshot(queued, running)
    }

    /// How many worker processes the pool runs at most.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Starts every worker now rather than on demand, so that the first calls do not pay for
    /// process start-up. Returns once all of them completed their handshake.
    pub async fn start(&'static self) -> Result<(), Error> {
        let mut leases = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            leases.spawn(self.lease());
        }
        let mut held = Vec::with_capacity(self.workers);
        while let Some(lease) = leases.join_next().await {
            held.push(lease.map_err(|_| Error::Shutdown)??);
        }
        Ok(())
    }

    /// Stops the pool gracefully: new calls fail with [`Error::Shutdown`], calls already
    /// running or queued finish, then every worker exits and is reaped.
    pub async fn shutdown(&self) {
        self.lock().refusing = true;
        let total =
            u32::try_from(self.workers.saturating_add(self.config.max_queue)).unwrap_or(u32::MAX);
        if let Ok(all) = self.admission.acquire_many(total).await {
            all.forget();
        }
        self.close().await;
    }

    /// Stops the pool at once: queued and running calls fail with [`Error::Shutdown`], running
    /// workers are killed, idle ones exit; all are reaped.
    pub async fn shutdown_now(&self) {
        let (busy, queued) = {
            let mut state = self.lock();
            state.refusing = true;
            state.killing = true;
            state.closed = true;
            (
                std::mem::take(&mut state.busy),
                std::mem::take(&mut state.queue),
            )
        };
        // Dropping a queued call's sender ends its wait with `Error::Shutdown`.
        drop(queued);
        for pid in busy {
            // SAFETY: kill has no memory-safety preconditions; the pid is a worker this pool
            // started and has not reaped (reaping happens only after its lease ends).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        self.close().await;
    }

    async fn close(&self) {
        self.admission.close();
        let idle = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        for worker in idle {
            worker.stop().await;
        }
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.config.max_frame
    }

    pub(crate) fn max_depth(&self) -> u32 {
        self.config.max_depth
    }

    /// Whether a worker that just died was killed by [`ProcessPool::shutdown_now`].
    pub(crate) fn killed_by_shutdown(&self) -> bool {
        self.lock().killing
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits, in arrival order, until the call may encode its request.
    pub(crate) async fn admit(&self) -> Result<SemaphorePermit<'_>, Error> {
        if self.lock().refusing {
            return Err(Error::Shutdown);
        }
        self.admission.acquire().await.map_err(|_| Error::Shutdown)
    }

    /// Takes a free slot, or waits in the queue until a lease passes one on or runs the call.
    pub(crate) async fn turn(&'static self, frame: Vec<u8>, combine: bool) -> Result<Turn, Error> {
        let receiver = {
            let mut state = self.lock();
            if state.closed {
                return Err(Error::Shutdown);
            }
            if state.free > 0 {
                state.free -= 1;
                return Ok(Turn::Lease(Lease::slot(self), frame));
            }
            let (reply, receiver) = oneshot::channel();
            state.queue.push_back(Waiting {
                frame,
                combine,
                reply,
            });
            receiver
        };
        // The sender goes away unanswered only when a forceful shutdown empties the queue.
        receiver.await.map_err(|_| Error::Shutdown)
    }

    /// A lease with a started worker, for work that is not one call (a map driver, `start`).
    pub(crate) async fn lease(&'static self) -> Result<Lease, Error> {
        let Turn::Lease(mut lease, _) = self.turn(Vec::new(), false).await? else {
            unreachable!("a queued entry that may not be combined is only ever passed a slot")
        };
        lease.ensure_worker().await?;
        Ok(lease)
    }

    /// Queued calls from the head of the queue, to send ahead of another: at most `count`, at
    /// most this worker's share of the queue, and none while the queue is no longer than the
    /// number of workers, so that calls started together spread over the workers instead of
    /// piling onto the first one free. Batches form only when calls really pile up.
    ///
    /// Nor, unless the pool's `max_batch` was set, while recent calls took over [`LONG_CALL`]:
    /// batching them saves nothing worth having, and a worker that turns out slow keeps calls
    /// another could have run.
    pub(crate) fn adopt(&self, count: usize) -> VecDeque<Waiting> {
        if self.calls_run_long() && self.config.max_batch.is_none() {
            return VecDeque::new();
        }
        let mut state = self.lock();
        let queued = state.queue.len();
        let count = if queued > self.workers {
            count.min(queued.div_ceil(self.workers))
        } else {
            0
        };
        let mut taken = VecDeque::new();
        while taken.len() < count {
            match state.queue.front() {
                Some(entry) if entry.reply.is_closed() => drop(state.queue.pop_front()),
                Some(entry) if entry.combine => taken.extend(state.queue.pop_front()),
                _ => break,
            }
        }
        taken
    }

    /// Whether calls have lately taken over [`LONG_CALL`] on average.
    fn calls_run_long(&self) -> bool {
        self.call_nanos.load(Ordering::Relaxed) > LONG_CALL.as_nanos() as u64
    }

    /// Folds one call's time into the pool's moving average (an eighth of the way).
    fn note_call_time(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let average = self.call_nanos.load(Ordering::Relaxed);
        let average = average - average / 8 + took / 8;
        self.call_nanos.store(average, Ordering::Relaxed);
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.config.max_batch.unwrap_or(16)
    }

    pub(crate) fn on_cancel(&self) -> OnCancel {
        self.config.on_cancel
    }

    /// A worker for a lease that has none: an idle one, or one started now.
    async fn worker(&self) -> Result<Box<Worker>, Error> {
        let idle = {
            let mut state = self.lock();
            let worker = state.idle.pop();
            if let Some(worker) = &worker {
                state.busy.push(worker.pid());
            }
            worker
        };
        if let Some(worker) = idle {
            return Ok(worker);
        }
        let worker = Box::pin(self.launch()).await?;
        self.lock().busy.push(worker.pid());
        Ok(worker)
    }

    /// Passes a slot that a lease gives up, with its worker if it is fit to go on, to the first
    /// call still queued; with none queued, the slot is free and the worker idle.
    fn release(&'static self, worker: Option<Box<Worker>>) {
        let mut worker = worker.and_then(|worker| self.keep(worker));
        loop {
            let entry = {
                let mut state = self.lock();
                let Some(entry) = state.queue.pop_front() else {
                    state.free += 1;
                    if let Some(worker) = worker.take() {
                        state.busy.retain(|pid| *pid != worker.pid());
                        if state.closed {
                            drop(state);
                            self.retire(worker);
                        } else {
                            state.idle.push(worker);
                        }
                    }
                    return;
                };
                entry
            };
            let mut lease = Lease::slot(self);
            lease.worker = worker.take();
            match entry.reply.send(Turn::Lease(lease, entry.frame)) {
                Ok(()) => return,
                // That caller is gone: take the slot back and try the next one.
                Err(Turn::Lease(mut lease, _)) => {
                    worker = lease.worker.take();
                    lease.holds_slot = false;
                }
                Err(_) => unreachable!("only a lease was sent"),
            }
        }
    }

    /// The worker back from a lease, unless it is due for replacement.
    fn keep(&self, worker: Box<Worker>) -> Option<Box<Worker>> {
        let worn_out = self
            .config
            .max_calls_per_worker
            .is_some_and(|max| worker.calls_sent() >= max)
            || self
                .config
                .max_worker_memory
                .is_some_and(|max| worker.resident_bytes().is_some_and(|rss| rss > max));
        if worn_out {
            self.counters.worker_recycled();
            self.forget(worker.pid());
            self.retire(worker);
            return None;
        }
        Some(worker)
    }

    /// Lets a worker go: it is told to exit, and reaped, in the background.
    fn retire(&self, worker: Box<Worker>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(worker.stop())),
            // Without a runtime, dropping it kills and reaps it.
            Err(_) => drop(worker),
        }
    }

    async fn launch(&self) -> Result<Box<Worker>, Error> {
        if let Some(error) = self.broken.get() {
            return Err(error.clone());
        }
        let from_ctor = worker::entry().map_err(|e| self.break_with(e))?;
        let program = self.program()?;
        let marker = Marker {
            from_ctor,
            max_frame: self.config.max_frame,
            shared: self.config.max_frame,
            poll_micros: u64::try_from(self.config.poll.as_micros()).unwrap_or(u64::MAX),
            nice: self.config.nice,
            pipes: [0, 0],
            // A worker started from this process's own image is its build by construction.
            prove_build: self.config.program.is_some(),
            max_depth: self.config.max_depth,
            idle_ms: self.config.idle_timeout.map_or(0, |idle| {
                u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
        };
        let shown = program.name.display().to_string();
        let failed = |e: std::io::Error| {
            Error::start_failed(format!("cannot run {shown}: {e}")).caused_by(e)
        };
        let prove_build = marker.prove_build;
        let (process, ends, region) = spawn::spawn(program, marker).await.map_err(failed)?;
        let pid = process.pid;
        let mut worker =
            Box::new(Worker::new(process, ends, region, self.config.poll).map_err(failed)?);
        let limit = self.config.handshake_timeout;
        match tokio::time::timeout(limit, worker.handshake(prove_build)).await {
            Ok(Ok(())) => {
                self.counters.worker_started();
                Ok(worker)
            }
            Ok(Err(Fault::Refused(error))) => Err(self.break_with(error)),
            Ok(Err(Fault::Protocol(detail))) => Err(Error::Protocol { detail }),
            Ok(Err(Fault::Died | Fault::DiedIdle)) => Err(Error::start_failed(format!(
                "the worker (pid {pid}) ended with {} before its handshake; its output above \
                 may say why",
                worker.exit().await
            ))),
            Err(_) => Err(Error::start_failed(format!(
                "the worker (pid {pid}) did not complete its handshake within {limit:?}; make \
                 sure the offload guard runs first in main (#[offload::main] or \
                 offload::serve_if_worker()), before any other work"
            ))),
        }
    }

    /// What workers run: this program's image, or the pool's `program`.
    fn program(&self) -> Result<Program, Error> {
        match &self.config.program {
            Some(path) => Ok(Program {
                path: path.clone(),
                name: path.clone(),
            }),
            None => image::this_program().map_err(|e| self.break_with(e)),
        }
    }

    /// Remembers an error that every later start would repeat, so that queued calls fail fast.
    fn break_with(&self, error: Error) -> Error {
        if matches!(
            error,
            Error::GuardMissing | Error::VersionMismatch { .. } | Error::WorkerSetup { .. }
        ) {
            let _ = self.broken.set(error.clone());
        }
        error
    }

    fn forget(&self, pid: u32) {
        self.lock().busy.retain(|p| *p != pid);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ready,
    Sending,
    Awaiting,
}

/// A slot, and the worker in it once there is one, held by one call (or one map driver).
pub(crate) struct Lease {
    pool: &'static ProcessPool,
    worker: Option<Box<Worker>>,
    phase: Phase,
    /// The core the worker was woken on for a long call, until its replies are in.
    placed: Option<Placed>,
    kill: bool,
    /// Cleared when the slot was passed on some other way; the drop then leaves it alone.
    holds_slot: bool,
}

impl Lease {
    fn slot(pool: &'static ProcessPool) -> Lease {
        Lease {
            pool,
            worker: None,
            phase: Phase::Ready,
            placed: None,
            kill: false,
            holds_slot: true,
        }
    }

    /// Makes sure the slot has a worker, starting one if need be.
    pub(crate) async fn ensure_worker(&mut self) -> Result<(), Error> {
        if self.worker.is_none() {
            self.worker = Some(self.pool.worker().await?);
        }
        Ok(())
    }

    /// How many more calls the worker in this slot may be sent before it is replaced (see
    /// [`ProcessPoolBuilder::max_calls_per_worker`]); `None` for no limit. A slot without a
    /// worker yet will get a fresh one.
    pub(crate) fn calls_left(&self) -> Option<u64> {
        let max = self.pool.config.max_calls_per_worker?;
        let sent = self.worker.as_ref().map_or(0, |worker| worker.calls_sent());
        Some(max.saturating_sub(sent))
    }

    /// Whether a call sent now should poll for its reply (see `poll.rs`): only while no other
    /// call waits for a worker. When some do, the caller's thread has their tasks to run
    /// instead, and the workers their calls.
    pub(crate) fn worth_polling(&self) -> bool {
        let pool = self.pool;
        let admitted = pool.workers + pool.config.max_queue - pool.admission.available_permits();
        admitted <= pool.workers && !pool.config.poll.is_zero()
    }

    /// Sends calls, one frame or several back to back, to be answered in order; with
    /// `polling`, the caller polls for the replies before it sleeps.
    pub(crate) async fn send(&mut self, frames: &mut [u8], polling: bool) -> Result<(), Fault> {
        let worker = self
            .worker
            .as_mut()
            .expect("a worker was ensured before sending");
        self.phase = Phase::Sending;
        let placed =
            (self.placed.is_none() && self.pool.config.spread && self.pool.calls_run_long())
                .then(|| Placed::narrow(worker.pid(), worker.placed_ended()))
                .flatten();
        worker.send(frames, polling, placed.is_some()).await?;
        self.placed = self.placed.take().or(placed);
        self.phase = Phase::Awaiting;
        Ok(())
    }

    /// Reads the reply to the oldest unanswered call; its payload is then in [`Lease::reply`].
    pub(crate) async fn receive(&mut self) -> Result<Kind, Fault> {
        let worker = self
            .worker
            .as_mut()
            .expect("a worker was ensured before sending");
        let kind = worker.receive(self.pool.config.max_frame).await?;
        if let Some(took) = worker.time_per_call() {
            self.pool.note_call_time(took);
        }
        if worker.outstanding() == 0 {
            self.phase = Phase::Ready;
            if let Some(placed) = self.placed.take() {
                placed.finish(worker.placed_ended());
            }
        }
        Ok(kind)
    }

    pub(crate) fn reply(&self) -> &[u8] {
        self.worker.as_ref().expect("a reply was received").reply()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.worker.as_ref().map_or(0, |worker| worker.pid())
    }

    /// The memory shared with the worker, if it has any.
    pub(crate) fn region(&mut self) -> Option<&mut Region> {
        self.worker.as_mut()?.region()
    }

    /// Whether a frame may be half written: dropped now, the worker cannot be used again.
    pub(crate) fn is_sending(&self) -> bool {
        self.phase == Phase::Sending
    }

    /// Makes dropping this lease mid-call kill the worker whatever the pool's [`OnCancel`].
    pub(crate) fn kill_if_dropped(&mut self) {
        self.kill = true;
    }

    /// Gives up a worker that died, passing the slot on, and says how the worker ended.
    pub(crate) async fn exit(mut self) -> Exit {
        let worker = self.worker.take();
        if let Some(worker) = &worker {
            self.pool.forget(worker.pid());
        }
        drop(self);
        match worker {
            Some(worker) => worker.exit().await,
            None => Exit::Unknown,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.holds_slot {
            return;
        }
        let pool = self.pool;
        let Some(worker) = self.worker.take() else {
            pool.release(None);
            return;
        };
        match self.phase {
            Phase::Ready => pool.release(Some(worker)),
            Phase::Awaiting if !self.kill && pool.config.on_cancel == OnCancel::Finish => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    pool.forget(worker.pid());
                    pool.release(None);
                    return;
                };
                runtime.spawn(async move {
                    let mut worker = worker;
                    let mut finished = Ok(());
                    while finished.is_ok() && worker.outstanding() > 0 {
                        finished = worker.receive(pool.config.max_frame).await.map(|_| ());
                    }
                    match finished {
                        Ok(()) => pool.release(Some(worker)),
                        Err(_) => {
                            pool.forget(worker.pid());
                            pool.release(None);
                        }
                    }
                });
            }
            // Mid-call, with no way to finish: the worker's state is unknown, so it is killed
            // (dropping a `Worker` kills and reaps its process).
            Phase::Sending | Phase::Awaiting => {
                pool.forget(worker.pid());
                drop(worker);
                pool.release(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-worker pool with `queued` calls waiting, and the callers' ends of their replies,
    /// kept open as callers still waiting would keep them.
    fn pool_with_queue(
        max_batch: Option<usize>,
        queued: usize,
    ) -> (ProcessPool, Vec<oneshot::Receiver<Turn>>) {
        let pool = ProcessPool {
            name: "test".to_owned(),
            workers: 2,
            admission: Semaphore::new(2),
            state: Mutex::new(State::default()),
            broken: OnceLock::new(),
            call_nanos: AtomicU64::new(0),
            counters: Counters::default(),
            config: PoolConfig {
                max_batch,
                ..PoolConfig::default()
            },
        };
        let callers = (0..queued)
            .map(|_| {
                let (reply, caller) = oneshot::channel();
                pool.lock().queue.push_back(Waiting {
                    frame: Vec::new(),
                    combine: true,
                    reply,
                });
                caller
            })
            .collect();
        (pool, callers)
    }

    #[test]
    fn short_calls_are_taken_along_and_long_ones_only_when_asked_for() {
        let (pool, _callers) = pool_with_queue(None, 10);
        assert_eq!(pool.adopt(15).len(), 5, "a worker's share of the queue");
        pool.note_call_time(Duration::from_millis(20));
        assert!(
            pool.adopt(15).is_empty(),
            "calls now take 2.5 ms on average"
        );
        for _ in 0..64 {
            pool.note_call_time(Duration::from_micros(10));
        }
        assert_eq!(pool.adopt(15).len(), 3, "short again: 5 left, a share is 3");

        let (asked, _callers) = pool_with_queue(Some(4), 10);
        asked.note_call_time(Duration::from_secs(1));
        assert_eq!(asked.adopt(asked.max_batch() - 1).len(), 3);
    }
}
