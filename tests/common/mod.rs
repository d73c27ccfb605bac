//! Helpers shared by the test crates of `tests/`: scratch directories, waiting on a condition
//! within a liveness bound, and reading the process table.

#![allow(dead_code)] // each test crate uses some of them

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a condition may take before the test fails: a bound on liveness, not a timing.
pub const LIVENESS: Duration = Duration::from_secs(20);

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("offload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` until it yields, failing the test after [`LIVENESS`].
pub async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < LIVENESS,
            "condition not met within {LIVENESS:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pid a worker wrote into `dir` (as the name of an empty file) once its call started.
pub async fn pid_in(dir: &Path) -> u32 {
    wait_for(|| {
        std::fs::read_dir(dir)
            .ok()?
            .find_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
    })
    .await
}

/// Whether `pid` is a live process (a zombie has exited).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits until `pid` has exited.
pub async fn gone(pid: u32) {
    wait_for(|| (!alive(pid)).then_some(())).await;
}

/// Keeps this thread on the CPU until it has used `millis` milliseconds of CPU time, however
/// long other work makes that take.
pub fn busy_for(millis: u64) {
    let cpu = || {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through the pointer, which is valid.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    };
    let started = cpu();
    while cpu() - started < Duration::from_millis(millis) {
        std::hint::spin_loop();
    }
}

pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * page
}

pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Asserts that a call failed because the worker running it ended with `exit`.
#[track_caller]
pub fn assert_died<T: std::fmt::Debug>(result: Result<T, offload::Error>, exit: offload::Exit) {
    match result {
        Err(offload::Error::WorkerDied { exit: ended, .. }) if ended == exit => {}
        other => panic!("expected a worker that ended with {exit}, got {other:?}"),
    }
}

/// Asserts that a call failed with a panic of `function` saying `message`, at a line of `file`.
#[track_caller]
pub fn assert_panicked<T: std::fmt::Debug>(
    result: Result<T, offload::Error>,
    function: &str,
    message: &str,
    file: &str,
) {
    let Err(offload::Error::Panicked {
        function: f,
        message: m,
        location,
        ..
    }) = &result
    else {
        panic!("expected a panic, got {result:?}")
    };
    assert_eq!((*f, m.as_str()), (function, message));
    let location = location.as_deref().unwrap_or_default();
    assert!(location.starts_with(&format!("{file}:")), "{location}");
}

/// Awaits `work`, failing the test if it has not ended after [`LIVENESS`].
pub async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIVENESS, work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {LIVENESS:?}"))
}

/// A small deterministic generator, so that every run checks the same inputs.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fails to encode, on whichever side tries.
#[derive(Debug, PartialEq)]
pub struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unencodable)
    }
}

/// Encodes fine, but refuses to be decoded.
#[derive(Debug, PartialEq)]
pub struct Undecodable;

impl serde::Serialize for Undecodable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "Undecodable refuses to be decoded",
        ))
    }
}

/// Maps ten inputs with `map`, the seventh of which panics as it is made: the six before it
/// must have their results, and the panic must then reach the caller, as a joined thread's.
pub async fn assert_an_input_panic_resumes_after_the_earlier_results(
    map: impl FnOnce(Box<dyn Iterator<Item = u32> + Send>) -> offload::Map<u32>,
) {
    let inputs = (0..10u32).inspect(|i| assert!(*i != 6, "input {i} cannot be made"));
    let mut results = map(Box::new(inputs));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let collected = tokio::spawn(async move {
        while let Some((index, value)) = results.next().await {
            record.lock().unwrap().push((index, value.is_ok()));
        }
    })
    .await;
    let panic = collected.unwrap_err().into_panic();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("input 6 cannot be made")
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..6).map(|i| (i, true)).collect::<Vec<_>>());
}
