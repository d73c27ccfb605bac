//! How a caller starts a worker, as the worker reads it: the marker in its environment (the
//! settings it serves with, and the inodes that prove descriptors 3 and 4 are its channel),
//! and where the channel's ends are placed.

/// Environment variable that marks a process as a worker; removed as soon as the worker starts,
/// so that processes the worker starts itself are ordinary programs.
pub(crate) const MARKER: &str = "OFFLOAD_WORKER";

/// The worker's ends of its channel, placed here by the launcher between fork and exec: replies
/// go out on the first, calls come in on the second.
pub(crate) const REPLIES_FD: i32 = 3;
pub(crate) const CALLS_FD: i32 = 4;

/// How a worker finds its way to [`serve`], and the frame limit it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub from_ctor: bool,
    pub max_frame: usize,
    /// The length of the region shared on descriptor 4; 0 for none.
    pub shared: usize,
    /// How long to poll for the next call after a call whose caller polls, in microseconds.
    pub poll_micros: u64,
    /// The nice increment to run at from the start; `None` for [`STEP_BACK`] after a long call.
    pub nice: Option<u8>,
    /// The inodes of the pipes on descriptors 3 and 4: a process whose descriptors are not
    /// those pipes is not the worker this marker was made for, whatever its environment says.
    pub pipes: [u64; 2],
    /// Whether the handshake carries this executable's build id (see `image.rs`).
    pub prove_build: bool,
    /// How deep a value the worker decodes (see `depth.rs`).
    pub max_depth: u32,
    /// How long the worker waits for a call before it exits, in milliseconds; 0 for ever.
    pub idle_ms: u64,
    /// The worker's address space, in bytes, beyond the shared region; 0 for no limit.
    pub address_space: u64,
    /// The CPU time each call may use, in seconds; 0 for no limit.
    pub cpu_seconds: u64,
}

impl Marker {
    pub(crate) fn encode(&self) -> String {
        let mode = if self.from_ctor { "ctor" } else { "main" };
        let nice = self.nice.map_or("auto".to_owned(), |n| n.to_string());
        let [replies, calls] = self.pipes;
        format!(
            "{mode}:{}:{}:{}:{nice}:{replies}:{calls}:{}:{}:{}:{}:{}",
            self.max_frame,
            self.shared,
            self.poll_micros,
            u8::from(self.prove_build),
            self.max_depth,
            self.idle_ms,
            self.address_space,
            self.cpu_seconds
        )
    }

    pub(super) fn decode(text: &str) -> Option<Marker> {
        let mut fields = text.split(':');
        let from_ctor = match fields.next()? {
            "ctor" => true,
            "main" => false,
            _ => return None,
        };
        let max_frame = fields.next()?.parse().ok()?;
        let shared = fields.next()?.parse().ok()?;
        let poll_micros = fields.next()?.parse().ok()?;
        let nice = match fields.next()? {
            "auto" => None,
            n => Some(n.parse().ok()?),
        };
        let pipes = [fields.next()?.parse().ok()?, fields.next()?.parse().ok()?];
        let prove_build = match fields.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let max_depth = fields.next()?.parse().ok()?;
        let idle_ms = fields.next()?.parse().ok()?;
        let address_space = fields.next()?.parse().ok()?;
        let cpu_seconds = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(Marker {
            from_ctor,
            max_frame,
            shared,
            poll_micros,
            nice,
            pipes,
            prove_build,
            max_depth,
            idle_ms,
            address_space,
            cpu_seconds,
        })
    }

    /// The marker, if this process is a worker: the marker is set and descriptors 3 and 4 are
    /// the very pipes its caller made for it. A marker alone (inherited, or set by hand) does
    /// not make a program skip its `main`.
    pub(super) fn of_this_process() -> Option<Marker> {
        let marker = Marker::decode(std::env::var(MARKER).ok()?.as_str())?;
        let is_pipe = |fd: i32, inode: u64| {
            // SAFETY: an all-zero stat is valid; fstat writes one through the pointer.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above; an unopened descriptor makes fstat fail.
            let found = unsafe { libc::fstat(fd, &mut stat) } == 0;
            found && stat.st_mode & libc::S_IFMT == libc::S_IFIFO && stat.st_ino as u64 == inode
        };
        let [replies, calls] = marker.pipes;
        (is_pipe(REPLIES_FD, replies) && is_pipe(CALLS_FD, calls)).then_some(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        for marker in [
            Marker {
                from_ctor: true,
                max_frame: 7,
                shared: 7,
                poll_micros: 50,
                nice: None,
                pipes: [3, u64::MAX],
                prove_build: true,
                max_depth: 1024,
                idle_ms: 60_000,
                address_space: 1 << 30,
                cpu_seconds: 5,
            },
            Marker {
                from_ctor: false,
                max_frame: 0,
                shared: 0,
                poll_micros: 0,
                nice: Some(19),
                pipes: [0, 0],
                prove_build: false,
                max_depth: 0,
                idle_ms: 0,
                address_space: 0,
                cpu_seconds: 0,
            },
        ] {
            assert_eq!(Marker::decode(&marker.encode()), Some(marker));
        }
        assert_eq!(Marker::decode("main"), None);
        assert_eq!(Marker::decode("fork:1:0"), None);
        assert_eq!(Marker::decode("main:1"), None);
        assert_eq!(Marker::decode("main:1:0"), None);
        assert_eq!(Marker::decode("main:1:0:50"), None);
        assert_eq!(Marker::decode("main:1:0:50:low"), None);
    }
}
