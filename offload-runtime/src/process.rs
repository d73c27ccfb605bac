//! Process mode, caller side: encode the arguments, wait for a worker, exchange frames (with
//! the calls taken along, see [`Batch`]), decode.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::Fault;
use crate::config::DEFAULT_POOL;
use crate::error::{CodecStage, Exit};
use crate::pool::{Lease, OnCancel, ProcessPool, Turn, Waiting};
use crate::registry::Table;
use crate::shared;
use crate::wire::{self, Kind};
use crate::Error;

/// A process-mode function as its caller sees it. Built by the `#[offload(process)]` expansion.
pub struct Remote {
    pub(crate) name: &'static str,
    pub(crate) fingerprint: u64,
    pool: &'static str,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    resolved: OnceLock<(&'static ProcessPool, u32)>,
}

impl Remote {
    /// A function registered as `name` with signature hash `fingerprint`, run on the default
    /// pool without a timeout or retries.
    pub const fn new(name: &'static str, fingerprint: u64) -> Self {
        Remote {
            name,
            fingerprint,
            pool: DEFAULT_POOL,
            timeout: None,
            retries: 0,
            resolved: OnceLock::new(),
        }
    }

    /// Runs on the pool called `pool`.
    pub const fn pool(mut self, pool: &'static str) -> Self {
        self.pool = pool;
        self
    }

    /// Kills the worker and fails the call after `millis` milliseconds.
    pub const fn timeout_ms(mut self, millis: u64) -> Self {
        self.timeout = Some(Duration::from_millis(millis));
        self
    }

    /// Re-runs the call on a fresh worker up to `count` times when its worker dies.
    pub const fn retries(mut self, count: u32) -> Self {
        self.retries = count;
        self
    }

    pub(crate) fn resolve(&self) -> Result<(&'static ProcessPool, u32), Error> {
        if let Some(resolved) = self.resolved.get() {
            return Ok(*resolved);
        }
        let resolved = (
            ProcessPool::get(self.pool)?,
            Table::get().index_of(self.name, self.fingerprint)?,
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
    if postcard::experimental::serialized_size(&args).is_ok_and(|size| size > shared::THRESHOLD) {
        let result = Box::pin(exchange_large(function, pool, index, &args)).await;
        drop(admitted);
        return result;
    }
    let frame = encode_call(function, pool, index, &args)?;
    drop(args);
    // Boxed, so that a call still waiting for admission (there may be millions) is small.
    let result = Box::pin(exchange(function, pool, frame)).await;
    drop(admitted);
    result
}

/// A call frame, its id still blank: the function's index in the registry, then the arguments.
pub(crate) fn encode_call<A: Serialize>(
    function: &Remote,
    pool: &ProcessPool,
    index: u32,
    args: &A,
) -> Result<Vec<u8>, Error> {
    let codec = |detail: String| Error::Codec {
        function: function.name,
        stage: CodecStage::EncodeArguments,
        detail,
    };
    let mut frame = Vec::new();
    wire::begin(&mut frame, Kind::Call, 0);
    frame.extend_from_slice(&index.to_le_bytes());
    let mut frame = postcard::to_extend(args, frame).map_err(|e| codec(e.to_string()))?;
    wire::finish(&mut frame, pool.max_frame()).map_err(|e| codec(e.to_string()))?;
    Ok(frame)
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
    let combine = function.timeout.is_none() && pool.max_batch() > 1;
    let mut retries_left = function.retries;
    loop {
        let outcome = match pool.turn(frame, combine).await? {
            // Boxed: only a call that holds a worker pays for the batch's state.
            Turn::Lease(lease, own) => {
                Box::pin(Batch::new(function, pool, lease, combine).run(own)).await
            }
            Turn::Answered(kind, payload) => return decode(function.name, kind, &payload),
            other => other,
        };
        match outcome {
            Turn::Answered(kind, payload) => return decode(function.name, kind, &payload),
            Turn::Failed(error) => return Err(error),
            Turn::Again(own) => frame = own,
            Turn::Died {
                pid,
                exit,
                frame: own,
            } => {
                if pool.killed_by_shutdown() {
                    return Err(Error::Shutdown);
                }
                if retries_left == 0 {
                    return Err(Error::WorkerDied {
                        function: function.name,
                        pid,
                        exit,
                    });
                }
                retries_left -= 1;
                frame = own;
            }
            Turn::Lease(..) => unreachable!("a batch ends with an outcome, not a lease"),
        }
    }
}

/// Runs one call with large arguments on a worker of its own: the arguments are encoded
/// straight into the memory the worker shares with us (or, without it, into a frame as usual),
/// and only their length crosses the socket.
async fn exchange_large<A: Serialize, R: DeserializeOwned>(
    function: &'static Remote,
    pool: &'static ProcessPool,
    index: u32,
    args: &A,
) -> Result<R, Error> {
    let codec = |detail: String| Error::Codec {
        function: function.name,
        stage: CodecStage::EncodeArguments,
        detail,
    };
    let mut retries_left = function.retries;
    loop {
        let mut lease = pool.lease().await?;
        let (mut frame, used) = match lease.region() {
            Some(region) => {
                let limit = region.len();
                let used = postcard::to_slice(args, region.bytes_mut())
                    .map_err(|e| codec(format!("{e} (the frame limit is {limit} bytes)")))?
                    .len();
                let mut payload = index.to_le_bytes().to_vec();
                payload.extend_from_slice(&(used as u64).to_le_bytes());
                (wire::frame(Kind::CallShared, 0, &payload), used)
            }
            None => (encode_call(function, pool, index, args)?, 0),
        };
        if function.timeout.is_some() {
            lease.kill_if_dropped();
        }
        let call = async {
            lease.send(&mut frame).await?;
            lease.receive().await
        };
        let outcome = match function.timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call)
                .await
                .map_err(|_| Error::Timeout {
                    function: function.name,
                    after,
                })?,
        };
        if let Some(region) = lease.region() {
            region.release(used);
        }
        match outcome {
            Ok(kind) => return decode(function.name, kind, lease.reply()),
            Err(Fault::Protocol(detail)) => return Err(Error::Protocol { detail }),
            Err(Fault::Refused(error)) => return Err(error),
            Err(Fault::Died) => {
                let pid = lease.pid();
                let exit = lease.exit().await;
                if pool.killed_by_shutdown() {
                    return Err(Error::Shutdown);
                }
                if retries_left == 0 {
                    return Err(Error::WorkerDied {
                        function: function.name,
                        pid,
                        exit,
                    });
                }
                retries_left -= 1;
            }
        }
    }
}

/// The calls one lease sends in one write: queued calls it took along, then its own. The worker
/// runs them in that order, so when it dies, the first unanswered call was running and the
/// rest never started. Dropped with calls of others still unanswered (its own caller went
/// away), it finishes them on a task of their own.
struct Batch {
    function: &'static Remote,
    pool: &'static ProcessPool,
    lease: Option<Lease>,
    taken: VecDeque<Waiting>,
    /// Whether this lease's own call was sent (it is always last).
    own_sent: bool,
}

impl Batch {
    fn new(
        function: &'static Remote,
        pool: &'static ProcessPool,
        lease: Lease,
        combine: bool,
    ) -> Batch {
        let taken = if combine {
            pool.adopt(pool.max_batch() - 1)
        } else {
            VecDeque::new()
        };
        Batch {
            function,
            pool,
            lease: Some(lease),
            taken,
            own_sent: false,
        }
    }

    /// Sends everything, hands the others their replies, and returns the outcome of its own.
    async fn run(mut self, own: Vec<u8>) -> Turn {
        let lease = self.lease.as_mut().expect("a batch runs once");
        if let Err(error) = lease.ensure_worker().await {
            for entry in self.taken.drain(..) {
                let _ = entry.reply.send(Turn::Again(entry.frame));
            }
            return Turn::Failed(error);
        }
        if self.function.timeout.is_some() {
            lease.kill_if_dropped();
        }
        let mut frames =
            Vec::with_capacity(own.len() + self.taken.iter().map(|e| e.frame.len()).sum::<usize>());
        for entry in &self.taken {
            frames.extend_from_slice(&entry.frame);
        }
        frames.extend_from_slice(&own);
        self.own_sent = true;
        if let Err(fault) = lease.send(&mut frames).await {
            return self.lost(fault, own).await;
        }
        let own = match self.answer_taken(Some(own)).await {
            Ok(own) => own.expect("own call kept"),
            Err((Some(fault), own)) => return self.lost(fault, own.expect("own call kept")).await,
            // A call taken along was cancelled while it ran and its worker killed: everything
            // behind it, our call included, never started.
            Err((None, own)) => return Turn::Again(own.expect("own call kept")),
        };
        let lease = self.lease.as_mut().expect("a batch runs once");
        let received = match self.function.timeout {
            None => lease.receive().await,
            Some(after) => match tokio::time::timeout(after, lease.receive()).await {
                Ok(received) => received,
                Err(_) => {
                    return Turn::Failed(Error::Timeout {
                        function: self.function.name,
                        after,
                    })
                }
            },
        };
        match received {
            // Decoding happens in the caller; the payload moves out of the worker's buffer.
            Ok(kind) => Turn::Answered(kind, lease.reply().to_vec()),
            Err(fault) => self.lost(fault, own).await,
        }
    }

    /// Hands each call taken along its reply, in order. On a fault, returns it with `own` for
    /// [`Batch::lost`], the faulty call still first in `taken`. A taken call whose caller went
    /// away while it ran is cancelled as the pool says; when that kills the worker, the calls
    /// behind it go again and the fault returned is `None`.
    async fn answer_taken(
        &mut self,
        mut own: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, (Option<Fault>, Option<Vec<u8>>)> {
        while let Some(entry) = self.taken.front_mut() {
            let lease = self.lease.as_mut().expect("a batch runs once");
            let received = tokio::select! {
                biased;
                received = lease.receive() => Some(received),
                () = entry.reply.closed(), if self.pool.on_cancel() == OnCancel::Kill => None,
            };
            match received {
                Some(Ok(kind)) => {
                    let entry = self.taken.pop_front().expect("the front entry");
                    let _ = entry
                        .reply
                        .send(Turn::Answered(kind, lease.reply().to_vec()));
                }
                Some(Err(fault)) => return Err((Some(fault), own.take())),
                None => {
                    // Its caller is gone and it is running: kill the worker, as for a call of
                    // our own. The calls behind it never started.
                    drop(self.taken.pop_front());
                    drop(self.lease.take());
                    for entry in self.taken.drain(..) {
                        let _ = entry.reply.send(Turn::Again(entry.frame));
                    }
                    return Err((None, own.take()));
                }
            }
        }
        Ok(own)
    }

    /// The worker was lost (or killed for a cancelled call): the first unanswered call was
    /// running and learns how it ended; the calls behind it, ours included, go again.
    async fn lost(&mut self, fault: Fault, own: Vec<u8>) -> Turn {
        let (pid, exit) = match self.lease.take() {
            Some(lease) => match fault {
                Fault::Died => (lease.pid(), lease.exit().await),
                Fault::Protocol(_) | Fault::Refused(_) => (lease.pid(), Exit::Unknown),
            },
            None => (0, Exit::Unknown),
        };
        let failure = |frame| match &fault {
            Fault::Died => Turn::Died { pid, exit, frame },
            Fault::Protocol(detail) => Turn::Failed(Error::Protocol {
                detail: detail.clone(),
            }),
            Fault::Refused(error) => Turn::Failed(error.clone()),
        };
        let mut behind = std::mem::take(&mut self.taken).into_iter();
        match behind.next() {
            Some(running) => {
                let _ = running.reply.send(failure(running.frame));
                for entry in behind {
                    let _ = entry.reply.send(Turn::Again(entry.frame));
                }
                Turn::Again(own)
            }
            None => failure(own),
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.taken.is_empty() {
            return;
        }
        let Some(lease) = self.lease.take() else {
            return;
        };
        let taken = std::mem::take(&mut self.taken);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !lease.is_sending() => {
                let rest = Batch {
                    function: self.function,
                    pool: self.pool,
                    lease: Some(lease),
                    taken,
                    own_sent: self.own_sent,
                };
                drop(runtime.spawn(rest.finish()));
            }
            // A frame half written, or no runtime to go on reading: the worker is killed. The
            // first call taken along may have started; the others never did.
            _ => {
                let pid = lease.pid();
                drop(lease);
                let mut taken = taken.into_iter();
                if let Some(first) = taken.next() {
                    let _ = first.reply.send(if self.own_sent {
                        Turn::Died {
                            pid,
                            exit: Exit::Unknown,
                            frame: first.frame,
                        }
                    } else {
                        Turn::Again(first.frame)
                    });
                }
                for entry in taken {
                    let _ = entry.reply.send(Turn::Again(entry.frame));
                }
            }
        }
    }
}

impl Batch {
    /// Finishes the calls of others after the lease's own caller went away; its own call, if
    /// sent, then runs and is cancelled as the pool says.
    async fn finish(mut self) {
        if !self.own_sent {
            // Nothing was sent: let the others run elsewhere.
            for entry in self.taken.drain(..) {
                let _ = entry.reply.send(Turn::Again(entry.frame));
            }
            return;
        }
        if let Err((Some(fault), _)) = self.answer_taken(None).await {
            self.lost(fault, Vec::new()).await;
        }
        // Dropping the lease now kills the worker running the abandoned call, or with
        // `OnCancel::Finish` lets it finish.
    }
}

pub(crate) fn decode<R: DeserializeOwned>(
    function: &'static str,
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
        Kind::Returned => postcard::from_bytes(payload)
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
