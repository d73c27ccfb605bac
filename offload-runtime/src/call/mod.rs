//! Process mode, caller side, for any transport: encode the arguments, wait for admission, ask
//! the pool's backend for attempts until the call ran or failed, and decode.

pub(crate) mod map;
pub(crate) mod typed;

use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::DEFAULT_POOL;
use crate::error::{CodecStage, Exit};
use crate::function::codec::{decode, encode_within};
use crate::function::{FnSpec, Invoke, Registration, Table};
use crate::transport::{Attempt, Backend, WorkerId};
use crate::wire::{self, Kind};
use crate::Error;

/// A process-mode function as its caller sees it: what it is, and where its calls go once
/// that is known. Built by the `#[offload(process)]` expansion.
pub struct Remote {
    pub(crate) spec: FnSpec,
    resolved: OnceLock<(Backend, u32)>,
}

impl Registration {
    /// Registers `function`, run in a worker by `invoke`.
    pub const fn new(function: &'static Remote, invoke: Invoke) -> Self {
        Registration {
            spec: &function.spec,
            invoke,
        }
    }
}

impl Remote {
    /// A function registered as `name` with signature hash `fingerprint`, run on the default
    /// pool without a timeout or retries.
    pub const fn new(name: &'static str, fingerprint: u64) -> Self {
        Remote {
            spec: FnSpec {
                name,
                fingerprint,
                pool: DEFAULT_POOL,
                timeout: None,
                retries: 0,
            },
            resolved: OnceLock::new(),
        }
    }

    /// Runs on the pool called `pool`.
    pub const fn pool(mut self, pool: &'static str) -> Self {
        self.spec.pool = pool;
        self
    }

    /// Kills the worker and fails the call after `millis` milliseconds.
    pub const fn timeout_ms(mut self, millis: u64) -> Self {
        self.spec.timeout = Some(Duration::from_millis(millis));
        self
    }

    /// Re-runs the call on a fresh worker up to `count` times when its worker dies.
    pub const fn retries(mut self, count: u32) -> Self {
        self.spec.retries = count;
        self
    }

    /// Where the function's calls go, and its index in the registry, found once.
    pub(crate) fn resolve(&self) -> Result<(Backend, u32), Error> {
        if let Some(resolved) = self.resolved.get() {
            return Ok(*resolved);
        }
        let resolved = (
            Backend::get(self.spec.pool)?,
            Table::get().index_of(self.spec.name, self.spec.fingerprint)?,
        );
        Ok(*self.resolved.get_or_init(|| resolved))
    }
}

/// Runs the function registered as `function` on a worker process of its pool.
pub async fn call_in_process<A, R>(function: &'static Remote, args: A) -> Result<R, Error>
where
    A: Serialize,
    R: DeserializeOwned,
{
    crate::error::in_runtime(function.spec.name)?;
    let (backend, index) = function.resolve()?;
    #[cfg(feature = "tracing")]
    let (span, traced) = crate::trace::process_call(&function.spec);
    #[cfg(not(feature = "tracing"))]
    let traced = None;
    let call = async move {
        let admitted = backend.admit().await?;
        // Boxed, so that a call still waiting for admission (there may be millions) is small.
        let result = Box::pin(admitted_call(function, backend, index, args, traced)).await;
        drop(admitted);
        result
    };
    #[cfg(feature = "tracing")]
    let result = tracing::Instrument::instrument(call, span).await;
    #[cfg(not(feature = "tracing"))]
    let result = call.await;
    backend.ended(&result);
    result
}

/// An admitted call: encoded once, stopping as soon as the arguments outgrow the inline path,
/// and run as a frame or, when they did, the way the transport carries large arguments.
async fn admitted_call<A, R>(
    function: &'static Remote,
    backend: Backend,
    index: u32,
    args: A,
    traced: Option<u64>,
) -> Result<R, Error>
where
    A: Serialize,
    R: DeserializeOwned,
{
    let spec = &function.spec;
    let small = encode_within(index, &args, backend.inline_limit(), backend.max_depth())
        .map_err(|e| e.into_error(spec.name, CodecStage::EncodeArguments))?;
    match small {
        Some(mut frame) => {
            drop(args);
            if let Some(call) = traced {
                wire::trace(&mut frame, call);
            }
            let (kind, reply) = exchange(spec, backend, frame).await?;
            decode(spec.name, backend.max_depth(), kind, &reply)
        }
        // Boxed: its state is far larger than a small call's, which need not carry it.
        None => Box::pin(exchange_large(spec, backend, index, &args, traced)).await,
    }
}

/// Runs one call to its end: an attempt, then another while the call never started, or while
/// it was lost running and retries are left. A call with a timeout is started on a worker of
/// its own and timed from then on (see [`within_timeout`]). The reply is returned undecoded,
/// so that this is compiled once, not once per offloaded function.
async fn exchange(
    spec: &'static FnSpec,
    backend: Backend,
    mut frame: Vec<u8>,
) -> Result<(Kind, Vec<u8>), Error> {
    let mut retried = 0;
    loop {
        let attempt = match spec.timeout {
            None => backend.attempt(spec, frame).await,
            // Boxed: a started call's state (its worker's channel, the timer) is some kilobytes,
            // which a queued call without a timeout (there may be millions) need not carry.
            Some(_) => Box::pin(timed(spec, backend, frame)).await,
        };
        match attempt {
            Attempt::Answered(reply) => return Ok(reply),
            Attempt::Failed(error) => return Err(error),
            Attempt::NotStarted(own) => frame = own,
            Attempt::Lost {
                worker,
                exit,
                frame: own,
            } => {
                after_loss(spec, backend, worker, exit, retried)?;
                retried += 1;
                frame = own;
            }
        }
    }
}

/// One attempt at a call with a timeout: started on a worker of its own, and timed from then.
async fn timed(
    spec: &'static FnSpec,
    backend: Backend,
    frame: Vec<u8>,
) -> Attempt<(Kind, Vec<u8>)> {
    match backend.start(spec, frame).await {
        Ok(started) => {
            within_timeout(spec, started.finish(|kind, reply| (kind, reply.to_vec()))).await
        }
        Err(attempt) => attempt.widen(),
    }
}

/// [`exchange`] for a call with large arguments, which the transport encodes itself, each
/// attempt anew.
async fn exchange_large<A: Serialize, R: DeserializeOwned>(
    spec: &'static FnSpec,
    backend: Backend,
    index: u32,
    args: &A,
    traced: Option<u64>,
) -> Result<R, Error> {
    let mut retried = 0;
    loop {
        let read = |kind, payload: &[u8]| decode(spec.name, backend.max_depth(), kind, payload);
        let attempt = match backend.start_large(spec, index, args, traced).await {
            Ok(started) => within_timeout(spec, started.finish(read)).await,
            Err(attempt) => attempt.widen(),
        };
        match attempt {
            Attempt::Answered(result) => return result,
            Attempt::Failed(error) => return Err(error),
            Attempt::NotStarted(_) => {}
            Attempt::Lost { worker, exit, .. } => {
                after_loss(spec, backend, worker, exit, retried)?;
                retried += 1;
            }
        }
    }
}

/// A started call's reply, within the function's timeout if it has one: past it, the call is
/// dropped, which stops it on every transport (the local one kills its worker), and it fails
/// with `Timeout`. The one place a timeout is kept, for plain calls, large ones and `f_map`.
pub(crate) async fn within_timeout<T>(
    spec: &FnSpec,
    reply: impl std::future::Future<Output = Attempt<T>>,
) -> Attempt<T> {
    match spec.timeout {
        None => reply.await,
        Some(after) => tokio::time::timeout(after, reply)
            .await
            .unwrap_or(Attempt::Failed(Error::Timeout {
                function: spec.name,
                after,
            })),
    }
}

/// What losing the worker that ran a call means for the call, for every transport and for
/// calls and maps alike: another try if it has `retries` left beyond the `retried` it had,
/// `Shutdown` if a forceful shutdown stopped the worker, else `WorkerDied`.
pub(crate) fn after_loss(
    spec: &FnSpec,
    backend: Backend,
    worker: WorkerId,
    exit: Exit,
    retried: u32,
) -> Result<(), Error> {
    if backend.stopped() {
        return Err(Error::Shutdown);
    }
    if retried >= spec.retries {
        return Err(match worker {
            WorkerId::Process(pid) => Error::WorkerDied {
                function: spec.name,
                pid,
                exit,
            },
            WorkerId::Agent(agent) => Error::WorkerLost {
                function: spec.name,
                agent,
            },
        });
    }
    Ok(())
}
