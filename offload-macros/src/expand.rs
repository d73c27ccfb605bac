//! Generating the async wrapper and the blocking companion of an `#[offload]` function, for a
//! free function or for each offloaded method of an `#[offload]` impl block.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    parse_quote, parse_quote_spanned, Attribute, FnArg, FnModifiers, GenericParam, ImplItem, Item,
    ItemFn, ItemImpl, Meta, Pat, Path, ReceiverKind, ReturnType, Safety, Token, Type,
    TypeParamBound,
};

use crate::args::{self, Mode, Options};
use crate::check;
use crate::errors::Errors;
use crate::item::{receiver_type, Owner};
use crate::show::show;
use crate::source;

pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(mut item)) => {
            if let Some(block) = source::unmarked_impl(&item).filter(|block| block.is_trait) {
                // Left as it is: a wrapper would add rustc's errors about the trait to ours.
                errors.push(Span::call_site(), block.mistake(&item.sig.ident));
                return quote!(#item #errors);
            }
            let options = args::parse(args, Span::call_site(), &mut errors);
            while let Some(index) = item.attrs.iter().position(is_offload) {
                let again = item.attrs.remove(index);
                errors.at(
                    again,
                    "#[offload(...)] is given twice: keep one, with all its options",
                );
            }
            let (output, beside) = function(&options, item, &Owner::Module, &mut errors);
            quote!(#output #beside #errors)
        }
        Ok(Item::Impl(block)) => impl_block(args, block),
        _ if syn::parse2::<syn::TraitItemFn>(item.clone()).is_ok_and(|f| f.default.is_none()) => {
            errors.push(Span::call_site(), check::TRAIT_METHOD);
            quote!(#item #errors)
        }
        _ => {
            errors.push(
                Span::call_site(),
                "#[offload(...)] goes on a `fn` with a body, the blocking function to run off the \
                 event loop (or, as plain #[offload], on an `impl` block whose methods it marks)",
            );
            quote!(#item #errors)
        }
    }
}

// Input:
//     #[offload]
//     impl Matrix {
//         #[offload(process)] pub fn det(self) -> f64 { … }
//         pub fn rows(&self) -> usize { … }
//     }
// Output:
//     impl Matrix {
//         pub async fn det(self) -> Result<f64, offload::Error> {
//             assert_transferable::<Self>(); assert_transferable::<f64>();
//             __OFFLOAD_MATRIX__DET.call((self,)).await
//         }
//         pub fn det_blocking(self) -> f64 { … }
//         pub fn rows(&self) -> usize { … }
//     }
//     static __OFFLOAD_MATRIX__DET: Process<(Matrix,), f64> = Process::new(Remote::new(concat!(module_path!(), "::Matrix::det"), …));
//     inventory::submit! {
//         __OFFLOAD_MATRIX__DET.registration(|args, out| __OFFLOAD_MATRIX__DET.invoke(args, out, |(__offload_self,): (Matrix,)| Matrix::det_blocking(__offload_self)))
//     }
//
// A method's expansion must name the type it belongs to (the registration is a static, which
// cannot say `Self`), and only the attribute on the block can see it. Thread mode needs no
// name: its wrapper calls `Self::det_blocking`.
fn impl_block(args: TokenStream, mut block: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let krate = args::parse_impl(args, &mut errors);
    let items = std::mem::take(&mut block.items);
    if let Some((path, _)) = &block.trait_ {
        errors.at(
            path,
            "#[offload] goes on an inherent `impl` block: a trait fixes its methods' signatures, \
             and an offloaded method becomes an `async fn` returning `Result<_, offload::Error>`. \
             Offload a method of `impl Type { … }` and call it from the trait's method",
        );
        block.items = items
            .into_iter()
            .map(|mut item| {
                without_offload(&mut item);
                item
            })
            .collect();
        return quote!(#block #errors);
    }
    let mut expanded = Vec::new();
    let mut outside = TokenStream::new();
    for mut item in items {
        let Some(attr) = without_offload(&mut item) else {
            expanded.push(item);
            continue;
        };
        while let Some(again) = without_offload(&mut item) {
            errors.at(
                again,
                "#[offload(...)] is given twice: keep one, with all its options",
            );
        }
        let ImplItem::Fn(method) = item else {
            errors.at(&attr, "#[offload(...)] goes on a method with a body");
            expanded.push(item);
            continue;
        };
        let span = attr.span();
        let args = match attr.meta {
            Meta::List(list) => list.tokens,
            _ => TokenStream::new(),
        };
        let mut method_errors = Errors::default();
        let mut options = args::parse(args, span, &mut method_errors);
        options.krate = options.krate.or_else(|| krate.clone());
        if let Some(token) = method.modifiers.defaultness {
            method_errors.push(token.span, "a `default fn` cannot be offloaded");
        }
        let item = ItemFn {
            attrs: method.attrs,
            vis: method.vis,
            modifiers: FnModifiers::default(),
            sig: method.sig,
            block: Box::new(method.block),
        };
        let (items, registration) =
            function(&options, item, &Owner::Impl(&block), &mut method_errors);
        expanded.push(ImplItem::Verbatim(items));
        outside.extend(registration);
        errors.add_all(method_errors);
    }
    block.items = expanded;
    quote!(#block #outside #errors)
}

/// Removes the `#[offload(...)]` attribute of an item in an `impl` block and returns it.
fn without_offload(item: &mut ImplItem) -> Option<Attribute> {
    let attrs = match item {
        ImplItem::Fn(item) => &mut item.attrs,
        ImplItem::Const(item) => &mut item.attrs,
        ImplItem::Type(item) => &mut item.attrs,
        ImplItem::Macro(item) => &mut item.attrs,
        _ => return None,
    };
    let index = attrs.iter().position(is_offload)?;
    Some(attrs.remove(index))
}

/// `#[offload(...)]`, however its path is written.
pub fn is_offload(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "offload")
}

// Input:
//     /// Docs.
//     #[other]
//     pub fn add(a: u64, b: u64) -> u64 { a + b }
// Output:
//     /// Docs.
//     pub async fn add(a: u64, b: u64) -> Result<u64, offload::Error> {
//         static __OFFLOAD_FN: Process<(u64, u64), u64> = Process::new(Remote::new(concat!(module_path!(), "::add"), fingerprint("(u64, u64) -> u64")));
//         inventory::submit! {
//             __OFFLOAD_FN.registration(|args, out| __OFFLOAD_FN.invoke(args, out, |(a, b): (u64, u64)| add_blocking(a, b)))
//         }
//         assert_transferable::<u64>(); // once for each type of argument and result
//         __OFFLOAD_FN.call((a, b)).await
//     }
//     /// The body of `add`, …
//     #[other]
//     pub fn add_blocking(a: u64, b: u64) -> u64 { a + b }
//     pub fn add_map<I>(inputs: I) -> offload::Map<u64> … // see `map_function`
//
// Thread mode has a `Local` in the wrapper and no registration:
// `static __OFFLOAD_FN: Local = …; call_in_thread(&__OFFLOAD_FN, move || { add_blocking(a, b) }).await`.
// After an error the wrapper's body is a stub: callers still see the right signature, so one
// mistake does not cascade into every call site.
//
// Returns the items that replace the function, and, for a process-mode method, the static and
// registration to put beside its block.
fn function(
    options: &Options,
    item: ItemFn,
    owner: &Owner,
    errors: &mut Errors,
) -> (TokenStream, TokenStream) {
    check::function(&item, options.mode, owner, errors);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = item;
    if !errors.is_empty() && sig.ident == "main" {
        // An async `main` would only add rustc's own error to ours.
        return (quote!(#(#attrs)* #vis #sig #block), TokenStream::new());
    }
    let krate: Path = options
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::offload));
    let (mut wrapper_attrs, companion_attrs) = split(attrs);
    let ident = &sig.ident;
    let companion = Ident::new(&format!("{ident}_blocking"), ident.span());

    let value: Type = match &sig.output {
        ReturnType::Default => parse_quote!(()),
        // Already an error; `Result<!, _>` would add rustc's "`!` is experimental" to it.
        ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)) => {
            parse_quote!(::core::convert::Infallible)
        }
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let mut wrapper = sig.clone();
    wrapper.asyncness = Some(Token![async](sig.fn_token.span));
    wrapper.constness = None;
    wrapper.safety = Safety::Default;
    wrapper.abi = None;
    wrapper.output = parse_quote!(-> ::core::result::Result<#value, #krate::Error>);

    // The wrapper forwards its arguments by name; patterns stay in the companion.
    let mut receiver = None;
    let mut forwarded = Vec::new();
    let mut types = Vec::new();
    for (index, input) in wrapper.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(this) => {
                if matches!(this.kind, ReceiverKind::Value) {
                    this.mutability = None;
                }
                this.attrs.clear();
                receiver = Some(this.clone());
            }
            FnArg::Typed(arg) => {
                // `_name` is forwarded under a name of ours too: using it would be clippy's
                // `used_underscore_binding`.
                let name = match &*arg.pat {
                    Pat::Ident(pat)
                        if pat.subpat.is_none() && !pat.ident.to_string().starts_with('_') =>
                    {
                        pat.ident.clone()
                    }
                    _ => format_ident!("__offload_arg{}", index),
                };
                *arg.pat = parse_quote!(#name);
                arg.attrs.clear();
                forwarded.push(name);
                types.push((*arg.ty).clone());
            }
        }
    }
    if options.mode == Mode::Thread {
        require_send(&mut wrapper, owner);
    }

    let turbofish = turbofish(&sig.generics);
    let mut args: Vec<TokenStream> = forwarded.iter().map(ToTokens::to_token_stream).collect();
    if receiver.is_some() {
        args.insert(0, quote!(self));
    }
    let companion_path = match owner {
        Owner::Module => {
            // Spanned at the attribute: in an `impl` block without #[offload], rustc's "not
            // found in this scope" then points there, not into the user's signature.
            let companion = Ident::new(&companion.to_string(), Span::call_site());
            quote!(#companion #turbofish)
        }
        Owner::Impl(_) => quote!(Self::#companion #turbofish),
    };
    let call = Call {
        path: companion_path.clone(),
        args,
        close: None,
    };

    let mut beside = TokenStream::new();
    let mut statik = TokenStream::new();
    let body = if !errors.is_empty() {
        wrapper_attrs.push(parse_quote!(#[allow(unused_variables)]));
        stub(&sig.output, &call)
    } else {
        let function = Function {
            private: quote!(#krate::__private),
            name: registry_name(options, owner, ident),
            settings: settings(options),
            sig: &sig,
            companion: &companion,
            call,
        };
        match options.mode {
            Mode::Thread => function.thread(),
            Mode::Process => {
                let parts = function.process(
                    owner,
                    receiver.as_ref(),
                    &forwarded,
                    &types,
                    &value,
                    &wrapper_attrs,
                );
                beside = parts.beside;
                statik = parts.statik;
                parts.body
            }
        }
    };

    // The companion's docs are the function's, after a line that says what it is; without docs
    // it gets none, since clippy's doc lints would then judge docs the user never wrote.
    let docs: Vec<&Attribute> = wrapper_attrs
        .iter()
        .filter(|attr| is_doc_text(attr))
        .collect();
    let companion_docs = if docs.is_empty() {
        TokenStream::new()
    } else {
        let intro = format!(
            " The body of `{ident}`, run on the calling thread and blocking it until done: for \
             synchronous callers and unit tests."
        );
        quote!(#[doc = #intro] #[doc = ""] #(#docs)*)
    };
    // Offloading needs owned arguments, even where the body only borrows them.
    let allow_owned =
        (!forwarded.is_empty()).then(|| quote!(#[allow(clippy::needless_pass_by_value)]));
    // A map over inputs, for free functions; unused, it is no warning.
    let map = if matches!(owner, Owner::Module) && errors.is_empty() {
        let parts = MapParts {
            vis: &vis,
            attrs: &wrapper_attrs,
            generics: &wrapper.generics,
            name: registry_name(options, owner, ident),
            settings: settings(options),
            companion: companion_path,
            statik,
        };
        map_function(&krate, options, &parts, &sig, &types, &value)
    } else {
        TokenStream::new()
    };
    let mut companion_sig = sig;
    companion_sig.ident = companion;
    let items = quote! {
        #(#wrapper_attrs)*
        #vis #wrapper {
            #body
        }

        #companion_docs
        #allow_owned
        #(#companion_attrs)*
        #vis #companion_sig #block

        #map
    };
    (items, beside)
}

// Input:
//     #[offload(process)] pub fn add(a: u64, b: u64) -> u64 { a + b }
// Output, beside the wrapper and the companion:
//     pub fn add_map<I>(inputs: I) -> offload::Map<u64>
//     where I: IntoIterator<Item = (u64, u64)>, I::IntoIter: Send + 'static {
//         __OFFLOAD_ADD.map(inputs)
//     }
// A function with one argument takes its inputs bare, `Item = u64`, each mapped to the tuple
// of one that the worker decodes: `|x| (x,)`. A `Vec<u8>` argument is wrapped in `Bytes` there,
// as the wrapper sends it: `|(x, y)| (Bytes(x), y)`.
//
// Thread mode runs the companion on the pool's threads, with the function's generics:
//     pub fn add_map<I>(inputs: I) -> offload::Map<u64>
//     where I: IntoIterator<Item = (u64, u64)>, I::IntoIter: Send + 'static,
//           for<'__offload> (u64, u64): Send + 'static, for<'__offload> u64: Send + 'static {
//         static __OFFLOAD_FN: Local = Local::new(…);
//         map_in_thread(&__OFFLOAD_FN, inputs, |(a, b)| add_blocking(a, b))
//     }
// Its `Send` bounds are higher-ranked so that rustc checks them where the map is called, not
// here: a type that is not `Send` is then reported once, at the wrapper's parameter, as it
// would be without the map. A function with an `impl Trait` argument or result gets no map:
// the bound could not name the type.
fn map_function(
    krate: &Path,
    options: &Options,
    map: &MapParts,
    sig: &syn::Signature,
    types: &[Type],
    value: &Type,
) -> TokenStream {
    let private = quote!(#krate::__private);
    let ident = &sig.ident;
    let name = Ident::new(&format!("{ident}_map"), ident.span());
    let names: Vec<TokenStream> = (0..types.len())
        .map(|i| format_ident!("__offload_arg{}", i).to_token_stream())
        .collect();
    let (item, pattern) = match types {
        [ty] => (ty.to_token_stream(), names[0].clone()),
        _ => (tuple(types), tuple(&names)),
    };
    let attrs = map.attrs.iter().filter(|attr| !attr.path().is_ident("doc"));
    let (pool, how) = match options.mode {
        Mode::Process => ("process", "several calls to a message"),
        Mode::Thread => ("thread", "several at once"),
    };
    let docs = map.attrs.iter().any(is_doc_text).then(|| {
        let text = format!(
            " Runs `{ident}` once per input on its {pool} pool, {how}; results come as they \
             complete, with the index of their input."
        );
        quote!(#[doc = #text])
    });
    let vis = map.vis;
    let (generics, inputs, bounds, body) = match options.mode {
        Mode::Process => {
            let statik = &map.statik;
            let inputs = if types.len() == 1 || types.iter().any(is_byte_vec) {
                let sent = wire_tuple(&private, &names, types);
                quote!(::core::iter::Iterator::map(::core::iter::IntoIterator::into_iter(inputs), |#pattern| #sent))
            } else {
                quote!(inputs)
            };
            let inputs_ty = Ident::new("I", Span::call_site());
            (
                syn::Generics::default(),
                inputs_ty,
                TokenStream::new(),
                quote!(#statik __OFFLOAD_FN.map(#inputs)),
            )
        }
        Mode::Thread => {
            if types
                .iter()
                .chain([value])
                .any(|ty| check::impl_trait(ty).is_some())
            {
                return TokenStream::new();
            }
            let generics = map.generics.clone();
            // A name of the user's own generics is not taken.
            let inputs_ty = if generics.type_params().any(|param| param.ident == "I") {
                Ident::new("__OffloadInputs", Span::call_site())
            } else {
                Ident::new("I", Span::call_site())
            };
            let (local, settings) = (&map.name, &map.settings);
            let companion = &map.companion;
            let call = Call {
                path: quote!(#companion),
                args: names.clone(),
                close: None,
            };
            // A bare type parameter already has `Send + 'static` among its bounds, and a second
            // place for them would be clippy's `multiple_bound_locations`.
            let bare = |ty: &TokenStream| {
                generics
                    .type_params()
                    .any(|param| param.ident == ty.to_string())
            };
            let value = value.to_token_stream();
            let bounds: TokenStream = [&item, &value]
                .into_iter()
                .filter(|ty| !bare(ty))
                .map(|ty| quote!(for<'__offload> #ty: ::core::marker::Send + 'static,))
                .collect();
            let body = quote! {
                static __OFFLOAD_FN: #private::Local = #private::Local::new(#local)#settings;
                #private::map_in_thread(&__OFFLOAD_FN, inputs, |#pattern| #call)
            };
            (generics, inputs_ty, bounds, body)
        }
    };
    let params = generics.params.iter();
    let predicates = generics
        .where_clause
        .iter()
        .flat_map(|clause| clause.predicates.iter());
    quote! {
        #docs
        #(#attrs)*
        #[allow(dead_code)]
        #vis fn #name<#(#params,)* #inputs>(inputs: #inputs) -> #krate::Map<#value>
        where
            #(#predicates,)*
            #inputs: ::core::iter::IntoIterator<Item = #item>,
            <#inputs as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
            #bounds
        {
            #body
        }
    }
}

/// What a map takes from the function beside its types: the wrapper's visibility, attributes
/// and generics (bounded `Send + 'static` in thread mode), and, for thread mode, the registry
/// name, the settings and the path of the companion with its turbofish.
struct MapParts<'a> {
    vis: &'a syn::Visibility,
    attrs: &'a [Attribute],
    generics: &'a syn::Generics,
    name: TokenStream,
    settings: TokenStream,
    companion: TokenStream,
    /// A process-mode function's static, `__OFFLOAD_FN`, which the map declares again.
    statik: TokenStream,
}

/// The call of the companion: `add_blocking(a, b)` or `Self::add_blocking(self, a)`.
struct Call {
    path: TokenStream,
    args: Vec<TokenStream>,
    /// The span of the parentheses, which ends the call's span.
    close: Option<Span>,
}

impl ToTokens for Call {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let args = &self.args;
        let mut group = Group::new(Delimiter::Parenthesis, quote!(#(#args),*));
        if let Some(span) = self.close {
            group.set_span(span);
        }
        self.path.to_tokens(tokens);
        group.to_tokens(tokens);
    }
}

/// What the body of a wrapper is made of.
struct Function<'a> {
    private: TokenStream,
    name: TokenStream,
    settings: TokenStream,
    sig: &'a syn::Signature,
    companion: &'a Ident,
    call: Call,
}

impl Function<'_> {
    fn thread(self) -> TokenStream {
        let Function {
            private,
            name,
            settings,
            sig,
            companion: _,
            call,
        } = self;
        // Spanned so that a type that is not `Send` is reported at the parameters or at the
        // result type, not at the attribute: the closure spans the parameters, and the call of
        // `call_in_thread`, which demands a `Send` result, spans the result type.
        let mut closure = quote!(move ||);
        let mut body = Group::new(Delimiter::Brace, call.to_token_stream());
        if let Some((first, last)) = bounds(&sig.inputs) {
            closure = quote_spanned!(first=> move ||);
            body.set_span(last);
        }
        let mut call_in_thread = quote!(#private::call_in_thread);
        let mut args = Group::new(
            Delimiter::Parenthesis,
            quote!(&__OFFLOAD_FN, #closure #body),
        );
        let mut wait = quote!(.await);
        if let ReturnType::Type(_, ty) = &sig.output {
            // One span for the call and its `.await`, which both demand it: rustc then reports
            // the demand once.
            let span = first_span(ty);
            call_in_thread = spanned(call_in_thread, span);
            args.set_span(span);
            wait = spanned(wait, span);
        }
        quote! {
            static __OFFLOAD_FN: #private::Local = #private::Local::new(#name)#settings;
            #call_in_thread #args #wait
        }
    }

    fn process(
        self,
        owner: &Owner,
        receiver: Option<&syn::Receiver>,
        forwarded: &[Ident],
        types: &[Type],
        value: &Type,
        attrs: &[Attribute],
    ) -> ProcessParts {
        let Function {
            private,
            name,
            settings,
            sig,
            companion,
            call,
        } = self;
        let checks = transfer_checks(&private, receiver, types, sig, value);
        // A free function's static and registration go in its wrapper's body: in an `impl`
        // block without #[offload], the only error is then the companion's name, not found.
        // A method's go beside the block: an `impl` block cannot hold them, and there clippy's
        // `unsafe_derive_deserialize` would take the `unsafe` inside `inventory::submit!` for
        // the type's own.
        let function = match owner {
            Owner::Module => format_ident!("__OFFLOAD_FN"),
            Owner::Impl(block) => static_name(block, &sig.ident),
        };
        // The static is typed by what crosses: its `call`, `map` and `invoke` exist only where
        // all of it can, and otherwise resolve to stubs that report nothing, so that a type
        // without serde's traits is reported once, by `assert_transferable` at the user's type.
        let sent = wire_tuple(&private, &call.args, types);
        let remote_call = if is_byte_vec(value) {
            quote!(#function.call(#sent).await.map(|bytes: #private::Bytes| bytes.0))
        } else {
            quote!(#function.call(#sent).await)
        };

        // The registration is a static, which cannot say `Self`: it names the impl's type.
        let mut names: Vec<Ident> = forwarded.to_vec();
        let mut types: Vec<Type> = types.to_vec();
        let mut value = value.clone();
        let path = match owner {
            Owner::Module => call.path,
            Owner::Impl(block) => {
                if let Some(receiver) = receiver {
                    types.insert(0, receiver_type(receiver));
                    names.insert(0, format_ident!("__offload_self"));
                }
                let mut concrete = ConcreteSelf(&block.self_ty);
                types.iter_mut().for_each(|ty| concrete.visit_type_mut(ty));
                concrete.visit_type_mut(&mut value);
                match &*block.self_ty {
                    Type::Path(path)
                        if path.qself.is_none()
                            && path.path.segments.iter().all(|s| s.arguments.is_none()) =>
                    {
                        quote!(#path::#companion)
                    }
                    self_ty => quote!(<#self_ty>::#companion),
                }
            }
        };
        let fingerprint = fingerprint(&types, &value);
        let unwrapped = names.iter().zip(&types).map(|(name, ty)| {
            if is_byte_vec(ty) {
                quote!(#name.0)
            } else {
                name.to_token_stream()
            }
        });
        let mut run = quote!(#path(#(#unwrapped),*));
        let mut returned = value.to_token_stream();
        if is_byte_vec(&value) {
            run = quote!(#private::Bytes(#run));
            returned = quote!(#private::Bytes);
        }
        let wire_types = types.iter().map(|ty| {
            if is_byte_vec(ty) {
                quote!(#private::Bytes)
            } else {
                ty.to_token_stream()
            }
        });
        let (pattern, tuple_type) = (tuple(&names), tuple(wire_types));
        let statik = quote! {
            static #function: #private::Process<#tuple_type, #returned> = #private::Process::new(
                #private::Remote::new(#name, #private::fingerprint(#fingerprint))#settings
            );
        };
        let submit = quote! {
            #private::inventory::submit! {
                #function.registration(|args, out| #function.invoke(args, out, |#pattern: #tuple_type| #run))
            }
        };
        let cfgs: Vec<&Attribute> = attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        // The registration calls the companion, which a deprecated function shares.
        let submit = if attrs.iter().any(|attr| attr.path().is_ident("deprecated")) {
            quote!(#[allow(deprecated)] const _: () = { #submit };)
        } else {
            submit
        };
        match owner {
            Owner::Module => ProcessParts {
                body: quote!(#statik #submit #(#checks)* #remote_call),
                beside: TokenStream::new(),
                statik,
            },
            Owner::Impl(_) => ProcessParts {
                body: quote!(#(#checks)* #remote_call),
                beside: quote!(#(#cfgs)* #statik #(#cfgs)* #submit),
                statik,
            },
        }
    }
}

/// A process-mode wrapper's body, the items to put beside its `impl` block (for a method), and
/// the declaration of its static, which `f_map` repeats.
struct ProcessParts {
    body: TokenStream,
    beside: TokenStream,
    statik: TokenStream,
}

/// `assert_transferable::<T>();` for each type that crosses, spanned at it, so that a type
/// without serde's traits is reported where the user wrote it, before rustc's own errors about
/// the generic calls that send it.
fn transfer_checks(
    private: &TokenStream,
    receiver: Option<&syn::Receiver>,
    types: &[Type],
    sig: &syn::Signature,
    value: &Type,
) -> Vec<TokenStream> {
    let mut crossing: Vec<(Type, Span)> = Vec::new();
    if let Some(receiver) = receiver {
        crossing.push((receiver_type(receiver), receiver.self_token.span));
    }
    crossing.extend(types.iter().map(|ty| (ty.clone(), first_span(ty))));
    if !matches!(sig.output, ReturnType::Default) {
        crossing.push((value.clone(), first_span(value)));
    }
    let mut checked = Vec::new();
    let mut checks = Vec::new();
    for (ty, span) in crossing {
        let text = show(&ty);
        if !checked.contains(&text) {
            checked.push(text);
            checks.push(quote_spanned!(span=> #private::assert_transferable::<#ty>();));
        }
    }
    checks
}

/// The static of a process-mode method, beside its block: `__OFFLOAD_MATRIX__DET` for
/// `Matrix::det`. Names in a module are unique and `__` stands for `::`, so two statics can
/// clash only for names that differ in case or non-ASCII letters alone, or that hold a `__` of
/// their own; rustc's naming lints already warn of most of those. (A free function's static is
/// `__OFFLOAD_FN`, in its wrapper's body.)
fn static_name(block: &ItemImpl, ident: &Ident) -> Ident {
    let upper = |text: String| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let ty = upper(show(&block.self_ty));
    let name = upper(ident.unraw().to_string());
    format_ident!("__OFFLOAD_{}__{}", ty.trim_matches('_'), name)
}

/// The body of a wrapper whose function has an error: it never runs, since the crate does not
/// compile, but it has to type-check without adding errors of its own.
fn stub(output: &ReturnType, call: &Call) -> TokenStream {
    let returns_impl_trait = match output {
        ReturnType::Type(_, ty) => check::impl_trait(ty).is_some(),
        ReturnType::Default => false,
    };
    if returns_impl_trait {
        // `unimplemented!()` gives an opaque result type nothing to be.
        quote!(::core::result::Result::Ok(#call))
    } else {
        quote!(::core::unimplemented!())
    }
}

fn registry_name(options: &Options, owner: &Owner, ident: &Ident) -> TokenStream {
    if let Some(name) = &options.name {
        return name.to_token_stream();
    }
    let suffix = match owner {
        Owner::Module => format!("::{ident}"),
        Owner::Impl(block) => format!("::{}::{ident}", type_name(&block.self_ty)),
    };
    quote!(::core::concat!(::core::module_path!(), #suffix))
}

/// `.pool("io").timeout_ms(5000)`: the builder calls that apply the options.
fn settings(options: &Options) -> TokenStream {
    let mut settings = TokenStream::new();
    if let Some(pool) = &options.pool {
        settings.extend(quote!(.pool(#pool)));
    }
    if let Some(ms) = options.timeout_ms {
        let ms = Literal::u64_unsuffixed(ms);
        settings.extend(quote!(.timeout_ms(#ms)));
    }
    if let Some(retries) = options.retries {
        let retries = Literal::u32_unsuffixed(retries);
        settings.extend(quote!(.retries(#retries)));
    }
    settings
}

/// The spans of the first and the last token of `tokens`.
fn bounds(tokens: &impl ToTokens) -> Option<(Span, Span)> {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens.next()?.span();
    Some((first, tokens.last().map_or(first, |last| last.span())))
}

fn first_span(tokens: &impl ToTokens) -> Span {
    bounds(tokens).map_or_else(Span::call_site, |(first, _)| first)
}

/// `tokens` with every token, at any depth, spanned at `span`.
fn spanned(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), spanned(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// Splits the user's attributes: doc comments go on the async wrapper, attributes about the body
/// go on the companion, and those that describe the item as a whole go on both.
fn split(attrs: Vec<Attribute>) -> (Vec<Attribute>, Vec<Attribute>) {
    const BOTH: &[&str] = &[
        "cfg",
        "cfg_attr",
        "allow",
        "warn",
        "deny",
        "forbid",
        "deprecated",
    ];
    let mut wrapper = Vec::new();
    let mut companion = Vec::new();
    for attr in attrs {
        let path = attr.path();
        if is_doc_text(&attr) {
            wrapper.push(attr);
        } else if path.is_ident("doc") || BOTH.iter().any(|name| path.is_ident(name)) {
            wrapper.push(attr.clone());
            companion.push(attr);
        } else {
            companion.push(attr);
        }
    }
    (wrapper, companion)
}

/// `/// text` or `#[doc = "text"]`, as opposed to `#[doc(hidden)]`.
fn is_doc_text(attr: &Attribute) -> bool {
    attr.path().is_ident("doc") && matches!(attr.meta, Meta::NameValue(_))
}

/// Adds `Send + 'static` to every type parameter and `impl Trait` argument of a thread-mode
/// wrapper, and to the parameters of its `impl` block that its signature uses: the body moves
/// its arguments to another thread and its result back. The bounds are spanned at the
/// parameter, where rustc's "required by this bound" then points.
fn require_send(wrapper: &mut syn::Signature, owner: &Owner) {
    fn send_static(span: Span) -> [TypeParamBound; 2] {
        [
            parse_quote_spanned!(span=> ::core::marker::Send),
            parse_quote_spanned!(span=> 'static),
        ]
    }
    if let Owner::Impl(block) = owner {
        let used = wrapper.to_token_stream().to_string();
        let uses_self = wrapper.receiver().is_some() || mentions(&used, "Self");
        for param in block.generics.type_params() {
            if uses_self || mentions(&used, &param.ident.to_string()) {
                let ident = &param.ident;
                let [send, forever] = send_static(ident.span());
                wrapper
                    .generics
                    .make_where_clause()
                    .predicates
                    .push(parse_quote_spanned!(ident.span()=> #ident: #send + #forever));
            }
        }
    }
    // Where the user bounds a parameter in the `where` clause, the bounds go there too: clippy's
    // `multiple_bound_locations` objects to bounds in both places.
    let generics = &mut wrapper.generics;
    for param in &mut generics.params {
        let GenericParam::Type(param) = param else {
            continue;
        };
        let bounds = send_static(param.ident.span());
        let in_where = generics.where_clause.as_mut().and_then(|clause| {
            clause
                .predicates
                .iter_mut()
                .find_map(|predicate| match predicate {
                    syn::WherePredicate::Type(predicate)
                        if is_param(&predicate.bounded_ty, &param.ident) =>
                    {
                        Some(predicate)
                    }
                    _ => None,
                })
        });
        match in_where {
            Some(predicate) => add_bounds(&mut predicate.bounds, &bounds),
            None => {
                add_bounds(&mut param.bounds, &bounds);
                param.colon_token.get_or_insert_with(Default::default);
            }
        }
    }
    struct ImplTrait;
    impl VisitMut for ImplTrait {
        fn visit_type_impl_trait_mut(&mut self, ty: &mut syn::TypeImplTrait) {
            add_bounds(&mut ty.bounds, &send_static(ty.impl_token.span));
        }
    }
    for input in &mut wrapper.inputs {
        if let FnArg::Typed(arg) = input {
            ImplTrait.visit_type_mut(&mut arg.ty);
        }
    }
}

fn is_param(ty: &Type, ident: &Ident) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident(ident))
}

/// Whether the identifier `ident` occurs in the printed tokens `text`.
fn mentions(text: &str, ident: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == ident)
}

fn add_bounds(
    bounds: &mut syn::punctuated::Punctuated<TypeParamBound, Token![+]>,
    extra: &[TypeParamBound],
) {
    let has = |bounds: &syn::punctuated::Punctuated<TypeParamBound, Token![+]>,
               wanted: &TypeParamBound| {
        bounds.iter().any(|bound| match (bound, wanted) {
            (TypeParamBound::Lifetime(a), TypeParamBound::Lifetime(b)) => a.ident == b.ident,
            (TypeParamBound::Trait(a), TypeParamBound::Trait(b)) => {
                a.path.segments.last().map(|s| &s.ident) == b.path.segments.last().map(|s| &s.ident)
            }
            _ => false,
        })
    };
    for bound in extra {
        if !has(bounds, bound) {
            bounds.push(bound.clone());
        }
    }
}

/// `::<T, N>` naming the function's type and const parameters, so that the call compiles even
/// where inference cannot find them; `impl Trait` arguments stay implicit.
fn turbofish(generics: &syn::Generics) -> TokenStream {
    let params: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => Some(&param.ident),
            GenericParam::Const(param) => Some(&param.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    if params.is_empty() {
        TokenStream::new()
    } else {
        quote!(::<#(#params),*>)
    }
}

/// Whether `ty` is written `Vec<u8>` (with or without a path to `Vec`).
fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Vec"
        && path.qself.is_none()
        && matches!(args.args.iter().collect::<Vec<_>>()[..], [syn::GenericArgument::Type(Type::Path(arg))] if arg.path.is_ident("u8"))
}

/// The tuple of arguments sent to a worker: `(a, b)`, with each argument written `Vec<u8>`
/// wrapped in `Bytes`, one byte string on the wire instead of one serde call per byte. `args`
/// may start with `self`, which `types` leaves out.
fn wire_tuple(private: &TokenStream, args: &[TokenStream], types: &[Type]) -> TokenStream {
    let (receiver, args) = args.split_at(args.len() - types.len());
    let args = args.iter().zip(types).map(|(arg, ty)| {
        if is_byte_vec(ty) {
            quote!(#private::Bytes(#arg))
        } else {
            arg.clone()
        }
    });
    tuple(receiver.iter().cloned().chain(args))
}

/// `(a, b)`, or `(a,)` for one.
fn tuple<T: ToTokens>(items: impl IntoIterator<Item = T>) -> TokenStream {
    let items: Vec<T> = items.into_iter().collect();
    match items.as_slice() {
        [item] => quote!((#item,)),
        items => quote!((#(#items),*)),
    }
}

/// Replaces `Self` with the impl's self type.
struct ConcreteSelf<'a>(&'a Type);

impl VisitMut for ConcreteSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        match ty {
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                *ty = self.0.clone()
            }
            _ => syn::visit_mut::visit_type_mut(self, ty),
        }
    }
}

/// The name of a self type in registry names: `Matrix` for `Matrix` or `Grid<u8>`.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .map_or_else(|| show(ty), |segment| segment.ident.to_string()),
        _ => show(ty),
    }
}

/// The text hashed into a function's fingerprint: its argument and return types as written.
fn fingerprint(types: &[Type], value: &Type) -> String {
    let args: Vec<String> = types.iter().map(show).collect();
    format!("({}) -> {}", args.join(", "), show(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the items in `tokens`, each with whether it is an `async fn`.
    fn items(tokens: TokenStream) -> Vec<(String, bool)> {
        let file: syn::File = syn::parse2(tokens).expect("items");
        let mut found = Vec::new();
        for item in file.items {
            match item {
                Item::Fn(f) => found.push((f.sig.ident.to_string(), f.sig.asyncness.is_some())),
                Item::Static(s) => found.push((s.ident.to_string(), false)),
                Item::Impl(block) => {
                    for item in block.items {
                        if let ImplItem::Fn(f) = item {
                            found.push((f.sig.ident.to_string(), f.sig.asyncness.is_some()));
                        }
                    }
                }
                Item::Macro(m)
                    if m.mac
                        .path
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "compile_error") =>
                {
                    found.push(("compile_error".to_owned(), false));
                }
                _ => {}
            }
        }
        found
    }

    #[test]
    fn a_mistake_still_emits_the_function_with_its_async_signature() {
        let output = offload(
            quote!(thread, colour = 1),
            quote!(
                fn f(a: u8) -> u8 {
                    a
                }
            ),
        );
        let found = items(output);
        assert!(found.contains(&("f".to_owned(), true)), "{found:?}");
        assert!(
            found.contains(&("f_blocking".to_owned(), false)),
            "{found:?}"
        );
        assert!(
            found.contains(&("compile_error".to_owned(), false)),
            "{found:?}"
        );
    }

    #[test]
    fn a_process_method_is_registered_beside_its_block() {
        let output = offload(
            quote!(),
            quote!(impl M { #[offload(process)] fn f(self) -> u8 { 1 } #[offload(thread)] fn g() {} }),
        );
        let found = items(output);
        let expected = [
            ("f", true),
            ("f_blocking", false),
            ("g", true),
            ("g_blocking", false),
            ("__OFFLOAD_M__F", false),
        ];
        assert_eq!(
            found,
            expected.map(|(name, asynchronous)| (name.to_owned(), asynchronous))
        );
    }

    #[test]
    fn thread_mode_adds_the_bounds_the_other_thread_needs() {
        let output = offload(
            quote!(thread),
            quote!(
                fn f<T: Clone>(a: T, b: impl Fn())
                where
                    T: Copy,
                {
                }
            ),
        );
        let text = output.to_string().replace(' ', "");
        assert!(
            text.contains("whereT:Copy+::core::marker::Send+'static"),
            "{text}"
        );
        assert!(
            text.contains("b:implFn()+::core::marker::Send+'static"),
            "{text}"
        );
        assert!(text.contains("f_blocking::<T>(a,b)"), "{text}");
    }
}
