//! The resource limits a pool puts on its workers (`max_address_space`, `max_cpu_per_call`):
//! an input that makes a function allocate or loop without end is stopped in its worker, the
//! call fails alone, and the pool goes on with a new worker. And the one limit the default
//! thread pool takes: a cap set in code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use offload::{offload, Exit, ProcessPool, ThreadPool};

offload::test_setup!();

mod common;
use common::{assert_died, busy_for};

/// Loops for ever, as a function fed a hostile input might.
#[offload(process, pool = "cpu")]
fn spin() -> u64 {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Uses `millis` of CPU time, and says which worker did.
#[offload(process, pool = "cpu")]
fn work(millis: u64) -> u32 {
    busy_for(millis);
    std::process::id()
}

/// The same as `work`, on a pool of its own.
#[offload(process, pool = "per-call")]
fn work_again(millis: u64) -> u32 {
    work_blocking(millis)
}

fn limit_cpu(pool: &str) {
    ProcessPool::configure(pool)
        .workers(1)
        .max_cpu_per_call(Duration::from_secs(1))
        .apply()
        .unwrap();
}

#[tokio::test]
async fn a_call_past_its_cpu_time_ends_its_worker_and_the_next_call_gets_a_new_one() {
    limit_cpu("cpu");
    let first = work(1).await.unwrap();
    assert_died(spin().await, Exit::Signal(libc::SIGXCPU));
    let next = work(1).await.unwrap();
    assert_ne!(first, next);
}

#[tokio::test]
async fn the_cpu_limit_is_per_call_not_per_worker() {
    limit_cpu("per-call");
    // Together they use more CPU time than one call may, on one worker.
    let pids = [
        work_again(600).await.unwrap(),
        work_again(600).await.unwrap(),
        work_again(600).await.unwrap(),
    ];
    assert!(pids.iter().all(|&pid| pid == pids[0]), "{pids:?}");
}

/// Asks for `bytes` and reports a failure as its own error, as a careful function would.
#[offload(process, pool = "memory")]
fn reserve(bytes: usize) -> Result<usize, String> {
    let mut room: Vec<u8> = Vec::new();
    room.try_reserve_exact(bytes).map_err(|e| e.to_string())?;
    Ok(std::hint::black_box(room).capacity())
}

/// Allocates `bytes`; past the limit the allocator aborts the worker.
#[offload(process, pool = "memory")]
fn allocate(bytes: usize, quiet: bool) -> usize {
    if quiet {
        // The allocator's report of the failure would land in the test run's output: this
        // crash is meant, so its worker's stderr goes nowhere.
        let null = std::fs::File::create("/dev/null").unwrap();
        // SAFETY: dup2 only points descriptor 2 at /dev/null.
        unsafe { libc::dup2(std::os::unix::io::AsRawFd::as_raw_fd(&null), 2) };
    }
    // Hidden from the optimiser, which in a release build would otherwise drop the allocation.
    std::hint::black_box(vec![1u8; bytes]).len()
}

#[tokio::test]
async fn an_allocation_past_the_address_space_fails_in_the_worker_only() {
    ProcessPool::configure("memory")
        .workers(1)
        .max_address_space(256 << 20)
        .apply()
        .unwrap();
    const GIB: usize = 1 << 30;
    // Well within the limit, with the region shared with the caller (1 GiB by default) mapped.
    assert_eq!(reserve(64 << 20).await.unwrap(), Ok(64 << 20));
    assert_eq!(allocate(64 << 20, false).await.unwrap(), 64 << 20);
    // Past it: an error the function reports, or an abort that only its worker suffers.
    let refused = reserve(GIB).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    assert_died(allocate(GIB, true).await, Exit::Signal(libc::SIGABRT));
    // The caller is not limited, and the pool goes on.
    let mut here: Vec<u8> = Vec::new();
    here.try_reserve_exact(GIB).unwrap();
    assert_eq!(allocate(1 << 20, false).await.unwrap(), 1 << 20);
}

#[test]
fn a_limit_of_zero_is_refused() {
    let zero_memory = ProcessPool::configure("zero-memory").max_address_space(0);
    assert!(zero_memory.apply().is_err());
    let zero_cpu = ProcessPool::configure("zero-cpu").max_cpu_per_call(Duration::ZERO);
    assert!(zero_cpu.apply().is_err());
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Waits for a second call beside it, which a cap of two allows, then a while for a third,
/// which it forbids.
#[offload(thread)]
fn crowd() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
    let since = Instant::now();
    while RUNNING.load(Ordering::SeqCst) < 2 && since.elapsed() < common::LIVENESS {
        std::thread::sleep(Duration::from_millis(1));
    }
    let since = Instant::now();
    while RUNNING.load(Ordering::SeqCst) < 3 && since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(1));
    }
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

// The default thread pool is tokio's blocking pool, without a cap of its own, until the program
// gives it one; this binary's only thread-mode calls are these.
#[tokio::test]
async fn the_default_thread_pool_takes_a_cap_set_in_code() {
    ThreadPool::configure("default")
        .max_threads(2)
        .apply()
        .unwrap();
    let calls: Vec<_> = (0..4).map(|_| tokio::spawn(crowd())).collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 2);
    assert_eq!(ThreadPool::get("default").unwrap().max_threads(), Some(2));
}
