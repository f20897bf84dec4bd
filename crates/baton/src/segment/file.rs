//! A small shared-memory file of fixed size (a domain's event log, a queue group): made
//! unnamed, sized with `posix_fallocate`, initialised, then linked under its name; opened like
//! a queue's segment (no symbolic link, a regular file of our uid, the exact size, the right
//! header words) and looked at for a peer's shrink before each use.

use crate::error::{Denial, OpenError, SegmentDamage};
use crate::sys::shm::{self, Temporary};
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// A mapped, validated small file.
pub(crate) struct SharedFile {
    map: MmapRaw,
    /// Kept to look at its size before each use: a peer that shrinks it must not make us
    /// touch a page that is gone (SIGBUS).
    file: File,
    /// Device and inode, to see whether the name now names another file.
    id: (u64, u64),
    size: usize,
    path: PathBuf,
}

impl std::fmt::Debug for SharedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFile")
            .field("path", &self.path)
            .field("id", &self.id)
            .finish()
    }
}

/// What [`SharedFile::create`] found.
pub(crate) enum Created {
    /// Made, initialised and linked by this call.
    New(SharedFile),
    /// The name was taken.
    Exists,
}

impl SharedFile {
    /// Makes the file: `size` bytes of zeros with `header` as its first words, `init` run on
    /// the mapping before anybody can see it, then linked as `path` (mode `mode`).
    pub(crate) fn create(
        path: &Path,
        size: usize,
        mode: u32,
        header: &[u64],
        init: impl FnOnce(*mut u8) -> Result<(), OpenError>,
    ) -> Result<Created, OpenError> {
        let temp = Temporary::create(path, size as u64)?;
        let fd = temp.file().as_raw_fd();
        fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| shm::io("fchmod", e))?;
        match nix::fcntl::posix_fallocate(fd, 0, size as i64) {
            Ok(()) => {}
            Err(Errno::ENOSPC | Errno::EFBIG) => {
                return Err(OpenError::NoSpace {
                    path: path.to_path_buf(),
                    needed: size as u64,
                })
            }
            Err(e) => return Err(shm::io("posix_fallocate", e)),
        }
        let map = MmapOptions::new()
            .len(size)
            .map_raw(temp.file())
            .map_err(|e| shm::io("mmap", e))?;
        for (i, w) in header.iter().enumerate() {
            // SAFETY: inside the mapping, aligned; nobody else sees the file yet.
            unsafe { std::ptr::write_volatile((map.as_mut_ptr() as *mut u64).add(i), *w) };
        }
        init(map.as_mut_ptr())?;
        match temp.link_as(path) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(Created::Exists),
            Err(e) => return Err(shm::io(format!("link {}", path.display()), e)),
        }
        let file = temp.keep();
        let st = fstat(file.as_raw_fd()).map_err(|e| shm::io("fstat", e))?;
        Ok(Created::New(SharedFile {
            map,
            file,
            id: (st.st_dev, st.st_ino),
            size,
            path: path.to_path_buf(),
        }))
    }

    /// The file at `path` if there is one, checked: ours, regular, `size` bytes, starting with
    /// `header`.
    pub(crate) fn open(
        path: &Path,
        size: usize,
        header: &[u64],
    ) -> Result<Option<SharedFile>, OpenError> {
        let path = path.to_path_buf();
        let corrupt = |reason: SegmentDamage| OpenError::Corrupt {
            path: path.clone(),
            reason,
        };
        let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(OpenError::PermissionDenied {
                    path,
                    reason: Denial::SymbolicLink,
                })
            }
            Err(Errno::EACCES | Errno::EPERM) => {
                return Err(OpenError::PermissionDenied {
                    path,
                    reason: Denial::NoAccess,
                })
            }
            Err(e) => return Err(shm::io(format!("open {}", path.display()), e)),
        };
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let st = fstat(file.as_raw_fd()).map_err(|e| shm::io("fstat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(OpenError::PermissionDenied {
                path,
                reason: Denial::NotRegularFile,
            });
        }
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(OpenError::PermissionDenied {
                path,
                reason: Denial::OtherUser {
                    owner: st.st_uid,
                    user: me,
                },
            });
        }
        if st.st_size as usize != size {
            return Err(corrupt(SegmentDamage::Truncated {
                size: st.st_size as u64,
                needed: size as u64,
            }));
        }
        let map = MmapOptions::new()
            .len(size)
            .map_raw(&file)
            .map_err(|e| shm::io("mmap", e))?;
        // SAFETY: the mapping holds `size` bytes (at least the header); a volatile read of
        // plain words.
        let word =
            |i: usize| unsafe { std::ptr::read_volatile((map.as_ptr() as *const u64).add(i)) };
        if header.iter().enumerate().any(|(i, w)| word(i) != *w) {
            return Err(corrupt(SegmentDamage::BadMagic(word(0))));
        }
        Ok(Some(SharedFile {
            map,
            file,
            id: (st.st_dev, st.st_ino),
            size,
            path,
        }))
    }

    /// Whether the file still has its size (a peer may have shrunk it): checked before the
    /// mapping is touched. (Between this look and the access a shrink could still come: the
    /// window is a few instructions, as for a queue's segment.)
    pub(crate) fn intact(&self) -> bool {
        fstat(self.file.as_raw_fd()).is_ok_and(|st| st.st_size as usize == self.size)
    }

    /// Whether its name still names this file.
    pub(crate) fn current(&self) -> bool {
        nix::sys::stat::stat(&self.path).is_ok_and(|st| (st.st_dev, st.st_ino) == self.id)
    }

    /// Unlinks its name if the name still names this file.
    pub(crate) fn unlink_if_current(&self) -> bool {
        self.current() && nix::unistd::unlink(&self.path).is_ok()
    }

    /// The mapping's first byte (page aligned; `size` bytes).
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
}
