//! The runtime behind the [`offload`](https://docs.rs/offload) crate: thread pools, worker
//! processes and the protocol between them. Depend on `offload`, not on this crate.
//!
//! The path of a process-mode call, file by file: `process` encodes the arguments (large ones
//! into the region in `shared`, byte strings as in `bytes`) and waits in the `pool` for a
//! worker, which the pool starts with `launch` from the executable `image` names; the `batch`
//! that holds a worker sends its calls,
//! and those it took along, through the `channel`, in frames laid out in `wire`, a long call
//! first narrowing its worker to a core of its own with `cores`; on the other side the `worker`
//! decodes and runs the function it finds in the `registry`, catching panics with `panic`, and
//! sends the replies back. Both ends ask `poll` whether to poll for the next message before
//! sleeping. Both ends decode values with `depth`, which bounds how deep they nest. `map`
//! drives many inputs the same way; `thread` is thread mode; `config` and `error` serve both.

mod config;
mod error;
mod panic;
mod thread;
#[cfg(unix)]
mod tuning;

// Process mode needs Unix (fork/exec with inherited pipes); elsewhere only thread mode
// exists, and a process-mode function fails to compile rather than at run time.
#[cfg(unix)]
mod registry;
#[cfg(unix)]
mod wire;

#[cfg(unix)]
mod batch;
#[cfg(unix)]
mod bytes;
#[cfg(unix)]
mod channel;
#[cfg(unix)]
mod cores;
#[cfg(unix)]
mod depth;
#[cfg(unix)]
mod image;
#[cfg(unix)]
mod launch;
#[cfg(unix)]
mod map;
#[cfg(unix)]
mod poll;
#[cfg(unix)]
mod pool;
#[cfg(unix)]
mod process;
#[cfg(unix)]
mod shared;
#[cfg(unix)]
mod worker;

#[cfg(not(unix))]
mod unsupported;

pub use config::DEFAULT_POOL;
pub use error::{CodecStage, Error, Exit};
#[cfg(unix)]
pub use map::Map;
#[cfg(unix)]
pub use pool::{OnCancel, ProcessPool, ProcessPoolBuilder};
pub use thread::{ThreadPool, ThreadPoolBuilder};
#[cfg(not(unix))]
#[doc(hidden)]
pub use unsupported::Map;
#[cfg(unix)]
pub use worker::serve_if_worker;

/// The worker guard. Without process mode (on this platform) there are no workers to serve, so
/// it returns at once, and `#[offload::main]` compiles everywhere.
#[cfg(not(unix))]
pub fn serve_if_worker() {}

/// Not public API: the items the `#[offload]` expansion calls.
#[doc(hidden)]
pub mod __private {
    #[cfg(unix)]
    pub use crate::bytes::Bytes;
    #[cfg(unix)]
    pub use crate::map::map_in_process;
    #[cfg(unix)]
    pub use crate::process::{call_in_process, Remote};
    #[cfg(unix)]
    pub use crate::registry::{assert_transferable, fingerprint, invoke, Outcome, Registration};
    pub use crate::thread::{call_in_thread, Local};
    #[cfg(unix)]
    pub use crate::worker::TestSetup;
    pub use inventory;

    #[cfg(not(unix))]
    pub use crate::unsupported::{
        assert_transferable, call_in_process, fingerprint, invoke, map_in_process, Bytes,
        Registration, Remote, TestSetup,
    };
}
