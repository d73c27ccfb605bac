//! CPU-heavy calls in worker processes and a blocking sleep on a thread, started together,
//! while a ticker on the event loop shows that the loop never stalls.
//!
//! Run with `cargo run --release --example heavy_math`.

use std::time::{Duration, Instant};

use offload::offload;

/// Calls made at once: more than a 2-core machine has workers, so some wait for a free one.
const CALLS: u64 = 4;

/// Each call repeats the seed's loop this often. Ten million additions take a few milliseconds
/// in optimised Rust against half a second in Python; 250 rounds make a call last most of a
/// second, long enough to watch. A debug build runs the loop far slower, hence fewer rounds.
const ROUNDS: u32 = if cfg!(debug_assertions) { 10 } else { 250 };

/// CPU-bound work: the seed's ten million additions, `rounds` times over. It runs in a worker
/// process.
#[offload(process)]
fn heavy_math(x: u64, rounds: u32) -> u64 {
    let mut total = 0;
    for _ in 0..rounds {
        for _ in 0..10_000_000 {
            // Hides `x` from the optimiser, which would otherwise fold the loop into a product.
            total += std::hint::black_box(x);
        }
    }
    total
}

/// How long the blocking I/O takes.
const SLEEP: Duration = Duration::from_secs(2);

/// Blocking I/O, simulated by a sleep. It runs on a thread of tokio's blocking pool.
#[offload(thread)]
fn blocking_io() -> String {
    std::thread::sleep(SLEEP);
    "I/O done".to_owned()
}

// A single-threaded runtime, like Python's event loop: if anything blocked it, the ticks would stop.
#[offload::main]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = offload::ProcessPool::get(offload::DEFAULT_POOL)?.workers();
    println!(
        "blocking_io on a thread and {CALLS} heavy_math calls on {workers} worker processes, \
         all started at 0 ms:"
    );
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        every.tick().await;
        loop {
            every.tick().await;
            println!("{:>5} ms  tick: the event loop is free", ms());
        }
    });

    // Spawning starts every call now, like Python's run_in_executor; each reports as it ends.
    let io = tokio::spawn(async move {
        let io = blocking_io().await;
        println!("{:>5} ms  blocking_io returned from its thread", ms());
        io
    });
    let calls: Vec<_> = (1..=CALLS)
        .map(|x| {
            tokio::spawn(async move {
                let total = heavy_math(x, ROUNDS).await;
                println!(
                    "{:>5} ms  heavy_math({x}) returned from its worker process",
                    ms()
                );
                total
            })
        })
        .collect();

    let mut cpu = Vec::new();
    for call in calls {
        cpu.push(call.await??);
    }
    let cpu_done = ms();
    let io = io.await??;
    ticker.abort();

    println!("{io}");
    println!("CPU results: {cpu:?}");
    let total = start.elapsed();
    if total < SLEEP + SLEEP / 4 {
        println!(
            "All finished in {total:.2?}, about the length of the sleep alone: the CPU calls, \
             done at {cpu_done} ms, ran beside it, not after it."
        );
    } else {
        println!(
            "All finished in {total:.2?}: the CPU calls, done at {cpu_done} ms, ran beside the \
             sleep and took longer than it here (the cores were few or busy)."
        );
    }
    Ok(())
}
