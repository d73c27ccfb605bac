//! What crosses the seam back to the caller: how one attempt at a call ended, and which worker
//! ran it.

use crate::error::Exit;
use crate::Error;

/// How one attempt at a call ended.
pub(crate) enum Attempt<T> {
    /// The worker answered; `T` is what the caller made of the reply.
    Answered(T),
    /// The worker was lost while it ran the call: the call may have run, in part or whole.
    Lost {
        worker: WorkerId,
        exit: Exit,
        /// The call's frame, handed back where the transport held it (else empty).
        frame: Vec<u8>,
    },
    /// The call never started (its worker was lost before reading it): send it again.
    NotStarted(Vec<u8>),
    /// The call failed for good: a timeout, a broken protocol, a pool shut down.
    Failed(Error),
}

/// How an attempt ended before its call was under way: never [`Attempt::Answered`]. The
/// transports' ways of starting a call return it, so that their code, which no reply type
/// reaches, is compiled once rather than once per offloaded function.
pub(crate) type Unstarted = Attempt<std::convert::Infallible>;

impl Unstarted {
    /// The same ending, as an attempt of any reply type.
    pub(crate) fn widen<T>(self) -> Attempt<T> {
        match self {
            Attempt::Answered(never) => match never {},
            Attempt::Lost {
                worker,
                exit,
                frame,
            } => Attempt::Lost {
                worker,
                exit,
                frame,
            },
            Attempt::NotStarted(frame) => Attempt::NotStarted(frame),
            Attempt::Failed(error) => Attempt::Failed(error),
        }
    }
}

/// Which worker ran a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerId {
    /// A worker process on the machine that ran the call (this one, or an agent's).
    Process(u32),
    /// An agent of a broker pool, as a whole: it stopped answering while it held the call.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Agent(String),
}
