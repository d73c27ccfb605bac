//! Long calls started together wake on cores of their own, and a worker is never left tied to
//! one core unless its pool says so. A test crate of its own: placement counts the long calls
//! of the whole process, and other tests' calls would change which core is free; for the same
//! reason the tests here take turns. Placement is Linux's alone.

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use offload::{offload, ProcessPool};
use serde::{Deserialize, Serialize};

offload::test_setup!();

mod common;
use common::busy_for;

/// Held by each test for its whole run.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test may wait for the machine to leave it its cores: a bound on liveness.
const LIVENESS: Duration = Duration::from_secs(60);

/// How long the test of long calls waits for rounds on a quiet machine.
const QUIET_WITHIN: Duration = Duration::from_secs(30);

/// Where a call started, on how many cores its worker may run by then, and when it started and
/// ended (`CLOCK_MONOTONIC`, which all processes share, in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Run {
    core: i32,
    allowed: i32,
    began: u64,
    ended: u64,
}

fn this_core() -> i32 {
    // SAFETY: sched_getcpu has no preconditions.
    unsafe { libc::sched_getcpu() }
}

/// `CLOCK_MONOTONIC`, which all processes share, in microseconds.
fn micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

fn allowed_cores() -> i32 {
    // SAFETY: a zeroed cpu_set_t is an empty set, which sched_getaffinity fills in; the size
    // passed is that of the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        libc::CPU_COUNT(&set)
    }
}

/// How many cores this process may use; `None`, and the test is skipped, with only one, where
/// there is nothing to place.
fn two_cores_or_more() -> Option<i32> {
    let ours = allowed_cores();
    if ours < 2 {
        eprintln!("skipped: this process may use only one core");
    }
    (ours >= 2).then_some(ours)
}

/// Keeps the CPU busy for `millis` milliseconds of its own time, and says how it ran.
#[offload(process, pool = "spread")]
fn busy(millis: u64) -> Run {
    let began = micros();
    let core = this_core();
    let allowed = allowed_cores();
    busy_for(millis);
    Run {
        core,
        allowed,
        began,
        ended: micros(),
    }
}

// Before a long call is sent, its worker is narrowed to the core the fewest long calls run on,
// so two running at once cannot have woken on one core to share it while another idles; once
// the call starts, the worker may run on every core it could as it started. Calls are
// spawned as a program would, so that the runtime's threads keep the cores busy as they send.
//
// Other work on the machine (other tests, under `cargo nextest`) can crowd a call, and a core
// where a call placed alone had under a quarter of the CPU is left out of placement for a
// second, calls then going beside others on purpose: a round counts only when none of its
// calls, nor any in the nine seconds before, had under 40% of the CPU, and the test waits for
// six such rounds (for up to 30 s; every round, quiet or not, checks that no worker was left on
// one core). Two calls of ours sharing a core get half of it each, so the rounds that
// show what this test looks for still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_calls_running_at_once_started_on_cores_of_their_own() {
    const MILLIS: u64 = 10;
    let _turn = TURN.lock().await;
    let Some(ours) = two_cores_or_more() else {
        return;
    };
    ProcessPool::configure("spread").workers(2).apply().unwrap();
    ProcessPool::get("spread").unwrap().start().await.unwrap();
    // Calls are placed once they take over a millisecond on average; a crowded one among these
    // already makes placement leave its core out.
    let warm = [busy(20).await.unwrap(), busy(20).await.unwrap()];
    let started = Instant::now();
    let mut disturbed = warm
        .iter()
        .any(|run| 2 * (run.ended - run.began) > 5 * 20 * 1000)
        .then(Instant::now);
    let mut counted = 0;
    while counted < 6 {
        // A machine kept busy by other work (a build, `cargo test` of another project) shows
        // nothing of placement: the test ends with the rounds it could check, each checked in
        // full, rather than fail for the machine's sake.
        if started.elapsed() > QUIET_WITHIN {
            eprintln!(
                "placement checked in {counted} of 6 rounds: other work kept the cores busy for \
                 {QUIET_WITHIN:?}; run this test alone to check all six"
            );
            return;
        }
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            calls.spawn(busy(MILLIS));
        }
        let runs: Vec<Run> = calls
            .join_all()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for run in &runs {
            assert_eq!(run.allowed, ours, "left on one core: {run:?}");
        }
        let crowded = |run: &Run| 2 * (run.ended - run.began) > 5 * MILLIS * 1000;
        if runs.iter().any(crowded) {
            disturbed = Some(Instant::now());
        }
        // Placement leaves a crowded core out for a second, twice as long each time in a row, up
        // to eight: rounds in that time may put calls beside each other on purpose.
        if disturbed.is_some_and(|at| at.elapsed() < Duration::from_secs(9)) {
            continue;
        }
        counted += 1;
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                let overlap = a.began < b.ended && b.began < a.ended;
                assert!(
                    !overlap || a.core != b.core,
                    "{a:?} and {b:?} ran at once on one core"
                );
            }
        }
    }
}

/// How many cores its worker may use as the call starts; then, with `pin`, the worker ties
/// itself to the core it runs on, as code that manages its own affinity would.
fn cores_at_start(pin: bool) -> i32 {
    let allowed = allowed_cores();
    if pin {
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes one of its bits, and the
        // size passed is that of the set.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(this_core() as usize, &mut one);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of_val(&one), &one),
                0
            );
        }
    }
    busy_for(5);
    allowed
}

#[offload(process, pool = "pinning")]
fn pinning(pin: bool) -> i32 {
    cores_at_start(pin)
}

#[offload(process, pool = "pinning-kept")]
fn pinning_kept(pin: bool) -> i32 {
    cores_at_start(pin)
}

// Placing a long call sets its worker's affinity back to what it started with as the call starts,
// so a function that ties its worker to one core is undone by the next placed call (the next call,
// unless other work has left every core out of placement for a while); a pool with `spread(false)`
// never touches affinity, and the tie holds.
#[tokio::test]
async fn spread_false_leaves_a_workers_own_affinity_alone() {
    let _turn = TURN.lock().await;
    let Some(ours) = two_cores_or_more() else {
        return;
    };
    for pool in ["pinning", "pinning-kept"] {
        ProcessPool::configure(pool)
            .workers(1)
            .nice(0)
            .spread(pool == "pinning")
            .apply()
            .unwrap();
    }
    // Five calls of 5 ms bring the pool's average over a millisecond, so calls are placed.
    for _ in 0..5 {
        assert_eq!(pinning(false).await, Ok(ours));
        assert_eq!(pinning_kept(false).await, Ok(ours));
    }
    assert_eq!(pinning(true).await, Ok(ours));
    assert_eq!(pinning_kept(true).await, Ok(ours));
    for _ in 0..3 {
        assert_eq!(pinning_kept(false).await, Ok(1), "not placed: left tied");
    }
    let started = Instant::now();
    while pinning(false).await != Ok(ours) {
        assert!(
            started.elapsed() < LIVENESS,
            "no call set the worker back in {LIVENESS:?}"
        );
    }
}
