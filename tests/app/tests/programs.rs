//! Whole programs built from this crate's `src/bin`, run as a user would run them.

use std::io::Read;
use std::os::unix::io::AsRawFd;
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
        "guard_in_runtime" => env!("CARGO_BIN_EXE_guard_in_runtime"),
        "starved" => env!("CARGO_BIN_EXE_starved"),
        "setup" => env!("CARGO_BIN_EXE_setup"),
        "traced" => env!("CARGO_BIN_EXE_traced"),
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
fn a_guard_inside_the_runtime_is_the_same_clear_error() {
    let (output, _) = finish(program("guard_in_runtime"));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(stdout.matches("main started").count(), 1, "{stdout}");
    assert_eq!(
        stdout.matches("error: GuardMissing: ").count(),
        3,
        "each call: {stdout}"
    );
    assert!(
        stdout.contains("inside #[tokio::main]'s async main"),
        "{stdout}"
    );
    // Known from the guard's place in the program itself: no copy was started to refuse.
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("offload:"), "{stderr}");
    assert!(
        !text(&output.stderr).contains("panicked"),
        "{}",
        text(&output.stderr)
    );
}

/// A pipe, `(read end, write end)`, and the inode that names it.
fn pipe() -> (std::fs::File, std::fs::File, u64) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both were just created and are owned by nothing else.
    let (read, write) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let inode = read.metadata().unwrap().ino();
    (read, write, inode)
}

#[test]
fn a_copy_started_as_worker_without_the_guard_refuses_to_start_workers() {
    // Play the parent: start the unguarded program the way offload starts a worker, with the
    // marker set and its channel on descriptors 3 and 4, and read what it says on it.
    let (mut ours, replies, replies_inode) = pipe();
    let (calls, _calls_held, calls_inode) = pipe();
    let (replies_fd, calls_fd) = (replies.as_raw_fd(), calls.as_raw_fd());
    let mut command = program("no_guard");
    command.env(
        "OFFLOAD_WORKER",
        format!("main:1048576:0:0:auto:{replies_inode}:{calls_inode}:0:1024:0:0:0"),
    );
    // SAFETY: fcntl and dup2 are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let replies = libc::fcntl(replies_fd, libc::F_DUPFD, 10);
            let calls = libc::fcntl(calls_fd, libc::F_DUPFD, 10);
            if replies == -1 || calls == -1 || libc::dup2(replies, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::dup2(calls, 4) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let mut child: Child = command.spawn().unwrap();
    drop((replies, calls));
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let _ = ours.read_to_end(&mut said);
        send.send(said)
    });
    let said = receive
        .recv_timeout(LIVENESS)
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

// The marker alone, inherited or set by hand, without the channel its caller made, does not
// turn a program into a worker: its main runs as usual.
#[test]
fn a_marker_without_its_channel_does_not_make_a_program_skip_its_main() {
    for marker in [
        "ctor:1048576:0:0:auto",
        "ctor:1048576:0:0:auto:1:2:0:1024:0:0:0",
    ] {
        let (output, _) = finish({
            let mut c = program("no_guard");
            c.env("OFFLOAD_WORKER", marker);
            c
        });
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(stdout.starts_with("main started\n"), "{marker}: {stdout}");
    }
}

// A terminal's Ctrl-C goes to the whole foreground process group: it reaches the program,
// which shuts its pool down gracefully, and not its workers, whose calls finish.
#[test]
fn ctrl_c_reaches_the_program_and_not_its_workers() {
    let dir = std::env::temp_dir().join(format!("offload-ctrl-c-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = program("with_guard");
    command
        .arg("ctrl-c")
        .arg(&dir)
        .env("OFFLOAD_WORKERS", "2")
        .process_group(0);
    let mut child = command.spawn().unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut byte = [0];
        while stdout.read(&mut byte).is_ok_and(|n| n == 1) {
            all.push(byte[0] as char);
            if all.ends_with('\n') {
                let _ = send.send(all.clone());
            }
        }
    });
    let ready = receive.recv_timeout(LIVENESS).expect("the calls start");
    assert_eq!(ready, "running\n");
    // SAFETY: kill has no memory-safety preconditions; the group is the program's.
    assert_eq!(unsafe { libc::kill(-pid, libc::SIGINT) }, 0);
    let said = receive.recv_timeout(LIVENESS).expect("the program ends");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        said,
        "running\nafter ctrl-c: true, true, new call: Err(Shutdown)\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// A deploy that replaces the executable on disk, or a rebuild while the program runs, leaves
// the pool able to start workers: they are started from the running image.
#[cfg(target_os = "linux")]
#[test]
fn replacing_the_program_on_disk_does_not_stop_the_pool_from_starting_workers() {
    let dir = std::env::temp_dir().join(format!("offload-replaced-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("app");
    // Copied by another process: a file this process had open for writing could be held open
    // by a child another test forks meanwhile, and its exec would fail with ETXTBSY.
    let copied = Command::new("cp")
        .arg(env!("CARGO_BIN_EXE_with_guard"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut command = Command::new(&copy);
    command
        .arg("replaced")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("OFFLOAD_WORKER");
    let (output, _) = finish(command);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "before: Ok(9), after: Ok(16)\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

// Out of threads and processes: a start that cannot get a thread fails with an error instead
// of a panic, and a dead worker whose reaper thread cannot start is reaped anyway, so the next
// start finds room. The process limit binds only an unprivileged user, so the program runs as
// `nobody` (which this test, as root, can arrange).
#[cfg(target_os = "linux")]
#[test]
fn running_out_of_threads_is_an_error_and_leaves_no_zombie() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: only root can start the program as another user, whose process limit binds"
        );
        return;
    }
    let mut command = program("starved");
    // SAFETY: setgid and setuid are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setgid(65534) == -1 || libc::setuid(65534) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (output, _) = finish(command);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        text(&output.stderr)
    );
    let mut lines = stdout.lines();
    let refused = lines.next().unwrap_or_default();
    assert!(
        refused.starts_with("refused: WorkerStart: ") && refused.contains("thread"),
        "{stdout}"
    );
    assert_eq!(lines.next(), Some("after: Ok(16), zombie left: false"));
}

/// Runs the `setup` program in `mode`; its output, and how many times the setup ran.
fn run_setup(mode: &str) -> (String, usize) {
    let log = std::env::temp_dir().join(format!("offload-setup-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (output, _) = finish({
        let mut c = program("setup");
        c.arg(mode).arg(&log);
        c
    });
    assert!(output.status.success(), "{}", text(&output.stderr));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        ran.lines().all(|line| line.ends_with("(0 arguments)")),
        "{ran}"
    );
    (text(&output.stdout), ran.lines().count())
}

// A worker runs the program's setup once, before its first call, and keeps what it made for
// the calls after it.
#[test]
fn a_worker_setup_runs_once_and_its_state_serves_every_call() {
    let (stdout, ran) = run_setup("ok");
    let calls: Vec<&str> = stdout.lines().collect();
    assert_eq!(calls.len(), 3, "{stdout}");
    assert!(
        calls[0].starts_with("Ok(Some(\"model of worker "),
        "{stdout}"
    );
    assert!(
        calls.iter().all(|call| *call == calls[0]),
        "one worker, one state: {stdout}"
    );
    assert_eq!(ran, 1);
}

// A setup that fails or panics is reported, naming the setup, and never makes the pool start
// workers without end: the first worker's failure fails every call.
#[test]
fn a_failing_or_panicking_worker_setup_is_reported_and_not_retried() {
    for (mode, message) in [
        ("fail", "no model at /nowhere"),
        ("panic", "panicked: setup exploded"),
    ] {
        let (stdout, ran) = run_setup(mode);
        let expected = format!("Err(WorkerSetup {{ setup: \"setup\", message: \"{message}\" }})\n");
        assert_eq!(stdout, expected.repeat(3), "{mode}");
        assert_eq!(ran, 1, "{mode}: the setup ran in one worker only");
    }
}

// With the tracing feature, a call carries its id to the worker: the function's log line, written
// by the worker's own subscriber (set up in its worker setup), sits in an `offload.call` span
// with the same id as the caller's span, which is itself inside the caller's `request` span.
#[test]
fn a_worker_s_log_line_reads_as_part_of_its_caller_s_span() {
    let (output, _) = finish(program("traced"));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{stdout}"))
    };
    let field = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        line[start..]
            .split([' ', '}'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let worker = line("hello from the worker");
    let caller = line("request{id=7}:offload.call{");
    assert!(worker.contains("offload.call{"), "{worker}");
    assert_eq!(
        field(worker, "call"),
        field(caller, "call"),
        "\n{worker}\n{caller}"
    );
    assert_eq!(field(worker, "worker"), field(caller, "worker"));
    assert!(caller.contains("function=\"traced::work\""), "{caller}");
    assert!(
        caller.contains("queue_wait_us=") && caller.contains("run_us="),
        "{caller}"
    );
    assert!(stdout.contains("doubled: Ok(42)"), "{stdout}");
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

// A program whose main returns while a process its worker started still runs: that process,
// left in the worker's group, is killed with the worker, as it is when the worker ends while
// the program goes on.
#[test]
fn a_process_a_worker_started_ends_when_the_program_returns_from_main() {
    let (output, _) = finish({
        let mut c = program("with_guard");
        c.arg("leave-a-sleeper");
        c
    });
    assert!(output.status.success(), "{}", text(&output.stderr));
    let sleeper = text(&output.stdout)
        .trim()
        .parse()
        .expect("the sleeper's pid");
    ends_or_is_killed(sleeper);
}

// The same when the program is killed and nothing of it runs to clean up.
#[test]
fn a_process_a_worker_started_ends_when_the_program_is_killed() {
    let mut command = program("with_guard");
    command.arg("leave-a-sleeper-and-wait");
    let mut parent = command.spawn().unwrap();
    let mut stdout = parent.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0];
        while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let _ = send.send(text(&line));
    });
    let line = receive.recv_timeout(LIVENESS).expect("the sleeper starts");
    let sleeper = line.parse().expect("the sleeper's pid");
    parent.kill().unwrap();
    parent.wait().unwrap();
    ends_or_is_killed(sleeper);
}

/// Waits until `pid` has exited, failing the test after [`LIVENESS`]; a process still running
/// then is killed first, so that a failing run leaves nothing behind.
fn ends_or_is_killed(pid: i32) {
    let started = Instant::now();
    while alive(pid) {
        if started.elapsed() > LIVENESS {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("process {pid} still running {LIVENESS:?} after its program ended");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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

#[test]
fn a_worker_that_cannot_start_for_want_of_descriptors_says_which_limit_to_raise() {
    let mut command = program("with_guard");
    command.args(["square", "3"]);
    // Enough for the runtime, not for a worker's pipes as well.
    // SAFETY: setrlimit is async-signal-safe, and the limit passed is a valid rlimit.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 12,
                rlim_max: 12,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (output, _) = finish(command);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("WorkerStart") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
}
