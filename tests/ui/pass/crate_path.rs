// A crate that re-exports offload points the expansion at its own path with `crate = …`.
mod framework {
    pub use offload::*;
}

#[framework::offload(thread, crate = framework)]
fn on_thread(x: u32) -> u32 {
    x + 1
}

#[framework::offload(process, crate = framework)]
fn in_process(x: u32) -> u32 {
    x * 2
}

struct Counter(u32);

#[framework::offload(crate = framework)]
impl Counter {
    #[framework::offload(thread)]
    fn next(self) -> u32 {
        self.0 + 1
    }
}

#[framework::main(crate = framework)]
#[tokio::main]
async fn main() -> Result<(), framework::Error> {
    assert_eq!(on_thread(1).await?, 2);
    assert_eq!(in_process(2).await?, 4);
    assert_eq!(Counter(1).next().await?, 2);
    Ok(())
}
