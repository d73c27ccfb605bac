//! Which executable a worker runs, and how a worker shows it runs the caller's build.
//!
//! A worker is this program started again. On Linux it is started from the running image
//! itself, `/proc/self/exe`, which stays the program this process runs even after the file on
//! disk was replaced (a deploy's `mv`, a `cargo build` while it runs): the pool keeps healing,
//! and its workers are the caller's build by construction. Elsewhere it is started from the
//! executable's path, and only while that file is still the one this process started from.
//!
//! A pool told to run another program proves the build instead: the worker hashes the bytes of
//! its executable and the caller compares that with the hash of its own image. The registry's
//! names and signatures cannot do this: a struct whose fields changed order or type keeps its
//! name, and its bytes would decode into wrong values.

use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Error;

/// What a worker is started from: the path to execute, and the name it goes by (`argv[0]`).
pub(crate) struct Program {
    pub path: PathBuf,
    pub name: PathBuf,
}

/// This program, to run again as a worker.
pub(crate) fn this_program() -> Result<Program, Error> {
    let name = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("offload-worker"));
    #[cfg(target_os = "linux")]
    {
        // Strip the " (deleted)" the kernel appends once the file was replaced.
        let shown = name.to_string_lossy();
        let name = PathBuf::from(shown.strip_suffix(" (deleted)").unwrap_or(&shown));
        Ok(Program {
            path: PathBuf::from("/proc/self/exe"),
            name,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        if started_from().is_some_and(|at_start| identity(&name).ok() != Some(at_start)) {
            return Err(Error::VersionMismatch {
                detail: format!(
                    "{} was replaced since this process started, so a worker started from it \
                     would run another build; restart the program to run the new one",
                    name.display()
                ),
            });
        }
        Ok(Program {
            path: name.clone(),
            name,
        })
    }
}

/// Gives a worker its program's name back. Started from `/proc/self/exe`, a worker's process
/// name (what `top`, `ps -o comm` and `pgrep` show) would be `exe`; it becomes the name its
/// caller goes by, the file name of `argv[0]`, cut to the kernel's 15 bytes.
#[cfg(target_os = "linux")]
pub(crate) fn take_program_name() {
    use std::os::unix::ffi::OsStrExt;
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let Some(name) = Path::new(&arg0).file_name() else {
        return;
    };
    let mut name = name.as_bytes()[..name.len().min(15)].to_vec();
    if name.contains(&0) {
        return;
    }
    name.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from the pointer,
    // which points at `name`, alive for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn take_program_name() {
    // Started from the executable's own path, a worker already goes by its name.
}

/// Who the executable file was when this process started; recorded by the constructor every
/// process that links offload runs (see `worker.rs`).
#[cfg(not(target_os = "linux"))]
fn started_from() -> Option<Identity> {
    *STARTED_FROM.get_or_init(|| identity(&std::env::current_exe().ok()?).ok())
}

#[cfg(not(target_os = "linux"))]
static STARTED_FROM: OnceLock<Option<Identity>> = OnceLock::new();

/// Notes which file this process was started from, before anyone can replace it.
pub(crate) fn note_start() {
    #[cfg(not(target_os = "linux"))]
    started_from();
}

#[cfg(not(target_os = "linux"))]
type Identity = (u64, u64, i64, u64);

#[cfg(not(target_os = "linux"))]
fn identity(path: &Path) -> io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino(), meta.mtime(), meta.size()))
}

/// A hash of the executable this process runs, computed once: what a worker started from
/// another program announces, and what its caller compares it with.
pub(crate) fn build_id() -> Result<u64, String> {
    static BUILD: OnceLock<Result<u64, String>> = OnceLock::new();
    BUILD
        .get_or_init(|| {
            #[cfg(target_os = "linux")]
            let path = PathBuf::from("/proc/self/exe");
            #[cfg(not(target_os = "linux"))]
            let path = this_program().map_err(|e| e.to_string())?.path;
            hash_file(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .clone()
}

fn hash_file(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    // SipHash with fixed keys: fast enough for a binary (about 1 GB/s), and the same in every
    // process of one build; only equality matters.
    let mut hasher = std::hash::DefaultHasher::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.write(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_id_is_the_hash_of_this_executable_and_differs_from_another() {
        let ours = build_id().unwrap();
        assert_eq!(ours, build_id().unwrap(), "computed once");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(hash_file(&exe).unwrap(), ours);
        let other = std::env::temp_dir().join(format!("offload-image-{}", std::process::id()));
        let mut bytes = std::fs::read(&exe).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&other, bytes).unwrap();
        assert_ne!(hash_file(&other).unwrap(), ours);
        std::fs::remove_file(other).unwrap();
    }
}
