//! The worker side: the guard that turns a re-executed copy of the program into a worker, the
//! marker it is started with, the loop that serves a local pool's calls, the resource limits it
//! serves them under, the code that runs one call, and what becomes of the processes it starts.

mod boot;
mod exec;
mod group;
mod guard;
mod limits;
mod serve;
pub(crate) mod setup;

pub(crate) use boot::{Marker, CALLS_FD, MARKER, REPLIES_FD};
pub(crate) use guard::entry;
pub use guard::{serve_if_worker, serve_if_worker_with};
pub use setup::{setup_outcome, SetupOutcome, TestSetup, WorkerSetup};
