//! Compile-time behaviour of the attributes: each misuse in `fail/` fails with the error recorded
//! next to it in a `.stderr` file. After an intended change to an error, regenerate with
//! `TRYBUILD=overwrite cargo test -p offload-ui --test ui` and review every changed `.stderr`.
//!
//! The supported shapes in `pass/` are test programs of this package (see its Cargo.toml), built
//! with the rest of the workspace: trybuild would build each of them alone, after a `cargo clean`,
//! and the compile-fail cases with them, where alone it checks them all in one `cargo check`.

#[test]
fn misuses_fail_with_their_recorded_errors() {
    trybuild::TestCases::new().compile_fail("fail/*.rs");
}
