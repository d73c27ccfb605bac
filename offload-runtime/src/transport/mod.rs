//! The seam between the caller's side and the ways a call travels. The caller (`call`) asks a
//! [`Backend`] for one attempt at a call and learns how it ended, as an [`Attempt`]: whether the
//! call ran, whether it may have run, or whether it never started. What that means for the
//! caller (a value, a retry, an `offload::Error`) is decided above the seam, once for every
//! transport. `local` runs workers on this machine: copies of this program, started and reaped
//! by a pool, each talking over two pipes. `broker` (the `nats` feature) sends calls through
//! NATS JetStream to agents on other hosts, which run them on local pools of their own.

#[cfg(feature = "nats")]
pub(crate) mod broker;
pub(crate) mod local;
pub(crate) mod outcome;

pub(crate) use outcome::{Attempt, Unstarted, WorkerId};

use serde::Serialize;
use tokio::sync::SemaphorePermit;

use crate::function::FnSpec;
use crate::wire::Kind;
use crate::Error;
#[cfg(feature = "nats")]
use broker::BrokerPool;
use local::pool::ProcessPool;

/// Where the calls of one pool go.
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    Local(&'static ProcessPool),
    #[cfg(feature = "nats")]
    Broker(&'static BrokerPool),
}

/// A place in a backend's admission, held while a call is encoded and runs.
pub(crate) type Admission = SemaphorePermit<'static>;

impl Backend {
    /// The backend of the pool called `name`.
    pub(crate) fn get(name: &str) -> Result<Backend, Error> {
        #[cfg(feature = "nats")]
        if let Some(pool) = BrokerPool::find(name)? {
            return Ok(Backend::Broker(pool));
        }
        ProcessPool::get(name).map(Backend::Local)
    }

    /// Waits, in arrival order, until a call may encode its arguments.
    pub(crate) async fn admit(self) -> Result<Admission, Error> {
        let admission = match self {
            Backend::Local(pool) => pool.admission()?,
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.admission(),
        };
        admission.acquire().await.map_err(|_| Error::Shutdown)
    }

    /// One attempt at the call whose frame is `frame`.
    pub(crate) async fn attempt(
        self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Attempt<(Kind, Vec<u8>)> {
        match self {
            Backend::Local(pool) => pool.attempt(spec, frame).await,
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.attempt(spec, frame).await,
        }
    }

    /// Starts a call on a worker of its own, for a caller that times it: the call's time runs
    /// from the moment it starts. `Err` says how it ended before it ran.
    pub(crate) async fn start(
        self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Result<Started, Unstarted> {
        match self {
            Backend::Local(pool) => pool.start_call(spec, frame).await.map(Started::Local),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.start_call(spec, frame).await.map(Started::Broker),
        }
    }

    /// Starts a call whose arguments did not fit [`Backend::inline_limit`]: the transport
    /// encodes them where it carries them best.
    pub(crate) async fn start_large<A: Serialize>(
        self,
        spec: &'static FnSpec,
        index: u32,
        args: &A,
        traced: Option<u64>,
    ) -> Result<Started, Unstarted> {
        match self {
            Backend::Local(pool) => pool
                .start_large_call(spec, index, args, traced)
                .await
                .map(Started::Local),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool
                .start_large(spec, index, args, traced)
                .await
                .map(Started::Broker),
        }
    }

    /// Sends the frames of several calls to one worker, as many as it may take; see [`Chunk`].
    pub(crate) async fn chunk(
        self,
        spec: &'static FnSpec,
        frames: &[&[u8]],
    ) -> Result<Chunk, Error> {
        match self {
            Backend::Local(pool) => pool.chunk(spec, frames).await.map(Chunk::Local),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool
                .chunk(spec, frames)
                .await
                .map(|c| Chunk::Broker(Box::new(c))),
        }
    }

    /// Arguments that encode to more than this go through [`Backend::attempt_large`].
    pub(crate) fn inline_limit(self) -> usize {
        match self {
            Backend::Local(pool) => crate::sys::shm::THRESHOLD.min(pool.max_frame()),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.inline_limit(),
        }
    }

    pub(crate) fn max_frame(self) -> usize {
        match self {
            Backend::Local(pool) => pool.max_frame(),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.max_frame(),
        }
    }

    pub(crate) fn max_depth(self) -> u32 {
        match self {
            Backend::Local(pool) => pool.max_depth(),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.max_depth(),
        }
    }

    /// How many calls run at once at most; for a broker, how many chunks of a map are sent
    /// at once.
    pub(crate) fn workers(self) -> usize {
        match self {
            Backend::Local(pool) => pool.workers(),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.concurrency(),
        }
    }

    /// How many of an `f_map`'s calls go to a worker, or a message, together by default.
    pub(crate) fn chunk_size(self) -> usize {
        match self {
            Backend::Local(_) => 16,
            #[cfg(feature = "nats")]
            Backend::Broker(_) => 64,
        }
    }

    /// Counts how a call ended, for the pool's statistics.
    pub(crate) fn ended<R>(self, result: &Result<R, Error>) {
        match self {
            Backend::Local(pool) => pool.counters.ended(result),
            #[cfg(feature = "nats")]
            Backend::Broker(pool) => pool.counters.ended(result),
        }
    }

    /// Whether a worker lost now was stopped by a forceful shutdown of the pool.
    pub(crate) fn stopped(self) -> bool {
        match self {
            Backend::Local(pool) => pool.killed_by_shutdown(),
            #[cfg(feature = "nats")]
            Backend::Broker(_) => false,
        }
    }
}

/// A call on its way, waiting for its reply. Dropping it stops the call: that is how a caller
/// times a call out or cancels it, whatever the transport.
pub(crate) enum Started {
    Local(local::attempt::Started),
    #[cfg(feature = "nats")]
    Broker(broker::caller::Started),
}

impl Started {
    /// Waits for the reply; `read` makes the caller's value of it where it lies.
    pub(crate) async fn finish<T>(self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        match self {
            Started::Local(started) => started.finish(read).await,
            #[cfg(feature = "nats")]
            Started::Broker(started) => started.finish(read).await,
        }
    }
}

/// Calls sent together to one worker, answered in order.
pub(crate) enum Chunk {
    Local(local::attempt::Chunk),
    #[cfg(feature = "nats")]
    Broker(Box<broker::caller::Chunk>),
}

impl Chunk {
    /// How many of the frames offered were sent; the rest are the caller's to send again.
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Local(chunk) => chunk.len(),
            #[cfg(feature = "nats")]
            Chunk::Broker(chunk) => chunk.len(),
        }
    }

    /// How the next call of the chunk ended, in the order sent; once one was lost or failed,
    /// the calls behind it never started.
    pub(crate) async fn next<T>(&mut self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        match self {
            Chunk::Local(chunk) => chunk.next(read).await,
            #[cfg(feature = "nats")]
            Chunk::Broker(chunk) => chunk.next(read).await,
        }
    }

    /// Stops the calls not answered yet (a timeout): they count as never started.
    pub(crate) fn stop(&mut self) {
        match self {
            Chunk::Local(chunk) => chunk.stop(),
            #[cfg(feature = "nats")]
            Chunk::Broker(chunk) => chunk.stop(),
        }
    }
}
