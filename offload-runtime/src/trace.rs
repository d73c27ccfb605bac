//! With the `tracing` feature: a span per call, `offload.call`, on both sides of the process
//! boundary. The caller's span names the call with an id (`caller pid:count`) that travels in
//! the call's frame, and the worker runs the function inside a span of the same name and id, so
//! that what the function logs reads, in the worker's log, as part of the caller's call.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use tracing::field::Empty;
use tracing::Span;

use crate::function::FnSpec;

/// A call's trace id: the caller's pid in the high half, a count of its calls in the low one.
pub(crate) struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 32, self.0 as u32)
    }
}

/// The caller's span for one process-mode call, and the id to send with it when the span is
/// enabled (a call nobody listens to carries none).
pub(crate) fn process_call(spec: &FnSpec) -> (Span, Option<u64>) {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call =
        u64::from(std::process::id()) << 32 | u64::from(CALLS.fetch_add(1, Ordering::Relaxed));
    let span = tracing::info_span!(
        "offload.call",
        call = %CallId(call),
        function = spec.name,
        mode = "process",
        pool = spec.pool,
        worker = Empty,
        queue_wait_us = Empty,
        run_us = Empty,
    );
    let traced = (!span.is_disabled()).then_some(call);
    (span, traced)
}

/// Records, in the current call's span, how long the call waited for a worker.
pub(crate) fn queued(wait: std::time::Duration) {
    Span::current().record("queue_wait_us", wait.as_micros() as u64);
}

/// Records, in the current call's span, the worker the call runs on.
pub(crate) fn on_worker(pid: u32) {
    Span::current().record("worker", pid);
}

/// Records, in the current call's span, how long the call ran.
pub(crate) fn ran(run: std::time::Duration) {
    Span::current().record("run_us", run.as_micros() as u64);
}
