//! A program that logs with `tracing` in the caller and in its workers: the worker's subscriber
//! is set up in the worker setup, since workers never run the rest of `main`. A call made inside
//! the caller's `request` span logs, from the worker, inside a span naming the same call.

use tracing_subscriber::fmt::format::FmtSpan;

fn setup() {
    tracing_subscriber::fmt().with_ansi(false).init();
}

#[offload::offload(process)]
fn work(n: u64) -> u64 {
    tracing::info!(n, "hello from the worker");
    n * 2
}

#[offload::main(worker_init = setup)]
#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .init();
    let request = tracing::info_span!("request", id = 7);
    let doubled = tracing::Instrument::instrument(work(21), request).await;
    println!("doubled: {doubled:?}");
}
