//! Process mode through real worker processes: values of every common shape, many calls at
//! once, panics, and workers that die mid-call.

use std::path::PathBuf;

use offload::{offload, Error, Exit, ProcessPool};
use serde::{Deserialize, Serialize};

offload::test_setup!();

mod common;
use common::{assert_died, assert_panicked, busy_for};

#[offload(process)]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[offload(process)]
fn greet(name: String) -> String {
    format!("hello, {name}")
}

#[offload(process)]
fn sorted(mut values: Vec<i64>) -> Vec<i64> {
    values.sort_unstable();
    values
}

#[offload(process)]
fn halve(value: Option<u32>) -> Option<u32> {
    value.filter(|v| v % 2 == 0).map(|v| v / 2)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { radius: f64 },
    Square(f64),
    Empty,
}

#[offload(process)]
fn area(shape: Shape) -> f64 {
    match shape {
        Shape::Circle { radius } => std::f64::consts::PI * radius * radius,
        Shape::Square(side) => side * side,
        Shape::Empty => 0.0,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
    label: String,
}

#[offload(process)]
fn mirror(point: Point) -> Point {
    Point {
        x: -point.x,
        y: -point.y,
        label: point.label.chars().rev().collect(),
    }
}

#[offload(process)]
fn parse(text: String) -> Result<u32, String> {
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

#[offload(process)]
fn nothing() {}

#[offload(process)]
fn pid() -> u32 {
    std::process::id()
}

#[offload(process)]
fn explode(message: String) -> u32 {
    panic!("{message}")
}

#[offload(process)]
fn abort() -> u32 {
    std::process::abort()
}

#[offload(process)]
fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

#[offload(process, pool = "fragile")]
fn fragile_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "fragile")]
fn fragile_park(dir: PathBuf) -> u32 {
    std::fs::write(dir.join(std::process::id().to_string()), b"").unwrap();
    loop {
        std::thread::park();
    }
}

#[offload(process, pool = "steady")]
fn steady_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "steady")]
fn steady_explode() -> u32 {
    panic!("steady")
}

#[tokio::test]
async fn values_of_every_common_shape_round_trip() {
    assert_eq!(add(2, 40).await, Ok(42));
    assert_eq!(greet("Ferris".into()).await, Ok("hello, Ferris".to_owned()));
    assert_eq!(sorted(vec![3, -1, 2]).await, Ok(vec![-1, 2, 3]));
    assert_eq!(halve(Some(8)).await, Ok(Some(4)));
    assert_eq!(halve(Some(7)).await, Ok(None));
    assert_eq!(halve(None).await, Ok(None));
    assert_eq!(area(Shape::Square(3.0)).await, Ok(9.0));
    assert_eq!(area(Shape::Empty).await, Ok(0.0));
    assert!(
        (area(Shape::Circle { radius: 1.0 }).await.unwrap() - std::f64::consts::PI).abs() < 1e-12
    );
    let point = Point {
        x: 1,
        y: -2,
        label: "abc".into(),
    };
    assert_eq!(
        mirror(point).await,
        Ok(Point {
            x: -1,
            y: 2,
            label: "cba".into()
        })
    );
    assert_eq!(nothing().await, Ok(()));
}

#[tokio::test]
async fn a_function_returning_result_keeps_its_own_error_apart() {
    assert_eq!(parse("17".into()).await, Ok(Ok(17)));
    let refused = parse("x".into()).await.expect("offload itself succeeded");
    assert_eq!(
        refused,
        Err("\"x\": invalid digit found in string".to_owned())
    );
}

#[tokio::test]
async fn the_body_runs_in_another_process_and_the_blocking_companion_in_this_one() {
    assert_ne!(pid().await.unwrap(), std::process::id());
    assert_eq!(pid_blocking(), std::process::id());
    assert_eq!(add_blocking(1, 2), 3);
}

// `top`, `ps -o comm` and `pgrep` show a worker under its program's name, not as `exe`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_worker_goes_by_its_program_s_name() {
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let ours = comm(std::process::id());
    assert_ne!(ours.trim(), "exe");
    assert_eq!(comm(pid().await.unwrap()), ours);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_all_complete() {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        calls.spawn(async move { (i, add(i, i * 1000).await) });
    }
    let mut seen = [false; 200];
    while let Some(done) = calls.join_next().await {
        let (i, result) = done.unwrap();
        assert_eq!(result, Ok(i * 1001));
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[tokio::test]
async fn a_panic_comes_back_with_message_and_location() {
    let result = explode("kaboom".into()).await;
    let error = result.clone().unwrap_err();
    assert_panicked(result, "process::explode", "kaboom", "tests/process.rs");
    assert!(error.to_string().contains("kaboom"));
}

#[tokio::test]
async fn a_worker_survives_a_panic_and_keeps_serving() {
    ProcessPool::configure("steady").workers(1).apply().unwrap();
    let before = steady_pid().await.unwrap();
    assert!(matches!(
        steady_explode().await,
        Err(Error::Panicked { .. })
    ));
    assert_eq!(steady_pid().await, Ok(before));
}

#[tokio::test]
async fn a_worker_that_dies_fails_only_its_own_call() {
    assert_died(abort().await, Exit::Signal(6));
    assert_died(exit_with(3).await, Exit::Code(3));
    assert_eq!(add(1, 1).await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_from_outside_fails_its_call_and_queued_calls_complete() {
    ProcessPool::configure("fragile")
        .workers(1)
        .apply()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("offload-fragile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let parked = tokio::spawn(fragile_park(dir.clone()));
    let victim = common::pid_in(&dir).await;
    let queued: Vec<_> = (0..5).map(|_| tokio::spawn(fragile_pid())).collect();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);

    let error = parked.await.unwrap().unwrap_err();
    assert!(
        matches!(error, Error::WorkerDied { pid, exit: Exit::Signal(9), .. } if pid == victim),
        "{error:?}"
    );
    for call in queued {
        let replacement = call.await.unwrap().expect("queued call completes");
        assert_ne!(replacement, victim);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[offload(process)]
fn checksum(bytes: Vec<u8>, seed: u64) -> u64 {
    bytes
        .iter()
        .fold(seed, |sum, b| sum.rotate_left(7) ^ u64::from(*b))
}

#[offload(process)]
fn reversed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

#[tokio::test]
async fn byte_vectors_cross_whole_in_both_directions() {
    let bytes: Vec<u8> = (0..=255).cycle().take(3 << 20).collect();
    assert_eq!(
        checksum(bytes.clone(), 9).await,
        Ok(checksum_blocking(bytes.clone(), 9))
    );
    let mut expected = bytes.clone();
    expected.reverse();
    assert_eq!(reversed(bytes).await, Ok(expected));
    assert_eq!(reversed(Vec::new()).await, Ok(Vec::new()));
    // Under the shared-memory threshold but over the socket's buffer: the write waits for room.
    let middling: Vec<u8> = (0..=255).cycle().take(900 << 10).collect();
    let mut expected = middling.clone();
    expected.reverse();
    assert_eq!(reversed(middling).await, Ok(expected));
}

#[offload(process)]
fn square(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky");
    }
    x * x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_runs_every_input_and_keeps_each_result_with_its_input() {
    let results = square_map(0..2_000u64).chunk_size(32).collect().await;
    assert_eq!(results.len(), 2_000);
    for (x, result) in results.into_iter().enumerate() {
        match x {
            13 => assert!(matches!(result, Err(Error::Panicked { .. })), "{result:?}"),
            _ => assert_eq!(result, Ok(x as u64 * x as u64)),
        }
    }
    let mut pairs = add_map((0..100u64).map(|i| (i, 1)));
    let mut seen = 0;
    while let Some((index, result)) = pairs.next().await {
        assert_eq!(result, Ok(index as u64 + 1));
        seen += 1;
    }
    assert_eq!(seen, 100);
}

#[offload(process, pool = "unpolled")]
fn unpolled_add(a: u64, b: u64) -> u64 {
    a + b
}

#[offload(process, pool = "unpolled")]
fn unpolled_abort() {
    std::process::abort();
}

// Calls one after another poll for their replies by default, and sleep with `poll(ZERO)`;
// either way every reply arrives and a worker's death fails only its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_one_after_another_with_polling_on_and_off() {
    ProcessPool::configure("unpolled")
        .workers(1)
        .poll(std::time::Duration::ZERO)
        .apply()
        .unwrap();
    for i in 0..2_000u64 {
        assert_eq!(add(i, 1).await, Ok(i + 1));
        assert_eq!(unpolled_add(i, 2).await, Ok(i + 2));
        if i % 500 == 250 {
            assert_died(abort().await, Exit::Signal(6));
            assert_died(unpolled_abort().await, Exit::Signal(6));
        }
    }
}

/// How a test call spends its time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Work {
    Busy(u64),
    Asleep(u64),
}

/// This worker's scheduling priority, after `work` (milliseconds on the CPU or asleep).
fn priority_after(work: Work) -> i32 {
    match work {
        Work::Busy(millis) => busy_for(millis),
        Work::Asleep(millis) => std::thread::sleep(std::time::Duration::from_millis(millis)),
    }
    // SAFETY: getpriority only reads this thread's priority.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[offload(process, pool = "stepping-back")]
fn stepping_back(work: Work) -> i32 {
    priority_after(work)
}

#[offload(process, pool = "niced")]
fn niced(work: Work) -> i32 {
    priority_after(work)
}

#[offload(process, pool = "not-niced")]
fn not_niced(work: Work) -> i32 {
    priority_after(work)
}

// By default a worker lowers its priority by 10 once calls use over a millisecond of CPU time,
// by the second such call in a row, and not for calls that only wait; a pool's `nice` applies
// from the worker's start instead, and `nice(0)` never.
#[tokio::test]
async fn workers_step_back_once_calls_run_long_on_the_cpu() {
    for (pool, nice) in [
        ("stepping-back", None),
        ("niced", Some(5)),
        ("not-niced", Some(0)),
    ] {
        let builder = ProcessPool::configure(pool).workers(1);
        match nice {
            Some(increment) => builder.nice(increment),
            None => builder,
        }
        .apply()
        .unwrap();
    }
    // SAFETY: getpriority only reads this thread's priority.
    let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let lowered = |by: i32| (ours + by).min(19);
    use Work::{Asleep, Busy};
    for work in [Busy(0), Asleep(5), Asleep(5), Busy(0), Asleep(5)] {
        assert_eq!(stepping_back(work).await, Ok(ours), "{work:?}");
    }
    for work in [Busy(5), Busy(5)] {
        let before = stepping_back(work).await;
        assert!(
            before == Ok(ours) || before == Ok(lowered(10)),
            "{before:?}"
        );
    }
    for work in [Busy(0), Busy(5), Busy(0)] {
        assert_eq!(stepping_back(work).await, Ok(lowered(10)), "{work:?}");
    }
    for work in [Busy(0), Busy(5), Busy(5), Busy(0)] {
        assert_eq!(niced(work).await, Ok(lowered(5)), "{work:?}");
        assert_eq!(not_niced(work).await, Ok(ours), "{work:?}");
    }
}
