//! Which core a worker wakes on for a long call: the one the fewest long calls run on.
//!
//! A write to a pipe wakes its reader with a hint that the writer will sleep soon, and Linux
//! then puts the reader on the writer's core unless a core is idle at that instant. A caller
//! sending a burst of calls keeps the cores busy for those microseconds, so two workers can
//! wake on one core and share it while another core idles until the next load balance, up to
//! a scheduler tick later. The kernel also moves a worker that has not started running yet to
//! whichever core idles first, which a moment later may be the busy one.
//!
//! So before a long call is sent, the caller narrows its worker's affinity to one core, where the
//! wake-up must place it, and marks the call [`PLACED`](crate::wire::PLACED); the worker widens its
//! affinity back to what it was when the worker started as it starts the call, so that from then on
//! the kernel may move it as usual. As the call ends, the worker says which core it ended on and
//! whether it had under a quarter of the CPU there: a core that other work keeps that busy is left
//! out of placement for a second (twice as long each time in a row, up to eight), since a worker
//! that stepped back gets a tenth of it, less than it would get beside another long call. The core
//! is one of those the fewest long calls of this process run on, the worker's last if it is one of
//! them. Short calls are left alone: the system calls would cost more than a misplaced wake-up.

#[cfg(target_os = "linux")]
pub(crate) use linux::{note_worker_affinity, widen_this_worker, Placed};

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::{note_worker_affinity, widen_this_worker, Placed};

use std::time::Duration;

/// What a worker tells its caller of a placed call it finished, through the status of the
/// memory they share: the core it ended on, and whether it was crowded, having had under a
/// quarter of the CPU while it ran. A worker that stepped back gets about a tenth of a core
/// that a program at normal priority keeps busy; two long calls on one core get half each, and
/// a virtual machine's host rarely takes three quarters of a call's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub core: usize,
    pub crowded: bool,
}

const CROWDED: u32 = 1 << 31;

impl Ended {
    /// The status word for a call that ended on core `ended`, plus one as
    /// [`crate::sys::poll::this_core`] gives it (0: not known), having had the CPU for `ran` of its
    /// `took`.
    pub(crate) fn word(ended: u32, ran: Duration, took: Duration) -> u32 {
        (ended & !CROWDED) | if ran * 4 < took { CROWDED } else { 0 }
    }

    /// The report in a status word; `None` before any, or where the core is not known.
    pub(crate) fn of(word: u32) -> Option<Ended> {
        let core = usize::try_from(word & !CROWDED).ok()?.checked_sub(1)?;
        Some(Ended {
            core,
            crowded: word & CROWDED != 0,
        })
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    use super::{Duration, Ended};

    /// How long a core that served a placed call badly is left out of placement, the first time;
    /// each time again in a row, twice as long, up to eight times: a call that tries a core
    /// still busy is a slow call.
    const AVOID: Duration = Duration::from_secs(1);
    const AVOID_DOUBLINGS: u32 = 3;

    /// The cores this process may run on, how many placed long calls run on each, until when
    /// each is left out (nanoseconds after `since`), and how many times in a row it was.
    struct Cores {
        ids: Vec<usize>,
        running: Vec<AtomicUsize>,
        avoided_until: Vec<AtomicU64>,
        strikes: Vec<AtomicU32>,
        since: Instant,
    }

    /// The cores workers may run on, read from the first worker placed (`pid`), before it is:
    /// workers inherit the affinity of the thread that starts them, which need not be that of
    /// the thread placing a call. `None` with a single core, or where it cannot be read.
    fn cores(pid: libc::pid_t) -> Option<&'static Cores> {
        static CORES: OnceLock<Option<Cores>> = OnceLock::new();
        CORES
            .get_or_init(|| {
                let allowed = affinity(pid)?;
                let ids: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                    // SAFETY: CPU_ISSET reads one bit of a valid set.
                    .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
                    .collect();
                (ids.len() > 1).then(|| Cores::new(ids))
            })
            .as_ref()
    }

    impl Cores {
        fn new(ids: Vec<usize>) -> Cores {
            Cores {
                running: ids.iter().map(|_| AtomicUsize::new(0)).collect(),
                avoided_until: ids.iter().map(|_| AtomicU64::new(0)).collect(),
                strikes: ids.iter().map(|_| AtomicU32::new(0)).collect(),
                ids,
                since: Instant::now(),
            }
        }

        fn now(&self) -> u64 {
            u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }

        /// The index of the core to place a call on, of those not avoided: one of those the
        /// fewest placed calls run on; of those, the core the worker ended its last placed
        /// call on (`last`), else one other than `here`, the caller's own, which its thread
        /// keeps busy a while longer. Beside another long call on a core left to us is better
        /// than alone on a core that other work keeps busy, where a worker that stepped back
        /// gets a tenth of it. `None` when every core is avoided.
        fn pick(&self, here: Option<usize>, last: Option<usize>) -> Option<usize> {
            let now = self.now();
            (0..self.ids.len())
                .filter(|&i| self.avoided_until[i].load(Ordering::Relaxed) <= now)
                .min_by_key(|&i| {
                    let core = Some(self.ids[i]);
                    let running = self.running[i].load(Ordering::Relaxed);
                    (running, core != last, core == here)
                })
        }

        /// Leaves the core at `index` out of placement, for longer each time in a row: other
        /// work kept it too busy for a call placed on it alone.
        fn avoid(&self, index: usize) {
            let strikes = self.strikes[index].fetch_add(1, Ordering::Relaxed);
            let span = AVOID * (1 << strikes.min(AVOID_DOUBLINGS));
            let until = self.now().saturating_add(span.as_nanos() as u64);
            self.avoided_until[index].store(until, Ordering::Relaxed);
        }

        /// A call placed alone on the core at `index` had the CPU to itself: the next time the
        /// core serves a call badly, it is left out for the shortest time again.
        fn served(&self, index: usize) {
            self.strikes[index].store(0, Ordering::Relaxed);
        }
    }

    fn affinity(pid: libc::pid_t) -> Option<libc::cpu_set_t> {
        // SAFETY: a zeroed cpu_set_t is an empty set, which sched_getaffinity fills in; the
        // size passed is that of the set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            (libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) == 0)
                .then_some(set)
        }
    }

    fn set_affinity(pid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
        // SAFETY: the size passed is that of the set; the call changes only where `pid` runs.
        unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(set), set) == 0 }
    }

    /// A long call placed on a core; dropping it (the reply came, or the worker is gone)
    /// counts the call off that core.
    pub(crate) struct Placed {
        cores: &'static Cores,
        index: usize,
        /// Whether another placed call ran on the core already: the call is then crowded by
        /// this process's own work, which says nothing of the core.
        beside: bool,
    }

    impl Placed {
        /// Narrows the worker's affinity to the core [`Cores::pick`] picks, `ended` being what
        /// the worker told of its last placed call. Best effort: `None` where there is nothing
        /// to pick or the affinity cannot be set, and the worker wakes where the kernel puts it.
        pub(crate) fn narrow(pid: u32, ended: Option<Ended>) -> Option<Placed> {
            let pid = libc::pid_t::try_from(pid).ok()?;
            let cores = cores(pid)?;
            let here = usize::try_from(crate::sys::poll::this_core())
                .ok()?
                .checked_sub(1);
            let index = cores.pick(here, ended.map(|ended| ended.core))?;
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes one of its bits.
            let one = unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cores.ids[index], &mut one);
                one
            };
            if !set_affinity(pid, &one) {
                return None;
            }
            let beside = cores.running[index].fetch_add(1, Ordering::Relaxed) > 0;
            Some(Placed {
                cores,
                index,
                beside,
            })
        }

        /// The call is over, and `ended` is what its worker told of it: a core that crowded a
        /// call placed on it alone is left out of placement for a while.
        pub(crate) fn finish(self, ended: Option<Ended>) {
            match ended {
                Some(ended) if !self.beside && ended.crowded => self.cores.avoid(self.index),
                Some(_) if !self.beside => self.cores.served(self.index),
                _ => {}
            }
        }
    }

    impl Drop for Placed {
        fn drop(&mut self) {
            self.cores.running[self.index].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The cores this worker may run on as it starts, before any call narrows them.
    static STARTED_WITH: OnceLock<Option<libc::cpu_set_t>> = OnceLock::new();

    /// In a worker, as it starts: remembers its affinity for [`widen_this_worker`].
    pub(crate) fn note_worker_affinity() {
        STARTED_WITH.get_or_init(|| affinity(0));
    }

    /// In a worker starting a placed call: lets it run on every core it could as it started.
    pub(crate) fn widen_this_worker() {
        if let Some(Some(started_with)) = STARTED_WITH.get() {
            set_affinity(0, started_with);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Cores 0, 2 and 5, running that many placed calls.
        fn with_running(running: [usize; 3]) -> Cores {
            let cores = Cores::new(vec![0, 2, 5]);
            for (count, cell) in running.into_iter().zip(&cores.running) {
                cell.store(count, Ordering::Relaxed);
            }
            cores
        }

        #[test]
        fn calls_go_to_the_least_used_core_the_workers_last_and_not_the_callers() {
            let cores = with_running([1, 0, 0]);
            assert_eq!(cores.pick(None, None), Some(1));
            assert_eq!(cores.pick(Some(2), None), Some(2), "core 2 is the caller's");
            assert_eq!(cores.pick(Some(5), None), Some(1));
            assert_eq!(
                cores.pick(Some(2), Some(2)),
                Some(1),
                "the worker's last core"
            );
            assert_eq!(cores.pick(None, Some(0)), Some(1), "fewer calls first");
            let cores = with_running([1, 1, 1]);
            assert_eq!(
                cores.pick(Some(0), None),
                Some(1),
                "all even: not the caller's"
            );
            assert_eq!(cores.pick(Some(0), Some(5)), Some(2));
        }

        #[test]
        fn a_crowded_core_is_left_out_for_a_while() {
            let cores = with_running([1, 0, 0]);
            cores.avoid(1);
            assert_eq!(cores.pick(None, Some(2)), Some(2));
            cores.avoid(2);
            assert_eq!(cores.pick(None, None), Some(0), "beside another long call");
            cores.avoid(0);
            assert_eq!(cores.pick(None, None), None, "every core avoided");
            cores.avoided_until[1].store(0, Ordering::Relaxed);
            assert_eq!(cores.pick(None, None), Some(1), "left out for a while only");
        }

        #[test]
        fn a_core_crowded_again_is_left_out_longer_until_it_serves_a_call_well() {
            let cores = with_running([0, 0, 0]);
            let span = |cores: &Cores| {
                cores.avoid(0);
                let until = cores.avoided_until[0].load(Ordering::Relaxed);
                Duration::from_nanos(until.saturating_sub(cores.now()))
            };
            let spans: Vec<Duration> = (0..5).map(|_| span(&cores)).collect();
            for (span, whole) in spans.iter().zip([1, 2, 4, 8, 8]) {
                let whole = AVOID * whole;
                assert!(*span <= whole && *span > whole - AVOID / 2, "{spans:?}");
            }
            cores.served(0);
            assert!(span(&cores) <= AVOID, "back to the shortest");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Duration, Ended};

    #[test]
    fn a_worker_tells_where_a_call_ended_and_whether_it_was_crowded() {
        let ms = Duration::from_millis;
        let ended = |ended, ran, took| Ended::of(Ended::word(ended, ms(ran), ms(took)));
        assert_eq!(Ended::of(0), None, "nothing told yet");
        let crowded = |crowded| Some(Ended { core: 2, crowded });
        assert_eq!(ended(3, 10, 11), crowded(false));
        assert_eq!(
            ended(3, 5, 11),
            crowded(false),
            "half of it: another long call"
        );
        assert_eq!(
            ended(3, 2, 11),
            crowded(true),
            "under a quarter of its core"
        );
        assert_eq!(ended(0, 10, 11), None, "the core is not known");
    }
}

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    /// Placement needs Linux's affinity calls; elsewhere workers wake where the kernel puts
    /// them.
    pub(crate) enum Placed {}

    impl Placed {
        pub(crate) fn narrow(_pid: u32, _ended: Option<super::Ended>) -> Option<Placed> {
            None
        }

        pub(crate) fn finish(self, _ended: Option<super::Ended>) {}
    }

    pub(crate) fn note_worker_affinity() {}

    pub(crate) fn widen_this_worker() {}
}
