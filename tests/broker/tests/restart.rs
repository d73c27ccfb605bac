//! The broker killed and restarted while calls are queued and running: nothing queued is
//! lost, and callers and agents carry on once it is back. A binary of its own, since it takes
//! the server down.

#![cfg(target_os = "linux")]

use offload::BrokerPool;
use offload_test_broker::*;

offload::test_setup!();

#[tokio::test]
async fn calls_queued_when_the_broker_restarts_all_run_once_it_is_back() {
    let mut server = Server::start("restart");
    BrokerPool::configure("restart")
        .url(&server.url)
        .apply()
        .unwrap();
    let dir = scratch("restart");
    let _agent = Agent::start(&server, &["restart"], 1);
    let running = tokio::spawn(hold_restart(dir.clone(), "running".into(), 1500));
    until("the first call started", || {
        !started(&dir, "running").is_empty()
    })
    .await;
    let queued: Vec<_> = (0..8)
        .map(|i| tokio::spawn(hold_alone(dir.clone(), format!("q{i}"), 10)))
        .collect();
    // All of them stored on the server (the running one until it is acknowledged).
    let since = std::time::Instant::now();
    while left_in_queue(&server, "restart").await < 9 {
        assert!(since.elapsed() < LIVENESS, "the calls were not queued");
        tokio::task::yield_now().await;
    }
    server.restart();
    let answer = tokio::time::timeout(LIVENESS, running)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    for (i, call) in queued.into_iter().enumerate() {
        let answer = tokio::time::timeout(LIVENESS, call).await.unwrap().unwrap();
        assert!(answer.is_ok(), "q{i}: {answer:?}");
        assert_eq!(started(&dir, &format!("q{i}")).len(), 1, "q{i} ran once");
    }
    // And new calls run as before.
    let pid = tokio::time::timeout(LIVENESS, hold_restart(dir.clone(), "after".into(), 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started(&dir, "after"), vec![pid]);
}
