// Free functions at any visibility and depth, returning (), Result, Option, or a type behind an
// alias; each called through the pool and directly through its `_blocking` companion.
use offload::offload;

type Bytes = Vec<u8>;

#[offload(thread)]
pub fn nothing() {}

#[offload(thread)]
pub(crate) fn parse(text: String) -> Result<u32, std::num::ParseIntError> {
    text.parse()
}

#[offload(thread)]
fn first_char(text: String) -> Option<char> {
    text.chars().next()
}

#[offload(thread)]
fn bytes(text: String) -> Bytes {
    text.into_bytes()
}

#[offload(thread)]
fn io_result(path: String) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|m| m.len())
}

pub mod outer {
    pub mod inner {
        use offload::offload;

        #[offload(thread)]
        pub(in crate::outer) fn deep(x: u32) -> u32 {
            x + 1
        }

        #[offload(thread)]
        pub(super) fn shallow(x: u32) -> u32 {
            x + 2
        }
    }

    pub async fn call() -> u32 {
        inner::deep(1).await.unwrap() + inner::shallow(1).await.unwrap()
    }
}

#[tokio::main]
async fn main() {
    nothing().await.unwrap();
    nothing_blocking();
    assert_eq!(parse("42".into()).await.unwrap(), Ok(42));
    assert!(parse("x".into()).await.unwrap().is_err());
    assert_eq!(first_char("abc".into()).await, Ok(Some('a')));
    assert_eq!(bytes("ab".into()).await.unwrap(), b"ab".to_vec());
    assert!(io_result("/definitely/not/here".into())
        .await
        .unwrap()
        .is_err());
    assert_eq!(outer::call().await, 5);
    assert_eq!(parse_blocking("7".into()), Ok(7));
}
