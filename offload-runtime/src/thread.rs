//! Thread mode: run the body on tokio's blocking pool, optionally behind a named pool's limit.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::config::{self, Pools, DEFAULT_POOL};
use crate::map::{Inputs, Map, Running};
use crate::panic;
use crate::Error;

static POOLS: Pools<Option<usize>, ThreadPool> = Pools::new();

/// A named limit on how many thread-mode calls run at once: the counterpart of Python's
/// `ThreadPoolExecutor(max_workers=n)`.
///
/// Functions name their pool with `#[offload(thread, pool = "io")]`. The threads themselves come
/// from tokio's blocking pool; the default pool (no `pool = …`) has no limit of its own, like
/// `run_in_executor(None, …)`, unless configured as `"default"` in code. A named pool holds
/// `max_threads` from [`ThreadPool::configure`], else from `OFFLOAD_THREADS_<NAME>`, else
/// `min(32, cores + 4)` as Python does.
pub struct ThreadPool {
    limit: Option<Semaphore>,
    max_threads: Option<usize>,
}

/// Settings for a named [`ThreadPool`], applied with [`ThreadPoolBuilder::apply`].
#[must_use = "a builder does nothing until `apply` is called"]
pub struct ThreadPoolBuilder {
    name: String,
    max_threads: Option<usize>,
}

impl ThreadPool {
    /// Starts configuring the pool called `name`; call before the pool's first call.
    pub fn configure(name: &str) -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            name: name.to_owned(),
            max_threads: None,
        }
    }

    /// The pool called `name`, built from its configuration on first use.
    pub fn get(name: &str) -> Result<&'static ThreadPool, Error> {
        POOLS.get(name, |config| {
            let max_threads = config.flatten();
            if name == DEFAULT_POOL && max_threads.is_none() {
                return Ok(ThreadPool {
                    limit: None,
                    max_threads: None,
                });
            }
            let var = config::env_var("OFFLOAD_THREADS", name);
            let max = config::size(max_threads, &var, (config::cores() + 4).min(32))?;
            Ok(ThreadPool {
                limit: Some(Semaphore::new(max)),
                max_threads: Some(max),
            })
        })
    }

    /// The most calls this pool runs at once; `None` for tokio's own limit.
    pub fn max_threads(&self) -> Option<usize> {
        self.max_threads
    }
}

impl ThreadPoolBuilder {
    /// Runs at most `count` calls of this pool at once.
    pub fn max_threads(mut self, count: usize) -> Self {
        self.max_threads = Some(count);
        self
    }

    /// Records the settings; an error if the pool already served a call or `count` is zero.
    pub fn apply(self) -> Result<(), Error> {
        if self.max_threads == Some(0) {
            return Err(Error::Config {
                detail: format!("thread pool `{}` needs at least one thread", self.name),
            });
        }
        POOLS.configure(&self.name, self.max_threads)
    }
}

/// A thread-mode function as its caller sees it. Built by the `#[offload(thread)]` expansion.
pub struct Local {
    name: &'static str,
    pool: &'static str,
    timeout: Option<Duration>,
    resolved: OnceLock<&'static ThreadPool>,
}

impl Local {
    /// A function registered as `name`, run on the default pool without a timeout.
    pub const fn new(name: &'static str) -> Self {
        Local {
            name,
            pool: DEFAULT_POOL,
            timeout: None,
            resolved: OnceLock::new(),
        }
    }

    /// Runs on the pool called `pool`.
    pub const fn pool(mut self, pool: &'static str) -> Self {
        self.pool = pool;
        self
    }

    /// Gives up waiting after `millis` milliseconds; the thread runs on.
    pub const fn timeout_ms(mut self, millis: u64) -> Self {
        self.timeout = Some(Duration::from_millis(millis));
        self
    }

    fn resolve(&self) -> Result<&'static ThreadPool, Error> {
        if let Some(pool) = self.resolved.get() {
            return Ok(pool);
        }
        let pool = ThreadPool::get(self.pool)?;
        Ok(self.resolved.get_or_init(|| pool))
    }
}

/// Runs `body` on a blocking thread and waits for it without blocking the event loop.
pub async fn call_in_thread<R, F>(function: &'static Local, body: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    crate::error::in_runtime(function.name)?;
    run(function, function.resolve()?, body).await
}

/// Runs `body` once per input on blocking threads, as many at once as the pool allows (the
/// default pool: `min(32, cores + 4)`, as Python's `ThreadPoolExecutor.map` does); see [`Map`].
pub fn map_in_thread<I, R, F>(function: &'static Local, inputs: I, body: F) -> Map<R>
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
    R: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
{
    let inputs = inputs.into_iter();
    let hint = inputs.size_hint();
    let start = move |_chunk: Option<usize>| {
        let resolved = crate::error::in_runtime(function.name).and_then(|()| function.resolve());
        let pool = match resolved {
            Ok(pool) => pool,
            Err(error) => return Running::failing(inputs, error),
        };
        let threads = pool
            .max_threads
            .unwrap_or_else(|| (config::cores() + 4).min(32));
        let (send, results) = mpsc::channel(threads * 2);
        let panicked = Arc::new(Mutex::new(None));
        let inputs = Inputs::read(inputs, threads, panicked.clone(), |input| input);
        let shared = Arc::new((inputs, body));
        let mut drivers = JoinSet::new();
        for _ in 0..threads {
            let (shared, send) = (shared.clone(), send.clone());
            drivers.spawn(async move {
                while let Some((index, input)) = shared.0.next().await {
                    let shared = shared.clone();
                    let result = run(function, pool, move || (shared.1)(input)).await;
                    if send.send((index, result)).await.is_err() {
                        return;
                    }
                }
            });
        }
        Running::new(results, panicked, drivers)
    };
    Map::new(hint, Box::new(start))
}

/// Runs `body` on a blocking thread of `pool`, within the function's timeout.
async fn run<R, F>(function: &'static Local, pool: &'static ThreadPool, body: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let permit = match &pool.limit {
        Some(limit) => Some(limit.acquire().await.map_err(|_| Error::Shutdown)?),
        None => None,
    };
    // With the `tracing` feature, the body runs inside the call's span, so that what it logs
    // reads as part of the call.
    #[cfg(feature = "tracing")]
    let span = tracing::info_span!(
        "offload.call",
        function = function.name,
        mode = "thread",
        pool = function.pool,
    );
    let task = tokio::task::spawn_blocking(move || {
        #[cfg(feature = "tracing")]
        let _entered = span.entered();
        let outcome = panic::catch(body);
        drop(permit);
        outcome
    });
    let joined = match function.timeout {
        None => task.await,
        Some(after) => tokio::time::timeout(after, task)
            .await
            .map_err(|_| Error::Timeout {
                function: function.name,
                after,
            })?,
    };
    match joined {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(report)) => Err(Error::Panicked {
            function: function.name,
            message: report.message,
            location: report.location,
            backtrace: report.backtrace,
        }),
        Err(_) => Err(Error::Shutdown),
    }
}
