//! A test binary's workers run the setup named in `test_setup!`, once each, before their first
//! call; the state it makes serves every call on that worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use offload::offload;

static SETUPS: AtomicU32 = AtomicU32::new(0);
static STATE: OnceLock<String> = OnceLock::new();

fn setup() {
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
