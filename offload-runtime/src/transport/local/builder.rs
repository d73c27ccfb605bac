//! A process pool's settings: the builder users configure a pool with, and what a dropped call
//! does (`OnCancel`).

use std::path::PathBuf;
use std::time::Duration;

use crate::function::DEFAULT_MAX_DEPTH;
use crate::sys::poll::POLL_FOR;
use crate::wire::HEADER;

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
pub(super) struct PoolConfig {
    pub(super) workers: Option<usize>,
    pub(super) max_queue: usize,
    pub(super) handshake_timeout: Duration,
    pub(super) max_frame: usize,
    pub(super) max_depth: u32,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_calls_per_worker: Option<u64>,
    pub(super) max_worker_memory: Option<u64>,
    pub(super) max_address_space: Option<u64>,
    pub(super) max_cpu_per_call: Option<Duration>,
    /// `None` for the default: 16, and none for long calls.
    pub(super) max_batch: Option<usize>,
    pub(super) poll: Duration,
    /// `None` for the default: 10 once calls run long on the CPU.
    pub(super) nice: Option<u8>,
    /// Whether long calls wake their workers on cores of their own (see `cores.rs`).
    pub(super) spread: bool,
    pub(super) on_cancel: OnCancel,
    pub(super) program: Option<PathBuf>,
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
            max_address_space: None,
            max_cpu_per_call: None,
            max_batch: None,
            poll: POLL_FOR,
            nice: None,
            spread: true,
            on_cancel: OnCancel::Kill,
            program: None,
        }
    }
}

/// Settings for a [`ProcessPool`](crate::ProcessPool), applied with [`ProcessPoolBuilder::apply`].
#[must_use = "a builder does nothing until `apply` is called"]
pub struct ProcessPoolBuilder {
    pub(super) name: String,
    pub(super) config: PoolConfig,
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

    /// How deeply nested a value either side encodes or decodes, an argument or a result alike
    /// (default 1024 levels: each `Vec`, struct, tuple, map, enum or `Some` is one level down).
    /// Beyond it a call fails with [`Error::Codec`](crate::Error::Codec) instead of recursing: a
    /// value nested 100,000 deep would overflow the stack of the side that encodes it and of the
    /// side that decodes it, and bytes from a corrupt worker could ask for that with 100 kB. The
    /// side that would send a value too deep refuses it before sending any of it, at
    /// [`CodecStage::EncodeArguments`](crate::CodecStage::EncodeArguments) or
    /// [`EncodeResult`](crate::CodecStage::EncodeResult).
    pub fn max_depth(mut self, levels: u32) -> Self {
        self.config.max_depth = levels;
        self
    }

    /// Lets a worker that has waited this long for a call exit, giving its memory back (loky's
    /// `timeout`); the next call that needs a worker starts a fresh one. Default: workers wait
    /// for as long as the pool lives. An idle worker leaves with what it left in its process
    /// group, and is reaped when its slot is next used, or at shutdown.
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

    /// Caps each worker's address space at `bytes` (`RLIMIT_AS`; enforced on Linux), so that
    /// an input that makes a function allocate without end fails in its worker alone.
    ///
    /// An allocation past the cap fails in the worker: `Vec::try_reserve` and the like return
    /// an error the function can report, and a plain allocation aborts the worker, which fails
    /// the call with [`Error::WorkerDied`](crate::Error::WorkerDied); the pool starts a new one.
    /// The cap is set as the worker starts, before the program's worker setup runs, and
    /// counts address space reserved, not memory used: the program's code, thread stacks and
    /// the allocator's arenas count too, so leave room for them (a few tens of MiB for a plain
    /// program, and with glibc up to 64 MiB of arena for each thread a function starts). The
    /// region a worker shares with its caller for large arguments is not counted. To recycle
    /// workers that only grow, use [`max_worker_memory`](Self::max_worker_memory) instead.
    pub fn max_address_space(mut self, bytes: u64) -> Self {
        self.config.max_address_space = Some(bytes);
        self
    }

    /// Bounds the CPU time each call may use (`RLIMIT_CPU`, counted in whole seconds: `time` is
    /// rounded up, and a call may run up to a second more), so that an input that makes a
    /// function loop for ever is stopped. The kernel ends a worker that runs past it with
    /// SIGXCPU, and the call fails with [`Error::WorkerDied`](crate::Error::WorkerDied); the pool
    /// starts a new one. Only CPU time counts: a call that sleeps or waits is not stopped (use a
    /// `timeout` for that). Costs three system calls a call.
    pub fn max_cpu_per_call(mut self, time: Duration) -> Self {
        self.config.max_cpu_per_call = Some(time);
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

    /// Runs `program` as the worker instead of this program's own executable. It must be the same
    /// build: each worker sends a hash of its executable's bytes in its handshake, and a different
    /// one fails the call with [`Error::VersionMismatch`](crate::Error::VersionMismatch) (hashing
    /// costs a worker start about a millisecond per megabyte of executable).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.config.program = Some(program.into());
        self
    }
}
