//! A test crate calling process-mode functions that a library crate defines.

offload::test_setup!();

#[tokio::test]
async fn a_test_calls_functions_defined_in_a_library_crate() {
    assert_eq!(offload_test_app::square(9).await, Ok(81));
}

#[tokio::test]
async fn each_test_runtime_shares_the_same_pool() {
    for n in 0..20 {
        assert_eq!(offload_test_app::square(n).await, Ok(n * n));
    }
}

/// Only this test binary has this function, so the `with_guard` program, built from the same
/// library but without it, is a worker "built from different sources".
#[offload::offload(process, pool = "foreign")]
fn only_here() -> u8 {
    1
}

#[tokio::test]
async fn a_worker_built_from_different_sources_is_refused_at_its_handshake() {
    offload::ProcessPool::configure("foreign")
        .workers(1)
        .program(env!("CARGO_BIN_EXE_with_guard"))
        .apply()
        .unwrap();
    let error = only_here().await.unwrap_err();
    assert!(
        matches!(&error, offload::Error::VersionMismatch { detail } if detail.contains("only_here")),
        "{error:?}"
    );
    assert_eq!(
        only_here().await.unwrap_err(),
        error,
        "later calls fail fast with the same error"
    );
}
