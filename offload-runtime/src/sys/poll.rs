//! When to poll for a message rather than sleep until it comes, and how to read without waiting.
//!
//! A process asleep in `read` costs whoever wakes it a wake-up, and waking a process on another
//! core takes tens of microseconds on a virtual machine: more than a small call itself. So a
//! caller polls for a reply, and a worker for the next call, for a short while before sleeping,
//! as long as such polls keep finding their message; after a few misses in a row (a slow
//! function, a caller that pauses between calls) polling stops, but for one probe every so
//! often, and costs nothing more.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

/// How long one poll lasts at most, unless the pool says otherwise.
pub(crate) const POLL_FOR: Duration = Duration::from_micros(50);

/// Misses in a row after which polling stops, and how often it is tried again after that.
const MISSES: u32 = 3;
const PROBE_EVERY: u32 = 16;

/// One reader's record of its recent polls.
pub(crate) struct Poller {
    /// How long one poll lasts; zero for never.
    window: Duration,
    misses: u32,
    waits: u32,
}

impl Poller {
    pub(crate) fn new(window: Duration) -> Self {
        Poller {
            window,
            misses: 0,
            waits: 0,
        }
    }

    /// How long one poll lasts; zero for never.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Until when to poll for a message not there at `now`, if at all.
    pub(crate) fn until(&mut self, now: Instant) -> Option<Instant> {
        self.waits = self.waits.wrapping_add(1);
        let due = self.misses < MISSES || self.waits.is_multiple_of(PROBE_EVERY);
        (due && !self.window.is_zero()).then(|| now + self.window)
    }

    /// Whether the message polled for came in time.
    pub(crate) fn record(&mut self, came: bool) {
        self.misses = if came {
            0
        } else {
            self.misses.saturating_add(1)
        };
    }
}

/// The core this thread runs on, plus one, where the platform tells it cheaply; 0 otherwise.
pub(crate) fn this_core() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu has no preconditions.
        let core = unsafe { libc::sched_getcpu() };
        u32::try_from(core + 1).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Makes reads and writes of `file` return at once instead of waiting; both ends of a channel
/// are used this way, and wait for their descriptor with the runtime or with [`wait_readable`].
pub(crate) fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open; only its status flags are read and changed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One read of a non-blocking `file` that does not wait: `None` when nothing is there yet.
pub(crate) fn read_now(mut file: &File, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How many bytes wait unread in the pipe behind `file`, either end of it.
pub(crate) fn unread(file: &File) -> Option<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let asked = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &mut count) };
    (asked == 0).then(|| usize::try_from(count).ok()).flatten()
}

/// Sleeps until `file` has something to read, or its writer closed it, or `limit` has passed;
/// `false` for the last.
pub(crate) fn wait_readable(file: &File, limit: Option<Duration>) -> io::Result<bool> {
    let mut wanted = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let until = limit.map(|limit| Instant::now() + limit);
    loop {
        let wait = match until {
            None => -1,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX)
            }
        };
        // SAFETY: one valid pollfd, waited on for `wait` milliseconds (-1: without a limit).
        match unsafe { libc::poll(&mut wanted, 1, wait) } {
            0 => return Ok(false),
            ready if ready > 0 => return Ok(true),
            _ => {}
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_stops_after_misses_in_a_row_and_probes_until_a_poll_hits() {
        let mut poller = Poller::new(POLL_FOR);
        let now = Instant::now();
        for _ in 0..MISSES {
            assert_eq!(poller.until(now), Some(now + POLL_FOR));
            poller.record(false);
        }
        let polled: Vec<bool> = (0..2 * PROBE_EVERY)
            .map(|_| poller.until(now).is_some())
            .collect();
        assert_eq!(polled.iter().filter(|p| **p).count(), 2, "{polled:?}");
        // A probe that finds its message turns polling back on.
        while poller.until(now).is_none() {}
        poller.record(true);
        assert!((0..PROBE_EVERY).all(|_| poller.until(now).is_some()));
        let mut never = Poller::new(Duration::ZERO);
        assert!((0..2 * PROBE_EVERY).all(|_| never.until(now).is_none()));
    }
}
