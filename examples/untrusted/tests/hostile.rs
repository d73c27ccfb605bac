//! The untrusted-input example, run as a program over its demo inputs: the hostile ones are
//! stopped in their workers, each by what it attacks, and the honest ones are parsed; parsed
//! in-process instead, the first hostile one ends the program.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the example with `args`, its demo inputs written under a directory of this test's own.
fn run(test: &str, args: &[&str]) -> (Output, String) {
    let tmp = std::env::temp_dir().join(format!("untrusted-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_untrusted"))
        .args(args)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    (output, stdout)
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{stdout}"))
}

#[test]
fn hostile_documents_fail_alone_in_their_workers() {
    let (output, stdout) = run("workers", &["--workers", "2"]);
    assert!(output.status.success(), "{:?}\n{stdout}", output.status);
    // A stack overflow, an allocation past the address space, a loop past its CPU time.
    assert!(line(&stdout, "stopped  deep.json:").contains("SIGABRT"));
    assert!(line(&stdout, "stopped  wide.json:").contains("SIGABRT"));
    assert!(line(&stdout, "stopped  spaces.json.gz:").contains("SIGXCPU"));
    assert!(line(&stdout, "invalid  not-json.json:").contains("EOF"));
    line(&stdout, "ok       order.json: 10 values, 4 deep");
    line(&stdout, "ok       orders.json.gz: 6001 values, 5 deep");
    line(
        &stdout,
        "6 documents: 2 ok, 1 invalid, 3 stopped in their worker",
    );
}

#[test]
fn in_process_the_first_hostile_document_ends_the_program() {
    let (output, stdout) = run("in-process", &["--in-process"]);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("parsing deep.json on this thread"),
        "{stdout}"
    );
    assert!(!stdout.contains("documents:"), "{stdout}");
}

#[test]
fn files_can_be_named_one_by_one() {
    let dir = std::env::temp_dir().join(format!("untrusted-named-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("list.json");
    std::fs::write(&file, "[1, [2, [3]]]").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_untrusted"))
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    line(&stdout, "ok       list.json: 6 values, 4 deep");
    line(
        &stdout,
        "1 documents: 1 ok, 0 invalid, 0 stopped in their worker",
    );
}
