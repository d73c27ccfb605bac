//! Faults injected into real worker processes: every call resolves with the right outcome, the
//! pool replaces what broke, and nothing hangs.

use std::collections::BTreeSet;
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use offload::{offload, CodecStage, Error, Exit, OnCancel, ProcessPool};

offload::test_setup!();

mod common;
use common::{
    alive, assert_died, gone, pid_in, resident_bytes, scratch, wait_for, Undecodable, Unencodable,
    LIVENESS,
};

/// Writes this worker's pid into `dir` (so the test can find and kill it), then waits until
/// `release` exists; `None` waits forever.
fn park(dir: &Path, release: Option<&Path>) -> u32 {
    let pid = std::process::id();
    std::fs::write(dir.join(pid.to_string()), b"").unwrap();
    loop {
        if release.is_some_and(Path::exists) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[offload(process, pool = "crash")]
fn segfault() -> u32 {
    // SAFETY: none; this writes through a null pointer on purpose, to die of SIGSEGV.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(7) };
    0
}

#[offload(process, pool = "crash")]
fn out_of_memory() -> usize {
    let limit = libc::rlimit {
        rlim_cur: 256 << 20,
        rlim_max: 256 << 20,
    };
    // SAFETY: setrlimit only reads `limit`.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    // The allocator's report of the failure would land in the test run's output: this crash
    // is meant, so its worker's stderr goes nowhere.
    let null = std::fs::File::create("/dev/null").unwrap();
    // SAFETY: dup2 only points descriptor 2 at /dev/null.
    unsafe { libc::dup2(std::os::unix::io::AsRawFd::as_raw_fd(&null), 2) };
    // Hidden from the optimiser, which in a release build would otherwise drop the allocation.
    let hog = std::hint::black_box(vec![1u8; 1 << 30]);
    hog.len()
}

#[offload(process, pool = "crash")]
fn crash_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "retry", retries = 2)]
fn crash_once(marker: PathBuf) -> u32 {
    if std::fs::create_dir(&marker).is_ok() {
        std::process::abort();
    }
    std::process::id()
}

#[offload(process, pool = "retry", retries = 1)]
fn crash_always() -> u32 {
    std::process::exit(9)
}

#[offload(process, pool = "timeouts", timeout = "300ms")]
fn stall(dir: PathBuf) -> u32 {
    park(&dir, None)
}

#[offload(process, pool = "timeouts")]
fn timeouts_pid() -> u32 {
    std::process::id()
}

#[offload(thread, timeout = "100ms")]
fn slow_thread(release: std::sync::mpsc::Receiver<()>) -> u8 {
    release.recv().unwrap();
    1
}

#[offload(process, pool = "cancel")]
fn cancel_park(dir: PathBuf) -> u32 {
    park(&dir, None)
}

#[offload(process, pool = "cancel")]
fn cancel_touch(path: PathBuf) -> u32 {
    std::fs::write(path, b"ran").unwrap();
    std::process::id()
}

#[offload(process, pool = "finish")]
fn finish_park(dir: PathBuf, release: PathBuf) -> u32 {
    park(&dir, Some(&release))
}

#[offload(process, pool = "finish")]
fn finish_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "recycle")]
fn recycle_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "bloat")]
fn bloat(megabytes: usize) -> u32 {
    let mut hog = vec![0u8; megabytes << 20];
    hog.iter_mut().step_by(4096).for_each(|b| *b = 1);
    std::mem::forget(hog);
    std::process::id()
}

#[offload(process, pool = "narrow")]
fn narrow_echo(value: u64) -> u64 {
    value
}

#[offload(process, pool = "graceful")]
fn graceful_work(dir: PathBuf, release: PathBuf, value: u32) -> u32 {
    if value == 0 {
        park(&dir, Some(&release));
    }
    value
}

#[offload(process, pool = "forceful")]
fn forceful_park(dir: PathBuf) -> u32 {
    park(&dir, None)
}

/// Writes `bytes` straight onto the worker's reply pipe, breaking the protocol from the worker side.
#[offload(process, pool = "garbage")]
fn write_on_channel(bytes: Vec<u8>, then_exit: bool) -> u32 {
    use std::io::Write;
    // SAFETY: descriptor 3 is where the worker writes its replies; ManuallyDrop keeps it open.
    let mut channel = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(3) });
    channel.write_all(&bytes).unwrap();
    if then_exit {
        std::process::exit(0);
    }
    loop {
        std::thread::park();
    }
}

#[offload(process, pool = "garbage")]
fn garbage_pid() -> u32 {
    std::process::id()
}

#[offload(process)]
fn make_unencodable() -> Unencodable {
    Unencodable
}

#[offload(process)]
fn take_undecodable(_value: Undecodable) -> u8 {
    1
}

/// The worker's open descriptors with what each is, the marker it finds, what its descriptors 3
/// and 4 are, and their pipes' sizes.
#[cfg(target_os = "linux")]
type Hygiene = (Vec<(i32, String)>, Option<String>, [String; 2], [i32; 2]);

// Reads /proc and the pipes' sizes, as only Linux tells them.
#[cfg(target_os = "linux")]
#[offload(process)]
fn hygiene() -> Hygiene {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor, closed by now, has no target.
    let descriptors = listed
        .into_iter()
        .filter_map(|fd| Some((fd, std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?)))
        .map(|(fd, link)| (fd, link.display().to_string()))
        .collect();
    let target = |fd: u8| {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        link.display().to_string()
    };
    let channel = [target(3), target(4)];
    // SAFETY: F_GETPIPE_SZ only reads the size of the pipe behind each descriptor.
    let sizes = [3, 4].map(|fd| unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) });
    (
        descriptors,
        std::env::var("OFFLOAD_WORKER").ok(),
        channel,
        sizes,
    )
}

#[tokio::test]
async fn segfault_and_out_of_memory_fail_only_their_call() {
    ProcessPool::configure("crash").workers(1).apply().unwrap();
    let segfault = segfault().await;
    let message = segfault.clone().unwrap_err().to_string();
    assert!(message.contains("SIGSEGV"), "{message}");
    assert_died(segfault, Exit::Signal(11));
    assert_died(out_of_memory().await, Exit::Signal(6));
    assert!(crash_pid().await.is_ok());
}

#[tokio::test]
async fn retries_rerun_a_call_whose_worker_died_on_a_fresh_worker() {
    let marker = scratch("retry").join("crashed-once");
    let pid = crash_once(marker.clone())
        .await
        .expect("the retry succeeds");
    assert!(marker.exists(), "the first attempt ran");
    assert!(alive(pid));
    assert_died(crash_always().await, Exit::Code(9));
}

#[tokio::test]
async fn a_timeout_kills_only_that_worker_and_returns_promptly() {
    ProcessPool::configure("timeouts")
        .workers(1)
        .apply()
        .unwrap();
    let dir = scratch("timeouts");
    let started = Instant::now();
    let error = stall(dir.clone()).await.unwrap_err();
    assert!(started.elapsed() < LIVENESS);
    assert!(
        matches!(error, Error::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{error:?}"
    );
    gone(pid_in(&dir).await).await;
    assert!(timeouts_pid().await.is_ok(), "the pool replaced the worker");
    // Through f_map, each input times out on its own, its worker stopped: the input sent
    // behind it in the same chunk never started there, and times out on a fresh worker.
    let dirs = [scratch("timeouts-map-a"), scratch("timeouts-map-b")];
    let results = tokio::time::timeout(LIVENESS, stall_map(dirs.clone()).collect())
        .await
        .expect("liveness");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::Timeout { .. }))),
        "{results:?}"
    );
    for dir in &dirs {
        gone(pid_in(dir).await).await;
    }
}

#[tokio::test]
async fn a_thread_timeout_returns_while_the_thread_runs_on() {
    let (release, wait) = std::sync::mpsc::channel();
    let error = slow_thread(wait).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    release.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_calls_removes_queued_ones_and_kills_running_ones() {
    ProcessPool::configure("cancel").workers(1).apply().unwrap();
    let dir = scratch("cancel");
    let running = tokio::spawn(cancel_park(dir.clone()));
    let victim = pid_in(&dir).await;

    // Queued behind the parked call, then dropped: it must never run.
    let never = dir.join("never");
    let queued = tokio::time::timeout(Duration::ZERO, cancel_touch(never.clone())).await;
    assert!(queued.is_err(), "the call was queued, not run");

    running.abort();
    gone(victim).await;
    let ran = dir.join("ran");
    let replacement = tokio::time::timeout(LIVENESS, cancel_touch(ran.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(replacement, victim);
    assert!(ran.exists() && !never.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_can_let_dropped_calls_finish_and_keep_the_worker() {
    ProcessPool::configure("finish")
        .workers(1)
        .on_cancel(OnCancel::Finish)
        .apply()
        .unwrap();
    let dir = scratch("finish");
    let release = dir.join("release");
    let running = tokio::spawn(finish_park(dir.clone(), release.clone()));
    let worker = pid_in(&dir).await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    std::fs::write(&release, b"").unwrap();
    assert_eq!(
        finish_pid().await,
        Ok(worker),
        "the same worker serves the next call"
    );
}

#[tokio::test]
async fn workers_are_recycled_after_n_calls_without_failing_any() {
    ProcessPool::configure("recycle")
        .workers(1)
        .max_calls_per_worker(3)
        .apply()
        .unwrap();
    let mut pids = Vec::new();
    for _ in 0..9 {
        pids.push(recycle_pid().await.expect("no call fails while recycling"));
    }
    let distinct: BTreeSet<_> = pids.iter().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    assert!(
        pids.chunks(3).all(|run| run.iter().all(|p| *p == run[0])),
        "{pids:?}"
    );
}

#[tokio::test]
async fn a_worker_over_its_memory_limit_is_replaced_after_its_call() {
    ProcessPool::configure("bloat")
        .workers(1)
        .max_worker_memory(64 << 20)
        .apply()
        .unwrap();
    let small = bloat(1).await.unwrap();
    assert_eq!(
        bloat(1).await,
        Ok(small),
        "under the limit the worker stays"
    );
    let large = bloat(128).await.unwrap();
    assert_eq!(
        large, small,
        "the call that crossed the limit still succeeds"
    );
    let after = bloat(1).await.unwrap();
    assert_ne!(
        after, large,
        "the worker that crossed the limit was replaced"
    );
    gone(large).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_callers_wait_instead_of_refusing_them() {
    ProcessPool::configure("narrow")
        .workers(1)
        .max_queue(2)
        .apply()
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..64u64 {
        calls.spawn(narrow_echo(i));
    }
    let mut values = Vec::new();
    while let Some(done) = calls.join_next().await {
        values.push(done.unwrap().expect("no call is refused"));
    }
    values.sort_unstable();
    assert_eq!(values, (0..64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_running_and_queued_calls() {
    ProcessPool::configure("graceful")
        .workers(1)
        .apply()
        .unwrap();
    let pool = ProcessPool::get("graceful").unwrap();
    let dir = scratch("graceful");
    let release = dir.join("release");
    let first = tokio::spawn(graceful_work(dir.clone(), release.clone(), 0));
    let worker = pid_in(&dir).await;
    let queued: Vec<_> = (1..=4)
        .map(|v| tokio::spawn(queued(graceful_work(dir.clone(), release.clone(), v))))
        .collect();
    let shutdown = tokio::spawn(pool.shutdown());
    wait_for(|| {
        graceful_work(dir.clone(), release.clone(), 9)
            .now_or_never_is_shutdown()
            .then_some(())
    })
    .await;
    std::fs::write(&release, b"").unwrap();
    assert_eq!(first.await.unwrap(), Ok(0));
    for (call, value) in queued.into_iter().zip(1..) {
        assert_eq!(call.await.unwrap(), Ok(value));
    }
    tokio::time::timeout(LIVENESS, shutdown)
        .await
        .unwrap()
        .unwrap();
    gone(worker).await;
    assert_eq!(graceful_work(dir, release, 5).await, Err(Error::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forceful_shutdown_fails_pending_calls_and_kills_workers() {
    ProcessPool::configure("forceful")
        .workers(1)
        .apply()
        .unwrap();
    let pool = ProcessPool::get("forceful").unwrap();
    let dir = scratch("forceful");
    let running = tokio::spawn(forceful_park(dir.clone()));
    let worker = pid_in(&dir).await;
    let queued: Vec<_> = (0..3)
        .map(|_| tokio::spawn(queued(forceful_park(dir.clone()))))
        .collect();
    tokio::time::timeout(LIVENESS, pool.shutdown_now())
        .await
        .unwrap();
    assert_eq!(running.await.unwrap(), Err(Error::Shutdown));
    for call in queued {
        assert_eq!(call.await.unwrap(), Err(Error::Shutdown));
    }
    gone(worker).await;
}

#[tokio::test]
async fn bad_bytes_from_a_worker_fail_the_call_and_replace_the_worker() {
    ProcessPool::configure("garbage")
        .workers(1)
        .apply()
        .unwrap();
    let before = garbage_pid().await.unwrap();
    let header = |len: u32, kind: u8, id: u64| {
        let mut frame = len.to_le_bytes().to_vec();
        frame.push(kind);
        frame.extend_from_slice(&id.to_le_bytes());
        frame
    };
    let oversized = header(u32::MAX, 3, 2);
    let unknown_kind = header(9, 200, 3);
    let wrong_id = header(9, 3, 999);
    for (bytes, expect) in [
        (oversized, "exceeds the limit"),
        (unknown_kind, "unknown frame kind"),
        (wrong_id, "arrived for call"),
    ] {
        let error = write_on_channel(bytes, false).await.unwrap_err();
        assert!(
            matches!(&error, Error::Protocol { detail } if detail.contains(expect)),
            "{error:?}"
        );
    }
    let mut truncated = header(109, 3, 5);
    truncated.extend_from_slice(&[0; 10]);
    assert_died(write_on_channel(truncated, true).await, Exit::Code(0));
    let after = garbage_pid().await.unwrap();
    assert_ne!(before, after);
}

#[tokio::test]
async fn values_that_do_not_encode_or_decode_fail_with_the_stage_named() {
    let error = make_unencodable().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Codec {
                stage: CodecStage::EncodeResult,
                ..
            }
        ),
        "{error:?}"
    );
    let error = take_undecodable(Undecodable).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Codec {
                stage: CodecStage::DecodeArguments,
                ..
            }
        ),
        "{error:?}"
    );
    // The worker's own failures reach this side as its message alone, without a source.
    assert!(std::error::Error::source(&error).is_none(), "{error:?}");
    let error = take_undecodable_with(Unencodable).await;
    assert!(
        matches!(
            error,
            Err(Error::Codec {
                stage: CodecStage::EncodeArguments,
                ..
            })
        ),
        "{error:?}"
    );
}

#[offload(process)]
fn take_undecodable_with(_value: Unencodable) -> u8 {
    1
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn workers_inherit_only_their_channel_and_stdio_and_lose_the_marker() {
    // A descriptor without close-on-exec, which a careless parent might leak into workers.
    // SAFETY: dup of stdout has no preconditions; the copy is closed below.
    let leaked = unsafe { libc::dup(1) };
    assert!(leaked > 3);
    let (descriptors, marker, channel, sizes) = hygiene().await.unwrap();
    // SAFETY: `leaked` is ours.
    unsafe { libc::close(leaked) };
    // 0-2 stdio and 3 and 4 the channel; beside them, only the one the worker opened itself to
    // learn when its caller exits (Linux's pidfd).
    let (own, inherited): (Vec<_>, Vec<_>) = descriptors
        .iter()
        .partition(|(_, target)| target == "anon_inode:[pidfd]");
    let inherited: BTreeSet<i32> = inherited.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(
        inherited,
        BTreeSet::from([0, 1, 2, 3, 4]),
        "{descriptors:?}"
    );
    assert_eq!(own.len(), 1, "{descriptors:?}");
    assert_eq!(marker, None);
    // Replies go out on one pipe, calls come in on another.
    let [replies, calls] = &channel;
    assert!(
        replies.starts_with("pipe:[") && calls.starts_with("pipe:["),
        "{channel:?}"
    );
    assert_ne!(replies, calls, "one pipe each way");
    // Enlarged from the default 64 KiB, so that large frames take few wake-ups.
    assert_eq!(sizes, [256 << 10; 2]);
}

/// Polls `call` once, so that it is admitted and waits in the queue, and hands it back.
fn queued<F: std::future::Future>(call: F) -> std::pin::Pin<Box<F>> {
    let mut call = Box::pin(call);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        call.as_mut().poll(&mut context).is_pending(),
        "the call should be waiting for a worker"
    );
    call
}

trait NowOrNever {
    fn now_or_never_is_shutdown(self) -> bool;
}

impl<F: std::future::Future<Output = Result<u32, Error>>> NowOrNever for F {
    /// Polls once: whether the pool already refuses new calls.
    fn now_or_never_is_shutdown(self) -> bool {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(self);
        matches!(
            future.as_mut().poll(&mut context),
            std::task::Poll::Ready(Err(Error::Shutdown))
        )
    }
}

#[offload(process, pool = "silent")]
fn silent_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "quitter")]
fn quitter_pid() -> u32 {
    std::process::id()
}

/// A stand-in worker program: a shell script that never speaks the protocol.
fn fake_worker(name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch(name).join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_worker_that_never_completes_its_handshake_is_an_error_not_a_hang() {
    let program = fake_worker("silent", "exec sleep 60");
    ProcessPool::configure("silent")
        .workers(1)
        .handshake_timeout(Duration::from_millis(300))
        .program(program)
        .apply()
        .unwrap();
    let error = tokio::time::timeout(LIVENESS, silent_pid())
        .await
        .expect("liveness")
        .unwrap_err();
    assert!(
        matches!(&error, Error::WorkerStart { reason, .. } if reason.contains("did not complete its handshake")),
        "{error:?}"
    );
    let program = fake_worker("quitter", "exit 3");
    ProcessPool::configure("quitter")
        .workers(1)
        .program(program)
        .apply()
        .unwrap();
    let error = tokio::time::timeout(LIVENESS, quitter_pid())
        .await
        .expect("liveness")
        .unwrap_err();
    assert!(
        matches!(&error, Error::WorkerStart { reason, .. } if reason.contains("exit code 3")),
        "{error:?}"
    );
}

#[offload(process, pool = "million")]
fn million_park(dir: PathBuf) -> u32 {
    park(&dir, None)
}

#[offload(process, pool = "million")]
fn million_echo(value: u32) -> u32 {
    value
}

// A million calls waiting for one busy worker take no file descriptor each and bounded memory;
// a forceful shutdown then resolves every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_queued_calls_take_no_descriptors_and_bounded_memory() {
    const CALLS: usize = 1_000_000;
    ProcessPool::configure("million")
        .workers(1)
        .apply()
        .unwrap();
    let dir = scratch("million");
    let running = tokio::spawn(million_park(dir.clone()));
    pid_in(&dir).await;
    let descriptors = common::open_descriptors();
    let memory = resident_bytes();
    let waiting: Vec<_> = (0..CALLS as u32).map(|v| queued(million_echo(v))).collect();
    let per_call = resident_bytes().saturating_sub(memory) / CALLS as u64;
    let future = std::mem::size_of_val(&million_echo(0));
    println!("{CALLS} queued calls: {per_call} bytes each, of which the future is {future}");
    // Other tests of this binary open and close descriptors meanwhile; a million would show.
    assert!(common::open_descriptors() < descriptors + 100);
    assert!(per_call < 1024, "{per_call} bytes per queued call");
    ProcessPool::get("million").unwrap().shutdown_now().await;
    assert_eq!(running.await.unwrap(), Err(Error::Shutdown));
    for call in waiting {
        assert_eq!(call.await, Err(Error::Shutdown));
    }
}

// A call that holds a worker sends queued calls ahead of its own in one write. These tests
// queue calls behind a parked one on a one-worker pool, so that the next lease takes them along
// (`max_batch` set, so that batches form though the parked call was long).

#[offload(process, pool = "batch-crash")]
fn batch_crash(dir: PathBuf, release: PathBuf, action: u8) -> u32 {
    match action {
        0 => park(&dir, Some(&release)),
        1 => std::process::exit(5),
        _ => std::process::id(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_batch_fails_only_the_call_that_was_running() {
    ProcessPool::configure("batch-crash")
        .workers(1)
        .max_batch(16)
        .apply()
        .unwrap();
    let dir = scratch("batch-crash");
    let release = dir.join("release");
    let parked = tokio::spawn(batch_crash(dir.clone(), release.clone(), 0));
    pid_in(&dir).await;
    let calls: Vec<_> = [2, 1, 2, 2]
        .map(|action| tokio::spawn(queued(batch_crash(dir.clone(), release.clone(), action))))
        .into();
    std::fs::write(&release, b"").unwrap();
    assert!(parked.await.unwrap().is_ok());
    let mut results: Vec<_> = futures_results(calls).await;
    let crashed = results.remove(1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_died(crashed, Exit::Code(5));
}

/// The body of the take-along tests' functions, one per test since each needs a pool of its
/// own: parks until `release` exists, or returns at once; either way, the worker's pid.
fn park_or_return(dir: &Path, release: &Path, park_here: bool) -> u32 {
    if park_here {
        return park(dir, Some(release));
    }
    std::process::id()
}

#[offload(process, pool = "batch-cancel")]
fn batch_cancel(dir: PathBuf, release: PathBuf, park_here: bool) -> u32 {
    park_or_return(&dir, &release, park_here)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_sent_ahead_kills_only_its_worker_and_the_rest_complete() {
    let batch = take_along("batch-cancel", batch_cancel).await;
    batch.slow.abort();
    gone(batch.worker).await;
    let driver = batch.driver.await.unwrap().unwrap();
    assert_eq!(batch.quick.await.unwrap(), Ok(driver));
    assert_ne!(driver, batch.worker, "the rest ran on a fresh worker");
}

#[offload(process, pool = "batch-orphan")]
fn batch_orphan(dir: PathBuf, release: PathBuf, park_here: bool) -> u32 {
    park_or_return(&dir, &release, park_here)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_taken_along_complete_when_the_call_that_took_them_is_cancelled() {
    let batch = take_along("batch-orphan", batch_orphan).await;
    batch.driver.abort();
    std::fs::write(&batch.second, b"").unwrap();
    assert_eq!(batch.slow.await.unwrap(), Ok(batch.worker));
    assert_eq!(batch.quick.await.unwrap(), Ok(batch.worker));
}

type Call = tokio::task::JoinHandle<Result<u32, Error>>;

/// Three calls sent to one worker together, `slow` running and parked until `second` exists.
struct TakenAlong {
    worker: u32,
    second: PathBuf,
    driver: Call,
    slow: Call,
    quick: Call,
}

/// On the one-worker pool `pool`, parks a call, queues `driver`, `slow` and `quick` behind it,
/// then releases the parked call: the next lease goes to `driver`, which takes `slow` and `quick`
/// along, ahead of its own call. Returns once `slow` runs.
async fn take_along<F, Fut>(pool: &str, call: F) -> TakenAlong
where
    F: Fn(PathBuf, PathBuf, bool) -> Fut,
    Fut: std::future::Future<Output = Result<u32, Error>> + Send + 'static,
{
    ProcessPool::configure(pool)
        .workers(1)
        .max_batch(16)
        .apply()
        .unwrap();
    let dir = scratch(pool);
    let (first, second) = (dir.join("first"), dir.join("second"));
    let parked = tokio::spawn(call(dir.clone(), first.clone(), true));
    let worker = pid_in(&dir).await;
    std::fs::remove_file(dir.join(worker.to_string())).unwrap();
    let driver = tokio::spawn(queued(call(dir.clone(), second.clone(), false)));
    let slow = tokio::spawn(queued(call(dir.clone(), second.clone(), true)));
    let quick = tokio::spawn(queued(call(dir.clone(), second.clone(), false)));
    std::fs::write(&first, b"").unwrap();
    assert_eq!(parked.await.unwrap(), Ok(worker));
    pid_in(&dir).await;
    TakenAlong {
        worker,
        second,
        driver,
        slow,
        quick,
    }
}

async fn futures_results<T>(calls: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    results
}

#[offload(process, pool = "large")]
fn large(bytes: Vec<u8>, crash: bool) -> (u64, bool) {
    if crash {
        std::process::abort();
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    (
        bytes.iter().map(|b| u64::from(*b)).sum(),
        maps.contains("offload-shared"),
    )
}

// Arguments over 1 MiB are encoded straight into memory shared with the worker.
#[tokio::test]
async fn large_arguments_cross_through_shared_memory_within_the_frame_limit() {
    ProcessPool::configure("large")
        .workers(1)
        .max_frame_bytes(8 << 20)
        .apply()
        .unwrap();
    let bytes = vec![3u8; 4 << 20];
    assert_eq!(large(bytes.clone(), false).await, Ok((3 * (4 << 20), true)));
    assert_died(large(bytes.clone(), true).await, Exit::Signal(6));
    assert_eq!(
        large(bytes, false).await,
        Ok((3 * (4 << 20), true)),
        "a fresh worker, a fresh region"
    );
    let error = large(vec![0; 16 << 20], false).await.unwrap_err();
    assert!(
        matches!(&error, Error::Codec { stage: CodecStage::EncodeArguments, detail, .. } if detail.contains("frame limit")),
        "{error:?}"
    );
}

#[offload(process, pool = "between-calls")]
fn worker_of(bytes: Vec<u8>) -> (u32, usize) {
    (std::process::id(), bytes.len())
}

/// Kills the worker that answers the next call, and waits until it is dead (not yet reaped).
async fn kill_the_idle_worker() -> u32 {
    let (pid, _) = worker_of(Vec::new()).await.unwrap();
    // SAFETY: kill has no memory-safety preconditions; `pid` is an idle worker of ours.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    gone(pid).await;
    pid
}

// A worker that dies between calls (killed, or chosen by the out-of-memory killer) fails no
// call: the next call finds that it never read the call and sends it to a fresh worker,
// whether the call went through the pipe (in one write, or in several that wait for room the
// dead worker will never make), through shared memory or in a map's batch.
#[tokio::test]
async fn a_worker_that_dies_between_calls_fails_no_call() {
    ProcessPool::configure("between-calls")
        .workers(1)
        .apply()
        .unwrap();
    for len in [10, 900 << 10, 4 << 20] {
        let dead = kill_the_idle_worker().await;
        let (pid, read) = worker_of(vec![1; len]).await.unwrap();
        assert_eq!(read, len);
        assert_ne!(pid, dead);
    }
    let dead = kill_the_idle_worker().await;
    let answers = worker_of_map((0..40).map(|len| vec![0; len]))
        .collect()
        .await;
    for (len, answer) in answers.into_iter().enumerate() {
        let (pid, read) = answer.unwrap();
        assert_eq!(read, len);
        assert_ne!(pid, dead);
    }
}

#[offload(process, pool = "idle")]
fn idle_pid() -> u32 {
    std::process::id()
}

// A worker that waited longer than the pool's idle time exits, and the next call starts a fresh
// one and succeeds, whether or not the worker had served a call before.
#[tokio::test]
async fn idle_workers_exit_and_the_next_call_starts_a_fresh_one() {
    ProcessPool::configure("idle")
        .workers(1)
        .idle_timeout(Duration::from_millis(100))
        .apply()
        .unwrap();
    let pool = ProcessPool::get("idle").unwrap();
    pool.start().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let pid = idle_pid().await.unwrap();
        assert!(!seen.contains(&pid), "{pid} served after its idle time");
        gone(pid).await;
        seen.push(pid);
    }
}

#[offload(process, pool = "counted")]
fn counted(action: u8) -> u8 {
    match action {
        0 => 0,
        1 => panic!("counted panic"),
        _ => std::process::abort(),
    }
}

#[offload(process, pool = "counted", timeout = "200ms")]
fn counted_stall() -> u8 {
    loop {
        std::thread::park();
    }
}

// The pool counts what it did: calls by outcome, workers started and recycled.
#[tokio::test]
async fn a_pool_s_statistics_count_each_outcome_and_each_worker() {
    ProcessPool::configure("counted")
        .workers(1)
        .max_calls_per_worker(2)
        .apply()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(counted(0).await, Ok(0));
    }
    assert!(matches!(counted(1).await, Err(Error::Panicked { .. })));
    assert!(matches!(counted(2).await, Err(Error::WorkerDied { .. })));
    assert!(matches!(counted_stall().await, Err(Error::Timeout { .. })));
    for result in counted_map([0, 0]).collect().await {
        assert_eq!(result, Ok(0));
    }
    let stats = ProcessPool::get("counted").unwrap().stats();
    assert_eq!((stats.queued, stats.running), (0, 0));
    assert_eq!(stats.completed, 5);
    let failed = stats.failed;
    assert_eq!(
        (
            failed.panicked,
            failed.worker_died,
            failed.timed_out,
            failed.codec,
            failed.other
        ),
        (1, 1, 1, 0, 0)
    );
    // Two calls a worker: the first two, the third and the panic, then a worker for the
    // crash, one for the timeout and one for the map's two; three of them served their two.
    assert_eq!((stats.workers_started, stats.workers_recycled), (5, 3));
}
