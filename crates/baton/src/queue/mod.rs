//! Named queues: [`Queue`], [`Sender`], [`Receiver`], [`Message`], [`Status`].
//!
//! A queue is a shared-memory segment with four priority lanes, a receiver event and an owner
//! lock. Any number of [`Sender`]s in any number of processes send; one [`Receiver`] at a time
//! owns the queue and receives, highest priority first and, within a priority, in the order the
//! sends were claimed (so FIFO per sender).

mod browse;
mod cancel;
mod consumer;
mod events;
mod group;
mod message;
pub(crate) mod process_group;
mod ready;
mod receiver;
mod remote;
mod request;
mod sender;
mod spin;
mod status;

pub use browse::Peeked;
pub use cancel::{CancelPoint, Canceller};
pub use consumer::{Consumer, TypeFilter};
pub use events::{Event, EventKind, Events, Followed};
pub use group::{
    Group, GroupChange, GroupMember, GroupPolicy, GroupSender, GroupSent, GroupTracker,
    MemberChange, TrackedMember, OTHER_NODE, THIS_NODE,
};
pub use message::{InPlace, Message, Metadata};
pub use process_group::{
    LocalChange, LocalDelivery, LocalGroupConfig, LocalMember, ProcessGroupError,
};
pub use ready::SpaceFd;
pub use receiver::{Receiver, ReceiverOptions};
pub use remote::{check_node_name, outbox, RemoteAddress, DEFAULT_OUTBOX, MAX_NODE_NAME};
pub use request::{Delivered, Delivery, PendingRequest, Reply, ReplyTo};
pub use sender::{Loan, Sender};
pub use status::{Attached, LaneStatus, ListEntry, Status};

use crate::error::{AttributeError, OpenError, OwnError};
use crate::name::Domain;
use crate::owner::{self, Wait};
use crate::recovery::{self, Attachment};
use crate::segment::events::kind;
use crate::segment::{Attributes, Segment, PRIORITIES};
use crate::sys::liveness::fork_generation;
use receiver::{Local, Owned};
use status::expire_if_due;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a blocked receiver or sender polls before it sleeps on the futex, by default.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// A consumer with nothing to take checks at most this often whether the processes that hold
/// records are gone (receivers and consumers that sleep are woken by a death instead: see
/// `recovery::DeathWatch`).
const STUCK_CHECK: Duration = Duration::from_millis(2);
/// A sender waiting for space looks again at least this often: a removed queue frees no
/// space, and in a shared queue whose sweeper died nothing is freed until someone sweeps.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// A handle on a named queue. Cheap to clone; the mapping lives as long as any handle.
#[derive(Debug, Clone)]
pub struct Queue {
    seg: Arc<Attachment>,
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
        let seg = Segment::create(domain, name, attrs)?;
        if seg.made_here {
            seg.emit(kind::QUEUE_CREATED, 0, 0);
        }
        Ok(Queue {
            seg: Arc::new(Attachment::new(seg)),
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
        Ok(Queue {
            seg: Arc::new(Attachment::new(seg)),
        })
    }

    /// Opens an existing queue whose file mode differs from the one it was created with (its
    /// owner, or root, changed it; for instance to let a group in). [`Queue::open`] refuses
    /// such a queue; this is the explicit opt-in. Every other check still applies.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`], without the mode check.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-accepting-mode-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use std::os::unix::fs::PermissionsExt;
    /// let file = std::path::Path::new(baton::SHM_DIR).join(format!("baton.{domain}~q"));
    /// std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o660))?; // let a group in
    /// assert!(Queue::open(&domain, "q").is_err()); // changed since creation: refused
    /// let q2 = Queue::open_accepting_mode(&domain, "q")?; // accepted on purpose
    /// # drop(q2);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_accepting_mode(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
        Ok(Queue {
            seg: Arc::new(Attachment::new(Segment::open_checked(domain, name, true)?)),
        })
    }

    /// Removes a queue, with its messages. The name is free at once: a queue of the same name
    /// can be created right after. Processes that still have the old queue open get
    /// [`crate::SendError::Removed`] / [`crate::RecvError::Removed`] on their next send or receive.
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
        crate::segment::remove(domain, name)
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
            generation: fork_generation(),
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
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-was-created-{}", std::process::id()))?;
    /// let first = Queue::create(&domain, "q", &Attributes::default())?;
    /// let second = Queue::create(&domain, "q", &Attributes::default())?; // same attributes: found
    /// assert!(first.was_created() && !second.was_created());
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn was_created(&self) -> bool {
        self.seg.made_here
    }

    /// Sets the capacity thresholds of priority `priority` (SA-Forum's
    /// `saMsgQueueCapacityThresholdSet`): when the bytes in use rise to `reached` or above, and
    /// then fall back to `available` or below, each crossing is told once, as an event
    /// ([`EventKind::ThresholdReached`], [`EventKind::ThresholdAvailable`]; see [`Events`]).
    /// Between the two levels nothing is told, so a queue hovering at one of them raises no
    /// storm. `reached` 0 removes them. They live in the queue (every process sees them) and
    /// say nothing about sending: a lane is full only at its capacity.
    ///
    /// # Errors
    ///
    /// [`AttributeError::Threshold`] unless `available < reached <= capacity` (or `reached`
    /// is 0), or for a priority over 3.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, EventKind, Events, Followed, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-thresholds-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes::default())?; // 64 KiB a priority
    /// q.set_capacity_thresholds(3, 32 * 1024, 16 * 1024)?;
    /// let mut events = Events::follow(&domain)?;
    /// for _ in 0..400 {
    ///     q.sender().send(&[0u8; 64])?; // 128 bytes each, with the header: 400 go above 32 KiB
    /// }
    /// match events.next_timeout(Duration::from_secs(1))? {
    ///     Some(Followed::Event(e)) => {
    ///         assert!(matches!(e.kind, EventKind::ThresholdReached { priority: 3, .. }))
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_capacity_thresholds(
        &self,
        priority: u8,
        reached: u64,
        available: u64,
    ) -> Result<(), AttributeError> {
        let p = priority as usize;
        let capacity = self.attributes().capacity.get(p).copied().unwrap_or(0);
        if p >= PRIORITIES || (reached != 0 && !(available < reached && reached <= capacity)) {
            return Err(AttributeError::Threshold {
                priority,
                reached,
                available,
                capacity,
            });
        }
        self.seg.set_thresholds(p, reached, available);
        Ok(())
    }

    /// Changes the queue's retention (SA-Forum's `saMsgQueueRetentionTimeSet`): `None` keeps
    /// it until removed; `Some(d)` deletes it, with its messages, once it has had no owner for
    /// `d`, counted from when its last owner went, even if that was before this call. Every
    /// process sees the new retention at once; [`Queue::attributes`] reports it, and
    /// `create`/`open` with attributes compare against it.
    ///
    /// # Errors
    ///
    /// [`AttributeError::RetentionOnShared`] for a shared queue (it has no owner), and
    /// [`AttributeError::Retention`] for a retention over 584 years.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// use std::time::Duration;
    /// # let domain = Domain::new(&format!("doc-retention-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes::default())?; // kept until removed
    /// q.set_retention(Some(Duration::from_secs(30)))?;
    /// assert_eq!(q.attributes().retention, Some(Duration::from_secs(30)));
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_retention(&self, retention: Option<Duration>) -> Result<(), AttributeError> {
        if self.attributes().shared {
            return Err(AttributeError::RetentionOnShared);
        }
        let asked = Attributes {
            retention,
            ..self.attributes()
        };
        match asked.normalized() {
            Ok(_) => {
                self.seg.set_retention(retention);
                Ok(())
            }
            Err(OpenError::InvalidAttributes(e)) => Err(e),
            Err(_) => Err(AttributeError::Retention),
        }
    }

    /// The capacity thresholds of priority `priority`, `(reached, available)` (`(0, _)`: none;
    /// SA-Forum's `saMsgQueueCapacityThresholdGet`), or `None` for a priority over 3.
    pub fn capacity_thresholds(&self, priority: u8) -> Option<(u64, u64)> {
        let p = priority as usize;
        (p < PRIORITIES).then(|| {
            let (r, a, _) = self.seg.thresholds(p);
            (r, a)
        })
    }

    /// The queue's attributes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-attributes-{}", std::process::id()))?;
    /// let asked = Attributes { max_message: 1000, ..Attributes::default() };
    /// let q = Queue::create(&domain, "q", &asked)?;
    /// assert_eq!(q.attributes().max_message, 1000);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attributes(&self) -> Attributes {
        self.seg.attributes_in_force()
    }

    /// The queue's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-name-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// assert_eq!(q.name(), "q");
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        self.seg.names().0
    }

    /// Whether this queue has been removed (its name may now be another queue's): a handle
    /// kept for long is looked up again then.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-is-removed-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// assert!(!q.is_removed());
    /// Queue::remove(&domain, "q")?;
    /// assert!(q.is_removed());
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn is_removed(&self) -> bool {
        self.seg.is_removed()
    }

    /// A sender at the lowest priority (3), message type 0, version 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-sender-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let tx = q.sender(); // cheap; Clone, Send and Sync
    /// std::thread::scope(|s| {
    ///     for t in 0..4u8 {
    ///         let tx = tx.clone();
    ///         s.spawn(move || tx.send(&[t]).unwrap());
    ///     }
    /// });
    /// assert_eq!(q.status().lanes[3].messages, 4);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sender(&self) -> Sender {
        Sender {
            seg: self.seg.clone(),
            priority: 3,
            msg_type: 0,
            version: 0,
            pid: std::process::id(),
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
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-receiver-with-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use baton::ReceiverOptions;
    /// q.sender().send(b"stale")?;
    /// // Take the queue and discard what waits in it (SA-Forum's EMPTY open flag).
    /// let rx = q.receiver_with(ReceiverOptions { empty: true, ..Default::default() })?;
    /// assert_eq!(rx.discarded(), 1);
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receiver_with(&self, options: ReceiverOptions) -> Result<Receiver, OwnError> {
        let removed = || OwnError::Removed {
            name: self.name().to_string(),
        };
        if self.seg.is_removed() {
            return Err(removed());
        }
        if self.seg.attributes().shared {
            return Err(OwnError::Shared {
                name: self.name().to_string(),
            });
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
        let guard = Arc::new(guard);
        let mut local = Local {
            guard: Some(guard.clone()),
            cursor: [0; PRIORITIES],
            redeliver_end: [0; PRIORITIES],
            released: Default::default(),
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
                generation: fork_generation(),
                local: Mutex::new(local),
            }),
            guard,
            ownership,
            spin: DEFAULT_SPIN,
            discarded: 0,
            cancels: Arc::default(),
            batch: Vec::new(),
            ready: None,
        };
        if options.empty {
            rx.discarded = rx.discard_all().map_err(|source| OwnError::Discard {
                name: self.name().to_string(),
                source,
            })?;
        }
        self.seg.emit(
            kind::OWNER_TOOK,
            rx.ownership.epoch,
            u64::from(rx.ownership.took_over),
        );
        Ok(rx)
    }
}

/// Counts this process as a standby until dropped (see [`Queue::standby_mark`]).
#[derive(Debug)]
pub struct StandbyMark {
    seg: Arc<Attachment>,
    /// The fork generation that made it: a forked child's copy ends nothing.
    generation: u64,
}

impl Drop for StandbyMark {
    fn drop(&mut self) {
        if self.generation == fork_generation() {
            recovery::standby_end(&self.seg, recovery::StandbyKind::Mark);
        }
    }
}

/// The id of the message at `position` of lane `priority`: the priority in the low two bits,
/// the position above them. Positions only grow (64-bit, counted in 64-byte cells: 2^62
/// of them take millennia at memory speed), so no two messages of one queue share an id.
pub(crate) fn message_id(priority: usize, position: u64) -> u64 {
    (position << 2) | priority as u64
}
