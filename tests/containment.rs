//! A worker's faults stay in the worker: what its children hold, how deep a value nests, what
//! user serde code does, which build it runs, and what the caller's own inputs do cannot hang
//! or crash the caller, and every call ends with its value or an `offload::Error`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};

use offload::{offload, CodecStage, Error, ProcessPool};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

offload::test_setup!();

mod common;
use common::{alive, resident_bytes, scratch, within};
#[cfg(target_os = "linux")]
use common::{gone, pid_in};

fn write_pid(dir: &Path, pid: u32) {
    std::fs::write(dir.join(pid.to_string()), b"").unwrap();
}

// --- The channel stays the worker's: its children neither inherit it nor keep it alive. ---

/// The descriptors a program started by the function finds open, from its own point of view.
#[offload(process, pool = "children")]
fn child_descriptors() -> Vec<String> {
    let listed = std::process::Command::new("sh")
        .args(["-c", "ls /proc/$$/fd"])
        .output()
        .unwrap();
    String::from_utf8(listed.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Forks a child that keeps every descriptor and lives on, then dies.
#[offload(process, pool = "children")]
fn die_leaving_a_child(dir: PathBuf) -> u32 {
    // SAFETY: the child only calls pause, which is async-signal-safe.
    match unsafe { libc::fork() } {
        0 => loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        },
        child => {
            write_pid(&dir, child as u32);
            std::process::abort()
        }
    }
}

/// Starts a long-running program, then waits for ever.
#[offload(process, pool = "children", timeout = "500ms")]
fn start_a_program_and_stall(dir: PathBuf) -> u32 {
    start_a_program_and_stall_without_timeout_blocking(dir)
}

#[offload(process, pool = "children")]
fn start_a_program_and_stall_without_timeout(dir: PathBuf) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    write_pid(&dir, child.id());
    // Never waited for: the call is meant to be stopped with it running.
    std::mem::forget(child);
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn programs_a_worker_starts_do_not_inherit_its_channel() {
    let open = child_descriptors().await.unwrap();
    assert!(
        !open.iter().any(|fd| fd == "3" || fd == "4"),
        "the child sees {open:?}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_worker_that_dies_is_noticed_at_once_whatever_its_children_hold() {
    let dir = scratch("orphan");
    let died = within("a call whose worker died", die_leaving_a_child(dir.clone())).await;
    assert!(matches!(died, Err(Error::WorkerDied { .. })), "{died:?}");
    // Its group went with it.
    gone(pid_in(&dir).await).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_timed_out_or_cancelled_call_leaves_no_process_behind() {
    let dir = scratch("leftover");
    let timed_out = within(
        "a call that times out",
        start_a_program_and_stall(dir.clone()),
    )
    .await;
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    gone(pid_in(&dir).await).await;
    // Cancelled: its future dropped once the program it started is running.
    let dir = scratch("cancelled");
    let call = tokio::spawn(start_a_program_and_stall_without_timeout(dir.clone()));
    let program = pid_in(&dir).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    gone(program).await;
}

/// Forks, and returns in both processes: the parent with the child's pid, the child with 0.
#[offload(process, pool = "forked")]
fn fork_and_return() -> u32 {
    // SAFETY: both processes only return; the child allocates only through glibc's malloc,
    // which stays usable in the child of a fork.
    unsafe { libc::fork() as u32 }
}

#[offload(process, pool = "forked")]
fn forked_echo(value: u64) -> u64 {
    value
}

// A body that forks and returns in both processes: only the worker answers, the child ends
// instead of serving the worker's channel beside it, and the pool's next calls get their own
// replies (they got the child's copy of an earlier reply, as a protocol error).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_body_that_forks_and_returns_twice_gets_one_reply_and_the_next_calls_theirs() {
    ProcessPool::configure("forked").workers(1).apply().unwrap();
    assert_eq!(forked_echo(0).await, Ok(0));
    let child = within("a call that forks", fork_and_return())
        .await
        .unwrap();
    assert_ne!(child, 0, "the reply is the worker's, not its child's");
    for value in 1..=50 {
        assert_eq!(forked_echo(value).await, Ok(value));
    }
    // The child ended when it came back to the channel.
    gone(child).await;
}

// --- Encoding and decoding never take a caller or a worker down. ---

/// A list that drops without recursion, so that only the codec is put to the test. Each node
/// is two levels deep: the struct, then the `Some` around the next one.
#[derive(Debug, Default, Serialize, Deserialize)]
struct List {
    next: Option<Box<List>>,
}

impl List {
    fn deep(nodes: usize) -> List {
        (0..nodes).fold(List::default(), |list, _| List {
            next: Some(Box::new(list)),
        })
    }

    fn len(&self) -> usize {
        let (mut list, mut len) = (self, 0);
        while let Some(next) = &list.next {
            (list, len) = (next, len + 1);
        }
        len
    }
}

impl Drop for List {
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut node) = next {
            next = node.next.take();
        }
    }
}

#[offload(process)]
fn deep_list(levels: usize) -> List {
    List::deep(levels)
}

#[offload(process, pool = "shallow")]
fn shallow_list(levels: usize) -> List {
    List::deep(levels)
}

#[offload(process, pool = "shallow")]
fn list_length(list: List) -> usize {
    list.len()
}

fn too_deep(error: &Error, stage: CodecStage) -> bool {
    matches!(error, Error::Codec { stage: s, detail, .. } if *s == stage && detail.contains("nests deeper"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_result_is_a_codec_error_not_an_abort() {
    // 10,001 levels: decoding them on a 2 MiB runtime thread by plain recursion aborted the
    // caller; now the worker refuses to encode them.
    let error = deep_list(5_000).await.unwrap_err();
    assert!(too_deep(&error, CodecStage::EncodeResult), "{error:?}");
    // The default limit lets ordinary nesting through.
    assert_eq!(deep_list(500).await.unwrap().len(), 500);
}

#[tokio::test]
async fn both_sides_hold_the_pool_s_depth_limit() {
    ProcessPool::configure("shallow")
        .max_depth(64)
        .apply()
        .unwrap();
    // 31 nodes take 63 levels, 32 take 65, as a result and as an argument alike; the side
    // that would send them refuses.
    assert_eq!(shallow_list(31).await.unwrap().len(), 31);
    let error = shallow_list(32).await.unwrap_err();
    assert!(too_deep(&error, CodecStage::EncodeResult), "{error:?}");
    assert_eq!(list_length(List::deep(31)).await, Ok(31));
    let error = list_length(List::deep(32)).await.unwrap_err();
    assert!(too_deep(&error, CodecStage::EncodeArguments), "{error:?}");
}

// --- A panic in user serde code in the worker is a panic report, and the worker serves on. ---

#[derive(Debug, PartialEq)]
struct PanicsWhenDecoded;

impl Serialize for PanicsWhenDecoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for PanicsWhenDecoded {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("no decoding this")
    }
}

#[derive(Debug, PartialEq)]
struct PanicsWhenEncoded;

impl Serialize for PanicsWhenEncoded {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("no encoding this")
    }
}

impl<'de> Deserialize<'de> for PanicsWhenEncoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer).map(|()| PanicsWhenEncoded)
    }
}

#[offload(process, pool = "serde")]
fn take_panicky(_value: PanicsWhenDecoded) -> u32 {
    std::process::id()
}

#[offload(process, pool = "serde")]
fn make_panicky() -> PanicsWhenEncoded {
    PanicsWhenEncoded
}

#[offload(process, pool = "serde")]
fn serde_pid() -> u32 {
    std::process::id()
}

#[tokio::test]
async fn a_panic_in_serde_code_is_reported_and_the_worker_serves_on() {
    ProcessPool::configure("serde").workers(1).apply().unwrap();
    let worker = serde_pid().await.unwrap();
    for (result, message) in [
        (
            take_panicky(PanicsWhenDecoded).await.map(drop),
            "no decoding this",
        ),
        (make_panicky().await.map(drop), "no encoding this"),
    ] {
        assert!(
            matches!(&result, Err(Error::Panicked { message: m, .. }) if m == message),
            "{result:?}"
        );
        assert_eq!(serde_pid().await, Ok(worker), "the same worker serves on");
    }
}

// --- A worker of another build is refused, never mis-decoded. ---

#[offload(process, pool = "same-build")]
fn build_echo(value: u64) -> u64 {
    value
}

#[offload(process, pool = "other-build")]
fn other_build_echo(value: u64) -> u64 {
    value
}

/// A copy of this test binary, with `extra` bytes appended: it runs as before, but it is
/// another build as far as its bytes go.
fn copy_of_this_binary(name: &str, extra: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch(name).join("worker");
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.extend_from_slice(extra);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_worker_of_another_build_is_refused_and_one_of_this_build_serves() {
    ProcessPool::configure("same-build")
        .workers(1)
        .program(copy_of_this_binary("same-build", b""))
        .apply()
        .unwrap();
    assert_eq!(build_echo(500).await, Ok(500));
    ProcessPool::configure("other-build")
        .workers(1)
        .program(copy_of_this_binary("other-build", b"another build"))
        .apply()
        .unwrap();
    let error = other_build_echo(500).await.unwrap_err();
    assert!(
        matches!(&error, Error::VersionMismatch { detail } if detail.contains("another build")),
        "{error:?}"
    );
}

// --- The caller's own inputs and settings. ---

#[offload(process, pool = "inputs")]
fn input_echo(value: u32) -> u32 {
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_f_map_whose_inputs_panic_resumes_the_panic_after_the_earlier_results() {
    common::assert_an_input_panic_resumes_after_the_earlier_results(|inputs| {
        input_echo_map(inputs).chunk_size(2)
    })
    .await;
}

#[offload(process, pool = "worn")]
fn worn_pid(_call: u32) -> u32 {
    std::process::id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_no_more_calls_than_its_limit_even_when_they_arrive_together() {
    ProcessPool::configure("worn")
        .workers(1)
        .max_calls_per_worker(3)
        .apply()
        .unwrap();
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    let calls: Vec<_> = (0..6).map(|i| tokio::spawn(worn_pid(i))).collect();
    for call in calls {
        *per_worker.entry(call.await.unwrap().unwrap()).or_default() += 1;
    }
    for result in worn_pid_map(0..12).chunk_size(16).collect().await {
        *per_worker.entry(result.unwrap()).or_default() += 1;
    }
    assert!(
        per_worker.values().all(|&calls| calls <= 3),
        "{per_worker:?}"
    );
    assert_eq!(per_worker.values().sum::<usize>(), 18);
}

#[offload(process, pool = "nested")]
fn outer(value: u64) -> Result<u64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(inner(value))
        .map_err(|error| error.to_string())
}

#[offload(process, pool = "nested-inner")]
fn inner(value: u64) -> u64 {
    value * 2
}

#[tokio::test]
async fn a_worker_of_a_test_binary_calls_process_mode_functions_in_turn() {
    assert_eq!(outer(21).await, Ok(Ok(42)));
}

/// Writes the header of a reply announcing `len` payload bytes, then a few of them, and waits.
#[offload(process, pool = "liar")]
fn announce(len: u32) -> u32 {
    // The reply to the second call this worker is sent (the first asks for its pid).
    let mut frame = (len + 9).to_le_bytes().to_vec();
    frame.push(3);
    frame.extend_from_slice(&2u64.to_le_bytes());
    frame.extend_from_slice(&[0; 100]);
    // SAFETY: descriptor 3 is where the worker writes its replies; ManuallyDrop keeps it open.
    let mut channel = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(3) });
    channel.write_all(&frame).unwrap();
    std::process::exit(0)
}

#[offload(process, pool = "liar")]
fn liar_pid() -> u32 {
    std::process::id()
}

#[tokio::test]
async fn a_header_announcing_a_gigabyte_costs_only_the_bytes_sent() {
    ProcessPool::configure("liar").workers(1).apply().unwrap();
    let worker = liar_pid().await.unwrap();
    let before = resident_bytes();
    let result = within("a reply cut short", announce((1 << 30) - 64)).await;
    let grew = resident_bytes().saturating_sub(before);
    assert!(
        matches!(result, Err(Error::WorkerDied { .. })),
        "{result:?}"
    );
    assert!(grew < 256 << 20, "the caller grew by {grew} bytes");
    assert!(!alive(worker) || liar_pid().await.unwrap() != worker);
}
