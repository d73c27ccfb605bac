use offload::offload;

/// Reads a whole file: blocking I/O, on tokio's blocking pool.
#[offload(thread)]
pub fn read(path: std::path::PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// On the named pool `io`, giving up after 5 seconds.
#[offload(thread, pool = "io", timeout = "5s")]
pub(crate) fn fetch(url: String) -> Option<Vec<u8>> {
    download(&url)
}

/// Generic and `impl Trait` arguments get the `Send + 'static` bounds the other thread needs.
#[offload(thread)]
fn render<T: std::fmt::Display>(value: T, mut out: impl std::io::Write) -> usize {
    write!(out, "{value}").map_or(0, |()| 1)
}

/// Patterns stay in the body; the wrapper names the arguments it forwards.
#[offload(thread)]
#[must_use]
#[deprecated = "use `render`"]
fn sum((a, b): (u64, u64), _: bool) -> u64 {
    a + b
}
