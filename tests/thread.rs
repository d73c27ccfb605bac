//! Thread mode: results, panics, and an event loop that keeps running while a body blocks;
//! `f_map` over inputs, within its pool's limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use offload::{offload, Error, ThreadPool};

mod common;
use common::{assert_panicked, within};

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

// --- `f_map` ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_gives_each_input_its_own_result_at_every_size() {
    for count in [0usize, 1, 2, 3, 7, 31, 32, 33, 36, 37, 100, 1000, 5000] {
        let inputs = (0..count).map(|i| (i.to_string(), "!".to_owned()));
        let results = within("a map", concat_map(inputs).collect()).await;
        let expected: Vec<_> = (0..count).map(|i| Ok(format!("{i}!"))).collect();
        assert_eq!(results, expected, "{count} inputs");

        let mut map = concat_map((0..count).map(|i| (i.to_string(), String::new())));
        let mut seen = vec![false; count];
        while let Some((index, result)) = within("a map", map.next()).await {
            assert_eq!(result, Ok(index.to_string()));
            assert!(!std::mem::replace(&mut seen[index], true), "{index} twice");
        }
        assert!(seen.iter().all(|&s| s), "{count} inputs: one missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_fails_only_the_inputs_whose_calls_panic() {
    let results = within("a map", explode_map([0, 3, 0, 5]).collect()).await;
    assert_eq!((&results[0], &results[2]), (&Ok(0), &Ok(0)));
    assert_panicked(
        results[1].clone(),
        "thread::explode",
        "thread body failed on 3",
        "tests/thread.rs",
    );
    assert_panicked(
        results[3].clone(),
        "thread::explode",
        "thread body failed on 5",
        "tests/thread.rs",
    );
}

/// How many `held` calls run now, and the most that ever ran at once.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);
/// What `held` waits at: the calls of a test can only pass it together.
static MEET: Mutex<Option<Arc<Meeting>>> = Mutex::new(None);

/// A barrier that gives up: a call that waits longer than the liveness bound panics, so that a
/// map running too few calls at once fails its test instead of hanging it.
struct Meeting {
    size: usize,
    /// How many arrived in this round, and how many rounds met.
    state: Mutex<(usize, usize)>,
    met: Condvar,
}

impl Meeting {
    fn wait(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        if state.0 == self.size {
            *state = (0, state.1 + 1);
            self.met.notify_all();
            return;
        }
        let round = state.1;
        let (_state, waited) = self
            .met
            .wait_timeout_while(state, common::LIVENESS, |state| state.1 == round)
            .unwrap();
        assert!(
            !waited.timed_out(),
            "fewer than {} calls ran at once",
            self.size
        );
    }
}

#[offload(thread, pool = "held")]
fn held(input: usize) -> usize {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    let meeting = MEET.lock().unwrap().clone().unwrap();
    meeting.wait();
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    input
}

/// As `held`, on the default pool, which has no limit of its own.
#[offload(thread)]
fn held_on_the_default_pool(input: usize) -> usize {
    held_blocking(input)
}

/// `rounds` rounds of `together` calls that can only end by meeting: a map that ran fewer at
/// once would never end, and `MOST` tells whether it ran more.
async fn meet_in_rounds(together: usize, rounds: usize, default_pool: bool) -> usize {
    *MEET.lock().unwrap() = Some(Arc::new(Meeting {
        size: together,
        state: Mutex::new((0, 0)),
        met: Condvar::new(),
    }));
    MOST.store(0, Ordering::SeqCst);
    let inputs = 0..together * rounds;
    let map = if default_pool {
        held_on_the_default_pool_map(inputs)
    } else {
        held_map(inputs)
    };
    let results = within("a map that meets", map.collect()).await;
    assert_eq!(results, (0..together * rounds).map(Ok).collect::<Vec<_>>());
    MOST.load(Ordering::SeqCst)
}

// One test, since both maps share `held`'s counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_runs_as_many_calls_at_once_as_its_pool_allows_and_no_more() {
    ThreadPool::configure("held")
        .max_threads(3)
        .apply()
        .unwrap();
    assert_eq!(meet_in_rounds(3, 4, false).await, 3);
    // The default pool's maps run Python's `ThreadPoolExecutor` default at once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default = (cores + 4).min(32);
    assert_eq!(meet_in_rounds(default, 2, true).await, default);
}

/// Opened by the test once its calls timed out, so that no thread outlives it.
static GATE: Mutex<bool> = Mutex::new(false);
static OPENED: std::sync::Condvar = std::sync::Condvar::new();

#[offload(thread, timeout = "1s")]
fn wait_or_pass(wait: bool) -> bool {
    if wait {
        let open = GATE.lock().unwrap();
        // Bounded, so that a test that fails before opening it does not hang on this thread.
        drop(
            OPENED
                .wait_timeout_while(open, common::LIVENESS, |open| !*open)
                .unwrap(),
        );
    }
    wait
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_times_out_each_call_on_its_own() {
    let results = within("a map", wait_or_pass_map([false, true, false]).collect()).await;
    assert_eq!(results[0], Ok(false));
    assert!(
        matches!(results[1], Err(Error::Timeout { after, .. }) if after == Duration::from_secs(1)),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(false));
    *GATE.lock().unwrap() = true;
    OPENED.notify_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_whose_inputs_panic_resumes_the_panic_after_the_earlier_results() {
    common::assert_an_input_panic_resumes_after_the_earlier_results(|inputs| {
        explode_map(inputs.map(|_| 0))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_over_endless_inputs_takes_only_what_it_can_hold() {
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let endless = (0u32..).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let mut map = explode_map(endless.map(|_| 0));
    for _ in 0..100 {
        assert!(matches!(
            within("a map", map.next()).await,
            Some((_, Ok(0)))
        ));
    }
    drop(map);
    // Each of its (at most 32) drivers holds one input, and the channel twice as many results.
    let most = 100 + 32 * 4;
    assert!(taken.load(Ordering::SeqCst) <= most, "{taken:?}");
    assert_eq!(
        concat("still".into(), " serving".into()).await.unwrap(),
        "still serving"
    );
}

#[offload(thread)]
fn doubled(x: u64) -> u64 {
    x * 2
}

// Each map reads its inputs on a thread of its own: more maps at once than tokio has blocking
// threads (512) must not take the threads their own calls run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_maps_at_once_than_tokio_has_blocking_threads_all_end() {
    const MAPS: u64 = 600;
    let maps: Vec<_> = (0..MAPS)
        .map(|k| tokio::spawn(doubled_map((0..20u64).map(move |i| i + k)).collect()))
        .collect();
    within("600 maps at once", async {
        for (k, map) in (0..MAPS).zip(maps) {
            let expected: Vec<_> = (0..20u64).map(|i| Ok((i + k) * 2)).collect();
            assert_eq!(map.await.unwrap(), expected);
        }
    })
    .await;
}

// A map dropped while its iterator is blocked (on stdin, a socket) leaves its runtime free to
// shut down: the iterator's thread is not one the runtime waits for.
#[test]
fn a_runtime_shuts_down_while_a_dropped_maps_iterator_is_blocked() {
    let (release, released) = mpsc::channel::<()>();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let blocked = std::iter::from_fn(move || released.recv().ok().map(|()| 1u64));
        let mut map = doubled_map(blocked);
        let first = tokio::time::timeout(Duration::from_millis(50), map.next()).await;
        assert!(first.is_err(), "the iterator gave nothing yet: {first:?}");
    });
    let (done, dropped) = mpsc::channel();
    std::thread::spawn(move || {
        drop(runtime);
        let _ = done.send(());
    });
    let shut_down = dropped.recv_timeout(common::LIVENESS);
    // Lets the iterator's thread end.
    drop(release);
    assert!(
        shut_down.is_ok(),
        "the runtime waited for the blocked iterator"
    );
}
