//! What a queue looks like from outside: [`Status`], [`Queue::list`], [`Queue::gc`] and
//! retention.

use super::Queue;
use crate::error::OpenError;
use crate::name::Domain;
use crate::owner;
use crate::recovery::{self, Attachment};
use crate::segment::{Attributes, Segment, PRIORITIES};
use crate::sys::clock::monotonic_ns;
use crate::sys::shm;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Queue {
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
        Ok(list_entries(shm::list_paths(Some(domain))?))
    }

    /// The queues of every domain (as `ipcs -q` lists every message queue), as [`Queue::list`].
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-list-all-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let all = Queue::list_all_domains()?;
    /// assert!(all.iter().any(|e| e.status.as_ref().is_ok_and(|s| s.name == "q")));
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn list_all_domains() -> Result<Vec<ListEntry>, OpenError> {
        Ok(list_entries(shm::list_paths(None)?))
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
        Ok(Queue {
            seg: Arc::new(Attachment::new(seg)),
        }
        .status())
    }

    /// Temporary files of the domain left by processes that died while creating a queue, with
    /// their pids: what `gc` would remove.
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-stale-files-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// // Files left by processes that died half way through creating a queue (none here).
    /// for (file, pid) in Queue::stale_files(&domain)? {
    ///     println!("{} (pid {pid})", file.display());
    /// }
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stale_files(domain: &Domain) -> Result<Vec<(PathBuf, u32)>, OpenError> {
        shm::dead_temporaries(domain)
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
        for file in shm::list_paths(Some(domain))? {
            if let Ok(seg) = Segment::open_path(&file) {
                if expire_if_due(&seg) {
                    removed.push(file);
                }
            }
        }
        removed.extend(shm::remove_dead_temporaries(domain)?);
        Ok(removed)
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
            let census = lane.census();
            let (r, a) = lane.counters();
            abandoned += a + census.abandoned;
            sent += r + a + census.waiting + census.delivered + census.in_flight + census.abandoned;
            received += r;
            if let Some(t) = census.oldest_waiting_sent_ns {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
                next_in_line = next_in_line.or(Some(t));
            }
            let (threshold_reached, threshold_available, above_threshold) = seg.thresholds(p);
            *l = LaneStatus {
                capacity: attrs.capacity[p],
                used: census.used,
                messages: census.waiting + census.delivered,
                unacknowledged: census.delivered,
                in_flight: census.in_flight,
                threshold_reached,
                threshold_available,
                above_threshold,
                waiting_senders: lane.space_event().waiters(),
            };
        }
        let shared = seg.shared();
        let (owner_pid, dead_owner_pid) = owner::owner_pids(seg);
        let now = monotonic_ns();
        Status {
            name: name.to_string(),
            domain: domain.to_string(),
            attributes: seg.attributes_in_force(),
            lanes,
            sent,
            received,
            abandoned,
            redelivered: shared.stats.redelivered.load(Ordering::Relaxed),
            rejected_full: shared.stats.rejected_full.load(Ordering::Relaxed),
            reply_boxes_in_use: (0..seg.reply_box_count())
                .filter_map(|i| seg.reply_box(i))
                .filter(|b| {
                    baton_ring::reply::state::state(b.state_word())
                        != baton_ring::reply::state::FREE
                })
                .count() as u32,
            replies_dropped: shared.stats.replies_dropped.load(Ordering::Relaxed),
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
            attached: {
                // Messages in flight per slot: taken by its consumers, not yet acknowledged.
                let mut in_flight = [0u64; crate::segment::SENDER_SLOTS];
                if seg.attributes().shared {
                    for p in 0..PRIORITIES {
                        seg.lane(p).holders(|slot, taken| {
                            if taken {
                                in_flight[slot as usize] += 1;
                            }
                        });
                    }
                }
                recovery::attached(seg)
                    .into_iter()
                    .map(|(slot, pid, standbys)| Attached {
                        pid,
                        standbys,
                        consumers: shared.consumers[slot as usize].load(Ordering::Relaxed),
                        in_flight: in_flight[slot as usize],
                    })
                    .collect()
            },
            expired: retention_ran_out(seg),
            created_unix_ns: seg.created_unix_ns(),
            size,
            file_size,
            files: vec![seg.path().to_path_buf()],
        }
    }
}

pub(super) fn list_entries(files: Vec<PathBuf>) -> Vec<ListEntry> {
    files
        .into_iter()
        .map(|file| {
            let status = Segment::open_path(&file).map(|seg| {
                Queue {
                    seg: Arc::new(Attachment::new(seg)),
                }
                .status()
            });
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

/// Per-priority usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LaneStatus {
    /// The lane's byte budget.
    pub capacity: u64,
    /// Bytes in use (records, their headers and padding, in 64-byte cells).
    pub used: u64,
    /// Messages in the queue: waiting, plus delivered and not yet acknowledged.
    pub messages: u64,
    /// Of those, delivered and not yet acknowledged.
    pub unacknowledged: u64,
    /// Claims not yet committed (a sender is writing, or died writing): a message, or a run of
    /// them from one `Sender::send_batch`.
    pub in_flight: u64,
    /// Capacity thresholds (bytes; `threshold_reached` 0: none), and whether the lane is above
    /// them (reached, not yet back to available).
    pub threshold_reached: u64,
    /// See `threshold_reached`.
    pub threshold_available: u64,
    /// See `threshold_reached`.
    pub above_threshold: bool,
    /// Senders announced as waiting for space. A sender that died while waiting stays counted
    /// (nothing can tell its count from a live one's): it costs the owner a needless wake-up
    /// call now and then, and makes other senders sleep at once instead of spinning first.
    pub waiting_senders: u32,
}

/// A snapshot of a queue (SA-Forum `StatusGet` plus counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Status {
    /// Queue name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Attributes fixed at creation.
    pub attributes: Attributes,
    /// Per priority, 0 first.
    pub lanes: [LaneStatus; PRIORITIES],
    /// Messages sent since creation (claimed: received, abandoned, or still in the queue); an
    /// abandoned run of messages (`Sender::send_batch`) counts once, as in `abandoned`.
    pub sent: u64,
    /// Messages received and acknowledged since creation.
    pub received: u64,
    /// Claims abandoned since creation: their senders died before committing them. A claim is
    /// one message, or one run of messages from a `Sender::send_batch` (its count is not kept).
    pub abandoned: u64,
    /// Deliveries of messages delivered before and not acknowledged (after an owner died or
    /// closed, or released a message).
    pub redelivered: u64,
    /// Sends refused because the lane was full.
    pub rejected_full: u64,
    /// Requests waiting for their replies now: reply boxes held (of
    /// `attributes.reply_boxes`).
    pub reply_boxes_in_use: u32,
    /// Replies that reached no requester since creation: late (the requester had timed out),
    /// to a requester that died, or a second reply to one request.
    pub replies_dropped: u64,
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

/// A live process attached to a queue (see [`Status::attached`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Attached {
    /// Its pid, in its own pid namespace (which may not be the reader's).
    pub pid: u32,
    /// How many of its threads wait to own the queue (0: it only sends).
    pub standbys: u32,
    /// Shared queues: how many consumers it has open.
    pub consumers: u32,
    /// Shared queues: messages its consumers took and have not acknowledged yet.
    pub in_flight: u64,
}

impl Status {
    /// Whether the queue has an owner that has let the message it would take next wait at
    /// least `after`: a hung owner (e.g. stopped), or one too busy to receive. Such an owner is
    /// not replaced automatically.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-owner-stalled-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use std::time::Duration;
    /// q.sender().send(b"waiting")?;
    /// let rx = q.receiver()?; // owns the queue, but does not receive
    /// std::thread::sleep(Duration::from_millis(20));
    /// assert!(q.status().owner_stalled(Duration::from_millis(10)));
    /// assert!(!q.status().owner_stalled(Duration::from_secs(3600)));
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owner_stalled(&self, after: Duration) -> bool {
        // A duration past what u64 nanoseconds hold (584 years) is never reached: not cut
        // down to its low bits, which could make any owner look stalled.
        let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        self.owner_stalled_ns.is_some_and(|ns| ns >= after)
    }
}

/// Whether `seg`'s retention has run out, found without changing anything (see
/// [`expire_if_due`], which removes it).
pub(super) fn retention_ran_out(seg: &Segment) -> bool {
    let Some(retention) = seg.retention() else {
        return false;
    };
    let Some(since) = owner::unowned_since_unchanged(seg) else {
        return false; // owned, or its dead owner is not recovered yet
    };
    retention_due(seg, since, retention)
}

/// Whether a queue unowned since `since` (0: never owned) is past `retention`.
pub(super) fn retention_due(seg: &Segment, since: u64, retention: Duration) -> bool {
    // 0: never owned yet; the retention clock starts when a first owner goes.
    since != 0
        && monotonic_ns().saturating_sub(since) >= retention.as_nanos() as u64
        && !(retention.is_zero() && recovery::standby_waiting(seg))
}

/// Removes `seg`'s queue if its retention has run out; returns whether it is gone.
pub(super) fn expire_if_due(seg: &Segment) -> bool {
    let Some(retention) = seg.retention() else {
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
