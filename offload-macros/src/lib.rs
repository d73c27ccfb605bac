//! The `#[offload]` and `#[offload::main]` attributes. Use them through the `offload` crate,
//! whose documentation describes them.

mod args;
mod check;
mod expand;
mod guard;

use std::fmt::Display;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::ToTokens;

/// See the `offload` crate's documentation.
#[proc_macro_attribute]
pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::offload(args.into(), item.into()).into()
}

/// See the `offload` crate's documentation.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    guard::main(args.into(), item.into()).into()
}

/// Every error found while expanding one attribute, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, message: impl Display) {
        self.add(syn::Error::new(span, message));
    }

    fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    #[cfg(test)]
    fn messages(&self) -> Vec<String> {
        self.0.iter().flat_map(|e| e.clone().into_iter().map(|e| e.to_string())).collect()
    }
}

impl ToTokens for Errors {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        if let Some(errors) = &self.0 {
            tokens.extend(errors.to_compile_error());
        }
    }
}
