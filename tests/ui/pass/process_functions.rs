// Process mode through real worker processes: results, errors, options, visibility and depth.
use offload::offload;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Shape {
    Circle { radius: f64 },
    Square(f64),
}

type Area = f64;

#[offload(process)]
pub fn area(shape: Shape) -> Area {
    match shape {
        Shape::Circle { radius } => 3.0 * radius * radius,
        Shape::Square(side) => side * side,
    }
}

#[offload(process)]
fn nothing(_: u8) {}

#[offload(process)]
fn nothing_at_all() {}

#[offload(process)]
fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    a.checked_div(b)
        .ok_or_else(|| "division by zero".to_owned())
}

#[offload(process)]
fn first_word(text: String) -> Option<String> {
    text.split_whitespace().next().map(str::to_owned)
}

#[offload(process, pool = "heavy", timeout = "30s", retries = 1)]
fn with_options(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[offload(process, name = "stable::identity")]
fn renamed((a, b): (u32, u32), mut c: u32) -> (u32, u32, u32) {
    c += 1;
    (a, b, c)
}

pub mod outer {
    pub mod inner {
        use offload::offload;

        #[offload(process)]
        pub(crate) fn deep(x: u32) -> u32 {
            x + 1
        }
    }
}

#[offload::main]
#[tokio::main]
async fn main() {
    assert_eq!(area(Shape::Square(2.0)).await, Ok(4.0));
    assert_eq!(nothing(1).await, Ok(()));
    assert_eq!(nothing_at_all().await, Ok(()));
    assert_eq!(checked_div(6, 3).await, Ok(Ok(2)));
    assert_eq!(
        checked_div(1, 0).await,
        Ok(Err("division by zero".to_owned()))
    );
    assert_eq!(
        first_word("hello world".into()).await,
        Ok(Some("hello".to_owned()))
    );
    assert_eq!(with_options(vec![1, 2, 3]).await, Ok(6));
    assert_eq!(renamed((1, 2), 3).await, Ok((1, 2, 4)));
    assert_eq!(outer::inner::deep(1).await, Ok(2));
    assert_eq!(area_blocking(Shape::Circle { radius: 1.0 }), 3.0);
}
