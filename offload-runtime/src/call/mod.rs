//! Process mode, caller side: encode the arguments, wait for a worker, exchange frames (with
//! the calls taken along, in `batch.rs`), decode.

pub(crate) mod map;

use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::DEFAULT_POOL;
use crate::error::{CodecStage, Exit};
use crate::function::depth;
use crate::function::{FnSpec, Invoke, Registration, Table};
use crate::sys::shm;
use crate::transport::local::batch::Batch;
use crate::transport::local::conn::Fault;
use crate::transport::local::pool::{ProcessPool, Turn};
use crate::wire::{self, Kind};
use crate::Error;

/// A process-mode function as its caller sees it: what it is, and where its calls go once
/// that is known. Built by the `#[offload(process)]` expansion.
pub struct Remote {
    pub(crate) spec: FnSpec,
    resolved: OnceLock<(&'static ProcessPool, u32)>,
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

    pub(crate) fn resolve(&self) -> Result<(&'static ProcessPool, u32), Error> {
        if let Some(resolved) = self.resolved.get() {
            return Ok(*resolved);
        }
        let resolved = (
            ProcessPool::get(self.spec.pool)?,
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
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::WorkerStart {
            reason: "process-mode functions must be awaited inside a tokio runtime".to_owned(),
        });
    }
    let (pool, index) = function.resolve()?;
    let admitted = pool.admit().await?;
    // Boxed, so that a call still waiting for admission (there may be millions) is small.
    let result = Box::pin(admitted_call(function, pool, index, args)).await;
    drop(admitted);
    result
}

/// An admitted call: encoded once, stopping as soon as the arguments outgrow the pipe path,
/// and run through the pipe or, when they did, through the shared region.
async fn admitted_call<A, R>(
    function: &'static Remote,
    pool: &'static ProcessPool,
    index: u32,
    args: A,
) -> Result<R, Error>
where
    A: Serialize,
    R: DeserializeOwned,
{
    let small = encode_within(index, &args, shm::THRESHOLD.min(pool.max_frame()))
        .map_err(|e| codec(function, &e))?;
    match small {
        Some(frame) => {
            drop(args);
            exchange(function, pool, frame).await
        }
        // Boxed: its state is far larger than a small call's, which need not carry it.
        None => Box::pin(exchange_large(function, pool, index, &args)).await,
    }
}

/// A call frame, its id still blank: the function's index in the registry, then the arguments.
pub(crate) fn encode_call<A: Serialize>(
    function: &Remote,
    pool: &ProcessPool,
    index: u32,
    args: &A,
) -> Result<Vec<u8>, Error> {
    match encode_within(index, args, pool.max_frame()) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(codec(
            function,
            &format!(
                "the arguments exceed the frame limit of {} bytes",
                pool.max_frame()
            ),
        )),
        Err(error) => Err(codec(function, &error)),
    }
}

/// The call frame, or `None` as soon as the encoded arguments pass `limit` bytes.
fn encode_within<A: Serialize>(
    index: u32,
    args: &A,
    limit: usize,
) -> postcard::Result<Option<Vec<u8>>> {
    let mut frame = Vec::new();
    wire::begin(&mut frame, Kind::Call, 0);
    frame.extend_from_slice(&index.to_le_bytes());
    // The payload (the index, then the arguments) may take `limit` bytes after the header.
    let end = wire::HEADER.saturating_add(limit);
    // Only the flavor reports a full buffer; serde's own failures are other errors.
    match postcard::serialize_with_flavor(args, Capped { frame, end }) {
        Ok(mut frame) => Ok(wire::finish(&mut frame, limit).ok().map(|()| frame)),
        Err(postcard::Error::SerializeBufferFull) => Ok(None),
        Err(error) => Err(error),
    }
}

fn codec(function: &Remote, detail: &impl std::fmt::Display) -> Error {
    Error::Codec {
        function: function.spec.name,
        stage: CodecStage::EncodeArguments,
        detail: detail.to_string(),
    }
}

/// A postcard output that refuses to grow past `end`.
struct Capped {
    frame: Vec<u8>,
    end: usize,
}

impl postcard::ser_flavors::Flavor for Capped {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.frame.len() + bytes.len() > self.end {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.frame.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.frame)
    }
}

/// Runs one call to its end: waits for its turn, runs it (taking queued calls along when it
/// holds a lease), and goes again when the worker died before starting it, or while running it
/// and retries are left.
async fn exchange<R: DeserializeOwned>(
    function: &'static Remote,
    pool: &'static ProcessPool,
    mut frame: Vec<u8>,
) -> Result<R, Error> {
    // A call with a timeout neither waits behind others on a worker nor makes others wait
    // behind it, so its time runs only while it runs.
    let combine = function.spec.timeout.is_none() && pool.max_batch() > 1;
    let mut retries_left = function.spec.retries;
    loop {
        let outcome = match pool.turn(frame, combine).await? {
            // Boxed: only a call that holds a worker pays for the batch's state.
            Turn::Lease(lease, own) => {
                Box::pin(Batch::new(&function.spec, pool, lease, combine).run(own)).await
            }
            Turn::Answered(kind, payload) => {
                return decode(function.spec.name, pool, kind, &payload)
            }
            other => other,
        };
        match outcome {
            Turn::Answered(kind, payload) => {
                return decode(function.spec.name, pool, kind, &payload)
            }
            Turn::Failed(error) => return Err(error),
            Turn::Again(own) => frame = own,
            Turn::Died {
                pid,
                exit,
                frame: own,
            } => {
                after_death(function, pool, pid, exit, &mut retries_left)?;
                frame = own;
            }
            Turn::Lease(..) => unreachable!("a batch ends with an outcome, not a lease"),
        }
    }
}

/// Runs one call with large arguments on a worker of its own: the arguments are encoded
/// straight into the memory the worker shares with us (or, without it, into a frame as usual),
/// and only their length crosses the pipe.
async fn exchange_large<A: Serialize, R: DeserializeOwned>(
    function: &'static Remote,
    pool: &'static ProcessPool,
    index: u32,
    args: &A,
) -> Result<R, Error> {
    let mut retries_left = function.spec.retries;
    loop {
        let mut lease = pool.lease().await?;
        let (mut frame, used) = match lease.region() {
            Some(region) => {
                let limit = region.len();
                let used = postcard::to_slice(args, region.bytes_mut())
                    .map_err(|e| {
                        codec(function, &format!("{e} (the frame limit is {limit} bytes)"))
                    })?
                    .len();
                let mut payload = index.to_le_bytes().to_vec();
                payload.extend_from_slice(&(used as u64).to_le_bytes());
                (wire::frame(Kind::CallShared, 0, &payload), used)
            }
            None => (encode_call(function, pool, index, args)?, 0),
        };
        if function.spec.timeout.is_some() {
            lease.kill_if_dropped();
        }
        let call = async {
            // Large arguments take milliseconds to decode: not worth polling for the reply.
            lease.send(&mut frame, false).await?;
            lease.receive().await
        };
        let outcome = match function.spec.timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call)
                .await
                .map_err(|_| Error::Timeout {
                    function: function.spec.name,
                    after,
                })?,
        };
        if let Some(region) = lease.region() {
            region.release(used);
        }
        match outcome {
            Ok(kind) => return decode(function.spec.name, pool, kind, lease.reply()),
            Err(Fault::Protocol(detail)) => return Err(Error::Protocol { detail }),
            Err(Fault::Refused(error)) => return Err(error),
            Err(Fault::Died) => {
                let pid = lease.pid();
                let exit = lease.exit().await;
                after_death(function, pool, pid, exit, &mut retries_left)?;
            }
            // It died between calls, before reading this one: go again.
            Err(Fault::DiedIdle) => {
                lease.exit().await;
            }
        }
    }
}

/// After the worker running a call died: go again if the call has retries left, else fail it
/// (with `Shutdown` when the pool's forceful shutdown killed the worker).
fn after_death(
    function: &Remote,
    pool: &ProcessPool,
    pid: u32,
    exit: Exit,
    retries_left: &mut u32,
) -> Result<(), Error> {
    if pool.killed_by_shutdown() {
        return Err(Error::Shutdown);
    }
    if *retries_left == 0 {
        return Err(Error::WorkerDied {
            function: function.spec.name,
            pid,
            exit,
        });
    }
    *retries_left -= 1;
    Ok(())
}

/// The caller's value from a reply, or the error the reply reports.
pub(crate) fn decode<R: DeserializeOwned>(
    function: &'static str,
    pool: &ProcessPool,
    kind: Kind,
    payload: &[u8],
) -> Result<R, Error> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    let codec = |stage, detail| {
        Err(Error::Codec {
            function,
            stage,
            detail,
        })
    };
    match kind {
        // Bounded in depth: a deeply nested result, or a corrupt worker's bytes, must not
        // overflow the stack of the runtime thread that decodes it.
        Kind::Returned => depth::from_bytes(payload, pool.max_depth())
            .or_else(|e| codec(CodecStage::DecodeResult, e.to_string())),
        Kind::DecodeFailed => codec(CodecStage::DecodeArguments, text()),
        Kind::EncodeFailed => codec(CodecStage::EncodeResult, text()),
        Kind::UnknownFunction => Err(Error::NotRegistered { function }),
        Kind::Panicked => {
            let (message, location, backtrace) =
                postcard::from_bytes(payload).map_err(|e| Error::Protocol {
                    detail: format!("unreadable panic report: {e}"),
                })?;
            Err(Error::Panicked {
                function,
                message,
                location,
                backtrace,
            })
        }
        Kind::Hello | Kind::Call | Kind::CallShared | Kind::GuardMissing => {
            unreachable!("rejected by the exchange")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_stops_at_the_limit_and_not_before() {
        // A 100-byte Vec<u8> encodes to 101 bytes; with the 4-byte index, a payload of 105.
        let args = (vec![7u8; 100],);
        let frame = encode_within(3, &args, 105).unwrap().expect("fits exactly");
        assert_eq!(frame.len(), wire::HEADER + 105);
        assert_eq!(encode_within(3, &args, 104).unwrap(), None);
        assert_eq!(encode_within(3, &args, 0).unwrap(), None);
    }
}
