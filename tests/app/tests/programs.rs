//! Whole programs built from this crate's `src/bin`, run as a user would run them.

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIVENESS: Duration = Duration::from_secs(30);

fn program(name: &str) -> Command {
    let path = match name {
        "with_guard" => env!("CARGO_BIN_EXE_with_guard"),
        "no_guard" => env!("CARGO_BIN_EXE_no_guard"),
        _ => unreachable!(),
    };
    let mut command = Command::new(path);
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("OFFLOAD_WORKER");
    command
}

/// Runs to completion, failing the test if the program is still running after [`LIVENESS`].
fn finish(mut command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let child = command.spawn().expect("program starts");
    let pid = child.id();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || send.send(child.wait_with_output()));
    match receive.recv_timeout(LIVENESS) {
        Ok(output) => (output.expect("output"), started.elapsed()),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("program {pid} still running after {LIVENESS:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_binary_calls_functions_defined_in_a_library_crate() {
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.args(["square", "12"]);
        c
    });
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "square = 144\n");
}

// A program that restored SIGPIPE's default action is not killed when its next call goes to a
// worker that died between calls (it would be, writing to a pipe nobody reads), and that call
// runs on a fresh worker.
#[test]
fn a_worker_that_died_between_calls_neither_kills_the_program_nor_fails_the_call() {
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.arg("between-calls");
        c
    });
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        "square = Ok(49), fresh worker: true\n"
    );
}

#[test]
fn the_pool_size_comes_from_the_environment_and_a_bad_value_says_how_to_fix_it() {
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.args(["square", "5"]).env("OFFLOAD_WORKERS", "1");
        c
    });
    assert_eq!(text(&output.stdout), "square = 25\n");
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.args(["square", "5"]).env("OFFLOAD_WORKERS", "many");
        c
    });
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("OFFLOAD_WORKERS") && stderr.contains("is not a positive whole number"),
        "{stderr}"
    );
}

#[test]
fn worker_output_reaches_the_terminal_unchanged_and_never_the_protocol() {
    let line = "hello from a worker: {\"not\": \"a frame\"} \u{1F980}";
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.args(["say", line]);
        c
    });
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("{line}\nsaid {} bytes\n", line.len())
    );
    assert!(text(&output.stderr).contains(&format!("{line} (stderr)\n")));
}

#[test]
fn a_forgotten_guard_is_a_clear_error_not_a_fork_bomb() {
    let (output, took) = finish(program("no_guard"));
    let stdout = text(&output.stdout);
    assert!(output.status.success());
    assert_eq!(
        stdout.matches("main started").count(),
        1,
        "main ran more than once: {stdout}"
    );
    assert!(
        stdout.contains("error: ") && stdout.contains("#[offload::main]"),
        "{stdout}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_copy_started_as_worker_without_the_guard_refuses_to_start_workers() {
    // Play the parent: start the unguarded program the way offload starts a worker, with the
    // marker set and a channel on descriptor 3, and read what it says on that channel.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut command = program("no_guard");
    command.env("OFFLOAD_WORKER", "main:1048576:0:0:auto");
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let mut child: Child = command.spawn().unwrap();
    drop(theirs);
    let mut said = Vec::new();
    ours.set_read_timeout(Some(LIVENESS)).unwrap();
    ours.read_to_end(&mut said)
        .expect("the copy closes its channel when it exits");
    let status = child.wait().unwrap();
    // One frame: length 9, kind 8 (guard missing), id 0.
    assert_eq!(said, [9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(status.code(), Some(2));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "main started\n", "the copy went on after refusing");
}

#[test]
fn workers_exit_when_their_parent_is_killed() {
    let dir = std::env::temp_dir().join(format!("offload-park-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = program("with_guard");
    command.arg("park").arg(&dir).env("OFFLOAD_WORKERS", "2");
    let mut parent = command.spawn().unwrap();
    let workers = wait_for(|| {
        let pids: Vec<i32> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        (pids.len() == 2).then_some(pids)
    });
    parent.kill().unwrap();
    parent.wait().unwrap();
    for pid in workers {
        wait_for(|| (!alive(pid)).then_some(()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Polls `check` until it yields, failing the test after [`LIVENESS`].
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < LIVENESS,
            "condition not met within {LIVENESS:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a live process (a zombie has exited).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
