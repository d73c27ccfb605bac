//! Setup a program runs once in every worker, before the worker serves its first call: the
//! counterpart of `ProcessPoolExecutor(initializer=…)`. Workers never run the part of `main`
//! after the guard, so this is where a worker gets its logging and its per-worker state (a
//! model loaded once, a connection opened once, kept in a `static` the functions read).
//!
//! A setup that fails or panics makes the worker refuse its handshake with what it said, and
//! the pool fails every call with `Error::WorkerSetup` instead of starting workers without end.

use std::fmt::Display;
use std::sync::OnceLock;

use crate::panic;

/// A worker setup function and its name, as `#[offload::main(worker_init = f)]` or
/// `offload::test_setup!(worker_init = f)` hand it to the runtime.
pub struct WorkerSetup {
    name: &'static str,
    run: fn() -> Result<(), String>,
}

impl WorkerSetup {
    /// The setup called `name`, run by `run`.
    pub const fn new(name: &'static str, run: fn() -> Result<(), String>) -> Self {
        WorkerSetup { name, run }
    }
}

/// What a setup function may return: nothing, or a `Result` whose error says what failed.
pub trait SetupOutcome {
    /// `Err` with the message when the setup failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl SetupOutcome for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> SetupOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// Turns what a setup function returned into its outcome; called by the generated setup.
pub fn setup_outcome(returned: impl SetupOutcome) -> Result<(), String> {
    returned.into_outcome()
}

static SETUP: OnceLock<&'static WorkerSetup> = OnceLock::new();

/// Records the program's setup, from its guard.
pub(crate) fn set(setup: &'static WorkerSetup) {
    let _ = SETUP.set(setup);
}

/// The program's setup, if it has one: from its guard, or from its test setup.
fn program_setup() -> Option<&'static WorkerSetup> {
    SETUP
        .get()
        .copied()
        .or_else(|| inventory::iter::<TestSetup>().find_map(TestSetup::setup))
}

/// The name of the program's setup, which its workers run before their handshake.
pub(crate) fn name() -> Option<&'static str> {
    program_setup().map(|setup| setup.name)
}

/// Runs the program's setup, if it has one, catching a panic: `Err((name, message))` when it
/// failed.
pub(crate) fn run() -> Result<(), (&'static str, String)> {
    let Some(setup) = program_setup() else {
        return Ok(());
    };
    match panic::catch(setup.run) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err((setup.name, message)),
        Err(report) => Err((setup.name, format!("panicked: {}", report.message))),
    }
}

/// The one-line test setup, `offload::test_setup!()`, submits this. A test harness owns `main`,
/// so its workers are served from a constructor that runs before it instead.
pub struct TestSetup(Option<&'static WorkerSetup>);

impl TestSetup {
    /// Test workers without a setup.
    pub const fn new() -> Self {
        TestSetup(None)
    }

    /// Test workers that run `setup` before their first call.
    pub const fn with(setup: &'static WorkerSetup) -> Self {
        TestSetup(Some(setup))
    }

    pub(crate) fn setup(&self) -> Option<&'static WorkerSetup> {
        self.0
    }
}

impl Default for TestSetup {
    fn default() -> Self {
        TestSetup::new()
    }
}

inventory::collect!(TestSetup);
