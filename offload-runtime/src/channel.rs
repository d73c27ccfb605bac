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
    /// The last frame read, header included, up to `reply_end`.
    buf: Vec<u8>,
    reply_end: usize,
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
        Ok(Worker { process, stream, buf: Vec::new(), reply_end: HEADER, calls: 0 })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// Reads the worker's announcement and checks that it runs the same registry as we do.
    pub(crate) async fn handshake(&mut self) -> Result<(), Fault> {
        let io = self.register()?;
        let header = self.read_frame(&io, 1 << 20).await?;
        match header.kind {
            Kind::Hello => check_hello(self.reply()).map_err(Fault::Refused),
            Kind::GuardMissing => Err(Fault::Refused(Error::GuardMissing)),
            other => Err(Fault::Protocol(format!("expected a handshake, got a {other:?} frame"))),
        }
    }

    /// Registers the socket with the current runtime for the operations of one call.
    pub(crate) fn register(&self) -> Result<AsyncFd<RawFd>, Fault> {
        // SAFETY: every caller holds a borrow of this `Worker`, which owns the socket, for as
        // long as the returned `AsyncFd` lives, so the descriptor stays open and unchanged.
        unsafe { AsyncFd::register_with_interest(self.stream.as_raw_fd(), Interest::READABLE | Interest::WRITABLE) }
            .map_err(|_| Fault::Died)
    }

    /// Sends a call frame whose id is still blank, stamping it with the next id.
    pub(crate) async fn send(&mut self, io: &AsyncFd<RawFd>, frame: &mut [u8]) -> Result<(), Fault> {
        self.calls += 1;
        frame[5..HEADER].copy_from_slice(&self.calls.to_le_bytes());
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
    pub(crate) async fn receive(&mut self, io: &AsyncFd<RawFd>, limit: usize) -> Result<Kind, Fault> {
        let header = self.read_frame(io, limit).await?;
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
        &self.buf[HEADER..self.reply_end]
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

    /// Reads one whole frame into `self.buf`, returning its header. Nothing follows a frame on
    /// the channel until the next call, so a small frame is read with one system call.
    async fn read_frame(&mut self, io: &AsyncFd<RawFd>, limit: usize) -> Result<Header, Fault> {
        if self.buf.len() < READ_AHEAD {
            self.buf.resize(READ_AHEAD, 0);
        }
        let mut filled = 0;
        while filled < HEADER {
            filled += read_some(io, &self.stream, &mut self.buf[filled..]).await?;
        }
        let head: &[u8; HEADER] = self.buf[..HEADER].try_into().expect("a header");
        let header = Header::parse(head, limit).map_err(|e| Fault::Protocol(e.to_string()))?;
        let end = HEADER + header.payload_len;
        if filled > end {
            return Err(Fault::Protocol(format!("{} bytes arrived after a frame", filled - end)));
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        while filled < end {
            filled += read_some(io, &self.stream, &mut self.buf[filled..end]).await?;
        }
        self.reply_end = end;
        Ok(header)
    }
}

/// What a read asks for at least: the largest reply that takes one system call.
const READ_AHEAD: usize = 64 * 1024;

/// Reads what is there, waiting for it if nothing is.
async fn read_some(io: &AsyncFd<RawFd>, stream: &UnixStream, buf: &mut [u8]) -> Result<usize, Fault> {
    loop {
        match (&*stream).read(buf) {
            Ok(0) => return Err(Fault::Died),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable().await.map_err(|_| Fault::Died)?.clear_ready();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Fault::Died),
        }
    }
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
