//! One attempt at a call on the local pool, told as the seam's [`Attempt`]: a call with small
//! arguments waits for its turn and goes out with the queued calls its lease takes along
//! (`batch`); a call whose time matters is [`Started`] on a worker of its own, and so is one
//! with large arguments, encoded straight into the memory its worker shares; `f_map`'s chunks
//! go to a worker of their own, back to back. Timeouts are the caller's: it stops a started
//! call, or a chunk, by dropping it.

use postcard::ser_flavors::Slice;
use serde::Serialize;

use super::batch::Batch;
use super::conn::Fault;
use super::pool::{Lease, ProcessPool, Turn};
use crate::error::CodecStage;
use crate::function::codec::{encode_arguments, encode_call, encode_failed, Explained};
use crate::function::depth::CodecError;
use crate::function::FnSpec;
use crate::transport::outcome::{Attempt, Unstarted, WorkerId};
use crate::wire::{self, Kind};
use crate::Error;

impl ProcessPool {
    /// Waits for a turn, then runs the call, taking queued calls along when it holds a lease.
    pub(crate) async fn attempt(
        &'static self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Attempt<(Kind, Vec<u8>)> {
        // Calls with a timeout are started on a worker of their own instead (see `start_call`), so
        // that their time runs only while they run.
        debug_assert!(
            spec.timeout.is_none(),
            "a timed call is started, not attempted"
        );
        let combine = self.max_batch() > 1;
        #[cfg(feature = "tracing")]
        let asked = std::time::Instant::now();
        let turn = match self.turn(frame, combine).await {
            // Boxed: only a call that holds a worker pays for the batch's state.
            Ok(Turn::Lease(lease, own)) => {
                #[cfg(feature = "tracing")]
                let started = {
                    crate::trace::queued(asked.elapsed());
                    std::time::Instant::now()
                };
                let turn = Box::pin(Batch::new(spec, self, lease, combine).run(own)).await;
                #[cfg(feature = "tracing")]
                crate::trace::ran(started.elapsed());
                turn
            }
            Ok(turn) => turn,
            Err(error) => return Attempt::Failed(error),
        };
        match turn {
            Turn::Answered(kind, payload) => Attempt::Answered((kind, payload)),
            Turn::Failed(error) => Attempt::Failed(error),
            Turn::Again(frame) => Attempt::NotStarted(frame),
            Turn::Died { pid, exit, frame } => Attempt::Lost {
                worker: WorkerId::Process(pid),
                exit,
                frame,
            },
            Turn::Lease(..) => unreachable!("a batch ends with an outcome, not a lease"),
        }
    }

    /// Starts one call on a worker of its own, without taking queued calls along: the call
    /// whose time runs from the moment it starts (see [`Started`]).
    pub(crate) async fn start_call(
        &'static self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Result<Started, Unstarted> {
        let lease = self.lease_for_one().await?;
        Started::send(spec, lease, frame, 0).await
    }

    /// A worker for one call of its own, as soon as one is free.
    async fn lease_for_one(&'static self) -> Result<Lease, Unstarted> {
        #[cfg(feature = "tracing")]
        let asked = std::time::Instant::now();
        let lease = self.lease().await.map_err(Attempt::Failed)?;
        #[cfg(feature = "tracing")]
        crate::trace::queued(asked.elapsed());
        Ok(lease)
    }

    /// Starts one call with large arguments on a worker of its own: the arguments are encoded
    /// straight into the memory the worker shares with us (or, without it, into a frame as
    /// usual), and only their length crosses the pipe.
    pub(crate) async fn start_large_call<A: Serialize>(
        &'static self,
        spec: &'static FnSpec,
        index: u32,
        args: &A,
        traced: Option<u64>,
    ) -> Result<Started, Unstarted> {
        let mut lease = self.lease_for_one().await?;
        let (frame, used) = self.encode_large(spec, &mut lease, index, args, traced)?;
        // Not kept for another attempt: large arguments are encoded anew each time.
        let mut started = Started::send(spec, lease, frame, used).await?;
        started.frame = Vec::new();
        Ok(started)
    }

    /// The frame of a call with large arguments, and the bytes of the lease's shared region
    /// they took: the one part of starting such a call that depends on their type.
    fn encode_large<A: Serialize>(
        &self,
        spec: &'static FnSpec,
        lease: &mut Lease,
        index: u32,
        args: &A,
        traced: Option<u64>,
    ) -> Result<(Vec<u8>, usize), Unstarted> {
        let (mut frame, used) = match lease.region() {
            Some(region) => {
                let limit = region.len();
                let region = Slice::new(region.bytes_mut());
                let used = match encode_arguments(args, region, self.max_depth()) {
                    Ok(used) => used.len(),
                    Err(CodecError::Postcard(e, of)) => {
                        let detail = format!(
                            "{} (the frame limit is {limit} bytes)",
                            Explained::named(&e, of)
                        );
                        return Err(Attempt::Failed(encode_failed(spec, &detail).caused_by(e)));
                    }
                    Err(e) => {
                        let error = e.into_error(spec.name, CodecStage::EncodeArguments);
                        return Err(Attempt::Failed(error));
                    }
                };
                let mut payload = index.to_le_bytes().to_vec();
                payload.extend_from_slice(&(used as u64).to_le_bytes());
                (wire::frame(Kind::CallShared, 0, &payload), used)
            }
            None => match encode_call(spec, self.max_frame(), self.max_depth(), index, args) {
                Ok(frame) => (frame, 0),
                Err(error) => return Err(Attempt::Failed(error)),
            },
        };
        if let Some(call) = traced {
            wire::trace(&mut frame, call);
        }
        Ok((frame, used))
    }

    /// Sends as many of `frames` as a worker may still run (see `max_calls_per_worker`), back to
    /// back, to a worker of their own.
    pub(crate) async fn chunk(
        &'static self,
        spec: &'static FnSpec,
        frames: &[&[u8]],
    ) -> Result<Chunk, Error> {
        let mut lease = self.lease().await?;
        let sent = lease.calls_left().map_or(frames.len(), |left| {
            frames
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX))
        });
        if spec.timeout.is_some() {
            lease.kill_if_dropped();
        }
        let mut bytes = Vec::with_capacity(frames[..sent].iter().map(|f| f.len()).sum());
        for frame in &frames[..sent] {
            bytes.extend_from_slice(frame);
        }
        // A map is after throughput: its drivers sleep between replies, leaving the thread to
        // others.
        let lease = match lease.send(&mut bytes, false).await {
            Ok(()) => Some(lease),
            Err(_) => {
                lease.exit().await;
                None
            }
        };
        Ok(Chunk { lease, sent })
    }
}

/// The calls of one chunk, answered in order by the worker its lease holds; with no lease left,
/// the rest never started.
pub(crate) struct Chunk {
    lease: Option<Lease>,
    sent: usize,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.sent
    }

    pub(crate) async fn next<T>(&mut self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        let Some(lease) = self.lease.as_mut() else {
            return Attempt::NotStarted(Vec::new());
        };
        match lease.receive().await {
            Ok(kind) => Attempt::Answered(read(kind, lease.reply())),
            Err(fault) => {
                let lease = self.lease.take().expect("a lease was there");
                lost(lease, fault).await.widen()
            }
        }
    }

    /// Stops the calls not answered yet: the worker running them is killed (or, under
    /// `OnCancel::Finish`, finishes them unread), and they count as never started.
    pub(crate) fn stop(&mut self) {
        self.lease = None;
    }
}

/// A call sent to a worker of its own, waiting for its reply. Dropped before the reply came (a
/// timeout, a cancelled call), it stops the call: the worker is killed, or under
/// `OnCancel::Finish` (for a call without a timeout) lets it finish unread.
pub(crate) struct Started {
    lease: Lease,
    /// The call's frame, handed back should the call go again; empty for large arguments.
    frame: Vec<u8>,
    /// Bytes of the shared region the arguments took.
    used: usize,
    #[cfg(feature = "tracing")]
    since: std::time::Instant,
}

impl Started {
    async fn send(
        spec: &'static FnSpec,
        mut lease: Lease,
        mut frame: Vec<u8>,
        used: usize,
    ) -> Result<Started, Unstarted> {
        #[cfg(feature = "tracing")]
        crate::trace::on_worker(lease.pid());
        if spec.timeout.is_some() {
            lease.kill_if_dropped();
        }
        // A call of its own is one whose time matters, or a large one whose arguments take
        // milliseconds to decode: not worth polling for the reply either way.
        if let Err(fault) = lease.send(&mut frame, false).await {
            return Err(with_frame(lost(lease, fault).await, frame));
        }
        Ok(Started {
            lease,
            frame,
            used,
            #[cfg(feature = "tracing")]
            since: std::time::Instant::now(),
        })
    }

    /// Waits for the reply; `read` makes the caller's value of it where it lies.
    pub(crate) async fn finish<T>(mut self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        let received = self.lease.receive().await;
        if let Some(region) = self.lease.region() {
            region.release(self.used);
        }
        #[cfg(feature = "tracing")]
        crate::trace::ran(self.since.elapsed());
        match received {
            Ok(kind) => Attempt::Answered(read(kind, self.lease.reply())),
            Err(fault) => with_frame(lost(self.lease, fault).await, self.frame).widen(),
        }
    }
}

/// An attempt that did not run to its end, with the call's frame handed back for another.
fn with_frame(attempt: Unstarted, own: Vec<u8>) -> Unstarted {
    match attempt {
        Attempt::Lost { worker, exit, .. } => Attempt::Lost {
            worker,
            exit,
            frame: own,
        },
        Attempt::NotStarted(_) => Attempt::NotStarted(own),
        other => other,
    }
}

/// What a fault on the lease's worker means for the call it was sent: the worker is given up
/// (and replaced by the next call that needs one).
async fn lost(lease: Lease, fault: Fault) -> Unstarted {
    match fault {
        Fault::Died => {
            let pid = lease.pid();
            Attempt::Lost {
                worker: WorkerId::Process(pid),
                exit: lease.exit().await,
                frame: Vec::new(),
            }
        }
        // It died between calls, before reading this one.
        Fault::DiedIdle => {
            lease.exit().await;
            Attempt::NotStarted(Vec::new())
        }
        // Dropping the lease mid-call kills the worker, whose stream can no longer be trusted.
        Fault::Protocol(detail) => Attempt::Failed(Error::Protocol { detail }),
        Fault::Refused(error) => Attempt::Failed(error),
    }
}
