//! Many calls with randomly injected panics, crashes and timeouts: every call resolves exactly
//! once with the outcome its fault dictates, and the parent ends with no zombie, no orphan and
//! as many open descriptors as it started with.
//!
//! CI runs 3,000 calls; the full soak is
//! `OFFLOAD_SOAK_CALLS=100000 cargo test --release --test soak -- --nocapture`.

use std::time::{Duration, Instant};

use offload::{offload, Error, Exit, ProcessPool};
use serde::{Deserialize, Serialize};

offload::test_setup!();

mod common;
use common::{open_descriptors, resident_bytes};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Fault {
    None,
    Panic,
    Crash,
    Stall,
}

#[offload(process, pool = "soak")]
fn work(call: u64, fault: Fault) -> u64 {
    match fault {
        Fault::Panic => panic!("injected panic in call {call}"),
        Fault::Crash => std::process::exit(17),
        _ => call * 3,
    }
}

#[offload(process, pool = "soak", timeout = "100ms")]
fn stall(call: u64) -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        std::hint::black_box(call);
    }
}

fn fault_of(call: u64) -> Fault {
    // A fixed mix: 2% panics, 1% crashes, 0.2% stalls, spread by a multiplicative hash.
    match call.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54 {
        0..=19 => Fault::Panic,
        20..=29 => Fault::Crash,
        30..=31 => Fault::Stall,
        _ => Fault::None,
    }
}

async fn one(call: u64) -> (u64, Fault, Result<u64, Error>) {
    let fault = fault_of(call);
    let result = match fault {
        Fault::Stall => stall(call).await,
        _ => work(call, fault).await,
    };
    (call, fault, result)
}

/// `(live, zombie)` children of this process.
fn children() -> (usize, usize) {
    let me = std::process::id().to_string();
    let mut counts = (0, 0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1) == Some(&me.as_str()) {
            if fields[0] == "Z" {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_resolves_once_with_its_injected_outcome() {
    let calls: u64 = std::env::var("OFFLOAD_SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    ProcessPool::configure("soak").workers(2).apply().unwrap();
    ProcessPool::get("soak").unwrap().start().await.unwrap();
    let descriptors = open_descriptors();
    let memory = resident_bytes();
    let started = Instant::now();

    let mut seen = vec![false; calls as usize];
    let mut tally = [0usize; 4];
    let mut in_flight = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < calls || !in_flight.is_empty() {
        while next < calls && in_flight.len() < 256 {
            in_flight.spawn(one(next));
            next += 1;
        }
        let (call, fault, result) = in_flight.join_next().await.unwrap().unwrap();
        assert!(
            !std::mem::replace(&mut seen[call as usize], true),
            "call {call} resolved twice"
        );
        match (fault, &result) {
            (Fault::None, Ok(value)) => assert_eq!(*value, call * 3),
            (Fault::Panic, Err(Error::Panicked { message, .. })) => {
                assert_eq!(*message, format!("injected panic in call {call}"));
            }
            (
                Fault::Crash,
                Err(Error::WorkerDied {
                    exit: Exit::Code(17),
                    ..
                }),
            ) => {}
            (Fault::Stall, Err(Error::Timeout { .. })) => {}
            _ => panic!("call {call} with {fault:?} resolved as {result:?}"),
        }
        tally[fault as usize] += 1;
    }
    assert!(seen.iter().all(|s| *s), "a call was lost");
    println!(
        "{calls} calls in {:?}: {} answered, {} panicked, {} crashed, {} timed out",
        started.elapsed(),
        tally[0],
        tally[1],
        tally[2],
        tally[3]
    );

    // Killed and crashed workers are reaped on threads of their own: wait, within a bound, for
    // the process table and the descriptor table to settle.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (live, zombies) = children();
        let settled = zombies == 0 && live <= 2 && open_descriptors() <= descriptors;
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {live} live children, {zombies} zombies, {} descriptors (started with {descriptors})",
            open_descriptors()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grown = resident_bytes().saturating_sub(memory);
    println!("resident memory grew by {} KiB", grown / 1024);
    assert!(grown < 32 << 20, "resident memory grew by {grown} bytes");
}
