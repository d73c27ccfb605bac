// Argument patterns stay in the body: `mut x`, tuple and struct patterns, `_`, `ref`.
// clippy objects to a `ref` argument of the user's own, with offload or without it.
#![allow(clippy::toplevel_ref_arg)]
use offload::offload;

struct Point {
    x: i64,
    y: i64,
}

#[offload(thread)]
fn count_down(mut n: u32) -> u32 {
    let mut steps = 0;
    while n > 0 {
        n /= 2;
        steps += 1;
    }
    steps
}

#[offload(thread)]
fn swap((a, b): (String, String)) -> (String, String) {
    (b, a)
}

#[offload(thread)]
fn norm(Point { x, y }: Point) -> i64 {
    x.abs() + y.abs()
}

#[offload(thread)]
fn ignore(_: u8, kept: u8, _unused: u8) -> u8 {
    kept
}

#[offload(thread)]
fn borrow_inside(ref text: String) -> usize {
    text.len()
}

#[offload(thread)]
fn nested([first, ..]: [u8; 3], (Point { x, .. }, _): (Point, ())) -> i64 {
    i64::from(first) + x
}

#[tokio::main]
async fn main() {
    assert_eq!(count_down(8).await, Ok(4));
    assert_eq!(
        swap(("a".into(), "b".into())).await,
        Ok(("b".into(), "a".into()))
    );
    assert_eq!(norm(Point { x: -2, y: 3 }).await, Ok(5));
    assert_eq!(ignore(1, 2, 3).await, Ok(2));
    assert_eq!(borrow_inside("four".into()).await, Ok(4));
    assert_eq!(nested([1, 2, 3], (Point { x: 10, y: 0 }, ())).await, Ok(11));
}
