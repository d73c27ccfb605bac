//! Five large numbers checked for primality at once, each call in a worker process, the results
//! gathered in order.
//!
//! Run with `cargo run --release --example primes`.

use std::time::Instant;

use offload::offload;

const NUMBERS: [u64; 5] = [
    112_272_535_095_293,
    112_582_705_942_171,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

/// Trial division by every odd number up to the square root: millions of divisions per number.
#[offload(process)]
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n == 2 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    (3..)
        .step_by(2)
        .take_while(|i| i * i <= n)
        .all(|i| !n.is_multiple_of(i))
}

#[offload::main]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = offload::ProcessPool::get(offload::DEFAULT_POOL)?.workers();
    println!(
        "Checking {} numbers on {workers} worker processes...",
        NUMBERS.len()
    );
    let start = Instant::now();

    // Spawning starts every call now; awaiting the handles in order is Python's asyncio.gather.
    let tasks: Vec<_> = NUMBERS.iter().map(|&n| tokio::spawn(is_prime(n))).collect();
    for (n, task) in NUMBERS.iter().zip(tasks) {
        println!("{n} is prime: {}", task.await??);
    }

    println!("Done in {:.2?}.", start.elapsed());
    Ok(())
}
