//! The per-function options of `#[offload(...)]`, through real threads and worker processes: a
//! named pool never runs more calls at once than its size, `name = "…"` is the name the worker
//! looks the function up by, and `timeout = "…"` reaches the runtime as written.
//!
//! CI's `cargo clippy --all-targets` also compiles this file under the lint levels below, so the
//! code the attribute generates is checked against them as it would be in a user's crate.
#![deny(warnings, clippy::pedantic, unused_qualifications)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use offload::{offload, Error, ProcessPool, ThreadPool};
use tokio::task::JoinSet;

offload::test_setup!();

/// The size given to the named pools under test: not the core count of a typical machine, so that
/// a pool that fell back to its default size would be noticed.
const SIZE: usize = 3;
const CALLS: usize = 3 * SIZE;
/// Generous: liveness only.
const PATIENCE: Duration = Duration::from_secs(60);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[offload(thread, pool = "attribute-threads")]
fn hold_thread(gate: PathBuf) -> u32 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
    let pid = pass(&gate);
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    pid
}

#[offload(process, pool = "attribute-workers")]
fn hold_process(gate: PathBuf) -> u32 {
    pass(&gate)
}

/// Registered under a name that says nothing of the function's Rust path.
#[offload(process, name = "attribute-test/stable name")]
fn renamed(x: u32) -> u32 {
    assert!(x > 0, "refused {x}");
    x + 1
}

#[offload(process)]
fn unnamed(x: u32) -> u32 {
    assert!(x > 0, "refused {x}");
    x + 1
}

#[offload(thread, timeout = "250ms")]
fn stuck_thread(gate: PathBuf) -> u32 {
    pass(&gate)
}

#[offload(process, timeout = "250ms")]
fn stuck_process(gate: PathBuf) -> u32 {
    pass(&gate)
}

/// Connects to the gate, says which process it is in, and waits until the gate lets it go.
fn pass(gate: &PathBuf) -> u32 {
    let mut stream = UnixStream::connect(gate).expect("connect to the gate");
    stream
        .write_all(&std::process::id().to_le_bytes())
        .expect("announce");
    let mut go = [0];
    stream.read_exact(&mut go).expect("wait to be released");
    std::process::id()
}

/// A socket that holds the calls connecting to it until the test lets them go.
struct Gate {
    path: PathBuf,
    listener: UnixListener,
}

impl Gate {
    fn new(name: &str) -> Gate {
        let path = std::env::temp_dir().join(format!(
            "offload-attribute-{}-{name}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the gate");
        Gate { path, listener }
    }

    /// Admits `calls` calls and returns the processes they ran in. It holds the first ones until
    /// `size` are waiting at once, which happens only if the pool runs `size` calls at once,
    /// then lets every call go as it arrives.
    fn admit(&self, calls: usize, size: usize) -> Vec<u32> {
        let mut held: Vec<UnixStream> = Vec::new();
        let mut pids = Vec::new();
        for _ in 0..calls {
            let (mut stream, _) = self.listener.accept().expect("accept a call");
            let mut pid = [0; 4];
            stream.read_exact(&mut pid).expect("read its pid");
            pids.push(u32::from_le_bytes(pid));
            held.push(stream);
            if pids.len() >= size {
                for mut stream in held.drain(..) {
                    stream.write_all(&[1]).expect("release a call");
                }
            }
        }
        pids
    }

    /// Admits one call, on a thread of its own, and lets it go when `release` says so (or is
    /// dropped).
    fn hold_one(self, release: mpsc::Receiver<()>) {
        std::thread::spawn(move || {
            let (mut stream, _) = self.listener.accept().expect("accept a call");
            let _ = release.recv();
            // The worker of a timed-out process call is gone: nothing to release.
            let _ = stream.write_all(&[1]);
        });
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `calls` calls of `call` at once, each through `gate`, and returns their results.
async fn run_through<F, Fut>(
    gate: &Arc<Gate>,
    calls: usize,
    size: usize,
    call: F,
) -> (Vec<u32>, Vec<u32>)
where
    F: Fn(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<u32, Error>> + Send + 'static,
{
    let keeper = {
        let gate = Arc::clone(gate);
        std::thread::spawn(move || gate.admit(calls, size))
    };
    let mut set = JoinSet::new();
    for _ in 0..calls {
        set.spawn(call(gate.path.clone()));
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        results.push(joined.expect("the task").expect("the call"));
    }
    (keeper.join().expect("the gate keeper"), results)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_thread_pool_runs_at_most_its_size_at_once() {
    ThreadPool::configure("attribute-threads")
        .max_threads(SIZE)
        .apply()
        .unwrap();
    let gate = Arc::new(Gate::new("threads"));
    let (_, results) = tokio::time::timeout(PATIENCE, run_through(&gate, CALLS, SIZE, hold_thread))
        .await
        .expect("the pool never ran SIZE calls at once");
    assert_eq!(results.len(), CALLS);
    assert_eq!(
        MOST_RUNNING.load(Ordering::SeqCst),
        SIZE,
        "calls running at once, at most"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_process_pool_runs_at_most_its_size_at_once() {
    ProcessPool::configure("attribute-workers")
        .workers(SIZE)
        .apply()
        .unwrap();
    let gate = Arc::new(Gate::new("workers"));
    let (announced, results) =
        tokio::time::timeout(PATIENCE, run_through(&gate, CALLS, SIZE, hold_process))
            .await
            .expect("the pool never ran SIZE calls at once");
    assert_eq!(announced.len(), CALLS);
    assert!(
        !results.contains(&std::process::id()),
        "the calls ran in this process"
    );
    // SIZE calls were held at once, each by a worker that runs one call at a time: a pool
    // allowed more than SIZE workers would have started another for a call behind them.
    let workers: HashSet<u32> = results.into_iter().collect();
    assert_eq!(
        workers.len(),
        SIZE,
        "distinct worker processes: {workers:?}"
    );
}

#[tokio::test]
async fn the_worker_finds_a_function_by_the_name_given() {
    assert_eq!(renamed(1).await, Ok(2));
    assert_eq!(unnamed(1).await, Ok(2));
    // The name a call is reported under is the name it is registered and looked up under.
    match renamed(0).await {
        Err(Error::Panicked { function, .. }) => assert_eq!(function, "attribute-test/stable name"),
        other => panic!("expected a panic, got {other:?}"),
    }
    match unnamed(0).await {
        Err(Error::Panicked { function, .. }) => assert_eq!(function, "attribute::unnamed"),
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// Runs `call`, which blocks at `gate` until released, and checks that it timed out after 250 ms.
async fn times_out(
    mode: &str,
    gate: Gate,
    call: impl std::future::Future<Output = Result<u32, Error>>,
) {
    let (release, released) = mpsc::channel();
    gate.hold_one(released);
    match tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the timeout fired")
    {
        Err(Error::Timeout { after, .. }) => {
            assert_eq!(after, Duration::from_millis(250), "{mode}");
        }
        other => panic!("{mode}: expected a timeout, got {other:?}"),
    }
    // A thread cannot be stopped: let it finish.
    let _ = release.send(());
}

#[tokio::test]
async fn a_timeout_reaches_the_thread_pool_as_written() {
    let gate = Gate::new("timeout-thread");
    let path = gate.path.clone();
    times_out("thread", gate, stuck_thread(path)).await;
}

#[tokio::test]
async fn a_timeout_reaches_the_process_pool_as_written() {
    let gate = Gate::new("timeout-process");
    let path = gate.path.clone();
    times_out("process", gate, stuck_process(path)).await;
}
