//! Rejecting functions that cannot be offloaded, each with the reason and the fix, spanned at
//! the token that causes it.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, ItemFn, ReturnType, Safety, Type, TypeReference};

use crate::args::Mode;
use crate::errors::Errors;
use crate::item::{receiver_type, Owner};
use crate::show::show;

/// Why a trait's method cannot be offloaded, and what to do instead.
pub const TRAIT_METHOD: &str = "a trait's methods cannot be offloaded: the trait fixes their \
     signatures, and an offloaded method becomes an `async fn` returning \
     `Result<_, offload::Error>`. Offload an inherent fn and call it from the trait's \
     implementations";

pub fn function(item: &ItemFn, mode: Mode, owner: &Owner, errors: &mut Errors) {
    let sig = &item.sig;
    if let Some(token) = &sig.asyncness {
        errors.push(
            token.span(),
            "an `async fn` needs no offloading: it already yields to the event loop while it \
             waits. Remove #[offload(...)], or, if its body blocks, make it a plain `fn`",
        );
    }
    if let Some(token) = &sig.constness {
        errors.push(
            token.span(),
            "a `const fn` cannot be offloaded: the offloaded function becomes an `async fn`, which \
             cannot be `const`. Remove `const`, or keep the `const fn` and offload a plain fn that \
             calls it",
        );
    }
    if let Safety::Unsafe(token) = &sig.safety {
        errors.push(
            token.span(),
            "an `unsafe fn` cannot be offloaded: its safety conditions cannot be checked across \
             threads or processes. Offload a safe `fn` that makes the unsafe call",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.at(
            abi,
            "an `extern` fn cannot be offloaded: the offloaded function becomes an `async fn`, \
             which has no foreign ABI. Keep the `extern` fn and offload a plain fn that calls it",
        );
    }
    if let Some(dots) = &sig.variadic {
        errors.at(dots, "a variadic fn cannot be offloaded");
    }
    if sig.ident == "main" && matches!(owner, Owner::Module) {
        errors.push(
            sig.ident.span(),
            "`main` cannot be offloaded; to make `main` serve worker processes, write \
             #[offload::main] above #[tokio::main]",
        );
    }
    if let Owner::Module = owner {
        // The file names the block; where it cannot be read, `self` or `Self` still shows one.
        if let Some(block) = crate::source::unmarked_impl(item) {
            errors.push(Span::call_site(), block.mistake(&sig.ident));
        } else if let Some(span) = names_self(item) {
            errors.push(
                span,
                "an offloaded method needs #[offload] on its `impl` block as well, so that the \
                 generated code can name the type it belongs to: write #[offload] on the line \
                 above `impl`",
            );
        }
    }

    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                if let Some(found) = borrow(&receiver_type(receiver), mode) {
                    let shown = show(receiver);
                    let message = match mode {
                        Mode::Thread => format!(
                            "`{shown}` borrows the value the method is called on, but the body \
                             runs on another thread, which may outlive the borrow; take `self` by \
                             value (clone it first to keep a copy), or hold the shared state in an \
                             `Arc` field"
                        ),
                        Mode::Process => format!(
                            "`{shown}` cannot be sent to a worker process: the worker decodes its \
                             own copy of each argument, so it cannot borrow the caller's value, and \
                             changes to its copy would not come back; take `self` by value and \
                             return what the caller needs"
                        ),
                    };
                    errors.at(found, message);
                }
            }
            FnArg::Typed(arg) => {
                if let Some(found) = borrow(&arg.ty, mode) {
                    errors.at(&found, borrowed_argument(&found, mode));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Type::Never(never) = &**ty {
            errors.at(
                never,
                "a function that never returns cannot be offloaded: its caller would wait forever",
            );
        } else if let Some(found) = borrow(ty, mode) {
            errors.at(&found, borrowed_result(&found, mode));
        }
    }
    if mode == Mode::Process {
        process(item, owner, errors);
    }
}

/// The most arguments a process-mode call sends: serde implements its traits for tuples of up
/// to 16 elements.
const MAX_SENT: usize = 16;

/// What only process mode rejects: whatever a worker, looking the function up by name, could
/// not decode into one concrete type.
fn process(item: &ItemFn, owner: &Owner, errors: &mut Errors) {
    let sig = &item.sig;
    if let Some(param) = sig.generics.params.first() {
        errors.at(
            param,
            "a generic fn cannot run in a worker process: the worker looks functions up by name \
             and needs one concrete signature. Write a non-generic fn for each type you need, or \
             use #[offload(thread)]",
        );
    }
    if let Some(extra) = sig.inputs.iter().nth(MAX_SENT) {
        errors.at(
            extra,
            format!(
                "a process-mode function takes at most {MAX_SENT} arguments, `self` included: \
                 they cross to the worker as one tuple, and serde encodes tuples of up to \
                 {MAX_SENT}. Gather them in a struct that derives `Serialize` and `Deserialize`"
            ),
        );
    }
    if let Owner::Impl(block) = owner {
        if let Some(param) = block.generics.params.first() {
            errors.at(
                param,
                format!(
                    "`{}` cannot run in a worker process while this `impl` block is generic: the \
                     worker needs one concrete type. Move the method to an `impl` block for a \
                     concrete type, or use #[offload(thread)]",
                    sig.ident
                ),
            );
        }
    }
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input {
            if let Some(found) = impl_trait(&arg.ty) {
                errors.at(
                    found,
                    "an `impl Trait` argument cannot be sent to a worker process: the worker must \
                     know the concrete type to decode it. Name the concrete type, or use \
                     #[offload(thread)]",
                );
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some(found) = impl_trait(ty) {
            errors.at(
                found,
                "an `impl Trait` result cannot come back from a worker process: the caller must \
                 know the concrete type to decode it. Name the concrete type, or use \
                 #[offload(thread)]",
            );
        }
    }
}

fn borrowed_argument(found: &Borrowed, mode: Mode) -> String {
    let reference = match found {
        Borrowed::Reference(reference) => reference,
        Borrowed::Lifetime(lifetime) => {
            return match mode {
                Mode::Thread => format!(
                    "`{lifetime}` lets the argument borrow from the caller, but the body runs on \
                     another thread, which may outlive the borrow; use an owned type, or `'static`"
                ),
                Mode::Process => format!(
                    "`{lifetime}` lets the argument borrow from the caller, but a worker process \
                     decodes its own copy of each argument; use an owned type"
                ),
            };
        }
    };
    let shown = show(reference);
    let owned = owned(&reference.elem);
    match mode {
        // What the body changes must come back: an `Arc` would not let it.
        Mode::Thread if reference.mutability.is_some() => format!(
            "`{shown}` borrows from the caller, but the body runs on another thread, which may \
             outlive the borrow; take `{owned}` and return it, changed, with the result"
        ),
        Mode::Process if reference.mutability.is_some() => format!(
            "`{shown}` cannot be sent to a worker process: the worker decodes its own copy of each \
             argument, and changes to it stay there; take `{owned}` and return it, changed, with \
             the result"
        ),
        Mode::Thread => format!(
            "`{shown}` borrows from the caller, but the body runs on another thread, which may \
             outlive the borrow; take `{owned}` instead (or `Arc<{}>` to share one value)",
            show(&reference.elem)
        ),
        Mode::Process => format!(
            "`{shown}` cannot be sent to a worker process: the worker decodes its own copy of each \
             argument, into memory it owns; take `{owned}` instead"
        ),
    }
}

fn borrowed_result(found: &Borrowed, mode: Mode) -> String {
    let (shown, owned) = match found {
        Borrowed::Reference(reference) => (show(reference), owned(&reference.elem)),
        Borrowed::Lifetime(lifetime) => (lifetime.to_string(), "an owned type".to_owned()),
    };
    match mode {
        Mode::Thread => format!(
            "the result cannot borrow through `{shown}`: the body runs on another thread, and \
             its arguments are gone when it returns; return `{owned}` instead, or a `&'static` \
             reference"
        ),
        Mode::Process => format!(
            "`{shown}` cannot come back from a worker process: the caller decodes its own copy of \
             the result, into memory it owns; return `{owned}` instead"
        ),
    }
}

/// The owned type to suggest for `&elem`.
fn owned(elem: &Type) -> String {
    match elem {
        Type::Slice(slice) => format!("Vec<{}>", show(&slice.elem)),
        Type::TraitObject(_) => format!("Box<{}>", show(elem)),
        Type::Path(path) if path.qself.is_none() => {
            let last = path
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            match last.as_str() {
                "str" => "String".to_owned(),
                "Path" => "PathBuf".to_owned(),
                "OsStr" => "OsString".to_owned(),
                "CStr" => "CString".to_owned(),
                _ => show(elem),
            }
        }
        _ => show(elem),
    }
}

/// A borrow the body could outlive.
enum Borrowed<'a> {
    Reference(&'a TypeReference),
    Lifetime(&'a syn::Lifetime),
}

impl ToTokens for Borrowed<'_> {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        match self {
            Borrowed::Reference(reference) => reference.to_tokens(tokens),
            Borrowed::Lifetime(lifetime) => lifetime.to_tokens(tokens),
        }
    }
}

/// The first borrow in `ty` that the body could outlive: any reference or non-`'static`
/// lifetime. In thread mode a `&'static` reference is fine; in process mode no reference is,
/// since a worker cannot decode into memory that lives forever.
fn borrow(ty: &Type, mode: Mode) -> Option<Borrowed<'_>> {
    struct Find<'ast> {
        mode: Mode,
        found: Option<Borrowed<'ast>>,
    }
    impl<'ast> Visit<'ast> for Find<'ast> {
        fn visit_type_reference(&mut self, reference: &'ast TypeReference) {
            let is_static = reference
                .lifetime
                .as_ref()
                .is_some_and(|l| l.ident == "static");
            if self.found.is_none() && (self.mode == Mode::Process || !is_static) {
                self.found = Some(Borrowed::Reference(reference));
            }
            self.visit_type(&reference.elem);
        }

        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if self.found.is_none() && lifetime.ident != "static" {
                self.found = Some(Borrowed::Lifetime(lifetime));
            }
        }
    }
    let mut finder = Find { mode, found: None };
    finder.visit_type(ty);
    finder.found
}

pub fn impl_trait(ty: &Type) -> Option<&syn::TypeImplTrait> {
    struct Find<'ast>(Option<&'ast syn::TypeImplTrait>);
    impl<'ast> Visit<'ast> for Find<'ast> {
        fn visit_type_impl_trait(&mut self, ty: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(ty);
        }
    }
    let mut finder = Find(None);
    finder.visit_type(ty);
    finder.0
}

/// Where a function shows it is a method: a receiver, or `Self` in its signature or its body
/// (not in items nested in the body, which may have a `Self` of their own).
fn names_self(item: &ItemFn) -> Option<Span> {
    struct Find(Option<Span>);
    impl Visit<'_> for Find {
        fn visit_item(&mut self, _: &syn::Item) {}

        fn visit_receiver(&mut self, receiver: &syn::Receiver) {
            self.0.get_or_insert(receiver.self_token.span);
        }

        fn visit_path(&mut self, path: &syn::Path) {
            match path.segments.first() {
                Some(first) if first.ident == "Self" => {
                    self.0.get_or_insert(first.ident.span());
                }
                _ => syn::visit::visit_path(self, path),
            }
        }
    }
    let mut finder = Find(None);
    finder.visit_signature(&item.sig);
    finder.visit_block(&item.block);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors_of(mode: Mode, item: ItemFn) -> Vec<String> {
        let mut errors = Errors::default();
        function(&item, mode, &Owner::Module, &mut errors);
        errors.messages()
    }

    #[test]
    fn borrowed_arguments_suggest_the_owned_type() {
        let errors = errors_of(
            Mode::Thread,
            parse_quote!(
                fn f(a: &str, b: &[u8], c: &'static str) {}
            ),
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("take `String` instead"), "{errors:?}");
        assert!(errors[1].contains("take `Vec<u8>` instead"), "{errors:?}");
        let errors = errors_of(
            Mode::Process,
            parse_quote!(
                fn f(a: &'static std::path::Path, b: Cow<'static, str>) {}
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("take `PathBuf` instead"), "{errors:?}");
        let errors = errors_of(
            Mode::Thread,
            parse_quote!(
                fn f(a: Cow<'a, str>) {}
            ),
        );
        assert!(
            errors[0].contains("`'a` lets the argument borrow"),
            "{errors:?}"
        );
    }

    #[test]
    fn methods_need_their_impl_block() {
        assert!(errors_of(
            Mode::Thread,
            parse_quote!(
                fn f(self) {}
            )
        )[0]
        .contains("#[offload] on its `impl` block"));
        assert!(errors_of(
            Mode::Thread,
            parse_quote!(
                fn new() -> Self {}
            )
        )[0]
        .contains("#[offload] on its `impl` block"));
        assert!(errors_of(
            Mode::Thread,
            parse_quote!(
                fn new() -> u8 {}
            )
        )
        .is_empty());
        assert!(errors_of(
            Mode::Process,
            parse_quote!(
                fn one() -> u8 {
                    Self::ONE
                }
            )
        )[0]
        .contains("#[offload] on its `impl` block"));
        // A `Self` of an item nested in the body is that item's.
        assert!(errors_of(
            Mode::Thread,
            parse_quote!(
                fn make() -> u8 {
                    struct Seven;
                    impl Seven {
                        fn get() -> u8 {
                            Self::VALUE
                        }
                        const VALUE: u8 = 7;
                    }
                    Seven::get()
                }
            )
        )
        .is_empty());
    }

    #[test]
    fn process_mode_needs_concrete_owned_types() {
        let errors = errors_of(
            Mode::Process,
            parse_quote!(
                fn f<T>(a: impl Copy, b: T) -> impl Copy {}
            ),
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors_of(
            Mode::Thread,
            parse_quote!(
                fn f<T>(a: impl Copy, b: T) -> impl Copy {}
            )
        )
        .is_empty());
    }

    #[test]
    fn process_mode_sends_at_most_sixteen_values() {
        let mut item: ItemFn = parse_quote!(
            fn f() {}
        );
        for i in 0..MAX_SENT {
            let name = quote::format_ident!("a{}", i);
            item.sig.inputs.push(parse_quote!(#name: u8));
        }
        assert!(errors_of(Mode::Process, item.clone()).is_empty());
        item.sig.inputs.push(parse_quote!(extra: u8));
        let errors = errors_of(Mode::Process, item.clone());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("at most 16 arguments"), "{errors:?}");
        assert!(errors_of(Mode::Thread, item).is_empty());
    }
}
