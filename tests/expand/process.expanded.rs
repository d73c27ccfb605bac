use offload::offload;
/// CPU-heavy: runs in a worker process.
pub async fn add(a: u64, b: u64) -> ::core::result::Result<u64, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Process<(u64, u64), u64> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::add"),
            ::offload::__private::fingerprint("(u64, u64) -> u64"),
        ),
    );
    ::offload::__private::inventory::submit! {
        __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, | (a, b) :
        (u64, u64) | add_blocking(a, b)))
    }
    ::offload::__private::assert_transferable::<u64>();
    __OFFLOAD_FN.call((a, b)).await
}
/// The body of `add`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// CPU-heavy: runs in a worker process.
#[allow(clippy::needless_pass_by_value)]
pub fn add_blocking(a: u64, b: u64) -> u64 {
    a + b
}
/// Runs `add` once per input on its process pool, several calls to a message; results come as they complete, with the index of their input.
#[allow(dead_code)]
pub fn add_map<I>(inputs: I) -> ::offload::Map<u64>
where
    I: ::core::iter::IntoIterator<Item = (u64, u64)>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Process<(u64, u64), u64> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::add"),
            ::offload::__private::fingerprint("(u64, u64) -> u64"),
        ),
    );
    __OFFLOAD_FN.map(inputs)
}
/// Every option: a named pool, a stable registry name, a timeout and retries.
pub async fn mean(
    values: Vec<f64>,
) -> ::core::result::Result<Result<f64, String>, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Process<
        (Vec<f64>,),
        Result<f64, String>,
    > = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
                "stats::mean",
                ::offload::__private::fingerprint("(Vec<f64>) -> Result<f64, String>"),
            )
            .pool("heavy")
            .timeout_ms(250)
            .retries(2),
    );
    ::offload::__private::inventory::submit! {
        __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, |
        (values,) : (Vec < f64 >,) | mean_blocking(values)))
    }
    ::offload::__private::assert_transferable::<Vec<f64>>();
    ::offload::__private::assert_transferable::<Result<f64, String>>();
    __OFFLOAD_FN.call((values,)).await
}
/// The body of `mean`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// Every option: a named pool, a stable registry name, a timeout and retries.
#[allow(clippy::needless_pass_by_value)]
pub fn mean_blocking(values: Vec<f64>) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no values".to_owned());
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}
/// Runs `mean` once per input on its process pool, several calls to a message; results come as they complete, with the index of their input.
#[allow(dead_code)]
pub fn mean_map<I>(inputs: I) -> ::offload::Map<Result<f64, String>>
where
    I: ::core::iter::IntoIterator<Item = Vec<f64>>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Process<
        (Vec<f64>,),
        Result<f64, String>,
    > = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
                "stats::mean",
                ::offload::__private::fingerprint("(Vec<f64>) -> Result<f64, String>"),
            )
            .pool("heavy")
            .timeout_ms(250)
            .retries(2),
    );
    __OFFLOAD_FN
        .map(
            ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(inputs),
                |__offload_arg0| (__offload_arg0,),
            ),
        )
}
/// `Vec<u8>` crosses as one byte string, not one serde call per byte.
pub async fn xor(
    bytes: Vec<u8>,
    key: u8,
) -> ::core::result::Result<Vec<u8>, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Process<
        (::offload::__private::Bytes, u8),
        ::offload::__private::Bytes,
    > = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::xor"),
            ::offload::__private::fingerprint("(Vec<u8>, u8) -> Vec<u8>"),
        ),
    );
    ::offload::__private::inventory::submit! {
        __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, | (bytes,
        key) : (::offload::__private::Bytes, u8) |
        ::offload::__private::Bytes(xor_blocking(bytes.0, key))))
    }
    ::offload::__private::assert_transferable::<Vec<u8>>();
    ::offload::__private::assert_transferable::<u8>();
    __OFFLOAD_FN
        .call((::offload::__private::Bytes(bytes), key))
        .await
        .map(|bytes: ::offload::__private::Bytes| bytes.0)
}
/// The body of `xor`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// `Vec<u8>` crosses as one byte string, not one serde call per byte.
#[allow(clippy::needless_pass_by_value)]
pub fn xor_blocking(bytes: Vec<u8>, key: u8) -> Vec<u8> {
    bytes.into_iter().map(|byte| byte ^ key).collect()
}
/// Runs `xor` once per input on its process pool, several calls to a message; results come as they complete, with the index of their input.
#[allow(dead_code)]
pub fn xor_map<I>(inputs: I) -> ::offload::Map<Vec<u8>>
where
    I: ::core::iter::IntoIterator<Item = (Vec<u8>, u8)>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Process<
        (::offload::__private::Bytes, u8),
        ::offload::__private::Bytes,
    > = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::xor"),
            ::offload::__private::fingerprint("(Vec<u8>, u8) -> Vec<u8>"),
        ),
    );
    __OFFLOAD_FN
        .map(
            ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(inputs),
                |(__offload_arg0, __offload_arg1)| (
                    ::offload::__private::Bytes(__offload_arg0),
                    __offload_arg1,
                ),
            ),
        )
}
/// Returning nothing.
async fn log(line: String) -> ::core::result::Result<(), ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Process<(String,), ()> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::log"),
            ::offload::__private::fingerprint("(String) -> ()"),
        ),
    );
    ::offload::__private::inventory::submit! {
        __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, | (line,)
        : (String,) | log_blocking(line)))
    }
    ::offload::__private::assert_transferable::<String>();
    __OFFLOAD_FN.call((line,)).await
}
/// The body of `log`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
///
/// Returning nothing.
#[allow(clippy::needless_pass_by_value)]
fn log_blocking(line: String) {
    println!("{line}");
}
/// Runs `log` once per input on its process pool, several calls to a message; results come as they complete, with the index of their input.
#[allow(dead_code)]
fn log_map<I>(inputs: I) -> ::offload::Map<()>
where
    I: ::core::iter::IntoIterator<Item = String>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Process<(String,), ()> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::log"),
            ::offload::__private::fingerprint("(String) -> ()"),
        ),
    );
    __OFFLOAD_FN
        .map(
            ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(inputs),
                |__offload_arg0| (__offload_arg0,),
            ),
        )
}
mod reexported {
    /// A crate that re-exports offload points the expansion at its path.
    pub async fn square(
        x: u64,
    ) -> ::core::result::Result<u64, my_framework::offload::Error> {
        static __OFFLOAD_FN: my_framework::offload::__private::Process<(u64,), u64> = my_framework::offload::__private::Process::new(
            my_framework::offload::__private::Remote::new(
                ::core::concat!(::core::module_path!(), "::square"),
                my_framework::offload::__private::fingerprint("(u64) -> u64"),
            ),
        );
        my_framework::offload::__private::inventory::submit! {
            __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, | (x,)
            : (u64,) | square_blocking(x)))
        }
        my_framework::offload::__private::assert_transferable::<u64>();
        __OFFLOAD_FN.call((x,)).await
    }
    /// The body of `square`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
    ///
    /// A crate that re-exports offload points the expansion at its path.
    #[allow(clippy::needless_pass_by_value)]
    pub fn square_blocking(x: u64) -> u64 {
        x * x
    }
    /// Runs `square` once per input on its process pool, several calls to a message; results come as they complete, with the index of their input.
    #[allow(dead_code)]
    pub fn square_map<I>(inputs: I) -> my_framework::offload::Map<u64>
    where
        I: ::core::iter::IntoIterator<Item = u64>,
        <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
    {
        static __OFFLOAD_FN: my_framework::offload::__private::Process<(u64,), u64> = my_framework::offload::__private::Process::new(
            my_framework::offload::__private::Remote::new(
                ::core::concat!(::core::module_path!(), "::square"),
                my_framework::offload::__private::fingerprint("(u64) -> u64"),
            ),
        );
        __OFFLOAD_FN
            .map(
                ::core::iter::Iterator::map(
                    ::core::iter::IntoIterator::into_iter(inputs),
                    |__offload_arg0| (__offload_arg0,),
                ),
            )
    }
}
