use offload::offload;
async fn square(x: u64) -> ::core::result::Result<u64, ::offload::Error> {
    ::offload::__private::assert_transferable::<u64>();
    __OFFLOAD_SQUARE.call((x,)).await
}
#[allow(clippy::needless_pass_by_value)]
fn square_blocking(x: u64) -> u64 {
    x * x
}
#[allow(dead_code)]
fn square_map<I>(inputs: I) -> ::offload::Map<u64>
where
    I: ::core::iter::IntoIterator<Item = u64>,
    I::IntoIter: ::core::marker::Send + 'static,
{
    __OFFLOAD_SQUARE
        .map(
            ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(inputs),
                |__offload_arg0| (__offload_arg0,),
            ),
        )
}
static __OFFLOAD_SQUARE: ::offload::__private::Process<(u64,), u64> = ::offload::__private::Process::new(
    ::offload::__private::Remote::new(
        ::core::concat!(::core::module_path!(), "::square"),
        ::offload::__private::fingerprint("(u64) -> u64"),
    ),
);
::offload::__private::inventory::submit! {
    __OFFLOAD_SQUARE.registration(| args, out | __OFFLOAD_SQUARE.invoke(args, out, | (x,)
    : (u64,) | square_blocking(x)))
}
/// The guard moves an async `main` inside a plain one that serves workers first.
fn main() -> Result<(), offload::Error> {
    ::offload::serve_if_worker();
    #[tokio::main]
    async fn main() -> Result<(), offload::Error> {
        println!("{}", square(7). await ?);
        Ok(())
    }
    main()
}
