//! Starting worker processes (this same binary, re-executed) and collecting their exit status.
//!
//! Spawning happens on one long-lived thread: on Linux a child's parent-death signal fires when
//! the *thread* that forked it exits, so forking from a short-lived blocking-pool thread would
//! kill healthy workers when that thread retires.
//!
//! Each worker leads a process group of its own. A terminal's Ctrl-C, sent to the caller's
//! group, then reaches only the caller, which decides what becomes of running calls; and when a
//! worker ends, whether it exited, crashed or was killed for a timeout or a cancelled call, the
//! processes it started and left in its group are killed with it, so no call leaves a process
//! of its own behind; a worker whose caller ends kills its own group (see `worker/group.rs`).
//! (A program that must outlive its worker starts a group or a session of its own.)

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::Exit;
use crate::sys::image::Program;
use crate::sys::shm::{Region, SHARED_FD};
use crate::worker::{Marker, CALLS_FD, REPLIES_FD};

/// A worker process. Dropping it kills and reaps the process and its group, so no code path
/// that loses a worker (a cancelled start, a timed-out call) can leave it running or a zombie.
pub(crate) struct Process {
    child: Option<Child>,
    pub pid: u32,
    /// Readable once the process has exited, whatever its children still hold open (Linux's
    /// pidfd); `None` where the platform has none.
    pub exited: Option<OwnedFd>,
}

impl Process {
    /// How the process ended, once it has; for a process whose channel already closed.
    pub(crate) fn exit(mut self) -> oneshot::Receiver<Exit> {
        reap(self.child.take().expect("a process is reaped once"), false)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // Killed here, before its channel closes (it is dropped after this), so that the
            // worker dies quietly instead of reporting a broken channel first.
            kill_group(child.id());
            reap(child, true);
        }
    }
}

/// Kills a worker's process group: the worker, if it still runs, and every process it started
/// that stayed in its group. The group keeps the worker's pid as its id until the worker is
/// reaped, so this never reaches another group.
pub(crate) fn kill_group(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

/// A freshly started worker: the process, the caller's ends of its channel, and the region it
/// shares with the caller, if the platform has one.
pub(crate) type Spawned = (Process, Ends, Option<Region>);

/// The caller's ends of a worker's channel: one pipe carries calls to the worker, another its
/// replies back. Pipes rather than a socket pair: a pipe passes bytes without allocating a
/// buffer per write, and a round trip through two of them takes about half as long, which is
/// most of what a small call costs.
pub(crate) struct Ends {
    pub calls: File,
    pub replies: File,
    /// A read end of the calls pipe that the caller holds and never reads. While it is open, a
    /// write to a worker that died neither fails with EPIPE nor raises SIGPIPE (which ends a
    /// program that restored its default action, as command-line tools do), and what the
    /// worker left unread can still be counted.
    pub calls_held: File,
}

struct Request {
    program: Program,
    marker: Marker,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

/// Starts `program` as a worker and returns once the process exists (not once it is ready).
pub(crate) async fn spawn(program: Program, marker: Marker) -> io::Result<Spawned> {
    static LAUNCHER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let gone = || io::Error::other("the offload launcher thread is gone");
    let (reply, answer) = oneshot::channel();
    let request = Request {
        program,
        marker,
        reply,
    };
    {
        let mut launcher = LAUNCHER.lock().unwrap_or_else(|p| p.into_inner());
        let request = match &*launcher {
            Some(sender) => sender.send(request).err().map(|back| back.0),
            None => Some(request),
        };
        // No launcher yet, or it is gone: start one. A system with no thread to spare fails
        // this start with an error, and the next start tries again.
        if let Some(request) = request {
            let (send, receive) = mpsc::channel::<Request>();
            thread::Builder::new()
                .name("offload-launcher".into())
                .spawn(move || {
                    for request in receive {
                        let _ = request.reply.send(start(&request.program, request.marker));
                    }
                })
                .map_err(|e| io::Error::other(format!("cannot start a thread: {e}")))?;
            send.send(request).map_err(|_| gone())?;
            *launcher = Some(send);
        }
    }
    answer.await.map_err(|_| gone())?
}

fn start(program: &Program, marker: Marker) -> io::Result<Spawned> {
    let (their_calls, calls) = pipe()?;
    let (replies, their_replies) = pipe()?;
    for end in [&calls, &replies] {
        enlarge(end);
    }
    let (region, region_fd) = shared_region(marker.shared);
    let placed = [
        (their_replies.as_raw_fd(), REPLIES_FD),
        (their_calls.as_raw_fd(), CALLS_FD),
        (
            region_fd.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
            SHARED_FD,
        ),
    ];
    let marker = Marker {
        shared: region.as_ref().map_or(0, Region::len),
        // What tells the worker that its descriptors 3 and 4 are the pipes made for it, and
        // not a marker that leaked into some other program's environment.
        pipes: [inode(&their_replies)?, inode(&their_calls)?],
        ..marker
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut command = Command::new(&program.path);
    command
        .arg0(&program.name)
        .env(crate::worker::MARKER, marker.encode())
        .stdin(Stdio::null())
        .process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions.
    unsafe {
        command.pre_exec(move || {
            // Every descriptor is first copied high, then the copies go to their places, so
            // that none can be overwritten before it is copied (a pipe may well be on 3 or 4).
            // The worker closes the high copies as it starts.
            let mut high = [-1; 3];
            for (copy, (fd, _)) in high.iter_mut().zip(placed) {
                if fd != -1 {
                    *copy = libc::fcntl(fd, libc::F_DUPFD, 10);
                    if *copy == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            for (copy, (_, place)) in high.into_iter().zip(placed) {
                if copy != -1 && libc::dup2(copy, place) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Until the worker watches for its caller's exit itself (see `worker/group.rs`).
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            let _ = parent;
            Ok(())
        });
    }
    let calls_held = their_calls.try_clone()?;
    let child = spawn_when_not_busy(&mut command)?;
    drop((their_calls, their_replies, region_fd));
    let pid = child.id();
    Ok((
        Process {
            child: Some(child),
            pid,
            exited: pidfd(pid),
        },
        Ends {
            calls: File::from(calls),
            replies: File::from(replies),
            calls_held: File::from(calls_held),
        },
        region,
    ))
}

/// Spawns `command`, trying again for a while if its executable is busy (ETXTBSY): a program
/// written just before, by this process or another, stays open for writing in any child forked
/// meanwhile until that child execs, a few milliseconds at most.
fn spawn_when_not_busy(command: &mut Command) -> io::Result<Child> {
    let mut pause = Duration::from_millis(1);
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && pause < BUSY_FOR => {
                thread::sleep(pause);
                pause *= 2;
            }
            spawned => return spawned,
        }
    }
}

/// How long a busy executable is waited for, in all, before its start fails.
const BUSY_FOR: Duration = Duration::from_millis(500);

fn inode(end: &OwnedFd) -> io::Result<u64> {
    Ok(File::from(end.try_clone()?).metadata()?.ino())
}

/// A descriptor that becomes readable when `pid` exits (Linux 5.3 and later; close-on-exec).
fn pidfd(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a descriptor just returned, owned by nothing else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// How many bytes a channel's pipe holds, where the platform lets the size be set (Linux): about
/// what a socket pair buffers, so that a large frame takes few wake-ups. With the default,
/// 64 KiB, a 64 KiB reply took 39-57 µs against 24-29 µs, and a 900 KiB one 10% longer.
/// Linux counts these bytes against a per-user budget (`/proc/sys/fs/pipe-user-pages-soft`,
/// 64 MiB by default, not applied to root), which holds the pipes of 128 workers; past it, new
/// pipes of that user start at 8 KiB, so pools far larger than that should raise the budget.
const PIPE_BYTES: libc::c_int = 256 << 10;

/// Sets the pipe behind `end` to [`PIPE_BYTES`]; best effort, since a smaller pipe only costs
/// large frames more wake-ups.
fn enlarge(end: &OwnedFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: `end` is an open pipe; F_SETPIPE_SZ only resizes its buffer.
    unsafe {
        libc::fcntl(end.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES)
    };
    let _ = (end, PIPE_BYTES);
}

/// A new pipe, `(read end, write end)`, whose ends close on exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors written.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // SAFETY: as above.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if made == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    for fd in [fds[0], fds[1]] {
        // SAFETY: `fd` is open; only its close-on-exec flag changes.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// A region of `len` bytes to share with the worker, where the platform has them (Linux); a
/// failure only means large arguments go through the pipe.
fn shared_region(len: usize) -> (Option<Region>, Option<std::os::fd::OwnedFd>) {
    match Region::create(len) {
        Ok((region, fd)) if len > 0 => (Some(region), Some(fd)),
        _ => (None, None),
    }
}

/// Waits for `child` to exit on a thread of its own, so that no worker is left a zombie, and
/// yields how it ended; its process group is killed before it is reaped. With `kill` it is
/// killed first; without, it gets a grace period (its channel already closed, so it is exiting)
/// before it is killed anyway, so reaping never hangs. Where no thread can be started, it is
/// killed and reaped at once.
fn reap(child: Child, kill: bool) -> oneshot::Receiver<Exit> {
    const GRACE: Duration = Duration::from_secs(2);
    let (send, receive) = oneshot::channel();
    let job = Arc::new(Mutex::new(Some((child, send))));
    let reaping = |job: &Mutex<Option<(Child, oneshot::Sender<Exit>)>>, kill: bool| {
        let Some((mut child, send)) = job.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let started = Instant::now();
        let mut pause = Duration::from_micros(50);
        while !kill && started.elapsed() < GRACE && !exited(child.id()) {
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        kill_group(child.id());
        let exit = child.wait().map_or(Exit::Unknown, Exit::from);
        let _ = send.send(exit);
    };
    let on_thread = job.clone();
    let reaper = thread::Builder::new()
        .name("offload-reaper".into())
        .spawn(move || reaping(&on_thread, kill));
    if reaper.is_err() {
        reaping(&job, true);
    }
    receive
}

/// Whether `pid`, a child not reaped yet, has exited; it stays a zombie, keeping its pid and its
/// group's id from being reused.
fn exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid writes one through the pointer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; WNOWAIT leaves the child waitable.
    let asked = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // With WNOHANG and nothing to report, the info stays zeroed.
    asked == -1 || info.si_signo != 0
}
