//! Process groups on one node: Corosync's closed process groups (CPG) in shared memory.
//!
//! A group is a segment of its own (`/dev/shm/baton.<domain>~.pgroup.<name>`) whose first lane
//! is the group's *log*. Every member reads every record of the log, at its own cursor, so
//! every member sees the same messages and membership changes in the same order: the order of
//! the lane's claims (see `baton_ring::lane::LogReader`).
//!
//! - *Send*: a member appends as a queue's sender does (its sender slot, claim, write,
//!   commit; no syscall unless members sleep). A full log is `Full`, or a wait for space.
//! - *Receive*: a member copies the record at its cursor, then moves the cursor past it. A
//!   claim whose writer died is abandoned (the sender-slot rules of `recovery`), and every
//!   member steps over the same cells.
//! - *Reuse*: cells before every member's cursor are freed by whoever holds the group lock
//!   (`baton_ring::lane::sweep_log`): a member after reading a quarter of the log, a sender
//!   before it waits for space. A member's cursor pins what it has not read.
//! - *Membership*: JOIN, LEAVE and PROCDOWN are records of the log, ordered with the
//!   messages. Each is written under the group lock (the segment's robust owner mutex), with
//!   the member table change it makes, as one journaled step: whoever takes the lock from a
//!   dead holder finishes or undoes the step from the journal and the record's stamp (no sweep
//!   runs meanwhile: sweeping takes the same lock, so the record is still in the log). So a
//!   member's JOIN is in the log exactly when the table has it, and PROCDOWN is written once.
//! - *Death*: a member is a process, and its liveness is its sender slot's lock. Whoever takes
//!   a dead member's slot lock (a sleeping member's death watch, a process taking the slot, a
//!   member or sender finding the slot's claim stuck) writes its PROCDOWN before the slot is
//!   free again.
//! - *A joiner* sets its cursor to the log's head under the lock, then appends its JOIN, whose
//!   payload lists the members at that point. It reads from its cursor and delivers nothing
//!   before its own JOIN: then the list, and every record after.

use super::sender::Sender;
pub use crate::error::ProcessGroupError;
use crate::error::{Damage, OpenError, TrySendError};
use crate::name::Domain;
use crate::recovery::{self, Attachment, DeathWatch};
use crate::segment::membership::{self, change, pair, record, JOIN_TIMEOUT, LOG, MIN_MAX_MESSAGE};
use crate::segment::{Attributes, Segment};
use crate::sys::clock::deadline_after;
use crate::sys::liveness::fork_generation;
use baton_ring::lane::{record_cells, Corrupt, LogReader, RecordHeader, Slot, CELL};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a local process group's log is sized, when a member creates it (later joiners use what
/// the first one made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalGroupConfig {
    /// Bytes of the log (rounded up to 64-byte cells).
    pub log_bytes: u64,
    /// The largest message, in bytes (at least 2,315: a JOIN lists every member).
    pub max_message: u32,
}

impl Default for LocalGroupConfig {
    /// A 4 MiB log, messages up to 64 KiB.
    fn default() -> Self {
        LocalGroupConfig {
            log_bytes: 4 << 20,
            max_message: 64 << 10,
        }
    }
}

impl LocalGroupConfig {
    /// The segment's attributes: the log in lane 0; the other lanes hold one message each (a
    /// segment has four).
    fn attributes(&self) -> Result<Attributes, ProcessGroupError> {
        if self.max_message < MIN_MAX_MESSAGE {
            return Err(ProcessGroupError::MaxMessageTooSmall {
                max_message: self.max_message,
                min: MIN_MAX_MESSAGE,
            });
        }
        let one = record_cells(self.max_message as usize) * CELL as u64;
        Ok(Attributes {
            capacity: [self.log_bytes.max(one), one, one, one],
            max_message: self.max_message,
            reply_boxes: 0,
            ..Attributes::default()
        })
    }
}

/// What a member receives: messages and membership changes, in the group's one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDelivery {
    /// A member's message (this member's own too).
    Message {
        /// The sending member's pid (in its own pid namespace).
        pid: u32,
        /// The message.
        payload: Vec<u8>,
    },
    /// A member joined, left or died.
    Membership {
        /// The member's pid (in its own pid namespace).
        pid: u32,
        /// What happened.
        change: LocalChange,
        /// The members after it, by pid (in slot order: the same list for every member).
        members: Vec<u32>,
    },
}

/// A membership change of a local process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChange {
    /// Joined.
    Join,
    /// Left (or its handle was dropped).
    Leave,
    /// Its process went without leaving (killed, crashed, exec'd).
    ProcessDown,
}

/// A member of a process group on this node (see the module documentation). Made by
/// [`LocalMember::join`]; dropping it leaves.
pub struct LocalMember {
    seg: Arc<Attachment>,
    sender: Sender,
    group: String,
    slot: u8,
    /// `nonce << 32 | pid`.
    me: u64,
    cursor: u64,
    /// The members this one knows of, by slot: `nonce << 32 | pid`.
    view: BTreeMap<u8, u64>,
    /// Its own JOIN has been read.
    joined: bool,
    left: bool,
    generation: u64,
    /// Process-wide key of the membership (see `JOINED`).
    key: (u64, u64, u64),
    /// The pollable descriptor's helper, once asked for.
    ready: Option<super::ready::ReadyFd>,
}

impl std::fmt::Debug for LocalMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMember")
            .field("group", &self.group)
            .field("slot", &self.slot)
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// The groups this process is a member of, by the log file's device and inode and the fork
/// generation that joined (a forked child inherits the list, not the memberships).
static JOINED: Mutex<Vec<(u64, u64, u64)>> = Mutex::new(Vec::new());

impl LocalMember {
    /// Joins process group `group` of `domain`, making it (with `config`) if it does not
    /// exist. The member's first delivery is its own `Join`, with the members then; it
    /// receives every message sent after that, and none before.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::AlreadyMember`], [`ProcessGroupError::Open`] (a bad name, a file
    /// that is no group's), [`ProcessGroupError::NoSlot`], [`ProcessGroupError::Timeout`] when
    /// the log stays full for 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Domain, LocalChange, LocalDelivery, LocalGroupConfig, LocalMember};
    /// let domain = Domain::new(&format!("doc-pgroup-{}", std::process::id()))?;
    /// let mut m = LocalMember::join(&domain, "replicas", &LocalGroupConfig::default())?;
    /// let me = std::process::id();
    /// let first = m.recv(None)?.unwrap();
    /// assert_eq!(first, LocalDelivery::Membership { pid: me, change: LocalChange::Join, members: vec![me] });
    /// m.send(b"set x = 1")?;
    /// assert_eq!(m.recv(None)?.unwrap(), LocalDelivery::Message { pid: me, payload: b"set x = 1".to_vec() });
    /// m.leave()?;
    /// LocalMember::remove(&domain, "replicas")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(
        domain: &Domain,
        group: &str,
        config: &LocalGroupConfig,
    ) -> Result<LocalMember, ProcessGroupError> {
        let seg = match Segment::open_process_group(domain, group) {
            Ok(seg) if !seg.is_removed() => seg,
            Ok(_) | Err(OpenError::NotFound { .. }) => {
                Segment::create_process_group(domain, group, &config.attributes()?)?
            }
            Err(e) => return Err(e.into()),
        };
        if seg.is_removed() {
            return Err(ProcessGroupError::Removed);
        }
        let (dev, ino) = seg.file_key();
        let key = (dev, ino, fork_generation());
        {
            let mut joined = JOINED.lock().unwrap_or_else(|e| e.into_inner());
            if joined.contains(&key) {
                return Err(ProcessGroupError::AlreadyMember(group.to_string()));
            }
            joined.push(key);
        }
        let forget = |key| {
            JOINED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|k| *k != key)
        };
        let seg = Arc::new(Attachment::new(seg));
        let made = (|| {
            let slot = recovery::sender_slot(&seg)?;
            let nonce = (crate::segment::random_u64() as u32).max(1);
            let me = (u64::from(nonce) << 32) | u64::from(std::process::id());
            let deadline = deadline_after(JOIN_TIMEOUT);
            // SAFETY: this process holds `slot` (its keeper) as long as `seg` lives, and not
            // the group lock. A membership still in the table for the slot is a gone holder's
            // whose DOWN could not be written when the slot was taken (the log was full): it
            // comes first.
            unsafe {
                change(&seg, slot, record::DOWN, slot, 0, deadline)?;
                change(&seg, slot, record::JOIN, slot, me, deadline)?;
            }
            Ok((slot, me))
        })();
        let (slot, me) = match made {
            Ok(v) => v,
            Err(e) => {
                forget(key);
                return Err(e);
            }
        };
        let cursor = seg.shared().members[slot as usize]
            .cursor
            .load(Ordering::Relaxed);
        let sender = Sender {
            seg: seg.clone(),
            priority: LOG as u8,
            msg_type: record::MESSAGE,
            version: 0,
            pid: std::process::id(),
        };
        Ok(LocalMember {
            seg,
            sender,
            group: group.to_string(),
            slot,
            me,
            cursor,
            view: BTreeMap::new(),
            joined: false,
            left: false,
            generation: fork_generation(),
            key,
            ready: None,
        })
    }

    /// A descriptor readable while [`LocalMember::recv`] may have something (or the group is
    /// removed or damaged: `recv` then says so), for `poll`/`epoll`: it stays readable until a
    /// `recv` finds nothing (call it with a zero timeout until it returns `Ok(None)`). A helper
    /// thread makes it readable; the first call starts it.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::ForkedCopy`], [`ProcessGroupError::Left`], and
    /// [`ProcessGroupError::Corrupt`] wrapping nothing when the eventfd or the thread cannot
    /// be made.
    pub fn ready_fd(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, ProcessGroupError> {
        self.check()?;
        if self.ready.is_none() {
            let seg = self.seg.clone();
            let slot = self.slot as usize;
            let max = seg.attributes().max_message;
            let ready = super::ready::ReadyFd::start(
                self.seg.clone(),
                Arc::new(|s: &Attachment| &s.shared().data_event),
                move || {
                    let cursor = seg.shared().members[slot].cursor.load(Ordering::Relaxed);
                    // SAFETY: only looks at the stamp of the member's own cursor.
                    let reader = unsafe { seg.lane(LOG).reader() };
                    seg.is_removed()
                        || !matches!(
                            reader.at(cursor, max),
                            Ok(Slot::End | Slot::InFlight { .. })
                        )
                },
            )
            .map_err(|e| ProcessGroupError::NoHelper(e.kind()))?;
            self.ready = Some(ready);
        }
        Ok(self.ready.as_ref().map(|r| r.fd()).expect("made above"))
    }

    /// The members of group `group` now, by pid (in slot order), read from its table without
    /// joining (nobody is told anything). A group nobody made has none.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::Open`] for a bad name or a file that cannot be opened.
    pub fn members_of(domain: &Domain, group: &str) -> Result<Vec<u32>, ProcessGroupError> {
        match Segment::open_process_group(domain, group) {
            Ok(seg) => {
                seg.check_size().map_err(ProcessGroupError::Corrupt)?;
                Ok(seg
                    .shared()
                    .members
                    .iter()
                    .map(|m| m.state.load(Ordering::Acquire) as u32)
                    .filter(|&pid| pid != 0)
                    .collect())
            }
            Err(OpenError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes group `group`'s log: its members' calls fail with `Removed` from then on.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::Open`] when there is no such group (`NotFound`) or its file
    /// cannot be opened.
    pub fn remove(domain: &Domain, group: &str) -> Result<(), ProcessGroupError> {
        Ok(Segment::open_process_group(domain, group)?.remove_process_group()?)
    }

    /// Multicasts `payload` to every member, this one included, waiting while the log is full.
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`] over the group's maximum, [`SendError::Removed`], and the
    /// member's own: [`ProcessGroupError::ForkedCopy`], [`ProcessGroupError::Left`].
    pub fn send(&self, payload: &[u8]) -> Result<(), ProcessGroupError> {
        self.check()?;
        Ok(self.sender.send(payload)?)
    }

    /// As [`LocalMember::send`], waiting at most `timeout` for space.
    ///
    /// # Errors
    ///
    /// As [`LocalMember::send`], and [`SendError::Timeout`].
    pub fn send_timeout(&self, payload: &[u8], timeout: Duration) -> Result<(), ProcessGroupError> {
        self.check()?;
        Ok(self.sender.send_timeout(payload, timeout)?)
    }

    /// As [`LocalMember::send`], without waiting: a full log is `Ok(false)` ("try again").
    ///
    /// # Errors
    ///
    /// As [`LocalMember::send`].
    pub fn try_send(&self, payload: &[u8]) -> Result<bool, ProcessGroupError> {
        self.check()?;
        match self.sender.try_send(payload) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => {
                // A sweep may free what every member has read.
                if sweep(&self.seg) > 0 {
                    return match self.sender.try_send(payload) {
                        Ok(()) => Ok(true),
                        Err(TrySendError::Full(_)) => Ok(false),
                        Err(TrySendError::Failed(e)) => Err(e.into()),
                    };
                }
                Ok(false)
            }
            Err(TrySendError::Failed(e)) => Err(e.into()),
        }
    }

    /// The next message or membership change, waiting up to `timeout` (`None`: as long as it
    /// takes); `Ok(None)` when none came in time.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::Removed`], [`ProcessGroupError::Corrupt`],
    /// [`ProcessGroupError::ForkedCopy`], [`ProcessGroupError::Left`].
    pub fn recv(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<LocalDelivery>, ProcessGroupError> {
        self.check()?;
        // The deadline is fixed when the first wait begins: a poll (a zero timeout), or a
        // receive that finds a record at once, reads no clock.
        let mut deadline = None;
        let mut until = || *deadline.get_or_insert_with(|| timeout.and_then(deadline_after));
        let max = self.seg.attributes().max_message;
        let mut payload = Vec::new();
        loop {
            // (The file's size is checked before each sleep and after it, as a receiver's: a
            // peer that shrinks it under a busy member is a SIGBUS, as for a queue.)
            let reader = self.reader();
            match reader.at(self.cursor, max)? {
                Slot::Record(r) => {
                    payload.clear();
                    reader.copy_payload(&r, &mut payload)?;
                    let header = *r.header();
                    self.advance(r.cells());
                    if let Some(d) = self.apply(&header, &mut payload)? {
                        return Ok(Some(d));
                    }
                }
                Slot::Skip { cells } => self.advance(cells),
                Slot::InFlight { sender } => {
                    // A claim of a process that is gone is abandoned by whoever takes its slot.
                    if sender != self.slot && recovery::reclaim_if_dead(&self.seg, sender).is_some()
                    {
                        continue;
                    }
                    self.rearm();
                    if timeout == Some(Duration::ZERO) || !self.wait(until())? {
                        return Ok(None);
                    }
                }
                Slot::End => {
                    if self.seg.is_removed() {
                        return Err(ProcessGroupError::Removed);
                    }
                    self.rearm();
                    if timeout == Some(Duration::ZERO) || !self.wait(until())? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The members this one knows of, by pid (in slot order), as of the last delivery.
    pub fn members(&self) -> Vec<u32> {
        self.view.values().map(|&m| m as u32).collect()
    }

    /// This member's pid.
    pub fn me(&self) -> u32 {
        self.me as u32
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Leaves the group: the others receive `Leave`, after every message this member sent.
    ///
    /// # Errors
    ///
    /// [`ProcessGroupError::ForkedCopy`]; [`ProcessGroupError::Timeout`] when the log stayed
    /// full for 10 s (the membership then ends with the process, as `ProcessDown`).
    pub fn leave(mut self) -> Result<(), ProcessGroupError> {
        self.leave_now()
    }

    fn leave_now(&mut self) -> Result<(), ProcessGroupError> {
        if self.left {
            return Ok(());
        }
        if fork_generation() != self.generation {
            return Err(ProcessGroupError::ForkedCopy);
        }
        self.left = true;
        JOINED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k| *k != self.key);
        if self.seg.is_removed() {
            return Ok(());
        }
        // SAFETY: this process holds its slot as long as the attachment lives (a forked copy
        // was refused above), and not the group lock.
        unsafe {
            change(
                &self.seg,
                self.slot,
                record::LEAVE,
                self.slot,
                self.me,
                deadline_after(JOIN_TIMEOUT),
            )
        }
        .map(|_| ())
    }

    /// Found nothing: the descriptor goes quiet until something comes.
    fn rearm(&self) {
        if let Some(r) = &self.ready {
            r.rearm();
        }
    }

    fn check(&self) -> Result<(), ProcessGroupError> {
        if fork_generation() != self.generation {
            return Err(ProcessGroupError::ForkedCopy);
        }
        if self.left {
            return Err(ProcessGroupError::Left);
        }
        Ok(())
    }

    fn reader(&self) -> LogReader<'_> {
        // SAFETY: this member reads only at its cursor, which is published in the member
        // table (set under the group lock at its join, moved only forward, after each read),
        // and the sweeps free nothing past a joined member's cursor.
        unsafe { self.seg.lane(LOG).reader() }
    }

    /// Moves the cursor over `cells` just read, and sweeps now and then.
    fn advance(&mut self, cells: u64) {
        self.cursor += cells;
        // SYNC POINT: record read (Release side): the copy is done before a sweep frees it.
        self.seg.shared().members[self.slot as usize]
            .cursor
            .store(self.cursor, Ordering::Release);
        let lane = self.seg.lane(LOG);
        if self.cursor.saturating_sub(lane.head()) >= lane.capacity_cells() / 4
            || lane.space_event().waiters() != 0
        {
            sweep(&self.seg);
        }
    }

    /// Sleeps until the log has something at the cursor; `false` at the deadline.
    fn wait(&self, deadline: Option<Instant>) -> Result<bool, ProcessGroupError> {
        let max = self.seg.attributes().max_message;
        let reader = self.reader();
        let something = || {
            !matches!(
                reader.at(self.cursor, max),
                Ok(Slot::End | Slot::InFlight { .. })
            )
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            // A poll (a zero timeout): it touches no shared word, so that polling members
            // cost the senders nothing (a sleeper's announcement would make them wake it).
            return Ok(false);
        }
        // A short spin first: a message due within microseconds costs no sleep, and its
        // sender no wake-up.
        let spin_until = deadline.map_or(now + super::DEFAULT_SPIN, |d| {
            d.min(now + super::DEFAULT_SPIN)
        });
        while Instant::now() < spin_until {
            if something() || self.seg.is_removed() {
                return Ok(true);
            }
            baton_ring::spin_hint();
        }
        let mut damaged = None;
        let seg = &self.seg;
        let woke = seg.shared().data_event.wait_until_mapped(
            &DeathWatch(seg),
            deadline,
            || seg.check_size().is_ok(),
            || match seg.check_size() {
                Err(e) => {
                    damaged = Some(e);
                    true
                }
                Ok(()) => {
                    seg.is_removed()
                        || !matches!(
                            reader.at(self.cursor, max),
                            Ok(Slot::End | Slot::InFlight { .. })
                        )
                }
            },
        );
        if let Some(e) = damaged {
            return Err(ProcessGroupError::Corrupt(e));
        }
        match woke {
            None => Err(ProcessGroupError::Corrupt(
                seg.check_size()
                    .err()
                    .unwrap_or(Damage::Lane(Corrupt::TailStuck)),
            )),
            Some(w) => Ok(w || deadline.is_none_or(|d| Instant::now() < d)),
        }
    }

    /// What a record read means for this member: a delivery, or nothing (a record before its
    /// own JOIN, or a membership record of a member it does not know).
    fn apply(
        &mut self,
        header: &RecordHeader,
        payload: &mut Vec<u8>,
    ) -> Result<Option<LocalDelivery>, ProcessGroupError> {
        let bad = |what: &str| {
            ProcessGroupError::Corrupt(Damage::Lane(Corrupt::UnknownState {
                pos: self.cursor,
                state: what.len() as u64,
            }))
        };
        match header.msg_type {
            record::MESSAGE => Ok(self.joined.then(|| LocalDelivery::Message {
                pid: header.sender_pid,
                payload: std::mem::take(payload),
            })),
            record::JOIN => {
                let (slot, member, rest) = pair(payload).ok_or_else(|| bad("join"))?;
                if !self.joined {
                    if slot != self.slot || member != self.me {
                        return Ok(None);
                    }
                    let n = rest
                        .get(..2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                        .ok_or_else(|| bad("join"))?;
                    let mut list = &rest[2..];
                    for _ in 0..n {
                        let (s, m, tail) = pair(list).ok_or_else(|| bad("join"))?;
                        self.view.insert(s, m);
                        list = tail;
                    }
                    self.joined = true;
                }
                self.view.insert(slot, member);
                Ok(Some(self.told(member, LocalChange::Join)))
            }
            record::LEAVE | record::DOWN => {
                let (slot, member, _) = pair(payload).ok_or_else(|| bad("leave"))?;
                if !self.joined || self.view.get(&slot) != Some(&member) {
                    return Ok(None);
                }
                self.view.remove(&slot);
                let change = if header.msg_type == record::LEAVE {
                    LocalChange::Leave
                } else {
                    LocalChange::ProcessDown
                };
                Ok(Some(self.told(member, change)))
            }
            _ => Err(bad("unknown record type")),
        }
    }

    fn told(&self, member: u64, change: LocalChange) -> LocalDelivery {
        LocalDelivery::Membership {
            pid: member as u32,
            change,
            members: self.members(),
        }
    }
}

impl Drop for LocalMember {
    fn drop(&mut self) {
        if fork_generation() == self.generation {
            let _ = self.leave_now();
        }
    }
}

/// Frees what every member has read, if nobody else is doing it; returns the cells freed.
/// First reclaims the slots of members found dead (their PROCDOWN), whose cursors would pin
/// the log for ever.
pub(crate) fn sweep(seg: &Segment) -> u64 {
    let freed = membership::free_read(seg);
    if freed > 0 {
        return freed;
    }
    // Nothing freed: perhaps the slowest member is dead and nobody has taken its slot yet.
    let shared = seg.shared();
    let mut reclaimed = false;
    for (i, m) in membership::members(seg).iter().enumerate() {
        if m.state.load(Ordering::Relaxed) != 0
            && shared.slots[i].lock.holder() == crate::sys::robust::Holder::Died
        {
            reclaimed |= recovery::reclaim_if_dead(seg, i as u8).is_some();
        }
    }
    if reclaimed {
        membership::free_read(seg)
    } else {
        0
    }
}
