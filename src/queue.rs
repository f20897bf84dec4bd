//! Named queues: [`Queue`], [`Sender`], [`Receiver`], [`Message`], [`Status`].
//!
//! A queue is a shared-memory segment with four priority lanes, a receiver event and an owner
//! lock. Any number of [`Sender`]s in any number of processes send; one [`Receiver`] at a time
//! owns the queue and receives, highest priority first and, within a priority, in the order the
//! sends were claimed (so FIFO per sender).

use crate::error::{AckError, OpenError, OwnError, RecvError, SendError, TrySendError};
use crate::lane::{Claim, ClaimError, CommitError, Lane, RecordHeader, RecordRef, Slot};
use crate::name::Domain;
use crate::owner::{self, OwnerGuard, Ownership, Wait};
use crate::recovery::{self, failpoint};
use crate::segment::{self, Attributes, Segment};
use crate::sync::Ordering;
use crate::wait::Futex;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Number of priority lanes; priority 0 is the highest.
pub const PRIORITIES: usize = 4;
/// How long a blocked receiver or sender polls before it sleeps on the futex, by default.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// A claim at the head of a lane that stays uncommitted this long gets its sender checked: if
/// the sender's process is dead, the claim is abandoned and skipped.
const STUCK_CHECK: Duration = Duration::from_millis(2);
/// A sleeping receiver wakes at least this often, to notice a sender that died between its
/// commit and its wake-up call, or a claim whose sender died.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// A handle on a named queue. Cheap to clone; the mapping lives as long as any handle.
#[derive(Debug, Clone)]
pub struct Queue {
    seg: Arc<Segment>,
}

impl Queue {
    /// Creates a queue, or opens it if it already exists with the same attributes.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`], [`OpenError::InvalidAttributes`], [`OpenError::Exists`] when
    /// it exists with other attributes (the message names the difference), [`OpenError::NoSpace`]
    /// when shared memory is full, and the errors of [`Queue::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-create-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// assert_eq!(q.attributes().max_message, 4096);
    /// Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn create(domain: &Domain, name: &str, attrs: &Attributes) -> Result<Queue, OpenError> {
        if let Ok(old) = Segment::open(domain, name) {
            expire_if_due(&old);
        }
        Ok(Queue {
            seg: Arc::new(Segment::create(domain, name, attrs)?),
        })
    }

    /// Opens an existing queue.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`]; [`OpenError::PermissionDenied`] for a file of another user, a
    /// symbolic link, or a mode other than the one the queue was created with;
    /// [`OpenError::Incompatible`] for a segment of another format, ABI or byte order;
    /// [`OpenError::Corrupt`] for a segment whose header or size make no sense.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, OpenError, Queue};
    /// let domain = Domain::new(&format!("doc-open-{}", std::process::id()))?;
    /// assert!(matches!(Queue::open(&domain, "jobs"), Err(OpenError::NotFound { .. })));
    /// Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let q = Queue::open(&domain, "jobs")?; // another process would do this
    /// assert_eq!(q.name(), "jobs");
    /// Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), OpenError>(())
    /// ```
    pub fn open(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
        let seg = Segment::open(domain, name)?;
        if expire_if_due(&seg) {
            return Err(OpenError::NotFound {
                domain: domain.to_string(),
                name: name.to_string(),
            });
        }
        Ok(Queue { seg: Arc::new(seg) })
    }

    /// Opens an existing queue whose file mode differs from the one it was created with (its
    /// owner, or root, changed it; for instance to let a group in). [`Queue::open`] refuses
    /// such a queue; this is the explicit opt-in. Every other check still applies.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`], without the mode check.
    pub fn open_accepting_mode(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
        Ok(Queue {
            seg: Arc::new(Segment::open_checked(domain, name, true)?),
        })
    }

    /// Removes a queue, with its messages. The name is free at once: a queue of the same name
    /// can be created right after. Processes that still have the old queue open get
    /// [`SendError::Removed`] / [`RecvError::Removed`] on their next send or receive.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::PermissionDenied`], [`OpenError::InvalidName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, SendError};
    /// let domain = Domain::new(&format!("doc-remove-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// Queue::remove(&domain, "jobs")?;
    /// assert_eq!(q.sender().send(b"late"), Err(SendError::Removed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(domain: &Domain, name: &str) -> Result<(), OpenError> {
        segment::remove(domain, name)
    }

    /// The queues of a domain, each with its status or the error met opening it. Changes
    /// nothing: a queue whose retention has run out is listed with [`Status::expired`] set
    /// ([`Queue::gc`] removes it).
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-list-{}", std::process::id()))?;
    /// Queue::create(&domain, "a", &Attributes::default())?.sender().send(b"x")?;
    /// Queue::create(&domain, "b", &Attributes::default())?;
    /// let depths: Vec<(String, u64)> = Queue::list(&domain)?
    ///     .into_iter()
    ///     .filter_map(|e| e.status.ok())
    ///     .map(|st| (st.name, st.lanes.iter().map(|l| l.messages).sum()))
    ///     .collect();
    /// assert_eq!(depths, [("a".to_string(), 1), ("b".to_string(), 0)]);
    /// # Queue::remove(&domain, "a")?; Queue::remove(&domain, "b")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn list(domain: &Domain) -> Result<Vec<ListEntry>, OpenError> {
        Ok(list_entries(segment::list_paths(Some(domain))?))
    }

    /// The queues of every domain (as `ipcs -q` lists every message queue), as [`Queue::list`].
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    pub fn list_all_domains() -> Result<Vec<ListEntry>, OpenError> {
        Ok(list_entries(segment::list_paths(None)?))
    }

    /// A queue's status, read without changing anything: unlike [`Queue::open`], it neither
    /// removes a queue whose retention has run out (it reports it [`Status::expired`]) nor
    /// recovers a dead owner's queue (it reports [`Status::dead_owner_pid`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-inspect-{}", std::process::id()))?;
    /// Queue::create(&domain, "jobs", &Attributes::default())?.sender().send(b"x")?;
    /// let st = Queue::inspect(&domain, "jobs")?;
    /// assert_eq!((st.sent, st.owner_pid, st.expired), (1, None, false));
    /// # Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inspect(domain: &Domain, name: &str) -> Result<Status, OpenError> {
        let seg = Segment::open(domain, name)?;
        Ok(Queue { seg: Arc::new(seg) }.status())
    }

    /// Temporary files of the domain left by processes that died while creating a queue, with
    /// their pids: what `gc` would remove.
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    pub fn stale_files(domain: &Domain) -> Result<Vec<(PathBuf, u32)>, OpenError> {
        segment::dead_temporaries(domain)
    }

    /// Removes the domain's queues whose retention has run out, and temporary files left by
    /// processes that died while creating a queue. Returns the removed files.
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-gc-{}", std::process::id()))?;
    /// let attrs = Attributes { retention: Some(Duration::from_millis(10)), ..Default::default() };
    /// let q = Queue::create(&domain, "short", &attrs)?;
    /// drop(q.receiver()?); // owned once, then closed: the retention clock starts
    /// std::thread::sleep(Duration::from_millis(20));
    /// assert!(Queue::inspect(&domain, "short")?.expired);
    /// assert_eq!(Queue::gc(&domain)?.len(), 1);
    /// assert!(Queue::list(&domain)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(domain: &Domain) -> Result<Vec<PathBuf>, OpenError> {
        let mut removed = Vec::new();
        for file in segment::list_paths(Some(domain))? {
            if let Ok(seg) = Segment::open_path(&file) {
                if expire_if_due(&seg) {
                    removed.push(file);
                }
            }
        }
        removed.extend(segment::remove_dead_temporaries(domain)?);
        Ok(removed)
    }

    /// Counts this process as a standby (waiting to own the queue) until the mark is dropped,
    /// also between standby waits. A process that waits to own the queue in timed slices, to
    /// look at something else in between (a stop signal, say), holds one for the whole wait:
    /// otherwise, if the owner of a retention-0 queue closed in a gap between two slices, it
    /// would see no standby and remove the queue with its messages. While a mark lives, the
    /// process's standby waits through this handle do not register again
    /// ([`Status::standbys`] counts the handle once). A mark on the owner's own handle, with no
    /// standby wait through it under way, does not keep a retention-0 queue at that owner's
    /// close: it is not a standby coming to take over. A forked child's copy of a mark counts
    /// for nothing and ends nothing.
    ///
    /// # Errors
    ///
    /// [`OwnError::NoStandbySlot`] when every slot of the sender table is held by a live
    /// process: the standby could not be seen, so a retention-0 queue could go without it.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, OwnError, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-mark-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut owner = Some(Queue::open(&domain, "jobs")?.receiver()?);
    /// let mark = q.standby_mark()?; // counted from here, between the waits too
    /// assert_eq!(q.status().standbys, 1);
    /// let rx = loop {
    ///     match q.standby(Some(Duration::from_millis(10))) {
    ///         Ok(rx) => break rx,
    ///         // Look at something else here (a stop flag, say); then wait again. Here: the
    ///         // owner closes, and the next wait takes the queue.
    ///         Err(OwnError::Timeout { .. }) => drop(owner.take()),
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// };
    /// drop(mark);
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn standby_mark(&self) -> Result<StandbyMark, OwnError> {
        // Made first: the mark counts as begun even when it cannot be registered, and its
        // drop ends it.
        let mark = StandbyMark {
            seg: self.seg.clone(),
            generation: crate::robust::fork_generation(),
        };
        recovery::standby_begin(&self.seg, recovery::StandbyKind::Mark).map_err(|reason| {
            OwnError::NoStandbySlot {
                name: self.name().to_string(),
                reason,
            }
        })?;
        Ok(mark)
    }

    /// Whether this handle's [`Queue::create`] made the queue (`false`: it found the queue
    /// already there, or the handle comes from [`Queue::open`]).
    pub fn was_created(&self) -> bool {
        self.seg.made_here
    }

    /// The queue's attributes.
    pub fn attributes(&self) -> Attributes {
        self.seg.attributes()
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        self.seg.names().0
    }

    /// A sender at the lowest priority (3), message type 0, version 0.
    pub fn sender(&self) -> Sender {
        Sender {
            seg: self.seg.clone(),
            priority: 3,
            msg_type: 0,
            version: 0,
            pid: std::process::id(),
            spin: DEFAULT_SPIN,
        }
    }

    /// Takes ownership of the queue and returns its receiver.
    ///
    /// # Errors
    ///
    /// [`OwnError::Busy`] while another live process owns it; [`OwnError::Corrupt`] if the
    /// owner lock is unusable.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-recv-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().send(b"hello")?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.payload(), b"hello");
    /// assert!(q.receiver().is_err(), "a second receiver finds the queue busy");
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receiver(&self) -> Result<Receiver, OwnError> {
        self.receiver_with(ReceiverOptions::default())
    }

    /// Waits to own the queue, as a standby: returns when the owner closes or dies (then
    /// with every message still in place, the dead owner's unacknowledged ones delivered first,
    /// flagged redelivered), or at once if the queue has no owner.
    ///
    /// # Errors
    ///
    /// [`OwnError::Timeout`] when `timeout` passes first; as [`Queue::receiver`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-standby-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().send(b"pending")?;
    /// let active = q.receiver()?;
    /// let q2 = q.clone();
    /// let standby = std::thread::spawn(move || q2.standby(Some(Duration::from_secs(10))));
    /// while q.status().standbys == 0 {
    ///     std::thread::yield_now();
    /// }
    /// drop(active); // the owner closes (or dies): the standby owns the queue, messages in place
    /// let mut rx = standby.join().unwrap()?;
    /// assert_eq!(rx.try_recv()?.payload(), b"pending");
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn standby(&self, timeout: Option<Duration>) -> Result<Receiver, OwnError> {
        self.receiver_with(ReceiverOptions {
            standby: true,
            timeout,
            ..ReceiverOptions::default()
        })
    }

    /// Takes ownership of the queue as `options` say.
    ///
    /// # Errors
    ///
    /// As [`Queue::receiver`] and [`Queue::standby`]; [`OwnError::Removed`] if the queue was
    /// removed.
    pub fn receiver_with(&self, options: ReceiverOptions) -> Result<Receiver, OwnError> {
        let removed = || OwnError::Removed {
            name: self.name().to_string(),
        };
        if self.seg.is_removed() {
            return Err(removed());
        }
        let wait = if options.standby {
            // A timeout too long to be a deadline is no deadline.
            Wait::Until(options.timeout.and_then(|t| Instant::now().checked_add(t)))
        } else {
            Wait::No
        };
        let (guard, ownership) = owner::acquire(self.seg.clone(), wait)?;
        if self.seg.is_removed() {
            return Err(removed());
        }
        let mut local = Local {
            closed: false,
            cursor: [0; PRIORITIES],
            redeliver_end: [0; PRIORITIES],
            released: Default::default(),
            stuck: [None; PRIORITIES],
        };
        for p in 0..PRIORITIES {
            let lane = self.seg.lane(p);
            local.cursor[p] = lane.head();
            local.redeliver_end[p] = lane.read_cursor();
        }
        let mut rx = Receiver {
            owned: Arc::new(Owned {
                seg: self.seg.clone(),
                epoch: ownership.epoch,
                generation: crate::robust::fork_generation(),
                local: Mutex::new(local),
            }),
            guard: Some(guard),
            ownership,
            spin: DEFAULT_SPIN,
            discarded: 0,
        };
        if options.empty {
            rx.discarded = rx.discard_all().map_err(|e| OwnError::Corrupt {
                name: self.name().to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(rx)
    }

    /// A snapshot of the queue's counters and owner (SA-Forum `StatusGet`).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-status-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().with_priority(1)?.send(b"x")?;
    /// let rx = q.receiver()?;
    /// let st = q.status();
    /// assert_eq!((st.sent, st.lanes[1].messages, st.owner_pid), (1, 1, Some(std::process::id())));
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Status {
        let seg = &self.seg;
        let attrs = seg.attributes();
        let (name, domain) = seg.names();
        let (size, file_size) = seg.sizes();
        if file_size.is_some_and(|f| f < size) {
            // Shrunk by a peer: touching the mapping past the file's end is a SIGBUS. Report
            // what is known without touching it; `file_size` says what happened.
            return Status {
                name: name.to_string(),
                domain: domain.to_string(),
                attributes: attrs,
                lanes: attrs.capacity.map(|capacity| LaneStatus {
                    capacity,
                    ..LaneStatus::default()
                }),
                created_unix_ns: seg.created_unix_ns(),
                size,
                file_size,
                files: vec![seg.path().to_path_buf()],
                ..Status::default()
            };
        }
        let mut lanes = [LaneStatus::default(); PRIORITIES];
        let (mut sent, mut received, mut abandoned) = (0, 0, 0);
        let mut oldest: Option<u64> = None;
        let mut next_in_line: Option<u64> = None;
        for (p, l) in lanes.iter_mut().enumerate() {
            let lane = seg.lane(p);
            let census = lane.census(attrs.max_message);
            let (r, a) = lane.counters();
            abandoned += a + census.abandoned;
            sent += r + a + census.waiting + census.delivered + census.in_flight + census.abandoned;
            received += r;
            if let Some(t) = census.oldest_waiting_sent_ns {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
                next_in_line = next_in_line.or(Some(t));
            }
            *l = LaneStatus {
                capacity: attrs.capacity[p],
                used: census.used,
                messages: census.waiting + census.delivered,
                unacknowledged: census.delivered,
                in_flight: census.in_flight,
                waiting_senders: lane.space_event().waiters(),
            };
        }
        let shared = seg.shared();
        let (owner_pid, dead_owner_pid) = owner::owner_pids(seg);
        let now = monotonic_ns();
        Status {
            name: name.to_string(),
            domain: domain.to_string(),
            attributes: attrs,
            lanes,
            sent,
            received,
            abandoned,
            redelivered: shared.stats.redelivered.load(Ordering::Relaxed),
            rejected_full: shared.stats.rejected_full.load(Ordering::Relaxed),
            owner_pid,
            dead_owner_pid,
            owner_stalled_ns: owner_pid.and(next_in_line).map(|t| now.saturating_sub(t)),
            oldest_waiting_ns: oldest.map(|t| now.saturating_sub(t)),
            epoch: shared.owner.epoch.load(Ordering::Relaxed),
            takeovers: shared.owner.takeovers.load(Ordering::Relaxed),
            removed: seg.is_removed(),
            standbys: recovery::standbys(seg),
            owner_sleeping: shared.data_event.waiters() > 0,
            sender_slots: recovery::live_senders(seg),
            attached: recovery::attached(seg),
            expired: retention_ran_out(seg),
            created_unix_ns: seg.created_unix_ns(),
            size,
            file_size,
            files: vec![seg.path().to_path_buf()],
        }
    }
}

fn list_entries(files: Vec<PathBuf>) -> Vec<ListEntry> {
    files
        .into_iter()
        .map(|file| {
            let status = Segment::open_path(&file).map(|seg| Queue { seg: Arc::new(seg) }.status());
            ListEntry { file, status }
        })
        .collect()
}

/// One queue found by [`Queue::list`].
#[derive(Debug)]
pub struct ListEntry {
    /// The backing file.
    pub file: PathBuf,
    /// The queue's status, or why it could not be opened.
    pub status: Result<Status, OpenError>,
}

/// How [`Queue::receiver_with`] takes ownership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverOptions {
    /// Wait for the queue to become free instead of failing with `Busy`.
    pub standby: bool,
    /// With `standby`: wait at most this long (`None`: as long as it takes).
    pub timeout: Option<Duration>,
    /// Discard every message waiting when ownership is taken (SA-Forum's `EMPTY` open flag).
    pub empty: bool,
}

/// Per-priority usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaneStatus {
    /// The lane's byte budget.
    pub capacity: u64,
    /// Bytes in use (records, their headers and padding, in 64-byte cells).
    pub used: u64,
    /// Messages in the queue: waiting, plus delivered and not yet acknowledged.
    pub messages: u64,
    /// Of those, delivered and not yet acknowledged.
    pub unacknowledged: u64,
    /// Sends claimed and not yet committed (a sender is writing, or died writing).
    pub in_flight: u64,
    /// Senders announced as waiting for space. A sender that died while waiting stays counted
    /// (nothing can tell its count from a live one's): it costs the owner a needless wake-up
    /// call now and then, and makes other senders sleep at once instead of spinning first.
    pub waiting_senders: u32,
}

/// A snapshot of a queue (SA-Forum `StatusGet` plus counters).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Queue name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Attributes fixed at creation.
    pub attributes: Attributes,
    /// Per priority, 0 first.
    pub lanes: [LaneStatus; PRIORITIES],
    /// Messages sent since creation (claimed: received, abandoned, or still in the queue).
    pub sent: u64,
    /// Messages received and acknowledged since creation.
    pub received: u64,
    /// Messages abandoned since creation: their senders died before committing them.
    pub abandoned: u64,
    /// Deliveries of messages delivered before and not acknowledged (after an owner died or
    /// closed, or released a message).
    pub redelivered: u64,
    /// Sends refused because the lane was full.
    pub rejected_full: u64,
    /// The owning process, if there is a live one.
    pub owner_pid: Option<u32>,
    /// An owner that died holding the queue, not yet taken over (the next owner, standby, or a
    /// `create`/`open`/`gc` of a queue with a retention recovers it; [`Queue::list`] and
    /// [`Queue::inspect`] only report it).
    pub dead_owner_pid: Option<u32>,
    /// If the queue is owned and a message waits: how long the message the owner takes next
    /// (the oldest undelivered one of the highest-priority lane that has one) has waited. An
    /// owner that receives takes it within microseconds; a stopped or overloaded one lets it
    /// age. Measured from the messages themselves, so the receive path pays nothing for it.
    pub owner_stalled_ns: Option<u64>,
    /// How long the oldest undelivered message has waited, if any waits.
    pub oldest_waiting_ns: Option<u64>,
    /// Ownership epoch: how many times the queue has been taken.
    pub epoch: u64,
    /// How many times the owner lock was taken from a dead holder.
    pub takeovers: u64,
    /// The queue has been removed (its name is gone; this handle still maps it).
    pub removed: bool,
    /// Live processes waiting as standbys to own the queue.
    pub standbys: u32,
    /// The owner is asleep waiting for a message (or about to be).
    pub owner_sleeping: bool,
    /// Slots of the sender table held by live processes (each process that sends to the
    /// queue, or waits to own it, holds one).
    pub sender_slots: u32,
    /// The live processes that hold a slot of the sender table (they have sent to the queue,
    /// or wait to own it), by slot.
    pub attached: Vec<Attached>,
    /// The queue's retention has run out: it has had no owner for longer than its retention.
    /// [`Queue::gc`], or the next [`Queue::open`] or [`Queue::create`], removes it.
    pub expired: bool,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Size of the segment.
    pub size: u64,
    /// Size of its file now, if it could be read. Smaller than `size` if a peer truncated it:
    /// then nothing else here was read from the segment (that would be a SIGBUS), and the
    /// counters are zero.
    pub file_size: Option<u64>,
    /// The shared-memory files backing the queue.
    pub files: Vec<PathBuf>,
}

/// Counts this process as a standby until dropped (see [`Queue::standby_mark`]).
#[derive(Debug)]
pub struct StandbyMark {
    seg: Arc<Segment>,
    /// The fork generation that made it: a forked child's copy ends nothing.
    generation: u64,
}

impl Drop for StandbyMark {
    fn drop(&mut self) {
        if self.generation == crate::robust::fork_generation() {
            recovery::standby_end(&self.seg, recovery::StandbyKind::Mark);
        }
    }
}

/// A live process attached to a queue (see [`Status::attached`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Attached {
    /// Its pid, in its own pid namespace (which may not be the reader's).
    pub pid: u32,
    /// How many of its threads wait to own the queue (0: it only sends).
    pub standbys: u32,
}

impl Status {
    /// Whether the queue has an owner that has let the message it would take next wait at
    /// least `after`: a hung owner (e.g. stopped), or one too busy to receive. Such an owner is
    /// not replaced automatically.
    pub fn owner_stalled(&self, after: Duration) -> bool {
        self.owner_stalled_ns
            .is_some_and(|ns| ns >= after.as_nanos() as u64)
    }
}

/// Whether `seg`'s retention has run out, found without changing anything (see
/// [`expire_if_due`], which removes it).
fn retention_ran_out(seg: &Segment) -> bool {
    let Some(retention) = seg.attributes().retention else {
        return false;
    };
    let Some(since) = owner::unowned_since_unchanged(seg) else {
        return false; // owned, or its dead owner is not recovered yet
    };
    retention_due(seg, since, retention)
}

/// Whether a queue unowned since `since` (0: never owned) is past `retention`.
fn retention_due(seg: &Segment, since: u64, retention: Duration) -> bool {
    // 0: never owned yet; the retention clock starts when a first owner goes.
    since != 0
        && monotonic_ns().saturating_sub(since) >= retention.as_nanos() as u64
        && !(retention.is_zero() && recovery::standby_waiting(seg))
}

/// Removes `seg`'s queue if its retention has run out; returns whether it is gone.
fn expire_if_due(seg: &Segment) -> bool {
    let Some(retention) = seg.attributes().retention else {
        return false;
    };
    if seg.is_removed() {
        return true;
    }
    let Some(since) = owner::unowned_since(seg) else {
        return false; // owned
    };
    retention_due(seg, since, retention) && seg.remove().is_ok()
}

/// The id of the message at `position` of lane `priority`: the priority in the low two bits,
/// the position above them. Positions only grow (64-bit, counted in 64-byte cells: 2^62
/// of them take millennia at memory speed), so no two messages of one queue share an id.
pub(crate) fn message_id(priority: usize, position: u64) -> u64 {
    (position << 2) | priority as u64
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock every process on the machine shares.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends messages to a queue. `Clone`, `Send` and `Sync`; any number may send at once.
#[derive(Debug, Clone)]
pub struct Sender {
    seg: Arc<Segment>,
    priority: u8,
    msg_type: i64,
    version: u32,
    pid: u32,
    spin: Duration,
}

impl Sender {
    /// This sender, sending at priority `p` (0 highest, 3 lowest).
    ///
    /// # Errors
    ///
    /// [`SendError::InvalidPriority`] above 3.
    pub fn with_priority(mut self, p: u8) -> Result<Sender, SendError> {
        if p as usize >= PRIORITIES {
            return Err(SendError::InvalidPriority(p));
        }
        self.priority = p;
        Ok(self)
    }

    /// This sender, stamping messages with a user type.
    pub fn with_type(mut self, msg_type: i64) -> Sender {
        self.msg_type = msg_type;
        self
    }

    /// This sender, stamping messages with a user version.
    pub fn with_version(mut self, version: u32) -> Sender {
        self.version = version;
        self
    }

    /// Sends, waiting while the lane is full.
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`] (nothing written), [`SendError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-send-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let tx = q.sender().with_priority(0)?.with_type(7);
    /// tx.send(b"urgent")?;
    /// let m = q.receiver()?.recv()?;
    /// assert_eq!((m.payload(), m.priority(), m.msg_type()), (&b"urgent"[..], 0, 7));
    /// # drop(m); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, payload: &[u8]) -> Result<(), SendError> {
        self.send_until(payload, None)
    }

    /// Sends, waiting at most `timeout` for space.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`], and [`SendError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, SendError};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-send-timeout-{}", std::process::id()))?;
    /// let attrs = Attributes { capacity: [128; 4], max_message: 64, ..Default::default() };
    /// let q = Queue::create(&domain, "small", &attrs)?;
    /// let tx = q.sender();
    /// tx.send(&[0u8; 64])?; // 96 bytes with its header, in two 64-byte cells: the lane is full
    /// assert_eq!(tx.send_timeout(&[1u8; 64], Duration::from_millis(10)), Err(SendError::Timeout));
    /// # Queue::remove(&domain, "small")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, payload: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_until(payload, Some(Instant::now() + timeout))
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] hands the message back; other failures are
    /// [`TrySendError::Failed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, TrySendError};
    /// let domain = Domain::new(&format!("doc-try-{}", std::process::id()))?;
    /// let attrs = Attributes { capacity: [128; 4], max_message: 64, ..Default::default() };
    /// let q = Queue::create(&domain, "small", &attrs)?;
    /// let tx = q.sender();
    /// tx.try_send(vec![1u8; 64]).unwrap();
    /// match tx.try_send(vec![2u8; 64]) {
    ///     Err(TrySendError::Full(back)) => assert_eq!(back, vec![2u8; 64]),
    ///     other => panic!("expected Full, got {other:?}"),
    /// }
    /// # Queue::remove(&domain, "small")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send<M: AsRef<[u8]>>(&self, message: M) -> Result<(), TrySendError<M>> {
        let payload = message.as_ref();
        let (lane, slot) = self
            .lane_for(payload.len(), self.priority)
            .map_err(TrySendError::Failed)?;
        match lane.try_claim(payload.len(), slot) {
            Ok(claim) => self
                .finish(&lane, claim, payload)
                .map_err(TrySendError::Failed),
            Err(ClaimError::Full) => {
                self.count_rejected();
                Err(TrySendError::Full(message))
            }
            Err(ClaimError::Corrupt(c)) => Err(TrySendError::Failed(c.into())),
        }
    }

    /// Lends `len` bytes of the lane of `priority` to write a message in place, waiting while
    /// the lane is full: no copy. Write the payload into the [`Loan`] (it derefs to `[u8]`),
    /// then [`Loan::commit`]; dropping it uncommitted cancels it and frees the space. The
    /// message type and version are this sender's.
    ///
    /// A loan holds back the messages claimed after it in its lane until it is committed or
    /// dropped: write, and commit, promptly.
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`], [`SendError::InvalidPriority`], and as [`Sender::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-loan-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "frames", &Attributes::default())?;
    /// let tx = q.sender();
    /// let mut slot = tx.loan(8, 0)?;
    /// slot.copy_from_slice(&42u64.to_le_bytes()); // written straight into shared memory
    /// slot.commit()?;
    /// let mut rx = q.receiver()?;
    /// let m = rx.recv_in_place()?;                // read straight from shared memory
    /// assert_eq!(m.payload(), &42u64.to_le_bytes());
    /// m.ack()?;
    /// # drop(rx); Queue::remove(&domain, "frames")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loan(&self, len: usize, priority: u8) -> Result<Loan<'_>, SendError> {
        self.loan_until(len, priority, None)
    }

    /// As [`Sender::loan`], waiting at most `timeout` for space.
    ///
    /// # Errors
    ///
    /// As [`Sender::loan`], and [`SendError::Timeout`].
    pub fn loan_timeout(
        &self,
        len: usize,
        priority: u8,
        timeout: Duration,
    ) -> Result<Loan<'_>, SendError> {
        self.loan_until(len, priority, Some(Instant::now() + timeout))
    }

    /// As [`Sender::loan`] if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] with the length asked for; other failures are
    /// [`TrySendError::Failed`].
    pub fn try_loan(&self, len: usize, priority: u8) -> Result<Loan<'_>, TrySendError<usize>> {
        let (lane, slot) = self.lane_for(len, priority).map_err(TrySendError::Failed)?;
        match lane.try_claim(len, slot) {
            Ok(claim) => Ok(Loan::new(self, lane, claim, len)),
            Err(ClaimError::Full) => {
                self.count_rejected();
                Err(TrySendError::Full(len))
            }
            Err(ClaimError::Corrupt(c)) => Err(TrySendError::Failed(c.into())),
        }
    }

    fn loan_until(
        &self,
        len: usize,
        priority: u8,
        deadline: Option<Instant>,
    ) -> Result<Loan<'_>, SendError> {
        let (lane, slot) = self.lane_for(len, priority)?;
        let claim = self.claim_until(&lane, slot, len, deadline)?;
        Ok(Loan::new(self, lane, claim, len))
    }

    fn count_rejected(&self) {
        self.seg
            .shared()
            .stats
            .rejected_full
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The lane of `priority` for a payload of `len` bytes, and this process's sender slot.
    #[inline]
    fn lane_for(&self, len: usize, priority: u8) -> Result<(Lane<'_>, u8), SendError> {
        let max = self.seg.attributes().max_message;
        if len > max as usize {
            return Err(SendError::TooBig { len, max });
        }
        if priority as usize >= PRIORITIES {
            return Err(SendError::InvalidPriority(priority));
        }
        if self.seg.is_removed() {
            return Err(SendError::Removed);
        }
        let slot = recovery::sender_slot(&self.seg).map_err(SendError::NoSenderSlot)?;
        Ok((self.seg.lane(priority as usize), slot))
    }

    #[inline]
    fn send_until(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        let (lane, slot) = self.lane_for(payload.len(), self.priority)?;
        let claim = self.claim_until(&lane, slot, payload.len(), deadline)?;
        self.finish(&lane, claim, payload)
    }

    /// Claims `len` bytes, waiting for space until `deadline`.
    #[inline]
    fn claim_until(
        &self,
        lane: &Lane<'_>,
        slot: u8,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Claim, SendError> {
        match lane.try_claim(len, slot) {
            Ok(claim) => Ok(claim),
            Err(ClaimError::Full) => self.claim_slow(lane, slot, len, deadline),
            Err(ClaimError::Corrupt(c)) => Err(c.into()),
        }
    }

    #[cold]
    fn claim_slow(
        &self,
        lane: &Lane<'_>,
        slot: u8,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Claim, SendError> {
        let mut outcome = None;
        let attempt = || match lane.try_claim(len, slot) {
            Ok(claim) => Some(Ok(claim)),
            Err(ClaimError::Full) => None,
            Err(ClaimError::Corrupt(c)) => Some(Err(c.into())),
        };
        // Spin only when no other sender already waits on this lane: they are ahead in line,
        // and senders that spin while the owner drains take its CPU (with more sender
        // processes than CPUs, throughput collapsed).
        let spin_until = if lane.space_event().waiters() == 0 {
            Instant::now() + self.spin
        } else {
            Instant::now()
        };
        while Instant::now() < spin_until && deadline.is_none_or(|d| Instant::now() < d) {
            if let Some(o) = attempt() {
                outcome = Some(o);
                break;
            }
            std::thread::yield_now();
        }
        if outcome.is_none() {
            // Bounded sleeps: a removed queue never frees space, so look again now and then.
            loop {
                self.seg.check_size().map_err(SendError::Corrupt)?;
                let until = Instant::now() + IDLE_TICK;
                lane.space_event().wait_until(
                    &Futex,
                    Some(deadline.map_or(until, |d| d.min(until))),
                    || {
                        outcome = match self.seg.check_size() {
                            Err(e) => Some(Err(SendError::Corrupt(e))),
                            Ok(()) => attempt(),
                        };
                        outcome.is_some()
                    },
                );
                if outcome.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if self.seg.is_removed() {
                    return Err(SendError::Removed);
                }
            }
        }
        outcome.unwrap_or_else(|| {
            self.count_rejected();
            Err(SendError::Timeout)
        })
    }

    /// Copies `payload` into a claimed record and publishes it.
    #[inline]
    fn finish(&self, lane: &Lane<'_>, claim: Claim, payload: &[u8]) -> Result<(), SendError> {
        failpoint("send.claimed");
        lane.write_payload(&claim, payload);
        self.publish(lane, claim, payload.len())
    }

    /// Writes the header of a claimed record whose payload is in place, commits it and wakes
    /// the receiver if it sleeps.
    #[inline]
    fn publish(&self, lane: &Lane<'_>, claim: Claim, len: usize) -> Result<(), SendError> {
        let header = RecordHeader {
            len: len as u32,
            flags: 0,
            msg_type: self.msg_type,
            version: self.version,
            sender_pid: self.pid,
            sent_ns: monotonic_ns(),
        };
        lane.write_header(&claim, &header);
        failpoint("send.written");
        lane.commit(claim).map_err(|e| match e {
            CommitError::Abandoned => SendError::Abandoned,
            CommitError::Corrupt(c) => c.into(),
        })?;
        failpoint("send.committed");
        // `notify` ends with a SeqCst fence: a removal that this load does not see came after
        // the commit, and then removed the message along with the queue, as `rm` says.
        self.seg.shared().data_event.notify(&Futex);
        if self.seg.is_removed() {
            return Err(SendError::Removed);
        }
        Ok(())
    }
}

/// Bytes of a lane lent to a sender to write a message in place (see [`Sender::loan`]).
/// Derefs to the payload, `len` bytes, zero-filled or left over from earlier messages: write
/// all of it. [`Loan::commit`] publishes it; dropping it uncommitted cancels it.
pub struct Loan<'a> {
    sender: &'a Sender,
    lane: Lane<'a>,
    claim: Option<Claim>,
    payload: &'a mut [u8],
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.payload.len())
            .finish()
    }
}

impl<'a> Loan<'a> {
    fn new(sender: &'a Sender, lane: Lane<'a>, claim: Claim, len: usize) -> Loan<'a> {
        // SAFETY: the claim gives this sender the only access to the record's cells until it
        // commits or cancels, which consumes the claim held next to this borrow.
        let payload = unsafe { lane.claimed_payload(&claim, len) };
        Loan {
            sender,
            lane,
            claim: Some(claim),
            payload,
        }
    }

    /// Publishes the message.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`] after its space is claimed: [`SendError::Removed`],
    /// [`SendError::Abandoned`], [`SendError::Corrupt`].
    pub fn commit(mut self) -> Result<(), SendError> {
        let claim = self
            .claim
            .take()
            .expect("a loan holds its claim until it ends");
        let len = self.payload.len();
        self.sender.publish(&self.lane, claim, len)
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.payload
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.payload
    }
}

impl Drop for Loan<'_> {
    /// Cancels an uncommitted loan: the receiver steps over it.
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.lane.cancel(claim);
            self.sender.seg.shared().data_event.notify(&Futex);
        }
    }
}

/// What a message says about itself besides its payload: what the sender stamped on it, and
/// what delivery adds. The same for a copied [`Message`] and one read in place ([`InPlace`]);
/// both have an accessor per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// 0 (highest) to 3.
    pub priority: u8,
    /// The sender's message type.
    pub msg_type: i64,
    /// The sender's message version.
    pub version: u32,
    /// The sending process, in its own pid namespace.
    pub sender_pid: u32,
    /// When it was sent, `CLOCK_MONOTONIC` nanoseconds (see [`monotonic_ns`]).
    pub sent_ns: u64,
    /// This message was delivered before and not acknowledged: its receiver died, closed, or
    /// released it. It may have been processed already.
    pub redelivered: bool,
    /// Names this message within the queue's life: the same on every redelivery, never given
    /// to another message of the queue. Use it to drop duplicates of at-least-once delivery.
    /// The low two bits are the priority, the rest the message's position in its lane, which
    /// only grows (so ids stay small: exact in JSON readers that use doubles for a long
    /// time); a queue removed and created again starts over (its creation time tells the two
    /// apart).
    pub id: u64,
}

impl Metadata {
    /// The metadata of the record `r` of lane `lane`.
    fn of(lane: usize, r: &RecordRef, redelivered: bool) -> Metadata {
        Metadata {
            priority: lane as u8,
            msg_type: r.header.msg_type,
            version: r.header.version,
            sender_pid: r.header.sender_pid,
            sent_ns: r.header.sent_ns,
            redelivered,
            id: message_id(lane, r.pos),
        }
    }
}

/// The accessors of [`Metadata`]'s fields, for a type with a `meta` field.
macro_rules! metadata_accessors {
    () => {
        /// All of the message's metadata.
        pub fn meta(&self) -> &Metadata {
            &self.meta
        }
        /// 0 (highest) to 3.
        pub fn priority(&self) -> u8 {
            self.meta.priority
        }
        /// The sender's message type.
        pub fn msg_type(&self) -> i64 {
            self.meta.msg_type
        }
        /// The sender's message version.
        pub fn version(&self) -> u32 {
            self.meta.version
        }
        /// The sending process, in its own pid namespace.
        pub fn sender_pid(&self) -> u32 {
            self.meta.sender_pid
        }
        /// When it was sent, `CLOCK_MONOTONIC` nanoseconds (see [`monotonic_ns`]).
        pub fn sent_ns(&self) -> u64 {
            self.meta.sent_ns
        }
        /// Delivered before and not acknowledged: it may have been processed already.
        pub fn redelivered(&self) -> bool {
            self.meta.redelivered
        }
        /// The message's id within the queue: the same on every redelivery (see
        /// [`Metadata::id`]).
        pub fn id(&self) -> u64 {
            self.meta.id
        }
    };
}

/// A received message: its payload, what the sender stamped on it, and its acknowledgement.
///
/// A message stays in the queue until it is acknowledged: by [`Message::ack`], or by dropping
/// it. If the receiving process dies first, or the thread holding the message panics, the
/// message is not acknowledged: it is delivered again, flagged `redelivered` (to the next owner,
/// or to this receiver). [`Message::release`] gives it back for redelivery on purpose. Holding
/// messages holds their bytes in the lane: senders wait when it fills up.
pub struct Message {
    meta: Metadata,
    payload: Vec<u8>,
    ticket: Option<Ticket>,
}

/// What acknowledging a message needs: its receiver's state and its place in the lane.
struct Ticket {
    owned: Arc<Owned>,
    priority: usize,
    record: RecordRef,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("meta", &self.meta)
            .field("len", &self.payload.len())
            .field("acknowledged", &self.ticket.is_none())
            .finish()
    }
}

/// Messages compare by content and metadata, not by acknowledgement state.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        (self.meta, &self.payload) == (other.meta, &other.payload)
    }
}

impl Message {
    metadata_accessors!();

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The payload, owned; acknowledges the message.
    pub fn into_payload(mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Acknowledges the message: it leaves the queue and its bytes are freed.
    ///
    /// # Errors
    ///
    /// [`AckError::Closed`] if the receiver is gone: the message stays in the queue and the
    /// next owner delivers it again. [`AckError::Corrupt`] if its record was tampered with.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-ack-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().send(b"job")?;
    /// let mut rx = q.receiver()?;
    /// let m = rx.recv()?;
    /// // ... process it, then:
    /// m.ack()?;
    /// assert_eq!(q.status().received, 1);
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack(mut self) -> Result<(), AckError> {
        match self.ticket.take() {
            Some(t) => t.finish(true),
            None => Ok(()),
        }
    }

    /// Gives the message back unacknowledged: this receiver delivers it again, flagged
    /// redelivered, before newer messages.
    ///
    /// # Errors
    ///
    /// As [`Message::ack`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-release-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().send(b"job")?;
    /// let mut rx = q.receiver()?;
    /// let m = rx.recv()?;
    /// let id = m.id();
    /// m.release()?; // cannot process it now
    /// let again = rx.recv()?;
    /// assert_eq!((again.id(), again.redelivered()), (id, true));
    /// # drop(again); drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(mut self) -> Result<(), AckError> {
        match self.ticket.take() {
            Some(t) => t.finish(false),
            None => Ok(()),
        }
    }
}

impl Drop for Message {
    /// Acknowledges, unless the thread is panicking: then the message is released for
    /// redelivery. Errors are ignored here: an unacknowledged message is redelivered.
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let _ = t.finish(!std::thread::panicking());
        }
    }
}

impl Ticket {
    fn finish(self, ack: bool) -> Result<(), AckError> {
        self.owned.finish(self.priority, self.record, ack)
    }
}

impl Owned {
    /// Acknowledges a delivered record, or (`ack == false`) releases it for redelivery.
    fn finish(&self, p: usize, record: RecordRef, ack: bool) -> Result<(), AckError> {
        let mut local = self.lock();
        if local.closed || self.lost() {
            return Err(AckError::Closed);
        }
        let lane = self.seg.lane(p);
        if ack {
            let at_head = lane.ack(&record)?;
            failpoint("ack.marked");
            lane.advance_head_until(at_head.then_some(&record), local.cursor[p], &Futex)?;
            failpoint("ack.advanced");
            if self.seg.shared().data_event.waiters() != 0 {
                // Acknowledged on another thread while the receiving one sleeps: it will not
                // pay the senders the wake-up this head move may owe them, so pay it now.
                lane.wake_owed(&Futex);
            }
        } else {
            let queue = &mut local.released[p];
            let at = queue.partition_point(|r| r.pos < record.pos);
            queue.insert(at, record);
        }
        Ok(())
    }
}

/// The state a receiver shares with the messages it has handed out.
struct Owned {
    seg: Arc<Segment>,
    epoch: u64,
    /// The fork generation of the process that owns the queue: a forked child's copy of this
    /// state owns nothing (it does not hold the owner lock) and must not touch the lanes.
    generation: u64,
    local: Mutex<Local>,
}

/// Process-local receiving state, behind one mutex (uncontended unless messages are
/// acknowledged on other threads).
struct Local {
    /// Set when the receiver is dropped: from then on nothing may touch the lanes.
    closed: bool,
    /// Per lane, the next position to look at.
    cursor: [u64; PRIORITIES],
    /// Per lane, positions before this were delivered by an earlier owner (or an earlier
    /// receiver of this one) and are redelivered first.
    redeliver_end: [u64; PRIORITIES],
    /// Per lane, messages given back by [`Message::release`] (or a panic), by position.
    released: [VecDeque<RecordRef>; PRIORITIES],
    /// Per lane, an uncommitted claim at the cursor and since when it has been seen there.
    stuck: [Option<(u64, Instant)>; PRIORITIES],
}

impl Owned {
    fn lock(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another process has taken the queue since this receiver got it, or this is a
    /// forked child's copy of the receiver.
    fn lost(&self) -> bool {
        self.seg.shared().owner.epoch.load(Ordering::Relaxed) != self.epoch || self.forked_copy()
    }

    /// Whether this is a copy a `fork`ed child inherited.
    fn forked_copy(&self) -> bool {
        self.generation != crate::robust::fork_generation()
    }
}

/// The owner of a queue: the one process (and thread) that receives. Dropping it releases
/// ownership; messages it delivered and that are not yet acknowledged stay in the queue and are
/// redelivered to the next owner.
pub struct Receiver {
    owned: Arc<Owned>,
    guard: Option<OwnerGuard>,
    ownership: Ownership,
    spin: Duration,
    discarded: u64,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("queue", &self.owned.seg.names().0)
            .field("epoch", &self.ownership.epoch)
            .field("took_over", &self.ownership.took_over)
            .finish()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Close first, so that no message handle touches the lanes once the lock is released.
        let mut local = self.owned.lock();
        local.closed = true;
        if !self.owned.lost() && self.owned.seg.check_size().is_ok() {
            // Senders left waiting by this owner's last head moves are not kept waiting for
            // the next one. (Not on a segment a peer has shrunk: that would be a SIGBUS.)
            for p in 0..PRIORITIES {
                self.owned.seg.lane(p).wake_owed(&Futex);
            }
        }
        drop(local);
        drop(self.guard.take());
    }
}

impl Receiver {
    /// Waits to own `queue`, as a standby; see [`Queue::standby`].
    ///
    /// # Errors
    ///
    /// As [`Queue::standby`].
    pub fn standby(queue: &Queue, timeout: Option<Duration>) -> Result<Receiver, OwnError> {
        queue.standby(timeout)
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Removed`], [`RecvError::OwnershipLost`], [`RecvError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-recv-order-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// q.sender().send(b"low")?; // priority 3, the default
    /// q.sender().with_priority(0)?.send(b"high")?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.payload(), b"high"); // highest priority first
    /// assert_eq!(rx.recv()?.payload(), b"low"); // (each acknowledged as it is dropped)
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        self.recv_until(None)
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], and as [`Receiver::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-recv-timeout-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut rx = q.receiver()?;
    /// assert!(matches!(rx.recv_timeout(Duration::from_millis(5)), Err(RecvError::Timeout)));
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Receives a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], and as [`Receiver::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// let domain = Domain::new(&format!("doc-try-recv-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut rx = q.receiver()?;
    /// assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    /// q.sender().send(b"now")?;
    /// assert_eq!(rx.try_recv()?.payload(), b"now");
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        self.take()?.ok_or(RecvError::Empty)
    }

    /// Sets how long a blocking receive polls before sleeping (default 50 µs; zero sleeps at once).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// The ownership epoch this receiver holds.
    pub fn epoch(&self) -> u64 {
        self.ownership.epoch
    }

    /// Whether this receiver took the queue over from an owner that had died.
    pub fn took_over(&self) -> bool {
        self.ownership.took_over
    }

    /// How many waiting messages [`ReceiverOptions::empty`] discarded.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Acknowledges every message in the queue without delivering it; returns how many.
    fn discard_all(&mut self) -> Result<u64, RecvError> {
        let mut n = 0;
        while let Some(m) = self.take()? {
            match m.ack() {
                Ok(()) => {}
                Err(AckError::Corrupt(d)) => return Err(RecvError::Corrupt(d)),
                // Ownership lost meanwhile: what is left stays for the next owner, and this
                // receiver reports the loss on its next call.
                Err(AckError::Closed) => break,
            }
            n += 1;
        }
        Ok(n)
    }

    /// Receives the next message in place: its payload is read straight from shared memory,
    /// no copy. The message borrows this receiver, so it cannot outlive it, and this receiver
    /// cannot receive again until the message is acknowledged (by [`InPlace::ack`], or by
    /// dropping it) or released.
    ///
    /// ```compile_fail
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new("doc-inplace").unwrap();
    /// # let q = Queue::create(&domain, "q", &Attributes::default()).unwrap();
    /// let message = {
    ///     let mut rx = q.receiver().unwrap();
    ///     rx.recv_in_place().unwrap()
    /// }; // error: `rx` dropped here while still borrowed
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-in-place-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "frames", &Attributes::default())?;
    /// q.sender().send(&[7u8; 1000])?;
    /// let mut rx = q.receiver()?;
    /// let frame = rx.recv_in_place()?; // no copy: the payload is in shared memory
    /// let sum: u32 = frame.payload().iter().map(|&b| b as u32).sum();
    /// assert_eq!((sum, frame.priority(), frame.redelivered()), (7000, 3, false));
    /// frame.ack()?; // its cells are free again
    /// # drop(rx); Queue::remove(&domain, "frames")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        let found = self.next_record(None)?;
        Ok(self.deliver_in_place(found))
    }

    /// As [`Receiver::recv_in_place`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    pub fn recv_in_place_timeout(&mut self, timeout: Duration) -> Result<InPlace<'_>, RecvError> {
        let found = self.next_record(Some(Instant::now() + timeout))?;
        Ok(self.deliver_in_place(found))
    }

    /// As [`Receiver::recv_in_place`] if a message is waiting.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`].
    pub fn try_recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        let found = self.take_record()?.ok_or(RecvError::Empty)?;
        Ok(self.deliver_in_place(found))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Message, RecvError> {
        let found = self.next_record(deadline)?;
        Ok(self.deliver(found))
    }

    fn take(&mut self) -> Result<Option<Message>, RecvError> {
        Ok(self.take_record()?.map(|found| self.deliver(found)))
    }

    /// Waits for the next record: polls for the spin window, then sleeps on the receiver event.
    fn next_record(&mut self, deadline: Option<Instant>) -> Result<Found, RecvError> {
        if let Some(f) = self.take_record()? {
            return Ok(f);
        }
        let spin_until = Instant::now() + self.spin;
        loop {
            let now = Instant::now();
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let Some(f) = self.take_record()? {
                return Ok(f);
            }
            crate::sync::spin_hint();
        }
        let seg = self.owned.seg.clone();
        loop {
            seg.check_size().map_err(RecvError::Corrupt)?;
            // Sleep in bounded steps: a claim whose sender may have died is looked at again
            // soon, and a wake-up lost with a dead sender costs at most one tick.
            let stuck = self.owned.lock().stuck.iter().any(Option::is_some);
            let tick = Instant::now() + if stuck { STUCK_CHECK } else { IDLE_TICK };
            let until = deadline.map_or(tick, |d| d.min(tick));
            let mut outcome = None;
            seg.shared().data_event.wait_until(&Futex, Some(until), || {
                // Woken (or about to sleep): the segment may have been shrunk meanwhile; look
                // before touching the lanes.
                outcome = match seg.check_size() {
                    Err(e) => Some(Err(RecvError::Corrupt(e))),
                    Ok(()) => self.take_record().transpose(),
                };
                outcome.is_some()
            });
            if let Some(o) = outcome {
                return o;
            }
            if let Some(f) = self.take_record()? {
                return Ok(f);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Takes the next record: first those to deliver again (released here, or left
    /// unacknowledged by an earlier owner), then the highest priority first.
    fn take_record(&mut self) -> Result<Option<Found>, RecvError> {
        let owned = &*self.owned;
        let seg = &owned.seg;
        if seg.is_removed() {
            return Err(RecvError::Removed);
        }
        if owned.forked_copy() {
            return Err(RecvError::ForkedCopy);
        }
        if owned.lost() {
            return Err(RecvError::OwnershipLost {
                held: owned.epoch,
                now: seg.shared().owner.epoch.load(Ordering::Relaxed),
            });
        }
        let max = seg.attributes().max_message;
        let mut local = owned.lock();
        let local = &mut *local;
        for p in 0..PRIORITIES {
            if let Some(r) = local.released[p].pop_front() {
                return Ok(Some(Found {
                    lane: p,
                    record: r,
                    redelivered: true,
                }));
            }
        }
        for p in 0..PRIORITIES {
            let lane = seg.lane(p);
            while local.cursor[p] < local.redeliver_end[p] {
                match lane.at(local.cursor[p], max)? {
                    Slot::Skip { cells } => local.cursor[p] += cells,
                    Slot::Record(r) => {
                        local.cursor[p] += r.cells;
                        return Ok(Some(Found {
                            lane: p,
                            record: r,
                            redelivered: true,
                        }));
                    }
                    // Recovery left `read` on a record boundary; anything else ends the range.
                    Slot::End | Slot::InFlight { .. } => local.redeliver_end[p] = local.cursor[p],
                }
            }
        }
        for p in 0..PRIORITIES {
            let lane = seg.lane(p);
            // The head may have moved past the cursor over padding or cancelled claims that the
            // cursor had not reached (they need no delivery): follow it, since their stamps may
            // already belong to the next lap.
            local.cursor[p] = local.cursor[p].max(lane.head());
            let mut skipped = false;
            loop {
                let at = local.cursor[p];
                match lane.at(at, max)? {
                    Slot::End => {
                        local.stuck[p] = None;
                        break;
                    }
                    Slot::Skip { cells } => {
                        local.cursor[p] += cells;
                        skipped = true;
                    }
                    Slot::InFlight { sender } => {
                        if !Self::check_stuck(seg, local, p, at, sender) {
                            break;
                        }
                    }
                    Slot::Record(r) => {
                        local.stuck[p] = None;
                        failpoint("recv.found");
                        local.cursor[p] += r.cells;
                        lane.set_read_cursor(local.cursor[p]);
                        failpoint("recv.marked");
                        if skipped {
                            lane.advance_head(&Futex)?;
                        }
                        return Ok(Some(Found {
                            lane: p,
                            record: r,
                            redelivered: false,
                        }));
                    }
                }
            }
            if skipped {
                lane.set_read_cursor(local.cursor[p]);
                lane.advance_head(&Futex)?;
            }
        }
        // Nothing to receive: wake the senders that head moves left waiting for space.
        for p in 0..PRIORITIES {
            seg.lane(p).wake_owed(&Futex);
        }
        Ok(None)
    }

    /// An uncommitted claim sits at the cursor of lane `p`. If it has sat there a while, check
    /// its sender: a dead sender's claims are abandoned. Returns whether to look again now.
    fn check_stuck(seg: &Segment, local: &mut Local, p: usize, at: u64, sender: u8) -> bool {
        match local.stuck[p] {
            Some((pos, since)) if pos == at => {
                if since.elapsed() < STUCK_CHECK {
                    return false;
                }
                local.stuck[p] = Some((at, Instant::now()));
                recovery::reclaim_if_dead(seg, sender).is_some_and(|n| n > 0)
            }
            _ => {
                local.stuck[p] = Some((at, Instant::now()));
                false
            }
        }
    }

    /// Counts a redelivery in the queue's counter.
    fn count_delivery(&self, redelivered: bool) {
        if redelivered {
            self.owned
                .seg
                .shared()
                .stats
                .redelivered
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver_in_place(&mut self, found: Found) -> InPlace<'_> {
        let Found {
            lane,
            record,
            redelivered,
        } = found;
        self.count_delivery(redelivered);
        let owned = &*self.owned;
        // SAFETY: the record stays unacknowledged, so its cells stay untouched by senders,
        // for as long as the `InPlace` (which acknowledges or releases it when it ends) lives.
        let payload = unsafe { owned.seg.lane(lane).record_payload(&record) };
        InPlace {
            owned,
            lane,
            meta: Metadata::of(lane, &record, redelivered),
            record,
            payload,
            done: false,
        }
    }

    fn deliver(&self, found: Found) -> Message {
        let Found {
            lane,
            record,
            redelivered,
        } = found;
        let mut payload = Vec::with_capacity(record.header.len as usize);
        self.owned
            .seg
            .lane(lane)
            .copy_payload(&record, &mut payload);
        self.count_delivery(redelivered);
        Message {
            meta: Metadata::of(lane, &record, redelivered),
            payload,
            ticket: Some(Ticket {
                owned: self.owned.clone(),
                priority: lane,
                record,
            }),
        }
    }
}

/// A record found for delivery.
struct Found {
    /// Its lane (priority).
    lane: usize,
    /// Where it is.
    record: RecordRef,
    /// It was delivered before and not acknowledged.
    redelivered: bool,
}

/// A message read in place from shared memory (see [`Receiver::recv_in_place`]). It borrows its
/// receiver; acknowledging it ([`InPlace::ack`], or dropping it unless the thread is panicking)
/// frees its bytes.
pub struct InPlace<'a> {
    owned: &'a Owned,
    /// Its lane.
    lane: usize,
    meta: Metadata,
    record: RecordRef,
    payload: &'a [u8],
    done: bool,
}

impl std::fmt::Debug for InPlace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlace")
            .field("meta", &self.meta)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl InPlace<'_> {
    metadata_accessors!();

    /// The payload, in shared memory.
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// Acknowledges the message: it leaves the queue and its bytes are freed.
    ///
    /// # Errors
    ///
    /// As [`Message::ack`].
    pub fn ack(mut self) -> Result<(), AckError> {
        self.done = true;
        self.owned.finish(self.lane, self.record, true)
    }

    /// Gives the message back for redelivery (see [`Message::release`]).
    ///
    /// # Errors
    ///
    /// As [`Message::ack`].
    pub fn release(mut self) -> Result<(), AckError> {
        self.done = true;
        self.owned.finish(self.lane, self.record, false)
    }
}

impl Drop for InPlace<'_> {
    /// Acknowledges, unless the thread is panicking: then the message is released.
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .owned
                .finish(self.lane, self.record, !std::thread::panicking());
        }
    }
}
