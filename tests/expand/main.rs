use offload::offload;

#[offload(process)]
fn square(x: u64) -> u64 {
    x * x
}

/// The guard moves an async `main` inside a plain one that serves workers first.
#[offload::main]
#[tokio::main]
async fn main() -> Result<(), offload::Error> {
    println!("{}", square(7).await?);
    Ok(())
}
