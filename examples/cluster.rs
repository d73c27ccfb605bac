//! The same annotated functions, run by agents on other hosts through NATS JetStream.
//!
//! One host runs the broker (`nats-server -js`). Worker hosts run this very binary with
//! `OFFLOAD_AGENT=nats://broker:4222`: the guard turns each into an agent that pulls calls and
//! runs them in local worker processes. The caller runs it with `OFFLOAD_BROKER_CLUSTER` set
//! to the same URL, which makes pool `cluster` a broker pool; nothing else changes.
//!
//! On one machine, with a server on the default port, `--agents 2` starts two agents here
//! for the demonstration:
//!
//! ```sh
//! nats-server -js &
//! OFFLOAD_BROKER_CLUSTER=nats://127.0.0.1:4222 \
//!     cargo run --release --features nats --example cluster -- --agents 2
//! ```

use std::process::{Child, Command};
use std::time::Instant;

use offload::offload;

/// Counts the primes below `below`, and says which host and agent ran it.
#[offload(process, pool = "cluster")]
fn count_primes(below: u64) -> (usize, String) {
    let count = (2..below)
        .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .count();
    // The worker's parent is the agent that ran it.
    let agent = std::os::unix::process::parent_id();
    (count, format!("{}:{agent}", hostname()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "this-host".into())
}

#[offload::main]
#[tokio::main]
async fn main() {
    // Said in words, not as `main`'s `Debug` of the error.
    if let Err(error) = run().await {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let pool = offload::BrokerPool::get("cluster").map_err(|e| {
        format!("{e} (set OFFLOAD_BROKER_CLUSTER=nats://127.0.0.1:4222, the URL of a broker)")
    })?;
    pool.start().await?;
    let agents = start_agents()?;

    let started = Instant::now();
    // One input to a message, so that every agent gets some (the default, 64 to a message,
    // suits many small inputs).
    let mut results = count_primes_map((0..16).map(|i| 1_000_000 + i * 50_000)).chunk_size(1);
    let mut by_agent = std::collections::BTreeMap::<String, usize>::new();
    while let Some((index, result)) = results.next().await {
        let (count, agent) = result?;
        println!("input {index:>2}: {count} primes, on {agent}");
        *by_agent.entry(agent).or_default() += 1;
    }
    println!(
        "16 calls in {:?}, by agent: {by_agent:?}",
        started.elapsed()
    );

    // A call of its own, awaited like any other.
    let (count, agent) = count_primes(1_000).await?;
    println!("primes below 1000: {count} (on {agent})");

    for mut agent in agents {
        // SIGTERM: an agent finishes what it holds, then exits.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
        agent.wait()?;
    }
    Ok(())
}

/// With `--agents N`, starts N agents on this machine: copies of this program with
/// `OFFLOAD_AGENT` set to the pool's broker.
fn start_agents() -> Result<Vec<Child>, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count = match (args.next().as_deref(), args.next()) {
        (Some("--agents"), Some(count)) => count.parse()?,
        _ => return Ok(Vec::new()),
    };
    let url = std::env::var("OFFLOAD_BROKER_CLUSTER")?;
    // Calls queue on the broker until an agent pulls them, so nothing waits for these.
    let agents = (0..count)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .env("OFFLOAD_AGENT", &url)
                .env("OFFLOAD_WORKERS_CLUSTER", "2")
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(agents)
}
