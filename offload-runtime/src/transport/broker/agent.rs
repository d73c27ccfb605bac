//! A broker pool, agent's side: a copy of the program started with `OFFLOAD_AGENT=<url>`,
//! which the guard turns into this loop instead of running `main`. For every pool its
//! functions name, it pulls call messages only as fast as its local worker processes free up,
//! runs each call on the local pool (so crashes, panics, recycling and placement behave as on
//! one machine), sends the caller its events, and renews its lease on the message while the
//! call runs. A message delivered a second time was held by an agent that was lost: it is
//! never run again, only reported gone, so a call without `retries` runs at most once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{oneshot, Notify};

use super::event::{Event, Failure};
use super::names::{self, Route};
use super::{Average, BrokerConfig, ACK_WAIT, HEARTBEAT, LOST_AFTER};
use crate::function::{FnSpec, Table};
use crate::transport::local::pool::ProcessPool;
use crate::transport::outcome::{Attempt, WorkerId};
use crate::wire::{self, Kind, HEADER};
use crate::Error;

/// Calls a worker runs this fast or faster are pulled many at a time per worker.
const SHORT_CALL: Duration = Duration::from_millis(1);
/// How many calls per worker an agent holds while its calls are short.
const SHORT_DEPTH: usize = 32;
/// How soon after taking a call an agent says so.
const TAKEN_EVERY: Duration = Duration::from_millis(2);
/// How long a cancelled call's id is kept, for a message pulled after its cancel came.
const REMEMBER_CANCELS: Duration = Duration::from_secs(120);

/// Runs this process as an agent of the broker at `url` until SIGTERM or Ctrl-C, then exits.
pub(crate) fn run(url: String) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let code = match runtime {
        Ok(runtime) => runtime.block_on(serve(url)),
        Err(e) => {
            eprintln!("offload agent: cannot start a runtime: {e}");
            2
        }
    };
    std::process::exit(code)
}

struct Agent {
    id: String,
    client: async_nats::Client,
    js: jetstream::Context,
    store: tokio::sync::OnceCell<jetstream::object_store::ObjectStore>,
    build: String,
    inline: usize,
    stopping: AtomicBool,
    stop: Notify,
    /// Calls taken and not yet answered nor said to be taken, by reply subject.
    taken: Mutex<std::collections::HashSet<String>>,
    /// How long the server waits for a renewal of this agent's hold on a message before it
    /// hands the message to another agent.
    lease: Duration,
}

async fn serve(url: String) -> i32 {
    let id = format!("{}:{}", hostname(), std::process::id());
    let (build, lease) = match (names::build(), lease()) {
        (Ok(build), Ok(lease)) => (build, lease),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("offload agent {id}: {e}");
            return 2;
        }
    };
    let mut said = Said::default();
    let client = loop {
        let options = async_nats::ConnectOptions::new().name(format!("offload agent {id}"));
        match options.connect(url.as_str()).await {
            Ok(client) => break client,
            // No retry mends a URL that does not parse.
            Err(e) if e.kind() == async_nats::ConnectErrorKind::ServerParse => {
                eprintln!(
                    "offload agent {id}: OFFLOAD_AGENT is not a broker URL ({e}): give one such \
                     as nats://broker.internal:4222"
                );
                return 2;
            }
            Err(e) => {
                said.once(&id, &format!("cannot connect to the broker yet ({e})"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let js = jetstream::new(client.clone());
    let stream = loop {
        match super::queue(&js, &BrokerConfig::default()).await {
            Ok(stream) => break stream,
            Err(e) => {
                said.once(&id, &e.to_string());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let inline = super::inline_limit(&client);
    let agent = Arc::new(Agent {
        id,
        client,
        js,
        store: tokio::sync::OnceCell::new(),
        build,
        inline,
        stopping: AtomicBool::new(false),
        stop: Notify::new(),
        taken: Mutex::new(std::collections::HashSet::new()),
        lease,
    });
    let pools = pools();
    let mut serving = tokio::task::JoinSet::new();
    for &pool in &pools {
        serving.spawn(serve_pool(agent.clone(), pool, stream.clone()));
    }
    tokio::spawn(heartbeat(agent.clone()));
    tokio::spawn(say_taken(agent.clone()));
    eprintln!(
        "offload agent {} of build {} at {}",
        agent.id,
        agent.build,
        super::without_password(&url)
    );
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return 2;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Stop pulling, let the calls held finish and answer, then go; a second signal ends it now.
    eprintln!(
        "offload agent {}: stopping once the calls it holds are answered (a second signal \
         stops it now)",
        agent.id
    );
    agent.stopping.store(true, Ordering::SeqCst);
    agent.stop.notify_waiters();
    let finished = async {
        while serving.join_next().await.is_some() {}
        // Sends the last answers. A flush waits for a broker that is down to come back, which
        // an agent told to stop must not do: it flushes only while connected, and not for long.
        if super::connected(&agent.client) {
            let _ = tokio::time::timeout(FLUSH_FOR, agent.client.flush()).await;
        }
    };
    tokio::select! {
        _ = finished => 0,
        _ = terminate.recv() => 130,
        _ = tokio::signal::ctrl_c() => 130,
    }
}

/// How long a stopping agent waits for its last answers to reach the broker.
const FLUSH_FOR: Duration = Duration::from_secs(5);

/// Says each of a retry loop's complaints once, and again only when it changes: a broker that
/// stays unreachable for an hour makes one line, not 3,600.
#[derive(Default)]
struct Said(String);

impl Said {
    fn once(&mut self, agent: &str, complaint: &str) {
        if self.0 != complaint {
            eprintln!("offload agent {agent}: {complaint}; retrying every second");
            complaint.clone_into(&mut self.0);
        }
    }
}

/// The lease on a message, in seconds from `OFFLOAD_AGENT_LEASE`, else [`ACK_WAIT`]: shorter
/// hands a silent agent's calls on sooner, longer rides out longer pauses of an agent.
fn lease() -> Result<Duration, Error> {
    const VAR: &str = "OFFLOAD_AGENT_LEASE";
    let Ok(text) = std::env::var(VAR) else {
        return Ok(ACK_WAIT);
    };
    match text.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(lease)) if lease >= Duration::from_secs(1) => Ok(lease),
        _ => Err(Error::Config {
            detail: format!(
                "{VAR}={text:?}: give the lease in seconds, at least 1 (e.g. 10 or 2.5)"
            ),
        }),
    }
}

/// The pools this agent serves: every pool its functions name, or those `OFFLOAD_AGENT_POOLS`
/// lists (comma-separated).
fn pools() -> Vec<&'static str> {
    let all = Table::get().pools();
    match std::env::var("OFFLOAD_AGENT_POOLS") {
        Ok(wanted) => {
            let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
            for pool in &wanted {
                if let Err(e) = Table::get().check_pool(pool) {
                    eprintln!("offload agent: OFFLOAD_AGENT_POOLS: {e}");
                }
            }
            all.into_iter().filter(|p| wanted.contains(p)).collect()
        }
        Err(_) => all,
    }
}

async fn heartbeat(agent: Arc<Agent>) {
    let subject = format!(
        "{}.{:016x}",
        names::ALIVE,
        crate::function::fingerprint(&agent.id)
    );
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let _ = agent
            .client
            .publish(subject.clone(), Bytes::from(agent.id.clone()))
            .await;
    }
}

/// Tells callers which of their calls this agent took, a few milliseconds after it took them,
/// in one event per caller: a call answered by then needs no word, and one event for many
/// calls keeps the broker's load per call low.
async fn say_taken(agent: Arc<Agent>) {
    let mut tick = tokio::time::interval(TAKEN_EVERY);
    loop {
        tick.tick().await;
        let taken = std::mem::take(&mut *agent.taken.lock().unwrap_or_else(|p| p.into_inner()));
        let mut by_caller: HashMap<&str, Vec<u64>> = HashMap::new();
        for reply in &taken {
            if let Some((inbox, id)) = reply.rsplit_once('.') {
                if let Ok(id) = id.parse() {
                    by_caller.entry(inbox).or_default().push(id);
                }
            }
        }
        for (inbox, ids) in by_caller {
            let agent_id = agent.id.clone();
            let event = Event::TakenMany {
                agent: agent_id,
                ids,
            };
            agent.send(&format!("{inbox}.0"), &event).await;
        }
    }
}

/// One pool on this agent: its local workers, and the messages it holds.
struct Served {
    local: &'static ProcessPool,
    held: AtomicUsize,
    freed: Notify,
    /// Cancels for held messages, by reply subject.
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Cancels that came before their message, with when they came.
    cancelled: Mutex<HashMap<String, Instant>>,
    /// How long its calls take.
    call_time: Average,
}

impl Served {
    /// How many messages the agent holds at most: one per worker while calls are long, so
    /// that a long call never waits here while another agent idles; more while they are
    /// short, so that the round trip to the server does not leave workers idle.
    fn window(&self) -> usize {
        let short = self.call_time.below(SHORT_CALL);
        self.local.workers() * if short { SHORT_DEPTH } else { 1 }
    }

    fn took(&self, calls: usize, time: Duration) {
        self.call_time
            .note(time / u32::try_from(calls).unwrap_or(u32::MAX).max(1));
    }

    fn was_cancelled(&self, reply: &str) -> bool {
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        cancelled.retain(|_, at| at.elapsed() < REMEMBER_CANCELS);
        cancelled.remove(reply).is_some()
    }
}

async fn serve_pool(agent: Arc<Agent>, name: &'static str, stream: jetstream::stream::Stream) {
    let local = match ProcessPool::get(name) {
        Ok(local) => local,
        Err(e) => {
            eprintln!("offload agent {}: pool `{name}`: {e}", agent.id);
            return;
        }
    };
    let route = Route::new(name, &agent.build);
    let config = pull::Config {
        durable_name: Some(route.consumer.clone()),
        filter_subject: route.calls.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: agent.lease,
        max_ack_pending: 100_000,
        ..Default::default()
    };
    let mut said = Said::default();
    let consumer: jetstream::consumer::PullConsumer = loop {
        match stream
            .get_or_create_consumer(&route.consumer, config.clone())
            .await
        {
            Ok(consumer) => break consumer,
            Err(e) => {
                said.once(&agent.id, &format!("pool `{name}`: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let served = Arc::new(Served {
        local,
        held: AtomicUsize::new(0),
        freed: Notify::new(),
        running: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(HashMap::new()),
        call_time: Average::new(),
    });
    let (asks, builds, cancels) = loop {
        let asks = agent.client.subscribe(route.presence.clone()).await;
        let builds = agent.client.subscribe(route.builds.clone()).await;
        let cancels = agent.client.subscribe(route.cancel.clone()).await;
        match (asks, builds, cancels) {
            (Ok(asks), Ok(builds), Ok(cancels)) => break (asks, builds, cancels),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    // Before any caller hears of this agent: a cancel sent after that reaches it.
    let _ = agent.client.flush().await;
    let answering = tokio::spawn(answer(agent.clone(), asks, agent.id.clone()));
    let telling = tokio::spawn(answer(agent.clone(), builds, agent.build.clone()));
    let cancels = tokio::spawn(take_cancels(served.clone(), cancels));
    eprintln!("offload agent {}: serving pool `{name}`", agent.id);
    while !agent.stopping.load(Ordering::SeqCst) {
        let held = served.held.load(Ordering::SeqCst);
        let window = served.window();
        // While calls are short, ask for half a window at a time rather than a call or two:
        // each pull request costs the server about what a call does.
        let least = if window > local.workers() {
            window / 2
        } else {
            1
        };
        if held + least > window {
            // A stop that came between the check above and this wait is seen a heartbeat later.
            tokio::select! {
                _ = served.freed.notified() => {}
                _ = agent.stop.notified() => {}
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
            continue;
        }
        let batch = consumer
            .batch()
            .max_messages(window - held)
            .expires(Duration::from_secs(2))
            .messages()
            .await;
        let Ok(mut batch) = batch else {
            // Disconnected: the client reconnects by itself; ask again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Every message the batch delivers is read: one left unread would come back to another
        // agent as if this one had been lost. Once the agent is stopping, `handle` hands them
        // back.
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(Duration::from_secs(4), batch.next()) => next,
                // Nothing more comes to a batch whose connection is gone.
                () = stopped_offline(&agent) => break,
            };
            let Ok(Some(message)) = next else { break };
            match message {
                Ok(message) => {
                    served.held.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(handle(agent.clone(), served.clone(), message));
                }
                Err(_) => break,
            }
        }
    }
    answering.abort();
    telling.abort();
    while served.held.load(Ordering::SeqCst) > 0 {
        served.freed.notified().await;
    }
    cancels.abort();
    local.shutdown().await;
}

/// Answers each of `asks` with `answer`, until the agent stops: its id to callers that ask
/// whether anyone of their build serves the pool, its build to those that ask which builds do.
async fn answer(agent: Arc<Agent>, mut asks: async_nats::Subscriber, answer: String) {
    while let Some(ask) = asks.next().await {
        if let Some(reply) = ask.reply {
            let _ = agent
                .client
                .publish(reply, Bytes::from(answer.clone()))
                .await;
        }
    }
}

async fn take_cancels(served: Arc<Served>, mut cancels: async_nats::Subscriber) {
    while let Some(cancel) = cancels.next().await {
        let Ok(reply) = String::from_utf8(cancel.payload.to_vec()) else {
            continue;
        };
        let running = served
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&reply);
        match running {
            Some(stop) => {
                let _ = stop.send(());
            }
            None => {
                let mut cancelled = served.cancelled.lock().unwrap_or_else(|p| p.into_inner());
                cancelled.insert(reply, Instant::now());
            }
        }
    }
}

/// Frees the message's place when its handling ends, however it ends.
struct Held(Arc<Served>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
        // A permit, kept if the pull loop is not waiting yet, so that no wake-up is lost.
        self.0.freed.notify_one();
    }
}

/// Resolves once the agent is stopping while its connection to the broker is down; until it
/// stops, it only waits to be told.
async fn stopped_offline(agent: &Agent) {
    let told = agent.stop.notified();
    tokio::pin!(told);
    // Registered before the flag is read, so that a stop in between is not missed.
    told.as_mut().enable();
    if !agent.stopping.load(Ordering::SeqCst) {
        told.await;
    }
    loop {
        if !super::connected(&agent.client) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn handle(agent: Arc<Agent>, served: Arc<Served>, message: jetstream::Message) {
    let _held = Held(served.clone());
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let Some(reply) = header(names::REPLY) else {
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    let delivered = message.info().map_or(1, |info| info.delivered);
    if delivered > 1 {
        // Its first agent was lost holding it, and it may have run there.
        agent.send(&reply, &Event::Gone).await;
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if served.was_cancelled(&reply) {
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if agent.stopping.load(Ordering::SeqCst) {
        // It reached an agent on its way out (its last pull was still open): back to the
        // caller, unrun, to be sent to another agent. The agent waits for this before it exits,
        // as for every message it holds: one left unanswered would come back as lost.
        agent.send(&reply, &Event::Returned).await;
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    agent.lock_taken().insert(reply.clone());
    let (stop, stopped) = oneshot::channel();
    served
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(reply.clone(), stop);
    let work = async {
        let function = header(names::FUNCTION).unwrap_or_default();
        let data = header(names::DATA);
        let limit = served.local.max_frame();
        let frames = match agent.frames(&function, data, &message.payload, limit).await {
            Ok(frames) => frames,
            Err(error) => {
                let failure = Failure::of(&error, &agent.id);
                agent.send(&reply, &Event::Failed(failure)).await;
                return;
            }
        };
        let (spec, frames) = frames;
        let calls = frames.len() as u32;
        let run = agent.run(served.local, spec, frames, &reply);
        let (count, ran) = match spec.timeout {
            // A caller that is still there cancels the call when its own clock, started before
            // this one, runs out; this is for one that is gone, whose call would otherwise hold
            // a worker for as long as the body runs. Dropped, the run stops its worker.
            Some(timeout) => match tokio::time::timeout(timeout * calls + LOST_AFTER, run).await {
                Ok(done) => done,
                Err(_) => {
                    let error = Error::Timeout {
                        function: spec.name,
                        after: timeout,
                    };
                    let failure = Failure::of(&error, &agent.id);
                    agent.send(&reply, &Event::Failed(failure)).await;
                    return;
                }
            },
            None => run.await,
        };
        if count > 0 {
            served.took(count, ran);
        }
    };
    let lease = async {
        let every = agent.lease / 4;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            renew.tick().await;
            let _ = message.ack_with(AckKind::Progress).await;
        }
    };
    let cancelled = tokio::select! {
        _ = work => false,
        _ = stopped => true,
        _ = lease => unreachable!("the lease is renewed for as long as the call runs"),
    };
    served
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&reply);
    // Answered before it was said to be taken: the caller needs no word of that now.
    agent.lock_taken().remove(&reply);
    let _ = message
        .ack_with(if cancelled {
            AckKind::Term
        } else {
            AckKind::Ack
        })
        .await;
}

impl Agent {
    fn lock_taken(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, reply: &str, event: &Event) {
        let _ = self.client.publish(reply.to_owned(), event.encode()).await;
    }

    async fn store(&self) -> Result<&jetstream::object_store::ObjectStore, Error> {
        self.store.get_or_try_init(|| super::bucket(&self.js)).await
    }

    /// The function a message names, and its calls' frames, each with this build's index of
    /// the function.
    async fn frames(
        &self,
        function: &str,
        data: Option<String>,
        payload: &Bytes,
        limit: usize,
    ) -> Result<(&'static FnSpec, Vec<Vec<u8>>), Error> {
        let (name, fingerprint) = function
            .rsplit_once('#')
            .and_then(|(name, hex)| Some((name, u64::from_str_radix(hex, 16).ok()?)))
            .ok_or_else(|| Error::Protocol {
                detail: format!("a call message names no function ({function:?})"),
            })?;
        let (index, spec) = Table::get().find(name, fingerprint)?;
        let body: Bytes = match data {
            // No more than a worker would take.
            Some(object) => {
                let store = self.store().await?;
                super::read_object(store, &object, limit, "a call's stored arguments")
                    .await?
                    .into()
            }
            // The message's own bytes: each call is copied once, as its index is rewritten.
            None => payload.clone(),
        };
        Ok((spec, split_calls(&body, index, limit)?))
    }

    /// Runs the calls of one message on the local pool, in order, and sends their replies:
    /// several to an event while they come quickly.
    async fn run(
        &self,
        local: &'static ProcessPool,
        spec: &'static FnSpec,
        frames: Vec<Vec<u8>>,
        reply: &str,
    ) -> (usize, Duration) {
        let mut replies = Replies::new(self, reply);
        let mut at = 0;
        // A worker runs the calls it is sent one after another; those it was not sent, or
        // that never started, go to the next.
        while at < frames.len() {
            let sending: Vec<&[u8]> = frames[at..].iter().map(|f| &f[..]).collect();
            let mut chunk = match local.chunk(spec, &sending).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    replies.failed(&error).await;
                    return (0, Duration::ZERO);
                }
            };
            let mut since = Instant::now();
            for _ in 0..chunk.len() {
                let attempt = chunk.next(|kind, payload| (kind, payload.to_vec())).await;
                let ran = std::mem::replace(&mut since, Instant::now()).elapsed();
                match attempt {
                    Attempt::Answered((kind, payload)) => {
                        replies.push(kind, at, &payload, ran).await;
                        at += 1;
                    }
                    Attempt::NotStarted(_) => break,
                    Attempt::Lost { worker, exit, .. } => {
                        replies.lost(at, worker, exit).await;
                        at += 1;
                        break;
                    }
                    Attempt::Failed(error) => {
                        replies.failed(&error).await;
                        return (0, Duration::ZERO);
                    }
                }
            }
        }
        replies.flush().await;
        (replies.answered as usize, replies.ran)
    }
}

/// The call frames of a message, with `index` written over the caller's index of the
/// function: the same build has the same, but `OFFLOAD_BUILD_ID` may join builds that differ.
fn split_calls(body: &[u8], index: u32, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
    let frames = wire::split(body, limit).map_err(|e| Error::Protocol {
        detail: format!("a call message: {e}"),
    })?;
    if frames.is_empty() {
        return Err(Error::Protocol {
            detail: "a call message holds no call".into(),
        });
    }
    frames
        .into_iter()
        .map(|(header, payload)| {
            if header.kind != Kind::Call || payload.len() < 4 {
                return Err(Error::Protocol {
                    detail: format!("a call message holds a {:?} frame", header.kind),
                });
            }
            // The frame as the caller wrote it, flags and all.
            let start = payload.as_ptr() as usize - body.as_ptr() as usize - HEADER;
            let mut frame = body[start..start + HEADER + payload.len()].to_vec();
            frame[HEADER..HEADER + 4].copy_from_slice(&index.to_le_bytes());
            Ok(frame)
        })
        .collect()
}

/// Replies on their way to a caller, sent together while they come within a few
/// milliseconds of each other.
struct Replies<'a> {
    agent: &'a Agent,
    reply: &'a str,
    /// How long the calls answered so far ran, and how many they are.
    ran: Duration,
    answered: u32,
    frames: Vec<u8>,
    since: Instant,
    stored: usize,
}

impl<'a> Replies<'a> {
    fn new(agent: &'a Agent, reply: &'a str) -> Self {
        Replies {
            agent,
            reply,
            ran: Duration::ZERO,
            answered: 0,
            frames: Vec::new(),
            since: Instant::now(),
            stored: 0,
        }
    }

    async fn push(&mut self, kind: Kind, at: usize, payload: &[u8], ran: Duration) {
        self.frames
            .extend_from_slice(&wire::frame(kind, at as u64, payload));
        self.answered += 1;
        self.ran += ran;
        if self.frames.len() >= 64 << 10 || self.since.elapsed() > Duration::from_millis(5) {
            self.flush().await;
        }
    }

    async fn lost(&mut self, at: usize, worker: WorkerId, exit: crate::Exit) {
        self.flush().await;
        let pid = match worker {
            WorkerId::Process(pid) => pid,
            WorkerId::Agent(_) => 0,
        };
        let event = Event::Lost {
            item: at as u32,
            pid,
            exit,
        };
        self.agent.send(self.reply, &event).await;
    }

    async fn failed(&mut self, error: &Error) {
        self.flush().await;
        let event = Event::Failed(Failure::of(error, &self.agent.id));
        self.agent.send(self.reply, &event).await;
    }

    async fn flush(&mut self) {
        self.since = Instant::now();
        if self.frames.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.frames);
        if frames.len() <= self.agent.inline {
            let micros = self.ran.as_micros() / u128::from(self.answered.max(1));
            let micros = u32::try_from(micros).unwrap_or(u32::MAX);
            let frames = frames.into();
            return self
                .agent
                .send(self.reply, &Event::Replies { micros, frames })
                .await;
        }
        let name = format!("{}.r{}", self.reply, self.stored);
        self.stored += 1;
        let stored = match self.agent.store().await {
            Ok(store) => store
                .put(super::object(&name, self.agent.inline), &mut &frames[..])
                .await
                .map(|_| ())
                .map_err(|e| Error::Broker {
                    detail: format!("cannot store a result of {} bytes: {e}", frames.len()),
                }),
            Err(error) => Err(error),
        };
        match stored {
            Ok(()) => self.agent.send(self.reply, &Event::Stored(name)).await,
            Err(error) => {
                let event = Event::Failed(Failure::of(&error, &self.agent.id));
                self.agent.send(self.reply, &event).await
            }
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length, and gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "unknown-host".into(),
    }
}
