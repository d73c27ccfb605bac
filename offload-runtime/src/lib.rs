//! The runtime behind the [`offload`](https://docs.rs/offload) crate: thread pools, worker
//! processes and the protocol between them. Depend on `offload`, not on this crate.
//!
//! The path of a process-mode call, folder by folder:
//! - `call`: the caller's side, for any transport: `call_in_process` and `f_map`'s `Map` encode
//!   the arguments, wait for their turn, run the call, retry or time it out, and decode.
//! - `function`: what a function is on both sides: its `FnSpec`, the registry workers look it
//!   up in, and the codec (byte strings in `bytes`, a bound on nesting in `depth`).
//! - `transport::broker` (the `nats` feature): calls published to NATS JetStream, and the
//!   agents on other hosts that pull them and run them on local pools of their own.
//! - `transport::local`: workers on this machine: the `pool` that admits, queues and leases,
//!   the `batch` of queued calls a lease sends along, the caller's end of a worker's channel
//!   (`conn`, frames laid out in `wire`), starting and reaping workers (`spawn`), and placing
//!   long calls on cores of their own (`placement`).
//! - `worker`: the other side: the guard (`serve_if_worker`), the marker a worker is started
//!   with, the local serving loop, and the code that runs one call.
//! - `sys`: descriptors and polling, memory shared with a worker, the executable image.
//!
//! `thread` is thread mode; `config`, `error`, `panic`, `stats` and `tuning` serve all of them.

mod config;
mod error;
mod map;
mod panic;
#[cfg(test)]
mod random;
mod thread;

// Process mode needs Unix (fork/exec with inherited pipes); elsewhere only thread mode
// exists, and a process-mode function fails to compile rather than at run time.
#[cfg(unix)]
mod call;
#[cfg(unix)]
mod function;
#[cfg(unix)]
mod stats;
#[cfg(unix)]
mod sys;
#[cfg(all(unix, feature = "tracing"))]
mod trace;
#[cfg(unix)]
mod transport;
#[cfg(unix)]
mod tuning;
#[cfg(unix)]
mod wire;
#[cfg(unix)]
mod worker;

#[cfg(not(unix))]
mod unsupported;

/// The NATS client broker pools are configured with (the `nats` feature).
#[cfg(all(unix, feature = "nats"))]
pub use async_nats;
pub use config::DEFAULT_POOL;
pub use error::{CodecStage, Error, Exit};
pub use map::Map;
#[cfg(unix)]
pub use stats::{FailedCalls, PoolStats};
pub use thread::{ThreadPool, ThreadPoolBuilder};
#[cfg(all(unix, feature = "nats"))]
pub use transport::broker::{BrokerPool, BrokerPoolBuilder};
#[cfg(unix)]
pub use transport::local::builder::{OnCancel, ProcessPoolBuilder};
#[cfg(unix)]
pub use transport::local::pool::ProcessPool;
#[cfg(unix)]
pub use worker::{serve_if_worker, serve_if_worker_with, WorkerSetup};

/// The worker guard. Without process mode (on this platform) there are no workers to serve, so
/// it returns at once, and `#[offload::main]` compiles everywhere.
#[cfg(not(unix))]
pub fn serve_if_worker() {}

/// The worker guard with a worker setup; without process mode, there is no worker to set up.
#[cfg(not(unix))]
pub fn serve_if_worker_with(_setup: &'static WorkerSetup) {}

#[cfg(not(unix))]
pub use unsupported::WorkerSetup;

/// Not public API: the items the `#[offload]` expansion calls.
#[doc(hidden)]
pub mod __private {
    #[cfg(unix)]
    pub use crate::call::typed::{Process, Untransferable};
    #[cfg(unix)]
    pub use crate::call::Remote;
    #[cfg(unix)]
    pub use crate::function::bytes::Bytes;
    #[cfg(unix)]
    pub use crate::function::{assert_transferable, fingerprint};
    pub use crate::thread::{call_in_thread, map_in_thread, Local};
    #[cfg(unix)]
    pub use crate::worker::{setup_outcome, SetupOutcome, TestSetup, WorkerSetup};
    pub use inventory;

    #[cfg(not(unix))]
    pub use crate::unsupported::{
        assert_transferable, fingerprint, setup_outcome, Bytes, Process, Remote, SetupOutcome,
        TestSetup, WorkerSetup,
    };
}
