//! Where an offloaded function sits: what validation and expansion both need to know about the
//! item around it.

use syn::{parse_quote_spanned, ItemImpl, Receiver, ReceiverKind, Type};

/// Where an offloaded function is defined.
pub enum Owner<'a> {
    /// At module level, or in an `impl` block that has no `#[offload]` of its own (which the
    /// tokens do not show; `source` looks for it in the file, for the error only).
    Module,
    /// In an `impl` block marked `#[offload]`, whose self type the expansion can name.
    Impl(&'a ItemImpl),
}

/// The type a method's receiver stands for: `Self`, `&'a mut Self` or the written type of
/// `self: Box<Self>`, with `Self` spanned on the user's `self`.
pub fn receiver_type(receiver: &Receiver) -> Type {
    let span = receiver.self_token.span;
    match &receiver.kind {
        ReceiverKind::Reference(and, lifetime, mutability) => {
            parse_quote_spanned!(span=> #and #lifetime #mutability Self)
        }
        ReceiverKind::Typed(_, ty) => (**ty).clone(),
        _ => parse_quote_spanned!(span=> Self),
    }
}
