//! What an agent tells the caller about one call message, as core NATS messages to the reply
//! subject the call named: a tag byte, then the event's bytes. Results travel as the same
//! frames a local worker writes to its pipe, so both transports decode them alike.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Exit;
use crate::{CodecStage, Error};

const TAKEN: u8 = b'T';
const TAKEN_MANY: u8 = b'M';
const REPLIES: u8 = b'R';
const STORED: u8 = b'O';
const LOST: u8 = b'L';
const GONE: u8 = b'G';
const RETURNED: u8 = b'N';
const FAILED: u8 = b'F';

/// One event of a call message, in the order an agent sends them: `Taken`, then replies (and
/// `Lost`) until every call of the message has one, or a single `Gone`, `Returned` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The agent `agent` took the message; from now on its heartbeat vouches for it.
    Taken { agent: String },
    /// The agent took several messages of one caller: the calls of these ids. Sent to the
    /// caller's id 0, and handed to each call as a `Taken`.
    TakenMany { agent: String, ids: Vec<u64> },
    /// Replies, as wire frames whose id is the call's place in the message, and how long the
    /// message's calls have taken on average so far, in microseconds.
    Replies { micros: u32, frames: Bytes },
    /// Replies too large for a message, in the object store under this name.
    Stored(String),
    /// The worker process running call `item` of the message died.
    Lost { item: u32, pid: u32, exit: Exit },
    /// The message came back from an agent that was lost holding it; it is not run again.
    Gone,
    /// The agent was stopping when the message reached it, and ran none of its calls: the
    /// caller sends them again, to another agent.
    Returned,
    /// The message could not run on the agent.
    Failed(Failure),
}

/// An agent's error, as it crosses the network; the caller makes it an [`Error`] again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Failure {
    kind: u8,
    text: String,
    more: String,
}

impl Event {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Event::Taken { agent } => {
                out.put_u8(TAKEN);
                out.put_slice(agent.as_bytes());
            }
            Event::TakenMany { agent, ids } => {
                out.put_u8(TAKEN_MANY);
                out.put_u16_le(agent.len() as u16);
                out.put_slice(agent.as_bytes());
                for id in ids {
                    out.put_u64_le(*id);
                }
            }
            Event::Replies { micros, frames } => {
                out.put_u8(REPLIES);
                out.put_u32_le(*micros);
                out.put_slice(frames);
            }
            Event::Stored(name) => {
                out.put_u8(STORED);
                out.put_slice(name.as_bytes());
            }
            Event::Lost { item, pid, exit } => {
                out.put_u8(LOST);
                out.put_u32_le(*item);
                out.put_u32_le(*pid);
                let (tag, value) = match *exit {
                    Exit::Code(code) => (0, code),
                    Exit::Signal(signal) => (1, signal),
                    _ => (2, 0),
                };
                out.put_u8(tag);
                out.put_i32_le(value);
            }
            Event::Gone => out.put_u8(GONE),
            Event::Returned => out.put_u8(RETURNED),
            Event::Failed(failure) => {
                out.put_u8(FAILED);
                out.put_slice(&postcard::to_stdvec(failure).expect("strings encode"));
            }
        }
        out.freeze()
    }

    /// The event in `bytes`, or `None` for bytes no agent of this protocol sends.
    pub(crate) fn decode(mut bytes: Bytes) -> Option<Event> {
        if bytes.is_empty() {
            return None;
        }
        let tag = bytes[0];
        let body = bytes.split_off(1);
        let text = || String::from_utf8(body.to_vec()).ok();
        Some(match tag {
            TAKEN => Event::Taken { agent: text()? },
            TAKEN_MANY => {
                let len = usize::from(u16::from_le_bytes(body.get(..2)?.try_into().ok()?));
                let agent = std::str::from_utf8(body.get(2..2 + len)?).ok()?.to_owned();
                let ids = body.get(2 + len..)?;
                if ids.len() % 8 != 0 {
                    return None;
                }
                let ids = ids
                    .chunks_exact(8)
                    .map(|id| u64::from_le_bytes(id.try_into().expect("8 bytes")))
                    .collect();
                Event::TakenMany { agent, ids }
            }
            REPLIES => Event::Replies {
                micros: u32::from_le_bytes(body.get(..4)?.try_into().ok()?),
                frames: body.slice(4..),
            },
            STORED => Event::Stored(text()?),
            LOST if body.len() == 13 => {
                let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
                let value = i32::from_le_bytes(body[9..13].try_into().unwrap());
                Event::Lost {
                    item: u32_at(0),
                    pid: u32_at(4),
                    exit: match body[8] {
                        0 => Exit::Code(value),
                        1 => Exit::Signal(value),
                        _ => Exit::Unknown,
                    },
                }
            }
            GONE => Event::Gone,
            RETURNED => Event::Returned,
            FAILED => Event::Failed(postcard::from_bytes(&body).ok()?),
            _ => return None,
        })
    }
}

impl Failure {
    /// How `error`, met on the agent `agent`, crosses to the caller.
    pub(crate) fn of(error: &Error, agent: &str) -> Failure {
        let (kind, text, more) = match error {
            Error::WorkerSetup { setup, message } => (1, setup.clone(), message.clone()),
            Error::VersionMismatch { detail } => (2, detail.clone(), String::new()),
            Error::WorkerStart { reason, .. } => (3, reason.clone(), String::new()),
            Error::Protocol { detail } => (4, detail.clone(), String::new()),
            Error::NotRegistered { .. } => (5, String::new(), String::new()),
            Error::GuardMissing => (6, String::new(), String::new()),
            Error::Shutdown => (7, String::new(), String::new()),
            Error::Codec { stage, detail, .. } => (8, detail.clone(), format!("{stage:?}")),
            other => (0, other.to_string(), String::new()),
        };
        let text = match kind {
            3 | 4 | 0 => format!("on agent {agent}: {text}"),
            _ => text,
        };
        Failure { kind, text, more }
    }

    /// The caller's error for a failure of `function`.
    pub(crate) fn into_error(self, function: &'static str) -> Error {
        match self.kind {
            1 => Error::WorkerSetup {
                setup: self.text,
                message: self.more,
            },
            2 => Error::VersionMismatch { detail: self.text },
            3 => Error::start_failed(self.text),
            4 => Error::Protocol { detail: self.text },
            5 => Error::NotRegistered { function },
            6 => Error::GuardMissing,
            7 => Error::Shutdown,
            8 => {
                let stage = match self.more.as_str() {
                    "EncodeArguments" => CodecStage::EncodeArguments,
                    "DecodeArguments" => CodecStage::DecodeArguments,
                    "EncodeResult" => CodecStage::EncodeResult,
                    _ => CodecStage::DecodeResult,
                };
                Error::codec(function, stage, self.text)
            }
            _ => Error::Broker { detail: self.text },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_as_sent() {
        let events = [
            Event::Taken {
                agent: "host:12".into(),
            },
            Event::TakenMany {
                agent: "host:12".into(),
                ids: vec![1, 2, u64::MAX],
            },
            Event::Replies {
                micros: 12,
                frames: Bytes::from_static(b"\x01\x02"),
            },
            Event::Stored("abc.r".into()),
            Event::Lost {
                item: 3,
                pid: 77,
                exit: Exit::Signal(9),
            },
            Event::Lost {
                item: 0,
                pid: 1,
                exit: Exit::Code(-2),
            },
            Event::Gone,
            Event::Returned,
            Event::Failed(Failure::of(&Error::Shutdown, "a")),
        ];
        for event in events {
            assert_eq!(Event::decode(event.encode()), Some(event));
        }
        assert_eq!(Event::decode(Bytes::new()), None);
        assert_eq!(Event::decode(Bytes::from_static(b"L\x01")), None);
        assert_eq!(Event::decode(Bytes::from_static(b"M\x09\x00a")), None);
    }

    #[test]
    fn an_agent_s_errors_keep_their_kind() {
        let errors = [
            Error::WorkerSetup {
                setup: "init".into(),
                message: "no db".into(),
            },
            Error::NotRegistered { function: "f" },
            Error::Shutdown,
            Error::GuardMissing,
        ];
        for error in errors {
            assert_eq!(Failure::of(&error, "a").into_error("f"), error);
        }
        let other = Failure::of(&Error::start_failed("fork: EAGAIN"), "h:1").into_error("f");
        assert!(
            other.to_string().contains("on agent h:1: fork: EAGAIN"),
            "{other}"
        );
    }
}
