//! The resource limits a pool sets on its workers with `setrlimit`: an address space for the
//! whole worker, and CPU time for each call. A worker that exceeds them fails alone: its
//! allocation fails, or the kernel ends it, and only the call it was running fails.

use std::time::Duration;

/// Caps the worker's address space at `bytes`, not counting the `shared` bytes already mapped
/// for the region it shares with its caller (which is sized by the pool's frame limit, not by
/// what the worker's functions do). Both the soft and the hard limit are set, so that the
/// functions cannot raise it back; a hard limit already lower stays.
pub(super) fn cap_address_space(bytes: u64, shared: usize) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    // The region's bytes, and the page of status words after them.
    let shared = (shared as u64).next_multiple_of(page) + page;
    let limit = bytes.saturating_add(shared);
    set(Resource::AddressSpace, |hard| {
        (limit.min(hard), limit.min(hard))
    });
}

/// A CPU-time budget for each call.
///
/// `RLIMIT_CPU` counts the CPU time of the whole process, in seconds, since it started: so
/// before each call the soft limit is moved to the time the worker has used so far plus the
/// budget, rounded up to the second. A call that runs past it gets SIGXCPU, whose default
/// action ends the worker; the caller sees `Error::WorkerDied` and the pool starts a new one.
/// The hard limit is left as it is, so that the next call can move the soft one again.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuBudget {
    seconds: u64,
}

impl CpuBudget {
    /// The budget of `seconds` a call, if the pool set one (0 for none).
    pub(super) fn of(seconds: u64) -> Option<CpuBudget> {
        (seconds > 0).then_some(CpuBudget { seconds })
    }

    /// Gives the next call its budget.
    pub(super) fn arm(self) {
        let used = process_cpu_time();
        let until = used
            .as_secs()
            .saturating_add(u64::from(used.subsec_nanos() > 0))
            .saturating_add(self.seconds);
        set(Resource::Cpu, |hard| (until.min(hard), hard));
    }
}

#[derive(Debug, Clone, Copy)]
enum Resource {
    AddressSpace,
    Cpu,
}

/// Sets the soft and hard limits of `resource` to what `limits` makes of the hard limit now.
/// Best effort: a worker whose limit cannot be set runs without it.
fn set(resource: Resource, limits: impl FnOnce(u64) -> (u64, u64)) {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is valid.
    let read = unsafe {
        match resource {
            Resource::AddressSpace => libc::getrlimit(libc::RLIMIT_AS, &mut now),
            Resource::Cpu => libc::getrlimit(libc::RLIMIT_CPU, &mut now),
        }
    };
    if read != 0 {
        return;
    }
    let (soft, hard) = limits(widen(now.rlim_max));
    let new = libc::rlimit {
        rlim_cur: libc::rlim_t::try_from(soft).unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::rlim_t::try_from(hard).unwrap_or(libc::RLIM_INFINITY),
    };
    // SAFETY: setrlimit reads one rlimit through the pointer, which is valid.
    unsafe {
        match resource {
            Resource::AddressSpace => libc::setrlimit(libc::RLIMIT_AS, &new),
            Resource::Cpu => libc::setrlimit(libc::RLIMIT_CPU, &new),
        }
    };
}

/// `rlim_t` is `u64` on 64-bit targets, narrower on some others.
#[allow(clippy::useless_conversion)]
fn widen(limit: libc::rlim_t) -> u64 {
    u64::from(limit)
}

/// The CPU time this process has used, all its threads together (what `RLIMIT_CPU` counts).
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
