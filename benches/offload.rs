//! offload beside its peers and the physical floor, measured side by side in one run.
//!
//! `cargo bench --bench offload` prints one table: for each figure of issue 5, the median over
//! repetitions with its min–max spread, the same for the peer or floor it is held against, their
//! ratio and the target. It also writes the chart to `BENCHMARKS.svg` at the workspace root (or
//! to `$OFFLOAD_BENCH_SVG`) and every figure as JSON to `target/offload-bench.json` (or to
//! `$OFFLOAD_BENCH_JSON`). `OFFLOAD_BENCH_ONLY=2,6` runs only the figures named, so
//! `OFFLOAD_BENCH_ONLY=9 cargo bench --bench offload` runs only figure 9 (1,000 calls of 100 kB
//! in flight beside a raw pipe). BENCHMARKS.md says what each row measures.
//!
//! The binary is its own peer: re-executed with `OFFLOAD_BENCH_CHILD` set, it becomes the echo
//! end of the pipe and socket ping-pongs and of the streamed pipe, the child that exits at once
//! (the start-up floor), the idle child (the memory floor) or a child that spins (the
//! scheduler's floor under load); offload and procspawn re-execute it as their workers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use offload::{offload, ProcessPool};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Switches a re-executed copy of this binary into one of the bench's own children.
const CHILD: &str = "OFFLOAD_BENCH_CHILD";
/// The core an echo or spinning child pins itself to, if set.
const CHILD_CPU: &str = "OFFLOAD_BENCH_CHILD_CPU";
/// Repetitions of each measurement; the table shows their median and min–max.
const REPS: usize = 11;
const MIB: usize = 1 << 20;
const PAYLOAD: usize = 64 * MIB;
const IN_FLIGHT: usize = 10_000;
const QUEUED: usize = 100_000;
/// The "queue" pool's `max_queue`: how many of those calls are admitted (encoded) at once.
const QUEUE_ADMITTED: usize = 4096;
/// Figure 9: this many calls in flight, each carrying `MEDIUM` bytes each way.
const MEDIUM_CALLS: usize = 1_000;
const MEDIUM: usize = 100_000;
/// What each of a worker's pipes holds (`F_SETPIPE_SZ`), as offload-runtime's launch.rs sets it.
const PIPE_BYTES: usize = 256 << 10;

// The functions under test.

#[offload(thread)]
fn nothing() {}

#[offload(process)]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[offload(process)]
fn byte_count(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

#[offload(process)]
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

#[offload(process)]
fn default_worker_pid() -> u32 {
    std::process::id()
}

/// The seed's CPU-bound work: ten million additions.
#[offload(process, pool = "math")]
fn heavy_math(x: u64) -> u64 {
    let mut total: u64 = 0;
    for _ in 0..10_000_000 {
        // Without it the optimiser folds the loop into `x * 10_000_000`.
        total = total.wrapping_add(black_box(x));
    }
    total
}

/// The same work on a pool that sends one call per write, to show what batching does to it.
#[offload(process, pool = "math-unbatched")]
fn heavy_math_unbatched(x: u64) -> u64 {
    heavy_math_blocking(x)
}

#[offload(process, pool = "idle")]
fn idle_worker_pid() -> u32 {
    std::process::id()
}

#[offload(process, pool = "queue")]
fn queued(a: u64, b: u64) -> u64 {
    a ^ b
}

// A pool is cold only once, so each repetition of the cold start has a pool of its own.
const COLD_POOLS: [&str; 5] = ["cold-1", "cold-2", "cold-3", "cold-4", "cold-5"];

#[offload(process, pool = "cold-1")]
fn cold_1() -> u32 {
    std::process::id()
}

#[offload(process, pool = "cold-2")]
fn cold_2() -> u32 {
    std::process::id()
}

#[offload(process, pool = "cold-3")]
fn cold_3() -> u32 {
    std::process::id()
}

#[offload(process, pool = "cold-4")]
fn cold_4() -> u32 {
    std::process::id()
}

#[offload(process, pool = "cold-5")]
fn cold_5() -> u32 {
    std::process::id()
}

async fn first_call_on_cold_pool(index: usize) -> Result<u32, offload::Error> {
    match index {
        0 => cold_1().await,
        1 => cold_2().await,
        2 => cold_3().await,
        3 => cold_4().await,
        _ => cold_5().await,
    }
}

// The same work for procspawn, whose functions take one argument.

fn procspawn_add((a, b): (u64, u64)) -> u64 {
    a.wrapping_add(b)
}

fn procspawn_byte_count(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

// Counts live heap bytes while `COUNTING` is on, to price a queued call exactly; off, it costs
// one relaxed load per allocation, alike for offload and its peers.

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    offload::serve_if_worker();
    procspawn::init();
    if let Ok(mode) = std::env::var(CHILD) {
        run_child(&mode);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for (pool, workers) in [("math", 2), ("idle", 1)]
        .into_iter()
        .chain(COLD_POOLS.map(|p| (p, 1)))
    {
        ProcessPool::configure(pool)
            .workers(workers)
            .apply()
            .expect("pool configuration");
    }
    ProcessPool::configure("math-unbatched")
        .workers(2)
        .max_batch(1)
        .apply()
        .expect("pool configuration");
    ProcessPool::configure("queue")
        .workers(1)
        .max_queue(QUEUE_ADMITTED)
        .apply()
        .expect("pool configuration");
    let started = Instant::now();
    let load_before = load_average();
    let machine = Machine::describe();
    println!("offload benchmarks on {machine}");
    println!("each figure: median of {REPS} repetitions, [min–max] across them\n");

    // With `OFFLOAD_BENCH_ONLY` (figures 2 and 3 run together) the chart is written only where
    // `OFFLOAD_BENCH_SVG` says, so that a partial run leaves BENCHMARKS.svg alone.
    let only = std::env::var("OFFLOAD_BENCH_ONLY").ok();
    let wanted = |figure: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|f| f.trim() == figure))
    };
    let mut report = Report::default();
    // The cold start goes first: a real program's first call comes from a lean parent, while
    // forking one that holds figure 1's many blocking threads costs more.
    if wanted("7") {
        cold_start(&runtime, &mut report);
    }
    // Python's executors, run once here for the peer rows of figures 1 to 4.
    let python = ["1", "2", "3", "4"]
        .into_iter()
        .any(wanted)
        .then(|| python_executors(&mut report))
        .flatten();
    if wanted("1") {
        thread_mode(&runtime, &mut report, python.as_ref());
    }
    if wanted("2") || wanted("3") {
        small_calls(&runtime, &mut report, python.as_ref());
    }
    if wanted("8") {
        memory(&runtime, &mut report);
    }
    if wanted("5") {
        heavy_math_in_parallel(&runtime, &mut report);
    }
    if wanted("6") {
        ticker(&mut report);
    }
    if wanted("4") {
        large_argument(&runtime, &mut report, python.as_ref());
    }
    // After figure 4, whose note reads the default pool's workers as its 64 MiB calls left them.
    if wanted("9") {
        medium_calls_in_flight(&runtime, &mut report);
    }
    // Other processes on this machine compete for its two cores: the load says how much.
    report.notes.push(format!(
        "whole run: {:.1} s; load average (1 min) {load_before} before, {} after",
        started.elapsed().as_secs_f64(),
        load_average()
    ));

    print!("{}", report.table());
    let json_path = std::env::var("OFFLOAD_BENCH_JSON").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned());
        format!("{target}/offload-bench.json")
    });
    write_file(&json_path, &report.json(&machine));
    println!("results: {json_path}");
    let svg_path = match std::env::var("OFFLOAD_BENCH_SVG") {
        Ok(path) => Some(path),
        Err(_) if only.is_none() => {
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.svg").to_owned())
        }
        Err(_) => None,
    };
    if let Some(path) = svg_path {
        write_file(&path, &report.svg(&machine));
        println!("chart: {path}");
    }
}

/// Pins a child to the core its parent named, if it named one.
fn pin_as_told() {
    if let Some(cpu) = std::env::var(CHILD_CPU).ok().and_then(|c| c.parse().ok()) {
        pin_to(&[cpu]);
    }
}

/// The bench's own children, chosen by `OFFLOAD_BENCH_CHILD`.
fn run_child(mode: &str) -> ! {
    match mode {
        // The start-up floor: everything up to here is what any re-executed copy pays.
        "exit" => {}
        // The far end of the raw ping-pongs: its stdin and stdout are a pipe each, or one socket.
        "echo" => {
            pin_as_told();
            let mut input = std::io::stdin().lock();
            let mut output = std::io::stdout().lock();
            let mut message = [0; 16];
            while input.read_exact(&mut message).is_ok() {
                if output
                    .write_all(&message)
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        // The far end of the streamed pipe: echoes what arrives as it arrives, through its raw
        // descriptors (stdin's and stdout's buffers would split and copy the stream).
        "stream" => {
            let input = std::io::stdin().as_fd().try_clone_to_owned();
            let output = std::io::stdout().as_fd().try_clone_to_owned();
            if let (Ok(input), Ok(output)) = (input, output) {
                let (mut input, mut output) = (File::from(input), File::from(output));
                let mut buffer = vec![0; PIPE_BYTES];
                while let Ok(read @ 1..) = input.read(&mut buffer) {
                    if output.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        // Keeps a core busy until killed.
        "spin" => {
            pin_as_told();
            loop {
                black_box(0_u64);
            }
        }
        // The same, pausing briefly every 4 ms.
        "pulse" => loop {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(4) {
                black_box(0_u64);
            }
            std::thread::sleep(Duration::from_micros(30));
        },
        // The memory floor: says it is ready, then idles until its stdin closes.
        "idle" => {
            let mut output = std::io::stdout();
            let _ = output.write_all(b"r").and_then(|()| output.flush());
            let _ = std::io::stdin().read(&mut [0]);
        }
        other => {
            eprintln!("unknown {CHILD}={other}");
            std::process::exit(2);
        }
    }
    std::process::exit(0)
}

/// This binary, to be re-executed as the child `mode`.
fn this_binary(mode: &str) -> Command {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| std::env::current_exe().expect("the path of this binary"));
    let mut command = Command::new(path);
    command.env(CHILD, mode);
    command
}

/// Runs `future` as a task on `runtime`'s workers, where an application's tasks run (`block_on`
/// alone would poll it on this thread instead), and waits for it.
fn on_runtime<F>(runtime: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime
        .block_on(runtime.spawn(future))
        .expect("the bench task panicked")
}

// Figure 1: thread mode against tokio's spawn_blocking.

fn thread_mode(runtime: &Runtime, report: &mut Report, python: Option<&Python>) {
    const CALLS: usize = 3_000;
    let offload = || nothing();
    let peer = || tokio::task::spawn_blocking(|| ());
    on_runtime(runtime, async move {
        time_each_async(CALLS, offload).await;
        time_each_async(CALLS, peer).await;
    });
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        let (a, b) = on_runtime(runtime, time_pairs_async(CALLS, offload, peer));
        ours.push(median(&a));
        theirs.push(median(&b));
    }
    report.compare(
        1,
        "thread: awaited no-op call",
        Measure::time(&ours),
        ("spawn_blocking", Measure::time(&theirs)),
        Goal::AtMost(1.10),
        "≤ 1.10× spawn_blocking",
    );
    let peer = python.map(|python| ("Python ThreadPoolExecutor", python.thread_call));
    report.beside_python(1, "thread: awaited no-op call", Measure::time(&ours), peer);

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        let (a, b) = on_runtime(runtime, async move {
            let offload = || in_flight(IN_FLIGHT, |_| nothing());
            // `async` makes the peer as lazy as an offload call: its `spawn_blocking` runs
            // when its task first runs, not while the calls are being started.
            let peer = || {
                in_flight(IN_FLIGHT, |_| async {
                    tokio::task::spawn_blocking(|| ()).await
                })
            };
            if rep % 2 == 0 {
                let a = offload().await;
                (a, peer().await)
            } else {
                let b = peer().await;
                (offload().await, b)
            }
        });
        ours.push(a);
        theirs.push(b);
    }
    let in_flight = Measure::rate(&ours);
    report.compare(
        1,
        "thread: 10,000 no-op calls in flight",
        in_flight,
        ("spawn_blocking", Measure::rate(&theirs)),
        Goal::AtLeast(0.9),
        "≥ 0.9× the throughput",
    );

    // The map runs min(32, cores + 4) calls at once, as `ThreadPoolExecutor.map` does, where the
    // calls in flight above all start at once.
    let map_rate = || async {
        let started = Instant::now();
        for result in nothing_map(vec![(); IN_FLIGHT]).collect().await {
            result.expect("a mapped call");
        }
        IN_FLIGHT as f64 / started.elapsed().as_secs_f64()
    };
    on_runtime(runtime, map_rate());
    let mapped: Vec<f64> = (0..REPS).map(|_| on_runtime(runtime, map_rate())).collect();
    report.absolute_with(
        1,
        "thread: nothing_map over 10,000 inputs",
        Measure::rate(&mapped),
        ("calls in flight", in_flight),
        Goal::AtLeast(100_000.0),
        "≥ 100,000 calls/s",
    );
}

/// Awaits `calls` calls one after the other and returns the seconds each took.
async fn time_each_async<F, Fut, T, E>(calls: usize, mut call: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut seconds = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        black_box(call().await.expect("a call failed"));
        seconds.push(started.elapsed().as_secs_f64());
    }
    seconds
}

/// Awaits `calls` pairs of calls, one of each kind, one call at a time, the pair's order
/// alternating, so that both kinds meet the machine in the same state; returns the seconds each
/// call of each kind took.
async fn time_pairs_async<F, G, Fut, Gut, T, U, E, D>(
    calls: usize,
    mut first: F,
    mut second: G,
) -> (Vec<f64>, Vec<f64>)
where
    F: FnMut() -> Fut,
    G: FnMut() -> Gut,
    Fut: Future<Output = Result<T, E>>,
    Gut: Future<Output = Result<U, D>>,
    E: std::fmt::Debug,
    D: std::fmt::Debug,
{
    let (mut a, mut b) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for i in 0..calls {
        for turn in [i % 2, 1 - i % 2] {
            let started = Instant::now();
            if turn == 0 {
                black_box(first().await.expect("a call failed"));
                a.push(started.elapsed().as_secs_f64());
            } else {
                black_box(second().await.expect("a call failed"));
                b.push(started.elapsed().as_secs_f64());
            }
        }
    }
    (a, b)
}

fn time_each(calls: usize, mut call: impl FnMut()) -> Vec<f64> {
    (0..calls)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed().as_secs_f64()
        })
        .collect()
}

/// Starts `calls` calls at once, each in a task of its own, and returns calls per second.
async fn in_flight<F, Fut, T, E>(calls: usize, call: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..calls {
        tasks.spawn(call(i as u64));
    }
    while let Some(done) = tasks.join_next().await {
        black_box(done.expect("a call task panicked").expect("a call failed"));
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

// Figures 2 and 3: small process-mode calls against a raw pipe and procspawn.

fn small_calls(runtime: &Runtime, report: &mut Report, python: Option<&Python>) {
    const CALLS: usize = 2_000;
    const PROCSPAWN_CALLS: usize = 500;
    on_runtime(runtime, async {
        ProcessPool::get(offload::DEFAULT_POOL)?.start().await?;
        add(1, 2).await
    })
    .expect("the default pool starts");
    let procspawn = procspawn::Pool::new(2).expect("a procspawn pool");
    // The blocking pipe ping-pong is bimodal unpinned: 5 µs when the scheduler keeps both ends
    // on one core, 45-60 µs when a wake-up must cross to the other. The one-core placement is
    // the floor; the other is shown beside it.
    let other_core = std::thread::available_parallelism().map_or(0, |n| n.get().min(2) - 1);
    let mut pipe = Echo::over_pipe(0);
    let mut pipe_apart = Echo::over_pipe(other_core);
    let mut socket = Echo::over_socket(Some(0));
    let mut awaited = Echo::over_socket(None);

    let offload_calls = || time_each_async(CALLS, || add(black_box(1), black_box(2)));
    let procspawn_calls = || {
        time_each(PROCSPAWN_CALLS, || {
            black_box(
                procspawn
                    .spawn((black_box(1), black_box(2)), procspawn_add)
                    .join()
                    .expect("procspawn"),
            );
        })
    };
    let mut awaited_calls = |runtime: &Runtime| {
        let stream = awaited.socket.take().expect("a socket");
        let (seconds, stream) = on_runtime(runtime, awaited_round_trips(stream, CALLS));
        awaited.socket = Some(stream);
        seconds
    };
    let pinned_calls = |echo: &mut Echo| pinned(0, || time_each(CALLS, || echo.round_trip()));
    on_runtime(runtime, offload_calls());
    pinned_calls(&mut pipe);
    pinned_calls(&mut pipe_apart);
    pinned_calls(&mut socket);
    awaited_calls(runtime);
    procspawn_calls();
    let mut medians = [(); 7].map(|()| Vec::new());
    for rep in 0..REPS {
        // Alternate the order, so that a drift in the machine hits offload and its floor alike.
        if rep % 2 == 0 {
            medians[0].push(median(&on_runtime(runtime, offload_calls())));
            medians[1].push(median(&pinned_calls(&mut pipe)));
        } else {
            medians[1].push(median(&pinned_calls(&mut pipe)));
            medians[0].push(median(&on_runtime(runtime, offload_calls())));
        }
        medians[2].push(median(&pinned_calls(&mut socket)));
        medians[3].push(median(&awaited_calls(runtime)));
        medians[4].push(median(&procspawn_calls()));
        // The same calls awaited in `block_on` itself, as `#[tokio::main]` runs `main`'s body.
        medians[5].push(median(&runtime.block_on(offload_calls())));
        medians[6].push(median(&pinned_calls(&mut pipe_apart)));
    }
    drop((pipe, pipe_apart, socket, awaited));
    let [ours, pipe, socket, awaited, theirs, from_main, pipe_apart] =
        medians.map(|m| Measure::time(&m));
    let what = "process: awaited small call";
    let floor = "pipe ping-pong, one core";
    report.compare(
        2,
        what,
        ours,
        (floor, pipe),
        Goal::AtMost(1.5),
        "≤ 1.5× the pipe",
    );
    let floor = "pipe ping-pong, two cores";
    report.compare(2, what, ours, (floor, pipe_apart), Goal::None, "");
    let peer = ("procspawn Pool", theirs);
    report.compare_inverse(
        2,
        what,
        ours,
        peer,
        Goal::AtLeast(2.0),
        "≥ 2× faster than procspawn",
    );
    let peer = python.map(|python| ("Python ProcessPoolExecutor", python.process_call));
    report.beside_python(2, what, ours, peer);
    let floor = "socket ping-pong, one core";
    report.compare(2, what, ours, (floor, socket), Goal::None, "");
    let floor = "socket ping-pong on tokio";
    report.compare(2, what, ours, (floor, awaited), Goal::None, "");
    let floor = ("pipe ping-pong, one core", pipe);
    report.compare(
        2,
        "process: small call awaited in main",
        from_main,
        floor,
        Goal::None,
        "",
    );

    let mut ours = Vec::new();
    on_runtime(runtime, in_flight(IN_FLIGHT, |i| add(i, 1)));
    for _ in 0..REPS {
        ours.push(on_runtime(runtime, in_flight(IN_FLIGHT, |i| add(i, 1))));
    }
    let ours = Measure::rate(&ours);
    report.absolute(
        3,
        "process: 10,000 small calls in flight",
        ours,
        Goal::AtLeast(100_000.0),
        "≥ 100,000 calls/s",
    );
    let mut mapped = Vec::new();
    on_runtime(runtime, map_rate(IN_FLIGHT));
    for _ in 0..REPS {
        mapped.push(on_runtime(runtime, map_rate(IN_FLIGHT)));
    }
    report.absolute_with(
        3,
        "process: add_map over 10,000 inputs",
        Measure::rate(&mapped),
        ("calls in flight", ours),
        Goal::AtLeast(100_000.0),
        "≥ 100,000 calls/s",
    );
    // procspawn holds descriptors for every queued call: see whether it manages 10,000 under
    // this machine's descriptor limit, and measure it where it works.
    let (window, peer, failure) = match procspawn_attempt(IN_FLIGHT) {
        Ok(_) => (IN_FLIGHT, "procspawn Pool", None),
        Err(error) => (1_000, "procspawn, 1,000 in flight", Some(error)),
    };
    let mut theirs = Vec::new();
    procspawn_in_flight(&procspawn, window);
    for _ in 0..REPS {
        theirs.push(procspawn_in_flight(&procspawn, window));
    }
    report.compare_inverse(
        3,
        "process: 10,000 small calls in flight",
        ours,
        (peer, Measure::rate(&theirs)),
        Goal::AtLeast(10.0),
        "≥ 10× procspawn",
    );
    let peer = python.map(|python| ("Python ProcessPoolExecutor", python.process_in_flight));
    report.beside_python(3, "process: 10,000 small calls in flight", ours, peer);
    if let Some(error) = failure {
        report.notes.push(format!(
            "procspawn with 10,000 calls in flight failed (open-files limit {}): {error}; it was \
             measured with 1,000 in flight instead",
            open_files_limit()
        ));
    }
}

/// Runs `inputs` small calls through `add_map` and returns calls per second.
async fn map_rate(inputs: usize) -> f64 {
    let started = Instant::now();
    let results = add_map((0..inputs as u64).map(|i| (i, 1))).collect().await;
    for result in results {
        black_box(result.expect("a mapped call"));
    }
    inputs as f64 / started.elapsed().as_secs_f64()
}

/// The raw process floor: 16 bytes to the echo child and back, over a pipe or a Unix socket.
struct Echo {
    child: Child,
    socket: Option<UnixStream>,
    message: [u8; 16],
}

impl Echo {
    /// The child on core `cpu`; the caller's thread pins itself with [`pinned`] to match.
    fn over_pipe(cpu: usize) -> Echo {
        let child = Echo::child(Some(cpu))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the echo child starts");
        Echo {
            child,
            socket: None,
            message: *b"0123456789abcdef",
        }
    }

    /// The same child with one end of a socket pair as both its stdin and its stdout: the
    /// transport offload's workers use.
    fn over_socket(cpu: Option<usize>) -> Echo {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let input = OwnedFd::from(theirs.try_clone().expect("a second descriptor"));
        let child = Echo::child(cpu)
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .expect("the echo child starts");
        Echo {
            child,
            socket: Some(ours),
            message: *b"0123456789abcdef",
        }
    }

    /// The stream child, unpinned, both pipes holding [`PIPE_BYTES`] as a worker's do; a pipe
    /// that could not be enlarged is noted.
    fn streaming(report: &mut Report) -> Echo {
        let child = this_binary("stream")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the stream child starts");
        let ends = [
            child.stdin.as_ref().expect("piped").as_raw_fd(),
            child.stdout.as_ref().expect("piped").as_raw_fd(),
        ];
        for end in ends {
            // SAFETY: `end` is an open pipe; F_SETPIPE_SZ only resizes its buffer.
            let size = unsafe { libc::fcntl(end, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
            if size < PIPE_BYTES as libc::c_int {
                report.notes.push(format!(
                    "the raw pipe of figure 9 could not be enlarged to {} KiB: {}",
                    PIPE_BYTES >> 10,
                    std::io::Error::last_os_error()
                ));
            }
        }
        Echo {
            child,
            socket: None,
            message: *b"0123456789abcdef",
        }
    }

    /// Writes `messages` copies of `message` to the stream child from a second thread while
    /// this one reads the echo back; returns the seconds until the last byte came back.
    fn stream(&mut self, message: &[u8], messages: usize) -> f64 {
        let input = self.child.stdin.as_mut().expect("piped");
        let output = self.child.stdout.as_mut().expect("piped");
        let total = message.len() * messages;
        let mut buffer = vec![0; PIPE_BYTES];
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..messages {
                    input.write_all(message).expect("the stream child reads");
                }
            });
            let mut received = 0;
            while received < total {
                let read = output.read(&mut buffer).expect("the stream child answers");
                assert!(read > 0, "the stream child closed its end");
                received += read;
            }
        });
        started.elapsed().as_secs_f64()
    }

    /// The echo child, pinned to core `cpu` if given.
    fn child(cpu: Option<usize>) -> Command {
        let mut command = this_binary("echo");
        if let Some(cpu) = cpu {
            command.env(CHILD_CPU, cpu.to_string());
        }
        command
    }

    /// One blocking round trip.
    fn round_trip(&mut self) {
        if let Some(socket) = &mut self.socket {
            socket
                .write_all(&self.message)
                .expect("the echo child reads");
            socket
                .read_exact(&mut self.message)
                .expect("the echo child answers");
            return;
        }
        let input = self.child.stdin.as_mut().expect("piped");
        input
            .write_all(&self.message)
            .expect("the echo child reads");
        let output = self.child.stdout.as_mut().expect("piped");
        output
            .read_exact(&mut self.message)
            .expect("the echo child answers");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if let Some(socket) = self.socket.take() {
            let _ = socket.shutdown(std::net::Shutdown::Write);
        }
        let _ = self.child.wait();
    }
}

/// Runs `f` with this thread pinned to core `cpu`, then gives the thread its cores back.
fn pinned<T>(cpu: usize, f: impl FnOnce() -> T) -> T {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it in.
    let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is valid for writes of its size.
    unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&before), &mut before) };
    pin_to(&[cpu]);
    let value = f();
    // SAFETY: the set is the one read above.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&before), &before) };
    value
}

/// Lets this thread run only on `cpus`.
fn pin_to(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes a bit of the set, which is valid.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the set is valid for reads of its size.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

/// Round trips to the echo child over `socket`, awaited on tokio: registered once, then a
/// write, a read and a wake-up per round trip.
async fn awaited_round_trips(socket: UnixStream, calls: usize) -> (Vec<f64>, UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.set_nonblocking(true).expect("a non-blocking socket");
    let mut stream = tokio::net::UnixStream::from_std(socket).expect("a tokio socket");
    let mut message = *b"0123456789abcdef";
    let mut seconds = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        stream
            .write_all(&message)
            .await
            .expect("the echo child reads");
        stream
            .read_exact(&mut message)
            .await
            .expect("the echo child answers");
        seconds.push(started.elapsed().as_secs_f64());
    }
    (seconds, stream.into_std().expect("the socket back"))
}

fn procspawn_in_flight(pool: &procspawn::Pool, calls: usize) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..calls as u64)
        .map(|i| pool.spawn((i, 1), procspawn_add))
        .collect();
    for handle in handles {
        black_box(handle.join().expect("procspawn call"));
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

/// `calls` procspawn calls in flight on a fresh pool; the error is what stopped them.
fn procspawn_attempt(calls: usize) -> Result<f64, String> {
    let hook = std::panic::take_hook();
    let message = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = Arc::clone(&message);
    std::panic::set_hook(Box::new(move |info| {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_empty() {
            let text = info.to_string();
            // An `io::Error` inside an `unwrap` message: keep its own words.
            let words = text
                .split("message: \"")
                .nth(1)
                .and_then(|m| m.split('"').next());
            *seen = words
                .unwrap_or(text.lines().last().unwrap_or_default())
                .to_owned();
        }
    }));
    let outcome = std::thread::spawn(move || {
        let pool = procspawn::Pool::new(2).expect("a procspawn pool");
        procspawn_in_flight(&pool, calls)
    })
    .join();
    std::panic::set_hook(hook);
    outcome.map_err(|_| message.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

fn open_files_limit() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    line.split_whitespace()
        .nth(3)
        .unwrap_or("unknown")
        .to_owned()
}

// Figure 4: one 64 MiB argument against one memcpy of it and procspawn.

fn large_argument(runtime: &Runtime, report: &mut Report, python: Option<&Python>) {
    const REPS_LARGE: usize = 5;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let payload: Arc<Vec<u8>> = Arc::new(
        (0..PAYLOAD / 8)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()
            })
            .collect(),
    );
    let call = |payload: Arc<Vec<u8>>| async move {
        let argument = payload.to_vec();
        let started = Instant::now();
        let count = byte_count(argument).await.expect("the 64 MiB call");
        assert_eq!(count as usize, PAYLOAD);
        started.elapsed().as_secs_f64()
    };
    on_runtime(runtime, call(Arc::clone(&payload)));
    let mut destination = payload.to_vec();
    let procspawn = procspawn::Pool::new(1).expect("a procspawn pool");
    let procspawn_call = || {
        let argument = payload.to_vec();
        let started = Instant::now();
        let count = procspawn
            .spawn(argument, procspawn_byte_count)
            .join()
            .expect("procspawn 64 MiB call");
        assert_eq!(count as usize, PAYLOAD);
        started.elapsed().as_secs_f64()
    };
    procspawn_call();
    let (mut ours, mut copies, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS_LARGE {
        ours.push(on_runtime(runtime, call(Arc::clone(&payload))));
        let started = Instant::now();
        black_box(&mut destination).copy_from_slice(black_box(&payload));
        copies.push(started.elapsed().as_secs_f64());
        theirs.push(procspawn_call());
    }
    let ours = Measure::time(&ours);
    report.compare(
        4,
        "process: one 64 MiB argument",
        ours,
        ("memcpy of 64 MiB", Measure::time(&copies)),
        Goal::AtMost(8.0),
        "≤ 8× the memcpy",
    );
    report.compare_inverse(
        4,
        "process: one 64 MiB argument",
        ours,
        ("procspawn Pool", Measure::time(&theirs)),
        Goal::AtLeast(10.0),
        "≥ 10× faster than procspawn",
    );
    let peer = python.map(|python| ("Python ProcessPoolExecutor", python.process_64mib));
    report.beside_python(4, "process: one 64 MiB argument", ours, peer);

    let pids = on_runtime(runtime, async {
        tokio::join!(default_worker_pid(), default_worker_pid())
    });
    let largest = [pids.0, pids.1]
        .into_iter()
        .flatten()
        .filter_map(resident_bytes)
        .max();
    if let Some(bytes) = largest {
        report.notes.push(format!(
            "after the 64 MiB calls the larger default-pool worker holds {:.1} MiB resident",
            bytes as f64 / MIB as f64
        ));
    }
}

// Figure 9: 1,000 calls of 100 kB in flight against a raw pipe streaming the same bytes.

/// The load that deadlocked while a caller wrote a batch of calls and read no replies until the
/// write was done, as the worker blocked writing replies: `MEDIUM_CALLS` tasks each await one
/// `echo_bytes` of `MEDIUM` bytes on the default pool. Beside it, the same bytes streamed to the
/// stream child and back through one pipe each way, as large as a worker's.
fn medium_calls_in_flight(runtime: &Runtime, report: &mut Report) {
    /// A deadlock would hang the run; this makes it a failure that says what it was.
    const LIMIT: Duration = Duration::from_secs(60);
    let payload: Arc<Vec<u8>> = Arc::new((0..MEDIUM).map(|i| i as u8).collect());
    let echoed = on_runtime(runtime, {
        let payload = Arc::clone(&payload);
        async move {
            ProcessPool::get(offload::DEFAULT_POOL)?.start().await?;
            echo_bytes(payload.to_vec()).await
        }
    })
    .expect("the default pool starts");
    assert!(echoed == *payload, "echo_bytes changed its bytes");
    // Calls per second; the arguments are made before the clock starts.
    let calls = |payload: Arc<Vec<u8>>| async move {
        let arguments = Mutex::new(vec![payload.to_vec(); MEDIUM_CALLS]);
        let next = || arguments.lock().expect("the arguments").pop();
        let calls = in_flight(MEDIUM_CALLS, |_| echo_bytes(next().expect("an argument")));
        tokio::time::timeout(LIMIT, calls)
            .await
            .expect("1,000 calls of 100 kB in flight did not finish in 60 s: deadlocked?")
    };
    let mut pipe = Echo::streaming(report);
    on_runtime(runtime, calls(Arc::clone(&payload)));
    pipe.stream(&payload, MEDIUM_CALLS);
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        // Alternate the order, so that a drift in the machine hits offload and its floor alike.
        if rep % 2 == 0 {
            ours.push(on_runtime(runtime, calls(Arc::clone(&payload))));
            floor.push(pipe.stream(&payload, MEDIUM_CALLS));
        } else {
            floor.push(pipe.stream(&payload, MEDIUM_CALLS));
            ours.push(on_runtime(runtime, calls(Arc::clone(&payload))));
        }
    }
    drop(pipe);
    // Bytes moved count both directions: every call's argument and its reply.
    let per_call = (2 * MEDIUM) as f64;
    let moved: Vec<f64> = ours.iter().map(|rate| rate * per_call).collect();
    let floor: Vec<f64> = floor
        .iter()
        .map(|seconds| per_call * MEDIUM_CALLS as f64 / seconds)
        .collect();
    let what = "process: 1,000 calls of 100 kB in flight";
    let pipe = ("raw pipe echo, same bytes", Measure::byte_rate(&floor));
    report.compare(9, what, Measure::byte_rate(&moved), pipe, Goal::None, "");
    report.info(9, what, Measure::rate(&ours));
}

/// Python's `loop.run_in_executor` over its executors, measured by `python_executors.py` as this
/// bench measures offload: a no-op on a `ThreadPoolExecutor`, and on a 2-worker
/// `ProcessPoolExecutor` (the platform's default start method) a small call, 10,000 calls in
/// flight through `asyncio.gather`, and one 64 MiB `bytes` argument.
struct Python {
    thread_call: Measure,
    process_call: Measure,
    process_in_flight: Measure,
    process_64mib: Measure,
}

/// Runs the Python peer, or says in a note why there is none.
fn python_executors(report: &mut Report) -> Option<Python> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python_executors.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(REPS.to_string())
        .stderr(Stdio::inherit())
        .output();
    let text = match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Ok(output) => {
            report.notes.push(format!(
                "the Python peer failed ({}): no Python rows",
                output.status
            ));
            return None;
        }
        Err(error) => {
            report.notes.push(format!(
                "python3 could not be run ({error}): no Python rows"
            ));
            return None;
        }
    };
    let figure = |name: &str| -> Option<Vec<f64>> {
        let line = text
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))?;
        line.split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect()
    };
    let python = (|| {
        Some(Python {
            thread_call: Measure::time(&figure("thread_call")?),
            process_call: Measure::time(&figure("process_call")?),
            process_in_flight: Measure::rate(&figure("process_in_flight")?),
            process_64mib: Measure::time(&figure("process_64mib")?),
        })
    })();
    report.notes.push(match &python {
        Some(_) => {
            let about = text.lines().find_map(|line| line.strip_prefix("about "));
            format!("Python peer: {}", about.unwrap_or("python3"))
        }
        None => format!("the Python peer printed what this bench cannot read: {text}"),
    });
    python
}

// Figure 5: heavy_math on two worker processes against the same calls inline.

fn heavy_math_in_parallel(runtime: &Runtime, report: &mut Report) {
    const CALLS: u64 = 8;
    on_runtime(runtime, async {
        ProcessPool::get("math")?.start().await?;
        ProcessPool::get("math-unbatched")?.start().await
    })
    .expect("the math pools start");
    let offloaded = |batched: bool| async move {
        let started = Instant::now();
        let mut calls = JoinSet::new();
        for x in 1..=CALLS {
            if batched {
                calls.spawn(heavy_math(x));
            } else {
                calls.spawn(heavy_math_unbatched(x));
            }
        }
        while let Some(done) = calls.join_next().await {
            black_box(done.expect("a task").expect("heavy_math"));
        }
        started.elapsed().as_secs_f64()
    };
    let inline = || {
        let started = Instant::now();
        for x in 1..=CALLS {
            black_box(heavy_math_blocking(black_box(x)));
        }
        started.elapsed().as_secs_f64()
    };
    // The hardware's own limit: the same calls on two plain threads of this process, four each.
    let threads = || {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for half in [1, 2] {
                scope.spawn(move || {
                    for x in (half..=CALLS).step_by(2) {
                        black_box(heavy_math_blocking(black_box(x)));
                    }
                });
            }
        });
        started.elapsed().as_secs_f64()
    };
    let (mut ours, mut unbatched, mut theirs, mut floor) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    on_runtime(runtime, offloaded(true));
    on_runtime(runtime, offloaded(false));
    for _ in 0..REPS {
        // A pause lets the machine settle before the baselines: on this VM they ran up to
        // twice as slow right after an offloaded run, with none of our processes busy.
        std::thread::sleep(Duration::from_millis(150));
        theirs.push(inline());
        floor.push(threads());
        ours.push(on_runtime(runtime, offloaded(true)));
        unbatched.push(on_runtime(runtime, offloaded(false)));
    }
    let ours = Measure::time(&ours);
    let theirs = Measure::time(&theirs);
    report.compare_inverse(
        5,
        "8 × heavy_math, 2-worker pool",
        ours,
        ("the 8 calls inline", theirs),
        Goal::AtLeast(1.8),
        "≥ 1.8× faster than inline",
    );
    report.compare(
        5,
        "8 × heavy_math, 2-worker pool",
        ours,
        ("2 plain threads", Measure::time(&floor)),
        Goal::None,
        "",
    );
    report.compare_inverse(
        5,
        "8 × heavy_math, 2 workers, max_batch(1)",
        Measure::time(&unbatched),
        ("the 8 calls inline", theirs),
        Goal::None,
        "",
    );

    // The same while another program keeps core 0 busy at normal priority, beside two plain
    // threads under the same load: a worker that stepped back gets a tenth of that core, so
    // placement must learn to leave it out.
    let mut spinner = this_binary("spin")
        .env(CHILD_CPU, "0")
        .spawn()
        .expect("a spinning child");
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        if rep % 2 == 0 {
            floor.push(threads());
            ours.push(on_runtime(runtime, offloaded(true)));
        } else {
            ours.push(on_runtime(runtime, offloaded(true)));
            floor.push(threads());
        }
    }
    let _ = spinner.kill();
    let _ = spinner.wait();
    report.compare(
        5,
        "8 × heavy_math, core 0 kept busy",
        Measure::time(&ours),
        ("2 plain threads, core 0 kept busy", Measure::time(&floor)),
        Goal::None,
        "",
    );
}

// Figure 6: how late a 1 ms ticker on the event loop fires while CPU work goes on.

#[derive(Clone, Copy)]
enum Work {
    None,
    /// Two processes that spin, unknown to the event loop: the scheduler's floor.
    Spinning,
    /// Two processes that spin 4 ms and sleep 30 µs, over and over, the rhythm of a busy
    /// worker between calls, but without offload.
    Pulsing,
    Offloaded,
    Inline,
}

fn ticker(report: &mut Report) {
    const REPS_TICKER: usize = 7;
    let p99 = |work: Work| -> Vec<f64> {
        (0..REPS_TICKER)
            .map(|_| percentile(&mut ticker_lags(work), 0.99))
            .collect()
    };
    let idle = p99(Work::None);
    let spinning = p99(Work::Spinning);
    let pulsing = p99(Work::Pulsing);
    let offloaded = p99(Work::Offloaded);
    let inline = p99(Work::Inline);
    report.absolute_with(
        6,
        "1 ms ticker p99 lag, work offloaded",
        Measure::time(&offloaded),
        ("work inline", Measure::time(&inline)),
        Goal::AtMost(0.002),
        "p99 ≤ 2 ms",
    );
    report.info(6, "1 ms ticker p99 lag, idle loop", Measure::time(&idle));
    report.info(
        6,
        "1 ms ticker p99 lag, 2 spinning processes",
        Measure::time(&spinning),
    );
    report.info(
        6,
        "1 ms ticker p99 lag, 2 pulsing processes",
        Measure::time(&pulsing),
    );
}

/// Lags of a 1 ms ticker on a single-threaded runtime, Python's event loop, over one second,
/// while `work` keeps the machine busy.
fn ticker_lags(work: Work) -> Vec<f64> {
    const PERIOD: Duration = Duration::from_millis(1);
    const RUN: Duration = Duration::from_secs(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let spinners: Vec<Child> = match work {
        Work::Spinning | Work::Pulsing => (0..2)
            .map(|_| {
                let mode = if matches!(work, Work::Spinning) {
                    "spin"
                } else {
                    "pulse"
                };
                this_binary(mode)
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("a spinning child")
            })
            .collect(),
        _ => Vec::new(),
    };
    let lags = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let done = Arc::clone(&done);
            async move {
                let started = Instant::now();
                let mut lags = Vec::with_capacity(1_000);
                let mut due = started + PERIOD;
                while started.elapsed() < RUN {
                    tokio::time::sleep_until(due.into()).await;
                    let now = Instant::now();
                    lags.push(now.saturating_duration_since(due).as_secs_f64());
                    due = now + PERIOD;
                }
                done.store(true, Relaxed);
                lags
            }
        });
        while !done.load(Relaxed) {
            match work {
                Work::None | Work::Spinning | Work::Pulsing => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Work::Offloaded => {
                    let all =
                        tokio::join!(heavy_math(1), heavy_math(2), heavy_math(3), heavy_math(4));
                    black_box((
                        all.0.expect("heavy_math"),
                        all.1.expect("heavy_math"),
                        all.2.expect("heavy_math"),
                        all.3.expect("heavy_math"),
                    ));
                }
                Work::Inline => {
                    black_box(heavy_math_blocking(black_box(1)));
                    tokio::task::yield_now().await;
                }
            }
        }
        ticker.await.expect("the ticker")
    });
    for mut spinner in spinners {
        let _ = spinner.kill();
        let _ = spinner.wait();
    }
    lags
}

// Figure 7: the first call on a pool that has no worker yet, against a bare re-exec.

fn cold_start(runtime: &Runtime, report: &mut Report) {
    let exec = || {
        let started = Instant::now();
        let status = this_binary("exit")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("the exit child runs");
        assert!(status.success());
        started.elapsed().as_secs_f64()
    };
    exec();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for index in 0..COLD_POOLS.len() {
        theirs.push(median(&(0..3).map(|_| exec()).collect::<Vec<_>>()));
        ours.push(on_runtime(runtime, async move {
            let started = Instant::now();
            first_call_on_cold_pool(index).await.expect("a cold call");
            started.elapsed().as_secs_f64()
        }));
    }
    report.compare(
        7,
        "first call on a cold pool",
        Measure::time(&ours),
        ("re-exec to exit", Measure::time(&theirs)),
        Goal::AtMost(2.0),
        "≤ 2× the re-exec",
    );
}

// Figure 8: what an idle worker and a queued call cost in memory.

fn memory(runtime: &Runtime, report: &mut Report) {
    const REPS_MEMORY: usize = 3;
    let worker = on_runtime(runtime, idle_worker_pid()).expect("the idle pool's worker");
    let mut above = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..REPS_MEMORY {
        let mut child = this_binary("idle")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the idle child starts");
        let _ = child.stdout.as_mut().expect("piped").read(&mut [0]);
        std::thread::sleep(Duration::from_millis(100));
        let floor = resident_bytes(child.id()).expect("the idle child's RSS") as f64;
        let ours = resident_bytes(worker).expect("the idle worker's RSS") as f64;
        drop(child.stdin.take());
        let _ = child.wait();
        bare.push(floor);
        above.push(ours - floor);
    }
    report.absolute_with(
        8,
        "idle worker RSS above a bare copy",
        Measure::bytes(&above),
        ("bare copy's RSS", Measure::bytes(&bare)),
        Goal::AtMost(4.0 * MIB as f64),
        "≤ 4 MiB",
    );

    on_runtime(runtime, async { ProcessPool::get("queue")?.start().await })
        .expect("the queue pool starts");
    let future_size = std::mem::size_of_val(&queued(1, 2)) as f64;
    let costs: Vec<QueuedCost> = (0..REPS_MEMORY)
        .map(|_| queued_call_cost(runtime))
        .collect();
    let heap: Vec<f64> = costs.iter().map(|c| c.heap).collect();
    report.absolute_with(
        8,
        "parent heap per queued call",
        Measure::bytes(&heap),
        ("size_of_val(future)", Measure::bytes(&[future_size])),
        Goal::AtMost(256.0),
        "≤ 256 B plus payload",
    );
    let admitted = median(&costs.iter().map(|c| c.admitted).collect::<Vec<_>>());
    let waiting = median(&costs.iter().map(|c| c.waiting).collect::<Vec<_>>());
    // Later repetitions reuse the memory the first one freed, so only its RSS growth counts.
    report.notes.push(format!(
        "of 100,000 queued calls (max_queue {QUEUE_ADMITTED}), an admitted call waiting for the \
         worker holds {admitted:.0} B of heap, one waiting for admission {waiting:.0} B; the \
         parent's RSS grew by {:.0} B per call the first time",
        costs[0].rss
    ));
}

/// What 100,000 queued calls on the one-worker "queue" pool add to this process.
struct QueuedCost {
    /// Heap bytes per call, over all of them.
    heap: f64,
    /// Heap bytes per call among the first `1 + QUEUE_ADMITTED`, which are admitted: encoded,
    /// and waiting for the worker.
    admitted: f64,
    /// Heap bytes per call among the rest, which wait for admission.
    waiting: f64,
    /// Resident bytes per call, over all of them.
    rss: f64,
}

/// Makes 100,000 calls, each boxed and polled once so that it is queued, and prices them.
fn queued_call_cost(runtime: &Runtime) -> QueuedCost {
    let _entered = runtime.enter();
    let mut context = Context::from_waker(Waker::noop());
    let mut calls = Vec::with_capacity(QUEUED);
    let admitted = 1 + QUEUE_ADMITTED;
    let rss_before = resident_bytes(std::process::id()).unwrap_or(0) as f64;
    let heap_before = LIVE.load(Relaxed);
    let mut heap_admitted = 0;
    COUNTING.store(true, Relaxed);
    for i in 0..QUEUED {
        let mut call = Box::pin(queued(i as u64, 1));
        let _ = call.as_mut().poll(&mut context);
        calls.push(call);
        if i + 1 == admitted {
            heap_admitted = LIVE.load(Relaxed);
        }
    }
    COUNTING.store(false, Relaxed);
    let heap_after = LIVE.load(Relaxed);
    let rss_after = resident_bytes(std::process::id()).unwrap_or(0) as f64;
    // Dropping them cancels the running call, which kills (and so replaces) the pool's worker.
    drop(calls);
    QueuedCost {
        heap: (heap_after - heap_before) as f64 / QUEUED as f64,
        admitted: (heap_admitted - heap_before) as f64 / admitted as f64,
        waiting: (heap_after - heap_admitted) as f64 / (QUEUED - admitted) as f64,
        rss: (rss_after - rss_before) / QUEUED as f64,
    }
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_owned()
}

/// Resident set size of process `pid`, from `/proc/<pid>/status`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// Statistics.

fn median(samples: &[f64]) -> f64 {
    percentile(&mut samples.to_vec(), 0.5)
}

/// Nearest-rank percentile.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Seconds,
    PerSecond,
    Bytes,
    BytesPerSecond,
}

/// A figure over repetitions: its median and min–max.
#[derive(Clone, Copy)]
struct Measure {
    median: f64,
    min: f64,
    max: f64,
    unit: Unit,
}

impl Measure {
    fn of(reps: &[f64], unit: Unit) -> Measure {
        let min = reps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = reps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Measure {
            median: median(reps),
            min,
            max,
            unit,
        }
    }

    fn time(reps: &[f64]) -> Measure {
        Measure::of(reps, Unit::Seconds)
    }

    fn rate(reps: &[f64]) -> Measure {
        Measure::of(reps, Unit::PerSecond)
    }

    fn bytes(reps: &[f64]) -> Measure {
        Measure::of(reps, Unit::Bytes)
    }

    fn byte_rate(reps: &[f64]) -> Measure {
        Measure::of(reps, Unit::BytesPerSecond)
    }

    fn show(&self) -> String {
        format!(
            "{} [{}–{}]",
            format_value(self.median, self.unit),
            number(self.min, self.unit),
            number(self.max, self.unit)
        )
    }
}

/// A value with the unit that suits its size.
fn format_value(value: f64, unit: Unit) -> String {
    format!("{} {}", number(value, unit), unit_of(value, unit))
}

fn unit_of(value: f64, unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds if value < 1e-3 => "µs",
        Unit::Seconds if value < 1.0 => "ms",
        Unit::Seconds => "s",
        Unit::PerSecond => "k/s",
        Unit::Bytes if value.abs() < 4096.0 => "B",
        Unit::Bytes => "MiB",
        Unit::BytesPerSecond => "MiB/s",
    }
}

/// The number part of [`format_value`], scaled like the median it sits beside.
fn number(value: f64, unit: Unit) -> String {
    let scaled = match unit {
        Unit::Seconds if value < 1e-3 => value * 1e6,
        Unit::Seconds if value < 1.0 => value * 1e3,
        Unit::Seconds => value,
        Unit::PerSecond => value / 1e3,
        Unit::Bytes if value.abs() < 4096.0 => value,
        Unit::Bytes | Unit::BytesPerSecond => value / MIB as f64,
    };
    if scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    }
}

// The report: the table, the chart and the JSON.

/// A target on a row's `value` (a ratio, or an absolute figure for rows without a peer).
#[derive(Clone, Copy)]
enum Goal {
    None,
    AtMost(f64),
    AtLeast(f64),
}

struct Row {
    figure: u8,
    what: String,
    offload: Measure,
    reference: Option<(String, Measure)>,
    /// What the goal is checked against: a ratio to the reference, or the offload figure.
    value: f64,
    ratio: Option<String>,
    goal: Goal,
    target: String,
}

impl Row {
    fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::None => None,
            Goal::AtMost(limit) => Some(self.value <= limit),
            Goal::AtLeast(limit) => Some(self.value >= limit),
        }
    }

    fn status(&self) -> String {
        let by = match (self.met(), self.goal) {
            (Some(true), _) => return "met".to_owned(),
            (Some(false), Goal::AtMost(limit)) => (self.value / limit - 1.0) * 100.0,
            (Some(false), Goal::AtLeast(limit)) => (1.0 - self.value / limit) * 100.0,
            _ => return String::new(),
        };
        // A miss under 1% still shows as one.
        let digits = usize::from(by < 1.0);
        format!("missed by {by:.digits$}%")
    }

    /// Offload's cost relative to its reference (lower is better), and the target on the same
    /// scale: what the chart draws. A row without a ratio is drawn relative to its target.
    fn cost(&self) -> Option<(f64, f64)> {
        let relative = self.ratio.is_some();
        match self.goal {
            Goal::None => None,
            Goal::AtMost(limit) if relative => Some((self.value, limit)),
            Goal::AtLeast(limit) if relative => Some((1.0 / self.value, 1.0 / limit)),
            Goal::AtMost(limit) => Some((self.value / limit, 1.0)),
            Goal::AtLeast(limit) => Some((limit / self.value, 1.0)),
        }
    }

    fn chart_label(&self) -> String {
        match &self.reference {
            Some((name, _)) if self.ratio.is_some() => {
                format!("{}. {} vs {}", self.figure, self.what, name)
            }
            _ => format!("{}. {} vs target", self.figure, self.what),
        }
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// A row whose ratio is offload's figure over the reference's (time or rate).
    fn compare(
        &mut self,
        figure: u8,
        what: &str,
        offload: Measure,
        reference: (&str, Measure),
        goal: Goal,
        target: &str,
    ) {
        let value = offload.median / reference.1.median;
        self.rows.push(Row {
            figure,
            what: what.to_owned(),
            offload,
            reference: Some((reference.0.to_owned(), reference.1)),
            value,
            ratio: Some(format!("{value:.2}×")),
            goal,
            target: target.to_owned(),
        });
    }

    /// A row whose ratio is how many times offload beats the reference: faster for times,
    /// more for rates.
    fn compare_inverse(
        &mut self,
        figure: u8,
        what: &str,
        offload: Measure,
        reference: (&str, Measure),
        goal: Goal,
        target: &str,
    ) {
        let value = match offload.unit {
            Unit::PerSecond => offload.median / reference.1.median,
            _ => reference.1.median / offload.median,
        };
        let word = if offload.unit == Unit::PerSecond {
            "more"
        } else {
            "faster"
        };
        self.rows.push(Row {
            figure,
            what: what.to_owned(),
            offload,
            reference: Some((reference.0.to_owned(), reference.1)),
            value,
            ratio: Some(format!("{value:.2}× {word}")),
            goal,
            target: target.to_owned(),
        });
    }

    /// A row beside Python's executors, where the Python peer ran: how many times offload beats
    /// it, with no target.
    fn beside_python(
        &mut self,
        figure: u8,
        what: &str,
        offload: Measure,
        peer: Option<(&str, Measure)>,
    ) {
        if let Some(peer) = peer {
            self.compare_inverse(figure, what, offload, peer, Goal::None, "");
        }
    }

    /// A row held against an absolute target.
    fn absolute(&mut self, figure: u8, what: &str, offload: Measure, goal: Goal, target: &str) {
        self.rows.push(Row {
            figure,
            what: what.to_owned(),
            offload,
            reference: None,
            value: offload.median,
            ratio: None,
            goal,
            target: target.to_owned(),
        });
    }

    /// A row held against an absolute target, with a related figure shown beside it.
    fn absolute_with(
        &mut self,
        figure: u8,
        what: &str,
        offload: Measure,
        beside: (&str, Measure),
        goal: Goal,
        target: &str,
    ) {
        self.absolute(figure, what, offload, goal, target);
        self.rows.last_mut().expect("just pushed").reference =
            Some((beside.0.to_owned(), beside.1));
    }

    fn info(&mut self, figure: u8, what: &str, offload: Measure) {
        self.absolute(figure, what, offload, Goal::None, "");
    }

    fn table(&self) -> String {
        let header = [
            "#",
            "figure",
            "offload",
            "reference",
            "ratio",
            "target",
            "status",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|row| {
                let reference = match &row.reference {
                    Some((name, measure)) => format!("{name}: {}", measure.show()),
                    None => "—".to_owned(),
                };
                [
                    row.figure.to_string(),
                    row.what.clone(),
                    row.offload.show(),
                    reference,
                    row.ratio.clone().unwrap_or_else(|| "—".to_owned()),
                    if row.target.is_empty() {
                        "—".to_owned()
                    } else {
                        row.target.clone()
                    },
                    row.status(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&header.map(str::to_owned));
        out += &line(&widths.map(|w| "-".repeat(w)));
        for row in &cells {
            out += &line(row);
        }
        out.push('\n');
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// Horizontal bars of offload's cost relative to each reference on a log scale, each with
    /// its target marked: a bar that ends left of its target mark meets it.
    fn svg(&self, machine: &Machine) -> String {
        let rows: Vec<(&Row, f64, f64)> = self
            .rows
            .iter()
            .filter_map(|row| row.cost().map(|(cost, limit)| (row, cost, limit)))
            // A log scale has no room for zero: a cost at or below zero (an idle worker smaller
            // than the bare copy, within noise) is drawn at a thousandth.
            .map(|(row, cost, limit)| (row, cost.max(1e-3), limit))
            .collect();
        let longest = rows
            .iter()
            .map(|r| r.0.chart_label().chars().count())
            .max()
            .unwrap_or(0);
        let (plot_width, row_height, top) = (460.0, 30.0, 96.0);
        let label_width = longest as f64 * 6.7 + 20.0;
        let lowest = rows.iter().map(|r| r.1.min(r.2)).fold(1.0_f64, f64::min);
        let highest = rows.iter().map(|r| r.1.max(r.2)).fold(1.0_f64, f64::max);
        let (from, to) = (lowest.log10().floor() - 0.3, highest.log10().ceil() + 0.3);
        let x = |v: f64| label_width + (v.log10() - from) / (to - from) * plot_width;
        let width = label_width + plot_width + 190.0;
        let height = top + rows.len() as f64 * row_height + 40.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">offload against its peers and the physical floor</text>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="10" y="42" fill="dimgray">bar: offload's cost ÷ the reference's (time, 1/throughput or memory; rows without a peer: ÷ the target), log scale, lower is better</text>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="10" y="58" fill="dimgray">black mark: the target; green: met, red: missed. Medians of one run on {}</text>"#,
            escape(&machine.to_string())
        );
        let bottom = top + rows.len() as f64 * row_height;
        let mut decade = from.ceil() as i32 - 1;
        let mut last_label = f64::NEG_INFINITY;
        while f64::from(decade) <= to {
            for step in [1.0, 2.0, 5.0] {
                let v = step * 10f64.powi(decade);
                if v.log10() < from || v.log10() > to {
                    continue;
                }
                let stroke = if step == 1.0 { "#bbb" } else { "#e8e8e8" };
                let _ = writeln!(
                    svg,
                    r#"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="{stroke}"/>"#,
                    x(v)
                );
                // Every decade is labelled, the steps between only where there is room.
                if step == 1.0 || (x(v) - last_label >= 40.0 && x(10.0) - x(1.0) >= 120.0) {
                    last_label = x(v);
                    let _ = writeln!(
                        svg,
                        r#"<text x="{0:.1}" y="{1}" text-anchor="middle" fill="dimgray">{2}</text>"#,
                        x(v),
                        bottom + 16.0,
                        trim(v)
                    );
                }
            }
            decade += 1;
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{bottom}" stroke="darkslategray" stroke-dasharray="4 3"/><text x="{0:.1}" y="{2}" text-anchor="middle" fill="darkslategray">parity</text>"#,
            x(1.0),
            top - 6.0,
            top - 10.0
        );
        for (i, (row, cost, limit)) in rows.iter().enumerate() {
            let y = top + i as f64 * row_height;
            let met = row.met() == Some(true);
            let colour = if met { "#3a9a4a" } else { "#d0453a" };
            let _ = writeln!(
                svg,
                r#"<text x="{0}" y="{1:.1}" text-anchor="end">{2}</text>"#,
                label_width - 10.0,
                y + row_height / 2.0 + 4.0,
                escape(&row.chart_label())
            );
            let _ = writeln!(
                svg,
                r#"<rect x="{0:.1}" y="{1:.1}" width="{2:.1}" height="{3:.1}" fill="{colour}"/>"#,
                label_width,
                y + 6.0,
                (x(*cost) - label_width).max(1.0),
                row_height - 12.0
            );
            let _ = writeln!(
                svg,
                r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="black" stroke-width="3"/>"#,
                x(*limit),
                y + 2.0,
                y + row_height - 2.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{0:.1}" y="{1:.1}" fill="black">{2} (target {3}): {4}</text>"#,
                x(cost.max(*limit)) + 6.0,
                y + row_height / 2.0 + 4.0,
                if *cost <= 1e-3 {
                    "≤ 0.001".to_owned()
                } else {
                    trim(*cost)
                },
                trim(*limit),
                row.status()
            );
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn json(&self, machine: &Machine) -> String {
        let measure = |m: &Measure| {
            let unit = match m.unit {
                Unit::Seconds => "s",
                Unit::PerSecond => "calls/s",
                Unit::Bytes => "bytes",
                Unit::BytesPerSecond => "bytes/s",
            };
            format!(
                r#"{{"median": {:e}, "min": {:e}, "max": {:e}, "unit": "{unit}"}}"#,
                m.median, m.min, m.max
            )
        };
        let mut out = String::from("{\n");
        let _ = writeln!(
            out,
            r#"  "machine": {},"#,
            json_string(&machine.to_string())
        );
        let _ = writeln!(out, r#"  "repetitions": {REPS},"#);
        out.push_str("  \"rows\": [\n");
        for (i, row) in self.rows.iter().enumerate() {
            let reference = match &row.reference {
                Some((name, m)) => format!(
                    r#"{{"name": {}, "measure": {}}}"#,
                    json_string(name),
                    measure(m)
                ),
                None => "null".to_owned(),
            };
            let met = row.met().map_or("null".to_owned(), |m| m.to_string());
            let _ = write!(
                out,
                r#"    {{"figure": {}, "what": {}, "offload": {}, "reference": {}, "value": {:e}, "target": {}, "met": {met}}}"#,
                row.figure,
                json_string(&row.what),
                measure(&row.offload),
                reference,
                row.value,
                json_string(&row.target)
            );
            out.push_str(if i + 1 < self.rows.len() { ",\n" } else { "\n" });
        }
        out.push_str("  ],\n  \"notes\": [");
        out.push_str(
            &self
                .notes
                .iter()
                .map(|n| json_string(n))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("]\n}\n");
        out
    }
}

/// A ratio with as many digits as it needs.
fn trim(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_file(path: &str, contents: &str) {
    if let Some(parent) = std::path::Path::new(path).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(error) = std::fs::write(path, contents) {
        eprintln!("cannot write {path}: {error}");
    }
}

/// The machine the figures come from.
struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
    rustc: String,
}

impl Machine {
    fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".to_owned(), |(_, name)| name.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "rustc (version unknown)".to_owned());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            kernel: if kernel.is_empty() {
                "unknown kernel".to_owned()
            } else {
                format!("Linux {kernel}")
            },
            rustc,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cores, {}, {}, {}",
            self.cores, self.cpu, self.kernel, self.rustc
        )
    }
}
