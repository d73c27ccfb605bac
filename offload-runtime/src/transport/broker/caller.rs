//! A broker pool, caller's side: publish a call (or a chunk of calls) as one message, then
//! wait for its events, told as the seam's [`Attempt`]. While no agent has taken the message,
//! the caller checks that some agent serves the pool, and withdraws the message when none has
//! for a while; once one took it, the caller watches that agent's heartbeat. Dropping a call
//! on its way withdraws or cancels it on the broker.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use super::event::Event;
use super::{io, names, BrokerPool, Link, HEARTBEAT, LOST_AFTER, NO_AGENTS_FOR, RECONNECT_GRACE};
use crate::function::codec::encode_call;
use crate::function::FnSpec;
use crate::transport::outcome::{Attempt, Unstarted, WorkerId};
use crate::wire::{self, Kind};
use crate::Error;

/// How long a publish may keep failing for want of a connection before the call fails.
const REACH_FOR: Duration = Duration::from_secs(30);

impl BrokerPool {
    /// Publishes one call; its frame is kept for another attempt.
    pub(crate) async fn start_call(
        &'static self,
        spec: &'static FnSpec,
        frame: Vec<u8>,
    ) -> Result<Started, Unstarted> {
        let body = Bytes::from(frame);
        match self.send(spec, body.clone()).await {
            Ok(waiter) => Ok(Started {
                waiter,
                spec,
                frame: body,
            }),
            Err(error) => Err(Attempt::Failed(error)),
        }
    }

    /// Publishes a call with large arguments, which go through the object store.
    pub(crate) async fn start_large<A: Serialize>(
        &'static self,
        spec: &'static FnSpec,
        index: u32,
        args: &A,
        traced: Option<u64>,
    ) -> Result<Started, Unstarted> {
        let mut frame = encode_call(spec, self.max_frame(), self.max_depth(), index, args)
            .map_err(Attempt::Failed)?;
        if let Some(call) = traced {
            wire::trace(&mut frame, call);
        }
        let mut started = self.start_call(spec, frame).await?;
        // Encoded anew should the call go again.
        started.frame = Bytes::new();
        Ok(started)
    }

    /// Publishes as many of `frames` as fit one message, as one chunk.
    pub(crate) async fn chunk(
        &'static self,
        spec: &'static FnSpec,
        frames: &[&[u8]],
    ) -> Result<Chunk, Error> {
        let limit = self.inline_limit();
        let mut body = Vec::new();
        let mut sent = 0;
        for frame in frames {
            if sent > 0 && body.len() + frame.len() > limit {
                break;
            }
            body.extend_from_slice(frame);
            sent += 1;
        }
        let waiter = self.send(spec, Bytes::from(body)).await?;
        Ok(Chunk {
            waiter,
            spec,
            sent,
            next: 0,
            replies: VecDeque::new(),
            rest: None,
        })
    }

    /// Publishes `body`, the frames of one message, and returns what waits for its events.
    async fn send(&'static self, spec: &'static FnSpec, body: Bytes) -> Result<Waiter, Error> {
        let link = self.link().await?;
        let id = link.next.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{}.{id}", link.inbox);
        let (events, rx) = mpsc::unbounded_channel();
        link.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, events);
        let mut waiter = Waiter {
            pool: self,
            link: link.clone(),
            id,
            reply,
            rx,
            sequence: None,
            taken: None,
            data: None,
            ended: false,
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", waiter.reply.as_str());
        headers.insert(names::REPLY, waiter.reply.as_str());
        headers.insert(
            names::FUNCTION,
            format!("{}#{:016x}", spec.name, spec.fingerprint).as_str(),
        );
        let payload = if body.len() > link.inline {
            let name = format!("{}.a", waiter.reply);
            let store = link.store().await?;
            store
                .put(super::object(&name, link.inline), &mut &body[..])
                .await
                .map_err(|e| Error::Broker {
                    detail: format!("cannot store {} bytes of arguments: {e}", body.len()),
                })?;
            headers.insert(names::DATA, name.as_str());
            waiter.data = Some(name);
            Bytes::new()
        } else {
            body
        };
        waiter.sequence = Some(publish(&link, spec, &self.route.calls, headers, payload).await?);
        Ok(waiter)
    }
}

/// Publishes a call message and waits for the server to store it; through a broker restart,
/// tries again (the message id makes a repeat harmless) for up to [`REACH_FOR`], or the call's
/// timeout if it is shorter: a caller who set one does not wait longer for a broker that is
/// down.
async fn publish(
    link: &Link,
    spec: &FnSpec,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<u64, Error> {
    use async_nats::jetstream::context::PublishErrorKind;
    let since = Instant::now();
    let reach = spec
        .timeout
        .map_or(REACH_FOR, |timeout| timeout.min(REACH_FOR));
    loop {
        let sent = async {
            match link
                .js
                .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            }
        };
        // One try waits for its acknowledgement no longer than the time left.
        let left = reach
            .saturating_sub(since.elapsed())
            .max(Duration::from_millis(1));
        let error = match tokio::time::timeout(left, sent).await {
            Ok(Ok(ack)) => return Ok(ack.sequence),
            Ok(Err(error)) => error,
            Err(_) => PublishErrorKind::TimedOut.into(),
        };
        let text = error.to_string();
        if text.contains("maximum messages") || text.contains("maximum bytes") {
            return Err(Error::QueueFull {
                function: spec.name,
            });
        }
        let passing = matches!(
            error.kind(),
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
        );
        if !passing {
            return Err(Error::Broker {
                detail: format!("cannot queue a call of `{}`: {text}", spec.name),
            });
        }
        if since.elapsed() > reach {
            return Err(Error::Broker {
                detail: format!(
                    "cannot queue a call of `{}`: the broker has not confirmed it for {reach:?} \
                     ({text}); it is down or unreachable. Should it have stored the call after \
                     all, an agent may still run it",
                    spec.name
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one message's events can come to, besides the events themselves.
enum Next {
    Event(Event),
    /// The agent that took the message stopped sending heartbeats.
    AgentLost(String),
    /// No agent served the pool, and the message was withdrawn before any took it.
    NoAgents,
    Failed(Error),
}

/// One published message, waiting for its events. Dropped before they ended, it withdraws the
/// message from the queue or cancels it on its agent.
pub(crate) struct Waiter {
    pool: &'static BrokerPool,
    link: Arc<Link>,
    id: u64,
    reply: String,
    rx: mpsc::UnboundedReceiver<Event>,
    sequence: Option<u64>,
    taken: Option<String>,
    /// The object that holds the arguments, removed once the call ended.
    data: Option<String>,
    ended: bool,
}

impl Waiter {
    async fn next(&mut self) -> Next {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(Event::Taken { agent }) => {
                        self.link.heard(&agent);
                        self.taken = Some(agent);
                    }
                    Some(event) => return Next::Event(event),
                    None => return Next::Failed(Error::Broker {
                        detail: "the broker connection closed".into(),
                    }),
                },
                _ = tick.tick() => match &self.taken {
                    Some(agent) => {
                        if self.link.silent(agent) > LOST_AFTER {
                            return Next::AgentLost(agent.clone());
                        }
                    }
                    None => {
                        if self.link.no_agents(self.pool).await && self.withdraw().await {
                            self.ended = true;
                            return Next::NoAgents;
                        }
                    }
                },
            }
        }
    }

    /// Deletes the message from the queue; `false` if an agent took it meanwhile.
    async fn withdraw(&self) -> bool {
        match self.sequence {
            Some(sequence) => matches!(self.link.stream.delete_message(sequence).await, Ok(true)),
            None => false,
        }
    }

    /// The frames of a reply that was too large for a message, read from the object store and
    /// removed from it.
    async fn fetch(&self, name: &str) -> Result<Bytes, Error> {
        let store = self.link.store().await?;
        let limit = self.pool.max_frame();
        let bytes = super::read_object(store, name, limit, "a stored result").await?;
        if bytes.len() > self.pool.max_frame() {
            return Err(Error::Protocol {
                detail: format!(
                    "an agent stored a result over the pool's max_frame_bytes ({})",
                    self.pool.max_frame()
                ),
            });
        }
        let store = store.clone();
        let name = name.to_owned();
        io().spawn(async move { store.delete(name).await });
        Ok(bytes.into())
    }

    fn lost<T>(&self, agent: String, frame: &Bytes) -> Attempt<T> {
        Attempt::Lost {
            worker: WorkerId::Agent(agent),
            exit: crate::Exit::Unknown,
            frame: frame.to_vec(),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.link
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        if self.ended && self.data.is_none() {
            return;
        }
        let (link, reply, data) = (self.link.clone(), self.reply.clone(), self.data.take());
        let cancel = (!self.ended).then(|| (self.pool.route.cancel.clone(), self.sequence));
        let taken = self.taken.is_some();
        io().spawn(async move {
            if let Some((subject, sequence)) = cancel {
                // Whoever holds it stops it; one that pulls it later skips it.
                let _ = link.client.publish(subject, reply.into()).await;
                if let (false, Some(sequence)) = (taken, sequence) {
                    let _ = link.stream.delete_message(sequence).await;
                }
            }
            if let Some(name) = data {
                if let Ok(store) = link.store().await {
                    let _ = store.delete(name).await;
                }
            }
        });
    }
}

/// A call on its way through the broker; see [`Waiter`].
pub(crate) struct Started {
    waiter: Waiter,
    spec: &'static FnSpec,
    /// The call's frame, handed back should the call go again; empty for large arguments.
    frame: Bytes,
}

impl Started {
    pub(crate) async fn finish<T>(mut self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        let spec = self.spec;
        let waiter = &mut self.waiter;
        loop {
            let frames = match waiter.next().await {
                Next::Event(Event::Replies { micros, frames }) => {
                    waiter.pool.batches.took(micros);
                    frames
                }
                Next::Event(Event::Stored(name)) => match waiter.fetch(&name).await {
                    Ok(bytes) => bytes,
                    Err(error) => return Attempt::Failed(error),
                },
                Next::Event(Event::Lost { pid, exit, .. }) => {
                    waiter.ended = true;
                    return Attempt::Lost {
                        worker: WorkerId::Process(pid),
                        exit,
                        frame: self.frame.to_vec(),
                    };
                }
                Next::Event(Event::Gone) => {
                    waiter.ended = true;
                    return waiter.lost(gone(&waiter.taken), &self.frame);
                }
                Next::Event(Event::Returned) => {
                    waiter.ended = true;
                    return Attempt::NotStarted(self.frame.to_vec());
                }
                Next::Event(Event::Failed(failure)) => {
                    waiter.ended = true;
                    return Attempt::Failed(failure.into_error(spec.name));
                }
                Next::Event(Event::Taken { .. } | Event::TakenMany { .. }) => continue,
                Next::AgentLost(agent) => return waiter.lost(agent, &self.frame),
                Next::NoAgents => return Attempt::Failed(no_workers(spec, waiter).await),
                Next::Failed(error) => return Attempt::Failed(error),
            };
            waiter.ended = true;
            return match wire::split(&frames, waiter.pool.max_frame()).as_deref() {
                Ok([(header, payload)]) => Attempt::Answered(read(header.kind, payload)),
                Ok(other) => Attempt::Failed(Error::Protocol {
                    detail: format!("an agent sent {} replies to one call", other.len()),
                }),
                Err(e) => Attempt::Failed(Error::Protocol {
                    detail: format!("an agent's reply: {e}"),
                }),
            };
        }
    }
}

/// Calls sent together in one message, answered in order.
pub(crate) struct Chunk {
    waiter: Waiter,
    spec: &'static FnSpec,
    sent: usize,
    /// The place of the next call whose outcome is handed out.
    next: usize,
    /// Replies read ahead, each a slice of the event that brought it.
    replies: VecDeque<(Kind, Bytes)>,
    /// How the calls not answered yet end, once the message as a whole did.
    rest: Option<Rest>,
}

#[derive(Clone)]
enum Rest {
    /// Never started: the caller sends them again.
    NotStarted,
    /// The first of them was lost with its agent, the others never started.
    Lost(String),
    Failed(Error),
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.sent
    }

    pub(crate) async fn next<T>(&mut self, read: impl FnOnce(Kind, &[u8]) -> T) -> Attempt<T> {
        loop {
            if let Some((kind, payload)) = self.replies.pop_front() {
                self.advance();
                return Attempt::Answered(read(kind, &payload));
            }
            if let Some(rest) = self.rest.clone() {
                return match rest {
                    Rest::NotStarted => Attempt::NotStarted(Vec::new()),
                    Rest::Failed(error) => Attempt::Failed(error),
                    Rest::Lost(agent) => {
                        self.rest = Some(Rest::NotStarted);
                        self.waiter.lost(agent, &Bytes::new())
                    }
                };
            }
            let event = match self.waiter.next().await {
                Next::Event(Event::Replies { micros, frames }) => {
                    self.waiter.pool.batches.took(micros);
                    frames
                }
                Next::Event(Event::Stored(name)) => match self.waiter.fetch(&name).await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        self.rest = Some(Rest::Failed(error));
                        continue;
                    }
                },
                Next::Event(Event::Lost { item, pid, exit }) if item as usize == self.next => {
                    self.advance();
                    return Attempt::Lost {
                        worker: WorkerId::Process(pid),
                        exit,
                        frame: Vec::new(),
                    };
                }
                Next::Event(Event::Lost { item, .. }) => {
                    self.rest = Some(Rest::Failed(out_of_order(item, self.next)));
                    continue;
                }
                Next::Event(Event::Gone) => {
                    self.waiter.ended = true;
                    self.rest = Some(Rest::Lost(gone(&self.waiter.taken)));
                    continue;
                }
                Next::Event(Event::Returned) => {
                    self.waiter.ended = true;
                    self.rest = Some(Rest::NotStarted);
                    continue;
                }
                Next::Event(Event::Failed(failure)) => {
                    self.waiter.ended = true;
                    self.rest = Some(Rest::Failed(failure.into_error(self.spec.name)));
                    continue;
                }
                Next::Event(Event::Taken { .. } | Event::TakenMany { .. }) => continue,
                Next::AgentLost(agent) => {
                    self.rest = Some(Rest::Lost(agent));
                    continue;
                }
                Next::NoAgents => {
                    let error = no_workers(self.spec, &self.waiter).await;
                    self.rest = Some(Rest::Failed(error));
                    continue;
                }
                Next::Failed(error) => {
                    self.rest = Some(Rest::Failed(error));
                    continue;
                }
            };
            match wire::split(&event, self.waiter.pool.max_frame()) {
                Ok(frames) => {
                    for (at, (header, payload)) in frames.into_iter().enumerate() {
                        let expected = self.next + self.replies.len();
                        if header.id as usize != expected || expected >= self.sent || at > self.sent
                        {
                            self.rest =
                                Some(Rest::Failed(out_of_order(header.id as u32, expected)));
                            break;
                        }
                        self.replies
                            .push_back((header.kind, event.slice_ref(payload)));
                    }
                }
                Err(e) => {
                    self.rest = Some(Rest::Failed(Error::Protocol {
                        detail: format!("an agent's replies: {e}"),
                    }))
                }
            }
        }
    }

    fn advance(&mut self) {
        self.next += 1;
        if self.next == self.sent {
            self.waiter.ended = true;
        }
    }

    /// Stops the calls not answered yet: they count as never started.
    pub(crate) fn stop(&mut self) {
        self.replies.clear();
        self.rest = Some(Rest::NotStarted);
        // The waiter cancels the message on the agent once the chunk is dropped.
    }
}

fn out_of_order(item: u32, expected: usize) -> Error {
    Error::Protocol {
        detail: format!("an agent answered call {item} of a message where {expected} was due"),
    }
}

/// The agent a message came back from, as far as this caller knows.
fn gone(taken: &Option<String>) -> String {
    taken
        .clone()
        .unwrap_or_else(|| "that took the call (it stopped before saying so)".into())
}

/// The error for a call no agent of this build took, naming the builds whose agents do serve
/// the pool, if any.
async fn no_workers(spec: &FnSpec, waiter: &Waiter) -> Error {
    let build = waiter.pool.route.build.clone();
    let mut others = waiter.link.builds(waiter.pool).await;
    others.retain(|other| *other != build);
    Error::NoWorkers {
        function: spec.name,
        pool: waiter.pool.name.clone(),
        build,
        others,
    }
}

impl Link {
    /// Notes that `agent` was heard from now.
    fn heard(&self, agent: &str) {
        let mut alive = self.alive.lock().unwrap_or_else(|p| p.into_inner());
        alive.insert(agent.to_owned(), Instant::now());
    }

    /// How long `agent` had been silent when this side last heard its own echo: silence
    /// counts only while this side's link is known to deliver. A link that lags (a large
    /// transfer ahead of the heartbeats, a busy thread) or is down delays the echo as much as
    /// the heartbeats, so it never makes a live agent look lost. Once the link is back from an
    /// outage, silence counts only from [`RECONNECT_GRACE`] after that, less [`LOST_AFTER`]:
    /// the agent's own reconnection may come seconds after this side's.
    fn silent(&self, agent: &str) -> Duration {
        let heard = self
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .copied();
        let echoed = *self.echoed.lock().unwrap_or_else(|p| p.into_inner());
        let excused = self
            .resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|resumed| resumed + RECONNECT_GRACE - LOST_AFTER);
        match heard {
            Some(heard) => {
                echoed.saturating_duration_since(excused.map_or(heard, |e| e.max(heard)))
            }
            None => Duration::ZERO,
        }
    }

    /// The builds whose agents serve `pool`, as many as answer within a quarter of a second.
    async fn builds(&self, pool: &BrokerPool) -> Vec<String> {
        let inbox = self.client.new_inbox();
        let Ok(mut answers) = self.client.subscribe(inbox.clone()).await else {
            return Vec::new();
        };
        let asked = self
            .client
            .publish_with_reply(pool.route.builds.clone(), inbox, Bytes::new())
            .await;
        let mut builds = std::collections::BTreeSet::new();
        if asked.is_ok() {
            let until = tokio::time::sleep(Duration::from_millis(250));
            tokio::pin!(until);
            loop {
                tokio::select! {
                    // With no agent at all, the server's "no responders" comes instead.
                    Some(answer) = answers.next() => if answer.status.is_none() {
                        builds.insert(String::from_utf8_lossy(&answer.payload).into_owned());
                    },
                    () = &mut until => break,
                }
            }
        }
        builds.into_iter().collect()
    }

    /// Whether no agent has answered for `pool` for [`NO_AGENTS_FOR`]; asks at most once a
    /// heartbeat, however many calls wait.
    async fn no_agents(&self, pool: &BrokerPool) -> bool {
        let mut presence = self.presence.lock().await;
        if presence
            .asked
            .is_none_or(|asked| asked.elapsed() >= HEARTBEAT)
        {
            let asked = self
                .client
                .request(pool.route.presence.clone(), Bytes::new());
            let answered = match tokio::time::timeout(Duration::from_secs(1), asked).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => e.kind() != RequestErrorKind::NoResponders,
                Err(_) => false,
            };
            presence.asked = Some(Instant::now());
            if answered || !super::connected(&self.client) {
                presence.none_since = None;
            } else if presence.none_since.is_none() {
                presence.none_since = presence.asked;
            }
        }
        presence
            .none_since
            .is_some_and(|since| since.elapsed() >= NO_AGENTS_FOR)
    }
}

/// Hands each event to the call it belongs to; events of calls that ended are dropped. The
/// link's own echo comes this way too.
pub(super) async fn route_replies(link: Weak<Link>, mut replies: async_nats::Subscriber) {
    while let Some(message) = replies.next().await {
        let Some(link) = link.upgrade() else { return };
        if message.subject.ends_with(ECHO) {
            let now = Instant::now();
            let last = std::mem::replace(
                &mut *link.echoed.lock().unwrap_or_else(|p| p.into_inner()),
                now,
            );
            if now.duration_since(last) > LOST_AFTER {
                *link.resumed.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            }
            continue;
        }
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|id| id.parse::<u64>().ok());
        let (Some(id), Some(event)) = (id, Event::decode(message.payload)) else {
            continue;
        };
        let waiting = link.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Event::TakenMany { agent, ids } = event {
            for id in ids {
                if let Some(call) = waiting.get(&id) {
                    let agent = agent.clone();
                    let _ = call.send(Event::Taken { agent });
                }
            }
        } else if let Some(call) = waiting.get(&id) {
            let _ = call.send(event);
        }
    }
}

/// The last token of the subject a link sends its echo to.
const ECHO: &str = ".echo";

/// Sends the link an echo through the server every heartbeat, for as long as the link lives.
pub(super) async fn echo(link: Weak<Link>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let Some(link) = link.upgrade() else { return };
        let subject = format!("{}{ECHO}", link.inbox);
        let _ = link.client.publish(subject, Bytes::new()).await;
    }
}

/// Notes every agent's heartbeat.
pub(super) async fn note_heartbeats(link: Weak<Link>, mut heartbeats: async_nats::Subscriber) {
    while let Some(message) = heartbeats.next().await {
        let Some(link) = link.upgrade() else { return };
        if let Ok(agent) = std::str::from_utf8(&message.payload) {
            link.heard(agent);
        }
    }
}
