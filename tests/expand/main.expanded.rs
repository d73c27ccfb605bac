use offload::offload;
async fn square(x: u64) -> ::core::result::Result<u64, ::offload::Error> {
    static __OFFLOAD_FN: ::offload::__private::Process<(u64,), u64> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::square"),
            ::offload::__private::fingerprint("(u64) -> u64"),
        ),
    );
    ::offload::__private::inventory::submit! {
        __OFFLOAD_FN.registration(| args, out | __OFFLOAD_FN.invoke(args, out, | (x,) :
        (u64,) | square_blocking(x)))
    }
    ::offload::__private::assert_transferable::<u64>();
    __OFFLOAD_FN.call((x,)).await
}
#[allow(clippy::needless_pass_by_value)]
fn square_blocking(x: u64) -> u64 {
    x * x
}
#[allow(dead_code)]
fn square_map<I>(inputs: I) -> ::offload::Map<u64>
where
    I: ::core::iter::IntoIterator<Item = u64>,
    <I as ::core::iter::IntoIterator>::IntoIter: ::core::marker::Send + 'static,
{
    static __OFFLOAD_FN: ::offload::__private::Process<(u64,), u64> = ::offload::__private::Process::new(
        ::offload::__private::Remote::new(
            ::core::concat!(::core::module_path!(), "::square"),
            ::offload::__private::fingerprint("(u64) -> u64"),
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
