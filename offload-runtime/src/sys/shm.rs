//! A memory region shared by a caller and one worker (Linux), for arguments too large to copy
//! through the pipe: the caller encodes them straight into the region and sends only their
//! length; the worker decodes them where they lie.
//!
//! The region is a sparse memfd as large as the frame limit, mapped by both sides; a page costs
//! memory only once written. Only the caller holding the worker's lease writes it, and only
//! before sending the call frame that the worker reads it after, so the pipe orders every
//! access.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;

/// Arguments that encode to more than this cross through the region.
pub(crate) const THRESHOLD: usize = 1 << 20;

/// Pages a large call wrote are given back after it beyond this size, so that one huge call
/// does not pin its memory for the life of the worker.
const KEEP: usize = 128 << 20;

/// The worker's end of the region is inherited on this descriptor, mapped, then closed.
pub(crate) const SHARED_FD: i32 = 5;

/// Bytes mapped after the arguments' room, aligned: where the worker tells which core it runs
/// on (see [`Region::worker_core`]) and how its last placed call ended ([`Region::placed_ended`]).
const STATUS: usize = 64;

/// How much is mapped for a region with room for `len` bytes of arguments.
fn mapped(len: usize) -> usize {
    len.next_multiple_of(STATUS) + STATUS
}

/// A mapping of the region.
pub(crate) struct Region {
    start: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is ordered by the protocol.
unsafe impl Send for Region {}

#[cfg(target_os = "linux")]
fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid C string; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"offload-shared".as_ptr(), libc::MFD_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Without a memfd there is no region: large arguments go through the pipe.
#[cfg(not(target_os = "linux"))]
fn memfd() -> io::Result<OwnedFd> {
    Err(io::ErrorKind::Unsupported.into())
}

impl Region {
    /// A new, empty region of `len` bytes, and the descriptor to hand to the worker.
    pub(crate) fn create(len: usize) -> io::Result<(Region, OwnedFd)> {
        let fd = memfd()?;
        let size = libc::off_t::try_from(mapped(len)).map_err(io::Error::other)?;
        // SAFETY: `fd` is a valid memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((Region::map(&fd, len)?, fd))
    }

    /// Maps the region behind `fd`, `len` bytes long.
    pub(crate) fn map(fd: &impl AsRawFd, len: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of a valid descriptor; the result is checked.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped(len),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            start: start.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The core the worker last ran on, plus one (0: not known). The worker writes it as it
    /// waits for a call and as it starts one; its caller reads it while it waits for the
    /// reply, to tell whether the two share a core.
    pub(crate) fn worker_core(&self) -> &AtomicU32 {
        self.status(0)
    }

    /// How the worker's last placed call ended, as `placement::Ended::word` puts it (0: none
    /// yet), written as the call ends and read by the caller's next placement.
    pub(crate) fn placed_ended(&self) -> &AtomicU32 {
        self.status(1)
    }

    /// The `index`th `u32` of the status.
    fn status(&self, index: usize) -> &AtomicU32 {
        debug_assert!((index + 1) * 4 <= STATUS);
        // SAFETY: the status lies within the mapping, aligned, zeroed at creation, and lives as
        // long as `self`; both processes only ever access it atomically.
        unsafe {
            &*self
                .start
                .add(mapped(self.len) - STATUS)
                .cast::<AtomicU32>()
                .add(index)
        }
    }

    pub(crate) fn bytes(&self, len: usize) -> Option<&[u8]> {
        // SAFETY: the mapping is `self.len` bytes long and lives as long as `self`.
        (len <= self.len).then(|| unsafe { std::slice::from_raw_parts(self.start, len) })
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only view of it in this process.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }

    /// Gives back the pages of a large call; small ones stay, ready for the next call.
    pub(crate) fn release(&mut self, used: usize) {
        #[cfg(target_os = "linux")]
        if used > KEEP {
            // SAFETY: the range lies within the mapping; MADV_REMOVE frees its pages, which read
            // as zeros afterwards.
            unsafe { libc::madvise(self.start.cast(), used.min(self.len), libc::MADV_REMOVE) };
        }
        let _ = (used, KEEP);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length and is not used after this.
        unsafe { libc::munmap(self.start.cast(), mapped(self.len)) };
    }
}
