//! The `#[offload]` and `#[offload::main]` attributes. Use them through the `offload` crate,
//! whose documentation describes them.

mod args;
mod check;
mod expand;
mod guard;
#[cfg(test)]
mod snapshots;

use std::fmt::Display;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::ToTokens;

/// Runs a blocking function off the event loop: `#[offload(thread)]` on tokio's blocking pool,
/// `#[offload(process)]` in a worker process.
///
/// `fn f(a: A) -> R` becomes `async fn f(a: A) -> Result<R, offload::Error>`; the body stays
/// callable as `f_blocking(a)`, and a process-mode function also gets `f_map(inputs)`.
///
/// ```ignore
/// #[offload::offload(process, pool = "heavy", timeout = "30s")]
/// fn render(scene: Scene) -> Image { /* CPU-heavy */ }
///
/// let image = render(scene).await?;
/// ```
///
/// Options after the mode: `pool = "name"`, `timeout = "5s"` (units `ms`, `s`, `m`),
/// `retries = N` and `name = "stable"` (process mode), `crate = path`. On an `impl` block,
/// `#[offload]` without a mode lets the methods inside carry their own `#[offload(...)]`. The
/// `offload` crate's documentation describes the modes, the equivalent code and the guard.
#[proc_macro_attribute]
pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::offload(args.into(), item.into()).into()
}

/// The worker guard, on `main`: in a re-executed copy of the program that was started as a
/// worker, it serves calls and exits before anything else in `main` runs.
///
/// Put it above `#[tokio::main]`, so that it runs before the runtime is built:
///
/// ```ignore
/// #[offload::main]
/// #[tokio::main]
/// async fn main() { /* … */ }
/// ```
///
/// This is `fn main() { offload::serve_if_worker(); /* the async main, run by tokio */ }`. It
/// takes one option, `crate = path`, for crates that re-export `offload`.
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

    /// An error underlining all of `tokens`.
    fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.add(syn::Error::new_spanned(tokens, message));
    }

    fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn add_all(&mut self, errors: Errors) {
        if let Some(error) = errors.0 {
            self.add(error);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    #[cfg(test)]
    fn messages(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|e| e.clone().into_iter().map(|e| e.to_string()))
            .collect()
    }
}

impl ToTokens for Errors {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        if let Some(errors) = &self.0 {
            tokens.extend(errors.to_compile_error());
        }
    }
}

/// A type or other tokens as a person would write them, for messages and fingerprints.
fn show(tokens: &impl ToTokens) -> String {
    const TIGHT: &[(&str, &str)] = &[
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("& ", "&"),
        (" ,", ","),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
    ];
    let text = tokens.to_token_stream().to_string();
    TIGHT
        .iter()
        .fold(text, |text, (from, to)| text.replace(from, to))
}
