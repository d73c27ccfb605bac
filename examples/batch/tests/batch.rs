//! The batch job, run as a program over a demo set in a directory of the test's own: failures
//! stay with their inputs, and Ctrl-C (SIGINT) stops it cleanly, once or twice.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Liveness bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(60);

struct Batch {
    pid: u32,
    /// How the batch exited, from a thread that waits for it.
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    lines: mpsc::Receiver<String>,
    tmp: PathBuf,
    tag: String,
}

impl Batch {
    /// Starts the batch over a demo set of `files` files (and the two bad ones), written under
    /// a temporary directory of this test's own.
    fn start(test: &str, files: usize, passes: u32) -> Batch {
        let tmp = std::env::temp_dir().join(format!("batch-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let tag = format!("BATCH_TEST_TAG={test}-{}", std::process::id());
        let mut child = Command::new(env!("CARGO_BIN_EXE_batch"))
            .args(["--workers", "2", "--verbose"])
            .arg(format!("--demo-files={files}"))
            .arg(format!("--passes={passes}"))
            .env("TMPDIR", &tmp)
            .env("BATCH_TEST_TAG", &tag["BATCH_TEST_TAG=".len()..])
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
        Batch {
            pid,
            exited,
            status: None,
            lines,
            tmp,
            tag,
        }
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

    /// Every line of output until the batch closes it.
    fn all_lines(&self) -> Vec<String> {
        let until = Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(e) => panic!("the batch did not finish: {e}; so far {lines:#?}"),
            }
        }
    }

    fn interrupt(&self) {
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid as i32, libc::SIGINT) }, 0);
    }

    /// Waits for the batch to exit, and checks that no process of it (a worker) is left.
    fn exit(&mut self) -> ExitStatus {
        let status = self.exited.recv_timeout(DEADLINE).expect("the batch exits");
        self.status = Some(status);
        // Workers killed by a second Ctrl-C may take a moment to be gone.
        let until = Instant::now() + DEADLINE;
        while let Some(&pid) = tagged_processes(&self.tag).first() {
            assert!(Instant::now() < until, "process {pid} outlived the batch");
            std::thread::yield_now();
        }
        status
    }

    /// The lines of the results file.
    fn results(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.tmp.join("offload-batch-demo-results.tsv"));
        text.unwrap().lines().map(str::to_owned).collect()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            // SAFETY: kill has no memory-safety preconditions; the waiting thread has not
            // reaped the batch.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
            let _ = self.exited.recv_timeout(DEADLINE);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// The live processes whose environment holds `entry`: the batch and its workers.
fn tagged_processes(entry: &str) -> Vec<u32> {
    let dirs = std::fs::read_dir("/proc").unwrap();
    dirs.filter_map(|dir| {
        let pid: u32 = dir.ok()?.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|&b| b == 0)
            .any(|e| e == entry.as_bytes())
            .then_some(pid)
    })
    .collect()
}

/// `N` in "`label` N" within `line`.
fn count(line: &str, label: &str) -> u64 {
    let before = line.split(label).next().unwrap();
    before.rsplit(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_panicking_and_a_crashing_input_fail_alone() {
    let mut batch = Batch::start("bad-inputs", 20, 10);
    let output = batch.all_lines();
    let line = |prefix: &str| {
        let found = output.iter().find(|line| line.starts_with(prefix));
        found.unwrap_or_else(|| panic!("no line {prefix:?} in {output:#?}"))
    };
    assert!(line("panicked text-00100-binary.txt:").contains("every input is UTF-8 text"));
    assert!(line("crashed  text-00200-crash.txt:").contains("SIGABRT"));
    // The summary line is there (`line` fails the test otherwise).
    line("finished: 20 done, 2 failed (1 panicked, 1 crashed, 0 unreadable, 0 other), 0 not done");
    assert!(batch.exit().success());
    let results = batch.results();
    assert_eq!(results.len(), 22);
    for (file, kind) in [
        ("text-00100-binary.txt", "panicked"),
        ("text-00200-crash.txt", "crashed"),
        ("text-00007.txt", "done"),
    ] {
        let prefix = format!("{file}\t{kind}\t");
        assert!(results.iter().any(|l| l.starts_with(&prefix)), "{prefix}");
    }
}

#[test]
fn ctrl_c_lets_running_inputs_finish_and_keeps_what_was_done() {
    let mut batch = Batch::start("interrupt", 400, 2000);
    batch.line_starting("done ");
    batch.interrupt();
    batch.line_starting("Ctrl-C: no new inputs");
    let summary = batch.line_starting("interrupted:");
    assert_eq!(batch.exit().code(), Some(130), "{summary}");
    let done = count(&summary, "done,");
    let failed = count(&summary, "failed");
    let not_done = count(&summary, "not done");
    assert!(done >= 1 && not_done > 0, "{summary}");
    assert_eq!(done + failed + not_done, 402, "{summary}");
    // Every input that ended is in the results, and nothing else.
    assert_eq!(batch.results().len() as u64, done + failed);
}

#[test]
fn a_second_ctrl_c_cancels_the_running_inputs() {
    // Inputs that would run for minutes each.
    let mut batch = Batch::start("cancel", 10, 100_000_000);
    // Workers start for calls that need them: once both run, both have taken an input.
    let until = Instant::now() + DEADLINE;
    while tagged_processes(&batch.tag).len() < 3 {
        assert!(Instant::now() < until, "the workers did not start");
        std::thread::yield_now();
    }
    batch.interrupt();
    batch.line_starting("Ctrl-C: no new inputs");
    batch.interrupt();
    batch.line_starting("Ctrl-C again: cancelling the running inputs");
    let summary = batch.line_starting("interrupted:");
    assert!(
        summary.starts_with("interrupted: 0 done, 0 failed"),
        "{summary}"
    );
    assert_eq!(count(&summary, "not done"), 12, "{summary}");
    assert_eq!(batch.exit().code(), Some(130));
    assert!(batch.results().is_empty());
}
