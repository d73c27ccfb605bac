//! The caller's end of one worker's channel: the handshake, sending a call, reading its reply.
//!
//! The socket is registered with the awaiting task's runtime only for the length of one
//! operation (`AsyncFd` over the raw descriptor, which it does not own), so one pool serves
//! every runtime in the process, such as the one each `#[tokio::test]` builds, and a cancelled
//! operation never closes the socket behind the worker's back.

use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::Exit;
use crate::launch::Process;
use crate::registry::Table;
use crate::wire::{self, Header, Kind, HEADER};
use crate::Error;

/// A started worker and the caller's end of its channel.
pub(crate) struct Worker {
    process: Process,
    stream: UnixStream,
    buf: Vec<u8>,
    calls: u64,
}

/// Why an exchange with a worker failed.
pub(crate) enum Fault {
    /// The channel closed: the worker is gone.
    Died,
    /// The worker's bytes broke the protocol; its stream cannot be trusted any more.
    Protocol(String),
    /// The handshake showed the worker cannot serve this process.
    Refused(Error),
}

impl Worker {
    pub(crate) fn new(process: Process, stream: UnixStream) -> io::Result<Worker> {
        stream.set_nonblocking(true)?;
        Ok(Worker { process, stream, buf: Vec::new(), calls: 0 })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// Reads the worker's announcement and checks that it runs the same registry as we do.
    pub(crate) async fn handshake(&mut self) -> Result<(), Fault> {
        let header = self.read_frame(1 << 20).await?;
        match header.kind {
            Kind::Hello => check_hello(&self.buf).map_err(Fault::Refused),
            Kind::GuardMissing => Err(Fault::Refused(Error::GuardMissing)),
            other => Err(Fault::Protocol(format!("expected a handshake, got a {other:?} frame"))),
        }
    }

    /// Sends a call frame whose id is still blank, stamping it with the next id.
    pub(crate) async fn send(&mut self, frame: &mut [u8]) -> Result<(), Fault> {
        self.calls += 1;
        frame[5..HEADER].copy_from_slice(&self.calls.to_le_bytes());
        let io = register(&self.stream)?;
        let mut rest: &[u8] = frame;
        while !rest.is_empty() {
            match (&self.stream).write(rest) {
                Ok(0) => return Err(Fault::Died),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.writable().await.map_err(|_| Fault::Died)?.clear_ready();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Fault::Died),
            }
        }
        Ok(())
    }

    /// Reads the reply to the last call sent; its payload is then in [`Worker::reply`].
    pub(crate) async fn receive(&mut self, limit: usize) -> Result<Kind, Fault> {
        let header = self.read_frame(limit).await?;
        if header.id != self.calls {
            return Err(Fault::Protocol(format!("a reply to call {} arrived for call {}", header.id, self.calls)));
        }
        match header.kind {
            Kind::Hello | Kind::Call | Kind::GuardMissing => {
                Err(Fault::Protocol(format!("unexpected {:?} frame in reply to a call", header.kind)))
            }
            kind => Ok(kind),
        }
    }

    pub(crate) fn reply(&self) -> &[u8] {
        &self.buf
    }

    /// Resident memory of the worker, where the platform tells it.
    pub(crate) fn resident_bytes(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).ok()?;
            let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            Some(pages * u64::try_from(page).ok()?)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// How the worker ended, for a worker whose channel closed.
    pub(crate) async fn exit(self) -> Exit {
        self.process.exit().await.unwrap_or(Exit::Unknown)
    }

    /// Closes the channel, which tells an idle worker to exit, and waits until it has.
    pub(crate) async fn stop(self) -> Exit {
        let Worker { process, stream, .. } = self;
        drop(stream);
        process.exit().await.unwrap_or(Exit::Unknown)
    }

    /// Reads one whole frame into `self.buf`, returning its header.
    async fn read_frame(&mut self, limit: usize) -> Result<Header, Fault> {
        let io = register(&self.stream)?;
        let mut head = [0; HEADER];
        read_exact(&io, &self.stream, &mut head).await?;
        let header = Header::parse(&head, limit).map_err(|e| Fault::Protocol(e.to_string()))?;
        self.buf.clear();
        self.buf.resize(header.payload_len, 0);
        read_exact(&io, &self.stream, &mut self.buf).await?;
        Ok(header)
    }
}

/// Registers the worker's socket with the current runtime for one operation.
fn register(stream: &UnixStream) -> Result<AsyncFd<RawFd>, Fault> {
    // SAFETY: every caller holds a borrow of the `Worker` owning `stream` for as long as the
    // returned `AsyncFd` lives, so the descriptor stays open and unchanged meanwhile.
    unsafe { AsyncFd::register_with_interest(stream.as_raw_fd(), Interest::READABLE | Interest::WRITABLE) }
        .map_err(|_| Fault::Died)
}

async fn read_exact(io: &AsyncFd<RawFd>, stream: &UnixStream, mut buf: &mut [u8]) -> Result<(), Fault> {
    while !buf.is_empty() {
        match (&*stream).read(buf) {
            Ok(0) => return Err(Fault::Died),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable().await.map_err(|_| Fault::Died)?.clear_ready();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Fault::Died),
        }
    }
    Ok(())
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
    let same = |a: &(&str, u64), b: &(String, u64)| a.0 == b.0 && a.1 == b.1;
    if ours.len() == theirs.len() && ours.iter().zip(&theirs).all(|(a, b)| same(a, b)) {
        return Ok(());
    }
    let detail = match ours.iter().find(|a| !theirs.iter().any(|b| same(a, b))) {
        Some((name, _)) => format!("`{name}` is missing or different in the worker"),
        None => match theirs.iter().find(|b| !ours.iter().any(|a| same(a, b))) {
            Some((name, _)) => format!("the worker has `{name}`, which this process does not"),
            None => "the registries are ordered differently".to_owned(),
        },
    };
    Err(Error::VersionMismatch { detail })
}
