//! Broker pools beside the floors of the broker itself, measured in one run on loopback.
//!
//! `cargo bench -p offload-bench-broker` starts a nats-server (found as the broker tests find
//! it) and two agents that are copies of this binary, and prints, each as the median of
//! repetitions with its min–max:
//! - F1, a raw core-NATS request-reply, and F2, a raw JetStream call written directly on
//!   async-nats (publish with a reply header and await the PubAck, pull, reply over core NATS,
//!   acknowledge): the floors;
//! - B1, one awaited call through a broker pool, against F2;
//! - B2, 10,000 calls in flight over the two agents, in calls per second;
//! - B3, `f_map` over the broker, in inputs per second, against B2;
//! - B4, a 64 MiB argument through the object store, in MB/s, beside the local pool;
//! - B5, an agent killed mid-call: the time to the caller's `WorkerLost`, and to the answer
//!   of a call with `retries = 1` from the other agent.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use offload::async_nats::{self, jetstream};
use offload::{offload, BrokerPool};
use offload_test_broker::{hold, hold_again, started, Agent, Server};
use tokio::task::JoinSet;

const REPS: usize = 5;

#[offload(process, pool = "remote")]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[offload(process, pool = "remote")]
fn byte_count(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

#[offload(process)]
fn local_byte_count(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

fn main() {
    offload::serve_if_worker();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let server = Server::start("bench");
    for pool in ["remote", "lost"] {
        BrokerPool::configure(pool)
            .url(&server.url)
            .apply()
            .unwrap();
    }
    let client = async_nats::connect(&server.url).await.unwrap();
    let version = client.server_info().version;
    println!("nats-server {version}, loopback, file storage; median of {REPS} [min–max]\n");

    let f1 = reps(|| core_request_reply(&client, 2_000)).await;
    row("F1 core request-reply, one in flight", &f1, "µs", 1e6);
    let f2 = reps(|| raw_jetstream_call(&client, 1_000)).await;
    row("F2 raw JetStream call, one in flight", &f2, "µs", 1e6);

    let agents = [
        Agent::start(&server, &["remote"], 2),
        Agent::start(&server, &["remote"], 2),
    ];
    let cpu = |pid: u32| cpu_seconds(pid).expect("a process of the bench");
    let whose = [
        ("server", server.pid()),
        ("caller", std::process::id()),
        ("agent 1", agents[0].pid),
        ("agent 2", agents[1].pid),
    ];
    for i in 0..200 {
        add(i, 1).await.unwrap();
    }
    let b1 = reps(|| async {
        let started = Instant::now();
        for i in 0..1_000 {
            add(i, 1).await.unwrap();
        }
        started.elapsed().as_secs_f64() / 1_000.0
    })
    .await;
    row("B1 broker call, one in flight", &b1, "µs", 1e6);
    println!(
        "   B1 / F2 = {:.2} (target ≤ 1.5)",
        median(&b1) / median(&f2)
    );

    let before: Vec<f64> = whose.iter().map(|(_, pid)| cpu(*pid)).collect();
    let b2 = reps(|| in_flight(10_000, |i| add(i, 1))).await;
    row("B2 10,000 broker calls in flight", &b2, "calls/s", 1.0);
    let spent: Vec<String> = whose
        .iter()
        .zip(before)
        .map(|((who, pid), before)| {
            let each = (cpu(*pid) - before) / (10_000 * REPS) as f64;
            format!("{who} {:.1} µs", each * 1e6)
        })
        .collect();
    println!("   CPU per call: {}", spent.join(", "));
    println!("   target ≥ 20,000/s; Ray: 8,040/s single client, 21,230/s multi-client");

    let b3 = reps(|| async {
        let started = Instant::now();
        let results = add_map((0..100_000u64).map(|i| (i, 1))).collect().await;
        assert!(results.iter().all(Result::is_ok));
        100_000.0 / started.elapsed().as_secs_f64()
    })
    .await;
    row("B3 f_map over the broker", &b3, "inputs/s", 1.0);
    println!("   B3 / B2 = {:.1} (target ≥ 5)", median(&b3) / median(&b2));

    let bytes = vec![7u8; 64 << 20];
    let b4 = reps(|| async {
        let started = Instant::now();
        byte_count(bytes.clone()).await.unwrap();
        (64 << 20) as f64 / started.elapsed().as_secs_f64() / 1e6
    })
    .await;
    row("B4 64 MiB argument, broker", &b4, "MB/s", 1.0);
    let local = reps(|| async {
        let started = Instant::now();
        local_byte_count(bytes.clone()).await.unwrap();
        (64 << 20) as f64 / started.elapsed().as_secs_f64() / 1e6
    })
    .await;
    row("   64 MiB argument, local pool", &local, "MB/s", 1.0);

    let lost = reps(|| agent_killed(&server, false)).await;
    row("B5 agent killed → WorkerLost", &lost, "s", 1.0);
    let retried = reps(|| agent_killed(&server, true)).await;
    row("   agent killed → retry's answer", &retried, "s", 1.0);
    println!("   targets: ≤ 3 s; ≤ the 10 s lease + 2 s");
}

/// Seconds from SIGKILL of the agent running a call to the caller's outcome: `WorkerLost`, or
/// with `retries = 1` the answer from the other agent (a call of 100 ms).
async fn agent_killed(server: &Server, retried: bool) -> f64 {
    let mut agents = [
        Agent::start(server, &["lost"], 1),
        Agent::start(server, &["lost"], 1),
    ];
    let dir = offload_test_broker::scratch("bench-lost");
    let call = if retried {
        tokio::spawn(hold_again(dir.clone(), "b".into(), 100))
    } else {
        tokio::spawn(hold(dir.clone(), "b".into(), 60_000))
    };
    let began = Instant::now();
    while started(&dir, "b").is_empty() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the call never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let worker = started(&dir, "b")[0];
    let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap();
    let host: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let killed = Instant::now();
    agents.iter_mut().find(|a| a.pid == host).unwrap().kill();
    let outcome = call.await.unwrap();
    let took = killed.elapsed().as_secs_f64();
    match (retried, outcome) {
        (true, Ok(_)) | (false, Err(offload::Error::WorkerLost { .. })) => took,
        (_, other) => panic!("unexpected outcome {other:?}"),
    }
}

/// User and system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

async fn reps<F: Future<Output = f64>>(mut run: impl FnMut() -> F) -> Vec<f64> {
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        samples.push(run().await);
    }
    samples
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn row(what: &str, samples: &[f64], unit: &str, scale: f64) {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "{what:<40} {:>12.1} {unit} [{:.1}–{:.1}]",
        median(samples) * scale,
        min * scale,
        max * scale
    );
}

/// Starts `calls` calls at once and returns calls per second.
async fn in_flight<F, Fut>(calls: usize, call: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64, offload::Error>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..calls {
        tasks.spawn(call(i as u64));
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

/// F1: seconds per core request-reply, one in flight, against a responder in this process.
async fn core_request_reply(client: &async_nats::Client, calls: usize) -> f64 {
    let mut requests = client.subscribe("bench.echo").await.unwrap();
    let responder = client.clone();
    let echo = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                responder.publish(reply, request.payload).await.unwrap();
            }
        }
    });
    client.flush().await.unwrap();
    let started = Instant::now();
    for _ in 0..calls {
        client
            .request("bench.echo", vec![0u8; 16].into())
            .await
            .unwrap();
    }
    let each = started.elapsed().as_secs_f64() / calls as f64;
    echo.abort();
    each
}

/// F2: seconds per call on the minimal work-queue path, one in flight: publish with a reply
/// header and await the PubAck, pull, reply over core NATS, acknowledge.
async fn raw_jetstream_call(client: &async_nats::Client, calls: usize) -> f64 {
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream("BENCH_F2").await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "BENCH_F2".into(),
            subjects: vec!["bench.f2".into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("f2".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let worker_client = client.clone();
    let worker = tokio::spawn(async move {
        let mut messages = consumer.messages().await.unwrap();
        while let Some(Ok(message)) = messages.next().await {
            let reply = message.headers.as_ref().unwrap().get("Reply").unwrap();
            worker_client
                .publish(reply.as_str().to_owned(), message.payload.clone())
                .await
                .unwrap();
            message.ack().await.unwrap();
        }
    });
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let started = Instant::now();
    for _ in 0..calls {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Reply", inbox.as_str());
        js.publish_with_headers("bench.f2", headers, vec![0u8; 16].into())
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .unwrap()
            .unwrap();
    }
    let each = started.elapsed().as_secs_f64() / calls as f64;
    worker.abort();
    each
}
