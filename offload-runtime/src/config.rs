//! Pools by name: each is configured in code or by environment variable, and built once, on
//! first use, from that configuration. A built pool lives for the rest of the process, so
//! callers may keep `&'static` references to it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Error;

/// The name of the pool that functions without `pool = "…"` use.
pub const DEFAULT_POOL: &str = "default";

enum Slot<C, P: 'static> {
    Configured(C),
    Built(&'static P),
}

/// Named pools of one kind, `P`, each built from a configuration `C`.
pub(crate) struct Pools<C, P: 'static> {
    slots: Mutex<Option<HashMap<String, Slot<C, P>>>>,
}

impl<C, P> Pools<C, P> {
    pub(crate) const fn new() -> Self {
        Pools {
            slots: Mutex::new(None),
        }
    }

    /// The pool called `name`, built on first use with `build` from the configuration set in
    /// code, if any, or else `None`.
    pub(crate) fn get(
        &self,
        name: &str,
        build: impl FnOnce(Option<C>) -> Result<P, Error>,
    ) -> Result<&'static P, Error> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slots = slots.get_or_insert_with(HashMap::new);
        let config = match slots.remove(name) {
            Some(Slot::Built(pool)) => {
                slots.insert(name.to_owned(), Slot::Built(pool));
                return Ok(pool);
            }
            Some(Slot::Configured(config)) => Some(config),
            None => None,
        };
        let pool: &'static P = Box::leak(Box::new(build(config)?));
        slots.insert(name.to_owned(), Slot::Built(pool));
        Ok(pool)
    }

    /// Whether `name` was configured in code or built already.
    #[cfg(feature = "nats")]
    pub(crate) fn is_configured(&self, name: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.as_ref().is_some_and(|slots| slots.contains_key(name))
    }

    /// Records the configuration of `name`; an error once that pool has been built.
    pub(crate) fn configure(&self, name: &str, config: C) -> Result<(), Error> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slots = slots.get_or_insert_with(HashMap::new);
        if let Some(Slot::Built(_)) = slots.get(name) {
            return Err(Error::Config {
                detail: format!(
                    "pool `{name}` is already running; configure it before its first call, \
                     at the start of main"
                ),
            });
        }
        slots.insert(name.to_owned(), Slot::Configured(config));
        Ok(())
    }
}

/// The environment variable that sizes pool `name`: `PREFIX` for the default pool, else
/// `PREFIX_NAME` with the name upper-cased and every other character turned into `_`.
pub(crate) fn env_var(prefix: &str, name: &str) -> String {
    if name == DEFAULT_POOL {
        return prefix.to_owned();
    }
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{suffix}")
}

/// A positive count read from the environment variable `var`, if it is set.
pub(crate) fn env_count(var: &str) -> Result<Option<usize>, Error> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(None);
    };
    match value.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(count) if count > 0 => Ok(Some(count)),
        _ => Err(Error::Config {
            detail: format!(
                "{var}={value:?} is not a positive whole number; set it to, e.g., {var}=4"
            ),
        }),
    }
}

/// The size of a pool: from code, else from the environment, else `fallback`.
pub(crate) fn size(from_code: Option<usize>, var: &str, fallback: usize) -> Result<usize, Error> {
    match from_code {
        Some(0) => Err(Error::Config {
            detail: format!("a pool needs at least one worker ({var})"),
        }),
        Some(count) => Ok(count),
        None => Ok(env_count(var)?.unwrap_or(fallback)),
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_pool_name() {
        assert_eq!(env_var("OFFLOAD_WORKERS", DEFAULT_POOL), "OFFLOAD_WORKERS");
        assert_eq!(
            env_var("OFFLOAD_THREADS", "io-bound"),
            "OFFLOAD_THREADS_IO_BOUND"
        );
    }

    #[test]
    fn a_pool_is_configured_before_it_is_built() {
        let pools: Pools<usize, usize> = Pools::new();
        pools.configure("a", 3).unwrap();
        assert_eq!(*pools.get("a", |c| Ok(c.unwrap_or(1) * 10)).unwrap(), 30);
        assert_eq!(*pools.get("a", |_| unreachable!()).unwrap(), 30);
        assert!(matches!(pools.configure("a", 4), Err(Error::Config { .. })));
        assert_eq!(size(Some(2), "X", 9), Ok(2));
        assert!(size(Some(0), "X", 9).is_err());
    }
}
