//! Calls through a broker pool and agents: every outcome, payloads from empty to 64 MiB,
//! `f_map`, pools nobody serves, and builds side by side.

#![cfg(target_os = "linux")]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use offload::{BrokerPool, Error};
use offload_test_broker::*;

offload::test_setup!();

/// One server for this binary's tests; each test serves its own pools with its own agents.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = Server::start("calls");
        for pool in [
            "outcomes", "crowd", "big", "maps", "nobody", "builds", "hostile",
        ] {
            BrokerPool::configure(pool)
                .url(&server.url)
                .apply()
                .unwrap();
        }
        server
    })
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIVENESS, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {LIVENESS:?}"))
}

#[tokio::test]
async fn every_outcome_comes_back_through_an_agent_as_it_would_from_a_local_worker() {
    let server = server();
    let agent = Agent::start(server, &["outcomes"], 2);
    within("outcomes", async {
        assert_eq!(end(0).await, Ok(Ok(7)));
        assert_eq!(end(1).await, Ok(Err("no".to_string())));
        match end(2).await {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "boom 2"),
            other => panic!("expected a panic, got {other:?}"),
        }
        match end(3).await {
            Err(Error::WorkerDied { exit, .. }) => {
                assert_eq!(exit, offload::Exit::Signal(libc::SIGABRT))
            }
            other => panic!("expected the worker's death, got {other:?}"),
        }
        match end(4).await {
            Err(Error::WorkerDied { exit, .. }) => assert_eq!(exit, offload::Exit::Code(3)),
            other => panic!("expected the worker's exit, got {other:?}"),
        }
        match untagged().await {
            Err(Error::Codec { stage, .. }) => {
                assert_eq!(stage, offload::CodecStage::DecodeResult)
            }
            other => panic!("expected a codec error, got {other:?}"),
        }
        // The agent served on after all that, from plain workers of its own.
        let (pid, told_to_be_agent, _) = whoami().await.unwrap();
        assert_ne!(pid, agent.pid);
        assert!(
            !told_to_be_agent,
            "an agent's worker must not become an agent"
        );
        for size in [0, 1, 1000, 100_000] {
            let bytes: Vec<u8> = (0..size).map(|i| i as u8).collect();
            assert_eq!(echo(bytes.clone()).await.unwrap().0, bytes);
        }
    })
    .await;
}

#[tokio::test]
async fn an_agent_refuses_hostile_messages_one_by_one_and_serves_on() {
    use offload::async_nats::{self, jetstream, HeaderMap};
    let server = server();
    let agent = Agent::start(server, &["hostile"], 1);
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = jetstream::new(client.clone());
    let subject = format!("offload.call.hostile.{}", agent.build);
    // The function's name and fingerprint as a real call carries them, seen on the wire.
    let mut calls = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(within("a first call", plain(1)).await, Ok(2));
    let real = within("the call seen", futures_util::StreamExt::next(&mut calls))
        .await
        .unwrap();
    let real = real.headers.unwrap().get("Offload-Fn").unwrap().to_string();
    let function = |name: &str| match name {
        "plain" => real.clone(),
        other => format!("{other}#{:016x}", 0x1234u64),
    };
    // A frame header that announces 4 GiB, and bytes that are no frame at all.
    let mut huge = vec![0xff, 0xff, 0xff, 0xff, 2];
    huge.extend([0; 8]);
    let hostile: [(Option<String>, &[u8]); 5] = [
        (
            Some(function("offload_test_broker::no_such_function")),
            b"\x01",
        ),
        (Some(function("offload_test_broker::plain")), b"\x01"),
        (Some("no fingerprint".into()), b""),
        (Some(function("plain")), &huge),
        (Some(function("plain")), b"garbage"),
    ];
    let inbox = client.new_inbox();
    let mut events = client.subscribe(format!("{inbox}.*")).await.unwrap();
    for (i, (name, body)) in hostile.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Offload-Reply", format!("{inbox}.{i}").as_str());
        if let Some(name) = name {
            headers.insert("Offload-Fn", name.as_str());
        }
        js.publish_with_headers(subject.clone(), headers, body.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // One without a reply subject, which nobody can be told about.
    js.publish(subject.clone(), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    within("the refusals", async {
        use futures_util::StreamExt;
        let mut refused = std::collections::BTreeSet::new();
        while refused.len() < hostile.len() {
            let event = events.next().await.unwrap();
            // A refusal that took the agent a few milliseconds is first said to be taken.
            if event.payload[0] == b'M' {
                continue;
            }
            assert_eq!(event.payload[0], b'F', "a refusal, not {:?}", event.payload);
            refused.insert(event.subject.to_string());
        }
    })
    .await;
    assert_eq!(within("a call after them", plain(1)).await, Ok(2));
    let left = within("the queue", left_in_queue(server, "hostile")).await;
    assert_eq!(left, 0, "every hostile message was removed");
}

#[tokio::test]
async fn calls_started_together_share_messages_and_each_gets_its_own_outcome() {
    let server = server();
    let _agents = [
        Agent::start(server, &["crowd"], 2),
        Agent::start(server, &["crowd"], 2),
    ];
    within("calls at once", async {
        for count in [1usize, 4, 5, 63, 64, 65, 129, 700] {
            // Mostly values and errors, a panic now and then, and a worker crash in a few.
            let how = |i: usize| match i % 50 {
                7 => 2,
                23 if i < 300 => 3,
                _ => (i % 2) as u8,
            };
            let calls: Vec<_> = (0..count)
                .map(|i| tokio::spawn(end_crowd(how(i))))
                .collect();
            for (i, call) in calls.into_iter().enumerate() {
                let result = call.await.unwrap();
                match how(i) {
                    0 => assert_eq!(result, Ok(Ok(7)), "call {i} of {count}"),
                    1 => assert_eq!(result, Ok(Err("no".into())), "call {i} of {count}"),
                    2 => assert!(matches!(result, Err(Error::Panicked { .. })), "{result:?}"),
                    _ => assert!(
                        matches!(result, Err(Error::WorkerDied { .. })),
                        "{result:?}"
                    ),
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn arguments_and_results_of_any_size_cross_through_the_object_store_when_large() {
    let server = server();
    let _agent = Agent::start(server, &["big"], 1);
    within("large payloads", async {
        for size in [0, 900 << 10, 1 << 20, 2 << 20, 64 << 20] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sum = bytes
                .iter()
                .fold(0u64, |sum, &b| sum.rotate_left(5) ^ u64::from(b));
            let back = size / 2;
            let got = digest(bytes, back).await.unwrap();
            assert_eq!(
                (got.len, got.sum, got.back.len()),
                (size, sum, back),
                "size {size}"
            );
        }
    })
    .await;
    // Nothing stays behind in the object store once the calls are answered.
    within("the store emptied", async {
        use offload::async_nats::jetstream;
        let client = offload::async_nats::connect(&server.url).await.unwrap();
        let js = jetstream::new(client);
        let store = js.get_object_store("OFFLOAD_DATA").await.unwrap();
        let started = Instant::now();
        loop {
            use futures_util::StreamExt;
            let left = store.list().await.unwrap().count().await;
            if left == 0 {
                break;
            }
            assert!(
                started.elapsed() < LIVENESS,
                "{left} objects left in the store"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn f_map_runs_many_inputs_several_to_a_message_and_fails_only_the_bad_one() {
    let server = server();
    let _agents = [
        Agent::start(server, &["maps"], 2),
        Agent::start(server, &["maps"], 2),
    ];
    within("maps", async {
        for count in [1u64, 2, 15, 16, 17, 63, 64, 65, 129, 500, 5000] {
            let results = square_map(0..count).collect().await;
            assert_eq!(results.len(), count as usize);
            for (x, result) in results.into_iter().enumerate() {
                match result {
                    Ok(square) => assert_eq!(square, (x * x) as u64),
                    Err(Error::Panicked { .. }) if x == 13 => {}
                    other => panic!("input {x}: {other:?}"),
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_pool_no_agent_serves_fails_its_calls_within_seconds_and_leaves_nothing_queued() {
    let server = server();
    let started = Instant::now();
    let results = within("no agents", async {
        let calls: Vec<_> = (0..20).map(|_| tokio::spawn(unserved())).collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        results
    })
    .await;
    for result in results {
        assert!(
            matches!(&result, Err(Error::NoWorkers { pool, others, .. }) if pool == "nobody" && others.is_empty()),
            "{result:?}"
        );
    }
    eprintln!("NoWorkers after {:?}", started.elapsed());
    // Withdrawn: an agent that comes later finds nothing of them.
    let agent = Agent::start(server, &["nobody"], 1);
    assert_eq!(left_in_queue(server, "nobody").await, 0);
    drop(agent);
}

#[tokio::test]
async fn calls_go_only_to_agents_of_the_same_build() {
    let server = server();
    // Another build: this test binary with one byte more, so its executable hashes otherwise.
    let dir = scratch("builds");
    let other = dir.join("other-build");
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _stranger = Agent::start_program(&other, server, &["builds"], 2);
    // With only the other build's agent up, nothing of ours runs: the call is withdrawn.
    let lone = within("another build only", program()).await;
    let Err(error @ Error::NoWorkers { build, others, .. }) = &lone else {
        panic!("{lone:?}");
    };
    // It names this program's build, which an agent prints as it starts, to compare, and the
    // build whose agent does serve the pool.
    assert!(
        build.len() == 16 && build.chars().all(|c| c.is_ascii_hexdigit()),
        "{build}"
    );
    assert_eq!(others.len(), 1, "{error}");
    assert_ne!(&others[0], build);
    let said = error.to_string();
    assert!(
        said.contains(&format!("({build})")) && said.contains(&others[0]),
        "{said}"
    );
    let _ours = Agent::start(server, &["builds"], 1);
    let ours = std::fs::read_link("/proc/self/exe").unwrap();
    for _ in 0..20 {
        assert_eq!(within("our build", program()).await.unwrap(), ours);
    }
}
