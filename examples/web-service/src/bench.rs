//! The load generator: `web-service bench`. It starts this same program as a server on a free
//! loopback port three times, hashing in worker processes, inline on the event loop, and with
//! `spawn_blocking`; each time it keeps every core busy with `/hash` requests from a few
//! connections while one more connection probes `/health`, for a bounded time, then stops the
//! server with SIGTERM. It prints the p50 and p99 latency of both.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use web_service::Client;

use crate::HashIn;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// How long each server is loaded, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connections sending /hash requests back to back.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Pause between two /health probes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    probe_every_ms: u64,
}

/// Latencies in microseconds, with what failed.
#[derive(Default)]
struct Sample {
    micros: Vec<u64>,
    failed: usize,
}

impl Sample {
    fn percentile(&mut self, p: f64) -> f64 {
        self.micros.sort_unstable();
        let Some(last) = self.micros.len().checked_sub(1) else {
            return f64::NAN;
        };
        let at = ((p * self.micros.len() as f64).ceil() as usize).saturating_sub(1);
        self.micros[at.min(last)] as f64 / 1000.0
    }
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} s per mode, {} connections hashing (Argon2id, 19 MiB, 2 passes), /health probed every {} ms, {cores} cores",
        args.seconds, args.clients, args.probe_every_ms
    );
    println!();
    println!(
        "| hashing in | /hash p50 | /hash p99 | hashes/s | /health p50 | /health p99 | probes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for mode in [HashIn::Offload, HashIn::Inline, HashIn::SpawnBlocking] {
        let mut server = Server::start(mode)?;
        let (mut hashes, mut probes) = load(server.address, &args).await?;
        server.stop()?;
        let label = match mode {
            HashIn::Offload => "worker processes (offload)",
            HashIn::Inline => "the event loop (inline)",
            HashIn::SpawnBlocking => "spawn_blocking",
        };
        let failed = |s: &Sample| match s.failed {
            0 => String::new(),
            n => format!(" ({n} failed)"),
        };
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1}{} | {:.2} ms | {:.2} ms | {}{} |",
            hashes.percentile(0.50),
            hashes.percentile(0.99),
            hashes.micros.len() as f64 / args.seconds as f64,
            failed(&hashes),
            probes.percentile(0.50),
            probes.percentile(0.99),
            probes.micros.len(),
            failed(&probes),
        );
    }
    Ok(())
}

/// Loads the server at `address` for the bench's time: `(/hash, /health)` latencies.
async fn load(
    address: SocketAddr,
    args: &BenchArgs,
) -> Result<(Sample, Sample), Box<dyn std::error::Error>> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut hashers = tokio::task::JoinSet::new();
    for client in 0..args.clients {
        let mut connection = Client::connect(address).await?;
        hashers.spawn(async move {
            let mut sample = Sample::default();
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let body = serde_json::json!({ "password": format!("client {client}, try {n}") });
                let sent = Instant::now();
                match connection.post_json("/hash", &body).await {
                    Ok((status, _)) if status.is_success() => {
                        sample.micros.push(sent.elapsed().as_micros() as u64)
                    }
                    _ => sample.failed += 1,
                }
            }
            sample
        });
    }
    let mut prober = Client::connect(address).await?;
    let every = Duration::from_millis(args.probe_every_ms);
    let probes = tokio::spawn(async move {
        let mut sample = Sample::default();
        while Instant::now() < until {
            let sent = Instant::now();
            match prober.get("/health").await {
                Ok((status, _)) if status.is_success() => {
                    sample.micros.push(sent.elapsed().as_micros() as u64)
                }
                _ => sample.failed += 1,
            }
            tokio::time::sleep(every).await;
        }
        sample
    });
    let mut hashes = Sample::default();
    while let Some(sample) = hashers.join_next().await {
        let sample = sample?;
        hashes.micros.extend(sample.micros);
        hashes.failed += sample.failed;
    }
    Ok((hashes, probes.await?))
}

/// A server started from this program's own executable.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(mode: HashIn) -> Result<Server, Box<dyn std::error::Error>> {
        let mode = match mode {
            HashIn::Offload => "offload",
            HashIn::Inline => "inline",
            HashIn::SpawnBlocking => "spawn-blocking",
        };
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--listen", "127.0.0.1:0", "--hash-in", mode])
            .stdout(Stdio::piped())
            .spawn()?;
        // The server's first line names its address; read on a thread so that a server that
        // says nothing cannot hang the bench.
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even once nobody listens, so that the server never writes to a
            // closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let line = lines.recv_timeout(Duration::from_secs(30))?;
        let address = line
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| format!("unexpected first line from the server: {line}"))?
            .parse()?;
        Ok(Server { child, address })
    }

    fn stop(&mut self) -> std::io::Result<()> {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().map(drop)
    }
}
