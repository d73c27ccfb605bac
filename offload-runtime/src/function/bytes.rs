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

impl From<Bytes> for Vec<u8> {
    fn from(bytes: Bytes) -> Vec<u8> {
        bytes.0
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        let mut owned = Vec::with_capacity(bytes.len());
        prefer_huge_pages(&mut owned);
        owned.extend_from_slice(bytes);
        Ok(Bytes(owned))
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

/// Asks for transparent huge pages for a large, still untouched buffer, where the system gives
/// them on request: filling 64 MiB of fresh memory then takes 32 page faults instead of 16,384,
/// which cost more than the copy itself.
fn prefer_huge_pages(buffer: &mut Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        const HUGE: usize = 2 << 20;
        if buffer.capacity() < 2 * HUGE {
            return;
        }
        let start = buffer.as_mut_ptr() as usize;
        let end = start + buffer.capacity();
        let aligned = start.div_ceil(PAGE) * PAGE;
        // SAFETY: the range lies within the buffer's allocation, which nothing has touched yet;
        // MADV_HUGEPAGE only changes how its pages will be backed.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                (end - aligned) / PAGE * PAGE,
                libc::MADV_HUGEPAGE,
            )
        };
    }
    let _ = buffer;
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
