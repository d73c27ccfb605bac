//! Thresholds that both ends of a local pool go by.

use std::time::Duration;

/// Calls that take longer than this (on average, or on the CPU) are long: the pool stops
/// taking them along in batches and places them on cores of their own, and a worker running
/// them steps back in priority.
pub(crate) const LONG_CALL: Duration = Duration::from_millis(1);
