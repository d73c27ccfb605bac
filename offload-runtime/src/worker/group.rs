//! A worker's processes beyond itself: the group it leads, which ends whole when its caller
//! ends, however the caller ends; and the children its functions fork, which never serve its
//! channel.
//!
//! The group is ended from inside the worker, by a thread that waits for the caller to exit.
//! An exit hook in the caller would miss a caller killed with SIGKILL; a parent-death signal
//! whose handler kills the group would miss a worker whose functions install a handler of their
//! own for that signal, or block it; the kernel's SIGKILL as parent-death signal ends the worker
//! alone, leaving what it started to run on. A thread that only waits is out of the reach of
//! what the functions do with signals. An idle worker sees its channel close as its caller
//! exits, before the thread learns of the exit: a pool stops a worker with a `Stop` frame, so a
//! channel that closes without one ends the worker with its group as well (see `serve.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::boot::{CALLS_FD, REPLIES_FD};

/// Kills this worker's whole group once its caller has exited, on a thread of its own. Where no
/// thread can start, the parent-death signal the launcher set stays: the worker still dies with
/// its caller (on Linux), only what it started may outlive it.
pub(super) fn end_with_caller() {
    // SAFETY: getppid has no preconditions.
    let caller = unsafe { libc::getppid() };
    let exited = caller_exited(caller);
    let watching = std::thread::Builder::new()
        .name("offload-watch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            wait_for_exit(caller, exited);
            end()
        });
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if watching.is_ok() {
        // The kernel's SIGKILL would end this worker before the thread could end its group.
        // SAFETY: prctl with PR_SET_PDEATHSIG only clears this process's parent-death signal.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
    }
    let _ = watching;
}

/// A descriptor that becomes readable once `caller` has exited (Linux's pidfd).
#[cfg(target_os = "linux")]
type Exited = Option<std::os::fd::OwnedFd>;
#[cfg(not(target_os = "linux"))]
type Exited = ();

#[cfg(target_os = "linux")]
fn caller_exited(caller: libc::pid_t) -> Exited {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, caller, 0) };
    // SAFETY: a descriptor just returned, owned by nothing else.
    let exited = (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
    // Still this worker's parent once the descriptor exists: it names the caller, and not a
    // process that took the pid of a caller already gone.
    // SAFETY: getppid has no preconditions.
    exited.filter(|_| unsafe { libc::getppid() } == caller)
}

#[cfg(not(target_os = "linux"))]
fn caller_exited(_caller: libc::pid_t) -> Exited {}

/// Returns once `caller` has exited and this worker was handed to another parent. It sleeps on
/// the caller's pidfd where there is one; a descriptor that fails, or one that the functions
/// closed, leaves it to check its parent every [`CHECK_PARENT`].
fn wait_for_exit(caller: libc::pid_t, exited: Exited) {
    #[cfg(target_os = "linux")]
    if let Some(exited) = exited {
        use std::os::fd::AsRawFd;
        let mut wanted = libc::pollfd {
            fd: exited.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, waited on without a limit.
        while unsafe { libc::poll(&mut wanted, 1, -1) } == -1
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
        // Its number may be another file's by now: it is never closed here.
        std::mem::forget(exited);
    }
    #[cfg(not(target_os = "linux"))]
    let () = exited;
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } == caller {
        std::thread::sleep(CHECK_PARENT);
    }
}

/// How often a worker without a pidfd of its caller checks whether the caller still runs.
const CHECK_PARENT: Duration = Duration::from_millis(100);

/// Ends this worker with its whole group: what its functions started and left there is killed,
/// and the worker with it (on its own too, should its functions have moved it to another
/// group).
pub(super) fn end() -> ! {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the group is the one this worker leads.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    // Not reached: a process that sends itself SIGKILL ends before kill returns.
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(137) }
}

/// Set in the child of a fork: this process is not the worker, whatever memory it copied.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Makes the children that this worker's functions fork give up its channel as they start: a
/// child that came back from the function to the serving loop would otherwise read calls meant
/// for the worker and answer them too. The child ends when it comes back (see [`forked`]).
/// `std::process::Command` forks through here as well (where it does not use `posix_spawn`),
/// and the channel, close-on-exec, was going anyway.
pub(super) fn keep_channel_from_forks() {
    extern "C" fn in_child() {
        // Only in a child of the worker itself: in a child's own children, descriptors 3 and 4
        // may be files the child opened since.
        if !FORKED.swap(true, Ordering::Relaxed) {
            for fd in [REPLIES_FD, CALLS_FD] {
                // SAFETY: close is async-signal-safe; the worker's File for it is never used in
                // this process (see `forked`).
                unsafe { libc::close(fd) };
            }
        }
    }
    // SAFETY: registers a handler that only uses async-signal-safe operations.
    unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
}

/// Whether this process is a child forked by one of the worker's functions, not the worker.
pub(super) fn forked() -> bool {
    FORKED.load(Ordering::Relaxed)
}
