//! What callers and agents call things on the broker: the stream, its subjects, the durable
//! consumer agents share, and the headers a call carries. Both sides derive every name from
//! the pool's name and the build, so they meet without configuring anything but the URL.

use crate::Error;

/// The JetStream stream that holds queued calls, of every program and build.
pub(crate) const STREAM: &str = "OFFLOAD_CALLS";
/// Its subjects: `offload.call.<pool>.<build>`.
pub(crate) const CALLS: &str = "offload.call.>";
/// The object store bucket for arguments and results too large for a message.
pub(crate) const BUCKET: &str = "OFFLOAD_DATA";
/// Where agents say they are alive: `offload.alive.<agent>`.
pub(crate) const ALIVE: &str = "offload.alive";

/// The header naming the function: its registry name and fingerprint, `name#hex`.
pub(crate) const FUNCTION: &str = "Offload-Fn";
/// The header naming the subject the agent sends the call's events to.
pub(crate) const REPLY: &str = "Offload-Reply";
/// The header naming the object that holds the call's frames, when they did not fit.
pub(crate) const DATA: &str = "Offload-Data";

/// The names of one pool of one build.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The build.
    pub(crate) build: String,
    /// Where its calls are published.
    pub(crate) calls: String,
    /// The durable consumer its agents pull from.
    pub(crate) consumer: String,
    /// Where agents answer "who serves this?".
    pub(crate) presence: String,
    /// Where the agents of every build of the pool say which build they are.
    pub(crate) builds: String,
    /// Where callers withdraw calls.
    pub(crate) cancel: String,
}

impl Route {
    pub(crate) fn new(pool: &str, build: &str) -> Route {
        let pool = token(pool);
        Route {
            build: build.to_owned(),
            calls: format!("offload.call.{pool}.{build}"),
            consumer: format!("{pool}-{build}"),
            presence: format!("offload.agents.{pool}.{build}"),
            builds: format!("offload.builds.{pool}"),
            cancel: format!("offload.cancel.{pool}.{build}"),
        }
    }
}

/// What this program's calls are routed by: `OFFLOAD_BUILD_ID` if set (for teams that version
/// what their types mean themselves), else a hash of the executable, so that a call is only
/// ever decoded by the very build that encoded it.
pub(crate) fn build() -> Result<String, Error> {
    if let Some(id) = std::env::var_os("OFFLOAD_BUILD_ID") {
        let id = id.to_string_lossy().into_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config {
                detail: format!(
                    "OFFLOAD_BUILD_ID={id:?} must be letters, digits and `_` only, e.g. v42"
                ),
            });
        }
        return Ok(id);
    }
    crate::sys::image::build_id()
        .map(|hash| format!("{hash:016x}"))
        .map_err(|reason| Error::Config {
            detail: format!("cannot fingerprint this program for the broker: {reason}"),
        })
}

/// A pool name as one subject token and part of a consumer name: itself when it is made of
/// letters, digits, `-` and `_`, else a hash of it.
fn token(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_owned()
    } else {
        format!("x{:016x}", crate::function::fingerprint(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pool_name_gives_valid_subject_tokens() {
        let plain = Route::new("heavy", "b1");
        assert_eq!(plain.calls, "offload.call.heavy.b1");
        assert_eq!(plain.consumer, "heavy-b1");
        for odd in ["a.b", "with space", "*", ">", "", "ünï"] {
            let route = Route::new(odd, "b1");
            let pool = route.calls.split('.').nth(2).unwrap();
            assert!(
                pool.chars().all(|c| c.is_ascii_alphanumeric()),
                "{odd:?} → {pool}"
            );
        }
        assert_ne!(Route::new("a.b", "b").calls, Route::new("a,b", "b").calls);
    }
}
