//! `Vec<u8>` arguments and results as one byte string on the wire.
//!
//! serde encodes a `Vec<u8>` as a sequence of numbers, one call per byte each way, which for a
//! large buffer costs far more than the copy itself. The expansion wraps every argument or
//! result written as `Vec<u8>` in [`Bytes`], which encodes as a length and the raw bytes.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A `Vec<u8>` that serde encodes as a byte string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(Bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_encode_as_a_length_and_the_raw_bytes() {
        let encoded = postcard::to_stdvec(&Bytes(vec![1, 2, 200])).unwrap();
        assert_eq!(encoded, [3, 1, 2, 200]);
        assert_eq!(
            postcard::from_bytes::<Bytes>(&encoded).unwrap(),
            Bytes(vec![1, 2, 200])
        );
        // postcard writes a u8 sequence the same way, so either side may use either type.
        assert_eq!(postcard::to_stdvec(&vec![1u8, 2, 200]).unwrap(), encoded);
        assert_eq!(
            postcard::from_bytes::<Vec<u8>>(&encoded).unwrap(),
            [1, 2, 200]
        );
    }
}
