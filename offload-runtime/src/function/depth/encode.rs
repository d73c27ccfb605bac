//! The encoding half: postcard's serializer wrapped in a [`Depth`] that counts levels the way
//! the decoder does, so that a value is refused by its sender at the depth its receiver would
//! refuse it at, before any of it is sent, and never overflows the sender's stack.
//!
//! serde encodes a sequence, a map or a struct by handing the serializer one element at a
//! time, from the value's own `serialize`, not from inside a call of ours that could move to a
//! fresh stack; so it is the elements that move. Checking the stack for each would cost more
//! than encoding a number does, so a compound checks it once, as it opens: with room for the
//! level below and a red zone to spare, its elements go straight in; without, each goes in
//! behind `stacker::maybe_grow` (see [`Compound`]).

use std::cell::Cell;
use std::fmt::Display;

use postcard::ser_flavors::Flavor;
use serde::ser::{self, Serialize, Serializer};

#[cfg(target_os = "linux")]
use super::RED_ZONE;
use super::{with_stack, Budget, CodecError};

/// Encodes `value` into `flavor`, refusing a value that nests deeper than `max_depth`, counted
/// as [`from_bytes`](super::from_bytes) counts it: a value this encodes, that decodes with the
/// same limit, and the other way round.
pub(crate) fn to_flavor<T, F>(value: &T, flavor: F, max_depth: u32) -> Result<F::Output, CodecError>
where
    T: Serialize + ?Sized,
    F: Flavor,
{
    // As in decoding: postcard's `Error::custom` keeps no message, so a flag tells the refusal.
    let refused = Cell::new(false);
    let mut postcard = postcard::Serializer { output: flavor };
    let depth = Depth {
        inner: &mut postcard,
        budget: Budget {
            left: max_depth,
            refused: &refused,
        },
    };
    let failed = |error| {
        if refused.get() {
            CodecError::TooDeep { max_depth }
        } else {
            CodecError::Postcard(error, std::any::type_name::<T>())
        }
    };
    value.serialize(depth).map_err(failed)?;
    // What `postcard::serialize_with_flavor` reports for a flavor that cannot finish.
    (postcard.output.finalize()).map_err(|_| failed(postcard::Error::SerializeBufferFull))
}

/// A serializer that spends a level wherever serde goes one down, and hands what is left to
/// every value inside.
struct Depth<'r, S> {
    inner: S,
    budget: Budget<'r>,
}

impl<'r, S> Depth<'r, S> {
    /// The budget of what goes inside this value, which takes `levels`.
    #[inline]
    fn descend<E: ser::Error>(&self, levels: u32) -> Result<Budget<'r>, E> {
        (0..levels).try_fold(self.budget, |budget, _| budget.descend(E::custom))
    }
}

/// Whether the stack has room for one more level and a red zone to spare, so that what goes
/// in one level below here starts outside the red zone.
#[cfg(target_os = "linux")]
#[inline]
fn roomy() -> bool {
    stacker::remaining_stack().is_some_and(|left| left >= 2 * RED_ZONE)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn roomy() -> bool {
    true
}

/// A value inside another, encoded through [`Depth`] with the budget left to it; on fresh
/// stack if need be, unless the stack was found `roomy` one level up.
struct Value<'a, 'r, T: ?Sized> {
    value: &'a T,
    budget: Budget<'r>,
    roomy: bool,
}

impl<T: Serialize + ?Sized> Serialize for Value<'_, '_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let level = || {
            self.value.serialize(Depth {
                inner: serializer,
                budget: self.budget,
            })
        };
        if self.roomy {
            level()
        } else {
            with_stack(level)
        }
    }
}

// Values that hold no other value go straight through.
macro_rules! forward_flat {
    ($($method:ident($ty:ty))*) => {$(
        #[inline]
        fn $method(self, value: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(value)
        }
    )*};
}

impl<'r, S: Serializer> Serializer for Depth<'r, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'r, S::SerializeSeq>;
    type SerializeTuple = Compound<'r, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'r, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'r, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'r, S::SerializeMap>;
    type SerializeStruct = Compound<'r, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'r, S::SerializeStructVariant>;

    forward_flat! {
        serialize_bool(bool) serialize_i8(i8) serialize_i16(i16) serialize_i32(i32)
        serialize_i64(i64) serialize_i128(i128) serialize_u8(u8) serialize_u16(u16)
        serialize_u32(u32) serialize_u64(u64) serialize_u128(u128) serialize_f32(f32)
        serialize_f64(f64) serialize_char(char) serialize_str(&str) serialize_bytes(&[u8])
    }

    #[inline]
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    #[inline]
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    #[inline]
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }

    #[inline]
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        // postcard writes it without building a `String` first, as the default would.
        self.inner.collect_str(value)
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        // The decoder counts every enum, a unit variant too.
        self.descend::<S::Error>(1)?;
        self.inner.serialize_unit_variant(name, index, variant)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let budget = self.descend(1)?;
        self.inner.serialize_some(&Value {
            value,
            budget,
            roomy: false,
        })
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let budget = self.descend(1)?;
        let value = Value {
            value,
            budget,
            roomy: false,
        };
        self.inner.serialize_newtype_struct(name, &value)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let budget = self.descend(1)?;
        let value = Value {
            value,
            budget,
            roomy: false,
        };
        (self.inner).serialize_newtype_variant(name, index, variant, &value)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let budget = self.descend(1)?;
        let inner = self.inner.serialize_seq(len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let budget = self.descend(1)?;
        let inner = self.inner.serialize_tuple(len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let budget = self.descend(1)?;
        let inner = self.inner.serialize_tuple_struct(name, len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        // The enum, then its fields, as the decoder counts them.
        let budget = self.descend(2)?;
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let budget = self.descend(1)?;
        let inner = self.inner.serialize_map(len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let budget = self.descend(1)?;
        let inner = self.inner.serialize_struct(name, len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let budget = self.descend(2)?;
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)?;
        Ok(Compound::new(inner, budget))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        // Types such as `IpAddr` pick their encoding by this, so it must be postcard's answer.
        self.inner.is_human_readable()
    }
}

/// A sequence, tuple, map or struct being encoded, whose elements and fields go in as
/// [`Value`]s with the budget one level down, and behind `stacker::maybe_grow` if the stack
/// was short of room as it opened.
struct Compound<'r, C> {
    inner: C,
    budget: Budget<'r>,
    roomy: bool,
}

impl<'r, C> Compound<'r, C> {
    #[inline]
    fn new(inner: C, budget: Budget<'r>) -> Self {
        Compound {
            inner,
            budget,
            roomy: roomy(),
        }
    }

    #[inline]
    fn value<'a, T: ?Sized>(&self, value: &'a T) -> Value<'a, 'r, T> {
        Value {
            value,
            budget: self.budget,
            roomy: self.roomy,
        }
    }
}

// One impl per kind of compound, each passing its elements or fields on through `value`.
macro_rules! compound {
    ($($trait:ident { $($method:ident($($key:ident: $key_ty:ty,)?))* })*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            $(
                #[inline]
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($key: $key_ty,)?
                    value: &T,
                ) -> Result<(), C::Error> {
                    let value = self.value(value);
                    self.inner.$method($($key,)? &value)
                }
            )*

            #[inline]
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

compound! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeMap { serialize_key() serialize_value() }
    SerializeStruct { serialize_field(key: &'static str,) }
    SerializeStructVariant { serialize_field(key: &'static str,) }
}
