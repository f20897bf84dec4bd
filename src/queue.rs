//! Named queues: [`Queue`], [`Sender`], [`Receiver`], [`Message`], [`Status`].
//!
//! A queue is a shared-memory segment with four priority lanes, a receiver event and an owner
//! lock. Any number of [`Sender`]s in any number of processes send; one [`Receiver`] at a time
//! owns the queue and receives, highest priority first and, within a priority, in the order the
//! sends were claimed (so FIFO per sender).

use crate::error::{OpenError, OwnError, RecvError, SendError, TrySendError};
use crate::lane::{ClaimError, Lane, Peek, RecordHeader};
use crate::name::Domain;
use crate::owner::{self, OwnerGuard, Ownership};
use crate::segment::{self, Attributes, Segment};
use crate::sync::Ordering;
use crate::wait::Futex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Number of priority lanes; priority 0 is the highest.
pub const PRIORITIES: usize = 4;
/// How long a blocked receiver or sender polls before it sleeps on the futex, by default.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

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
    pub fn open(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
        Ok(Queue {
            seg: Arc::new(Segment::open(domain, name)?),
        })
    }

    /// Removes a queue's name at once. A queue of the same name can be created right after;
    /// processes that have the old one open keep using their mapping.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::PermissionDenied`], [`OpenError::InvalidName`].
    pub fn remove(domain: &Domain, name: &str) -> Result<(), OpenError> {
        segment::remove(domain, name)
    }

    /// The queues of a domain, each with its status or the error met opening it.
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    pub fn list(domain: &Domain) -> Result<Vec<ListEntry>, OpenError> {
        Ok(segment::list_paths(domain)?
            .into_iter()
            .map(|file| {
                let status =
                    Segment::open_path(&file).map(|seg| Queue { seg: Arc::new(seg) }.status());
                ListEntry { file, status }
            })
            .collect())
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
        let (guard, ownership) = owner::try_acquire(self.seg.clone())?;
        Ok(Receiver {
            seg: self.seg.clone(),
            _guard: guard,
            ownership,
            spin: DEFAULT_SPIN,
        })
    }

    /// A snapshot of the queue's counters and owner (SA-Forum `StatusGet`).
    pub fn status(&self) -> Status {
        let seg = &self.seg;
        let attrs = seg.attributes();
        let mut lanes = [LaneStatus::default(); PRIORITIES];
        let (mut sent, mut received) = (0, 0);
        for (p, l) in lanes.iter_mut().enumerate() {
            let lane = seg.lane(p);
            let (used, messages) = lane.usage();
            let (s, r) = lane.counters();
            sent += s;
            received += r;
            let waiting_senders = lane.space_event().waiters();
            *l = LaneStatus {
                capacity: attrs.capacity[p],
                used,
                messages,
                waiting_senders,
            };
        }
        let shared = seg.shared();
        let pid = shared.owner.pid.load(Ordering::Acquire);
        let (name, domain) = seg.names();
        let (size, file_size) = seg.sizes();
        Status {
            name: name.to_string(),
            domain: domain.to_string(),
            attributes: attrs,
            lanes,
            sent,
            received,
            rejected_full: shared.stats.rejected_full.load(Ordering::Relaxed),
            owner_pid: (pid != 0 && owner::process_alive(pid)).then_some(pid),
            epoch: shared.owner.epoch.load(Ordering::Relaxed),
            takeovers: shared.owner.takeovers.load(Ordering::Relaxed),
            created_unix_ns: seg.created_unix_ns(),
            size,
            file_size,
            files: vec![seg.path().to_path_buf()],
        }
    }
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaneStatus {
    /// The lane's byte budget.
    pub capacity: u64,
    /// Bytes in use (records, their headers and padding, in 64-byte cells).
    pub used: u64,
    /// Messages waiting.
    pub messages: u64,
    /// Senders announced as waiting for space (a dead one may linger until the next takeover).
    pub waiting_senders: u32,
}

/// A snapshot of a queue (SA-Forum `StatusGet` plus counters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Queue name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Attributes fixed at creation.
    pub attributes: Attributes,
    /// Per priority, 0 first.
    pub lanes: [LaneStatus; PRIORITIES],
    /// Messages sent since creation.
    pub sent: u64,
    /// Messages received since creation.
    pub received: u64,
    /// Sends refused because the lane was full.
    pub rejected_full: u64,
    /// The owning process, if there is a live one.
    pub owner_pid: Option<u32>,
    /// Ownership epoch: how many times the queue has been taken.
    pub epoch: u64,
    /// How many of those were takeovers from a dead owner.
    pub takeovers: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Size of the segment.
    pub size: u64,
    /// Size of its file now, if it could be read (differs from `size` if a peer truncated it).
    pub file_size: Option<u64>,
    /// The shared-memory files backing the queue.
    pub files: Vec<PathBuf>,
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
    pub fn send(&self, payload: &[u8]) -> Result<(), SendError> {
        self.send_until(payload, None)
    }

    /// Sends, waiting at most `timeout` for space.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`], and [`SendError::Timeout`].
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
        let lane = self
            .lane_for(message.as_ref())
            .map_err(TrySendError::Failed)?;
        match lane.try_claim(message.as_ref().len(), 0) {
            Ok(claim) => self
                .finish(&lane, claim, message.as_ref())
                .map_err(TrySendError::Failed),
            Err(ClaimError::Full) => {
                self.seg
                    .shared()
                    .stats
                    .rejected_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(TrySendError::Full(message))
            }
            Err(ClaimError::Corrupt(c)) => Err(TrySendError::Failed(SendError::Corrupt(c.0))),
        }
    }

    #[inline]
    fn lane_for(&self, payload: &[u8]) -> Result<Lane<'_>, SendError> {
        let max = self.seg.attributes().max_message;
        if payload.len() > max as usize {
            return Err(SendError::TooBig {
                len: payload.len(),
                max,
            });
        }
        Ok(self.seg.lane(self.priority as usize))
    }

    #[inline]
    fn send_until(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        let lane = self.lane_for(payload)?;
        match lane.try_claim(payload.len(), 0) {
            Ok(claim) => self.finish(&lane, claim, payload),
            Err(ClaimError::Full) => self.send_slow(&lane, payload, deadline),
            Err(ClaimError::Corrupt(c)) => Err(SendError::Corrupt(c.0)),
        }
    }

    #[cold]
    fn send_slow(
        &self,
        lane: &Lane<'_>,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        let mut outcome = None;
        let attempt = || match lane.try_claim(payload.len(), 0) {
            Ok(claim) => Some(Ok(claim)),
            Err(ClaimError::Full) => None,
            Err(ClaimError::Corrupt(c)) => Some(Err(SendError::Corrupt(c.0))),
        };
        let spin_until = Instant::now() + self.spin;
        while Instant::now() < spin_until && deadline.is_none_or(|d| Instant::now() < d) {
            if let Some(o) = attempt() {
                outcome = Some(o);
                break;
            }
            std::thread::yield_now();
        }
        if outcome.is_none() {
            lane.space_event().wait_until(&Futex, deadline, || {
                outcome = attempt();
                outcome.is_some()
            });
        }
        match outcome {
            Some(Ok(claim)) => self.finish(lane, claim, payload),
            Some(Err(e)) => Err(e),
            None => {
                self.seg
                    .shared()
                    .stats
                    .rejected_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(SendError::Timeout)
            }
        }
    }

    #[inline]
    fn finish(
        &self,
        lane: &Lane<'_>,
        claim: crate::lane::Claim,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let header = RecordHeader {
            len: payload.len() as u32,
            flags: 0,
            msg_type: self.msg_type,
            version: self.version,
            sender_pid: self.pid,
            sent_ns: monotonic_ns(),
        };
        lane.write(&claim, &header, payload);
        lane.commit(claim).map_err(|c| SendError::Corrupt(c.0))?;
        self.seg.shared().data_event.notify(&Futex);
        Ok(())
    }
}

/// A received message: its payload and what the sender stamped on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 0 (highest) to 3.
    pub priority: u8,
    /// The sender's message type.
    pub msg_type: i64,
    /// The sender's message version.
    pub version: u32,
    /// The sending process.
    pub sender_pid: u32,
    /// When it was sent, `CLOCK_MONOTONIC` nanoseconds (see [`monotonic_ns`]).
    pub sent_ns: u64,
    payload: Vec<u8>,
}

impl Message {
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The payload, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// The owner of a queue: the one process (and thread) that receives. Dropping it releases
/// ownership.
#[derive(Debug)]
pub struct Receiver {
    seg: Arc<Segment>,
    _guard: OwnerGuard,
    ownership: Ownership,
    spin: Duration,
}

impl Receiver {
    /// Receives the next message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Corrupt`] if a lane's shared state makes no sense.
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        self.recv_until(None)
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], [`RecvError::Corrupt`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Receives a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], [`RecvError::Corrupt`].
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

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Message, RecvError> {
        if let Some(m) = self.take()? {
            return Ok(m);
        }
        let spin_until = Instant::now() + self.spin;
        loop {
            let now = Instant::now();
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let Some(m) = self.take()? {
                return Ok(m);
            }
            crate::sync::spin_hint();
        }
        let seg = self.seg.clone();
        let mut outcome = None;
        seg.shared().data_event.wait_until(&Futex, deadline, || {
            outcome = self.take().transpose();
            outcome.is_some()
        });
        outcome.unwrap_or(Err(RecvError::Timeout))
    }

    /// Takes the first committed message, highest priority first.
    #[inline]
    fn take(&mut self) -> Result<Option<Message>, RecvError> {
        let max = self.seg.attributes().max_message;
        for p in 0..PRIORITIES {
            let lane = self.seg.lane(p);
            match lane
                .peek(max, &Futex)
                .map_err(|c| RecvError::Corrupt(c.0))?
            {
                Peek::Empty | Peek::InFlight => continue,
                Peek::Record(r) => {
                    let mut payload = Vec::with_capacity(r.header.len as usize);
                    lane.copy_payload(&r, &mut payload);
                    lane.release(r, &Futex);
                    return Ok(Some(Message {
                        priority: p as u8,
                        msg_type: r.header.msg_type,
                        version: r.header.version,
                        sender_pid: r.header.sender_pid,
                        sent_ns: r.header.sent_ns,
                        payload,
                    }));
                }
            }
        }
        Ok(None)
    }
}
