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
use crate::error::{Damage, OpenError, SendError, TrySendError};
use crate::name::Domain;
use crate::recovery::{self, Attachment, DeathWatch};
use crate::segment::membership::{self, change, pair, record, JOIN_TIMEOUT, LOG, MIN_MAX_MESSAGE};
use crate::segment::{Attributes, Segment};
use crate::sys::clock::deadline_after;
use crate::sys::futex::Futex;
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
    /// Bits of a position the log's stamps keep ([`Attributes::tag_bits`]): 32, or fewer so
    /// that a test wraps them in a short run (the log is then at most 2^(bits - 2) cells).
    pub tag_bits: u32,
}

impl Default for LocalGroupConfig {
    /// A 4 MiB log, messages up to 64 KiB.
    fn default() -> Self {
        LocalGroupConfig {
            log_bytes: 4 << 20,
            max_message: 64 << 10,
            tag_bits: Attributes::default().tag_bits,
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
            tag_bits: self.tag_bits,
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
    /// Records read by a send that waited for room, not yet received (with their bytes).
    inbox: std::collections::VecDeque<(RecordHeader, Vec<u8>)>,
    inbox_bytes: usize,
    /// How many records the inbox holds, for the descriptor's helper thread.
    inbox_len: Arc<std::sync::atomic::AtomicUsize>,
}

/// What a record in the inbox counts for besides its payload.
const RECORD_OVERHEAD: usize = 64;
/// How often a send waiting for room looks again (records may have come that it must read).
const SEND_TICK: Duration = Duration::from_millis(10);

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
                change(&seg, slot, record::DOWN, slot, 0, deadline, true)?;
                change(&seg, slot, record::JOIN, slot, me, deadline, true)?;
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
            inbox: Default::default(),
            inbox_bytes: 0,
            inbox_len: Default::default(),
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
            let inbox = self.inbox_len.clone();
            let ready = super::ready::ReadyFd::start(
                self.seg.clone(),
                Arc::new(|s: &Attachment| &s.shared().data_event),
                move || {
                    let cursor = seg.shared().members[slot].cursor.load(Ordering::Relaxed);
                    // SAFETY: only looks at the stamp of the member's own cursor.
                    let reader = unsafe { seg.lane(LOG).reader() };
                    inbox.load(Ordering::Relaxed) > 0
                        || seg.is_removed()
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

    /// Multicasts `payload` to every member, this one included, waiting while the log is full
    /// (reading meanwhile what comes, into the member's inbox, so that its own unread records
    /// never hold the log: `recv` gives them first, in order).
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`] over the group's maximum, [`SendError::Removed`], and the
    /// member's own: [`ProcessGroupError::ForkedCopy`], [`ProcessGroupError::Left`].
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ProcessGroupError> {
        self.send_until(payload, None)
    }

    /// As [`LocalMember::send`], waiting at most `timeout` for space.
    ///
    /// # Errors
    ///
    /// As [`LocalMember::send`], and [`SendError::Timeout`].
    pub fn send_timeout(
        &mut self,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), ProcessGroupError> {
        self.send_until(payload, deadline_after(timeout))
    }

    /// As [`LocalMember::send`], without waiting: a full log is `Ok(false)` ("try again").
    ///
    /// # Errors
    ///
    /// As [`LocalMember::send`].
    pub fn try_send(&mut self, payload: &[u8]) -> Result<bool, ProcessGroupError> {
        self.check()?;
        if self.try_once(payload)? {
            return Ok(true);
        }
        // Full: what this member has not read holds the log as much as anyone's; read it
        // into the inbox (recv gives it first), free what all have read, and try again.
        self.make_room()?;
        self.try_once(payload)
    }

    /// Sends, waiting for room until `deadline` (`None`: as long as it takes). While it waits
    /// it keeps reading into the inbox, so that its own cursor never holds the log: a member
    /// blocked in `send` would otherwise wait for itself (an adversarial review found two
    /// members doing exactly that, for ever).
    fn send_until(
        &mut self,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), ProcessGroupError> {
        self.check()?;
        loop {
            if self.try_once(payload)? {
                return Ok(());
            }
            self.make_room()?;
            if self.try_once(payload)? {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ProcessGroupError::Send(SendError::Timeout));
            }
            if self.seg.is_removed() {
                return Err(ProcessGroupError::Send(SendError::Removed));
            }
            self.seg.check_size().map_err(ProcessGroupError::Corrupt)?;
            // Sleep until a member's read frees room (its sweep notifies the space event),
            // or a tick: records may also come that this member must read to make room.
            let lane = self.seg.lane(LOG);
            let need = record_cells(payload.len());
            let until = Instant::now() + SEND_TICK;
            let _ = lane.space_event().wait_until_mapped(
                &Futex,
                Some(deadline.map_or(until, |d| d.min(until))),
                || self.seg.check_size().is_ok(),
                || lane.used_cells() + need <= lane.capacity_cells(),
            );
        }
    }

    /// One try of the sender: `Ok(false)` when the log is full.
    fn try_once(&self, payload: &[u8]) -> Result<bool, ProcessGroupError> {
        match self.sender.try_send(payload) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Failed(e)) => Err(e.into()),
        }
    }

    /// Reads what is there into the inbox (up to a log's worth), then frees what every member
    /// has read.
    fn make_room(&mut self) -> Result<(), ProcessGroupError> {
        let cap = self.seg.lane(LOG).capacity_cells() as usize * CELL;
        while self.inbox_bytes < cap {
            match self.read_record()? {
                Some((header, payload)) => {
                    self.inbox_bytes += payload.len() + RECORD_OVERHEAD;
                    self.inbox.push_back((header, payload));
                }
                None => break,
            }
        }
        let was = self.inbox_len.swap(self.inbox.len(), Ordering::Relaxed);
        if self.ready.is_some() && was == 0 && !self.inbox.is_empty() {
            // The descriptor's thread sleeps on the group's event: it looks again, and finds
            // the inbox.
            self.seg.shared().data_event.notify(&Futex);
        }
        sweep(&self.seg);
        Ok(())
    }

    /// The record at the cursor, copied, with the cursor moved past it (and past padding and
    /// abandoned claims before it); `None` when nothing committed is there now.
    fn read_record(&mut self) -> Result<Option<(RecordHeader, Vec<u8>)>, ProcessGroupError> {
        let max = self.seg.attributes().max_message;
        loop {
            let reader = self.reader();
            match reader.at(self.cursor, max)? {
                Slot::Record(r) => {
                    let mut payload = Vec::with_capacity(r.header().len as usize);
                    reader.copy_payload(&r, &mut payload)?;
                    let header = *r.header();
                    self.advance(r.cells());
                    return Ok(Some((header, payload)));
                }
                Slot::Skip { cells } => self.advance(cells),
                Slot::InFlight { sender } => {
                    // A claim of a process that is gone is abandoned by whoever takes its slot.
                    if sender != self.slot && recovery::reclaim_if_dead(&self.seg, sender).is_some()
                    {
                        continue;
                    }
                    return Ok(None);
                }
                Slot::End => return Ok(None),
            }
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
        // What a send read while it waited for room comes first.
        while let Some((header, mut payload)) = self.inbox.pop_front() {
            self.inbox_bytes -= payload.len() + RECORD_OVERHEAD;
            self.inbox_len.store(self.inbox.len(), Ordering::Relaxed);
            if let Some(d) = self.apply(&header, &mut payload)? {
                return Ok(Some(d));
            }
        }
        // The deadline is fixed when the first wait begins: a poll (a zero timeout), or a
        // receive that finds a record at once, reads no clock.
        let mut deadline = None;
        let mut until = || *deadline.get_or_insert_with(|| timeout.and_then(deadline_after));
        loop {
            // (The file's size is checked before each sleep and after it, as a receiver's: a
            // peer that shrinks it under a busy member is a SIGBUS, as for a queue.)
            match self.read_record()? {
                Some((header, mut payload)) => {
                    if let Some(d) = self.apply(&header, &mut payload)? {
                        return Ok(Some(d));
                    }
                }
                None => {
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
                true,
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
            || membership::owed_downs(&self.seg)
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
    let mut freed = membership::free_read(seg);
    let owed = membership::owed_downs(seg);
    if freed == 0 || owed {
        // Nothing freed, or a PROCDOWN owed: a member whose process is gone (or let its slot
        // go) and whose PROCDOWN is not written yet; whoever takes its slot's lock writes it.
        let mut reclaimed = false;
        for slot in membership::unheld_members(seg) {
            reclaimed |= recovery::reclaim_if_dead(seg, slot).is_some();
        }
        if reclaimed {
            freed += membership::free_read(seg);
        }
    }
    freed
}
