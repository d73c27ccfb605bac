// `read_file` from the README moved to process mode as it is: `std::io::Error` has no serde
// traits and, being another crate's, cannot get them. One error, at the result type, saying to
// map it to a `String` or an error type of one's own.
use offload::offload;

#[offload(process)]
fn read_file(path: String) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

#[offload::main]
#[tokio::main]
async fn main() {
    let _ = read_file("Cargo.toml".into()).await;
}
