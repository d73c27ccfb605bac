//! One attempt at a call on the local pool, told as the seam's [`Attempt`]: a call with small
//! arguments waits for its turn and goes out with the queued calls its lease takes along
//! (`batch`); one with large arguments is encoded straight into the memory its worker shares;
//! `f_map`'s chunks go to a worker of their own, back to back.

use serde::Serialize;

use super::batch::Batch;
use super::conn::Fault;
use super::pool::{Lease, ProcessPool, Turn};
use crate::function::codec::{encode_call, encode_failed};
use crate::function::FnSpec;
use crate::transport::outcome::{Attempt, WorkerId};
use crate::wire::{self, Kind};
use crate::Error;

impl ProcessPool {
    /// Waits for a turn, then runs the call, taking queued calls along when it holds a lease.
    pub(crate) async fn attempt(
        &'static self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Attempt<(Kind, Vec<u8>)> {
        // A call with a timeout neither waits behind others on a worker nor makes others wait
        // behind it, so its time runs only while it runs.
        let combine = spec.timeout.is_none() && self.max_batch() > 1;
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

    /// Runs one call with large arguments on a worker of its own: the arguments are encoded
    /// straight into the memory the worker shares with us (or, without it, into a frame as
    /// usual), and only their length crosses the pipe.
    pub(crate) async fn attempt_large<A: Serialize, T>(
        &'static self,
        spec: &'static FnSpec,
        index: u32,
        args: &A,
        traced: Option<u64>,
        read: impl FnOnce(Kind, &[u8]) -> T,
    ) -> Attempt<T> {
        #[cfg(feature = "tracing")]
        let asked = std::time::Instant::now();
        let mut lease = match self.lease().await {
            Ok(lease) => lease,
            Err(error) => return Attempt::Failed(error),
        };
        #[cfg(feature = "tracing")]
        let started = {
            crate::trace::queued(asked.elapsed());
            crate::trace::on_worker(lease.pid());
            std::time::Instant::now()
        };
        let (mut frame, used) = match lease.region() {
            Some(region) => {
                let limit = region.len();
                let used = match postcard::to_slice(args, region.bytes_mut()) {
                    Ok(used) => used.len(),
                    Err(e) => {
                        let detail = format!("{e} (the frame limit is {limit} bytes)");
                        return Attempt::Failed(encode_failed(spec, &detail).caused_by(e));
                    }
                };
                let mut payload = index.to_le_bytes().to_vec();
                payload.extend_from_slice(&(used as u64).to_le_bytes());
                (wire::frame(Kind::CallShared, 0, &payload), used)
            }
            None => match encode_call(spec, self.max_frame(), index, args) {
                Ok(frame) => (frame, 0),
                Err(error) => return Attempt::Failed(error),
            },
        };
        if let Some(call) = traced {
            wire::trace(&mut frame, call);
        }
        if spec.timeout.is_some() {
            lease.kill_if_dropped();
        }
        let call = async {
            // Large arguments take milliseconds to decode: not worth polling for the reply.
            lease.send(&mut frame, false).await?;
            lease.receive().await
        };
        let outcome = match spec.timeout {
            None => call.await,
            Some(after) => match tokio::time::timeout(after, call).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Attempt::Failed(Error::Timeout {
                        function: spec.name,
                        after,
                    })
                }
            },
        };
        if let Some(region) = lease.region() {
            region.release(used);
        }
        #[cfg(feature = "tracing")]
        crate::trace::ran(started.elapsed());
        match outcome {
            Ok(kind) => Attempt::Answered(read(kind, lease.reply())),
            Err(fault) => lost(lease, fault).await,
        }
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
        Ok(Chunk { spec, lease, sent })
    }
}

/// The calls of one chunk, answered in order by the worker its lease holds; with no lease left,
/// the rest never started.
pub(crate) struct Chunk {
    spec: &'static FnSpec,
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
        let received = match self.spec.timeout {
            None => lease.receive().await,
            Some(after) => match tokio::time::timeout(after, lease.receive()).await {
                Ok(received) => received,
                Err(_) => {
                    // Dropping the lease kills the worker: the calls behind never start.
                    self.lease = None;
                    return Attempt::Failed(Error::Timeout {
                        function: self.spec.name,
                        after,
                    });
                }
            },
        };
        match received {
            Ok(kind) => Attempt::Answered(read(kind, lease.reply())),
            Err(fault) => {
                let lease = self.lease.take().expect("a lease was there");
                lost(lease, fault).await
            }
        }
    }
}

/// What a fault on the lease's worker means for the call it was sent: the worker is given up
/// (and replaced by the next call that needs one).
async fn lost<T>(lease: Lease, fault: Fault) -> Attempt<T> {
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
