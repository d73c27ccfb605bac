//! The `#[offload]` and `#[offload::main]` attributes. Use them through the `offload` crate,
//! whose documentation describes them.

mod args;
mod check;
mod errors;
mod expand;
mod guard;
mod item;
mod show;
#[cfg(test)]
mod snapshots;
mod source;

use proc_macro::TokenStream;

/// Runs a blocking function off the event loop: `#[offload(thread)]` on tokio's blocking pool,
/// `#[offload(process)]` in a worker process.
///
/// `fn f(a: A) -> R` becomes `async fn f(a: A) -> Result<R, offload::Error>`; the body stays
/// callable as `f_blocking(a)`, and a free function also gets `f_map(inputs)`, which runs it
/// once per input.
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
///
/// A function inside an `impl` block needs `#[offload]` on the block as well; without it, the
/// one error, at the function's attribute, names the block and says to add it. (The attribute
/// sees only the function's tokens, so it reads the block from the source file; where that file
/// cannot be read, or a free function of the same name and signature shares it, a method that
/// takes `self` or names `Self` still gets that error, and an associated function that does
/// neither gets rustc's ``cannot find function `f_blocking` ``.)
#[proc_macro_attribute]
pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::offload(args.into(), item.into()).into()
}

/// The worker guard, on `main`: in a re-executed copy of the program that was started as a
/// worker, it serves calls and exits before anything else in `main` runs.
///
/// Put it beside `#[tokio::main]`, above or below: either way it runs before the runtime is
/// built.
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
