//! The web service, run as a program on a free loopback port and driven over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use web_service::Client;

/// Liveness bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Cheap hashes: the tests run a debug build.
const CHEAP: [&str; 4] = ["--argon2-kib", "1024", "--argon2-passes", "1"];

/// The service as a child process, with its output as it comes.
struct Service {
    pid: u32,
    /// How the service exited, from a thread that waits for it.
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    address: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// An environment entry that the server and its workers carry, and nothing else does.
    tag: String,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let data = std::env::temp_dir().join(format!("offload-web-service-test-{tag}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_web-service"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(args)
            .env("WEB_SERVICE_TEST_TAG", &tag)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let pid = child.id();
        let (send, exited) = mpsc::channel();
        std::thread::spawn(move || send.send(child.wait().unwrap()));
        let mut service = Service {
            pid,
            exited,
            status: None,
            address: "0.0.0.0:0".parse().unwrap(),
            lines,
            tag: format!("WEB_SERVICE_TEST_TAG={tag}"),
        };
        let line = service.line_starting("listening on http://");
        service.address = line["listening on http://".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        service
    }

    /// Waits for the next line of output that starts with `prefix`.
    fn line_starting(&self, prefix: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    async fn client(&self) -> Client {
        Client::connect(self.address).await.unwrap()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid as i32, signal) }, 0);
    }

    /// Sends SIGTERM and checks that the service stops cleanly: exit code 0, and no process
    /// of it (a worker) left behind.
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.line_starting("stopped");
        let status = self
            .exited
            .recv_timeout(DEADLINE)
            .expect("the service exits");
        self.status = Some(status);
        assert!(status.success(), "{status}");
        let until = Instant::now() + DEADLINE;
        while let Some(pid) = tagged_process(&self.tag) {
            assert!(Instant::now() < until, "process {pid} outlived the service");
            std::thread::yield_now();
        }
    }
}

/// A test that failed leaves no server behind (its workers die with it).
impl Drop for Service {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            // SAFETY: as in `signal`; the waiting thread has not reaped it.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
            let _ = self.exited.recv_timeout(DEADLINE);
        }
    }
}

/// A live process whose environment holds `entry`.
fn tagged_process(entry: &str) -> Option<u32> {
    std::fs::read_dir("/proc").unwrap().find_map(|dir| {
        let pid: u32 = dir.ok()?.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|&b| b == 0)
            .any(|e| e == entry.as_bytes())
            .then_some(pid)
    })
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// `/health` until `running` workers run a call.
async fn wait_running(client: &mut Client, running: u64) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = client.get("/health").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let health = json_of(&body);
        if health["running"] == running {
            return health;
        }
        assert!(Instant::now() < until, "never {running} running: {health}");
    }
}

#[tokio::test]
async fn hashes_verifies_stores_files_and_stops_on_sigterm() {
    let mut service = Service::start(&CHEAP);
    let mut client = service.client().await;

    let (status, body) = client.get("/health").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["status"], "ok");

    let (status, body) = client
        .post_json("/hash", &json!({ "password": "hunter2" }))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let hash = json_of(&body)["hash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
    let verify = |password: &str| json!({ "password": password, "hash": hash });
    let (status, _) = client
        .post_json("/verify", &verify("hunter2"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = client
        .post_json("/verify", &verify("hunter3"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _) = client
        .send(Method::PUT, "/files/notes.txt", "some notes")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = client.get("/files/notes.txt").await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"some notes"[..]));
    let (status, _) = client.get("/files/absent.txt").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = client.get("/files/.hidden").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    drop(client);
    service.stop();
}

#[tokio::test]
async fn a_verify_over_its_timeout_is_504_and_a_burst_beyond_admission_is_503() {
    let mut service = Service::start(&["--workers", "1", "--max-in-flight", "1"]);
    let mut a = service.client().await;
    let (status, body) = a
        .post_json("/hash", &json!({ "password": "hunter2" }))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    // The same hash, but asking for a million passes: far more than the 2 s timeout allows.
    let costly = json_of(&body)["hash"]
        .as_str()
        .unwrap()
        .replace(",t=2,", ",t=1000000,");
    let body = json!({ "password": "hunter2", "hash": costly });
    let (mut b, mut c) = (service.client().await, service.client().await);
    let answers = tokio::join!(
        a.post_json("/verify", &body),
        b.post_json("/verify", &body),
        c.post_json("/verify", &body)
    );
    let mut statuses = [answers.0, answers.1, answers.2].map(|answer| answer.unwrap().0);
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT
        ]
    );
    // The timed-out worker was killed; the service goes on with a new one.
    wait_running(&mut a, 0).await;
    let (status, _) = a
        .post_json("/hash", &json!({ "password": "hunter2" }))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, body) = a.get("/health").await.unwrap();
    assert_eq!(json_of(&body)["workers_started"], 2);
    drop((a, b, c));
    service.stop();
}

#[tokio::test]
async fn a_running_hash_finishes_after_sigterm() {
    let mut service = Service::start(&[
        "--workers",
        "1",
        "--argon2-kib",
        "1024",
        "--argon2-passes",
        "60",
    ]);
    let mut hasher = service.client().await;
    let mut prober = service.client().await;
    let hashing = tokio::spawn(async move {
        hasher
            .post_json("/hash", &json!({ "password": "hunter2" }))
            .await
            .unwrap()
            .0
    });
    wait_running(&mut prober, 1).await;
    drop(prober);
    service.signal(libc::SIGTERM);
    service.line_starting("SIGTERM: no new connections");
    assert_eq!(hashing.await.unwrap(), StatusCode::OK);
    service.stop();
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_cost_a_worker() {
    let mut service = Service::start(&[
        "--workers",
        "1",
        "--argon2-kib",
        "1024",
        "--argon2-passes",
        "60",
    ]);
    let mut prober = service.client().await;
    let mut hasher = service.client().await;
    let body = json!({ "password": "hunter2" });
    let request = hasher.post_json("/hash", &body);
    // The request is sent and running when the client gives up on it and hangs up.
    tokio::select! {
        _ = request => panic!("the hash ended before the client hung up"),
        _ = wait_running(&mut prober, 1) => {}
    }
    drop(hasher);
    // The worker finishes the abandoned hash and serves the next one: still one worker started.
    wait_running(&mut prober, 0).await;
    let (status, _) = prober
        .post_json("/hash", &json!({ "password": "hunter2" }))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, body) = prober.get("/health").await.unwrap();
    assert_eq!(json_of(&body)["workers_started"], 1);
    drop(prober);
    service.stop();
}
