//! When to poll for a message rather than sleep until it comes, and how to read without waiting.
//!
//! A process asleep in `read` costs whoever wakes it a wake-up, and waking a process on another
//! core takes tens of microseconds on a virtual machine: more than a small call itself. So a
//! caller polls for a reply, and a worker for the next call, for a short while before sleeping,
//! as long as such polls keep finding their message; after a few misses in a row (a slow
//! function, a caller that pauses between calls) polling stops, but for one probe every so
//! often, and costs nothing more.

use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
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

    /// Until when to poll for a message not there at `now`, if at all.
    pub(crate) fn until(&mut self, now: Instant) -> Option<Instant> {
        self.waits = self.waits.wrapping_add(1);
        let due = self.misses < MISSES || self.waits % PROBE_EVERY == 0;
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

/// One read that does not wait, of a blocking socket or not: `None` when nothing is there yet.
pub(crate) fn read_now(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writes of its length, and the descriptor is open.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            return Ok(Some(n));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => {}
            _ => return Err(error),
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
