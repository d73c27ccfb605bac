//! Process-mode functions defined in a library crate, called from the programs in `src/bin` and
//! from the tests in `tests/`: registration must survive linking into another crate.

use std::path::PathBuf;

use offload::offload;

/// Squares `x` in a worker process.
#[offload(process)]
pub fn square(x: u64) -> u64 {
    x * x
}

/// Prints a line from the worker, then answers: the worker's stdout is the caller's terminal.
#[offload(process)]
pub fn say(line: String) -> usize {
    println!("{line}");
    eprintln!("{line} (stderr)");
    line.len()
}

/// Writes the worker's pid into `dir`, then never returns: a call to kill from outside.
#[offload(process)]
pub fn park_forever(dir: PathBuf) {
    std::fs::write(dir.join(std::process::id().to_string()), b"").expect("pid file");
    loop {
        std::thread::park();
    }
}

/// The worker's pid.
#[offload(process)]
pub fn worker_pid() -> u32 {
    std::process::id()
}

/// Writes the worker's pid into `dir`, then works until `release` exists, and returns the pid:
/// a call still running when the program is told to stop.
#[offload(process)]
pub fn work_until(dir: PathBuf, release: PathBuf) -> u32 {
    let pid = std::process::id();
    std::fs::write(dir.join(pid.to_string()), b"").expect("pid file");
    while !release.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pid
}

/// Starts `sleep seconds` from the worker and returns its pid without waiting for it: a process
/// the call leaves behind in the worker's group.
#[offload(process)]
pub fn start_sleeper(seconds: u32) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg(seconds.to_string())
        .spawn()
        .expect("sleep starts");
    let pid = child.id();
    // Never waited for: it is meant to outlive the call.
    std::mem::forget(child);
    pid
}
