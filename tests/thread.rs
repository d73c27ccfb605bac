//! Thread mode: results, panics, and an event loop that keeps running while a body blocks.

use std::sync::mpsc;
use std::time::Duration;

use offload::offload;

mod common;
use common::assert_panicked;

#[offload(thread)]
fn concat(a: String, b: String) -> String {
    a + &b
}

#[offload(thread)]
fn thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

#[offload(thread)]
fn fail(flag: bool) -> Result<u8, String> {
    if flag {
        Err("refused".to_owned())
    } else {
        Ok(1)
    }
}

#[offload(thread)]
fn explode(value: u32) -> u32 {
    if value > 0 {
        panic!("thread body failed on {value}");
    }
    value
}

/// Blocks its thread until the event loop sends a message.
#[offload(thread)]
fn wait_for(messages: mpsc::Receiver<&'static str>) -> &'static str {
    messages.recv().unwrap()
}

#[tokio::test]
async fn results_come_back() {
    assert_eq!(concat("a".into(), "b".into()).await, Ok("ab".to_owned()));
    assert_eq!(fail(true).await, Ok(Err("refused".to_owned())));
    assert_eq!(fail(false).await, Ok(Ok(1)));
    assert_eq!(concat_blocking("x".into(), "y".into()), "xy");
}

#[tokio::test]
async fn the_body_runs_off_the_event_loop_thread() {
    let here = std::thread::current().name().map(str::to_owned);
    assert_ne!(thread_name().await.unwrap(), here);
}

// On a single-threaded runtime the message can only be sent if the blocked body left the event
// loop free.
#[tokio::test(flavor = "current_thread")]
async fn a_blocked_body_leaves_the_event_loop_free() {
    let (send, receive) = mpsc::channel();
    let call = tokio::spawn(wait_for(receive));
    tokio::task::yield_now().await;
    send.send("released").unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("liveness");
    assert_eq!(answer.unwrap(), Ok("released"));
}

#[tokio::test]
async fn a_panic_becomes_an_error_and_the_pool_keeps_serving() {
    assert_panicked(
        explode(7).await,
        "thread::explode",
        "thread body failed on 7",
        "tests/thread.rs",
    );
    assert_eq!(explode(0).await, Ok(0));
}
