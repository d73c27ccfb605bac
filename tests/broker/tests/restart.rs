//! The broker killed and restarted while calls are queued and running: nothing queued is
//! lost, and callers and agents carry on once it is back; and an agent told to stop while the
//! broker is down stops. A binary of its own, since it takes servers down.

#![cfg(target_os = "linux")]

use offload::{BrokerPool, Error};
use offload_test_broker::*;

offload::test_setup!();

/// A server of the test's own, and `pool` configured to use it.
fn server_for(name: &str, pool: &str) -> Server {
    let server = Server::start(name);
    BrokerPool::configure(pool)
        .url(&server.url)
        .apply()
        .unwrap();
    server
}

#[tokio::test]
async fn calls_queued_when_the_broker_restarts_all_run_once_it_is_back() {
    let mut server = server_for("restart", "restart");
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

#[tokio::test]
async fn an_idle_agent_told_to_stop_while_the_broker_is_down_stops() {
    let mut server = Server::start("offline");
    let mut agent = Agent::start(&server, &["restart"], 1);
    server.kill();
    agent.signal(libc::SIGTERM);
    // `wait` fails the test if the agent is still there after the liveness bound; it used to
    // wait for the broker to come back.
    let status = tokio::task::spawn_blocking(move || agent.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_call_with_a_timeout_gives_up_on_a_broker_that_is_down_within_its_timeout() {
    let mut server = server_for("down", "timed");
    // Connected first, so that it is the broker that goes, not a connection never made.
    BrokerPool::get("timed").unwrap().start().await.unwrap();
    server.kill();
    // `hold_timed` has a 1.5 s timeout; a call used to try for 30 s, past this bound.
    let result = tokio::time::timeout(LIVENESS, hold_timed(scratch("down"), "d".into(), 0))
        .await
        .expect("no answer within the liveness bound");
    assert!(
        matches!(&result, Err(Error::Broker { detail }) if detail.contains("down or unreachable")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_call_running_through_an_outage_comes_back_though_its_agent_reconnects_late() {
    let mut server = server_for("outage", "lost");
    let dir = scratch("outage");
    let agent = Agent::start(&server, &["lost"], 1);
    let call = tokio::spawn(hold(dir.clone(), "o".into(), 6000));
    until("the call started", || !started(&dir, "o").is_empty()).await;
    // The broker is down for longer than a lost agent's silence; once it is back, this side
    // reconnects at once, while the agent, frozen, comes back seconds later, as one whose
    // client is backing off would. (The waits are the outage's shape, not synchronisation.)
    server.kill();
    agent.signal(libc::SIGSTOP);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    server.restart();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    agent.signal(libc::SIGCONT);
    let answer = tokio::time::timeout(LIVENESS, call).await.unwrap().unwrap();
    assert_eq!(answer, Ok(started(&dir, "o")[0]));
}
