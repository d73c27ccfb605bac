//! The registry of process-mode functions: every `#[offload(process)]` function submits a
//! [`Registration`] through `inventory`, and a worker looks functions up in it by name.

pub(crate) mod bytes;
pub(crate) mod codec;
pub(crate) mod depth;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use postcard::ser_flavors::io::WriteFlavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::panic::{self, PanicReport};

/// What a process-mode function is, on either side of any transport: the name workers look it
/// up by, the hash of its signature, and the options its attribute gave it.
pub struct FnSpec {
    pub(crate) name: &'static str,
    pub(crate) fingerprint: u64,
    pub(crate) pool: &'static str,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
}

/// One process-mode function as the worker sees it. Built by the `#[offload(process)]` expansion
/// (with `Registration::new`, which the caller's side defines, beside the function's handle).
pub struct Registration {
    pub(crate) spec: &'static FnSpec,
    pub(crate) invoke: Invoke,
}

/// Decodes the arguments from the first slice, runs the body, and appends the encoded result.
pub type Invoke = fn(&[u8], &mut Vec<u8>) -> Outcome;

inventory::collect!(Registration);

impl Registration {
    fn name(&self) -> &'static str {
        self.spec.name
    }

    fn fingerprint(&self) -> u64 {
        self.spec.fingerprint
    }
}

/// Compiles only for types that can cross a process boundary; the expansion calls it once per
/// argument and result type, spanned at that type, so the error points at the user's code.
pub fn assert_transferable<T: Transferable>() {}

/// A type that can cross a process boundary. It exists for its error message: without
/// `do_not_recommend`, rustc would report the missing serde trait and never this one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to or from a worker process",
    label = "not `Serialize` and `Deserialize`",
    note = "process mode encodes every argument and result with serde: derive or implement \
            `serde::Serialize` and `serde::Deserialize` for `{Self}` (where it is built of other \
            types, such as `Option<Vec<T>>`, for the types of your own inside it), or use an owned \
            type that has them",
    note = "a type of another crate that has neither, such as `std::io::Error`, cannot get them: \
            map it to one that has, a `String` (`.map_err(|e| e.to_string())`) or an error type of your own"
)]
pub trait Transferable: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> Transferable for T {}

/// How running one registered function in a worker ended.
#[derive(Debug)]
pub enum Outcome {
    /// The encoded return value was appended to the output.
    Returned,
    /// The arguments did not decode.
    DecodeFailed(String),
    /// The return value did not encode.
    EncodeFailed(String),
    /// The body panicked.
    Panicked(PanicReportBox),
}

/// A panic report, boxed to keep [`Outcome`] small.
#[derive(Debug)]
pub struct PanicReportBox(pub(crate) Box<PanicReport>);

/// The body of every generated `Invoke` function: decode, run, encode, all under
/// `catch_unwind`: a panic in the user's serde code counts as one in the body, and the worker
/// goes on serving.
pub fn invoke<A, R>(input: &[u8], output: &mut Vec<u8>, body: impl FnOnce(A) -> R) -> Outcome
where
    A: DeserializeOwned,
    R: Serialize,
{
    let start = output.len();
    let outcome = panic::catch(|| {
        let args = match codec::decode_arguments::<A>(input, max_depth()) {
            Ok(args) => args,
            Err(error) => return Outcome::DecodeFailed(error.to_string()),
        };
        let output = WriteFlavor::new(&mut *output);
        match depth::to_flavor(&body(args), output, max_depth()) {
            Ok(_) => Outcome::Returned,
            Err(error) => Outcome::EncodeFailed(error.to_string()),
        }
    });
    let outcome =
        outcome.unwrap_or_else(|report| Outcome::Panicked(PanicReportBox(Box::new(report))));
    if !matches!(outcome, Outcome::Returned) {
        output.truncate(start);
    }
    outcome
}

/// How deep a value is decoded unless the pool says otherwise (see `depth.rs`): far deeper than
/// data usually nests, and shallow enough that a hostile peer cannot make decoding costly.
pub(crate) const DEFAULT_MAX_DEPTH: u32 = 1024;

/// How deep a value this worker decodes and encodes: its pool's `max_depth`, set as the worker
/// starts.
static MAX_DEPTH: AtomicU32 = AtomicU32::new(DEFAULT_MAX_DEPTH);

pub(crate) fn set_max_depth(levels: u32) {
    MAX_DEPTH.store(levels, Ordering::Relaxed);
}

fn max_depth() -> u32 {
    MAX_DEPTH.load(Ordering::Relaxed)
}

/// The registry of this binary, in the order a worker announces it.
pub(crate) struct Table {
    entries: Vec<&'static Registration>,
    by_name: HashMap<&'static str, u32>,
    duplicates: Vec<&'static str>,
}

impl Table {
    pub(crate) fn get() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut entries: Vec<&'static Registration> =
                inventory::iter::<Registration>().collect();
            entries.sort_by(|a, b| {
                a.name()
                    .cmp(b.name())
                    .then(a.fingerprint().cmp(&b.fingerprint()))
            });
            let mut duplicates: Vec<&'static str> = entries
                .windows(2)
                .filter(|w| w[0].name() == w[1].name())
                .map(|w| w[0].name())
                .collect();
            duplicates.dedup();
            let by_name = entries
                .iter()
                .enumerate()
                .map(|(i, r)| (r.name(), i as u32))
                .collect();
            Table {
                entries,
                by_name,
                duplicates,
            }
        })
    }

    /// `(name, fingerprint)` of every entry: what a worker announces in its handshake.
    pub(crate) fn signature(&self) -> Vec<(&'static str, u64)> {
        self.entries
            .iter()
            .map(|r| (r.name(), r.fingerprint()))
            .collect()
    }

    /// The index a caller sends for `name`, checked against the caller's fingerprint.
    pub(crate) fn index_of(
        &self,
        name: &'static str,
        fingerprint: u64,
    ) -> Result<u32, crate::Error> {
        if self.duplicates.contains(&name) {
            return Err(crate::Error::VersionMismatch {
                detail: format!(
                    "two functions are registered as `{name}`; give one of them another \
                     `name = \"…\"` in its #[offload(process)] attribute"
                ),
            });
        }
        let index = *self
            .by_name
            .get(name)
            .ok_or(crate::Error::NotRegistered { function: name })?;
        let entry = self.entries[index as usize];
        if entry.fingerprint() != fingerprint {
            return Err(crate::Error::VersionMismatch {
                detail: format!("`{name}` has a different signature in the worker"),
            });
        }
        Ok(index)
    }

    /// The index and spec of the function a message from the broker names, checked against
    /// the caller's fingerprint.
    #[cfg(feature = "nats")]
    pub(crate) fn find(
        &self,
        name: &str,
        fingerprint: u64,
    ) -> Result<(u32, &'static FnSpec), crate::Error> {
        let index = *self
            .by_name
            .get(name)
            .ok_or(crate::Error::NotRegistered { function: "" })?;
        let entry = self.entries[index as usize];
        if entry.fingerprint() != fingerprint || self.duplicates.contains(&entry.name()) {
            return Err(crate::Error::VersionMismatch {
                detail: format!("`{name}` has a different signature on the agent"),
            });
        }
        Ok((index, entry.spec))
    }

    /// The pools the registered functions run on, each once.
    pub(crate) fn pools(&self) -> Vec<&'static str> {
        let mut pools: Vec<_> = self.entries.iter().map(|r| r.spec.pool).collect();
        pools.sort_unstable();
        pools.dedup();
        pools
    }

    /// An error for a pool name that no process-mode function of this program uses (the
    /// default pool excepted): configuring or getting it is most likely a typo, and would
    /// change nothing that runs.
    pub(crate) fn check_pool(&self, name: &str) -> Result<(), crate::Error> {
        let pools = self.pools();
        if name == crate::config::DEFAULT_POOL || pools.contains(&name) {
            return Ok(());
        }
        let used = if pools.is_empty() {
            "none".to_owned()
        } else {
            pools
                .iter()
                .map(|pool| format!("`{pool}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(crate::Error::Config {
            detail: format!(
                "no process-mode function of this program uses pool `{name}` (the pools they \
                 use: {used}); check the name against the `pool = \"…\"` of their \
                 #[offload(process)] attributes"
            ),
        })
    }

    #[cfg(feature = "tracing")]
    pub(crate) fn name_at(&self, index: u32) -> Option<&'static str> {
        self.entries.get(index as usize).map(|r| r.name())
    }

    pub(crate) fn invoke_at(&self, index: u32) -> Option<Invoke> {
        self.entries.get(index as usize).map(|r| r.invoke)
    }
}

/// 64-bit FNV-1a, used for signature fingerprints: stable across builds and platforms.
pub const fn fingerprint(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}
