// The generated code is clean under the strictest lint levels a user's crate might set.
// Checked here with rustc; `cargo clippy` is run on the same file by hand or in CI (trybuild
// does not run clippy).
#![deny(warnings, clippy::pedantic, unused_qualifications, unused_lifetimes)]

use std::fmt::Display;

use offload::offload;
use serde::{Deserialize, Serialize};

/// Adds in a worker process.
#[offload(process)]
#[must_use]
pub fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Returns nothing, on a named pool with every option.
#[offload(
    process,
    pool = "lints",
    name = "lints::record",
    timeout = "10s",
    retries = 1
)]
pub fn record(line: String) {
    drop(line);
}

/// Reads a file on a thread.
///
/// # Errors
///
/// When the file cannot be read.
#[offload(thread, pool = "lints-io", timeout = "500ms")]
pub fn read(path: std::path::PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// Generic, with an `impl Trait` argument.
#[offload(thread)]
#[must_use]
pub fn show<T: Display>(value: T, suffix: impl Display) -> String {
    format!("{value}{suffix}")
}

/// Owned, since it is offloaded, though the body only borrows it.
#[offload(thread)]
#[must_use]
pub fn length(text: String) -> usize {
    text.len()
}

/// Patterns.
#[offload(thread)]
#[must_use]
pub fn sum((a, b): (u32, u32), _: bool) -> u32 {
    a + b
}

/// Generic, bounded in a `where` clause.
#[offload(thread)]
#[must_use]
pub fn wrap<T>(value: T) -> Vec<T>
where
    T: Clone,
{
    vec![value]
}

/// Ignores its second argument.
#[offload(process)]
#[must_use]
pub fn first(a: u32, _unused: u32) -> u32 {
    a
}

/// Deprecated.
#[offload(process)]
#[must_use]
#[deprecated = "use `add`"]
pub fn old_add(a: u64) -> u64 {
    a
}

/// A stack.
pub struct Stack<T> {
    items: Vec<T>,
}

#[offload]
impl<T: Ord> Stack<T> {
    /// Sorted on a thread.
    #[offload(thread)]
    #[must_use]
    pub fn sorted(mut self) -> Vec<T> {
        self.items.sort();
        self.items
    }
}

/// A cell.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    value: i64,
}

#[offload]
impl Cell {
    /// Made on a thread.
    #[offload(thread)]
    #[must_use]
    pub fn new(value: i64) -> Self {
        Cell { value }
    }

    /// Doubled in a worker process.
    #[offload(process)]
    #[must_use]
    pub fn doubled(self) -> Self {
        Cell {
            value: self.value * 2,
        }
    }
}

#[offload::main]
#[tokio::main]
async fn main() -> Result<(), offload::Error> {
    assert_eq!(add(1, 2).await?, 3);
    record("x".to_owned()).await?;
    assert!(read("/definitely/not/here".into()).await?.is_err());
    assert_eq!(show(1, "!").await?, "1!");
    assert_eq!(sum((1, 2), true).await?, 3);
    assert_eq!(Cell::new(2).await?.doubled().await?, Cell { value: 4 });
    assert_eq!(wrap(1).await?, vec![1]);
    assert_eq!(length("abc".to_owned()).await?, 3);
    assert_eq!(first(1, 2).await?, 1);
    #[allow(deprecated)]
    let old = old_add(1).await?;
    assert_eq!(old, 1);
    assert_eq!(Stack { items: vec![2, 1] }.sorted().await?, vec![1, 2]);
    Ok(())
}
