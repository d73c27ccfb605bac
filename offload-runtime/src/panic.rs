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
                    .then(|| trimmed(&backtrace.to_string()));
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

/// The frames of a backtrace that say where the body panicked: not the panic machinery and
/// this module's hook above them, nor the frames that called the body below (the worker's loop,
/// or tokio's blocking pool), numbered again from 0. Unchanged where no such frames are found.
fn trimmed(backtrace: &str) -> String {
    // A frame is a numbered line with its function, and the `at file:line` lines after it.
    let mut frames: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in backtrace.lines() {
        let numbered = line
            .trim_start()
            .split_once(": ")
            .filter(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
        match (numbered, frames.last_mut()) {
            (Some((_, function)), _) => frames.push((function, Vec::new())),
            (None, Some((_, more))) => more.push(line),
            (None, None) => return backtrace.to_owned(),
        }
    }
    let machinery = |f: &str| {
        ["__rustc::", "rust_begin_unwind", "core::panicking::"]
            .iter()
            .any(|prefix| f.starts_with(prefix))
    };
    let Some(raised) = frames
        .iter()
        .position(|(f, _)| f.contains("__rust_end_short_backtrace"))
    else {
        return backtrace.to_owned();
    };
    let mut first = raised + 1;
    while frames.get(first).is_some_and(|(f, _)| machinery(f)) {
        first += 1;
    }
    let caught = frames[first..]
        .iter()
        .position(|(f, _)| f.starts_with("std::panicking::catch_unwind"))
        .map_or(frames.len(), |at| first + at);
    let glue = |f: &str| {
        [
            "core::ops::function::",
            "<core::panic::unwind_safe::",
            "offload_runtime::",
        ]
        .iter()
        .any(|prefix| f.starts_with(prefix))
    };
    let mut last = caught;
    while last > first && glue(frames[last - 1].0) {
        last -= 1;
    }
    if first >= last {
        return backtrace.to_owned();
    }
    let mut out = String::new();
    for (number, (function, more)) in frames[first..last].iter().enumerate() {
        out.push_str(&format!("{number:>4}: {function}\n"));
        for line in more {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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

    #[test]
    fn a_backtrace_keeps_the_frames_from_the_panic_to_the_body() {
        let captured = "   0: offload_runtime::panic::install_hook::{{closure}}
             at offload-runtime/src/panic.rs:34:33
   1: std::panicking::panic_with_hook
   2: std::sys::backtrace::__rust_end_short_backtrace
   3: __rustc::rust_begin_unwind
   4: core::panicking::panic_fmt
   5: core::result::unwrap_failed
   6: app::parse_blocking
             at src/main.rs:7:5
   7: app::parse::{{closure}}
   8: core::ops::function::FnOnce::call_once
   9: offload_runtime::function::invoke
  10: std::panicking::catch_unwind::do_call
  11: std::panicking::catch_unwind
  12: offload_runtime::worker::serve
  13: main
";
        assert_eq!(
            trimmed(captured),
            "   0: core::result::unwrap_failed
   1: app::parse_blocking
             at src/main.rs:7:5
   2: app::parse::{{closure}}
"
        );
        assert_eq!(trimmed("no frames here"), "no frames here");
        let unmarked = "   0: a\n   1: b\n";
        assert_eq!(trimmed(unmarked), unmarked);
    }
}
