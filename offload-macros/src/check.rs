//! Rejecting functions that cannot be offloaded, each with the reason and the fix, spanned at
//! the token that causes it.

use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, ItemFn, Type};

use crate::args::Mode;
use crate::Errors;

pub fn function(item: &ItemFn, mode: Mode, errors: &mut Errors) {
    let sig = &item.sig;
    let other = match mode {
        Mode::Thread => "a thread",
        Mode::Process => "a worker process",
    };
    if let Some(token) = &sig.asyncness {
        errors.push(
            token.span(),
            "an `async fn` needs no offloading: it already yields to the event loop while it \
             waits. Remove #[offload(...)], or, if its body blocks, make it a plain `fn`",
        );
    }
    if let Some(token) = &sig.constness {
        errors.push(token.span(), "a `const fn` cannot be offloaded: remove `const`, or call it directly");
    }
    if let Some(token) = &sig.unsafety {
        errors.push(
            token.span(),
            "an `unsafe fn` cannot be offloaded: its safety conditions cannot be checked across \
             threads or processes. Offload a safe `fn` that makes the unsafe call",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi.span(), "an `extern` fn cannot be offloaded: remove the ABI, or offload a Rust fn that calls it");
    }
    if let Some(dots) = &sig.variadic {
        errors.push(dots.span(), "a variadic fn cannot be offloaded");
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) if receiver.reference.is_some() => errors.push(
                receiver.span(),
                format!(
                    "`{}` borrows from the caller, but the body runs on {other} that may outlive \
                     the borrow: take `self` by value, or make it an associated fn taking owned \
                     arguments",
                    quote::quote!(#receiver)
                ),
            ),
            FnArg::Receiver(receiver) if mode == Mode::Process => errors.push(
                receiver.span(),
                "process mode cannot take `self` yet: the worker must find the function by a \
                 path it can name. Make it a free fn taking the value as an argument",
            ),
            FnArg::Receiver(_) => {}
            FnArg::Typed(arg) => borrowed(&arg.ty, mode, other, errors),
        }
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        borrowed(ty, mode, other, errors);
    }
    if mode == Mode::Process {
        if let Some(param) = sig.generics.params.first() {
            errors.push(
                param.span(),
                "a generic fn cannot run in a worker process: the worker looks functions up by \
                 name and needs one concrete signature. Write a non-generic fn for each type you \
                 need, or use #[offload(thread)]",
            );
        }
        for input in &sig.inputs {
            if let FnArg::Typed(arg) = input {
                let mut finder = ImplTrait(None);
                finder.visit_type(&arg.ty);
                if let Some(span) = finder.0 {
                    errors.push(
                        span,
                        "an `impl Trait` argument cannot be sent to a worker process: the worker \
                         must know the concrete type to decode it. Name the concrete type, or use \
                         #[offload(thread)]",
                    );
                }
            }
        }
    }
}

/// Rejects references: the body runs after the caller's borrow could end. In thread mode a
/// `&'static` reference is fine; in process mode nothing borrowed can be decoded.
fn borrowed(ty: &Type, mode: Mode, other: &str, errors: &mut Errors) {
    let mut finder = Borrow { mode, found: None };
    finder.visit_type(ty);
    if let Some(span) = finder.found {
        let fix = match mode {
            Mode::Thread => "take an owned value (`String` for `&str`, `Vec<T>` for `&[T]`, `Arc<T>` to share), or a `&'static` reference",
            Mode::Process => "take an owned value (`String` for `&str`, `Vec<T>` for `&[T]`)",
        };
        errors.push(
            span,
            format!("a borrowed value cannot be offloaded: the body runs on {other} that may outlive the borrow; {fix}"),
        );
    }
}

struct Borrow {
    mode: Mode,
    found: Option<proc_macro2::Span>,
}

impl Visit<'_> for Borrow {
    fn visit_type_reference(&mut self, reference: &syn::TypeReference) {
        let is_static = reference.lifetime.as_ref().is_some_and(|l| l.ident == "static");
        if self.found.is_none() && !(is_static && self.mode == Mode::Thread) {
            self.found = Some(reference.span());
        }
        syn::visit::visit_type_reference(self, reference);
    }

    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if self.found.is_none() && (lifetime.ident != "static" || self.mode == Mode::Process) {
            self.found = Some(lifetime.span());
        }
    }
}

struct ImplTrait(Option<proc_macro2::Span>);

impl Visit<'_> for ImplTrait {
    fn visit_type_impl_trait(&mut self, ty: &syn::TypeImplTrait) {
        self.0.get_or_insert(ty.span());
    }
}
