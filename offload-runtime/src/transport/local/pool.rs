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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

use super::builder::{OnCancel, PoolConfig, ProcessPoolBuilder};
use super::placement::Placed;
use crate::config::{self, Pools};
use crate::error::Exit;
use crate::function::Table;
use crate::stats::{Counters, PoolStats};
use crate::sys::image::{self, Program};
use crate::sys::shm::Region;
use crate::transport::local::conn::{Fault, Worker};
use crate::transport::local::spawn;
use crate::tuning::LONG_CALL;
use crate::wire::Kind;
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
    pub(super) name: String,
    pub(super) config: PoolConfig,
    pub(super) workers: usize,
    pub(super) admission: Semaphore,
    pub(super) state: Mutex<State>,
    pub(super) broken: OnceLock<Error>,
    /// A moving average of how long calls take, in nanoseconds, replies included.
    pub(super) call_nanos: AtomicU64,
    pub(crate) counters: Counters,
}

#[derive(Default)]
pub(super) struct State {
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

impl ProcessPoolBuilder {
    /// Records the settings; an error if the pool already served a call, a count is zero, or
    /// no process-mode function of the program uses the pool (a typo of its name).
    pub fn apply(self) -> Result<(), Error> {
        Table::get().check_pool(&self.name)?;
        let zero = |what: &str| Error::Config {
            detail: format!("process pool `{}` needs {what}", self.name),
        };
        if self.config.workers == Some(0) {
            return Err(zero("at least one worker"));
        }
        if self.config.max_calls_per_worker == Some(0) {
            return Err(zero("at least one call per worker"));
        }
        if self.config.max_address_space == Some(0) {
            return Err(zero("some address space per worker"));
        }
        if self.config.max_cpu_per_call == Some(Duration::ZERO) {
            return Err(zero("some CPU time per call"));
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
    /// any worker); an error if no process-mode function of the program uses it, as for
    /// [`ProcessPoolBuilder::apply`].
    pub fn get(name: &str) -> Result<&'static ProcessPool, Error> {
        POOLS.get(name, |config| {
            Table::get().check_pool(name)?;
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

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a call waits on, in arrival order, until it may encode its request; `Shutdown` once
    /// the pool refuses calls.
    pub(crate) fn admission(&'static self) -> Result<&'static Semaphore, Error> {
        if self.lock().refusing {
            return Err(Error::Shutdown);
        }
        Ok(&self.admission)
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
    pub(super) fn calls_run_long(&self) -> bool {
        self.call_nanos.load(Ordering::Relaxed) > LONG_CALL.as_nanos() as u64
    }

    /// Folds one call's time into the pool's moving average (an eighth of the way).
    pub(super) fn note_call_time(&self, took: Duration) {
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
    pub(super) async fn worker(&self) -> Result<Box<Worker>, Error> {
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
    pub(super) fn release(&'static self, worker: Option<Box<Worker>>) {
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
            address_space: self.config.max_address_space.unwrap_or(0),
            cpu_seconds: self
                .config
                .max_cpu_per_call
                .map_or(0, |cpu| cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0)),
        };
        let shown = program.name.display().to_string();
        let failed = |e: std::io::Error| {
            let fix = match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => {
                    "; each worker holds a few descriptors: raise the open-files limit \
                     (ulimit -n) or give the pool fewer workers"
                }
                Some(libc::EAGAIN) => {
                    "; the system or this user may start no more processes: raise the limit \
                     (ulimit -u) or give the pool fewer workers"
                }
                Some(libc::ENOMEM) => "; the system is out of memory for another process",
                _ => "",
            };
            Error::start_failed(format!("cannot run {shown}: {e}{fix}")).caused_by(e)
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
            Err(_) => Err(Error::start_failed(match worker::setup::name() {
                // The likelier cause, where there is one: the setup runs before the handshake.
                Some(setup) => format!(
                    "the worker (pid {pid}) did not complete its handshake within {limit:?}; \
                     its setup `{setup}` runs first: give it longer with the pool's \
                     handshake_timeout (ProcessPool::configure(..).handshake_timeout(..))"
                ),
                None => format!(
                    "the worker (pid {pid}) did not complete its handshake within {limit:?}; \
                     make sure the offload guard runs first in main (#[offload::main] or \
                     offload::serve_if_worker()), before any other work, or give it longer \
                     with the pool's handshake_timeout"
                ),
            })),
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

    pub(super) fn forget(&self, pid: u32) {
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
