// Every mistake in one attribute is reported at once, and the function still has its async
// signature, so its caller compiles.
use offload::offload;

#[offload(process, pool = "", timeout = 5, retries = "two", name = heavy, crate = 1, threads)]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

async fn caller() -> Result<u64, offload::Error> {
    hash(vec![1, 2, 3]).await
}

fn main() {
    drop(caller());
}
