//! A CPU-heavy function in a worker process and a blocking sleep on a thread, started together,
//! while a ticker on the event loop shows that the loop never stalls.
//!
//! Run with `cargo run --release --example heavy_math`.

use std::time::{Duration, Instant};

use offload::offload;

/// CPU-bound work: ten million additions. It runs in a worker process.
#[offload(process)]
fn heavy_math(x: u64) -> u64 {
    let mut total = 0;
    for _ in 0..10_000_000 {
        // Hides `x` from the optimiser, which would otherwise fold the loop into `x * 10_000_000`.
        total += std::hint::black_box(x);
    }
    total
}

/// Blocking I/O, simulated by a sleep. It runs on a thread of tokio's blocking pool.
#[offload(thread)]
fn blocking_io() -> String {
    std::thread::sleep(Duration::from_secs(2));
    "I/O done".to_owned()
}

// A single-threaded runtime, like Python's event loop: if anything blocked it, the ticks would stop.
#[offload::main]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), offload::Error> {
    let start = Instant::now();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        every.tick().await;
        loop {
            every.tick().await;
            println!(
                "{:>5} ms  tick: the event loop is free",
                start.elapsed().as_millis()
            );
        }
    });

    let cpu = async {
        let total = heavy_math(5).await;
        println!(
            "{:>5} ms  heavy_math returned from its worker process",
            start.elapsed().as_millis()
        );
        total
    };
    let (io, cpu) = tokio::join!(blocking_io(), cpu);
    ticker.abort();

    println!("{}", io?);
    println!("CPU result: {}", cpu?);
    println!(
        "Both finished in {:.2?}, about the length of the sleep alone.",
        start.elapsed()
    );
    Ok(())
}
