//! The guard that turns a re-executed copy of the program into a worker: `serve_if_worker` at
//! the top of `main`, or, in a test binary, a constructor that runs before the harness.

use std::fs::File;
use std::io::Write;
use std::os::unix::io::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::boot::{Marker, REPLIES_FD};
use super::serve::serve;
use super::setup::{self, TestSetup, WorkerSetup};
use crate::wire::{self, Kind};

static GUARD_RAN: AtomicBool = AtomicBool::new(false);

/// The guard ran inside a tokio runtime: too late for this program's copies to become workers,
/// so its calls fail with `GuardMissing` at once rather than start copies that refuse.
static GUARD_LATE: AtomicBool = AtomicBool::new(false);

/// The worker guard: in a process started as an offload worker, serves calls and exits without
/// returning; in any other process, returns at once.
///
/// Call it as the first line of `main`, before anything else runs, or let `#[offload::main]`
/// insert it. Everything `main` does before it would also run in every worker.
pub fn serve_if_worker() {
    // Inside a tokio runtime (the guard as the first line of `#[tokio::main]`'s async main) it
    // runs too late: a worker would serve beside a runtime whose descriptors it does not know,
    // and an agent cannot start its own. The copy refuses, as one whose main has no guard, and
    // the program itself knows now that every copy would.
    let too_late = tokio::runtime::Handle::try_current().is_ok();
    if let Some(marker) = Marker::of_this_process() {
        if too_late {
            refuse_as_unguarded_copy();
        }
        become_worker(marker)
    }
    if too_late {
        GUARD_LATE.store(true, Ordering::Relaxed);
        if std::env::var_os(AGENT).is_some() {
            eprintln!("offload: {}", crate::Error::GuardMissing);
            std::process::exit(2)
        }
        return;
    }
    GUARD_RAN.store(true, Ordering::Relaxed);
    agent_if_asked();
}

/// The variable that makes this program an agent of a broker pool.
const AGENT: &str = "OFFLOAD_AGENT";

/// Turns this process into an agent of a broker pool for good when `OFFLOAD_AGENT` names a
/// broker. Its workers are plain workers: the variable goes before any of them starts.
fn agent_if_asked() {
    let Some(url) = std::env::var_os(AGENT) else {
        return;
    };
    std::env::remove_var(AGENT);
    #[cfg(feature = "nats")]
    crate::transport::broker::agent::run(url.to_string_lossy().into_owned());
    #[cfg(not(feature = "nats"))]
    {
        eprintln!(
            "offload: {AGENT}={url:?} asks this program to serve as an agent of a broker \
             pool, but it was built without offload's `nats` feature; add features = \
             [\"nats\"] to its offload dependency"
        );
        std::process::exit(2)
    }
}

/// The worker guard with a setup that every worker runs once, before it serves its first call
/// (see [`WorkerSetup`]); what `#[offload::main(worker_init = f)]` inserts.
pub fn serve_if_worker_with(setup: &'static WorkerSetup) {
    setup::set(setup);
    serve_if_worker();
}

/// Whether this process can start workers, and how they will reach [`serve`].
pub(crate) fn entry() -> Result<bool, crate::Error> {
    if Marker::of_this_process().is_some() {
        // A re-executed copy whose main did not run the guard: starting workers from here would
        // fork without end. Tell the process that started us, then stop.
        refuse_as_unguarded_copy();
    }
    if GUARD_RAN.load(Ordering::Relaxed) {
        Ok(false)
    } else if GUARD_LATE.load(Ordering::Relaxed) {
        Err(crate::Error::GuardMissing)
    } else if inventory::iter::<TestSetup>().next().is_some() {
        Ok(true)
    } else {
        Err(crate::Error::GuardMissing)
    }
}

/// Turns this process into a worker for good.
fn become_worker(marker: Marker) -> ! {
    std::env::remove_var(super::boot::MARKER);
    crate::sys::image::take_program_name();
    // A worker served from the constructor (a test binary) starts its own workers the same
    // way, should its functions call process-mode functions in turn.
    if !marker.from_ctor {
        GUARD_RAN.store(true, Ordering::Relaxed);
    }
    serve(marker)
}

fn refuse_as_unguarded_copy() -> ! {
    // SAFETY: descriptor 3 was placed by the launcher; nothing else in this copy owns it.
    let mut replies = unsafe { File::from_raw_fd(REPLIES_FD) };
    let _ = replies.write_all(&wire::frame(Kind::GuardMissing, 0, &[]));
    eprintln!("offload: {}", crate::Error::GuardMissing);
    std::process::exit(2)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[used]
#[link_section = ".init_array"]
static SERVE_FROM_CTOR: extern "C" fn() = serve_from_ctor;

#[cfg(target_vendor = "apple")]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static SERVE_FROM_CTOR: extern "C" fn() = serve_from_ctor;

/// Runs before `main` in every process that links offload. Registrations are constructors too;
/// this crate is linked after every crate that depends on it, so theirs have run by now, and the
/// handshake compares registries with the parent in case a linker ever orders them otherwise.
extern "C" fn serve_from_ctor() {
    crate::sys::image::note_start();
    if let Some(marker) = Marker::of_this_process().filter(|m| m.from_ctor) {
        become_worker(marker)
    }
    // A test binary has no main of its own to put the guard in.
    if inventory::iter::<TestSetup>().next().is_some() {
        agent_if_asked();
    }
}
