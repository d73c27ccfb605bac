//! Compile-time behaviour of the attributes: each misuse in `fail/` fails with the error recorded
//! next to it in a `.stderr` file, and each supported shape in `pass/` compiles and runs. After an
//! intended change to an error, regenerate with `TRYBUILD=overwrite cargo test -p offload-ui` and
//! review every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("fail/*.rs");
    cases.pass("pass/*.rs");
}
