use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong between calling an offloaded function and getting its value back.
///
/// The function's own return value is never folded into this type: a function returning
/// `Result<T, E>` becomes `async fn … -> Result<Result<T, E>, offload::Error>`, so a caller can
/// always tell "the function said no" from "offload could not run the function".
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The function body panicked. The pool that ran it keeps serving.
    Panicked {
        /// Registry name of the function, `crate::module::function`.
        function: &'static str,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when the panic hook saw it.
        location: Option<String>,
        /// The backtrace, captured when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` asks for one.
        backtrace: Option<String>,
    },
    /// The worker process running the call died before answering: it aborted, called
    /// `std::process::exit`, overflowed its stack or was killed. Only this call fails; the pool
    /// starts a replacement worker for the calls behind it.
    WorkerDied {
        /// Registry name of the function.
        function: &'static str,
        /// Process id of the worker that died.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// Arguments or result could not be encoded or decoded with serde + postcard. When postcard
    /// failed on this side (encoding the arguments, decoding the result),
    /// [`source`](std::error::Error::source) returns its `postcard::Error`.
    ///
    /// The usual cause is a type whose serde code asks the format what comes next, which
    /// postcard cannot say: `#[serde(untagged)]`, `#[serde(flatten)]`, internally or adjacently
    /// tagged enums (`#[serde(tag = "…")]`), `serde_json::Value`. Send plainly derived types, or
    /// such a value as a `String`. `detail` names the type and says which of these it met.
    Codec {
        /// Registry name of the function.
        function: &'static str,
        /// Which value and which side failed.
        stage: CodecStage,
        /// What serde reported.
        detail: String,
        /// What `source` returns; match with `..`.
        #[doc(hidden)]
        source: Source,
    },
    /// A worker process could not be started or did not complete its handshake. When the
    /// system refused to start it, [`source`](std::error::Error::source) returns its
    /// `std::io::Error`. `reason` says which: most often a limit of the system (processes,
    /// open files, memory) or a worker that exited before its handshake, whose own output is
    /// on this program's stderr.
    WorkerStart {
        /// What went wrong and what to do about it.
        reason: String,
        /// What `source` returns; match with `..`.
        #[doc(hidden)]
        source: Source,
    },
    /// The program's `main` does not start with the worker guard, so a re-executed copy of the
    /// program could not become a worker. Add `#[offload::main]` above `#[tokio::main]`, call
    /// `offload::serve_if_worker()` as the first line of a plain `main`, or, in a test crate,
    /// add `offload::test_setup!();`. A guard that runs inside a tokio runtime (the first line
    /// of `#[tokio::main]`'s async `main`) comes too late, and counts as missing.
    GuardMissing,
    /// The program's worker setup (`#[offload::main(worker_init = …)]` or
    /// `offload::test_setup!(worker_init = …)`) failed or panicked in a new worker. The pool
    /// starts no more workers: every later call fails with this error at once.
    WorkerSetup {
        /// The setup function's name.
        setup: String,
        /// What it returned as its error, or its panic message.
        message: String,
    },
    /// The function is not in the worker's registry (for example, the linker dropped its
    /// registration). `function` is the registry name that was looked up. Rebuild, and check
    /// that the crate defining the function is linked into the binary that runs the pool's
    /// workers (a pool given another `program` runs that one).
    NotRegistered {
        /// Registry name of the function.
        function: &'static str,
    },
    /// The worker was built from different sources than this process: its registry of
    /// process-mode functions differs, or (for a pool given another `program`) its executable's
    /// bytes do, so arguments could be mis-decoded; or this program's executable was replaced
    /// on disk (outside Linux). Rebuild and restart.
    VersionMismatch {
        /// What differs.
        detail: String,
    },
    /// The call did not finish within its timeout. In process mode the worker running it was
    /// killed and replaced; in thread mode the thread runs on to completion in the background.
    Timeout {
        /// Registry name of the function.
        function: &'static str,
        /// The timeout that expired.
        after: Duration,
    },
    /// The worker sent bytes that do not follow the protocol. The worker was replaced.
    Protocol {
        /// What was wrong with the bytes.
        detail: String,
    },
    /// The call was awaited outside a tokio runtime, which offloaded functions need: their
    /// futures wait for threads and pipes through tokio. Await it in code that tokio runs
    /// (`#[tokio::main]`, `#[tokio::test]`, `Runtime::block_on`), or call the function's
    /// `f_blocking` companion from synchronous code.
    NoRuntime {
        /// Registry name of the function.
        function: &'static str,
    },
    /// The pool was shut down before the call could finish.
    Shutdown,
    /// The agent (another host's copy of this program, serving a broker pool) that had taken
    /// the call stopped answering before the call ended: its host died, lost the network or
    /// froze. The call may have run in part or whole; a function with `retries` is run again
    /// on another agent instead, and one without is never run a second time.
    WorkerLost {
        /// Registry name of the function.
        function: &'static str,
        /// The agent's id (`host:pid`).
        agent: String,
    },
    /// No agent of this build serves the call's broker pool, so the call was withdrawn from
    /// the queue before it ran. Start the same binary on a host with `OFFLOAD_AGENT` set to
    /// the broker's URL.
    NoWorkers {
        /// Registry name of the function.
        function: &'static str,
        /// The broker pool.
        pool: String,
        /// This program's build, which agents print as they start: only agents of the same
        /// build (or the same `OFFLOAD_BUILD_ID`) take its calls.
        build: String,
        /// The builds whose agents do serve the pool, when some answered.
        others: Vec<String>,
    },
    /// The broker's queue for calls is full (its `max_messages` or `max_bytes`), so the call was
    /// not queued. Start more agents, or slow down.
    QueueFull {
        /// Registry name of the function.
        function: &'static str,
    },
    /// The message broker could not be reached or refused a request.
    Broker {
        /// What failed and what to check.
        detail: String,
    },
    /// A pool setting is invalid: a malformed environment variable, a size of zero, or a
    /// pool configured after its first call.
    Config {
        /// What is wrong and how to fix it.
        detail: String,
    },
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (Unix).
    Signal(i32),
    /// Its status could not be read.
    Unknown,
}

/// Which value failed to cross the process boundary, and on which side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecStage {
    /// The caller could not encode the arguments.
    EncodeArguments,
    /// The worker could not decode the arguments.
    DecodeArguments,
    /// The worker could not encode the return value.
    EncodeResult,
    /// The caller could not decode the return value.
    DecodeResult,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked {
                function,
                message,
                location,
                ..
            } => {
                write!(f, "`{function}` panicked: {message}")?;
                if let Some(location) = location {
                    write!(f, " (at {location})")?;
                }
                Ok(())
            }
            Error::WorkerDied {
                function,
                pid,
                exit,
            } => write!(
                f,
                "the worker process (pid {pid}) running `{function}` died: {exit}; \
                 the pool replaces it, and only this call failed"
            ),
            Error::Codec {
                function,
                stage,
                detail,
                ..
            } => write!(f, "{stage} of `{function}` failed: {detail}"),
            Error::WorkerStart { reason, .. } => {
                write!(f, "could not start a worker process: {reason}")
            }
            Error::GuardMissing => f.write_str(
                "this program does not run the offload worker guard before any tokio runtime \
                 starts, so a re-executed copy cannot become a worker. In a test crate (a file in tests/, or unit tests \
                 under #[cfg(test)]), add offload::test_setup!(); at its top. In a program, put \
                 #[offload::main] above #[tokio::main], or call offload::serve_if_worker() as \
                 the first line of a plain fn main, before any tokio runtime is built (inside \
                 #[tokio::main]'s async main is too late)",
            ),
            Error::WorkerSetup { setup, message } => write!(
                f,
                "the worker setup `{setup}` failed in a new worker: {message}; the pool starts \
                 no more workers, so fix the setup and restart the program"
            ),
            Error::NotRegistered { function } => write!(
                f,
                "`{function}` is not registered in the worker: the binary holds no \
                 #[offload(process)] function of that name; rebuild, and check that the crate \
                 defining it is linked into the binary"
            ),
            Error::VersionMismatch { detail } => write!(
                f,
                "the worker was built from different sources than this process ({detail}); \
                 rebuild the program and restart it"
            ),
            Error::Timeout { function, after } => {
                write!(f, "`{function}` did not finish within {after:?}")
            }
            Error::Protocol { detail } => {
                write!(
                    f,
                    "a worker broke the offload protocol: {detail}; it was replaced"
                )
            }
            Error::NoRuntime { function } => {
                let name = function.rsplit("::").next().unwrap_or(function);
                write!(
                    f,
                    "`{function}` was awaited outside a tokio runtime: await it in async code \
                     that tokio runs (#[tokio::main], #[tokio::test], Runtime::block_on), or \
                     call `{name}_blocking` from synchronous code"
                )
            }
            Error::Shutdown => {
                f.write_str("the offload pool was shut down before the call finished")
            }
            Error::Config { detail } => write!(f, "invalid offload configuration: {detail}"),
            Error::WorkerLost { function, agent } => write!(
                f,
                "the agent {agent} running `{function}` stopped answering (its host died, lost \
                 the network or froze); the call may have run, and without `retries` it is not \
                 run again"
            ),
            Error::NoWorkers {
                function,
                pool,
                build,
                others,
            } => {
                write!(
                    f,
                    "no agent of this build ({build}) serves pool `{pool}`, so `{function}` was \
                     not run: start this same binary with OFFLOAD_AGENT=<broker url> on a worker \
                     host. Agents print their build as they start, and take only the calls of \
                     their own"
                )?;
                if !others.is_empty() {
                    write!(
                        f,
                        "; agents of other builds serve it ({}): deploy this build beside them, \
                         or, if the types that cross are the same, give both builds one \
                         OFFLOAD_BUILD_ID",
                        others.join(", ")
                    )?;
                }
                Ok(())
            }
            Error::QueueFull { function } => write!(
                f,
                "the broker's call queue is full, so `{function}` was not queued: start more \
                 agents, or raise the pool's max_messages"
            ),
            Error::Broker { detail } => write!(f, "the message broker failed: {detail}"),
        }
    }
}

// Written out rather than derived, so that `GuardMissing`, which has no fields, still shows
// how to fix it wherever the error is printed with `{:?}`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked {
                function,
                message,
                location,
                backtrace,
            } => f
                .debug_struct("Panicked")
                .field("function", function)
                .field("message", message)
                .field("location", location)
                // Its own lines, not one escaped string: `unwrap` and `?` in `main` print this.
                .field("backtrace", &backtrace.as_deref().map(Lines))
                .finish(),
            Error::WorkerDied {
                function,
                pid,
                exit,
            } => f
                .debug_struct("WorkerDied")
                .field("function", function)
                .field("pid", pid)
                .field("exit", exit)
                .finish(),
            Error::Codec {
                function,
                stage,
                detail,
                source,
            } => with_source(
                f.debug_struct("Codec")
                    .field("function", function)
                    .field("stage", stage)
                    .field("detail", detail),
                source,
            ),
            Error::WorkerStart { reason, source } => with_source(
                f.debug_struct("WorkerStart").field("reason", reason),
                source,
            ),
            // Its fix is the whole point: `?` in `main` and `assert_eq!` print this form. It
            // follows the variant's name as text, not as a field the variant does not have.
            Error::GuardMissing => write!(f, "GuardMissing: {self}"),
            Error::WorkerSetup { setup, message } => f
                .debug_struct("WorkerSetup")
                .field("setup", setup)
                .field("message", message)
                .finish(),
            Error::NotRegistered { function } => f
                .debug_struct("NotRegistered")
                .field("function", function)
                .finish(),
            Error::VersionMismatch { detail } => f
                .debug_struct("VersionMismatch")
                .field("detail", detail)
                .finish(),
            Error::Timeout { function, after } => f
                .debug_struct("Timeout")
                .field("function", function)
                .field("after", after)
                .finish(),
            Error::Protocol { detail } => {
                f.debug_struct("Protocol").field("detail", detail).finish()
            }
            // As for `GuardMissing`: the fix, wherever `{:?}` prints it.
            Error::NoRuntime { function } => {
                f.debug_struct("NoRuntime")
                    .field("function", function)
                    .finish()?;
                write!(f, ": {self}")
            }
            Error::Shutdown => f.write_str("Shutdown"),
            Error::Config { detail } => f.debug_struct("Config").field("detail", detail).finish(),
            Error::WorkerLost { function, agent } => f
                .debug_struct("WorkerLost")
                .field("function", function)
                .field("agent", agent)
                .finish(),
            Error::NoWorkers {
                function,
                pool,
                build,
                others,
            } => f
                .debug_struct("NoWorkers")
                .field("function", function)
                .field("pool", pool)
                .field("build", build)
                .field("others", others)
                .finish(),
            Error::QueueFull { function } => f
                .debug_struct("QueueFull")
                .field("function", function)
                .finish(),
            Error::Broker { detail } => f.debug_struct("Broker").field("detail", detail).finish(),
        }
    }
}

/// Ends a variant's `Debug` form with its source when it has one; `Source(None)` says nothing.
fn with_source(fields: &mut fmt::DebugStruct<'_, '_>, source: &Source) -> fmt::Result {
    match &source.0 {
        Some(cause) => fields.field("source", cause).finish(),
        None => fields.finish_non_exhaustive(),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Codec { source, .. } | Error::WorkerStart { source, .. } => {
                source.0.as_deref().map(|error| error as _)
            }
            _ => None,
        }
    }
}

// Only process mode crosses a process boundary and starts workers.
#[cfg(unix)]
impl Error {
    /// A codec failure known by its description; see [`Error::caused_by`] for its source.
    pub(crate) fn codec(
        function: &'static str,
        stage: CodecStage,
        detail: impl fmt::Display,
    ) -> Error {
        Error::Codec {
            function,
            stage,
            detail: detail.to_string(),
            source: Source(None),
        }
    }

    /// A worker that did not start; see [`Error::caused_by`] for its source.
    pub(crate) fn start_failed(reason: impl fmt::Display) -> Error {
        Error::WorkerStart {
            reason: reason.to_string(),
            source: Source(None),
        }
    }

    /// Keeps `cause` (postcard's error for a codec failure, the system's for a worker that did
    /// not start) as the error's source.
    pub(crate) fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        match &mut self {
            Error::Codec { source, .. } | Error::WorkerStart { source, .. } => {
                source.0 = Some(Arc::new(cause));
            }
            _ => debug_assert!(false, "only codec and start failures keep a source"),
        }
        self
    }
}

/// The error behind an [`Error`], for [`std::error::Error::source`]. Shared, so that `Error`
/// stays `Clone`; equal when the messages are, so that errors compare by what they say.
#[derive(Debug, Clone)]
pub struct Source(Option<Arc<dyn std::error::Error + Send + Sync>>);

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.to_string() == b.to_string(),
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

impl Eq for Source {}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}{}", signal_name(*signal)),
            Exit::Unknown => f.write_str("unknown exit status"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        // Past its CPU-time limit (`max_cpu_per_call`).
        24 => " (SIGXCPU)",
        _ => "",
    }
}

impl fmt::Display for CodecStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecStage::EncodeArguments => "encoding the arguments",
            CodecStage::DecodeArguments => "decoding the arguments in the worker",
            CodecStage::EncodeResult => "encoding the result in the worker",
            CodecStage::DecodeResult => "decoding the result",
        })
    }
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Exit {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                return Exit::Signal(signal);
            }
        }
        status.code().map_or(Exit::Unknown, Exit::Code)
    }
}

/// A multi-line text that `Debug` writes as it is, on lines of its own.
struct Lines<'a>(&'a str);

impl fmt::Debug for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", self.0)
    }
}

/// `NoRuntime` for `function` unless this thread is inside a tokio runtime, which every call
/// and map needs to wait on its workers.
pub(crate) fn in_runtime(function: &'static str) -> Result<(), Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::NoRuntime { function }),
    }
}
