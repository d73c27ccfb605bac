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
