//! The files in `/dev/shm`: their names, unnamed files made to be linked, unlinking, and
//! listing a domain's files.

use crate::error::{Denial, OpenError};
use crate::name::Domain;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// Where POSIX shared memory lives on Linux.
pub const SHM_DIR: &str = "/dev/shm";
/// Every baton file name starts with this.
pub const FILE_PREFIX: &str = "baton.";
/// The file name of a queue in `/dev/shm`. Names that would make it longer than 255 bytes are
/// replaced by a stable hash; the real name is kept in the segment and checked on open.
pub(crate) fn file_name(domain: &Domain, name: &str) -> String {
    let plain = format!("{FILE_PREFIX}{domain}~{name}");
    if plain.len() <= 255 {
        return plain;
    }
    format!("{FILE_PREFIX}{domain}~#{:016x}", name_hash(name))
}

/// The hash that stands for a name too long for a file name: FNV-1a, 64 bits, stable across
/// builds (unlike std's hasher).
pub(crate) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The prefix of every file of `domain` (queues and temporaries).
pub(crate) fn domain_prefix(domain: &Domain) -> String {
    format!("{FILE_PREFIX}{domain}~")
}

pub(crate) fn io(context: impl Into<String>, e: impl Into<std::io::Error>) -> OpenError {
    OpenError::Io {
        context: context.into(),
        source: e.into(),
    }
}

/// A new segment's file before it has a name: opened with `O_TMPFILE`, so nobody can see it
/// (nor `gc` take it for a dead creator's) until it is linked under the queue's name, and a
/// creator that dies before that leaves nothing behind.
pub(crate) struct Temporary {
    file: File,
}

impl Temporary {
    pub(crate) fn create(final_path: &Path, size: u64) -> Result<Temporary, OpenError> {
        let flags = OFlag::O_RDWR | OFlag::O_TMPFILE | OFlag::O_CLOEXEC;
        let fd = match open(Path::new(SHM_DIR), flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => fd,
            // No inode left (or no byte): the same for the caller.
            Err(Errno::ENOSPC) => {
                return Err(OpenError::NoSpace {
                    path: final_path.to_path_buf(),
                    needed: size,
                })
            }
            Err(e) => return Err(io(format!("create an unnamed file in {SHM_DIR}"), e)),
        };
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Temporary { file })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file its name: `link(2)` semantics, `EEXIST` if the name is taken. (Through
    /// `/proc/self/fd`, which needs no privilege, unlike `linkat` with `AT_EMPTY_PATH`.)
    pub(crate) fn link_as(&self, path: &Path) -> Result<(), Errno> {
        let me = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        nix::unistd::linkat(
            None,
            Path::new(&me),
            None,
            path,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
    }

    pub(crate) fn keep(self) -> File {
        self.file
    }
}

/// Unlinks a queue's file; `domain` and `name` only name it in the error.
pub(crate) fn unlink(path: &Path, domain: &str, name: &str) -> Result<(), OpenError> {
    let path = path.to_path_buf();
    match nix::unistd::unlink(&path) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(OpenError::NotFound {
            domain: domain.to_string(),
            name: name.to_string(),
        }),
        Err(Errno::EACCES | Errno::EPERM) => Err(OpenError::PermissionDenied {
            path,
            reason: Denial::RemoveNotAllowed,
        }),
        Err(e) => Err(io(format!("unlink {}", path.display()), e)),
    }
}

/// Removes temporary files of `domain` whose creating process is dead; returns them.
pub(crate) fn remove_dead_temporaries(domain: &Domain) -> Result<Vec<PathBuf>, OpenError> {
    Ok(dead_temporaries(domain)?
        .into_iter()
        .filter(|(path, _)| nix::unistd::unlink(path).is_ok())
        .map(|(path, _)| path)
        .collect())
}

/// Temporary files of `domain` that are ours and whose creating process is gone, with the pid
/// in their name. baton itself no longer names a segment before it is made (see `Temporary`);
/// these are left by earlier versions, whose creators died half way through `create`, or made
/// by another tool, which may hold an `flock` on the file while it works on it.
pub(crate) fn dead_temporaries(domain: &Domain) -> Result<Vec<(PathBuf, u32)>, OpenError> {
    let prefix = format!("{}.tmp.", domain_prefix(domain));
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io(format!("read {SHM_DIR}"), e))?;
    let mut dead = Vec::new();
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Only our own files: root could unlink anyone's, and must not.
        let ours = nix::sys::stat::lstat(&entry.path())
            .is_ok_and(|st| st.st_uid == nix::unistd::geteuid().as_raw());
        if ours && !creator_alive(&entry.path()) {
            dead.push((entry.path(), pid));
        }
    }
    dead.sort();
    Ok(dead)
}

/// Whether a process holds a lock on a temporary file (its creator, at work). A file that
/// cannot be opened is left alone. The pid in the name is never asked: it may belong to
/// another pid namespace, or to another process by now.
fn creator_alive(path: &Path) -> bool {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let Ok(fd) = open(path, flags, Mode::empty()) else {
        return true;
    };
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: flock on a descriptor we own; closing `file` drops the lock if we got it.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc != 0
}

/// The backing files of the queues in `domain`, or in every domain (temporaries excluded),
/// sorted.
pub(crate) fn list_paths(domain: Option<&Domain>) -> Result<Vec<PathBuf>, OpenError> {
    let prefix = domain.map_or(FILE_PREFIX.to_string(), domain_prefix);
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io(format!("read {SHM_DIR}"), e))?;
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix(&prefix).is_some_and(|rest| {
                // A domain's temporaries are `<prefix><domain>~.<...>`.
                !rest.starts_with('.') && !rest.contains("~.")
            })
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_get_a_hashed_file_name_that_fits() {
        let d = Domain::new(&"d".repeat(200)).unwrap();
        let f = file_name(&d, &"n".repeat(200));
        assert!(f.len() <= 255 && f.contains("~#"), "{f}");
        assert_ne!(f, file_name(&d, &format!("{}m", "n".repeat(199))));
    }
}
