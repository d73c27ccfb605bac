//! The caller's end of one worker's channel: the handshake, sending a call, reading its reply.
//!
//! Calls go to the worker through one pipe and replies come back through another (see
//! `launch.rs`). A caller that has to sleep for a reply registers the reply pipe with the runtime
//! of its task (`AsyncFd` over the raw descriptor, which it does not own), and registers it
//! again when a task of another runtime sleeps on it next, so one pool serves every runtime in
//! the process, such as the one each `#[tokio::test]` builds, and a cancelled operation never
//! closes a pipe behind the worker's back.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::{self, Handle};

use crate::error::Exit;
use crate::function::Table;
use crate::sys::poll::{self, Poller};
use crate::sys::shm::Region;
use crate::transport::local::placement::Ended;
use crate::transport::local::spawn::{Ends, Process};
use crate::wire::{self, Header, Kind, HEADER};
use crate::Error;

/// A started worker and the caller's end of its channel.
pub(crate) struct Worker {
    /// The reply pipe's registration, if any; declared before `replies`, so that it is
    /// dropped, and the descriptor deregistered, before the pipe closes.
    registered: Registered,
    process: Process,
    calls: File,
    replies: File,
    /// Our read end of the calls pipe, never read (see [`Ends`]).
    calls_held: File,
    /// Bytes written to the calls pipe, and where each unanswered call's frame ends in them:
    /// with what the worker left unread, they tell whether it had read the oldest call it did
    /// not answer.
    written: u64,
    frame_ends: VecDeque<u64>,
    /// The memory shared with this worker for large arguments, where the platform has it.
    region: Option<Region>,
    /// Bytes read from the worker: `inbox[start..filled]` are not parsed yet, and
    /// `inbox[reply]` is the payload of the last frame returned.
    inbox: Vec<u8>,
    start: usize,
    filled: usize,
    reply: Range<usize>,
    /// Ids of the last call sent and of the last call answered; replies come in order.
    sent: u64,
    answered: u64,
    /// When the worker last went from idle to busy, and how many calls it had answered then:
    /// what [`Worker::time_per_call`] measures from.
    busy_since: (Instant, u64),
    /// Whether the calls last sent poll for their replies, and how such polls went.
    polling: bool,
    poller: Poller,
}

/// Why an exchange with a worker failed.
pub(crate) enum Fault {
    /// The channel closed: the worker is gone, and was running the oldest unanswered call.
    Died,
    /// The channel closed before the worker read the oldest unanswered call, after it had
    /// answered others: it died between calls, and none of those it was sent started.
    DiedIdle,
    /// The worker's bytes broke the protocol; its stream cannot be trusted any more.
    Protocol(String),
    /// The handshake showed the worker cannot serve this process.
    Refused(Error),
}

impl Worker {
    pub(crate) fn new(
        process: Process,
        Ends {
            calls,
            replies,
            calls_held,
        }: Ends,
        region: Option<Region>,
        poll: Duration,
    ) -> io::Result<Worker> {
        poll::set_nonblocking(&calls)?;
        poll::set_nonblocking(&replies)?;
        Ok(Worker {
            registered: Registered::default(),
            process,
            calls,
            replies,
            calls_held,
            written: 0,
            frame_ends: VecDeque::new(),
            region,
            inbox: Vec::new(),
            start: 0,
            filled: 0,
            reply: 0..0,
            sent: 0,
            answered: 0,
            busy_since: (Instant::now(), 0),
            polling: false,
            poller: Poller::new(poll),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid
    }

    pub(crate) fn calls_sent(&self) -> u64 {
        self.sent
    }

    /// Reads the worker's announcement and checks that it runs the same registry as we do,
    /// and, with `prove_build`, the same build.
    pub(crate) async fn handshake(&mut self, prove_build: bool) -> Result<(), Fault> {
        let header = self.read_frame(1 << 20, false).await?;
        match header.kind {
            Kind::Hello => check_hello(self.reply(), prove_build).map_err(Fault::Refused),
            Kind::GuardMissing => Err(Fault::Refused(Error::GuardMissing)),
            Kind::SetupFailed => {
                let (setup, message) = postcard::from_bytes(self.reply()).map_err(|e| {
                    Fault::Protocol(format!("unreadable report of a failed setup: {e}"))
                })?;
                Err(Fault::Refused(Error::WorkerSetup { setup, message }))
            }
            other => Err(Fault::Protocol(format!(
                "expected a handshake, got a {other:?} frame"
            ))),
        }
    }

    /// Sends call frames, one or several back to back, whose ids are still blank, stamping each
    /// with the next id. The worker runs them in order.
    ///
    /// With `polling`, each frame says so, and the caller polls for the replies before it
    /// sleeps (see `poll.rs`); with `placed`, each frame says that the worker was narrowed to
    /// one core for it (see `cores.rs`).
    pub(crate) async fn send(
        &mut self,
        frames: &mut [u8],
        polling: bool,
        placed: bool,
    ) -> Result<(), Fault> {
        self.polling = polling;
        if polling {
            // Not registered while it polls: see `read_some`.
            self.registered = Registered::default();
        }
        if self.outstanding() == 0 {
            self.busy_since = (Instant::now(), self.answered);
        }
        let mut at = 0;
        while at < frames.len() {
            self.sent += 1;
            frames[at + 5..at + HEADER].copy_from_slice(&self.sent.to_le_bytes());
            if self.polling {
                frames[at + 4] |= wire::POLLING;
            }
            if placed {
                frames[at + 4] |= wire::PLACED;
            }
            let len = u32::from_le_bytes(frames[at..at + 4].try_into().expect("4 bytes"));
            at += 4 + len as usize;
            self.frame_ends.push_back(self.written + at as u64);
        }
        let mut rest: &[u8] = frames;
        // Registered for writing only while a write waits for room: a registration that wants
        // to know of room is woken each time the worker reads.
        let mut waiting: Option<AsyncFd<RawFd>> = None;
        while !rest.is_empty() {
            match (&self.calls).write(rest) {
                Ok(0) => return Err(Fault::Died),
                Ok(n) => {
                    rest = &rest[n..];
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let waiting = match &mut waiting {
                        Some(waiting) => waiting,
                        None => {
                            let fd = self.calls.as_raw_fd();
                            // SAFETY: the pipe outlives the registration, dropped at the latest
                            // when this operation ends.
                            let registered =
                                unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) };
                            waiting.insert(registered.map_err(|_| Fault::Died)?)
                        }
                    };
                    // The worker stops reading calls while its replies have nowhere to go, so
                    // while the calls pipe is full, the replies are read ahead: the two ends
                    // never wait on each other, whatever the sizes. And a worker's death is
                    // seen on the process, whatever its children hold open.
                    let io = self.registered.take(&self.replies, &self.process)?;
                    let wake = tokio::select! {
                        room = waiting.writable() => {
                            room.map_err(|_| Fault::Died)?.clear_ready();
                            Wake::Room
                        }
                        ready = io.replies.readable() => {
                            ready.map_err(|_| Fault::Died)?.clear_ready();
                            Wake::Replies
                        }
                        () = io.exited() => Wake::Exited,
                    };
                    self.registered.keep(io);
                    // A worker that is gone reads no more: stop writing, and let the end of its
                    // replies tell which calls it had read.
                    match wake {
                        Wake::Room => {}
                        Wake::Replies if self.read_ahead()? => {}
                        Wake::Replies | Wake::Exited => return Ok(()),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Fault::Died),
            }
        }
        Ok(())
    }

    /// Reads every reply byte there is into the inbox, growing it as needed; `false` once the
    /// worker has closed its end. Readiness was cleared before, so this reads until the pipe is
    /// empty, lest bytes left in it never wake the caller again.
    fn read_ahead(&mut self) -> Result<bool, Fault> {
        loop {
            if self.filled == self.inbox.len() {
                if self.start > 0 {
                    self.inbox.copy_within(self.start..self.filled, 0);
                    (self.start, self.filled) = (0, self.filled - self.start);
                } else {
                    let grown = (self.inbox.len() * 2).max(READ_AHEAD);
                    self.inbox.resize(grown, 0);
                }
            }
            match poll::read_now(&self.replies, &mut self.inbox[self.filled..]) {
                Ok(Some(0)) | Err(_) => return Ok(false),
                Ok(Some(n)) => self.filled += n,
                Ok(None) => return Ok(true),
            }
        }
    }

    /// Reads the reply to the oldest call not answered yet; its payload is then in
    /// [`Worker::reply`].
    pub(crate) async fn receive(&mut self, limit: usize) -> Result<Kind, Fault> {
        let header = match self.read_frame(limit, self.polling).await {
            Err(Fault::Died) => return Err(self.death()),
            other => other?,
        };
        // It left after its pool's idle time, without reading what was sent since.
        if header.kind == Kind::Idle {
            return Err(Fault::DiedIdle);
        }
        let expected = self.answered + 1;
        if header.id != expected || expected > self.sent {
            return Err(Fault::Protocol(format!(
                "a reply to call {} arrived for call {expected}",
                header.id
            )));
        }
        self.answered = expected;
        self.frame_ends.pop_front();
        match header.kind {
            Kind::Hello
            | Kind::Call
            | Kind::CallShared
            | Kind::GuardMissing
            | Kind::SetupFailed => Err(Fault::Protocol(format!(
                "unexpected {:?} frame in reply to a call",
                header.kind
            ))),
            kind => Ok(kind),
        }
    }

    /// How the worker's death, found at the end of its replies, leaves the calls not answered:
    /// the oldest was running unless the worker had not read all of it. A worker that never
    /// answered a call counts as running it, so that a program whose workers die before their
    /// first call fails its calls instead of starting workers without end.
    fn death(&self) -> Fault {
        let read =
            poll::unread(&self.calls_held).map(|unread| self.written.saturating_sub(unread as u64));
        match (self.frame_ends.front(), read) {
            (Some(&end), Some(read)) if read < end && self.answered > 0 => Fault::DiedIdle,
            _ => Fault::Died,
        }
    }

    /// How the worker's last placed call ended, if it told (see `cores.rs`).
    pub(crate) fn placed_ended(&self) -> Option<Ended> {
        Ended::of(self.region.as_ref()?.placed_ended().load(Ordering::Relaxed))
    }

    /// The memory shared with this worker, if it has any.
    pub(crate) fn region(&mut self) -> Option<&mut Region> {
        self.region.as_mut()
    }

    pub(crate) fn reply(&self) -> &[u8] {
        &self.inbox[self.reply.clone()]
    }

    /// For a worker that has just answered everything sent to it: how long each call took on
    /// average since it went busy, replies included.
    pub(crate) fn time_per_call(&self) -> Option<Duration> {
        let (since, answered) = self.busy_since;
        let calls = u32::try_from(self.answered - answered).ok()?;
        (self.outstanding() == 0 && calls > 0).then(|| since.elapsed() / calls)
    }

    /// How many calls were sent and not answered yet.
    pub(crate) fn outstanding(&self) -> u64 {
        self.sent - self.answered
    }

    /// Resident memory of the worker, where the platform tells it.
    pub(crate) fn resident_bytes(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).ok()?;
            let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            Some(pages * u64::try_from(page).ok()?)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// How the worker ended, for a worker whose channel closed.
    pub(crate) async fn exit(self) -> Exit {
        let Worker {
            registered,
            process,
            ..
        } = self;
        // Deregistered before the process's descriptor closes.
        drop(registered);
        process.exit().await.unwrap_or(Exit::Unknown)
    }

    /// Tells an idle worker to exit, closes the channel, and waits until it has exited. Stopped
    /// so, the worker exits as a program does; its group is killed once it is reaped.
    pub(crate) async fn stop(self) -> Exit {
        let Worker {
            registered,
            process,
            calls,
            replies,
            ..
        } = self;
        // An idle worker's pipe has room for it; were it full, the worker would take the closed
        // channel for its caller's end, and end with its group at once.
        let _ = (&calls).write_all(&wire::frame(Kind::Stop, 0, &[]));
        drop((registered, calls, replies));
        process.exit().await.unwrap_or(Exit::Unknown)
    }

    /// Returns the next whole frame, reading more from the worker only when the frames already
    /// read are used up, so that replies arriving together cost one system call.
    async fn read_frame(&mut self, limit: usize, poll: bool) -> Result<Header, Fault> {
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
            if self.inbox.len() > 16 * READ_AHEAD {
                // A large reply passed; do not keep its buffer for the life of the worker.
                self.inbox.truncate(READ_AHEAD);
                self.inbox.shrink_to_fit();
            }
        }
        loop {
            let unparsed = self.filled - self.start;
            let mut need = HEADER;
            if unparsed >= HEADER {
                let head: &[u8; HEADER] = self.inbox[self.start..self.start + HEADER]
                    .try_into()
                    .expect("a header");
                let header =
                    Header::parse(head, limit).map_err(|e| Fault::Protocol(e.to_string()))?;
                need = HEADER + header.payload_len;
                if unparsed >= need {
                    self.reply = self.start + HEADER..self.start + need;
                    self.start += need;
                    return Ok(header);
                }
            }
            if self.start + need > self.inbox.len() && self.start > 0 {
                self.inbox.copy_within(self.start..self.filled, 0);
                self.filled = unparsed;
                self.start = 0;
            }
            if self.filled == self.inbox.len() {
                // Grown as bytes arrive, not as the header announces: a length that lies costs
                // no more memory than the bytes actually sent.
                let grown = (self.inbox.len() * 2).clamp(READ_AHEAD, need.max(READ_AHEAD));
                self.inbox.resize(grown, 0);
            }
            let poller = poll.then_some(&mut self.poller);
            let core = self.region.as_ref().map(Region::worker_core);
            let buf = &mut self.inbox[self.filled..];
            let watch = Watched {
                replies: &self.replies,
                process: &self.process,
                registered: &mut self.registered,
            };
            self.filled += read_some(watch, buf, poller, core).await?;
        }
    }
}

/// The size of the read buffer: replies up to this size take one system call.
const READ_AHEAD: usize = 64 * 1024;

/// Reads what is there, waiting for it if nothing is: first by polling, if `poller` says so,
/// then by sleeping until the runtime sees the reply pipe readable.
///
/// Polling spins on the core, unless the worker says it waits on this very core (its
/// `worker_core`, see `worker.rs`): then the caller yields the core to it between polls, since
/// the reply cannot come before the worker runs. It does not yield otherwise: yielding to a busy
/// machine's other processes can cost the caller's thread a whole time slice.
///
/// The pipe is registered with the runtime only when the caller sleeps, and the registration
/// is dropped when the next call polls: while it is registered, every reply wakes the runtime's
/// idle threads, on some core, to report what the caller has already read.
async fn read_some(
    Watched {
        replies,
        process,
        registered,
    }: Watched<'_>,
    buf: &mut [u8],
    poller: Option<&mut Poller>,
    worker_core: Option<&AtomicU32>,
) -> Result<usize, Fault> {
    if let Some(n) = read_now(replies, buf)? {
        return Ok(n);
    }
    if let Some(poller) = poller {
        if let Some(until) = poller.until(Instant::now()) {
            loop {
                if let Some(n) = read_now(replies, buf)? {
                    poller.record(true);
                    return Ok(n);
                }
                if Instant::now() >= until {
                    poller.record(false);
                    break;
                }
                let core = worker_core.map_or(0, |core| core.load(Ordering::Relaxed));
                if core != 0 && core == poll::this_core() {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
    let io = registered.take(replies, process)?;
    loop {
        let exited = tokio::select! {
            ready = io.replies.readable() => {
                ready.map_err(|_| Fault::Died)?.clear_ready();
                false
            }
            () = io.exited() => true,
        };
        if let Some(n) = read_now(replies, buf)? {
            registered.keep(io);
            return Ok(n);
        }
        // Every byte the worker wrote is in the pipe once it has exited; a child of its that
        // still holds the pipe open does not keep the call waiting.
        if exited {
            return Err(Fault::Died);
        }
    }
}

/// What woke a write waiting for room in the calls pipe.
enum Wake {
    Room,
    Replies,
    Exited,
}

/// What a read of the replies watches: the pipe, the process, and their registration.
struct Watched<'a> {
    replies: &'a File,
    process: &'a Process,
    registered: &'a mut Registered,
}

/// The registrations with the runtime of the reply pipe and of the process's exit.
struct Registration {
    replies: AsyncFd<RawFd>,
    exited: Option<AsyncFd<RawFd>>,
}

impl Registration {
    /// Resolves once the process has exited; never, where that cannot be watched.
    async fn exited(&self) {
        match &self.exited {
            Some(exited) => {
                let _ = exited.readable().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// The reply pipe's registration with the runtime of the task that last slept on it, if any.
#[derive(Default)]
struct Registered(Option<(runtime::Id, Registration)>);

impl Registered {
    /// The registration kept from the last sleep if that was on the current runtime, else a
    /// new one. Hand it back with [`Registered::keep`]; dropped instead (an operation cancelled
    /// half-way), it deregisters.
    fn take(&mut self, replies: &File, process: &Process) -> Result<Registration, Fault> {
        let runtime = Handle::try_current().map_err(|_| Fault::Died)?.id();
        if let Some((id, io)) = self.0.take() {
            if id == runtime {
                return Ok(io);
            }
        }
        let register = |fd: RawFd| {
            // SAFETY: the registration lives in the `Worker` that owns the pipe and the process,
            // or in an operation borrowing it, and is dropped before either closes (field
            // order), so the descriptor stays open and unchanged for as long as it is
            // registered.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|_| Fault::Died)
        };
        Ok(Registration {
            replies: register(replies.as_raw_fd())?,
            exited: match &process.exited {
                Some(fd) => Some(register(fd.as_raw_fd())?),
                None => None,
            },
        })
    }

    fn keep(&mut self, io: Registration) {
        if let Ok(runtime) = Handle::try_current() {
            self.0 = Some((runtime.id(), io));
        }
    }
}

/// One read that does not wait: `None` when nothing is there yet.
fn read_now(replies: &File, buf: &mut [u8]) -> Result<Option<usize>, Fault> {
    match poll::read_now(replies, buf) {
        Ok(Some(0)) | Err(_) => Err(Fault::Died),
        Ok(read) => Ok(read),
    }
}

fn check_hello(payload: &[u8], prove_build: bool) -> Result<(), Error> {
    type Hello = (u16, u32, Vec<(String, u64)>, Option<u64>);
    let (protocol, _pid, theirs, build): Hello =
        postcard::from_bytes(payload).map_err(|e| Error::Protocol {
            detail: format!("unreadable handshake: {e}"),
        })?;
    if protocol != wire::PROTOCOL {
        return Err(Error::VersionMismatch {
            detail: format!(
                "the worker speaks protocol {protocol}, this process {}",
                wire::PROTOCOL
            ),
        });
    }
    let ours = Table::get().signature();
    let same = |a: &(&str, u64), b: &(String, u64)| a.0 == b.0 && a.1 == b.1;
    if ours.len() == theirs.len() && ours.iter().zip(&theirs).all(|(a, b)| same(a, b)) {
        if !prove_build {
            return Ok(());
        }
        let ours = crate::sys::image::build_id().map_err(|detail| {
            Error::start_failed(format!("cannot tell this program's build: {detail}"))
        })?;
        return match build {
            Some(theirs) if theirs == ours => Ok(()),
            Some(_) => Err(Error::VersionMismatch {
                detail: "the worker's executable is another build: the same functions, but \
                         their types may be laid out differently"
                    .to_owned(),
            }),
            None => Err(Error::VersionMismatch {
                detail: "the worker could not read its own executable to prove its build"
                    .to_owned(),
            }),
        };
    }
    let detail = match ours.iter().find(|a| !theirs.iter().any(|b| same(a, b))) {
        Some((name, _)) => format!("`{name}` is missing or different in the worker"),
        None => match theirs.iter().find(|b| !ours.iter().any(|a| same(a, b))) {
            Some((name, _)) => format!("the worker has `{name}`, which this process does not"),
            None => "the registries are ordered differently".to_owned(),
        },
    };
    Err(Error::VersionMismatch { detail })
}
