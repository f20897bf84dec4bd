//! A queue group's file, `/dev/shm/baton.<domain>~.group.<name>`: its policy, its members,
//! the lock that orders changes to them, and the round-robin cursors. (A name starting with
//! `.` after the domain's `~` is never a queue's, so `ls` and `gc` pass it by; names that would
//! make the file name longer than 255 bytes use a stable hash, and the real name is checked on
//! open.)
//!
//! The members are a `baton_ring::roster`: a change takes the robust lock, reads the current
//! table, writes the new one into the other copy and publishes it by its generation. Senders
//! read without the lock. A process dying anywhere in a change leaves the table as it was (or
//! as changed, once published): the next changer gets `EOWNERDEAD`, marks the lock consistent
//! and has nothing to repair.
//!
//! | offset | what |
//! |---|---|
//! | 0 | magic `u64` ("BATONGR\x01"), format `u32`, members `u32`, entry words `u64` |
//! | 24 | policy `u64`; name length `u64`; the name (200 bytes) |
//! | 256 | the changes' lock: a robust, process-shared, NORMAL mutex |
//! | 384 | round-robin cursors: all members, this node's members |
//! | 512 | removed flag |
//! | 1024 | `RosterControl`: the generation; the trackers' event |
//! | 2048 | two copies of the table: a stamp, the member count, 64 entries of 27 words (node, name length, name) |

use super::file::{Created, SharedFile};
use crate::error::{OpenError, SegmentDamage};
use crate::name::{Domain, MAX_NAME};
use crate::sys::futex::Futex;
use crate::sys::robust::{timed_lock, RobustMutex};
use crate::sys::shm::{self, SHM_DIR};
use baton_ring::failpoint::failpoint;
use baton_ring::roster::{Roster, RosterControl};
use baton_ring::{AtomicU64, Ordering};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MAGIC: u64 = 0x4241_544F_4E47_5201;
const FORMAT: u32 = 1;
/// The most members a group has.
pub(crate) const MAX_MEMBERS: usize = 64;
const NAME_WORDS: usize = MAX_NAME.div_ceil(8);
/// An entry: the member's node (0: this one), its name's length, its name.
const ENTRY_WORDS: usize = 2 + NAME_WORDS;
/// A table: the member count, then the entries.
const TABLE_WORDS: usize = 1 + MAX_MEMBERS * ENTRY_WORDS;
const COPY_WORDS: usize = 1 + TABLE_WORDS;
const POLICY_OFFSET: usize = 24;
const NAME_LEN_OFFSET: usize = 32;
const NAME_OFFSET: usize = 40;
const LOCK_OFFSET: usize = 256;
const CURSORS_OFFSET: usize = 384;
const REMOVED_OFFSET: usize = 512;
const ROSTER_OFFSET: usize = 1024;
const COPIES_OFFSET: usize = 2048;
/// The file's size.
pub(crate) const SIZE: usize = (COPIES_OFFSET + 2 * COPY_WORDS * 8).next_multiple_of(4096);
const HEADER: [u64; 3] = [
    MAGIC,
    FORMAT as u64 | (MAX_MEMBERS as u64) << 32,
    ENTRY_WORDS as u64,
];
/// How long a change waits for the lock held by a live process before it says so.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

const _: () = assert!(NAME_OFFSET + NAME_WORDS * 8 <= LOCK_OFFSET);
const _: () = assert!(LOCK_OFFSET + std::mem::size_of::<libc::pthread_mutex_t>() <= CURSORS_OFFSET);
const _: () = assert!(ROSTER_OFFSET + std::mem::size_of::<RosterControl>() <= COPIES_OFFSET);

/// One member as stored: the node its queue is on (0: this node) and the queue's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StoredMember {
    pub(crate) node: u32,
    pub(crate) queue: String,
}

/// The path of group `name` of `domain`.
pub(crate) fn path(domain: &Domain, name: &str) -> PathBuf {
    let plain = format!("{}{domain}~.group.{name}", shm::FILE_PREFIX);
    if plain.len() <= 255 {
        return PathBuf::from(SHM_DIR).join(plain);
    }
    PathBuf::from(SHM_DIR).join(format!(
        "{}{domain}~.group#{:016x}",
        shm::FILE_PREFIX,
        shm::name_hash(name)
    ))
}

/// The group files of `domain`, sorted.
pub(crate) fn list_paths(domain: &Domain) -> Result<Vec<PathBuf>, OpenError> {
    let prefix = format!("{}{domain}~.group", shm::FILE_PREFIX);
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| shm::io(format!("read {SHM_DIR}"), e))?;
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('#'))
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}

/// A mapped, validated group file.
#[derive(Debug)]
pub(crate) struct GroupFile {
    file: SharedFile,
}

/// What a change to the members found.
pub(crate) enum Change<R> {
    /// Made (or nothing to make), with what the change said.
    Done(R),
    /// The lock is held by a live process that does not let it go.
    Busy,
    /// The lock cannot be taken (a peer broke it).
    Broken(i32),
}

impl GroupFile {
    /// Makes group `name` with `policy` (a number the API layer gives meaning to). `None`:
    /// the name is taken.
    pub(crate) fn create(
        domain: &Domain,
        name: &str,
        policy: u64,
        mode: u32,
    ) -> Result<Option<GroupFile>, OpenError> {
        let path = path(domain, name);
        let init = |base: *mut u8| {
            // SAFETY: the mapping is SIZE bytes and nobody else sees it yet; the offsets are
            // inside it and aligned for what they hold.
            unsafe {
                std::ptr::write_volatile(base.add(POLICY_OFFSET) as *mut u64, policy);
                std::ptr::write_volatile(base.add(NAME_LEN_OFFSET) as *mut u64, name.len() as u64);
                std::ptr::copy_nonoverlapping(name.as_ptr(), base.add(NAME_OFFSET), name.len());
                RobustMutex::init(base.add(LOCK_OFFSET) as *mut RobustMutex)
                    .map_err(|e| shm::io("initialise the group's lock", e))?;
                // The table starts as generation 0, stamped, before anybody can open the file
                // (review: stamped after the link, an opener in between found it scribbled,
                // and a creator killed there left it so for good).
                roster_at(base).init();
            }
            Ok(())
        };
        match SharedFile::create(&path, SIZE, mode, &HEADER, init)? {
            Created::New(file) => Ok(Some(GroupFile { file })),
            Created::Exists => Ok(None),
        }
    }

    /// Group `name` of `domain`, if there is one.
    pub(crate) fn open(domain: &Domain, name: &str) -> Result<Option<GroupFile>, OpenError> {
        let path = path(domain, name);
        let Some(file) = SharedFile::open(&path, SIZE, &HEADER)? else {
            return Ok(None);
        };
        let g = GroupFile { file };
        if g.name().as_deref() != Some(name) {
            return Err(OpenError::Corrupt {
                path,
                reason: SegmentDamage::BadName,
            });
        }
        Ok(Some(g))
    }

    /// The group file at `path` (from [`list_paths`]).
    pub(crate) fn open_path(path: &std::path::Path) -> Result<Option<GroupFile>, OpenError> {
        Ok(SharedFile::open(path, SIZE, &HEADER)?.map(|file| GroupFile { file }))
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of this module's, inside the SIZE-byte mapping and 8-aligned;
        // an atomic is valid for any bits and lives as long as the mapping, which `self` owns.
        unsafe { &*(self.file.base().add(offset) as *const AtomicU64) }
    }

    /// Whether the file still has its size (a peer may have shrunk it).
    pub(crate) fn intact(&self) -> bool {
        self.file.intact()
    }

    /// The stored policy number.
    pub(crate) fn policy(&self) -> u64 {
        // Relaxed: written before the file was linked, never after.
        self.word(POLICY_OFFSET).load(Ordering::Relaxed)
    }

    /// The stored name, if it is a valid one.
    pub(crate) fn name(&self) -> Option<String> {
        let len = self.word(NAME_LEN_OFFSET).load(Ordering::Relaxed) as usize;
        if len == 0 || len > MAX_NAME {
            return None;
        }
        let words: Vec<u64> = (0..NAME_WORDS)
            .map(|i| self.word(NAME_OFFSET + i * 8).load(Ordering::Relaxed))
            .collect();
        let name = decode_name(&words, len)?;
        crate::name::check_queue_name(&name).ok()?;
        Some(name)
    }

    /// The round-robin cursor over all members (`local` false) or this node's.
    pub(crate) fn cursor(&self, local: bool) -> &AtomicU64 {
        self.word(CURSORS_OFFSET + if local { 8 } else { 0 })
    }

    /// Whether the group was removed (its name may name a new one by now).
    pub(crate) fn removed(&self) -> bool {
        self.word(REMOVED_OFFSET).load(Ordering::Acquire) != 0
    }

    /// The members' table.
    pub(crate) fn roster(&self) -> Roster<'_> {
        // SAFETY: the mapping is SIZE bytes and lives as long as `self`, which the view
        // borrows.
        unsafe { roster_at(self.file.base()) }
    }

    /// The members now, and their generation.
    ///
    /// # Errors
    ///
    /// What is wrong with a table a peer wrote over.
    pub(crate) fn members(&self) -> Result<(u64, Vec<StoredMember>), &'static str> {
        let mut table = vec![0u64; TABLE_WORDS];
        let gen = self
            .roster()
            .read(&mut table)
            .map_err(|_| "the members' table has a stamp of no generation")?;
        Ok((gen, decode(&table)?))
    }

    /// Changes the members under the lock: `f` gets them as they are and edits them; the
    /// result is published if it differs. Trackers are woken after the lock is let go.
    pub(crate) fn change<R>(
        &self,
        f: impl FnOnce(&mut Vec<StoredMember>) -> R,
    ) -> Result<Change<R>, &'static str> {
        // SAFETY: the lock lies inside the mapping at an aligned offset and was initialised
        // before the file was linked.
        let lock = unsafe { &*(self.file.base().add(LOCK_OFFSET) as *const RobustMutex) };
        if lock.kind_intact().is_err() {
            return Ok(Change::Broken(libc::EINVAL));
        }
        match timed_lock(lock.raw(), Instant::now() + LOCK_PATIENCE) {
            0 => {}
            libc::EOWNERDEAD => {
                // A changer died holding it: the table is as it was, or as it published.
                // Nothing to repair.
                lock.consistent();
            }
            libc::ETIMEDOUT => return Ok(Change::Busy),
            rc => return Ok(Change::Broken(rc)),
        }
        let result = (|| {
            let (_, mut members) = self.members()?;
            let before = members.clone();
            let r = f(&mut members);
            if members != before {
                let table = encode(&members)?;
                self.roster().write(&table);
                failpoint("group_changed");
            }
            Ok(r)
        })();
        lock.unlock();
        self.roster().changed().notify(&Futex);
        result.map(Change::Done)
    }

    /// Marks the group removed, wakes its trackers, and unlinks its name if the name still
    /// names this file.
    pub(crate) fn remove(&self) -> bool {
        self.word(REMOVED_OFFSET).store(1, Ordering::Release);
        self.roster().changed().notify(&Futex);
        self.file.unlink_if_current()
    }
}

/// The roster of the group file mapped at `base`.
///
/// # Safety
///
/// `base` is the start of a SIZE-byte mapping of a group file that outlives `'a`.
unsafe fn roster_at<'a>(base: *mut u8) -> Roster<'a> {
    // SAFETY: the control block and both copies lie inside the SIZE-byte mapping at 128-aligned
    // and 8-aligned offsets; atomics are valid for any bits (the contract covers the lifetime).
    unsafe {
        let copy = |i: usize| {
            std::slice::from_raw_parts(
                base.add(COPIES_OFFSET + i * COPY_WORDS * 8) as *const AtomicU64,
                COPY_WORDS,
            )
        };
        Roster::new(
            &*(base.add(ROSTER_OFFSET) as *const RosterControl),
            copy(0),
            copy(1),
        )
    }
}

/// A table's words as members.
fn decode(table: &[u64]) -> Result<Vec<StoredMember>, &'static str> {
    let count = table[0] as usize;
    if count > MAX_MEMBERS {
        return Err("the members' table counts more members than it holds");
    }
    let mut members = Vec::with_capacity(count);
    for e in table[1..].chunks_exact(ENTRY_WORDS).take(count) {
        let node = u32::try_from(e[0]).map_err(|_| "a member's node is out of range")?;
        let len = e[1] as usize;
        let queue = decode_name(&e[2..], len)
            .filter(|n| member_name_ok(node, n))
            .ok_or("a member's name is not a queue name (or node/queue for another node's)")?;
        members.push(StoredMember { node, queue });
    }
    Ok(members)
}

/// Members as a table's words.
fn encode(members: &[StoredMember]) -> Result<Vec<u64>, &'static str> {
    if members.len() > MAX_MEMBERS {
        return Err("more members than a group holds");
    }
    let mut table = vec![0u64; TABLE_WORDS];
    table[0] = members.len() as u64;
    for (m, e) in members.iter().zip(table[1..].chunks_exact_mut(ENTRY_WORDS)) {
        e[0] = u64::from(m.node);
        e[1] = m.queue.len() as u64;
        for (w, chunk) in e[2..].iter_mut().zip(m.queue.as_bytes().chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
    }
    Ok(table)
}

/// Whether `name` is a member's: a queue name on this node (node 0), `NODE/QUEUE` on another.
fn member_name_ok(node: u32, name: &str) -> bool {
    use crate::name::check_queue_name;
    if node == 0 {
        return check_queue_name(name).is_ok();
    }
    name.split_once('/').is_some_and(|(n, q)| {
        n.len() <= 64 && check_queue_name(n).is_ok() && check_queue_name(q).is_ok()
    })
}

/// `len` bytes of name from little-endian words, if valid text of that length.
fn decode_name(words: &[u64], len: usize) -> Option<String> {
    if len == 0 || len > words.len() * 8 {
        return None;
    }
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_survive_encoding() {
        let members = vec![
            StoredMember {
                node: 0,
                queue: "a".into(),
            },
            StoredMember {
                node: 0,
                queue: "q".repeat(MAX_NAME),
            },
            StoredMember {
                node: 1,
                queue: "node2/q".into(),
            },
        ];
        assert_eq!(decode(&encode(&members).unwrap()).unwrap(), members);
        // Another node's member is NODE/QUEUE; this node's a queue name.
        for (node, queue) in [(1, "q"), (0, "node2/q"), (1, "a/b/c"), (1, "/q")] {
            let bad = vec![StoredMember {
                node,
                queue: queue.into(),
            }];
            assert!(decode(&encode(&bad).unwrap()).is_err(), "{node} {queue}");
        }
    }

    #[test]
    fn a_scribbled_table_is_an_error_not_a_panic() {
        let mut t = vec![0u64; TABLE_WORDS];
        t[0] = MAX_MEMBERS as u64 + 1;
        assert!(decode(&t).is_err());
        t[0] = 1;
        t[2] = 3; // name length 3, but the name is zeros: not a queue name
        assert!(decode(&t).is_err());
        t[2] = 1000;
        assert!(decode(&t).is_err());
        t[1] = u64::MAX;
        assert!(decode(&t).is_err());
    }
}
