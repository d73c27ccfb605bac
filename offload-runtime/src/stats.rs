//! What a pool has done, counted as it goes: cheap enough to leave on (one relaxed atomic add
//! per call, and per worker started or recycled), read as a [`PoolStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A snapshot of a process pool's work, from [`ProcessPool::stats`](crate::ProcessPool::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Calls admitted and waiting for a worker.
    pub queued: usize,
    /// Workers running calls now.
    pub running: usize,
    /// Calls that returned their value (a function's own `Err` included).
    pub completed: u64,
    /// Calls that ended with an [`Error`], by kind.
    pub failed: FailedCalls,
    /// Worker processes started, replacements included.
    pub workers_started: u64,
    /// Workers replaced for having served `max_calls_per_worker` calls or outgrown
    /// `max_worker_memory`.
    pub workers_recycled: u64,
}

/// Calls that ended with an [`Error`], by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedCalls {
    /// [`Error::Panicked`] and [`Error::WorkerSetup`]: the program's code panicked or failed.
    pub panicked: u64,
    /// [`Error::WorkerDied`]: the worker running the call died.
    pub worker_died: u64,
    /// [`Error::Timeout`].
    pub timed_out: u64,
    /// [`Error::Codec`]: a value did not cross.
    pub codec: u64,
    /// Anything else: a worker that did not start, a broken protocol, a shutdown.
    pub other: u64,
}

/// The counters behind [`PoolStats`].
#[derive(Default)]
pub(crate) struct Counters {
    completed: AtomicU64,
    panicked: AtomicU64,
    worker_died: AtomicU64,
    timed_out: AtomicU64,
    codec: AtomicU64,
    other: AtomicU64,
    workers_started: AtomicU64,
    workers_recycled: AtomicU64,
}

impl Counters {
    /// Counts how a call ended.
    pub(crate) fn ended<R>(&self, result: &Result<R, Error>) {
        let counter = match result {
            Ok(_) => &self.completed,
            Err(Error::Panicked { .. } | Error::WorkerSetup { .. }) => &self.panicked,
            Err(Error::WorkerDied { .. }) => &self.worker_died,
            Err(Error::Timeout { .. }) => &self.timed_out,
            Err(Error::Codec { .. }) => &self.codec,
            Err(_) => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn worker_started(&self) {
        self.workers_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn worker_recycled(&self) {
        self.workers_recycled.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, with the pool's current `queued` and `running`.
    pub(crate) fn snapshot(&self, queued: usize, running: usize) -> PoolStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PoolStats {
            queued,
            running,
            completed: read(&self.completed),
            failed: FailedCalls {
                panicked: read(&self.panicked),
                worker_died: read(&self.worker_died),
                timed_out: read(&self.timed_out),
                codec: read(&self.codec),
                other: read(&self.other),
            },
            workers_started: read(&self.workers_started),
            workers_recycled: read(&self.workers_recycled),
        }
    }
}
