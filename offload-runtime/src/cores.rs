//! Which core a worker wakes on for a long call: the one the fewest long calls run on.
//!
//! A write to a pipe wakes its reader with a hint that the writer will sleep soon, and Linux
//! then puts the reader on the writer's core unless a core is idle at that instant. A caller
//! sending a burst of calls keeps the cores busy for those microseconds, so two workers can
//! wake on one core and share it while another core idles until the next load balance, up to
//! a scheduler tick later. The kernel also moves a worker that has not started running yet to
//! whichever core idles first, which a moment later may be the busy one.
//!
//! So before a long call is sent, the caller narrows its worker's affinity to one core, where
//! the wake-up must place it, and marks the call [`PLACED`](crate::wire::PLACED); the worker
//! widens its affinity back to its caller's as it starts the call, so that from then on the
//! kernel may move it as usual. Short calls are left alone: the system calls would cost more
//! than a misplaced wake-up.

#[cfg(target_os = "linux")]
pub(crate) use linux::{widen_this_worker, Placed};

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::{widen_this_worker, Placed};

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    /// The cores this process may run on, and how many placed long calls run on each.
    struct Cores {
        ids: Vec<usize>,
        running: Vec<AtomicUsize>,
    }

    /// `None` with a single core, or where the affinity cannot be read.
    fn cores() -> Option<&'static Cores> {
        static CORES: OnceLock<Option<Cores>> = OnceLock::new();
        CORES
            .get_or_init(|| {
                let allowed = affinity(0)?;
                let ids: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                    // SAFETY: CPU_ISSET reads one bit of a valid set.
                    .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
                    .collect();
                let running = ids.iter().map(|_| AtomicUsize::new(0)).collect();
                (ids.len() > 1).then_some(Cores { ids, running })
            })
            .as_ref()
    }

    impl Cores {
        /// The index of the core to place a call on: the one the fewest placed calls run on,
        /// other than `here` (the caller's own, which its thread keeps busy a while longer)
        /// when there is a choice.
        fn pick(&self, here: Option<usize>) -> usize {
            (0..self.ids.len())
                .min_by_key(|&i| {
                    let running = self.running[i].load(Ordering::Relaxed);
                    (running, Some(self.ids[i]) == here)
                })
                .expect("more than one core")
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
        running: &'static AtomicUsize,
    }

    impl Placed {
        /// Narrows the worker's affinity to the core [`Cores::pick`] picks. Best effort:
        /// `None` where that is not possible, and the worker wakes where the kernel puts it.
        pub(crate) fn narrow(pid: u32) -> Option<Placed> {
            let cores = cores()?;
            let here = usize::try_from(crate::poll::this_core())
                .ok()?
                .checked_sub(1);
            let index = cores.pick(here);
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes one of its bits.
            let one = unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cores.ids[index], &mut one);
                one
            };
            if !set_affinity(libc::pid_t::try_from(pid).ok()?, &one) {
                return None;
            }
            let running = &cores.running[index];
            running.fetch_add(1, Ordering::Relaxed);
            Some(Placed { running })
        }
    }

    impl Drop for Placed {
        fn drop(&mut self) {
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// In a worker starting a placed call: lets it run on every core its caller may use again.
    pub(crate) fn widen_this_worker() {
        // SAFETY: getppid has no preconditions.
        if let Some(callers) = affinity(unsafe { libc::getppid() }) {
            set_affinity(0, &callers);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn calls_go_to_the_least_used_core_and_not_the_callers_on_a_tie() {
            let cores = Cores {
                ids: vec![0, 2, 5],
                running: [1, 0, 0].map(AtomicUsize::new).into(),
            };
            assert_eq!(cores.pick(None), 1);
            assert_eq!(cores.pick(Some(2)), 2, "core 2 is the caller's");
            assert_eq!(cores.pick(Some(5)), 1);
            cores.running[1].store(1, Ordering::Relaxed);
            cores.running[2].store(1, Ordering::Relaxed);
            assert_eq!(cores.pick(Some(0)), 1, "all even: not the caller's");
            cores.running[0].store(0, Ordering::Relaxed);
            assert_eq!(
                cores.pick(Some(0)),
                0,
                "fewer calls win over the caller's core"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    /// Placement needs Linux's affinity calls; elsewhere workers wake where the kernel puts
    /// them.
    pub(crate) enum Placed {}

    impl Placed {
        pub(crate) fn narrow(_pid: u32) -> Option<Placed> {
            None
        }
    }

    pub(crate) fn widen_this_worker() {}
}
