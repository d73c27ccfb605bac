//! Turning a panic in a function body into a report that can travel back to the caller.
//!
//! `catch_unwind` hands back only the payload; the location and backtrace exist only inside the
//! panic hook. So a hook, chained in front of whatever hook was installed before, records them in
//! a thread-local while an offloaded body runs on that thread. Such a panic is not printed: it
//! travels to the caller whole, as `Error::Panicked`, like an exception from Python's executors.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// What a panic left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PanicReport {
    pub message: String,
    pub location: Option<String>,
    pub backtrace: Option<String>,
}

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static SEEN: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let location = info.location().map(ToString::to_string);
                let backtrace = Backtrace::capture();
                let backtrace = (backtrace.status() == BacktraceStatus::Captured)
                    .then(|| backtrace.to_string());
                SEEN.with(|seen| *seen.borrow_mut() = location.map(|l| (l, backtrace)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `body`, turning a panic into a [`PanicReport`].
pub(crate) fn catch<R>(body: impl FnOnce() -> R) -> Result<R, PanicReport> {
    install_hook();
    CATCHING.with(|c| c.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    CATCHING.with(|c| c.set(false));
    outcome.map_err(|payload| {
        let seen = SEEN.with(|seen| seen.borrow_mut().take());
        let (location, backtrace) = match seen {
            Some((location, backtrace)) => (Some(location), backtrace),
            None => (None, None),
        };
        PanicReport {
            message: message_of(&*payload),
            location,
            backtrace,
        }
    })
}

fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_reports_message_and_location() {
        let report = catch(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(report.message, "boom 7");
        assert!(report.location.unwrap().contains("panic.rs"));
        assert_eq!(catch(|| 5), Ok(5));
    }
}
