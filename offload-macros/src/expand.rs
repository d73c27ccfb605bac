//! Generating the async wrapper and the blocking companion of an `#[offload]` function.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{parse_quote, Attribute, FnArg, ItemFn, Pat, Path, ReturnType, Type};

use crate::args::{self, Mode, Options};
use crate::{check, Errors};

pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = args::parse(args, &mut errors);
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(
                Span::call_site(),
                "#[offload] goes on a `fn` item: put it on the blocking function you want to run \
                 off the event loop",
            );
            return quote!(#item #errors);
        }
    };
    let Some(options) = options else {
        return quote!(#item #errors);
    };
    check::function(&item, options.mode, &mut errors);
    let output = expand(&options, item, !errors.is_empty());
    quote!(#output #errors)
}

// Input:
//     #[doc] #[other] pub fn add(a: u64, b: u64) -> u64 { a + b }
// Output:
//     #[doc] pub async fn add(a: u64, b: u64) -> Result<u64, offload::Error> {
//         static __OFFLOAD_FN: Remote = Remote::new(concat!(module_path!(), "::add"), fingerprint(..));
//         inventory::submit! { Registration::new(&__OFFLOAD_FN, |args, out| invoke(args, out, |(a, b)| add_blocking(a, b))) }
//         call_in_process(&__OFFLOAD_FN, (a, b)).await
//     }
//     #[other] pub fn add_blocking(a: u64, b: u64) -> u64 { a + b }
//
// Thread mode is the same with `Local` and `call_in_thread(&__OFFLOAD_FN, move || add_blocking(a, b))`.
// With `failed` set the wrapper's body is a stub, so one mistake does not cascade into its callers.
fn expand(options: &Options, item: ItemFn, failed: bool) -> TokenStream {
    let krate: Path = options.krate.clone().unwrap_or_else(|| parse_quote!(::offload));
    let private = quote!(#krate::__private);
    let ItemFn { attrs, vis, sig, block } = item;
    let (wrapper_attrs, companion_attrs) = split(attrs);
    let ident = &sig.ident;
    let companion = format_ident!("{}_blocking", ident);

    let mut wrapper = sig.clone();
    wrapper.asyncness = Some(Default::default());
    wrapper.constness = None;
    wrapper.unsafety = None;
    wrapper.abi = None;
    let value: Type = match &sig.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    wrapper.output = parse_quote!(-> ::core::result::Result<#value, #krate::Error>);
    let mut forwarded = Vec::new();
    let mut types = Vec::new();
    for (index, input) in wrapper.inputs.iter_mut().enumerate() {
        if let FnArg::Typed(arg) = input {
            let name = match &*arg.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => pat.ident.clone(),
                _ => format_ident!("__offload_arg{}", index),
            };
            arg.pat = Box::new(parse_quote!(#name));
            arg.attrs.clear();
            forwarded.push(name);
            types.push((*arg.ty).clone());
        }
    }
    let has_self = sig.receiver().is_some();
    let call_companion = if has_self {
        quote!(Self::#companion(self, #(#forwarded),*))
    } else {
        quote!(#companion(#(#forwarded),*))
    };

    let name = match &options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let suffix = format!("::{ident}");
            quote!(::core::concat!(::core::module_path!(), #suffix))
        }
    };
    let mut settings = TokenStream::new();
    if let Some(pool) = &options.pool {
        settings.extend(quote!(.pool(#pool)));
    }
    if let Some(ms) = options.timeout_ms {
        settings.extend(quote!(.timeout_ms(#ms)));
    }
    if let Some(retries) = options.retries {
        settings.extend(quote!(.retries(#retries)));
    }

    let body = if failed {
        quote!(::core::unimplemented!())
    } else {
        match options.mode {
            Mode::Thread => quote! {
                static __OFFLOAD_FN: #private::Local = #private::Local::new(#name)#settings;
                #private::call_in_thread(&__OFFLOAD_FN, move || #call_companion).await
            },
            Mode::Process => {
                let fingerprint = fingerprint(&types, &value);
                let checks = types.iter().chain(Some(&value)).map(|ty| {
                    quote_spanned!(ty.span()=> #private::assert_transferable::<#ty>();)
                });
                quote! {
                    static __OFFLOAD_FN: #private::Remote =
                        #private::Remote::new(#name, #private::fingerprint(#fingerprint))#settings;
                    #private::inventory::submit! {
                        #private::Registration::new(&__OFFLOAD_FN, |args, out| {
                            #(#checks)*
                            #private::invoke(args, out, |(#(#forwarded,)*): (#(#types,)*)| #call_companion)
                        })
                    }
                    #private::call_in_process(&__OFFLOAD_FN, (#(#forwarded,)*)).await
                }
            }
        }
    };

    let doc = format!(
        " The body of `{ident}`, run on the calling thread and blocking it until done: for \
         synchronous callers and unit tests."
    );
    let mut companion_sig = sig;
    companion_sig.ident = companion;
    quote! {
        #(#wrapper_attrs)*
        #vis #wrapper {
            #body
        }

        #[doc = #doc]
        #(#companion_attrs)*
        #vis #companion_sig #block
    }
}

/// Splits the user's attributes: docs go on the async wrapper, attributes about the body go on
/// the companion, and those that describe the item as a whole go on both.
fn split(attrs: Vec<Attribute>) -> (Vec<Attribute>, Vec<Attribute>) {
    const BOTH: &[&str] = &["cfg", "cfg_attr", "allow", "warn", "deny", "forbid", "expect", "deprecated", "must_use"];
    let mut wrapper = Vec::new();
    let mut companion = Vec::new();
    for attr in attrs {
        let path = attr.path();
        if path.is_ident("doc") {
            wrapper.push(attr);
        } else if BOTH.iter().any(|name| path.is_ident(name)) {
            wrapper.push(attr.clone());
            companion.push(attr);
        } else {
            companion.push(attr);
        }
    }
    (wrapper, companion)
}

/// The text hashed into a function's fingerprint: its argument and return types as written.
fn fingerprint(types: &[Type], value: &Type) -> String {
    let args: Vec<String> = types.iter().map(|ty| ty.to_token_stream().to_string()).collect();
    format!("({}) -> {}", args.join(", "), value.to_token_stream())
}
