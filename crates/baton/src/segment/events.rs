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
//! | 4096 | 1024 slots of 464 bytes |

use super::file::{Created, SharedFile};
use crate::error::OpenError;
use crate::name::Domain;
use crate::sys::futex::Futex;
use crate::sys::shm::{self, SHM_DIR};
use baton_ring::events::{EventLog, LogControl, Record, SLOT_WORDS};
use baton_ring::AtomicU64;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: u64 = 0x4241_544F_4E45_5601;
/// 2: subjects of 408 bytes (a group's name and a member's).
const FORMAT: u32 = 2;
/// Events the log keeps: a follower further behind is told how many it missed.
pub(crate) const SLOTS: u32 = 1024;
const CONTROL_OFFSET: usize = 128;
const SLOTS_OFFSET: usize = 4096;
pub(crate) const SIZE: usize = SLOTS_OFFSET + SLOTS as usize * SLOT_WORDS * 8;

/// A mapped, validated event log file.
#[derive(Debug)]
pub(crate) struct EventsFile {
    file: SharedFile,
}

const FOLLOWERS_OFFSET: usize = 24;
/// [`EventsFile::followers`] of a log its last follower is removing.
const CLOSING: u32 = u32::MAX;
/// The header words a log starts with.
const HEADER: [u64; 3] = [
    MAGIC,
    FORMAT as u64 | (SLOTS as u64) << 32,
    SLOT_WORDS as u64,
];

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
            if let Some(f) = EventsFile::open(domain)? {
                return Ok(f);
            }
            match SharedFile::create(&path, SIZE, mode, &HEADER, |_| Ok(()))? {
                Created::New(file) => return Ok(EventsFile { file }),
                Created::Exists => continue,
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
        Ok(SharedFile::open(&path, SIZE, &HEADER)?.map(|file| EventsFile { file }))
    }

    /// Whether the file still has its size (a peer may have shrunk it): checked before the
    /// mapping is touched.
    pub(crate) fn intact(&self) -> bool {
        self.file.intact()
    }

    /// How many followers the log has (a follower killed stays counted).
    fn followers(&self) -> &AtomicU32 {
        // SAFETY: inside the mapping, 4-aligned; an atomic is valid for any bits and lives as
        // long as the mapping, which the reference borrows.
        unsafe { &*(self.file.base().add(FOLLOWERS_OFFSET) as *const AtomicU32) }
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
    pub(crate) fn leave(&self) {
        let n = self.followers();
        let mut cur = n.load(Ordering::Relaxed);
        loop {
            if cur == 0 || cur == CLOSING {
                return; // a peer's scribble: leave it
            }
            let to = if cur == 1 { CLOSING } else { cur - 1 };
            match n.compare_exchange(cur, to, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) if to == CLOSING => {
                    self.file.unlink_if_current();
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
        let base = self.file.base();
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
    fn current(&self) -> bool {
        self.file.current()
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
    /// Subject: the group; `a`: its policy's number.
    pub(crate) const GROUP_CREATED: u16 = 9;
    /// Subject: the group.
    pub(crate) const GROUP_REMOVED: u16 = 10;
    /// Subject: `group/queue`.
    pub(crate) const MEMBER_ADDED: u16 = 11;
    /// Subject: `group/queue`.
    pub(crate) const MEMBER_REMOVED: u16 = 12;
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
            Some(f) if f.current() && f.intact() => Some(f.clone()),
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
