use offload::offload;
/// Reads a whole file: blocking I/O, on tokio's blocking pool.
pub async fn read(
    path: std::path::PathBuf,
) -> ::core::result::Result<std::io::Result<String>, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
        ::core::concat!(::core::module_path!(), "::read"),
    );
    ::offload::__private::call_in_thread(&__OFFLOAD_FN, move || { read_blocking(path) })
        .await
}
/// The body of `read`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// Reads a whole file: blocking I/O, on tokio's blocking pool.
#[allow(clippy::needless_pass_by_value)]
pub fn read_blocking(path: std::path::PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}
/// Runs `read` once per input on its thread pool, several at once; results come as they complete, with the index of their input.
#[allow(dead_code)]
pub fn read_map<I>(inputs: I) -> ::offload::Map<std::io::Result<String>>
where
    I: ::core::iter::IntoIterator<Item = std::path::PathBuf>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
    for<'__offload> std::path::PathBuf: ::core::marker::Send + 'static,
    for<'__offload> std::io::Result<String>: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
        ::core::concat!(::core::module_path!(), "::read"),
    );
    ::offload::__private::map_in_thread(
        &__OFFLOAD_FN,
        inputs,
        |__offload_arg0| read_blocking(__offload_arg0),
    )
}
/// On the named pool `io`, giving up after 5 seconds.
pub(crate) async fn fetch(
    url: String,
) -> ::core::result::Result<Option<Vec<u8>>, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
            ::core::concat!(::core::module_path!(), "::fetch"),
        )
        .pool("io")
        .timeout_ms(5000);
    ::offload::__private::call_in_thread(&__OFFLOAD_FN, move || { fetch_blocking(url) })
        .await
}
/// The body of `fetch`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// On the named pool `io`, giving up after 5 seconds.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn fetch_blocking(url: String) -> Option<Vec<u8>> {
    download(&url)
}
/// Runs `fetch` once per input on its thread pool, several at once; results come as they complete, with the index of their input.
#[allow(dead_code)]
pub(crate) fn fetch_map<I>(inputs: I) -> ::offload::Map<Option<Vec<u8>>>
where
    I: ::core::iter::IntoIterator<Item = String>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
    for<'__offload> String: ::core::marker::Send + 'static,
    for<'__offload> Option<Vec<u8>>: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
            ::core::concat!(::core::module_path!(), "::fetch"),
        )
        .pool("io")
        .timeout_ms(5000);
    ::offload::__private::map_in_thread(
        &__OFFLOAD_FN,
        inputs,
        |__offload_arg0| fetch_blocking(__offload_arg0),
    )
}
/// Generic and `impl Trait` arguments get the `Send + 'static` bounds the other thread needs.
async fn render<T: std::fmt::Display + ::core::marker::Send + 'static>(
    value: T,
    out: impl std::io::Write + ::core::marker::Send + 'static,
) -> ::core::result::Result<usize, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
        ::core::concat!(::core::module_path!(), "::render"),
    );
    ::offload::__private::call_in_thread(
            &__OFFLOAD_FN,
            move || { render_blocking::<T>(value, out) },
        )
        .await
}
/// The body of `render`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// Generic and `impl Trait` arguments get the `Send + 'static` bounds the other thread needs.
#[allow(clippy::needless_pass_by_value)]
fn render_blocking<T: std::fmt::Display>(
    value: T,
    mut out: impl std::io::Write,
) -> usize {
    write!(out, "{value}").map_or(0, |()| 1)
}
/// Patterns stay in the body; the wrapper names the arguments it forwards.
#[deprecated = "use `render`"]
async fn sum(
    __offload_arg0: (u64, u64),
    __offload_arg1: bool,
) -> ::core::result::Result<u64, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
        ::core::concat!(::core::module_path!(), "::sum"),
    );
    ::offload::__private::call_in_thread(
            &__OFFLOAD_FN,
            move || { sum_blocking(__offload_arg0, __offload_arg1) },
        )
        .await
}
/// The body of `sum`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// Patterns stay in the body; the wrapper names the arguments it forwards.
#[allow(clippy::needless_pass_by_value)]
#[must_use]
#[deprecated = "use `render`"]
fn sum_blocking((a, b): (u64, u64), _: bool) -> u64 {
    a + b
}
/// Runs `sum` once per input on its thread pool, several at once; results come as they complete, with the index of their input.
#[deprecated = "use `render`"]
#[allow(dead_code)]
fn sum_map<I>(inputs: I) -> ::offload::Map<u64>
where
    I: ::core::iter::IntoIterator<Item = ((u64, u64), bool)>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
    for<'__offload> ((u64, u64), bool): ::core::marker::Send + 'static,
    for<'__offload> u64: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
        ::core::concat!(::core::module_path!(), "::sum"),
    );
    ::offload::__private::map_in_thread(
        &__OFFLOAD_FN,
        inputs,
        |(__offload_arg0, __offload_arg1)| sum_blocking(__offload_arg0, __offload_arg1),
    )
}
