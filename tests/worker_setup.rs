//! A test binary's workers run the setup named in `test_setup!`, once each, before their first
//! call; the state it makes serves every call on that worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use offload::offload;

static SETUPS: AtomicU32 = AtomicU32::new(0);
static STATE: OnceLock<String> = OnceLock::new();

/// While this file exists, the setup takes a second.
const SLOW: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/worker-setup-slow");

fn setup() {
    if std::path::Path::new(SLOW).exists() {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    SETUPS.fetch_add(1, Ordering::Relaxed);
    STATE.get_or_init(|| format!("made by {}", std::process::id()));
}

offload::test_setup!(worker_init = setup);

/// This worker's pid, how many times its setup ran, and the state the setup made.
#[offload(process)]
fn state() -> (u32, u32, Option<String>) {
    (
        std::process::id(),
        SETUPS.load(Ordering::Relaxed),
        STATE.get().cloned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_runs_the_setup_once_and_keeps_its_state() {
    let calls: Vec<_> = (0..20).map(|_| tokio::spawn(state())).collect();
    for call in calls {
        let (pid, setups, state) = call.await.unwrap().unwrap();
        assert_eq!(setups, 1, "worker {pid}");
        assert_eq!(state, Some(format!("made by {pid}")));
    }
    assert_eq!(
        SETUPS.load(Ordering::Relaxed),
        0,
        "the caller runs no worker setup"
    );
}

#[offload(process, pool = "hurried")]
fn hurried() -> u32 {
    std::process::id()
}

// A setup that takes longer than the pool allows for the handshake is the likelier cause where
// there is one: the error names it and the setting that gives it longer.
#[tokio::test]
async fn a_handshake_past_its_timeout_names_the_setup_and_the_setting() {
    offload::ProcessPool::configure("hurried")
        .handshake_timeout(std::time::Duration::from_millis(100))
        .apply()
        .unwrap();
    std::fs::write(SLOW, b"").unwrap();
    let result = hurried().await;
    std::fs::remove_file(SLOW).unwrap();
    let Err(error @ offload::Error::WorkerStart { .. }) = &result else {
        panic!("{result:?}");
    };
    let said = error.to_string();
    assert!(
        said.contains("`setup`") && said.contains("handshake_timeout"),
        "{said}"
    );
}
