//! The process pool: worker slots, the queue of calls waiting for one, and starting workers.
//!
//! A call holds a [`Lease`] on one worker for its whole exchange, so a worker runs one call at a
//! time and the queue is the semaphore's fair wait list. A lease dropped mid-call (a timeout, a
//! cancelled future) kills its worker; the next call to need a worker starts a fresh one.

use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::{self, Pools};
use crate::error::Exit;
use crate::launch::{self, Process};
use crate::registry::Table;
use crate::wire::{self, Header, Kind, HEADER};
use crate::worker::{self, Marker};
use crate::Error;

static POOLS: Pools<PoolConfig, ProcessPool> = Pools::new();

/// A pool of worker processes, each a re-executed copy of this program.
///
/// Functions name their pool with `#[offload(process, pool = "heavy")]`; without `pool = …`
/// they use the pool called `"default"`. A pool starts its workers lazily, on the first call
/// that finds none idle, or all at once with [`ProcessPool::start`]. Its size comes from
/// [`ProcessPool::configure`], else from `OFFLOAD_WORKERS` (default pool) or
/// `OFFLOAD_WORKERS_<NAME>`, else the number of available cores.
pub struct ProcessPool {
    name: String,
    config: PoolConfig,
    workers: usize,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
    broken: OnceLock<Error>,
}

#[derive(Debug, Clone)]
struct PoolConfig {
    workers: Option<usize>,
    handshake_timeout: Duration,
    max_frame: usize,
    program: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: None,
            handshake_timeout: Duration::from_secs(5),
            max_frame: 1 << 30,
            program: None,
        }
    }
}

/// Settings for a [`ProcessPool`], applied with [`ProcessPoolBuilder::apply`].
#[must_use = "a builder does nothing until `apply` is called"]
pub struct ProcessPoolBuilder {
    name: String,
    config: PoolConfig,
}

impl ProcessPoolBuilder {
    /// Runs at most `count` worker processes (and so `count` calls) at once.
    pub fn workers(mut self, count: usize) -> Self {
        self.config.workers = Some(count);
        self
    }

    /// How long a new worker may take to start and announce itself (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// The largest frame either side accepts, in bytes (default 1 GiB): it bounds the encoded
    /// arguments and the encoded result of one call.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.min(u32::MAX as usize - HEADER);
        self
    }

    /// Runs `program` as the worker instead of this program's own executable. The program must
    /// be built from the same sources; the handshake refuses it otherwise.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.config.program = Some(program.into());
        self
    }

    /// Records the settings; an error if the pool already served a call or a size is zero.
    pub fn apply(self) -> Result<(), Error> {
        if self.config.workers == Some(0) {
            return Err(Error::Config { detail: format!("process pool `{}` needs at least one worker", self.name) });
        }
        POOLS.configure(&self.name, self.config)
    }
}

impl ProcessPool {
    /// Starts configuring the pool called `name`; call before the pool's first call.
    pub fn configure(name: &str) -> ProcessPoolBuilder {
        ProcessPoolBuilder { name: name.to_owned(), config: PoolConfig::default() }
    }

    /// The pool called `name`, built from its configuration on first use (without starting
    /// any worker).
    pub fn get(name: &str) -> Result<&'static ProcessPool, Error> {
        POOLS.get(name, |config| {
            let config = config.unwrap_or_default();
            let var = config::env_var("OFFLOAD_WORKERS", name);
            let workers = config::size(config.workers, &var, config::cores())?;
            Ok(ProcessPool {
                name: name.to_owned(),
                config,
                workers,
                slots: Semaphore::new(workers),
                idle: Mutex::new(Vec::new()),
                broken: OnceLock::new(),
            })
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many worker processes the pool runs at most.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Starts every worker now rather than on demand, so that the first calls do not pay for
    /// process start-up. Returns once all of them completed their handshake.
    pub async fn start(&'static self) -> Result<(), Error> {
        let mut leases = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            leases.spawn(self.lease());
        }
        let mut held = Vec::with_capacity(self.workers);
        while let Some(lease) = leases.join_next().await {
            held.push(lease.map_err(|_| Error::Shutdown)??);
        }
        Ok(())
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.config.max_frame
    }

    /// Waits for a free slot (in arrival order) and hands back a worker for it, started now if
    /// no idle one is left.
    pub(crate) async fn lease(&'static self) -> Result<Lease, Error> {
        let permit = self.slots.acquire().await.map_err(|_| Error::Shutdown)?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let worker = match idle {
            Some(worker) => worker,
            None => self.launch().await?,
        };
        Ok(Lease { pool: self, _permit: permit, worker: Some(worker), busy: false })
    }

    async fn launch(&self) -> Result<Worker, Error> {
        if let Some(error) = self.broken.get() {
            return Err(error.clone());
        }
        let from_ctor = worker::entry().map_err(|e| self.break_with(e))?;
        let program = match &self.config.program {
            Some(program) => program.clone(),
            None => std::env::current_exe().map_err(|e| Error::WorkerStart {
                reason: format!("cannot find this program's executable to re-run it: {e}"),
            })?,
        };
        let marker = Marker { from_ctor, max_frame: self.config.max_frame };
        let (process, stream) = launch::spawn(program.clone(), marker).await.map_err(|e| Error::WorkerStart {
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
        let pid = process.pid;
        stream.set_nonblocking(true).map_err(|e| Error::WorkerStart { reason: e.to_string() })?;
        let mut worker = Worker { process, stream: Some(stream), buf: Vec::new(), calls: 0 };
        let limit = self.config.handshake_timeout;
        match tokio::time::timeout(limit, worker.handshake()).await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(Handshake::Refused(error))) => Err(self.break_with(error)),
            Ok(Err(Handshake::Died)) => {
                let exit = worker.exit().await;
                Err(Error::WorkerStart {
                    reason: format!(
                        "the worker (pid {pid}) ended with {exit} before its handshake; its \
                         output above may say why"
                    ),
                })
            }
            Err(_) => Err(Error::WorkerStart {
                reason: format!(
                    "the worker (pid {pid}) did not complete its handshake within {limit:?}; \
                     make sure the offload guard runs first in main (#[offload::main] or \
                     offload::serve_if_worker()), before any other work"
                ),
            }),
        }
    }

    /// Remembers an error that every later start would repeat, so that queued calls fail fast.
    fn break_with(&self, error: Error) -> Error {
        if matches!(error, Error::GuardMissing | Error::VersionMismatch { .. }) {
            let _ = self.broken.set(error.clone());
        }
        error
    }
}

/// A started worker and the caller's end of its channel.
struct Worker {
    process: Process,
    /// `None` only while a call is in flight (the stream is registered with the caller's runtime
    /// for the duration of the call, so that pools work across runtimes, e.g. one per test).
    stream: Option<StdStream>,
    buf: Vec<u8>,
    calls: u64,
}

enum Handshake {
    Died,
    Refused(Error),
}

/// Why an exchange with a worker failed.
pub(crate) enum Fault {
    /// The channel closed: the worker is gone.
    Died,
    /// The worker's bytes broke the protocol; its stream cannot be trusted any more.
    Protocol(String),
}

impl Worker {
    async fn handshake(&mut self) -> Result<(), Handshake> {
        let mut io = self.attach().map_err(|_| Handshake::Died)?;
        let header = read_frame(&mut io, &mut self.buf, 1 << 20).await.map_err(|fault| match fault {
            Fault::Died => Handshake::Died,
            Fault::Protocol(detail) => Handshake::Refused(Error::Protocol { detail }),
        })?;
        self.detach(io).map_err(|_| Handshake::Died)?;
        match header.kind {
            Kind::Hello => check_hello(&self.buf).map_err(Handshake::Refused),
            Kind::GuardMissing => Err(Handshake::Refused(Error::GuardMissing)),
            other => Err(Handshake::Refused(Error::Protocol {
                detail: format!("expected a handshake, got a {other:?} frame"),
            })),
        }
    }

    /// Sends `frame` (a call with its id still blank) and reads the reply into `self.buf`.
    async fn exchange(&mut self, frame: &mut [u8], limit: usize) -> Result<Kind, Fault> {
        self.calls += 1;
        let id = self.calls;
        frame[5..HEADER].copy_from_slice(&id.to_le_bytes());
        let mut io = self.attach().map_err(|_| Fault::Died)?;
        io.write_all(frame).await.map_err(|_| Fault::Died)?;
        let header = read_frame(&mut io, &mut self.buf, limit).await?;
        self.detach(io).map_err(|_| Fault::Died)?;
        if header.id != id {
            return Err(Fault::Protocol(format!("reply to call {} arrived for call {id}", header.id)));
        }
        match header.kind {
            Kind::Hello | Kind::Call | Kind::GuardMissing => {
                Err(Fault::Protocol(format!("unexpected {:?} frame in reply to a call", header.kind)))
            }
            kind => Ok(kind),
        }
    }

    fn attach(&mut self) -> std::io::Result<UnixStream> {
        let stream = self.stream.take().ok_or(std::io::ErrorKind::NotConnected)?;
        UnixStream::from_std(stream)
    }

    fn detach(&mut self, io: UnixStream) -> std::io::Result<()> {
        self.stream = Some(io.into_std()?);
        Ok(())
    }

    async fn exit(self) -> Exit {
        self.process.exit().await.unwrap_or(Exit::Unknown)
    }
}

async fn read_frame(io: &mut UnixStream, buf: &mut Vec<u8>, limit: usize) -> Result<Header, Fault> {
    let mut head = [0; HEADER];
    io.read_exact(&mut head).await.map_err(|_| Fault::Died)?;
    let header = Header::parse(&head, limit).map_err(|e| Fault::Protocol(e.to_string()))?;
    buf.clear();
    buf.resize(header.payload_len, 0);
    io.read_exact(buf).await.map_err(|_| Fault::Died)?;
    Ok(header)
}

fn check_hello(payload: &[u8]) -> Result<(), Error> {
    let (protocol, _pid, theirs): (u16, u32, Vec<(String, u64)>) = postcard::from_bytes(payload)
        .map_err(|e| Error::Protocol { detail: format!("unreadable handshake: {e}") })?;
    if protocol != wire::PROTOCOL {
        return Err(Error::VersionMismatch {
            detail: format!("the worker speaks protocol {protocol}, this process {}", wire::PROTOCOL),
        });
    }
    let ours = Table::get().signature();
    let same = ours.len() == theirs.len()
        && ours.iter().zip(&theirs).all(|((name, fp), (their_name, their_fp))| name == their_name && fp == their_fp);
    if same {
        return Ok(());
    }
    let differing = ours
        .iter()
        .find(|(name, fp)| !theirs.iter().any(|(n, f)| n == name && f == fp))
        .map(|(name, _)| format!("`{name}` is missing or different in the worker"))
        .or_else(|| {
            let (name, _) = theirs.iter().find(|(n, f)| !ours.iter().any(|(name, fp)| name == n && fp == f))?;
            Some(format!("the worker has `{name}`, which this process does not"))
        })
        .unwrap_or_else(|| "the registries are ordered differently".to_owned());
    Err(Error::VersionMismatch { detail: differing })
}

/// One worker, held by one call.
pub(crate) struct Lease {
    pool: &'static ProcessPool,
    _permit: SemaphorePermit<'static>,
    worker: Option<Worker>,
    busy: bool,
}

impl Lease {
    /// Runs one exchange; on success the reply payload is in [`Lease::reply`].
    pub(crate) async fn call(&mut self, frame: &mut [u8]) -> Result<Kind, Fault> {
        let limit = self.pool.config.max_frame;
        let worker = self.worker.as_mut().expect("a lease holds a worker until it ends");
        self.busy = true;
        let kind = worker.exchange(frame, limit).await?;
        self.busy = false;
        Ok(kind)
    }

    pub(crate) fn reply(&self) -> &[u8] {
        &self.worker.as_ref().expect("a lease holds a worker until it ends").buf
    }

    pub(crate) fn pid(&self) -> u32 {
        self.worker.as_ref().map_or(0, |w| w.process.pid)
    }

    /// Gives up the worker after it died, and says how it ended.
    pub(crate) async fn exit(mut self) -> Exit {
        match self.worker.take() {
            Some(worker) => worker.exit().await,
            None => Exit::Unknown,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else { return };
        if self.busy {
            // Dropped mid-call: the worker's state is unknown, so it is killed (by `Process`'s
            // drop) and the next call starts a fresh one.
            drop(worker);
        } else {
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        }
    }
}
