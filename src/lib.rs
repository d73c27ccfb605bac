//! Run blocking and CPU-heavy functions from async Rust without stalling the event loop, with
//! one attribute.
//!
//! ```no_run
//! use offload::offload;
//!
//! /// CPU-heavy: runs in a worker process, a copy of this program.
//! #[offload(process)]
//! fn count_primes(below: u64) -> usize {
//!     (2..below).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0)).count()
//! }
//!
//! /// Blocking I/O: runs on a thread of tokio's blocking pool.
//! #[offload(thread)]
//! fn read_config(path: String) -> std::io::Result<String> {
//!     std::fs::read_to_string(path)
//! }
//!
//! #[offload::main] // the worker guard; see below
//! #[tokio::main]
//! async fn main() -> Result<(), offload::Error> {
//!     let (primes, config) = tokio::join!(count_primes(100_000), read_config("app.toml".into()));
//!     println!("{} primes; config read: {}", primes?, config?.is_ok());
//!     Ok(())
//! }
//! ```
//!
//! # The attribute
//!
//! `#[offload(thread)]` and `#[offload(process)]` turn a synchronous `fn f(a: A) -> R` into
//! `async fn f(a: A) -> Result<R, offload::Error>`, so no call site changes when a function
//! switches modes (process mode also needs serde's traits on the types that cross). The
//! function's own return value is never folded into [`Error`]: a function returning
//! `Result<T, E>` gives `Result<Result<T, E>, offload::Error>`.
//!
//! The body itself stays callable, unchanged, as `f_blocking(a)`: for synchronous callers and
//! unit tests. Visibility, doc comments and attributes are kept. A free function also gets
//! `f_map(inputs)`, in either mode, which runs it once per input and yields the results as they
//! complete, through a [`Map`]: a `futures` `Stream`, so stream combinators work on it.
//!
//! Methods: put `#[offload]` (without a mode) on the `impl` block as well, so that the expansion
//! knows the type; then `self` by value, associated functions and, in thread mode, generic
//! blocks all work:
//!
//! ```no_run
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize)]
//! struct Matrix(Vec<f64>);
//!
//! #[offload::offload]
//! impl Matrix {
//!     #[offload(process)]
//!     fn trace(self) -> f64 {
//!         self.0.iter().step_by(4).sum()
//!     }
//! }
//! # #[offload::main] #[tokio::main] async fn main() { let _ = Matrix(vec![1.0]).trace().await; }
//! ```
//!
//! | mode | runs the body | use it for | arguments and result |
//! |---|---|---|---|
//! | `thread` | on tokio's blocking pool | blocking I/O, blocking libraries | `Send + 'static` |
//! | `process` | in a worker process | CPU-heavy work, code that may crash | `Serialize + Deserialize` |
//!
//! A process-mode call pays for encoding its arguments and result and one round trip over a pair of
//! pipes; in exchange the body runs in parallel with everything else and a crash in it (abort,
//! segfault, `exit`) fails that one call instead of the program.
//!
//! Options, after the mode: `pool = "name"` runs on a named pool ([`ThreadPool`],
//! [`ProcessPool`]); `timeout = "5s"` (or `"250ms"`) fails the call with [`Error::Timeout`]
//! (process mode kills the worker; a thread cannot be stopped and runs on);
//! `retries = 2` (process mode) re-runs a call whose worker died, for functions that are safe to
//! repeat; `name = "stable"` (process mode) sets the name the worker looks the function up by
//! (default: `module::path::function`), so it survives renames; `crate = path` names this crate
//! for crates that re-export it.
//!
//! ## Equivalent code
//!
//! ```
//! # use offload::offload;
//! #[offload(process)]
//! pub fn add(a: u64, b: u64) -> u64 { a + b }
//! # fn main() { let _ = add(1, 2); }
//! ```
//! expands to (see it with `cargo expand`; the full paths and spans are left out here):
//! ```ignore
//! pub async fn add(a: u64, b: u64) -> Result<u64, offload::Error> {
//!     // The name workers look the function up by, a fingerprint of its signature, its options,
//!     // typed by what crosses: a type that cannot cross adds no error beyond the check below.
//!     static __OFFLOAD_FN: Process<(u64, u64), u64> =
//!         Process::new(Remote::new(concat!(module_path!(), "::add"), fingerprint("(u64, u64) -> u64")));
//!     inventory::submit! {
//!         __OFFLOAD_FN.registration(|args, out| {
//!             __OFFLOAD_FN.invoke(args, out, |(a, b): (u64, u64)| add_blocking(a, b))
//!         })
//!     }
//!     assert_transferable::<u64>(); // once per type: a type without serde's traits fails here
//!     __OFFLOAD_FN.call((a, b)).await
//! }
//!
//! #[allow(clippy::needless_pass_by_value)]
//! pub fn add_blocking(a: u64, b: u64) -> u64 { a + b }
//!
//! #[allow(dead_code)]
//! pub fn add_map<I>(inputs: I) -> offload::Map<u64>
//! where I: IntoIterator<Item = (u64, u64)>, I::IntoIter: Send + 'static {
//!     static __OFFLOAD_FN: Process<(u64, u64), u64> = /* as above */;
//!     __OFFLOAD_FN.map(inputs) // a one-argument fn wraps each item in a 1-tuple
//! }
//! ```
//! Thread mode has no registration: its `async fn` holds a `static __OFFLOAD_FN: Local` with the
//! name and options and returns `call_in_thread(&__OFFLOAD_FN, move || { add_blocking(a, b) })
//! .await`, with `Send + 'static` added to the bounds of generic parameters; its map passes
//! `|(a, b)| add_blocking(a, b)` to `map_in_thread`. An argument or result written `Vec<u8>`
//! crosses as one byte string (`Bytes`), not as a sequence of numbers. Companions get the
//! function's docs after a line saying what they are, when the function has docs. Methods
//! (in an `#[offload]` impl block) get no map, and their statics and registrations go beside
//! the block, named after the type and method, as a block cannot hold them.
//!
//! # The worker guard
//!
//! A worker process is this same program, started again with a marker in its environment. Like
//! Python's `if __name__ == "__main__":`, something must stop the copy from running the program
//! again: the guard, which serves calls and exits in a worker and does nothing otherwise.
//! Put `#[offload::main]` on `main`, beside `#[tokio::main]`:
//!
//! ```no_run
//! #[offload::main]
//! #[tokio::main]
//! async fn main() { /* … */ }
//! ```
//! which is the same as
//! ```no_run
//! use offload::serve_if_worker;
//!
//! fn main() {
//!     serve_if_worker(); // in a worker: serves calls, then exits
//!     #[tokio::main]
//!     async fn main() { /* … */ }
//!     main()
//! }
//! ```
//! Either order of the two attributes works: the guard always runs first, before the runtime is
//! built. Above `#[tokio::main]`, as here, the guard moves the `async fn main` inside a plain
//! one, as shown. Below it, `#[tokio::main]` has already made `main` a plain function that
//! builds the runtime, and the guard becomes its first statement.
//!
//! A plain `fn main` can call [`serve_if_worker`] as its first line instead. A program that
//! forgot the guard gets [`Error::GuardMissing`] from its first process-mode call, and no
//! process is started: never a fork bomb, never a hang.
//!
//! # Tests
//!
//! A test harness owns `main`, so a test crate (a file in `tests/`) that calls process-mode
//! functions adds one line at its top level instead:
//!
//! ```
//! # mod my_crate { #[offload::offload(process)] pub fn square(x: u64) -> u64 { x * x } }
//! offload::test_setup!();
//!
//! #[tokio::test]
//! async fn squares() {
//!     assert_eq!(my_crate::square(3).await, Ok(9));
//! }
//! # // A #[test] function is compiled only by `cargo test`; this checks its body here.
//! # async fn _squares() { assert_eq!(my_crate::square(3).await, Ok(9)); }
//! # fn main() {}
//! ```
//! Its workers are then served from a constructor that runs before the harness. They are given
//! no command-line arguments, so no test-runner flag ever reaches them; `cargo test` and
//! `cargo nextest` both work. Each `#[tokio::test]` has its own runtime; the pools are shared by
//! all of them. Unit tests in a library's own `src/` are a test binary too: put
//! `#[cfg(test)] offload::test_setup!();` at the library's crate root.
//!
//! # Pools
//!
//! Process pools start their workers on the first call (or all at once with
//! [`ProcessPool::start`]) and run one call per worker at a time; calls wait in arrival order
//! for a free worker. Sizes, first found wins: [`ProcessPool::configure`] in code, then the
//! environment (`OFFLOAD_WORKERS` for the default pool, `OFFLOAD_WORKERS_<NAME>` for a named
//! one), then one worker per available core. Thread pools: [`ThreadPool::configure`], then
//! `OFFLOAD_THREADS_<NAME>`, then `min(32, cores + 4)`; the default thread pool is tokio's own
//! blocking pool.
//!
//! When calls queue up, the call that gets a worker takes up to
//! [`max_batch`](ProcessPoolBuilder::max_batch) queued calls along and sends them with its own in
//! one write; the worker still runs one call at a time, in order. A crash then fails only the
//! call that was running, and the calls behind it go to another worker. When calls come one
//! after another instead, the caller and its worker poll for each other briefly before sleeping
//! ([`poll`](ProcessPoolBuilder::poll)), since waking a sleeping process costs more than a small
//! call. A worker whose calls use over a millisecond of CPU each lowers its priority, so that
//! CPU-heavy work gives way to the caller's event loop ([`nice`](ProcessPoolBuilder::nice)),
//! and on Linux each such call wakes its worker on the core the fewest of them run on, rather
//! than two workers on one core while another idles ([`spread`](ProcessPoolBuilder::spread)).
//! The builder also bounds
//! the queue ([`max_queue`](ProcessPoolBuilder::max_queue)), recycles leaky workers
//! ([`max_calls_per_worker`](ProcessPoolBuilder::max_calls_per_worker),
//! [`max_worker_memory`](ProcessPoolBuilder::max_worker_memory)) and chooses what a dropped call
//! does ([`OnCancel`]); [`ProcessPool::shutdown`] and [`ProcessPool::shutdown_now`] stop a pool.
//!
//! # Scaling out
//!
//! With the `nats` feature, a pool can run its calls on other hosts instead: a `BrokerPool`,
//! chosen per pool in code (`BrokerPool::configure`) or by `OFFLOAD_BROKER_<POOL>=<url>`,
//! publishes each call to a NATS JetStream server, and agents, copies of the same program
//! started with `OFFLOAD_AGENT=<url>` on other hosts, run them in local worker processes. The
//! annotated functions do not change. A lost agent fails its calls with [`Error::WorkerLost`]
//! within seconds (or re-runs them elsewhere, with `retries`), a pool no agent serves with
//! [`Error::NoWorkers`], and a full queue with [`Error::QueueFull`]. The README's "Scaling out"
//! section walks through two hosts, the delivery rules and what an operator grants.
//!
//! # Platforms
//!
//! Thread mode works everywhere tokio does. Process mode needs Unix: it is tested on Linux, where
//! a worker learns of its caller's exit at once (a pidfd; elsewhere it checks every 100 ms) and
//! arguments over 1 MiB cross through memory shared with the worker instead of the pipe; it
//! builds on macOS. On Windows a
//! process-mode function does not compile (its one error says why), and the guard does nothing.

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use offload_macros::{main, offload};
#[cfg(all(unix, feature = "nats"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "nats"))))]
pub use offload_runtime::{async_nats, BrokerPool, BrokerPoolBuilder};
pub use offload_runtime::{
    serve_if_worker, serve_if_worker_with, CodecStage, Error, Exit, Map, ThreadPool,
    ThreadPoolBuilder, WorkerSetup, DEFAULT_POOL,
};
#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(unix)))]
pub use offload_runtime::{FailedCalls, OnCancel, PoolStats, ProcessPool, ProcessPoolBuilder};

/// Lets the tests of a test crate call process-mode functions: write `offload::test_setup!();`
/// once, at the top level of the crate (for example in `tests/my_test.rs`).
///
/// A test harness owns `main`, so [`macro@main`] cannot guard it; with this line, a worker
/// started from the test binary is served from a constructor that runs before the harness.
///
/// `offload::test_setup!(worker_init = setup);` also runs `setup` once in every worker before
/// it serves its first call, as `#[offload::main(worker_init = setup)]` does in a program.
#[macro_export]
macro_rules! test_setup {
    () => {
        $crate::__private::inventory::submit! { $crate::__private::TestSetup::new() }
    };
    (worker_init = $setup:path $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::__private::TestSetup::with({
                static __OFFLOAD_SETUP: $crate::__private::WorkerSetup =
                    $crate::__private::WorkerSetup::new(::core::stringify!($setup), || {
                        $crate::__private::setup_outcome($setup())
                    });
                &__OFFLOAD_SETUP
            })
        }
    };
}

/// Every Rust snippet of README.md, compiled as a doc-test so that the README cannot drift from
/// the API: `cargo test --workspace` fails if one stops compiling. The snippets are whole, with
/// no lines hidden, so that they read and paste as they are; one of them configures a broker
/// pool, so they are compiled with the `nats` feature, which the workspace's tests turn on.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "nats"))]
pub struct ReadmeDoctests;

/// Not public API: what the expansion of the attributes calls.
#[doc(hidden)]
pub mod __private {
    pub use offload_runtime::__private::*;
}
