//! `#[offload::main]`: the worker guard, run before anything else in `main`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::Parser;
use syn::{parse_quote, ItemFn, Path};

use crate::args;
use crate::errors::Errors;
use crate::show::show;

// Input:
//     #[offload::main] #[tokio::main] async fn main() -> R { body }
//     (or #[offload::main(worker_init = setup)], whose guard is
//     `::offload::serve_if_worker_with(&SETUP)`, `SETUP` naming `setup`)
// Output:
//     fn main() -> R {
//         ::offload::serve_if_worker();
//         #[tokio::main] async fn main() -> R { body }
//         main()
//     }
//
// The guard must run before the runtime is built, so an async `main` moves, with its other
// attributes, inside a plain `main` that calls the guard first. A plain `fn main` (or one that
// `#[tokio::main]` already rewrote) just gets the guard as its first statement.
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut krate: Path = parse_quote!(::offload);
    let mut setup: Option<Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if let Some(path) = args::path(&meta, &mut errors)? {
                krate = path;
            }
        } else if meta.path.is_ident("worker_init") {
            let example = "worker_init = setup_worker";
            if let Some(path) = args::path_to(&meta, &mut errors, "a setup function", example)? {
                setup = Some(path);
            }
        } else {
            errors.at(
                &meta.path,
                format!(
                    "unknown option `{}`: #[offload::main] takes `crate = path` and \
                     `worker_init = function`",
                    show(&meta.path)
                ),
            );
            args::value(&meta)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.add(error);
    }
    let mut item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(
                Span::call_site(),
                "#[offload::main] goes on the program's `fn main`",
            );
            return quote!(#item #errors);
        }
    };
    if item.sig.ident != "main" {
        errors.push(
            item.sig.ident.span(),
            format!(
                "#[offload::main] goes on the program's `fn main`, where the guard runs before \
                 anything else: on `{}` it would run only when that is called, too late for a \
                 worker (in a test crate, write `offload::test_setup!();` instead)",
                item.sig.ident
            ),
        );
        return quote!(#item #errors);
    }
    let guard = match &setup {
        None => quote!(#krate::serve_if_worker();),
        Some(setup) => {
            let name = show(setup);
            quote! {
                #krate::serve_if_worker_with({
                    static __OFFLOAD_SETUP: #krate::__private::WorkerSetup =
                        #krate::__private::WorkerSetup::new(#name, || {
                            #krate::__private::setup_outcome(#setup())
                        });
                    &__OFFLOAD_SETUP
                });
            }
        }
    };
    if item.sig.asyncness.is_none() {
        item.block
            .stmts
            .insert(0, syn::parse2(guard).expect("a statement"));
        return quote!(#item #errors);
    }
    let has_runtime = item.attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "main" || s.ident == "test")
    });
    if !has_runtime {
        errors.push(
            item.sig
                .asyncness
                .as_ref()
                .map_or_else(Span::call_site, |a| a.span),
            "an `async fn main` needs a runtime: put #[offload::main] above #[tokio::main]",
        );
        // Not async, so that rustc does not add its own error about an async `main`.
        let ItemFn {
            attrs, vis, sig, ..
        } = item;
        let (ident, output) = (&sig.ident, &sig.output);
        return quote!(#(#attrs)* #vis fn #ident() #output { ::core::unimplemented!() } #errors);
    }
    let (docs, attrs): (Vec<_>, Vec<_>) =
        item.attrs.drain(..).partition(|a| a.path().is_ident("doc"));
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let output = &item.sig.output;
    let inputs = &item.sig.inputs;
    item.attrs = attrs;
    quote! {
        #(#docs)*
        #vis fn #ident(#inputs) #output {
            #guard
            #item
            #ident()
        }
        #errors
    }
}
