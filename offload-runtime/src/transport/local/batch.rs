//! The calls one lease sends to its worker in one write: queued calls it took along, then its
//! own. The worker runs them in that order, so when it dies, the first unanswered call was
//! running and the rest never started.

use std::collections::VecDeque;

use super::builder::OnCancel;
use super::pool::{Lease, ProcessPool, Turn, Waiting};
use crate::error::Exit;
use crate::function::FnSpec;
use crate::transport::local::conn::Fault;
use crate::Error;

/// The calls one lease sends in one write: queued calls it took along, then its own. The worker
/// runs them in that order, so when it dies, the first unanswered call was running and the
/// rest never started. Dropped with calls of others still unanswered (its own caller went
/// away), it finishes them on a task of their own.
pub(crate) struct Batch {
    function: &'static FnSpec,
    pool: &'static ProcessPool,
    lease: Option<Lease>,
    taken: VecDeque<Waiting>,
    /// Whether this lease's own call was sent (it is always last).
    own_sent: bool,
}

impl Batch {
    pub(crate) fn new(
        function: &'static FnSpec,
        pool: &'static ProcessPool,
        lease: Lease,
        combine: bool,
    ) -> Batch {
        let taken = if combine {
            // Never more than the worker may still run, its own call included.
            let room = lease.calls_left().map_or(usize::MAX, |left| {
                usize::try_from(left.saturating_sub(1)).unwrap_or(usize::MAX)
            });
            pool.adopt((pool.max_batch() - 1).min(room))
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
    pub(crate) async fn run(mut self, own: Vec<u8>) -> Turn {
        let lease = self.lease.as_mut().expect("a batch runs once");
        if let Err(error) = lease.ensure_worker().await {
            for entry in self.taken.drain(..) {
                let _ = entry.reply.send(Turn::Again(entry.frame));
            }
            return Turn::Failed(error);
        }
        #[cfg(feature = "tracing")]
        crate::trace::on_worker(lease.pid());
        let mut frames =
            Vec::with_capacity(own.len() + self.taken.iter().map(|e| e.frame.len()).sum::<usize>());
        for entry in &self.taken {
            frames.extend_from_slice(&entry.frame);
        }
        frames.extend_from_slice(&own);
        self.own_sent = true;
        let polling = lease.worth_polling();
        if let Err(fault) = lease.send(&mut frames, polling).await {
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
        match lease.receive().await {
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
    /// running and learns how it ended; the calls behind it, ours included, go again. A worker
    /// that died between calls had started none of them: they all go again.
    async fn lost(&mut self, fault: Fault, own: Vec<u8>) -> Turn {
        let (pid, exit) = match self.lease.take() {
            Some(lease) => match fault {
                Fault::Died | Fault::DiedIdle => (lease.pid(), lease.exit().await),
                Fault::Protocol(_) | Fault::Refused(_) => (lease.pid(), Exit::Unknown),
            },
            None => (0, Exit::Unknown),
        };
        let failure = |frame| match &fault {
            Fault::Died => Turn::Died { pid, exit, frame },
            Fault::DiedIdle => Turn::Again(frame),
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
