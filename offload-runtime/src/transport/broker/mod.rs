//! Broker pools: calls that run on other hosts, through NATS JetStream (the `nats` feature).
//!
//! A caller publishes each call, or each chunk of an `f_map`, as one message to a work-queue
//! stream, on a subject named after the pool and the build (`names`). Agents, copies of the
//! same program started with `OFFLOAD_AGENT` set, pull those messages only as fast as their
//! local worker processes free up, run each call in a worker exactly as a local pool would,
//! and send the caller its events over core NATS (`event`): taken, the replies, or how it was
//! lost. The caller (`caller`) waits for them, watching the heartbeat of the agent that took
//! the call so that a lost host fails the call within seconds, and withdraws calls no agent
//! serves. Everything above the seam (retries, timeouts, decoding) is the same as for a
//! local pool.

pub(crate) mod agent;
mod batch;
pub(crate) mod caller;
mod event;
mod names;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::config::{self, Pools};
use crate::function::DEFAULT_MAX_DEPTH;
use crate::stats::Counters;
use crate::Error;
use event::Event;
use names::Route;

/// How often an agent says it is alive, and renews its lease on the calls it holds.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a caller waits without a heartbeat from the agent that took a call before it
/// counts the agent as lost.
pub(crate) const LOST_AFTER: Duration = Duration::from_secs(2);
/// How long after this side's link comes back from an outage its agents have to be heard
/// again before one counts as lost: they reconnect at their own pace, the client waiting up to
/// 4 s between tries.
pub(crate) const RECONNECT_GRACE: Duration = Duration::from_secs(6);
/// How long no agent may answer for a pool before its queued calls are withdrawn.
pub(crate) const NO_AGENTS_FOR: Duration = Duration::from_secs(2);
/// How long the server waits for an agent's lease renewal before it hands the message to
/// another agent (which then only reports it gone).
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(10);

static POOLS: Pools<BrokerConfig, BrokerPool> = Pools::new();

/// A pool whose calls run on agents on other hosts, through a NATS JetStream server.
///
/// A pool becomes a broker pool when it is configured with [`BrokerPool::configure`] before
/// its first call, or when the environment variable `OFFLOAD_BROKER` (for the default pool)
/// or `OFFLOAD_BROKER_<POOL>` (say `OFFLOAD_BROKER_HEAVY` for pool `heavy`) holds the
/// server's URL. Annotated functions do not change: `#[offload(process, pool = "heavy")]`
/// runs wherever pool `heavy` runs. Hosts become its workers by running the same binary with
/// `OFFLOAD_AGENT=<url>`: see the crate's "Scaling out" section.
pub struct BrokerPool {
    name: String,
    route: Route,
    config: BrokerConfig,
    admission: Semaphore,
    pub(crate) counters: Counters,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    batches: batch::Batches,
}

/// How to reach the server.
enum Connect {
    Url(String),
    Options(String, Mutex<Option<Box<async_nats::ConnectOptions>>>),
    Client(async_nats::Client),
}

struct BrokerConfig {
    connect: Option<Connect>,
    max_queue: usize,
    max_messages: i64,
    max_bytes: i64,
    max_frame: usize,
    max_depth: u32,
    concurrency: usize,
    memory: bool,
    /// Whether the queue's limits were set in code, and so are brought to the server.
    limits: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            connect: None,
            max_queue: 65_536,
            max_messages: 1_000_000,
            max_bytes: 1 << 30,
            max_frame: 1 << 30,
            max_depth: DEFAULT_MAX_DEPTH,
            concurrency: 32,
            memory: false,
            limits: false,
        }
    }
}

/// Settings for a [`BrokerPool`], applied with [`BrokerPoolBuilder::apply`].
#[must_use = "a builder does nothing until `apply` is called"]
pub struct BrokerPoolBuilder {
    name: String,
    config: BrokerConfig,
}

impl BrokerPoolBuilder {
    /// The server's URL, e.g. `nats://broker.internal:4222` (a comma-separated list for a
    /// cluster; `tls://` requires TLS).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.connect = Some(Connect::Url(url.into()));
        self
    }

    /// Connects to `url` with these options: credentials, nkeys, tokens, TLS certificates and
    /// the like pass through untouched.
    pub fn connect_options(
        mut self,
        url: impl Into<String>,
        options: async_nats::ConnectOptions,
    ) -> Self {
        self.config.connect = Some(Connect::Options(
            url.into(),
            Mutex::new(Some(Box::new(options))),
        ));
        self
    }

    /// Uses a connection the program already has.
    pub fn client(mut self, client: async_nats::Client) -> Self {
        self.config.connect = Some(Connect::Client(client));
        self
    }

    /// How many calls may be on their way at once from this program (default 65,536); calls
    /// beyond that wait before encoding their arguments.
    pub fn max_queue(mut self, count: usize) -> Self {
        self.config.max_queue = count.max(1);
        self
    }

    /// How many messages the broker holds queued, of all programs (default 1,000,000): beyond
    /// it a call fails at once with [`Error::QueueFull`]. A message carries one call, or
    /// several started together (an `f_map` chunk, or calls without a timeout that piled up).
    /// The queue is the server's: set here, the limit is brought to the server when this pool
    /// connects, for every program using it.
    pub fn max_messages(mut self, count: u32) -> Self {
        self.config.max_messages = i64::from(count.max(1));
        self.config.limits = true;
        self
    }

    /// How many bytes the broker holds queued (default 1 GiB), like
    /// [`max_messages`](Self::max_messages).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.config.max_bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.config.limits = true;
        self
    }

    /// The largest encoded arguments or result of one call (default 1 GiB).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// How deeply nested arguments this side encodes, and a result it decodes (default 1024
    /// levels); see
    /// [`ProcessPoolBuilder::max_depth`](crate::ProcessPoolBuilder::max_depth).
    pub fn max_depth(mut self, levels: u32) -> Self {
        self.config.max_depth = levels;
        self
    }

    /// How many chunks of one `f_map` are on their way at once (default 32).
    pub fn concurrency(mut self, chunks: usize) -> Self {
        self.config.concurrency = chunks.max(1);
        self
    }

    /// Keeps queued calls in the server's memory instead of on its disk: faster, but a server
    /// restart loses them. Applies when the queue is created.
    pub fn in_memory(mut self, memory: bool) -> Self {
        self.config.memory = memory;
        self
    }

    /// Records the settings; an error if the pool already served a call, or no process-mode
    /// function of the program uses the pool (a typo of its name).
    pub fn apply(self) -> Result<(), Error> {
        crate::function::Table::get().check_pool(&self.name)?;
        if self.config.connect.is_none() {
            return Err(Error::Config {
                detail: format!(
                    "broker pool `{}` needs a server: call .url(…), .connect_options(…) or \
                     .client(…)",
                    self.name
                ),
            });
        }
        POOLS.configure(&self.name, self.config)
    }
}

impl BrokerPool {
    /// Starts configuring pool `name` as a broker pool; call before the pool's first call.
    pub fn configure(name: &str) -> BrokerPoolBuilder {
        BrokerPoolBuilder {
            name: name.to_owned(),
            config: BrokerConfig::default(),
        }
    }

    /// The broker pool called `name`, if it is one: configured in code, or named by its
    /// environment variable.
    pub(crate) fn find(name: &str) -> Result<Option<&'static BrokerPool>, Error> {
        let var = config::env_var("OFFLOAD_BROKER", name);
        if !POOLS.is_configured(name) && std::env::var_os(&var).is_none() {
            return Ok(None);
        }
        POOLS
            .get(name, |config| {
                let mut config = config.unwrap_or_default();
                if config.connect.is_none() {
                    let url = std::env::var(&var).map_err(|_| Error::Config {
                        detail: format!("{var} must be a URL such as nats://host:4222"),
                    })?;
                    config.connect = Some(Connect::Url(url));
                }
                Ok(BrokerPool {
                    name: name.to_owned(),
                    route: Route::new(name, &names::build()?),
                    admission: Semaphore::new(config.max_queue),
                    counters: Counters::default(),
                    link: tokio::sync::Mutex::new(None),
                    batches: batch::Batches::default(),
                    config,
                })
            })
            .map(Some)
    }

    /// The broker pool called `name`: an error if it is not one (see [`BrokerPool`]).
    pub fn get(name: &str) -> Result<&'static BrokerPool, Error> {
        BrokerPool::find(name)?.ok_or_else(|| Error::Config {
            detail: format!(
                "pool `{name}` is not a broker pool: configure it with BrokerPool::configure, \
                 or set {} to the broker's URL",
                config::env_var("OFFLOAD_BROKER", name)
            ),
        })
    }

    /// Connects to the broker now, creating the queue if it does not exist, rather than on
    /// the first call: a server that cannot be reached is then an error here.
    pub async fn start(&'static self) -> Result<(), Error> {
        self.link().await.map(drop)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the pool has done so far: see [`PoolStats`](crate::PoolStats). Calls on their way
    /// count as running.
    pub fn stats(&self) -> crate::PoolStats {
        let running = self.config.max_queue - self.admission.available_permits();
        self.counters.snapshot(0, running)
    }

    /// What a call waits on until it may encode its arguments.
    pub(crate) fn admission(&'static self) -> &'static Semaphore {
        &self.admission
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.config.max_frame
    }

    pub(crate) fn max_depth(&self) -> u32 {
        self.config.max_depth
    }

    /// How many chunks of a map are on their way at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    /// Arguments that encode to more than this go through the object store.
    pub(crate) fn inline_limit(&self) -> usize {
        // Until connected, a guess at the server's default; sending asks the link anyway.
        self.link
            .try_lock()
            .ok()
            .and_then(|link| link.as_ref().map(|link| link.inline))
            .unwrap_or(INLINE_DEFAULT)
    }

    /// The connection, made on first use on the I/O thread, so that it outlives the runtime of
    /// whichever caller made it.
    async fn link(&'static self) -> Result<Arc<Link>, Error> {
        let mut link = self.link.lock().await;
        if let Some(link) = link.as_ref() {
            return Ok(link.clone());
        }
        let made = io()
            .spawn(Link::connect(self))
            .await
            .map_err(|_| Error::Broker {
                detail: "the broker connection's thread stopped".into(),
            })??;
        *link = Some(made.clone());
        Ok(made)
    }
}

/// A running average of how long calls take (each sample counts a quarter), unknown until the
/// first; kept by callers, to batch only short calls, and by agents, to size their window.
pub(crate) struct Average(std::sync::atomic::AtomicU64);

impl Average {
    const UNKNOWN: u64 = u64::MAX;

    pub(crate) const fn new() -> Average {
        Average(std::sync::atomic::AtomicU64::new(Self::UNKNOWN))
    }

    pub(crate) fn note(&self, sample: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX - 1);
        let old = self.0.load(Relaxed);
        let new = match old {
            Self::UNKNOWN => sample,
            old => old - old / 4 + sample / 4,
        };
        self.0.store(new, Relaxed);
    }

    /// Whether calls are known to take less than `limit` on average.
    pub(crate) fn below(&self, limit: Duration) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) < limit.as_nanos() as u64
    }
}

/// The server's default `max_payload` (1 MiB), less room for headers.
const INLINE_DEFAULT: usize = (1 << 20) - HEADROOM;
const HEADROOM: usize = 16 << 10;

/// The most payload bytes a message of this server carries inline, headers and a call's own
/// framing left room for; anything larger goes through the object store. Callers and agents
/// judge it alike.
fn inline_limit(client: &async_nats::Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(HEADROOM)
        .max(1024)
}

/// A broker pool's connection, and the calls waiting for events on it.
pub(crate) struct Link {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    store: tokio::sync::OnceCell<jetstream::object_store::ObjectStore>,
    /// Replies come to `<inbox>.<call>`.
    inbox: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<Event>>>,
    /// When each agent was last heard from.
    alive: Mutex<HashMap<String, Instant>>,
    /// Whether agents answered for the pool, and since when they have not.
    presence: tokio::sync::Mutex<Presence>,
    /// When this side last heard its own echo through the server.
    echoed: Mutex<Instant>,
    /// When the echo last came back after a gap of over [`LOST_AFTER`]: the link was out.
    resumed: Mutex<Option<Instant>>,
    inline: usize,
}

#[derive(Default)]
struct Presence {
    asked: Option<Instant>,
    none_since: Option<Instant>,
}

impl Link {
    async fn connect(pool: &'static BrokerPool) -> Result<Arc<Link>, Error> {
        let client = match pool
            .config
            .connect
            .as_ref()
            .expect("a broker pool has a server")
        {
            Connect::Url(url) => connect(url, async_nats::ConnectOptions::new()).await?,
            Connect::Options(url, options) => {
                let options = options.lock().unwrap_or_else(|p| p.into_inner()).take();
                let options = options.ok_or_else(|| Error::Broker {
                    detail: format!(
                        "connecting to {url} failed before, and its ConnectOptions were used up; \
                         restart the program"
                    ),
                })?;
                connect(url, *options).await?
            }
            Connect::Client(client) => client.clone(),
        };
        let js = jetstream::new(client.clone());
        let stream = queue(&js, &pool.config).await?;
        let inbox = client.new_inbox();
        let replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(broker_error)?;
        let heartbeats = client
            .subscribe(format!("{}.*", names::ALIVE))
            .await
            .map_err(broker_error)?;
        let inline = inline_limit(&client);
        let link = Arc::new(Link {
            client,
            js,
            stream,
            store: tokio::sync::OnceCell::new(),
            inbox,
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            alive: Mutex::new(HashMap::new()),
            presence: tokio::sync::Mutex::new(Presence::default()),
            echoed: Mutex::new(Instant::now()),
            resumed: Mutex::new(None),
            inline,
        });
        tokio::spawn(caller::route_replies(Arc::downgrade(&link), replies));
        tokio::spawn(caller::note_heartbeats(Arc::downgrade(&link), heartbeats));
        tokio::spawn(caller::echo(Arc::downgrade(&link)));
        Ok(link)
    }

    async fn store(&self) -> Result<&jetstream::object_store::ObjectStore, Error> {
        self.store.get_or_try_init(|| bucket(&self.js)).await
    }
}

/// Whether `client` is connected to its server now.
fn connected(client: &async_nats::Client) -> bool {
    matches!(
        client.connection_state(),
        async_nats::connection::State::Connected
    )
}

/// Connects, naming the URL in the error, which never shows credentials given as options.
async fn connect(
    url: &str,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, Error> {
    options
        .name("offload")
        .connect(url)
        .await
        .map_err(|e| Error::Broker {
            detail: format!(
                "cannot connect to {}: {e}; check that a nats-server with JetStream \
                 (`nats-server -js`) runs there and this host can reach it",
                without_password(url)
            ),
        })
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The stream of queued calls, created with these settings if it does not exist yet.
async fn queue(
    js: &jetstream::Context,
    config: &BrokerConfig,
) -> Result<jetstream::stream::Stream, Error> {
    use jetstream::stream;
    let wanted = stream::Config {
        name: names::STREAM.into(),
        subjects: vec![names::CALLS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: if config.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        discard: stream::DiscardPolicy::New,
        max_messages: config.max_messages,
        max_bytes: config.max_bytes,
        max_age: Duration::from_secs(24 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let failed = |e: &dyn std::fmt::Display| Error::Broker {
        detail: format!(
            "cannot create or open the stream {} (is JetStream enabled on the server? start it \
             with -js): {e}",
            names::STREAM
        ),
    };
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| failed(&e))?;
    let held = &stream.cached_info().config;
    if config.limits
        && (held.max_messages, held.max_bytes) != (wanted.max_messages, wanted.max_bytes)
    {
        let mut limited = held.clone();
        limited.max_messages = wanted.max_messages;
        limited.max_bytes = wanted.max_bytes;
        js.update_stream(&limited).await.map_err(|e| failed(&e))?;
        stream = js.get_stream(names::STREAM).await.map_err(|e| failed(&e))?;
    }
    Ok(stream)
}

/// The bucket for payloads too large for a message, its objects removed after an hour should
/// their owner not remove them.
async fn bucket(js: &jetstream::Context) -> Result<jetstream::object_store::ObjectStore, Error> {
    js.create_object_store(jetstream::object_store::Config {
        bucket: names::BUCKET.into(),
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Broker {
        detail: format!("cannot open the object store {}: {e}", names::BUCKET),
    })
}

/// The object `name` of the bucket, read no further than one byte past `limit` whatever it says
/// of itself, so that the reader can refuse one that is too large; `what` names it in errors.
async fn read_object(
    store: &jetstream::object_store::ObjectStore,
    name: &str,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let read = async {
        store
            .get(name)
            .await?
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    read.await.map_err(|e| Error::Broker {
        detail: format!("cannot read {what}: {e}"),
    })?;
    Ok(bytes)
}

/// An object of the bucket, in chunks as large as a message may be (the store's default, 128
/// KiB, makes a 64 MiB argument 512 messages).
fn object(name: &str, chunk: usize) -> jetstream::object_store::ObjectMetadata {
    jetstream::object_store::ObjectMetadata {
        name: name.to_owned(),
        chunk_size: Some(chunk),
        ..Default::default()
    }
}

fn broker_error(error: impl std::fmt::Display) -> Error {
    Error::Broker {
        detail: error.to_string(),
    }
}

/// The runtime every broker pool's connection lives on: a thread of its own, so that a
/// connection made from one `#[tokio::test]` serves the next test's runtime too.
fn io() -> &'static tokio::runtime::Handle {
    static IO: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    IO.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the broker connection");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("offload-nats".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("a thread for the broker connection");
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_s_password_is_not_shown() {
        assert_eq!(
            without_password("nats://me:secret@h:4222"),
            "nats://***@h:4222"
        );
        assert_eq!(without_password("nats://h:4222"), "nats://h:4222");
    }
}
