//! The same blocking function on the default thread pool and on a named pool of three threads.
//!
//! Run with `cargo run --release --example default_and_custom`.

use std::time::{Duration, Instant};

use offload::offload;

/// Stands in for a slow blocking call. Runs on the default pool: tokio's blocking threads.
#[offload(thread)]
fn blocking_cpu_bound_function(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(2));
    x * x
}

/// The same body, run on the pool named "custom". A pool belongs to the function, so choosing
/// another one means another annotated function; the original body stays callable as
/// `blocking_cpu_bound_function_blocking`.
#[offload(thread, pool = "custom")]
fn on_custom_pool(x: u64) -> u64 {
    blocking_cpu_bound_function_blocking(x)
}

// Thread mode starts no worker processes, so this program needs no `#[offload::main]` guard.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Like ThreadPoolExecutor(max_workers=3); set before the pool's first call.
    offload::ThreadPool::configure("custom")
        .max_threads(3)
        .apply()?;

    let start = Instant::now();
    let result = blocking_cpu_bound_function(5).await?;
    println!("Default pool result: {result} ({:.1?})", start.elapsed());

    let start = Instant::now();
    let result = on_custom_pool(10).await?;
    println!("Custom pool result: {result} ({:.1?})", start.elapsed());

    // Six calls at once: the custom pool runs three, then the other three.
    let start = Instant::now();
    let calls: Vec<_> = (1..=6).map(|x| tokio::spawn(on_custom_pool(x))).collect();
    let mut squares = Vec::new();
    for call in calls {
        squares.push(call.await??);
    }
    println!(
        "Six calls on the 3-thread pool: {squares:?} ({:.1?}, two rounds of 2 s)",
        start.elapsed()
    );
    Ok(())
}
