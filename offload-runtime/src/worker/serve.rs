//! The serving loop of a worker started by a local pool: it reads calls from descriptor 4,
//! runs each with `exec`, and answers on descriptor 3, polling for the next call while its
//! caller does, and stepping back in priority once its calls run long.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::io::FromRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::boot::{Marker, CALLS_FD, REPLIES_FD};
use super::exec::answer;
use super::group;
use super::limits::CpuBudget;
use crate::function::Table;
use crate::sys::poll::{self, read_now, Poller};
use crate::sys::shm::{Region, SHARED_FD};
use crate::transport::local::placement;
use crate::tuning::LONG_CALL;
use crate::wire::{self, Header, Kind, HEADER};

/// Serves calls until the caller goes away, then exits the process.
pub(super) fn serve(marker: Marker) -> ! {
    // SAFETY: ignoring SIGPIPE turns writes to a closed channel into errors (Rust's `main` does
    // the same, but a worker served from a constructor starts before it).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Mapped before the inherited descriptors are closed; the mapping outlives its descriptor.
    let region = (marker.shared > 0)
        .then(|| {
            // SAFETY: descriptor 5 was placed by the launcher; it is only borrowed here.
            let fd = unsafe { BorrowedFd::borrow_raw(SHARED_FD) };
            Region::map(&fd, marker.shared).ok()
        })
        .flatten();
    close_inherited_descriptors();
    if marker.address_space > 0 {
        let shared = region.as_ref().map_or(0, Region::len);
        super::limits::cap_address_space(marker.address_space, shared);
    }
    // The channel is this worker's alone: programs that the functions it runs start must not
    // inherit it, to read calls meant for it or to hold its replies open after it died.
    for fd in [REPLIES_FD, CALLS_FD] {
        // SAFETY: only the descriptor's close-on-exec flag changes.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    group::keep_channel_from_forks();
    placement::note_worker_affinity();
    group::end_with_caller();
    let step_back = StepBack::start_at(marker.nice);
    // SAFETY: descriptors 3 and 4 were placed by the launcher; nothing else in this process
    // owns them.
    let (replies, calls) = unsafe { (File::from_raw_fd(REPLIES_FD), File::from_raw_fd(CALLS_FD)) };
    let reader = BufReader::with_capacity(
        64 * 1024,
        Polling {
            calls: &calls,
            core: region.as_ref().map(Region::worker_core),
            poller: Poller::new(Duration::from_micros(marker.poll_micros)),
            soon: false,
            quick: false,
            idle: (marker.idle_ms > 0).then(|| Duration::from_millis(marker.idle_ms)),
            between: false,
        },
    );
    crate::function::set_max_depth(marker.max_depth);
    // The program's setup runs before the handshake, so that a setup that fails is told to
    // the caller in its place, and the caller's first call never starts on a worker half set up.
    let setup = super::setup::run();
    leave_if_forked();
    if let Err((name, message)) = setup {
        let payload = postcard::to_stdvec(&(name, message)).unwrap_or_default();
        let _ = (&replies).write_all(&wire::frame(Kind::SetupFailed, 0, &payload));
        std::process::exit(3);
    }
    let build = marker
        .prove_build
        .then(|| crate::sys::image::build_id().ok())
        .flatten();
    let ended = poll::set_nonblocking(&calls).and_then(|()| {
        run(
            reader,
            &replies,
            Limits {
                max_frame: marker.max_frame,
                build,
                cpu: CpuBudget::of(marker.cpu_seconds),
            },
            region.as_ref(),
            step_back,
        )
    });
    match ended {
        Ok(Ending::Stopped) => std::process::exit(0),
        // The caller closed the channel without a word, at any point of a frame: it is gone.
        // Or this worker leaves on its own. Either way no caller will end its group.
        Ok(Ending::HungUp | Ending::Idle) => end_with_group(),
        Err(error) if is_hang_up(&error) => end_with_group(),
        Err(error) => {
            eprintln!("offload worker {}: {error}", std::process::id());
            std::process::exit(70)
        }
    }
}

/// Ends the worker with its group, once what it printed without ending the line is written out,
/// as an exit would.
fn end_with_group() -> ! {
    let _ = io::stdout().flush();
    group::end()
}

/// How a worker's serving ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Its pool stopped it.
    Stopped,
    /// Its channel closed between calls.
    HungUp,
    /// It waited for a call longer than its pool allows, and said so.
    Idle,
}

/// How far a worker lowers its priority once a call runs long, unless its pool says otherwise.
const STEP_BACK: u8 = 10;

/// Lowers this thread's scheduling priority by `increment` (and that of threads it starts
/// afterwards); the caller's event loop then wins a core the two compete for. Best effort: a
/// worker that cannot runs as it is.
fn lower_priority(increment: u8) {
    if increment > 0 {
        // SAFETY: `nice` only changes this thread's priority.
        unsafe { libc::nice(libc::c_int::from(increment)) };
    }
}

/// When a worker steps back: once a call has used more than [`LONG_CALL`] of CPU time, so that
/// a short call that only waited for a core does not count. Reading the CPU clock costs two
/// system calls a call, so it is read only for calls after one whose wall time was long (and
/// for placed calls, whose worker tells how much of the CPU they had).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepBack {
    /// The pool set the priority, or the worker has stepped back already.
    Never,
    /// Calls are timed by the wall clock.
    Watch,
    /// The last call took long by the wall clock: time calls by the CPU clock too.
    Measure,
}

impl StepBack {
    /// Applies the pool's fixed increment, if it set one; otherwise the worker watches its calls.
    fn start_at(nice: Option<u8>) -> StepBack {
        match nice {
            Some(increment) => {
                lower_priority(increment);
                StepBack::Never
            }
            None => StepBack::Watch,
        }
    }

    /// Whether the next call's CPU time is needed.
    fn measures(self) -> bool {
        self == StepBack::Measure
    }

    /// The state after a call that took `took` by the wall clock and `ran` on the CPU (where it
    /// was measured); it steps back if the call ran long on the CPU.
    fn finish(self, took: Duration, ran: Option<Duration>) -> StepBack {
        let long = took > LONG_CALL;
        match self {
            StepBack::Watch if long => StepBack::Measure,
            StepBack::Measure if !long => StepBack::Watch,
            StepBack::Measure if ran.is_some_and(|ran| ran > LONG_CALL) => {
                lower_priority(STEP_BACK);
                StepBack::Never
            }
            state => state,
        }
    }
}

/// The CPU time this thread has used.
fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// What a worker announces and enforces beside its registry.
struct Limits {
    /// The largest frame it reads or writes.
    max_frame: usize,
    /// Its build id, when its caller asked for proof of its build.
    build: Option<u64>,
    /// The CPU time each call may use, if its pool set a limit.
    cpu: Option<CpuBudget>,
}

/// Announces the registry, then serves calls until the caller stops it or closes the channel,
/// stepping back as `step_back` says. An error means the caller broke the protocol or the
/// channel failed: the worker cannot go on.
fn run(
    mut reader: impl Inbox,
    mut writer: impl Write,
    Limits {
        max_frame,
        build,
        cpu: cpu_budget,
    }: Limits,
    region: Option<&Region>,
    mut step_back: StepBack,
) -> io::Result<Ending> {
    let table = Table::get();
    let hello = (wire::PROTOCOL, std::process::id(), table.signature(), build);
    let hello = postcard::to_stdvec(&hello).map_err(io::Error::other)?;
    writer.write_all(&wire::frame(Kind::Hello, 0, &hello))?;

    let mut input = Vec::new();
    let mut output = Vec::new();
    loop {
        let mut header = [0; HEADER];
        reader.between_calls(true);
        let read = reader.read_exact(&mut header);
        reader.between_calls(false);
        match read {
            Err(e) if is_hang_up(&e) => return Ok(Ending::HungUp),
            // Idle for longer than its pool allows: it says so, so that the call that finds it
            // gone goes to a fresh worker, and leaves.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                writer.write_all(&wire::frame(Kind::Idle, 0, &[]))?;
                return Ok(Ending::Idle);
            }
            other => other?,
        }
        let Header {
            kind,
            id,
            payload_len,
            polling,
            placed,
            traced,
        } = Header::parse(&header, max_frame).map_err(io::Error::other)?;
        if kind == Kind::Stop {
            return Ok(Ending::Stopped);
        }
        // The function's index, then the caller's trace id if the call carries one.
        let prefix = if traced { 12 } else { 4 };
        let shared = match (kind, payload_len - payload_len.min(prefix)) {
            _ if payload_len < prefix => {
                return Err(io::Error::other(format!(
                    "a call frame of {payload_len} bytes, too short for its index"
                )))
            }
            (Kind::Call, _) => false,
            (Kind::CallShared, 8) => true,
            _ => {
                return Err(io::Error::other(format!(
                    "unexpected {kind:?} frame of {payload_len} bytes"
                )))
            }
        };
        // Read as it arrives rather than allocated as announced.
        input.clear();
        let read = (&mut reader)
            .take(payload_len as u64)
            .read_to_end(&mut input)?;
        if read < payload_len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let index = u32::from_le_bytes(input[..4].try_into().expect("4 bytes"));
        let call = traced.then(|| u64::from_le_bytes(input[4..12].try_into().expect("8 bytes")));
        let args = if shared {
            let len = u64::from_le_bytes(input[prefix..prefix + 8].try_into().expect("8 bytes"));
            let len = usize::try_from(len).map_err(io::Error::other)?;
            region.and_then(|region| region.bytes(len)).ok_or_else(|| {
                io::Error::other(format!(
                    "a shared call of {len} bytes, beyond the shared region"
                ))
            })?
        } else {
            &input[prefix..]
        };
        if placed {
            placement::widen_this_worker();
        }
        if let Some(budget) = cpu_budget {
            budget.arm();
        }
        let began = Instant::now();
        let cpu = (placed || step_back.measures()).then(cpu_time);
        answer(table, index, id, args, &mut output, max_frame, call);
        leave_if_forked();
        let took = began.elapsed();
        let ran = cpu.map(|cpu| cpu_time().saturating_sub(cpu));
        if let (true, Some(ran), Some(region)) = (placed, ran, region) {
            let word = placement::Ended::word(poll::this_core(), ran, took);
            region.placed_ended().store(word, Ordering::Relaxed);
        }
        step_back = step_back.finish(took, ran);
        reader.next_call_soon(polling, took);
        writer.write_all(&output)?;
        // Keep small buffers for the next call; give a large one back to the allocator.
        for buffer in [&mut input, &mut output] {
            if buffer.capacity() > 1 << 20 {
                *buffer = Vec::new();
            }
        }
    }
}

/// Where a worker reads its calls from.
trait Inbox: Read {
    /// Told after each call whether its caller polls for the reply, and so will likely send its
    /// next call soon, and how long the call took.
    fn next_call_soon(&mut self, _soon: bool, _took: Duration) {}

    /// Told whether it is waiting for the next call to begin, when an idle limit applies.
    fn between_calls(&mut self, _between: bool) {}
}

impl Inbox for &[u8] {}

/// The worker's end of the channel. After a call whose caller polls for the reply, the worker
/// too polls for the next call before it sleeps (waking a sleeping process costs its caller
/// many microseconds on a virtual machine), for as long as [`Poller`] lets it, and yields its
/// core between polls to anything else that wants it.
///
/// While its calls are quick, the worker also tells its caller which core it waits on. A caller
/// that finds itself on the same core then yields it while it waits for the reply, instead of
/// spinning while the worker cannot run. A worker whose last call took longer than a poll says
/// nothing: yielding to it could cost the caller's event loop the core for a whole time slice.
struct Polling<'a> {
    calls: &'a File,
    /// Where to tell the caller which core this worker runs on.
    core: Option<&'a AtomicU32>,
    poller: Poller,
    soon: bool,
    quick: bool,
    /// How long to wait for a call before giving up (the pool's idle time), and whether the
    /// worker is waiting for one, with nothing of it read yet.
    idle: Option<Duration>,
    between: bool,
}

impl Inbox for BufReader<Polling<'_>> {
    fn next_call_soon(&mut self, soon: bool, took: Duration) {
        let polling = self.get_mut();
        polling.soon = soon;
        polling.quick = took < polling.poller.window();
    }

    fn between_calls(&mut self, between: bool) {
        let between = between && self.buffer().is_empty();
        self.get_mut().between = between;
    }
}

impl Polling<'_> {
    fn tell_core(&self) {
        if let Some(core) = self.core {
            let now = if self.quick { poll::this_core() } else { 0 };
            if core.load(Ordering::Relaxed) != now {
                core.store(now, Ordering::Relaxed);
            }
        }
    }
}

impl Read for Polling<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tell_core();
        if let Some(n) = read_now(self.calls, buf)? {
            return Ok(n);
        }
        let until = self
            .soon
            .then(|| self.poller.until(Instant::now()))
            .flatten();
        if let Some(until) = until {
            loop {
                std::thread::yield_now();
                self.tell_core();
                if let Some(n) = read_now(self.calls, buf)? {
                    self.poller.record(true);
                    return Ok(n);
                }
                if Instant::now() >= until {
                    self.poller.record(false);
                    break;
                }
            }
        }
        let limit = self.idle.filter(|_| self.between);
        loop {
            if !poll::wait_readable(self.calls, limit)? {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if let Some(n) = read_now(self.calls, buf)? {
                return Ok(n);
            }
        }
    }
}

fn is_hang_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Ends a child that one of the worker's functions forked, as it comes back from the function:
/// it is not the worker, and its copy of the channel is closed (see `group`). Nothing of the
/// worker's state is torn down or flushed twice.
fn leave_if_forked() {
    if group::forked() {
        // SAFETY: _exit ends the process at once; it has no preconditions.
        unsafe { libc::_exit(0) }
    }
}

fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/dev/fd") else {
        return;
    };
    let stray: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > CALLS_FD)
        .collect();
    for fd in stray {
        // SAFETY: at worker start nothing in this process owns descriptors above the channel;
        // the directory handle used to list them is already closed (EBADF is harmless).
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Remote;
    use crate::function::{invoke, Registration};
    use crate::random::Random;

    static ECHO: Remote = Remote::new("worker::tests::echo", 1);
    inventory::submit! { Registration::new(&ECHO, |args, out| invoke(args, out, |v: Vec<u8>| v)) }

    static PANIC: Remote = Remote::new("worker::tests::panic", 2);
    inventory::submit! { Registration::new(&PANIC, |args, out| invoke(args, out, |v: u8| -> u8 { panic!("{v}") })) }

    /// Every frame the worker wrote, checked to be well formed.
    fn replies(output: &[u8]) -> Vec<(Kind, u64, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut rest = output;
        while !rest.is_empty() {
            let header = Header::parse(rest[..HEADER].try_into().unwrap(), usize::MAX)
                .expect("well-formed reply");
            let end = HEADER + header.payload_len;
            frames.push((header.kind, header.id, rest[HEADER..end].to_vec()));
            rest = &rest[end..];
        }
        frames
    }

    fn call(id: u64, index: u32, args: &[u8]) -> Vec<u8> {
        let mut payload = index.to_le_bytes().to_vec();
        payload.extend_from_slice(args);
        wire::frame(Kind::Call, id, &payload)
    }

    fn limits(max_frame: usize) -> Limits {
        Limits {
            max_frame,
            build: None,
            cpu: None,
        }
    }

    fn index_of(name: &'static str, fingerprint: u64) -> u32 {
        Table::get().index_of(name, fingerprint).unwrap()
    }

    #[test]
    fn a_worker_answers_each_call_in_order_and_stops_at_end_of_input() {
        let echo = index_of("worker::tests::echo", 1);
        let panic = index_of("worker::tests::panic", 2);
        let mut input = call(1, echo, &postcard::to_stdvec(&vec![1u8, 2, 3]).unwrap());
        input.extend(call(2, panic, &[7]));
        input.extend(call(3, 999, &[]));
        input.extend(call(4, echo, &[200]));
        let mut output = Vec::new();
        run(
            &input[..],
            &mut output,
            limits(1 << 20),
            None,
            StepBack::Never,
        )
        .unwrap();
        let kinds: Vec<(Kind, u64)> = replies(&output)
            .iter()
            .map(|(k, id, _)| (*k, *id))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Hello, 0),
                (Kind::Returned, 1),
                (Kind::Panicked, 2),
                (Kind::UnknownFunction, 3),
                (Kind::DecodeFailed, 4)
            ]
        );
        assert_eq!(
            replies(&output)[1].2,
            postcard::to_stdvec(&vec![1u8, 2, 3]).unwrap()
        );
    }

    #[test]
    fn oversized_and_foreign_frames_stop_the_worker_with_an_error() {
        let mut oversized = call(1, 0, &[0; 64]);
        oversized[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let foreign = wire::frame(Kind::Returned, 1, b"");
        for input in [oversized, foreign] {
            let mut output = Vec::new();
            assert!(run(
                &input[..],
                &mut output,
                limits(1 << 20),
                None,
                StepBack::Never
            )
            .is_err());
            assert_eq!(replies(&output).len(), 1, "only the handshake was written");
        }
    }

    // A property test over random input, the stand-in for a fuzzer that runs in bounded time in
    // every `cargo test`: whatever the caller sends, the worker never panics, always stops, and
    // writes only well-formed frames.
    #[test]
    fn no_input_makes_the_worker_panic_or_write_a_malformed_frame() {
        let echo = index_of("worker::tests::echo", 1);
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..random.below(4) {
                let args_len = random.below(40) as usize;
                let index = if random.below(2) == 0 {
                    echo
                } else {
                    random.next() as u32
                };
                let mut frame = call(random.next(), index, &random.bytes(args_len));
                match random.below(4) {
                    0 => frame.truncate(random.below(frame.len() as u64 + 1) as usize),
                    1 => {
                        let at = random.below(frame.len() as u64) as usize;
                        frame[at] = random.next() as u8;
                    }
                    2 => {
                        let len = random.below(64) as usize;
                        frame = random.bytes(len);
                    }
                    _ => {}
                }
                input.extend(frame);
            }
            let mut output = Vec::new();
            let _ = run(&input[..], &mut output, limits(1024), None, StepBack::Never);
            assert!(!replies(&output).is_empty());
        }
    }

    #[test]
    fn header_parsing_accepts_exactly_the_frames_within_the_limit() {
        let mut random = Random(42);
        for _ in 0..100_000 {
            let bytes: [u8; HEADER] = random.bytes(HEADER).try_into().unwrap();
            let limit = random.below(1 << 20) as usize;
            if let Ok(header) = Header::parse(&bytes, limit) {
                assert!(header.payload_len <= limit);
                let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                assert_eq!(header.payload_len + HEADER - 4, len);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_tells_its_core_while_its_calls_are_quick_and_only_then() {
        let (region, _fd) = Region::create(4096).unwrap();
        let (read, write) = crate::transport::local::spawn::pipe().unwrap();
        let (calls, mut caller) = (File::from(read), File::from(write));
        poll::set_nonblocking(&calls).unwrap();
        let mut inbox = BufReader::new(Polling {
            calls: &calls,
            core: Some(region.worker_core()),
            poller: Poller::new(Duration::from_micros(50)),
            soon: false,
            quick: false,
            idle: None,
            between: false,
        });
        let mut byte = [0];
        for (took, tells) in [
            (Duration::from_micros(5), true),
            (Duration::from_millis(5), false),
        ] {
            inbox.next_call_soon(true, took);
            caller.write_all(b"x").unwrap();
            inbox.read_exact(&mut byte).unwrap();
            let told = region.worker_core().load(Ordering::Relaxed);
            // The core is told plus one, so a quick worker never says 0.
            assert_eq!(told != 0, tells, "after a call of {took:?}");
        }
    }
}
