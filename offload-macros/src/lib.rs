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
/// A function inside an `impl` block needs `#[offload]` on the block as well. A method (one
/// that takes `self` or names `Self`) without it gets an error saying so; an associated
/// function that does neither cannot be told from a free one, and gets rustc's
/// ``cannot find function `f_blocking` in this scope`` at the attribute instead. The fix for
/// both is `#[offload]` on the line above `impl`.
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
