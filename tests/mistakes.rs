//! Mistakes a newcomer makes, each answered by an error that says what to do.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use offload::{offload, CodecStage, Error};
use serde::{Deserialize, Serialize};

offload::test_setup!();

#[offload(process)]
fn triple(x: u32) -> u32 {
    x * 3
}

#[offload(thread)]
fn triple_on_a_thread(x: u32) -> u32 {
    x * 3
}

/// Polls a future once, outside any runtime.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    std::pin::pin!(future).poll(&mut context)
}

#[test]
fn awaiting_outside_a_tokio_runtime_is_one_clear_error_in_both_modes() {
    for (outcome, name) in [
        (poll_once(triple(1)), "mistakes::triple"),
        (
            poll_once(triple_on_a_thread(1)),
            "mistakes::triple_on_a_thread",
        ),
    ] {
        let Poll::Ready(Err(error)) = outcome else {
            panic!("{name}: expected an error at once, got {outcome:?}");
        };
        assert_eq!(error, Error::NoRuntime { function: name });
        let text = error.to_string();
        assert!(
            text.contains("outside a tokio runtime") && text.contains("_blocking"),
            "{text}"
        );
        // What `?` in `main` and `unwrap` print carries the fix too.
        let debug = format!("{error:?}");
        assert!(
            debug.contains("_blocking` from synchronous code"),
            "{debug}"
        );
    }
}

#[test]
fn mapping_outside_a_tokio_runtime_fails_each_input_with_the_same_error() {
    for (mut map, name) in [
        (triple_map(0..3), "mistakes::triple"),
        (triple_on_a_thread_map(0..3), "mistakes::triple_on_a_thread"),
    ] {
        let mut indices = Vec::new();
        while let Poll::Ready(Some((index, result))) = poll_once(map.next()) {
            assert_eq!(result, Err(Error::NoRuntime { function: name }));
            indices.push(index);
        }
        assert_eq!(indices, [0, 1, 2], "{name}");
        assert!(matches!(poll_once(map.next()), Poll::Ready(None)), "{name}");
    }
}

#[test]
fn a_missing_guard_says_how_to_fix_it_in_debug_output_too() {
    let debug = format!("{:?}", Error::GuardMissing);
    // The fix follows the name as text: nothing that reads like a field to match on.
    assert!(debug.starts_with("GuardMissing: "), "{debug}");
    assert!(debug.contains("#[offload::main]"), "{debug}");
    assert!(debug.contains("offload::test_setup!();"), "{debug}");
}

/// serde derives both traits, but the format cannot carry it: untagged enums read by asking
/// the format what comes next.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u32),
    Text(String),
}

#[offload(process)]
fn loose(value: u32) -> Loose {
    Loose::Number(value)
}

#[tokio::test]
async fn a_type_the_format_cannot_carry_is_named_in_the_error() {
    let error = loose(3).await.unwrap_err();
    let Error::Codec { stage, detail, .. } = &error else {
        panic!("expected a codec error, got {error:?}");
    };
    assert_eq!(*stage, CodecStage::DecodeResult);
    assert!(
        detail.starts_with("`mistakes::Loose` cannot travel")
            && detail.contains("not self-describing")
            && detail.contains("untagged"),
        "{detail}"
    );
    // Its source is postcard's error, shown as such; no wrapper of ours in the way.
    let debug = format!("{error:?}");
    assert!(
        debug.contains("source: WontImplement") && !debug.contains("Source("),
        "{debug}"
    );
}

#[offload(process)]
fn loose_argument(value: Loose) -> u32 {
    match value {
        Loose::Number(n) => n,
        Loose::Text(_) => 0,
    }
}

#[tokio::test]
async fn such_a_type_as_an_argument_is_named_too() {
    let error = loose_argument(Loose::Number(1)).await.unwrap_err();
    let Error::Codec { stage, detail, .. } = &error else {
        panic!("expected a codec error, got {error:?}");
    };
    assert_eq!(*stage, CodecStage::DecodeArguments);
    assert!(
        detail.starts_with("`mistakes::Loose` cannot travel"),
        "{detail}"
    );
}

#[offload(process, pool = "heavy")]
fn heavy(x: u32) -> u32 {
    x
}

#[tokio::test]
async fn configuring_a_pool_no_function_uses_names_the_pools_in_use() {
    // A typo of `heavy`: without the error, the settings would change nothing that runs.
    for result in [
        offload::ProcessPool::configure("haevy").workers(8).apply(),
        offload::ProcessPool::get("haevy").map(drop),
    ] {
        let Err(error @ Error::Config { .. }) = &result else {
            panic!("{result:?}");
        };
        let said = error.to_string();
        assert!(
            said.contains("`haevy`") && said.contains("`heavy`") && said.contains("pool = "),
            "{said}"
        );
    }
    // The pool a function uses is configured as before.
    offload::ProcessPool::configure("heavy")
        .workers(1)
        .apply()
        .unwrap();
    assert_eq!(heavy(2).await, Ok(2));
    assert_eq!(offload::ProcessPool::get("heavy").unwrap().workers(), 1);
}
