//! A full queue: calls beyond the broker's `max_messages` fail at once with `QueueFull`, the
//! others run, and nothing hangs. A binary of its own, since the limit is the stream's.

#![cfg(target_os = "linux")]

use offload::{BrokerPool, Error};
use offload_test_broker::*;

offload::test_setup!();

#[tokio::test]
async fn calls_beyond_a_full_queue_fail_at_once_and_the_rest_run() {
    let server = Server::start("queue");
    BrokerPool::configure("restart")
        .url(&server.url)
        .max_messages(10)
        .apply()
        .unwrap();
    // The caller creates the queue, or brings its limit to one an agent created.
    BrokerPool::get("restart").unwrap().start().await.unwrap();
    let dir = scratch("queue");
    let agent = Agent::start(&server, &["restart"], 1);
    // The agent's one worker is busy, and it holds no more than that one call.
    let busy = tokio::spawn(hold_restart(dir.clone(), "busy".into(), 3000));
    until("the busy call started", || {
        !started(&dir, "busy").is_empty()
    })
    .await;
    let calls: Vec<_> = (0..40)
        .map(|i| tokio::spawn(hold_alone(dir.clone(), format!("c{i}"), 0)))
        .collect();
    let mut ran = 0;
    let mut full = 0;
    for call in calls {
        match tokio::time::timeout(LIVENESS, call).await.unwrap().unwrap() {
            Ok(_) => ran += 1,
            Err(Error::QueueFull { .. }) => full += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    // Ten fit the queue, the busy call's among them until its agent acknowledges it.
    assert_eq!((ran, full), (9, 31));
    assert!(busy.await.unwrap().is_ok());
    drop(agent);
}
