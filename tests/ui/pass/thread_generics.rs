// Generic functions and `impl Trait` arguments in thread mode: the wrapper adds the
// `Send + 'static` bounds that moving the arguments to another thread needs. A function's
// `f_map` has its generics too (a function with an `impl Trait` has none).
use std::fmt::Debug;
use std::str::FromStr;

use offload::offload;

#[offload(thread)]
fn describe<T: Debug>(value: T) -> String {
    format!("{value:?}")
}

#[offload(thread)]
fn parse_as<T>(text: String) -> Option<T>
where
    T: FromStr,
{
    text.parse().ok()
}

#[offload(thread)]
fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

#[offload(thread)]
fn sum_all(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().sum()
}

#[offload(thread)]
fn apply<T: Clone + Send + 'static, const N: usize>(
    make: impl Fn() -> T,
    _hint: [u8; N],
) -> Vec<T> {
    (0..N).map(|_| make()).collect()
}

#[offload(thread)]
fn boxed(callback: Box<dyn FnOnce() -> u32 + Send>) -> u32 {
    callback()
}

#[offload(thread)]
fn static_text(text: &'static str) -> &'static str {
    text.trim()
}

#[offload(thread)]
fn displayed(value: u32) -> impl std::fmt::Display {
    value * 2
}

#[tokio::main]
async fn main() {
    assert_eq!(describe(vec![1, 2]).await, Ok("[1, 2]".to_owned()));
    assert_eq!(parse_as::<u8>("7".into()).await, Ok(Some(7)));
    assert_eq!(size_of::<u64>().await, Ok(8));
    assert_eq!(sum_all(vec![1, 2, 3]).await, Ok(6));
    assert_eq!(apply(|| 'x', [0; 2]).await, Ok(vec!['x', 'x']));
    assert_eq!(boxed(Box::new(|| 5)).await, Ok(5));
    assert_eq!(static_text(" hi ").await, Ok("hi"));
    assert_eq!(displayed(21).await.unwrap().to_string(), "42");

    let described = describe_map(vec![1, 2]).collect().await;
    assert_eq!(described, [Ok("1".to_owned()), Ok("2".to_owned())]);
    let parsed = parse_as_map::<u8, _>(vec!["7".to_owned(), "x".to_owned()]);
    assert_eq!(parsed.collect().await, [Ok(Some(7)), Ok(None)]);
    assert_eq!(
        size_of_map::<u16, _>([(), ()]).collect().await,
        [Ok(2), Ok(2)]
    );
    let calls: Vec<Box<dyn FnOnce() -> u32 + Send>> = vec![Box::new(|| 1), Box::new(|| 2)];
    assert_eq!(boxed_map(calls).collect().await, [Ok(1), Ok(2)]);
    assert_eq!(static_text_map([" a "]).collect().await, [Ok("a")]);
}
