//! Results and errors seen through the standard traits: `f_map`'s `Map` is a `Stream` that
//! stream combinators consume, and `Error::source` gives the error behind a failure.

use std::collections::BTreeSet;
use std::error::Error as _;
use std::time::Duration;

use futures_util::stream::{FusedStream, Stream, StreamExt};
use offload::{offload, CodecStage, Error, ProcessPool};

offload::test_setup!();

mod common;
use common::{Undecodable, Unencodable, LIVENESS};

#[offload(process)]
fn triple(x: u64) -> u64 {
    x * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_is_a_stream_that_yields_each_input_once() {
    let results = triple_map(0..300u64).chunk_size(8);
    assert_eq!(results.size_hint(), (300, Some(300)));
    let checked = results.map(|(index, result)| {
        assert_eq!(result, Ok(index as u64 * 3));
        index
    });
    let mut indices = tokio::time::timeout(LIVENESS, checked.collect::<Vec<_>>())
        .await
        .expect("liveness");
    indices.sort_unstable();
    assert_eq!(indices, (0..300).collect::<Vec<_>>());

    // `StreamExt::next` needs `Unpin`; once every result is out the stream stays ended.
    let mut results = triple_map(0..50u64);
    let mut seen = BTreeSet::new();
    let read = async {
        while let Some((index, result)) = StreamExt::next(&mut results).await {
            assert_eq!(result, Ok(index as u64 * 3));
            assert!(seen.insert(index), "index {index} came twice");
            assert_eq!(
                results.size_hint(),
                (50 - seen.len(), Some(50 - seen.len()))
            );
        }
    };
    tokio::time::timeout(LIVENESS, read)
        .await
        .expect("liveness");
    assert_eq!(seen, (0..50).collect());
    assert!(results.is_terminated());
    assert_eq!(StreamExt::next(&mut results).await, None);
}

#[offload(process, pool = "abandoned")]
fn nap(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    millis
}

// The two quick inputs come out first; the calls behind them would outlast the liveness bound
// on both workers, so the pool answers again only if dropping the stream cancelled them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_partly_read_stream_cancels_the_calls_left() {
    ProcessPool::configure("abandoned")
        .workers(2)
        .apply()
        .unwrap();
    let inputs = (0..20).map(|i| if i < 2 { 0 } else { 600_000 });
    let taken = nap_map(inputs)
        .chunk_size(1)
        .take(2)
        .map(|(index, result)| {
            assert_eq!(result, Ok(0));
            index
        })
        .collect::<BTreeSet<_>>();
    let taken = tokio::time::timeout(LIVENESS, taken)
        .await
        .expect("liveness");
    assert_eq!(taken, BTreeSet::from([0, 1]));
    let again = tokio::time::timeout(LIVENESS, nap(1))
        .await
        .expect("the calls of the dropped stream still hold the workers");
    assert_eq!(again, Ok(1));
}

#[offload(process)]
fn make_undecodable() -> Undecodable {
    Undecodable
}

#[offload(process)]
fn take_unencodable(_value: Unencodable) -> u8 {
    1
}

/// The `postcard::Error` behind `error`, which must be a codec failure at `stage`.
fn postcard_source(error: &Error, stage: CodecStage) -> postcard::Error {
    let Error::Codec {
        stage: failed,
        detail,
        ..
    } = error
    else {
        panic!("not a codec failure: {error:?}");
    };
    assert_eq!(*failed, stage, "{error:?}");
    let source = error
        .source()
        .unwrap_or_else(|| panic!("no source: {error:?}"))
        .downcast_ref::<postcard::Error>()
        .unwrap_or_else(|| panic!("not postcard's error: {error:?}"));
    assert!(detail.starts_with(&source.to_string()), "{detail}");
    source.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_failure_on_this_side_has_postcards_error_as_its_source() {
    let error = make_undecodable().await.unwrap_err();
    let source = postcard_source(&error, CodecStage::DecodeResult);
    assert_eq!(source, postcard::Error::SerdeDeCustom);
    assert_eq!(error.clone(), error);

    let results = take_unencodable_map([Unencodable]).collect().await;
    let [Err(error)] = &results[..] else {
        panic!("{results:?}");
    };
    let source = postcard_source(error, CodecStage::EncodeArguments);
    assert_eq!(source, postcard::Error::SerdeSerCustom);
}

#[offload(process, pool = "nowhere")]
fn nowhere() -> u8 {
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_be_run_has_the_systems_error_as_its_source() {
    ProcessPool::configure("nowhere")
        .workers(1)
        .program("/nonexistent/path")
        .apply()
        .unwrap();
    let error = tokio::time::timeout(LIVENESS, nowhere())
        .await
        .expect("liveness")
        .unwrap_err();
    assert!(matches!(error, Error::WorkerStart { .. }), "{error:?}");
    let source = error
        .source()
        .unwrap_or_else(|| panic!("no source: {error:?}"))
        .downcast_ref::<std::io::Error>()
        .unwrap_or_else(|| panic!("not the system's error: {error:?}"));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{error:?}");
    assert_eq!(error.clone(), error);
}
