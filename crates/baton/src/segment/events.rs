//! A domain's event log file, `/dev/shm/baton.<domain>~.events`: what happened to the domain's
//! queues (made, removed, owned, taken over, consumers joining and leaving), for whoever
//! follows it (`baton::Events`, `baton watch`). The log itself is `baton_ring::events`.
//!
//! The file exists once somebody has followed the domain: processes write events only into an
//! existing log (a domain nobody watches costs one failed `open` per event), and a follower
//! creates it. It is made like a queue's segment (unnamed, sized with `posix_fallocate`, then
//! linked) and opened like one (no symbolic link, our uid, the right size and magic); a name
//! starting with `.` is never a queue's, so `ls` and `gc` pass it by.
//!
//! | offset | what |
//! |---|---|
//! | 0 | magic `u64` ("BATONEV\x01"), format `u32`, slots `u32`, slot words `u64`, followers `u32` (at 24; `u32::MAX`: being removed) |
//! | 128 | `LogControl`: the writers' next sequence number; the readers' event (256 bytes) |
//! | 4096 | 1024 slots of 256 bytes |

use crate::error::{Denial, OpenError, SegmentDamage};
use crate::name::Domain;
use crate::sys::futex::Futex;
use crate::sys::shm::{self, Temporary, SHM_DIR};
use baton_ring::events::{EventLog, LogControl, Record, SLOT_WORDS};
use baton_ring::AtomicU64;
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: u64 = 0x4241_544F_4E45_5601;
const FORMAT: u32 = 1;
/// Events the log keeps: a follower further behind is told how many it missed.
pub(crate) const SLOTS: u32 = 1024;
const CONTROL_OFFSET: usize = 128;
const SLOTS_OFFSET: usize = 4096;
pub(crate) const SIZE: usize = SLOTS_OFFSET + SLOTS as usize * SLOT_WORDS * 8;

/// A mapped, validated event log file.
pub(crate) struct EventsFile {
    map: MmapRaw,
    /// Kept to look at its size before each use: a peer that shrinks it must not make us
    /// touch a page that is gone (SIGBUS).
    file: File,
    /// Device and inode, to see whether the name now names another file.
    id: (u64, u64),
}

const FOLLOWERS_OFFSET: usize = 24;
/// [`EventsFile::followers`] of a log its last follower is removing.
const CLOSING: u32 = u32::MAX;

impl std::fmt::Debug for EventsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsFile").field("id", &self.id).finish()
    }
}

/// The path of `domain`'s event log.
pub(crate) fn path(domain: &Domain) -> PathBuf {
    path_of(domain.as_str())
}

/// The path of the event log of the domain named `domain`.
fn path_of(domain: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(format!("{}{domain}~.events", shm::FILE_PREFIX))
}

impl EventsFile {
    /// The log of the domain, made if it is not there yet (with `mode`).
    pub(crate) fn create_or_open(domain: &Domain, mode: u32) -> Result<EventsFile, OpenError> {
        let path = path(domain);
        for _ in 0..2 {
            match EventsFile::open(domain) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let temp = Temporary::create(&path, SIZE as u64)?;
            let fd = temp.file().as_raw_fd();
            fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| shm::io("fchmod", e))?;
            match nix::fcntl::posix_fallocate(fd, 0, SIZE as i64) {
                Ok(()) => {}
                Err(Errno::ENOSPC | Errno::EFBIG) => {
                    return Err(OpenError::NoSpace {
                        path,
                        needed: SIZE as u64,
                    })
                }
                Err(e) => return Err(shm::io("posix_fallocate", e)),
            }
            let map = MmapOptions::new()
                .len(SIZE)
                .map_raw(temp.file())
                .map_err(|e| shm::io("mmap", e))?;
            let header = [
                MAGIC,
                u64::from(FORMAT) | u64::from(SLOTS) << 32,
                SLOT_WORDS as u64,
            ];
            for (i, w) in header.iter().enumerate() {
                // SAFETY: inside the mapping, aligned; nobody else sees the file yet.
                unsafe { std::ptr::write_volatile((map.as_mut_ptr() as *mut u64).add(i), *w) };
            }
            match temp.link_as(&path) {
                Ok(()) => {}
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(shm::io(format!("link {}", path.display()), e)),
            }
            if let Ok(Some(f)) = EventsFile::open(domain) {
                return Ok(f);
            }
        }
        Err(shm::io(
            format!("create {}", path.display()),
            std::io::Error::other("name keeps changing"),
        ))
    }

    /// The domain's log if it has one (`None`: nobody follows the domain).
    pub(crate) fn open(domain: &Domain) -> Result<Option<EventsFile>, OpenError> {
        EventsFile::open_at(path(domain))
    }

    fn open_at(path: PathBuf) -> Result<Option<EventsFile>, OpenError> {
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
        if st.st_size as usize != SIZE {
            return Err(corrupt(SegmentDamage::Truncated {
                size: st.st_size as u64,
                needed: SIZE as u64,
            }));
        }
        let map = MmapOptions::new()
            .len(SIZE)
            .map_raw(&file)
            .map_err(|e| shm::io("mmap", e))?;
        // SAFETY: the mapping holds SIZE bytes; a volatile read of plain words.
        let word =
            |i: usize| unsafe { std::ptr::read_volatile((map.as_ptr() as *const u64).add(i)) };
        if word(0) != MAGIC
            || word(1) != u64::from(FORMAT) | u64::from(SLOTS) << 32
            || word(2) != SLOT_WORDS as u64
        {
            return Err(corrupt(SegmentDamage::BadMagic(word(0))));
        }
        Ok(Some(EventsFile {
            map,
            file,
            id: (st.st_dev, st.st_ino),
        }))
    }

    /// Whether the file still has its size (a peer may have shrunk it): checked before the
    /// mapping is touched. (Between this look and the access a shrink could still come: the
    /// window is a few instructions, as for a queue's segment.)
    pub(crate) fn intact(&self) -> bool {
        fstat(self.file.as_raw_fd()).is_ok_and(|st| st.st_size as usize == SIZE)
    }

    /// How many followers the log has (a follower killed stays counted).
    fn followers(&self) -> &AtomicU32 {
        // SAFETY: inside the mapping, 4-aligned; an atomic is valid for any bits and lives as
        // long as the mapping, which the reference borrows.
        unsafe { &*(self.map.as_ptr().add(FOLLOWERS_OFFSET) as *const AtomicU32) }
    }

    /// Counts a follower in, unless the log is being removed by its last one (then `false`:
    /// make a new log).
    pub(crate) fn join(&self) -> bool {
        let n = self.followers();
        let mut cur = n.load(Ordering::Relaxed);
        loop {
            if cur == CLOSING || cur == CLOSING - 1 {
                return false;
            }
            match n.compare_exchange(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Counts a follower out; the last one removes the log (writers then write nothing until
    /// somebody follows again).
    pub(crate) fn leave(&self, domain: &Domain) {
        let n = self.followers();
        let mut cur = n.load(Ordering::Relaxed);
        loop {
            if cur == 0 || cur == CLOSING {
                return; // a peer's scribble: leave it
            }
            let to = if cur == 1 { CLOSING } else { cur - 1 };
            match n.compare_exchange(cur, to, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) if to == CLOSING => {
                    if self.current(domain.as_str()) {
                        let _ = nix::unistd::unlink(&path(domain));
                    }
                    return;
                }
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Whether anyone follows the log (writers skip it otherwise).
    fn followed(&self) -> bool {
        let n = self.followers().load(Ordering::Relaxed);
        n != 0 && n != CLOSING
    }

    /// The log.
    pub(crate) fn log(&self) -> EventLog<'_> {
        let base = self.map.as_ptr();
        // SAFETY: the mapping is SIZE bytes (checked at open), page aligned: the control block
        // at 128 (128-aligned) and the slots' words at 4096 lie inside it. Atomics are valid
        // for any bits and live as long as the mapping, which the view borrows.
        unsafe {
            EventLog::new(
                &*(base.add(CONTROL_OFFSET) as *const LogControl),
                std::slice::from_raw_parts(
                    base.add(SLOTS_OFFSET) as *const AtomicU64,
                    SLOTS as usize * SLOT_WORDS,
                ),
                SLOT_WORDS,
            )
        }
    }

    /// Whether the domain's log name still names this file.
    fn current(&self, domain: &str) -> bool {
        nix::sys::stat::stat(&path_of(domain)).is_ok_and(|st| (st.st_dev, st.st_ino) == self.id)
    }
}

const _: () = assert!(CONTROL_OFFSET + std::mem::size_of::<LogControl>() <= SLOTS_OFFSET);

/// What an event says happened (numbered in the log; see `queue::events::EventKind`).
pub(crate) mod kind {
    pub(crate) const QUEUE_CREATED: u16 = 1;
    pub(crate) const QUEUE_REMOVED: u16 = 2;
    pub(crate) const OWNER_TOOK: u16 = 3;
    pub(crate) const OWNER_LEFT: u16 = 4;
    pub(crate) const CONSUMER_JOINED: u16 = 5;
    pub(crate) const CONSUMER_LEFT: u16 = 6;
    pub(crate) const THRESHOLD_REACHED: u16 = 7;
    pub(crate) const THRESHOLD_AVAILABLE: u16 = 8;
}

/// This process's mappings of the logs it wrote to, by domain.
fn cache() -> &'static Mutex<HashMap<String, Arc<EventsFile>>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, Arc<EventsFile>>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Writes an event about queue `subject` into the log of the domain named `domain`, if the
/// domain has one: best effort (an event that cannot be written is not a reason to fail what
/// it reports).
pub(crate) fn emit(domain: &str, kind: u16, subject: &str, a: u64, b: u64) {
    let file = {
        // `try_lock`: a forked child inherits the lock as it was, held for ever if another
        // thread of the parent held it at the fork (a test's child hung there); then it maps
        // the log for this event alone.
        let mut cache = match cache().try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let lone = EventsFile::open_at(path_of(domain))
                    .ok()
                    .flatten()
                    .filter(|f| f.intact());
                if let Some(f) = lone.filter(|f| f.followed()) {
                    append(&f, kind, subject, a, b);
                }
                return;
            }
        };
        match cache.get(domain) {
            Some(f) if f.current(domain) && f.intact() => Some(f.clone()),
            _ => {
                cache.remove(domain);
                match EventsFile::open_at(path_of(domain)) {
                    Ok(Some(f)) if f.intact() => {
                        let f = Arc::new(f);
                        cache.insert(domain.to_string(), f.clone());
                        Some(f)
                    }
                    _ => None,
                }
            }
        }
    };
    if let Some(f) = file.filter(|f| f.followed()) {
        append(&f, kind, subject, a, b);
    }
}

fn append(f: &EventsFile, kind: u16, subject: &str, a: u64, b: u64) {
    f.log().append(
        &Record {
            kind,
            pid: std::process::id(),
            time_ns: crate::sys::clock::monotonic_ns(),
            a,
            b,
            subject: subject.as_bytes().to_vec(),
        },
        &Futex,
    );
}
