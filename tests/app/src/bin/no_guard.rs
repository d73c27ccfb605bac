//! A program whose main forgot `#[offload::main]`: its first process-mode call must fail with a
//! clear error instead of starting copies of itself.

#[tokio::main]
async fn main() {
    println!("main started");
    match offload_test_app::square(3).await {
        Ok(value) => println!("unexpected success: {value}"),
        Err(error) => println!("error: {error}"),
    }
}
