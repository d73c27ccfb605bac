// Attributes stay where they belong: docs on the async fn, `must_use` and other attributes about
// the body on the `_blocking` companion, `cfg`, lint levels and `deprecated` on both.
#![deny(warnings)]

use offload::offload;

/// Documented.
#[offload(thread)]
#[must_use]
#[inline]
pub fn documented(x: u32) -> u32 {
    x + 1
}

#[offload(thread)]
#[cfg(any())]
fn compiled_out(x: u32) -> u32 {
    x
}

#[offload(thread)]
#[cfg(debug_assertions)]
fn compiled_in(x: u32) -> u32 {
    x
}

#[offload(process)]
#[deprecated = "use `documented`"]
fn old(x: u32) -> u32 {
    x
}

#[offload(thread)]
#[allow(clippy::needless_pass_by_value, unused_mut)]
fn lenient(mut text: String) -> usize {
    text.len()
}

#[offload(thread)]
#[doc(hidden)]
pub fn hidden() {}

// `compiled_out` does not exist: this name is free.
fn compiled_out() -> u8 {
    0
}

#[offload::main]
#[tokio::main]
async fn main() {
    assert_eq!(documented(1).await, Ok(2));
    assert_eq!(documented_blocking(1), 2);
    assert_eq!(compiled_in(3).await, Ok(3));
    assert_eq!(compiled_out(), 0);
    #[allow(deprecated)]
    let value = old(4).await;
    assert_eq!(value, Ok(4));
    assert_eq!(lenient("ab".into()).await, Ok(2));
    hidden().await.unwrap();
}
