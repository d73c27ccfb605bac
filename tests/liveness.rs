//! Every call ends, whatever the sizes: calls and replies from 0 B to 4 MiB, one at a time or
//! piled up in batches, alone or through `f_map`, each round bounded by a liveness timeout.
//!
//! The sizes in between are where a caller and a worker can wait on each other: a batch of
//! calls larger than the calls pipe, whose replies fill the reply pipe before the caller has
//! finished writing.

use offload::{offload, ProcessPool};

offload::test_setup!();

mod common;
use common::{within, Random};

/// Returns `len` bytes derived from the argument, so that both directions carry real data.
#[offload(process, pool = "sizes")]
fn reshape(bytes: Vec<u8>, len: usize) -> Vec<u8> {
    let seed = bytes.iter().fold(len as u8, |a, &b| a.wrapping_add(b));
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn expected(bytes: &[u8], len: usize) -> Vec<u8> {
    reshape_blocking(bytes.to_vec(), len)
}

#[offload(process, pool = "echo")]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// A size from 0 B to 4 MiB, spread evenly over the orders of magnitude.
fn size(random: &mut Random) -> usize {
    match random.below(8) {
        0 => 0,
        _ => {
            let bits = random.below(23) as u32;
            (1usize << bits) + random.below(1 << bits) as usize
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_every_size_piled_up_in_batches_all_end() {
    // Either test may be first to use the pool; the other finds it configured.
    ProcessPool::configure("sizes").workers(2).apply().ok();
    let mut random = Random(0x5eed_1234_abcd_0001);
    for round in 0..24 {
        // Rounds of 1 to 32 calls at once: with two workers, queued calls go out in batches.
        let count = 1 + random.below(32) as usize;
        let calls: Vec<(Vec<u8>, usize)> = (0..count)
            .map(|_| (vec![round as u8; size(&mut random)], size(&mut random)))
            .collect();
        let handles: Vec<_> = calls
            .iter()
            .cloned()
            .map(|(bytes, len)| tokio::spawn(reshape(bytes, len)))
            .collect();
        let sizes: Vec<(usize, usize)> = calls.iter().map(|(b, l)| (b.len(), *l)).collect();
        within(&format!("round {round}, sizes {sizes:?}"), async {
            for (handle, (bytes, len)) in handles.into_iter().zip(&calls) {
                let got = handle.await.unwrap().unwrap();
                assert_eq!(got.len(), *len);
                assert!(got == expected(bytes, *len), "wrong bytes for {len}");
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_of_every_size_and_chunk_all_end() {
    ProcessPool::configure("sizes").workers(2).apply().ok();
    let mut random = Random(0x5eed_1234_abcd_0002);
    for round in 0..16 {
        let count = 1 + random.below(48) as usize;
        let chunk = 1 + random.below(32) as usize;
        let calls: Vec<(Vec<u8>, usize)> = (0..count)
            .map(|_| {
                (
                    vec![round as u8; size(&mut random) / 4],
                    size(&mut random) / 4,
                )
            })
            .collect();
        let results = within(&format!("map round {round}, chunk {chunk}"), {
            reshape_map(calls.clone()).chunk_size(chunk).collect()
        })
        .await;
        assert_eq!(results.len(), calls.len());
        for (result, (bytes, len)) in results.into_iter().zip(&calls) {
            assert!(result.unwrap() == expected(bytes, *len));
        }
    }
}

/// The reported cases: 64 calls of 100 kB at once on the default batching, and a map of 32
/// inputs of 50 kB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_calls_of_100_kb_and_a_map_of_50_kb_inputs_end() {
    ProcessPool::configure("echo").workers(2).apply().unwrap();
    let handles: Vec<_> = (0..64)
        .map(|_| tokio::spawn(echo(vec![7u8; 100_000])))
        .collect();
    within("64 calls of 100 kB", async {
        for handle in handles {
            assert_eq!(handle.await.unwrap().unwrap(), vec![7u8; 100_000]);
        }
    })
    .await;
    let all = within(
        "a map of 32 × 50 kB",
        echo_map((0..32).map(|_| vec![1u8; 50_000])).collect(),
    )
    .await;
    assert!(all.into_iter().all(|r| r.unwrap() == vec![1u8; 50_000]));
}

#[offload(process, pool = "slow-inputs")]
fn double(x: u64) -> u64 {
    x * 2
}

#[offload(thread)]
fn double_on_a_thread(x: u64) -> u64 {
    x * 2
}

/// Inputs that each wait for the event loop to hand them over: `asked` counts the inputs the
/// iterator is waiting for, and `release` gives it one. An iterator run on the event loop's own
/// thread would wait there for a task that can then never run.
fn handed_over(
    count: u64,
) -> (
    impl Iterator<Item = u64> + Send + 'static,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::mpsc::Sender<()>,
) {
    use std::sync::atomic::Ordering;
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (release, released) = std::sync::mpsc::channel();
    let waiting = asked.clone();
    let inputs = (0..count).inspect(move |_| {
        waiting.fetch_add(1, Ordering::SeqCst);
        released
            .recv_timeout(common::LIVENESS)
            .expect("the event loop handed the input over");
    });
    (inputs, asked, release)
}

/// Hands each input over once the iterator waits for it, from a task on the event loop.
async fn hand_over(
    count: u64,
    asked: &std::sync::atomic::AtomicU64,
    release: std::sync::mpsc::Sender<()>,
) {
    for given in 0..count {
        while asked.load(std::sync::atomic::Ordering::SeqCst) <= given {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
    }
}

// The caller's iterator may be slow (the lines of a file, a database cursor): a map reads it
// off the event loop, in both modes, even on a runtime of one thread.
#[tokio::test(flavor = "current_thread")]
async fn a_map_reads_a_slow_iterator_off_the_event_loop() {
    const COUNT: u64 = 5;
    let (inputs, asked, release) = handed_over(COUNT);
    let (results, ()) = tokio::join!(
        double_map(inputs).collect(),
        hand_over(COUNT, &asked, release)
    );
    assert_eq!(results, (0..COUNT).map(|i| Ok(i * 2)).collect::<Vec<_>>());
    let (inputs, asked, release) = handed_over(COUNT);
    let (results, ()) = tokio::join!(
        double_on_a_thread_map(inputs).collect(),
        hand_over(COUNT, &asked, release)
    );
    assert_eq!(results, (0..COUNT).map(|i| Ok(i * 2)).collect::<Vec<_>>());
}

#[offload(process, pool = "hostage")]
fn same(x: u64) -> u64 {
    x
}

// A map whose caller stops reading it keeps no worker: the results it has no room for wait on
// the caller's side, and a plain call to the same pool of one worker runs meanwhile.
#[tokio::test]
async fn a_map_nobody_reads_leaves_its_pool_free_for_other_calls() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    ProcessPool::configure("hostage")
        .workers(1)
        .apply()
        .unwrap();
    let taken = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let inputs = (0..40u64).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let mut map = same_map(inputs).chunk_size(1);
    let (_, first) = within("the map's first result", map.next()).await.unwrap();
    assert!(first.is_ok(), "{first:?}");
    // Unread, the map stops where it has no room: 1 result read, 4 in its channel (4 × the
    // chunk), 1 more on its way out, 1 input ready and 1 taken by the iterator's thread.
    common::wait_for(|| (taken.load(Ordering::SeqCst) >= 8).then_some(())).await;
    assert_eq!(within("a plain call beside it", same(99)).await, Ok(99));
    let mut rest: Vec<u64> = Vec::new();
    while let Some((_, result)) = within("the map's other results", map.next()).await {
        rest.push(result.unwrap());
    }
    assert_eq!(rest.len(), 39);
}
