//! Running one call, the same for every transport: look the function up, run it (decoding its
//! arguments and encoding its result under `catch_unwind`), and make the reply frame.

use crate::function::{Outcome, Table};
use crate::wire::{self, Kind};

/// Runs one call and leaves the reply frame in `output`. With the `tracing` feature, a call that
/// carries its caller's trace id runs in an `offload.call` span naming it, so that what the
/// function logs reads as part of the caller's call.
pub(super) fn answer(
    table: &Table,
    index: u32,
    id: u64,
    args: &[u8],
    output: &mut Vec<u8>,
    max_frame: usize,
    call: Option<u64>,
) {
    let Some(invoke) = table.invoke_at(index) else {
        *output = wire::frame(Kind::UnknownFunction, id, &index.to_le_bytes());
        return;
    };
    #[cfg(feature = "tracing")]
    let _span = call.map(|call| {
        tracing::info_span!(
            "offload.call",
            call = %crate::trace::CallId(call),
            function = table.name_at(index).unwrap_or_default(),
            worker = std::process::id(),
        )
        .entered()
    });
    #[cfg(not(feature = "tracing"))]
    let _ = call;
    wire::begin(output, Kind::Returned, id);
    let outcome = invoke(args, output);
    let reply = match outcome {
        Outcome::Returned => match wire::finish(output, max_frame) {
            Ok(()) => return,
            Err(too_long) => (Kind::EncodeFailed, too_long.to_string().into_bytes()),
        },
        Outcome::DecodeFailed(detail) => (Kind::DecodeFailed, detail.into_bytes()),
        Outcome::EncodeFailed(detail) => (Kind::EncodeFailed, detail.into_bytes()),
        Outcome::Panicked(report) => {
            let report = *report.0;
            let payload = (report.message, report.location, report.backtrace);
            (
                Kind::Panicked,
                postcard::to_stdvec(&payload).unwrap_or_default(),
            )
        }
    };
    *output = wire::frame(reply.0, id, &reply.1);
}
