//! Compile-time behaviour of the attributes: each misuse in `tests/ui/fail` fails with the error
//! recorded next to it in a `.stderr` file, and each supported shape in `tests/ui/pass` compiles
//! and runs. After an intended change to an error, regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` and review every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    // A type that is not `Send`: rustc names the trait `Send` unless another item of that name
    // is among the crates built, and with the `nats` feature futures-util's `sink::Send` is;
    // then it writes `std::marker::Send`. The same sources, linked, with the other wording.
    if cfg!(feature = "nats") {
        cases.compile_fail("tests/ui/send-nats/*.rs");
    } else {
        cases.compile_fail("tests/ui/send/*.rs");
    }
    cases.pass("tests/ui/pass/*.rs");
}
