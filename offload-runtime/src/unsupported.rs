//! Process mode where it cannot run (not Unix). The items that the `#[offload(process)]`
//! expansion names exist here too, so that a process-mode function fails to compile with one
//! error, at its name, that says what to do, rather than a dozen about missing items.

use std::marker::PhantomData;

use crate::Error;

/// Implemented by nothing: the bound that fails every process-mode call on this platform.
#[diagnostic::on_unimplemented(
    message = "process mode needs Unix: `#[offload(process)]` functions cannot run on this platform",
    label = "a process-mode function",
    note = "use `#[offload(thread)]` here, or compile the function and its callers only on Unix \
            with `#[cfg(unix)]`"
)]
pub trait ProcessModeNeedsUnix {}

pub struct Remote;

impl Remote {
    pub const fn new(_name: &'static str, _fingerprint: u64) -> Self {
        Remote
    }

    pub const fn pool(self, _pool: &'static str) -> Self {
        self
    }

    pub const fn timeout_ms(self, _millis: u64) -> Self {
        self
    }

    pub const fn retries(self, _count: u32) -> Self {
        self
    }
}

pub const fn fingerprint(_signature: &str) -> u64 {
    0
}

pub struct Registration;

pub enum Outcome {}

inventory::collect!(Registration);

pub fn assert_transferable<T>() {}

/// The expansion's typed handle to a process-mode function; calling it is the one error.
pub struct Process<A, R>(PhantomData<fn(A) -> R>);

impl<A, R> Process<A, R> {
    pub const fn new(_remote: Remote) -> Self
    where
        A: ProcessModeNeedsUnix,
    {
        Process(PhantomData)
    }

    pub const fn registration(
        &'static self,
        _invoke: fn(&[u8], &mut Vec<u8>) -> Outcome,
    ) -> Registration {
        Registration
    }

    pub async fn call(&'static self, _args: A) -> Result<R, Error> {
        unreachable!("process mode does not compile on this platform")
    }

    pub fn map<I: IntoIterator, T>(&'static self, _inputs: I) -> crate::Map<T> {
        crate::Map::new(
            (0, Some(0)),
            Box::new(|_| unreachable!("process mode does not compile on this platform")),
        )
    }

    pub fn invoke(
        &'static self,
        _input: &[u8],
        _output: &mut Vec<u8>,
        _body: impl FnOnce(A) -> R,
    ) -> Outcome {
        unreachable!("process mode does not compile on this platform")
    }
}

pub struct Bytes(pub Vec<u8>);

pub struct TestSetup;

impl Default for TestSetup {
    fn default() -> Self {
        TestSetup
    }
}

impl TestSetup {
    pub const fn new() -> Self {
        TestSetup
    }

    pub const fn with(_setup: &'static WorkerSetup) -> Self {
        TestSetup
    }
}

inventory::collect!(TestSetup);

/// A worker setup; without workers on this platform, it never runs.
pub struct WorkerSetup;

impl WorkerSetup {
    pub const fn new(_name: &'static str, _run: fn() -> Result<(), String>) -> Self {
        WorkerSetup
    }
}

pub trait SetupOutcome {}

impl SetupOutcome for () {}

impl<E: std::fmt::Display> SetupOutcome for Result<(), E> {}

pub fn setup_outcome(_returned: impl SetupOutcome) -> Result<(), String> {
    Ok(())
}
