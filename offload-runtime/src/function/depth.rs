//! Encoding and decoding postcard with a bound on nesting, so that no value can crash the
//! process.
//!
//! serde encodes and decodes by recursion, one set of stack frames per level of nesting, and a
//! thread that runs out of stack aborts the whole process. A value 100,000 levels deep (a long
//! `Box`ed list) would do that to the side that encodes it, and to the side that decodes it, as
//! would a corrupt peer's 100 kB of crafted bytes. [`from_bytes`] wraps postcard's deserializer
//! in [`Depth`], which hands every nested value the budget left to it and refuses a level past
//! the limit; [`to_flavor`] does the same for postcard's serializer (see `depth/encode.rs`), so
//! a value too deep to decode is refused before it is sent. On Linux each level also runs behind
//! `stacker::maybe_grow`, so a value within the limit goes through on however little stack the
//! calling thread has left.
//!
//! Only the points where serde goes one level down (a visitor handed a sequence, a map, an enum,
//! an option's `Some` or a newtype struct) count and check the stack; numbers, strings and
//! bytes go straight through, since a 4 MiB `Vec<u8>` arrives as 4M of them.

use std::cell::Cell;
use std::fmt;

use crate::error::CodecStage;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Error as _, Visitor};

mod encode;

pub(crate) use encode::to_flavor;

/// How close to the end of its stack a level may start: enough for the frames of one level in
/// a debug build, with room to spare for a type with large fields.
#[cfg(target_os = "linux")]
const RED_ZONE: usize = 64 * 1024;

/// The stack to move on to when the current one is down to its red zone.
#[cfg(target_os = "linux")]
const SEGMENT: usize = 1024 * 1024;

/// Runs one level down, on a fresh stack segment if this one is down to its red zone (Linux).
/// Elsewhere the depth limit alone bounds the stack a value takes: stacker's assembly does not
/// build for every target from one host, and the default limit fits a runtime thread's stack.
#[cfg(target_os = "linux")]
#[inline]
fn with_stack<R>(level: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, level)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn with_stack<R>(level: impl FnOnce() -> R) -> R {
    level()
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The value nests deeper than the limit.
    TooDeep { max_depth: u32 },
    /// postcard's own complaint (the bytes do not decode as the type, say, or the output is
    /// full), and the name of the type being encoded or decoded.
    Postcard(postcard::Error, &'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::TooDeep { max_depth } => write!(
                f,
                "the value nests deeper than {max_depth} levels, the limit set by the pool's \
                 `max_depth`; raise it with `ProcessPool::configure(..).max_depth(n)` or \
                 flatten the type"
            ),
            CodecError::Postcard(error, of) => super::codec::Explained::named(error, of).fmt(f),
        }
    }
}

impl CodecError {
    /// The caller's error for this failure of `function`'s values at `stage`.
    pub(crate) fn into_error(self, function: &'static str, stage: CodecStage) -> crate::Error {
        let error = crate::Error::codec(function, stage, &self);
        match self {
            CodecError::TooDeep { .. } => error,
            CodecError::Postcard(cause, _) => error.caused_by(cause),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::TooDeep { .. } => None,
            CodecError::Postcard(error, _) => Some(error),
        }
    }
}

/// Decodes a postcard value from `bytes`, refusing values that nest deeper than `max_depth`.
///
/// A level is one step down into a sequence (`Vec`, tuple, struct, tuple struct, array), a map,
/// an enum (any variant, unit ones included), an `Option` that is `Some`, or a newtype struct;
/// numbers, `bool`, `char`, strings, byte strings, `()`, unit structs and `None` take none, and
/// neither does a `Box`. The outermost aggregate is level 1, so `max_depth = 0` admits only a
/// bare primitive, `Vec<u8>` needs 1 and `Vec<Vec<u8>>` 2. A tuple or struct variant counts
/// twice (the enum, then its fields); a `Box`ed list `enum List { Nil, Cons(Box<List>) }` with
/// `n` `Cons` takes `n + 1` levels, so `max_depth` admits at most `max_depth - 1` of them.
///
/// Like `postcard::from_bytes`, bytes after the value are ignored. A value within the limit
/// decodes on any thread, the stack growing onto the heap as needed; dropping it is the
/// caller's concern, and a deeply nested value dropped by recursion needs as much stack again.
pub(crate) fn from_bytes<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: u32,
) -> Result<T, CodecError> {
    // postcard's `Error::custom` keeps no message, so the refusal is told apart by this flag,
    // not by the error that carries it out.
    let refused = Cell::new(false);
    let mut postcard = postcard::Deserializer::from_bytes(bytes);
    let depth = Depth {
        inner: &mut postcard,
        budget: Budget {
            left: max_depth,
            refused: &refused,
        },
    };
    T::deserialize(depth).map_err(|error| {
        if refused.get() {
            CodecError::TooDeep { max_depth }
        } else {
            CodecError::Postcard(error, std::any::type_name::<T>())
        }
    })
}

/// The levels a value may still go down, carried by value: a sibling does not inherit what its
/// elder spent, and nothing needs restoring when a level returns, by error or not.
#[derive(Clone, Copy)]
struct Budget<'r> {
    left: u32,
    refused: &'r Cell<bool>,
}

impl<'r> Budget<'r> {
    /// The budget one level down, or the refusal, carried out as the error that `custom` (serde's
    /// `de::Error::custom` or `ser::Error::custom`) makes.
    #[inline]
    fn descend<E>(self, custom: impl FnOnce(&'static str) -> E) -> Result<Budget<'r>, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Budget { left, ..self }),
            None => {
                self.refused.set(true);
                Err(custom("the value nests deeper than the limit"))
            }
        }
    }
}

/// A deserializer that passes on the budget to every value nested inside it.
struct Depth<'r, D> {
    inner: D,
    budget: Budget<'r>,
}

impl<'r, D> Depth<'r, D> {
    #[inline]
    fn nested<V>(&self, visitor: V) -> Nested<'r, V> {
        Nested {
            inner: visitor,
            budget: self.budget,
        }
    }
}

// postcard hands the visitor of a primitive only the value, never a deserializer or an access
// to go further down with, so these need no wrapping.
macro_rules! forward_flat {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(visitor)
        }
    )*};
}

// These may hand the visitor something to go down with, so the visitor is wrapped to count.
macro_rules! forward_nested {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.nested(visitor);
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Depth<'_, D> {
    type Error = D::Error;

    forward_flat! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
    }

    forward_nested! {
        deserialize_any deserialize_option deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, visitor)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_tuple(len, visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_enum(name, variants, visitor)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        // Types such as `IpAddr` pick their encoding by this, so it must be postcard's answer.
        self.inner.is_human_readable()
    }
}

/// A visitor that spends one level, on fresh stack if need be, wherever it is handed something
/// to go down with; everywhere else it only passes the value on.
struct Nested<'r, V> {
    inner: V,
    budget: Budget<'r>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Nested<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    // Every method is passed on, not left to the trait's defaults, which would turn an `i8`
    // into an `i64` or a borrowed string into a copied one before the inner visitor saw it.
    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let budget = self.budget.descend(D::Error::custom)?;
        let inner = self.inner;
        with_stack(move || {
            inner.visit_some(Depth {
                inner: deserializer,
                budget,
            })
        })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget.descend(D::Error::custom)?;
        let inner = self.inner;
        with_stack(move || {
            inner.visit_newtype_struct(Depth {
                inner: deserializer,
                budget,
            })
        })
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let budget = self.budget.descend(A::Error::custom)?;
        let inner = self.inner;
        with_stack(move || inner.visit_seq(Seq { inner: seq, budget }))
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let budget = self.budget.descend(A::Error::custom)?;
        let inner = self.inner;
        with_stack(move || inner.visit_map(Map { inner: map, budget }))
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let budget = self.budget.descend(A::Error::custom)?;
        let inner = self.inner;
        with_stack(move || {
            inner.visit_enum(Enum {
                inner: data,
                budget,
            })
        })
    }
}

/// A seed whose value decodes through [`Depth`] with the budget of the level it sits in.
struct Seed<'r, S> {
    inner: S,
    budget: Budget<'r>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Depth {
            inner: deserializer,
            budget: self.budget,
        })
    }
}

struct Seq<'r, A> {
    inner: A,
    budget: Budget<'r>,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // `Vec` sizes its first allocation by this.
        self.inner.size_hint()
    }
}

struct Map<'r, A> {
    inner: A,
    budget: Budget<'r>,
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    #[inline]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    #[inline]
    fn next_entry_seed<K: DeserializeSeed<'de>, S: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: S,
    ) -> Result<Option<(K::Value, S::Value)>, A::Error> {
        let budget = self.budget;
        self.inner.next_entry_seed(
            Seed { inner: key, budget },
            Seed {
                inner: value,
                budget,
            },
        )
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct Enum<'r, A> {
    inner: A,
    budget: Budget<'r>,
}

impl<'r, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Enum<'r, A> {
    type Error = A::Error;
    type Variant = Variant<'r, A::Variant>;

    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (tag, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            budget,
        })?;
        Ok((
            tag,
            Variant {
                inner: variant,
                budget,
            },
        ))
    }
}

struct Variant<'r, A> {
    inner: A,
    budget: Budget<'r>,
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Nested {
                inner: visitor,
                budget: self.budget,
            },
        )
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Nested {
                inner: visitor,
                budget: self.budget,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::error::Error as _;
    use std::fmt::Debug;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::random::Random;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(Box<List>),
    }

    impl List {
        /// The bytes of a list of `len` `Cons`, built without the list itself.
        fn encoded(len: usize) -> Vec<u8> {
            let mut bytes = vec![1; len];
            bytes.push(0);
            bytes
        }

        fn len(&self) -> usize {
            let mut len = 0;
            let mut at = self;
            while let List::Cons(next) = at {
                len += 1;
                at = next;
            }
            len
        }

        /// Drops a list of any length without a frame per `Cons`.
        fn dismantle(mut self) {
            while let List::Cons(next) = self {
                self = *next;
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Newtype(u32),
        Tuple(u8, String),
        Struct { a: i64, b: Vec<bool> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Marker;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(f64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        tags: BTreeMap<u16, Option<String>>,
        shape: Shape,
        note: std::borrow::Cow<'static, str>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Node {
        value: i32,
        next: Option<Box<Node>>,
    }

    fn round_trip<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let mut bytes = postcard::to_stdvec(&value).expect("encodes");
        assert_eq!(to_vec(&value, 64), Ok(bytes.clone()));
        let ours: T = from_bytes(&bytes, 64).expect("decodes");
        let theirs: T = postcard::from_bytes(&bytes).expect("postcard decodes");
        assert_eq!(ours, value);
        assert_eq!(ours, theirs);
        bytes.extend_from_slice(&[0xff, 0x01, 0x00]);
        let trailing: T = from_bytes(&bytes, 64).expect("decodes with bytes after it");
        assert_eq!(trailing, value);
    }

    fn to_vec<T: Serialize + ?Sized>(value: &T, max_depth: u32) -> Result<Vec<u8>, CodecError> {
        to_flavor(value, postcard::ser_flavors::StdVec::new(), max_depth)
    }

    /// A list of `len` `Cons`, built and dropped without a frame per `Cons`.
    fn list(len: usize) -> List {
        (0..len).fold(List::Nil, |list, _| List::Cons(Box::new(list)))
    }

    #[test]
    fn round_trips_what_postcard_does() {
        round_trip(());
        round_trip(true);
        round_trip(-5i8);
        round_trip(0xbeefu16);
        round_trip(-70_000i32);
        round_trip(u64::MAX);
        round_trip(i64::MIN);
        round_trip(i128::MIN);
        round_trip(u128::MAX);
        round_trip(1.5f32);
        round_trip(-0.25f64);
        round_trip('é');
        round_trip('\u{10ffff}');
        round_trip(String::new());
        round_trip("ünïcode text".to_owned());
        round_trip(Vec::<u8>::new());
        round_trip((0..4 << 20).map(|i| i as u8).collect::<Vec<u8>>());
        round_trip(vec![vec![vec![1u16, 2], vec![]], vec![vec![3]]]);
        round_trip(Some(Some(7u32)));
        round_trip(Some(None::<u32>));
        round_trip(None::<String>);
        round_trip(vec![
            Shape::Unit,
            Shape::Newtype(9),
            Shape::Tuple(3, "three".to_owned()),
            Shape::Struct {
                a: -1,
                b: vec![true, false],
            },
        ]);
        round_trip(HashMap::from([
            ("a".to_owned(), vec![1u32]),
            ("b".to_owned(), vec![]),
        ]));
        round_trip(BTreeMap::from([(1u32, Some("x".to_owned())), (2, None)]));
        round_trip((1u8, "two".to_owned(), (-3i16, 'c')));
        round_trip([1u8, 2, 3, 4]);
        round_trip(Marker);
        round_trip(Meters(3.25));
        round_trip(Record {
            name: "r".to_owned(),
            tags: BTreeMap::from([(4, Some("four".to_owned()))]),
            shape: Shape::Newtype(1),
            note: "borrowed".into(),
        });
        round_trip(Node {
            value: 1,
            next: Some(Box::new(Node {
                value: 2,
                next: None,
            })),
        });
        round_trip(List::Cons(Box::new(List::Cons(Box::new(List::Nil)))));
        round_trip(crate::function::bytes::Bytes(vec![0, 1, 2, 255]));
    }

    /// Bytes leaning towards the small values that tags, lengths and flags take, so that some
    /// of them decode.
    fn leaning_bytes(random: &mut Random) -> Vec<u8> {
        let len = random.below(24) as usize;
        (0..len)
            .map(|_| match random.below(3) {
                0 => random.next() as u8,
                _ => random.below(4) as u8,
            })
            .collect()
    }

    /// Decodes many random byte strings as `T` both ways and checks that the answers agree;
    /// values are compared by their encodings, which also holds for `NaN`. Returns how many
    /// decoded.
    fn agrees<T>(random: &mut Random) -> usize
    where
        T: Serialize + DeserializeOwned,
    {
        let mut decoded = 0;
        for _ in 0..20_000 {
            let bytes = leaning_bytes(random);
            let ours = from_bytes::<T>(&bytes, u32::MAX);
            let theirs = postcard::from_bytes::<T>(&bytes);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    decoded += 1;
                    assert_eq!(
                        postcard::to_stdvec(&ours).expect("encodes"),
                        postcard::to_stdvec(&theirs).expect("encodes"),
                        "{bytes:?}"
                    );
                }
                (Err(ours), Err(theirs)) => {
                    assert!(
                        matches!(ours, CodecError::Postcard(e, _) if e == theirs),
                        "{bytes:?}"
                    )
                }
                (ours, theirs) => panic!(
                    "{bytes:?}: ours {:?}, postcard's {:?}",
                    ours.err(),
                    theirs.err()
                ),
            }
        }
        decoded
    }

    #[test]
    fn random_bytes_decode_as_postcard_decodes_them() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let decoded = [
            agrees::<List>(&mut random),
            agrees::<Shape>(&mut random),
            agrees::<Vec<Shape>>(&mut random),
            agrees::<BTreeMap<u16, String>>(&mut random),
            agrees::<Option<Vec<(u8, char)>>>(&mut random),
            agrees::<Node>(&mut random),
            agrees::<(i128, f32, bool, Marker)>(&mut random),
            agrees::<Vec<Option<Meters>>>(&mut random),
        ];
        assert!(decoded.iter().all(|&n| n > 0), "{decoded:?}");
    }

    fn too_deep<T: DeserializeOwned + Debug>(bytes: &[u8], max_depth: u32) {
        let error = from_bytes::<T>(bytes, max_depth).expect_err("refused");
        assert_eq!(error, CodecError::TooDeep { max_depth });
    }

    #[test]
    fn counts_aggregates_and_refuses_one_past_the_limit() {
        for max_depth in [1, 2, 3, 64, 1024] {
            let fits = List::encoded(max_depth as usize - 1);
            let list: List = from_bytes(&fits, max_depth).expect("decodes");
            assert_eq!(list.len(), max_depth as usize - 1);
            too_deep::<List>(&List::encoded(max_depth as usize), max_depth);
        }

        let bytes = postcard::to_stdvec(&7u64).expect("encodes");
        assert_eq!(from_bytes::<u64>(&bytes, 0), Ok(7));
        let bytes = postcard::to_stdvec(&vec![1u8, 2]).expect("encodes");
        too_deep::<Vec<u8>>(&bytes, 0);
        assert_eq!(from_bytes::<Vec<u8>>(&bytes, 1), Ok(vec![1, 2]));
        let bytes = postcard::to_stdvec(&Some(vec![vec![1u8]])).expect("encodes");
        too_deep::<Option<Vec<Vec<u8>>>>(&bytes, 2);
        assert!(from_bytes::<Option<Vec<Vec<u8>>>>(&bytes, 3).is_ok());
        let bytes = postcard::to_stdvec(&None::<Vec<u8>>).expect("encodes");
        assert_eq!(from_bytes::<Option<Vec<u8>>>(&bytes, 0), Ok(None));
        let bytes = postcard::to_stdvec(&Shape::Tuple(1, "a".to_owned())).expect("encodes");
        too_deep::<Shape>(&bytes, 1);
        assert!(from_bytes::<Shape>(&bytes, 2).is_ok());
        let bytes = postcard::to_stdvec(&Meters(1.0)).expect("encodes");
        too_deep::<Meters>(&bytes, 0);
        assert!(from_bytes::<Meters>(&bytes, 1).is_ok());
        let bytes = postcard::to_stdvec(&HashMap::from([(1u8, 2u8)])).expect("encodes");
        too_deep::<HashMap<u8, u8>>(&bytes, 0);
        assert!(from_bytes::<HashMap<u8, u8>>(&bytes, 1).is_ok());
    }

    /// Checks that `value` encodes and decodes within `levels` and that both refuse it with one
    /// level fewer: the sender refuses what the receiver would.
    fn takes<T>(value: &T, levels: u32)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let bytes = to_vec(value, levels).expect("encodes");
        assert_eq!(from_bytes::<T>(&bytes, levels).as_ref(), Ok(value));
        if let Some(fewer) = levels.checked_sub(1) {
            let refused = Some(CodecError::TooDeep { max_depth: fewer });
            assert_eq!(to_vec(value, fewer).err(), refused, "{value:?}");
            assert_eq!(from_bytes::<T>(&bytes, fewer).err(), refused, "{value:?}");
        }
    }

    #[test]
    fn encoding_counts_levels_as_decoding_does() {
        for len in 0..70 {
            let value = list(len);
            takes(&value, len as u32 + 1);
            value.dismantle();
        }
        takes(&7u64, 0);
        takes(&"text".to_owned(), 0);
        takes(&(), 0);
        takes(&Marker, 0);
        takes(&None::<Vec<u8>>, 0);
        takes(&vec![1u8, 2], 1);
        takes(&(1u8, 'c'), 1);
        takes(&Meters(1.0), 1);
        takes(&Some(7u8), 1);
        takes(&HashMap::from([(1u8, 2u8)]), 1);
        takes(&Shape::Unit, 1);
        takes(&Shape::Newtype(3), 1);
        takes(&Shape::Tuple(1, "a".to_owned()), 2);
        let b = vec![true];
        takes(&Shape::Struct { a: 1, b }, 3);
        takes(&Some(vec![vec![1u8]]), 3);
        takes(&(vec![Some(Meters(2.0))],), 4);
        takes(&BTreeMap::from([(1u16, vec![Shape::Unit])]), 3);
    }

    #[test]
    fn a_value_too_deep_is_told_from_a_full_buffer() {
        // The list stops at its sixth `Cons`, before it outgrows the buffer at its ninth.
        let mut buffer = [0u8; 8];
        let flavor = postcard::ser_flavors::Slice::new(&mut buffer);
        let value = list(20);
        let refused = to_flavor(&value, flavor, 5).map(|bytes| bytes.len());
        assert_eq!(refused, Err(CodecError::TooDeep { max_depth: 5 }));
        let flavor = postcard::ser_flavors::Slice::new(&mut buffer);
        let full = to_flavor(&[1u8; 9], flavor, 1).expect_err("too long");
        assert!(matches!(
            full,
            CodecError::Postcard(postcard::Error::SerializeBufferFull, "[u8; 9]")
        ));
    }

    #[test]
    fn errors_say_what_happened() {
        let deep = CodecError::TooDeep { max_depth: 1024 };
        let text = deep.to_string();
        assert!(
            text.contains("1024") && text.contains("max_depth(n)"),
            "{text}"
        );
        assert!(deep.source().is_none());

        let error = from_bytes::<String>(&[5, b'a'], 8).expect_err("truncated");
        let postcard = postcard::from_bytes::<String>(&[5, b'a']).expect_err("truncated");
        assert!(
            error.to_string().starts_with(&postcard.to_string()),
            "{error}"
        );
        let source = error.source().expect("postcard's error");
        assert_eq!(
            source.downcast_ref::<postcard::Error>(),
            Some(&postcard::Error::DeserializeUnexpectedEnd)
        );
    }

    /// Runs `f` on a thread with a quarter of a MiB of stack, far less than the levels below
    /// take in a debug build.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawns")
            .join()
            .expect("does not panic")
    }

    #[test]
    fn a_hundred_thousand_levels_neither_crash_nor_decode_past_the_limit() {
        let bytes = List::encoded(100_000);
        let refused = on_small_stack({
            let bytes = bytes.clone();
            move || from_bytes::<List>(&bytes, 1024).map(List::dismantle)
        });
        assert_eq!(refused, Err(CodecError::TooDeep { max_depth: 1024 }));

        // Within the limit, the stack grows onto the heap (Linux).
        #[cfg(target_os = "linux")]
        let len = on_small_stack(move || {
            let list = from_bytes::<List>(&bytes, 200_000).expect("decodes");
            let len = list.len();
            list.dismantle();
            len
        });
        #[cfg(target_os = "linux")]
        assert_eq!(len, 100_000);
    }

    #[test]
    fn a_hundred_thousand_levels_neither_crash_nor_encode_past_the_limit() {
        let encoded = |max_depth| {
            on_small_stack(move || {
                let value = list(100_000);
                let bytes = to_vec(&value, max_depth);
                value.dismantle();
                bytes
            })
        };
        assert_eq!(encoded(1024), Err(CodecError::TooDeep { max_depth: 1024 }));
        // Within the limit, the stack grows onto the heap (Linux).
        #[cfg(target_os = "linux")]
        assert_eq!(encoded(200_000), Ok(List::encoded(100_000)));
    }
}
