//! The frames that travel between a caller and a worker over their two private pipes.
//!
//! Every frame is `len: u32 LE | kind: u8 | id: u64 LE | payload`, where `len` counts everything
//! after itself. The kind's top bit, [`POLLING`], on a call says that the caller is polling for
//! its reply, and so likely to send its next call soon; the next bit, [`PLACED`], that the
//! caller narrowed the worker's affinity to one core for the call (see `cores.rs`). A reader
//! checks `len` against its limit before allocating, so a corrupt or hostile length cannot make
//! either side allocate without bound.

use std::fmt;

/// Bumped whenever the frame layout or a payload changes meaning.
pub(crate) const PROTOCOL: u16 = 5;

/// The kind byte's flag: the caller polls for this call's reply.
pub(crate) const POLLING: u8 = 0x80;

/// The kind byte's flag: the caller narrowed the worker to one core for this call.
pub(crate) const PLACED: u8 = 0x40;

/// The kind byte's flag: the call carries the caller's trace id, 8 bytes after the index (see
/// [`trace`]).
pub(crate) const TRACED: u8 = 0x20;

pub(crate) const HEADER: usize = 13;
const LEN: usize = 4;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Worker → caller, once, first: `(protocol, pid, [(name, fingerprint)], build id)`.
    Hello = 1,
    /// Caller → worker: `index: u32 LE | encoded arguments`.
    Call = 2,
    /// Worker → caller: the encoded return value.
    Returned = 3,
    /// Worker → caller: `(message, location, backtrace)`.
    Panicked = 4,
    /// Worker → caller: UTF-8 text of the serde error.
    DecodeFailed = 5,
    /// Worker → caller: UTF-8 text of the serde error.
    EncodeFailed = 6,
    /// Worker → caller: the index in the call is not in the registry.
    UnknownFunction = 7,
    /// Re-executed copy → caller: `main` ran without the guard.
    GuardMissing = 8,
    /// Caller → worker: `index: u32 LE | len: u64 LE`, the arguments being the first `len`
    /// bytes of the shared region.
    CallShared = 9,
    /// Worker → caller, in place of `Hello`: `(setup name, message)`, its setup failed.
    SetupFailed = 10,
    /// Worker → caller, between calls: it waited for a call longer than its pool's idle time,
    /// and exits without reading another.
    Idle = 11,
    /// Caller → worker, between calls: the pool is done with it, and it exits as a program
    /// does. A channel that closes without it says that the caller is gone, and the worker ends
    /// with its whole group (see `worker/group.rs`).
    Stop = 12,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Call,
            3 => Kind::Returned,
            4 => Kind::Panicked,
            5 => Kind::DecodeFailed,
            6 => Kind::EncodeFailed,
            7 => Kind::UnknownFunction,
            8 => Kind::GuardMissing,
            9 => Kind::CallShared,
            10 => Kind::SetupFailed,
            11 => Kind::Idle,
            12 => Kind::Stop,
            _ => return None,
        })
    }
}

/// A frame's header, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub id: u64,
    pub payload_len: usize,
    /// Whether the kind byte carried [`POLLING`].
    pub polling: bool,
    /// Whether the kind byte carried [`PLACED`].
    pub placed: bool,
    /// Whether the kind byte carried [`TRACED`].
    pub traced: bool,
}

/// Bytes that do not form a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    TooShort(u32),
    TooLong { len: u64, limit: usize },
    UnknownKind(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooShort(len) => write!(f, "frame length {len} is shorter than a header"),
            WireError::TooLong { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit} bytes")
            }
            WireError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
        }
    }
}

impl std::error::Error for WireError {}

impl Header {
    pub(crate) fn parse(bytes: &[u8; HEADER], limit: usize) -> Result<Header, WireError> {
        let len = u32::from_le_bytes(bytes[..LEN].try_into().expect("4 bytes"));
        let payload_len = (len as usize)
            .checked_sub(HEADER - LEN)
            .ok_or(WireError::TooShort(len))?;
        if payload_len > limit {
            return Err(WireError::TooLong {
                len: len.into(),
                limit,
            });
        }
        // The flags belong to calls; on any other frame they make an unknown kind.
        let flags = bytes[LEN] & (POLLING | PLACED | TRACED);
        let kind = Kind::from_byte(bytes[LEN] & !flags)
            .filter(|kind| flags == 0 || matches!(kind, Kind::Call | Kind::CallShared))
            .ok_or(WireError::UnknownKind(bytes[LEN]))?;
        let id = u64::from_le_bytes(bytes[LEN + 1..].try_into().expect("8 bytes"));
        Ok(Header {
            kind,
            id,
            payload_len,
            polling: flags & POLLING != 0,
            placed: flags & PLACED != 0,
            traced: flags & TRACED != 0,
        })
    }
}

/// Clears `buf` and writes a header whose length [`finish`] fills in once the payload is there.
pub(crate) fn begin(buf: &mut Vec<u8>, kind: Kind, id: u64) {
    buf.clear();
    buf.extend_from_slice(&[0; LEN]);
    buf.push(kind as u8);
    buf.extend_from_slice(&id.to_le_bytes());
}

/// Fills in the length of a frame started with [`begin`].
pub(crate) fn finish(buf: &mut [u8], limit: usize) -> Result<(), WireError> {
    let payload_len = buf.len() - HEADER;
    if payload_len > limit || buf.len() - LEN > u32::MAX as usize {
        return Err(WireError::TooLong {
            len: payload_len as u64,
            limit,
        });
    }
    let len = (buf.len() - LEN) as u32;
    buf[..LEN].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Marks a call frame built with [`begin`] and [`finish`] as traced: the caller's trace id goes
/// after the function's index, so that the worker's log lines for the call can name it.
pub(crate) fn trace(frame: &mut Vec<u8>, call: u64) {
    let at = HEADER + 4;
    frame.splice(at..at, call.to_le_bytes());
    frame[LEN] |= TRACED;
    let len = u32::from_le_bytes(frame[..LEN].try_into().expect("4 bytes")) + 8;
    frame[..LEN].copy_from_slice(&len.to_le_bytes());
}

/// A whole frame in one buffer, for small control frames.
pub(crate) fn frame(kind: Kind, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    begin(&mut buf, kind, id);
    buf.extend_from_slice(payload);
    finish(&mut buf, usize::MAX).expect("control frames are small");
    buf
}

/// The frames laid end to end in `bytes`, as a broker message carries them: each header with
/// its payload. An error if a frame is malformed, over `limit`, or cut short.
#[cfg(feature = "nats")]
pub(crate) fn split(mut bytes: &[u8], limit: usize) -> Result<Vec<(Header, &[u8])>, WireError> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let head: &[u8; HEADER] = bytes
            .get(..HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or(WireError::TooShort(bytes.len() as u32))?;
        let header = Header::parse(head, limit)?;
        let end = HEADER + header.payload_len;
        let payload = bytes.get(HEADER..end).ok_or(WireError::TooLong {
            len: header.payload_len as u64,
            limit: bytes.len() - HEADER,
        })?;
        frames.push((header, payload));
        bytes = &bytes[end..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(buf: &[u8], limit: usize) -> Result<Header, WireError> {
        Header::parse(buf[..HEADER].try_into().unwrap(), limit)
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let buf = frame(Kind::Returned, 42, b"abc");
        assert_eq!(
            header_of(&buf, 10),
            Ok(Header {
                kind: Kind::Returned,
                id: 42,
                payload_len: 3,
                polling: false,
                placed: false,
                traced: false,
            })
        );
        assert_eq!(&buf[HEADER..], b"abc");
        let mut flagged = frame(Kind::Call, 7, b"");
        flagged[4] |= POLLING;
        assert_eq!(
            header_of(&flagged, 10).map(|h| (h.kind, h.polling, h.placed)),
            Ok((Kind::Call, true, false))
        );
        flagged[4] |= PLACED;
        assert_eq!(
            header_of(&flagged, 10).map(|h| (h.kind, h.polling, h.placed)),
            Ok((Kind::Call, true, true))
        );
    }

    #[cfg(feature = "nats")]
    #[test]
    fn frames_end_to_end_split_back_and_a_cut_one_is_an_error() {
        let mut bytes = frame(Kind::Returned, 0, b"one");
        bytes.extend(frame(Kind::Panicked, 1, b""));
        let frames = split(&bytes, 10).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].0.id, frames[0].1), (0, &b"one"[..]));
        assert_eq!((frames[1].0.kind, frames[1].1), (Kind::Panicked, &b""[..]));
        assert!(split(&bytes[..bytes.len() - 1], 10).is_err());
        assert!(split(&bytes[..5], 10).is_err());
        assert!(split(&[], 10).unwrap().is_empty());
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let buf = frame(Kind::Returned, 1, &[0; 11]);
        assert_eq!(
            header_of(&buf, 10),
            Err(WireError::TooLong { len: 20, limit: 10 })
        );
        let mut short = buf.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(header_of(&short, 10), Err(WireError::TooShort(3)));
        let mut unknown = frame(Kind::Returned, 1, b"");
        unknown[4] = 200;
        assert_eq!(header_of(&unknown, 10), Err(WireError::UnknownKind(200)));
        unknown[4] = Kind::Returned as u8 | PLACED;
        assert_eq!(header_of(&unknown, 10), Err(WireError::UnknownKind(0x43)));
    }
}
