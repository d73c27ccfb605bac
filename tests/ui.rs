//! Compile-time behaviour of the attributes: each misuse in `tests/ui/fail` fails with the error
//! recorded next to it in a `.stderr` file, and each supported shape in `tests/ui/pass` compiles
//! and runs. After an intended change to an error, regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` and review every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
