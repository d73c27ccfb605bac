//! The codec of a call: arguments into a call frame (stopping as soon as they outgrow a limit),
//! and a reply into the caller's value or the error it reports. postcard both ways, bounded in
//! depth both ways (see `depth`).

use postcard::ser_flavors::Flavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::depth::{self, CodecError};
use super::FnSpec;
use crate::error::CodecStage;
use crate::wire::{self, Kind};
use crate::Error;

// The arguments travel as a tuple, a level that is not the user's: it is allowed on top of the
// pool's `max_depth`, so that a value is refused at the same depth as an argument as it is as a
// result, and a refusal names the pool's limit.

/// Encodes the arguments' tuple into `flavor`, each argument within the pool's `max_depth`.
pub(crate) fn encode_arguments<A: Serialize, F: Flavor>(
    args: &A,
    flavor: F,
    max_depth: u32,
) -> Result<F::Output, CodecError> {
    depth::to_flavor(args, flavor, max_depth.saturating_add(1))
        .map_err(|e| with_pool_limit(e, max_depth))
}

/// Decodes the arguments' tuple (in a worker), each argument within the pool's `max_depth`.
pub(crate) fn decode_arguments<A: DeserializeOwned>(
    bytes: &[u8],
    max_depth: u32,
) -> Result<A, CodecError> {
    depth::from_bytes(bytes, max_depth.saturating_add(1)).map_err(|e| with_pool_limit(e, max_depth))
}

/// `error`, a refusal naming the pool's `max_depth` rather than the tuple's.
fn with_pool_limit(error: CodecError, max_depth: u32) -> CodecError {
    match error {
        CodecError::TooDeep { .. } => CodecError::TooDeep { max_depth },
        error => error,
    }
}

/// A call frame, its id still blank: the function's index in the registry, then the arguments.
pub(crate) fn encode_call<A: Serialize>(
    spec: &FnSpec,
    max_frame: usize,
    max_depth: u32,
    index: u32,
    args: &A,
) -> Result<Vec<u8>, Error> {
    match encode_within(index, args, max_frame, max_depth) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(encode_failed(
            spec,
            &format!("the arguments exceed the frame limit of {max_frame} bytes"),
        )),
        Err(error) => Err(error.into_error(spec.name, CodecStage::EncodeArguments)),
    }
}

/// The call frame, or `None` as soon as the encoded arguments pass `limit` bytes.
pub(crate) fn encode_within<A: Serialize>(
    index: u32,
    args: &A,
    limit: usize,
    max_depth: u32,
) -> Result<Option<Vec<u8>>, CodecError> {
    let mut frame = Vec::new();
    wire::begin(&mut frame, Kind::Call, 0);
    frame.extend_from_slice(&index.to_le_bytes());
    // The payload (the index, then the arguments) may take `limit` bytes after the header.
    let end = wire::HEADER.saturating_add(limit);
    // Only the flavor reports a full buffer; serde's own failures are other errors.
    match encode_arguments(args, Capped { frame, end }, max_depth) {
        Ok(mut frame) => Ok(wire::finish(&mut frame, limit).ok().map(|()| frame)),
        Err(CodecError::Postcard(postcard::Error::SerializeBufferFull, _)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A postcard error, said with what it means for the user's types, naming the type that was
/// being encoded or decoded.
pub(crate) struct Explained<'a> {
    error: &'a postcard::Error,
    of: &'static str,
}

impl<'a> Explained<'a> {
    /// The arguments of a one-argument function travel as a tuple of one, `(T,)`: such a
    /// tuple is named by the type in it, the one its user wrote.
    pub(crate) fn named(error: &'a postcard::Error, of: &'static str) -> Self {
        let of = of
            .strip_prefix('(')
            .and_then(|inner| inner.strip_suffix(",)"))
            .filter(|inner| !has_top_level_comma(inner))
            .unwrap_or(of);
        Explained { error, of }
    }
}

/// Whether `name` lists several types, such as the `A, (B, C)` of `(A, (B, C),)`.
fn has_top_level_comma(name: &str) -> bool {
    let mut depth = 0i32;
    name.chars().any(|c| {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            _ => {}
        }
        c == ',' && depth == 0
    })
}

impl std::fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use postcard::Error as E;
        let Explained { error, of } = self;
        match error {
            E::WontImplement => write!(
                f,
                "`{of}` cannot travel: its serde code asks the format what comes next, and \
                 postcard, the format offload sends values in, is not self-describing, so it \
                 cannot say. That rules out `#[serde(untagged)]`, `#[serde(flatten)]`, \
                 internally or adjacently tagged enums (`#[serde(tag = \"…\")]`), \
                 `serde_json::Value` and a hand-written `deserialize_any`; use plainly derived \
                 types, or send such a value as a `String` (its JSON text, say)"
            ),
            E::SerializeSeqLengthUnknown => write!(
                f,
                "`{of}` cannot travel: postcard writes a sequence's or a map's length first, so \
                 it cannot carry one whose length serde does not know in advance \
                 (`#[serde(flatten)]`, a hand-written `serialize_seq(None)`); use plainly derived \
                 types"
            ),
            E::SerdeSerCustom | E::SerdeDeCustom => {
                write!(f, "{error}: the serde code of `{of}` reported an error")
            }
            E::SerializeBufferFull => write!(f, "{error}"),
            _ => write!(
                f,
                "{error}: the bytes do not decode as `{of}`; make sure it round-trips through \
                 serde (derive both Serialize and Deserialize, with the same attributes)"
            ),
        }
    }
}

/// The error for arguments that do not encode.
pub(crate) fn encode_failed(spec: &FnSpec, detail: &impl std::fmt::Display) -> Error {
    Error::codec(spec.name, CodecStage::EncodeArguments, detail)
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

/// The caller's value from a reply, or the error the reply reports.
pub(crate) fn decode<R: DeserializeOwned>(
    function: &'static str,
    max_depth: u32,
    kind: Kind,
    payload: &[u8],
) -> Result<R, Error> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    let codec = |stage, detail| Err(Error::codec(function, stage, detail));
    match kind {
        // Bounded in depth: a deeply nested result, or a corrupt worker's bytes, must not
        // overflow the stack of the runtime thread that decodes it.
        Kind::Returned => depth::from_bytes(payload, max_depth)
            .map_err(|e| e.into_error(function, CodecStage::DecodeResult)),
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
        Kind::Hello
        | Kind::Call
        | Kind::CallShared
        | Kind::GuardMissing
        | Kind::SetupFailed
        | Kind::Idle
        | Kind::Stop => {
            unreachable!("rejected by the exchange")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_of_one_is_named_by_the_type_in_it() {
        let error = postcard::Error::WontImplement;
        let of = |name| Explained::named(&error, name).of;
        assert_eq!(of("(app::Shape,)"), "app::Shape");
        assert_eq!(
            of("(std::collections::HashMap<u8, (u8, u16)>,)"),
            "std::collections::HashMap<u8, (u8, u16)>"
        );
        assert_eq!(of("(app::Shape, u32)"), "(app::Shape, u32)");
        assert_eq!(of("((u8, u16),)"), "(u8, u16)");
        assert_eq!(of("app::Shape"), "app::Shape");
        assert_eq!(of("()"), "()");
    }

    #[test]
    fn encoding_stops_at_the_limit_and_not_before() {
        // A 100-byte Vec<u8> encodes to 101 bytes; with the 4-byte index, a payload of 105.
        let args = (vec![7u8; 100],);
        let frame = encode_within(3, &args, 105, 1)
            .unwrap()
            .expect("fits exactly");
        assert_eq!(frame.len(), wire::HEADER + 105);
        assert_eq!(encode_within(3, &args, 104, 1).unwrap(), None);
        assert_eq!(encode_within(3, &args, 0, 1).unwrap(), None);
    }
}
