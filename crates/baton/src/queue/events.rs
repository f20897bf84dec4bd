//! Following what happens to a domain's queues: [`Events`] (and `baton watch`).

use crate::error::OpenError;
use crate::name::Domain;
use crate::segment::events::{kind, EventsFile};
use crate::sys::futex::Futex;
use baton_ring::events::Read;
use std::time::{Duration, Instant};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The queue was created.
    QueueCreated,
    /// The queue was removed: by `remove` (`expired` false) or because its retention ran out.
    QueueRemoved {
        /// Removed for its retention, not by a call.
        expired: bool,
    },
    /// A process took ownership (a `Receiver`): the queue's `epoch`; `took_over` if from an
    /// owner that had died (a takeover).
    OwnerTook {
        /// The ownership epoch now.
        epoch: u64,
        /// From a dead owner.
        took_over: bool,
    },
    /// The owner let the queue go (dropped its `Receiver`). An owner that dies says nothing:
    /// the next `OwnerTook` has `took_over`.
    OwnerLeft {
        /// The epoch it held.
        epoch: u64,
    },
    /// A consumer of a shared queue was opened; `open`: the process's consumers now.
    ConsumerJoined {
        /// The writing process's open consumers of the queue, after.
        open: u64,
    },
    /// A consumer was closed (`died`: its process was found dead, and what it held given back).
    ConsumerLeft {
        /// The writing process's open consumers of the queue, after (0 for a dead process).
        open: u64,
        /// Its process died.
        died: bool,
    },
    /// The bytes in use in priority `priority` rose to its "reached" threshold or above
    /// ([`crate::Queue::set_capacity_thresholds`]).
    ThresholdReached {
        /// The priority.
        priority: u8,
        /// Bytes in use when it was seen.
        used: u64,
    },
    /// The bytes in use in priority `priority` fell back to its "available" threshold or
    /// below, after it was reached.
    ThresholdAvailable {
        /// The priority.
        priority: u8,
        /// Bytes in use when it was seen.
        used: u64,
    },
    /// A queue group was created ([`crate::Group::create`]); the event's `group` names it.
    GroupCreated {
        /// Its policy.
        policy: super::group::GroupPolicy,
    },
    /// A queue group was removed.
    GroupRemoved,
    /// A queue (the event's `queue`) was added to a group (its `group`).
    MemberAdded,
    /// A queue (the event's `queue`) was removed from a group (its `group`).
    MemberRemoved,
    /// An event of a kind this version does not know (a newer writer).
    Other {
        /// Its number.
        kind: u16,
        /// Its two numbers.
        a: u64,
        /// The second.
        b: u64,
    },
}

/// One event of a domain's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// To which queue (empty for a group's own events).
    pub queue: String,
    /// For a queue group's events: the group.
    pub group: Option<String>,
    /// The process that wrote the event, in its own pid namespace (for a takeover, the new
    /// owner; for a dead consumer, the process that found it dead).
    pub pid: u32,
    /// When: `CLOCK_MONOTONIC` nanoseconds.
    pub time_ns: u64,
    /// Its place in the log (events are numbered in the order they were written).
    pub seq: u64,
}

/// What a follower gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// An event.
    Event(Event),
    /// The follower fell more than the log's 1024 events behind, or an event was torn by a
    /// writer that stalled or died, or its writer has not finished it 50 ms after a later
    /// event came out: this many were lost.
    Missed(u64),
}

/// A follower of a domain's events, from the moment it was made: queues made and removed,
/// owners taking and leaving (takeovers included), consumers joining and leaving. Any number of
/// followers, in any processes, each at its own pace; writers never wait for them.
///
/// # Examples
///
/// ```
/// use baton::{Attributes, Domain, EventKind, Events, Followed, Queue};
/// use std::time::Duration;
/// let domain = Domain::new(&format!("doc-events-{}", std::process::id()))?;
/// let mut events = Events::follow(&domain)?;
/// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
/// let rx = q.receiver()?;
/// drop(rx);
/// let mut kinds = Vec::new();
/// while let Some(Followed::Event(e)) = events.next_timeout(Duration::from_millis(100))? {
///     kinds.push(e.kind);
/// }
/// assert_eq!(kinds[0], EventKind::QueueCreated);
/// assert_eq!(kinds[1], EventKind::OwnerTook { epoch: 1, took_over: false });
/// assert_eq!(kinds[2], EventKind::OwnerLeft { epoch: 1 });
/// # drop(q); Queue::remove(&domain, "jobs")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Events {
    file: EventsFile,
    domain: Domain,
    cursor: u64,
    only: Option<String>,
    /// Since when the event at the cursor has been claimed but not published while a later
    /// one is out (its writer is slow, or died writing it).
    stalled_since: Option<(u64, Instant)>,
}

/// How long a follower waits for an event whose writer is slow, or died half way, while later
/// events are out, before it counts that event as missed and goes on.
const STALLED_WRITER: Duration = Duration::from_millis(50);

impl Events {
    /// Follows `domain`'s events from now on, making its log if it has none (mode 0600).
    ///
    /// # Errors
    ///
    /// As opening a queue: [`OpenError::NoSpace`], [`OpenError::PermissionDenied`] (the log is
    /// another user's, or a link), [`OpenError::Corrupt`] (not a log).
    pub fn follow(domain: &Domain) -> Result<Events, OpenError> {
        for _ in 0..100 {
            let file = EventsFile::create_or_open(domain, 0o600)?;
            if !file.intact() {
                return Err(truncated(domain));
            }
            if !file.join() {
                // Its last follower is removing it: make a new one.
                std::thread::yield_now();
                continue;
            }
            let cursor = file.log().tail();
            return Ok(Events {
                file,
                domain: domain.clone(),
                cursor,
                only: None,
                stalled_since: None,
            });
        }
        Err(crate::sys::shm::io(
            "follow the event log",
            std::io::Error::other("it keeps being removed"),
        ))
    }

    /// This follower, for one queue's events only (or one group's: a name is either).
    pub fn only(mut self, queue: &str) -> Events {
        self.only = Some(queue.to_string());
        self
    }

    /// The next event if one is there now.
    ///
    /// # Errors
    ///
    /// [`OpenError::Corrupt`] if a peer shrank the log's file (reading it would be a SIGBUS).
    pub fn try_next(&mut self) -> Result<Option<Followed>, OpenError> {
        if !self.file.intact() {
            return Err(truncated(&self.domain));
        }
        Ok(self.next_from_log())
    }

    fn next_from_log(&mut self) -> Option<Followed> {
        loop {
            let log = self.file.log();
            match log.read(&mut self.cursor) {
                Read::NotYet if log.stalled(self.cursor) => {
                    let c = self.cursor;
                    match self.stalled_since {
                        Some((at, since)) if at == c && since.elapsed() >= STALLED_WRITER => {
                            self.cursor = c + 1;
                            self.stalled_since = None;
                            return Some(Followed::Missed(1));
                        }
                        Some((at, _)) if at == c => return None,
                        _ => {
                            self.stalled_since = Some((c, Instant::now()));
                            return None;
                        }
                    }
                }
                Read::NotYet => return None,
                Read::Missed(n) => return Some(Followed::Missed(n)),
                Read::Event(r) => {
                    let subject = String::from_utf8_lossy(&r.subject).into_owned();
                    let (group, queue) = match r.kind {
                        kind::GROUP_CREATED | kind::GROUP_REMOVED => (Some(subject), String::new()),
                        kind::MEMBER_ADDED | kind::MEMBER_REMOVED => {
                            match subject.split_once('/') {
                                Some((g, q)) => (Some(g.to_string()), q.to_string()),
                                None => (None, subject),
                            }
                        }
                        _ => (None, subject),
                    };
                    if self
                        .only
                        .as_ref()
                        .is_some_and(|n| *n != queue && group.as_ref() != Some(n))
                    {
                        continue;
                    }
                    return Some(Followed::Event(Event {
                        kind: kind_of(r.kind, r.a, r.b),
                        queue,
                        group,
                        pid: r.pid,
                        time_ns: r.time_ns,
                        seq: self.cursor - 1,
                    }));
                }
            }
        }
    }

    /// The next event, waiting at most `timeout` for one (`Ok(None)`: none came).
    ///
    /// # Errors
    ///
    /// As [`Events::try_next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Followed>, OpenError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(f) = self.try_next()? {
                return Ok(Some(f));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let log = self.file.log();
            let mut cursor = self.cursor;
            // A stalled writer's event is given up on after a while: look again by then.
            let until = match (deadline, self.stalled_since) {
                (Some(d), Some((_, since))) => Some(d.min(since + STALLED_WRITER)),
                (None, Some((_, since))) => Some(since + STALLED_WRITER),
                (d, None) => d,
            };
            // The file's size is looked at after each sleep, before the log is touched again:
            // a peer's shrink would make that touch a SIGBUS. `try_next` then says so.
            log.readers().wait_until_mapped(
                &Futex,
                until,
                || self.file.intact(),
                || !matches!(log.read(&mut cursor), Read::NotYet),
            );
        }
    }

    /// Removes `domain`'s event log (followers keep theirs until they drop it; later events
    /// go nowhere until someone follows the domain again).
    ///
    /// # Errors
    ///
    /// [`OpenError::PermissionDenied`] and I/O errors; none if there is no log.
    pub fn remove(domain: &Domain) -> Result<(), OpenError> {
        match nix::unistd::unlink(&crate::segment::events::path(domain)) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(crate::sys::shm::io("unlink the event log", e)),
        }
    }
}

impl Drop for Events {
    /// Counts this follower out; the last one removes the log.
    fn drop(&mut self) {
        self.file.leave();
    }
}

fn truncated(domain: &Domain) -> OpenError {
    OpenError::Corrupt {
        path: crate::segment::events::path(domain),
        reason: crate::error::SegmentDamage::Truncated {
            size: 0,
            needed: crate::segment::events::SIZE as u64,
        },
    }
}

fn kind_of(k: u16, a: u64, b: u64) -> EventKind {
    match k {
        kind::QUEUE_CREATED => EventKind::QueueCreated,
        kind::QUEUE_REMOVED => EventKind::QueueRemoved { expired: b == 1 },
        kind::OWNER_TOOK => EventKind::OwnerTook {
            epoch: a,
            took_over: b == 1,
        },
        kind::OWNER_LEFT => EventKind::OwnerLeft { epoch: a },
        kind::CONSUMER_JOINED => EventKind::ConsumerJoined { open: a },
        kind::CONSUMER_LEFT => EventKind::ConsumerLeft {
            open: a,
            died: b == 1,
        },
        kind::THRESHOLD_REACHED => EventKind::ThresholdReached {
            priority: a as u8,
            used: b,
        },
        kind::THRESHOLD_AVAILABLE => EventKind::ThresholdAvailable {
            priority: a as u8,
            used: b,
        },
        kind::GROUP_CREATED => match crate::queue::group::GroupPolicy::from_number(a) {
            Some(policy) => EventKind::GroupCreated { policy },
            None => EventKind::Other { kind: k, a, b },
        },
        kind::GROUP_REMOVED => EventKind::GroupRemoved,
        kind::MEMBER_ADDED => EventKind::MemberAdded,
        kind::MEMBER_REMOVED => EventKind::MemberRemoved,
        kind => EventKind::Other { kind, a, b },
    }
}
