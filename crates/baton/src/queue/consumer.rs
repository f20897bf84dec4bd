//! Competing consumers of a shared queue (Tuxedo's MSSQ): the [`Consumer`], selective receive
//! by message type ([`TypeFilter`]), and what its messages need to be acknowledged.
//!
//! A shared queue ([`crate::Attributes::shared`]) has no owner. Any number of consumers, in any
//! number of processes, take from it at once: each message goes to one of them, highest
//! priority first, FIFO per sender within a priority. Taking is a compare-and-swap on the
//! record's stamp (see `baton_ring::lane::LaneConsumer`); nothing is locked on the way.
//!
//! A message stays in the queue until its consumer acknowledges it. The records a consumer
//! took are marked with its process's slot in the queue's process table, whose lock the
//! process holds for as long as it maps the queue (`recovery`). When the process dies the
//! kernel releases that lock; the next consumer that looks (at once if it is idle, every
//! [`STUCK_CHECK`] while it sleeps and other slots hold records) takes the lock and gives the
//! dead one's records back: they are taken again, flagged `redelivered`. A live consumer,
//! however slow, keeps what it took.

use super::cancel::{CancelPoint, Canceller};
use super::message::{Message, Metadata, Ticket};
use super::ready::ReadyFd;
use super::request::split_request;
use super::spin::SpinWindow;
use super::{Queue, STUCK_CHECK};
use crate::error::{AckError, Damage, OwnError, RecvError};
use crate::recovery::{self, failpoint, Attachment, DeathWatch};
use crate::segment::{Segment, PRIORITIES};
use crate::sys::clock::{monotonic_ns, Deadline};
use crate::sys::futex::Futex;
use crate::sys::liveness::fork_generation;
use crate::sys::robust::TryLock;
use baton_ring::lane::{sweep, LaneConsumer, LaneOwner, Pick, SweepLock, Taken};
use baton_ring::lookout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which messages a selective receive takes, by message type: System V's `msgrcv` rules, and
/// their complement. With priorities, the highest priority that has a match wins, then the
/// rule picks within it. Messages passed over keep their places.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TypeFilter {
    /// The first message, whatever its type (`msgrcv` type 0).
    #[default]
    Any,
    /// The first message of exactly this type (`msgrcv` with a positive type).
    Exactly(i64),
    /// The first message of the lowest type not above this one (`msgrcv` with a negative type
    /// `-t`: `AtMost(t)`).
    AtMost(i64),
    /// The first message of any other type.
    Except(i64),
}

impl TypeFilter {
    /// The filter of `msgrcv`'s type argument: 0 any, `t > 0` exactly `t`, `t < 0` the lowest
    /// type not above `|t|`.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::TypeFilter;
    /// assert_eq!(TypeFilter::sysv(0), TypeFilter::Any);
    /// assert_eq!(TypeFilter::sysv(5), TypeFilter::Exactly(5));
    /// assert_eq!(TypeFilter::sysv(-5), TypeFilter::AtMost(5));
    /// ```
    pub fn sysv(t: i64) -> TypeFilter {
        match t {
            0 => TypeFilter::Any,
            t if t > 0 => TypeFilter::Exactly(t),
            t => TypeFilter::AtMost(t.checked_neg().unwrap_or(i64::MAX)),
        }
    }

    /// Whether a message of type `ty` passes.
    pub fn matches(&self, ty: i64) -> bool {
        match *self {
            TypeFilter::Any => true,
            TypeFilter::Exactly(t) => ty == t,
            TypeFilter::AtMost(t) => ty <= t,
            TypeFilter::Except(t) => ty != t,
        }
    }

    /// What a lane's walk makes of a record of type `ty`.
    fn pick(&self, ty: i64) -> Pick {
        match *self {
            _ if !self.matches(ty) => Pick::Skip,
            // The lowest type wins: rank by type, order-preserving from i64 to u64.
            TypeFilter::AtMost(_) => Pick::Rank((ty as u64) ^ (1 << 63)),
            _ => Pick::Now,
        }
    }
}

/// What a consumer shares with the messages it took: the queue, and the process's slot that
/// marks its records.
pub(crate) struct Consuming {
    seg: Arc<Attachment>,
    slot: u8,
    /// The fork generation of the process that took the slot: a forked child's copy holds no
    /// slot (the keeper thread is the parent's) and must not touch the lanes.
    generation: u64,
}

impl Consuming {
    /// The mapping this consumer takes from.
    pub(super) fn attachment(&self) -> &Attachment {
        &self.seg
    }

    /// The mapping this consumer takes from, shared.
    pub(super) fn attachment_arc(&self) -> Arc<Attachment> {
        self.seg.clone()
    }

    /// The consumer's view of lane `p`; `None` in a forked child's copy.
    fn lane(&self, p: usize) -> Option<LaneConsumer<'_>> {
        if self.generation != fork_generation() {
            return None;
        }
        // SAFETY: the queue is shared (checked when the consumer was made), and this process
        // holds `slot` (its keeper thread holds the lock) as long as `seg` is mapped, which
        // the view borrows.
        Some(unsafe { self.seg.lane(p).consumer(self.slot) })
    }

    /// Acknowledges (`ack`) or gives back a record this consumer took from lane `p`.
    pub(super) fn finish(&self, p: usize, taken: Taken, ack: bool) -> Result<(), AckError> {
        let Some(lane) = self.lane(p) else {
            // A forked child's copy: the parent took it and settles it.
            drop(taken);
            return Err(AckError::Closed);
        };
        if ack {
            lane.ack(taken)
                .map_err(|e| AckError::Corrupt(Damage::Lane(e)))?;
            failpoint("consume.acked");
            sweep(&lane, &OwnerLockSweep(&self.seg), &Futex)
                .map_err(|e| AckError::Corrupt(Damage::Lane(e)))?;
            self.seg.check_threshold(p, false);
        } else {
            lane.release(taken)
                .map_err(|e| AckError::Corrupt(Damage::Lane(e)))?;
            failpoint("consume.released");
            self.seg.announce_message(Some(&lane));
        }
        Ok(())
    }
}

/// A shared queue's sweep lock is its owner mutex (nobody owns a shared queue), taken with
/// `trylock` for one head move at a time.
pub(super) struct OwnerLockSweep<'a>(pub(super) &'a Segment);

impl OwnerLockSweep<'_> {
    /// Sweeps lane `lane` of this queue (see [`sweep`]).
    pub(super) fn sweep(
        &self,
        lane: &baton_ring::lane::Lane<'_>,
    ) -> Result<u64, baton_ring::lane::Corrupt> {
        sweep(lane, self, &Futex)
    }
}

/// Holding the owner mutex of a shared queue for a sweep.
pub(super) struct SweepGuard<'a>(&'a Segment);

impl Drop for SweepGuard<'_> {
    fn drop(&mut self) {
        self.0.shared().owner.mutex.unlock();
    }
}

// SAFETY: the robust mutex has one holder across every process that maps the queue; a guard
// taken from a dead holder is returned only after every lane's journaled head move is done.
unsafe impl<'a> SweepLock for OwnerLockSweep<'a> {
    type Guard = SweepGuard<'a>;

    fn try_lock(&self) -> Option<SweepGuard<'a>> {
        let mutex = &self.0.shared().owner.mutex;
        match mutex.try_lock() {
            TryLock::Acquired => Some(SweepGuard(self.0)),
            TryLock::OwnerDied => {
                // A sweeper died holding it, perhaps half way through a head move: finish it.
                for p in 0..PRIORITIES {
                    // SAFETY: we hold the lock that makes one sweeper at a time.
                    let owner: LaneOwner<'_> = unsafe { self.0.lane(p).owner() };
                    owner.replay_journal(&Futex);
                }
                if mutex.consistent() != 0 {
                    mutex.unlock();
                    return None;
                }
                Some(SweepGuard(self.0))
            }
            _ => None,
        }
    }
}

/// One of the competing consumers of a shared queue (see [`Queue::consumer`]): takes messages,
/// each of which goes to exactly one consumer. Open as many as you like, in as many threads
/// and processes. A message is acknowledged when dropped (or by [`Message::ack`]); if the
/// consumer's process dies first, it is delivered again, flagged, to another consumer.
pub struct Consumer {
    state: Arc<Consuming>,
    filter: TypeFilter,
    spin: Duration,
    /// When to look next for records of gone processes (see `when_idle`).
    next_check: Instant,
    /// This consumer's mark on the queue's lookout (0: none): while it is still there, the
    /// role of the consumer that looks for messages is this one's (see
    /// [`baton_ring::lookout`]).
    mark: u64,
    /// When this consumer last went to work with a message (monotonic ns; 0: never).
    left_at: u64,
    /// Whether it came back from its last message within the lookout's grace: such a
    /// consumer keeps looking while it works, one with more work per message does not.
    back_soon: bool,
    /// Bumped by this consumer's [`Canceller`]s.
    cancels: Arc<AtomicU64>,
    /// The pollable descriptor, once asked for ([`Consumer::ready_fd`]).
    ready: Option<ReadyFd>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.state.seg.names().0)
            .field("slot", &self.state.slot)
            .field("filter", &self.filter)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        drop(self.ready.take());
        if self.state.generation == fork_generation() {
            let seg = &self.state.seg;
            let open = seg.shared().consumers[self.state.slot as usize]
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1);
            seg.emit(
                crate::segment::events::kind::CONSUMER_LEFT,
                u64::from(open),
                0,
            );
            if self.mark != 0 {
                // It looked for messages while it worked: now nobody does, so a sleeper takes
                // what came meanwhile.
                seg.shared().lookout.stop_polling(self.mark);
                seg.announce_message(None);
            }
        }
    }
}

impl Queue {
    /// A consumer of this shared queue: one of any number that take messages from it at
    /// once. See [`Consumer`].
    ///
    /// # Errors
    ///
    /// [`OwnError::NotShared`] for a queue not created shared; [`OwnError::Removed`];
    /// [`OwnError::NoConsumerSlot`] when the process cannot have a slot of the queue's
    /// process table (the liveness that gives its messages back if it dies).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-consumer-{}", std::process::id()))?;
    /// let attrs = Attributes { shared: true, ..Attributes::default() };
    /// let q = Queue::create(&domain, "requests", &attrs)?;
    /// q.sender().send(b"one")?;
    /// q.sender().send(b"two")?;
    /// let (mut a, mut b) = (q.consumer()?, q.consumer()?);
    /// let first = a.recv()?; // a has "one" until it acknowledges it
    /// assert_eq!(b.recv()?.payload(), b"two"); // so b gets "two"
    /// assert_eq!(first.payload(), b"one");
    /// # drop(first); drop((a, b)); Queue::remove(&domain, "requests")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(&self) -> Result<Consumer, OwnError> {
        let seg = &self.seg;
        let name = seg.names().0.to_string();
        if !seg.attributes().shared {
            return Err(OwnError::NotShared { name });
        }
        if seg.is_removed() {
            return Err(OwnError::Removed { name });
        }
        let slot = recovery::sender_slot(seg)
            .map_err(|reason| OwnError::NoConsumerSlot { name, reason })?;
        let open = seg.shared().consumers[slot as usize].fetch_add(1, Ordering::Relaxed) + 1;
        seg.emit(
            crate::segment::events::kind::CONSUMER_JOINED,
            u64::from(open),
            0,
        );
        Ok(Consumer {
            state: Arc::new(Consuming {
                seg: seg.clone(),
                slot,
                generation: fork_generation(),
            }),
            filter: TypeFilter::Any,
            spin: super::DEFAULT_SPIN,
            next_check: Instant::now(),
            mark: 0,
            left_at: 0,
            back_soon: true,
            cancels: Arc::default(),
            ready: None,
        })
    }
}

/// What other processes hold in a shared queue's lanes (see `Consumer::when_idle`).
#[derive(Debug, Default, Clone, Copy)]
struct OthersHold {
    /// Records or claims.
    hold: bool,
    /// Records their consumers took.
    work: bool,
}

/// How often a sleeping consumer looks while other consumers are open, or other processes
/// hold claims (see `Consumer::next`).
const POOL_TICK: Duration = Duration::from_secs(1);

impl Consumer {
    /// A handle that interrupts this consumer's blocked receives from another thread or a
    /// signal handler (see [`Canceller`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// let domain = Domain::new(&format!("doc-consumer-cancel-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes { shared: true, ..Default::default() })?;
    /// let mut consumer = q.consumer()?;
    /// let cancel = consumer.canceller();
    /// let t = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(50));
    ///     cancel.cancel();
    /// });
    /// assert!(matches!(consumer.recv(), Err(RecvError::Interrupted)));
    /// t.join().unwrap();
    /// # drop(consumer); Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn canceller(&self) -> Canceller {
        Canceller {
            seg: self.state.seg.clone(),
            cancels: self.cancels.clone(),
        }
    }

    /// Takes only messages that pass `filter` from now on (System V's selective receive; see
    /// [`TypeFilter`]). A selective take walks over the messages waiting in front of its
    /// match, reading each one's type: its cost grows with them (see `docs/performance.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, TypeFilter};
    /// let domain = Domain::new(&format!("doc-filter-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes { shared: true, ..Default::default() })?;
    /// for t in [3, 1, 2] {
    ///     q.sender().with_type(t).send(&[t as u8])?;
    /// }
    /// let mut lowest = q.consumer()?.with_filter(TypeFilter::AtMost(2));
    /// assert_eq!(lowest.recv()?.msg_type(), 1);
    /// assert_eq!(lowest.recv()?.msg_type(), 2);
    /// let mut rest = q.consumer()?.with_filter(TypeFilter::Except(2));
    /// assert_eq!(rest.recv()?.msg_type(), 3);
    /// # drop((lowest, rest)); Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_filter(mut self, filter: TypeFilter) -> Consumer {
        self.ready = None; // its thread looked for the old filter's messages
        self.filter = filter;
        self
    }

    /// Sets how long a blocking receive polls before sleeping (default 50 µs; zero sleeps at once;
    /// `Duration::MAX` polls without end). Polling is a fast path: it does not look at the
    /// file's size (`docs/security.md`, *Truncation*).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// The slot of the queue's process table that marks this process's messages in flight.
    pub fn slot(&self) -> u8 {
        self.state.slot
    }

    /// A file descriptor that is readable while a message this consumer may take waits (one
    /// its filter picks), for `poll`, `epoll`, `select` or an async runtime's reactor: as
    /// [`Receiver::ready_fd`](crate::Receiver::ready_fd), with [`Consumer::try_recv`] until it
    /// returns [`RecvError::Empty`]. With other consumers, a readable fd often means a message
    /// that another consumer takes first: the receive then finds nothing and re-arms. A plain
    /// consumer's fd thread is one of the sleepers a sender wakes one of; while its fd is
    /// readable and not drained, that message waits for this consumer. Each look is the walk
    /// a take makes (with a filter, over the waiting messages until one matches), without
    /// taking.
    ///
    /// # Errors
    ///
    /// [`RecvError::ForkedCopy`] in a forked child; [`RecvError::NoHelper`] if the eventfd or
    /// the thread cannot be made.
    pub fn ready_fd(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, RecvError> {
        if self.state.generation != fork_generation() {
            return Err(RecvError::ForkedCopy);
        }
        if self.ready.is_none() {
            let state = self.state.clone();
            let filter = self.filter;
            let event: super::ready::EventOf = match filter {
                TypeFilter::Any => Arc::new(|seg: &Attachment| &seg.shared().data_event),
                _ => Arc::new(|seg: &Attachment| &seg.shared().select_event),
            };
            let r = ReadyFd::start(self.state.seg.clone(), event, move || {
                may_take(&state, filter)
            })
            .map_err(|e| RecvError::NoHelper(e.kind()))?;
            self.ready = Some(r);
        }
        Ok(self.ready.as_ref().expect("just made").fd())
    }

    /// Takes the next message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Removed`], [`RecvError::ForkedCopy`] (a consumer inherited through
    /// `fork`), [`RecvError::Corrupt`].
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        self.recv_until(Deadline::Never)
    }

    /// Takes the next message, waiting at most `timeout` (without limit if it is too long for
    /// the clock, such as `Duration::MAX`).
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], and as [`Consumer::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        self.recv_until(Deadline::After(timeout))
    }

    /// Takes a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], and as [`Consumer::recv`].
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        match self.take()? {
            Some(found) => self.deliver(found),
            None => {
                self.when_idle(true);
                match self.take()? {
                    Some(found) => self.deliver(found),
                    None => {
                        if let Some(r) = &self.ready {
                            r.rearm(); // found nothing: the fd goes quiet until something comes
                        }
                        Err(RecvError::Empty)
                    }
                }
            }
        }
    }

    fn recv_until(&mut self, deadline: Deadline) -> Result<Message, RecvError> {
        let found = self.next(deadline)?;
        self.deliver(found)
    }

    /// Waits for the next record: polls for the spin window if no other consumer looks for
    /// messages, then sleeps on the queue's event (plain consumers are woken one per message,
    /// and not while another looks; selective ones all, on their own event).
    fn next(&mut self, deadline: Deadline) -> Result<(usize, Taken), RecvError> {
        let cancel = CancelPoint::now(&self.cancels);
        let looks = self.looks();
        if !looks && self.mark != 0 {
            // Its spin was set to zero, or a filter given, since it last looked: it gives the
            // lookout up before it sleeps (its sleep looks once more, after its fence).
            self.state.seg.shared().lookout.stop_polling(self.mark);
            self.mark = 0;
        }
        if looks && self.left_at != 0 {
            let away = monotonic_ns().saturating_sub(self.left_at);
            self.back_soon = away <= lookout::GRACE_NS;
        }
        if let Some(f) = self.take()? {
            return Ok(self.going_to_work(f));
        }
        let deadline = deadline.start();
        // Idle consumers look one at a time: with more consumers than CPUs, several polling
        // would take the CPU the senders need. The others sleep at once, and while one looks
        // senders wake none of them: it takes the message without a syscall.
        let seg = self.state.seg.clone();
        let lookout = &seg.shared().lookout;
        if looks {
            if let Some(mine) = lookout.start_polling(monotonic_ns(), self.mark) {
                self.mark = mine;
                let polled = self.poll(deadline, cancel);
                if let Ok(Some(f)) = polled {
                    return Ok(self.going_to_work(f));
                }
                lookout.stop_polling(mine);
                self.mark = 0;
                if let Err(e) = polled {
                    // Cancelled (or failed) while it looked: it will not look again, and a
                    // sender that saw its mark woke nobody, so what waits is announced.
                    seg.announce_message(None);
                    return Err(e);
                }
            }
        }
        loop {
            seg.check_size().map_err(RecvError::Corrupt)?;
            let others = self.when_idle(false);
            if let Some(f) = self.take()? {
                return Ok(self.going_to_work(f));
            }
            // A process that dies holding records, or a claim, wakes this sleep through the
            // death watch, which gives back what it held. While other consumers work on records
            // a sleeper still looks every STUCK_CHECK: one of them may have left a lookout mark
            // that kept senders from waking anybody, and be away longer than it said (G18).
            // Among other consumers, or while others hold claims, it looks once a POOL_TICK: a
            // looker stopped (SIGSTOP) while a sender skipped the wake-up for it, or a death's
            // one wake-up taken by a consumer of another process dying at the same time, would
            // otherwise leave a message until the next send. Alone, it sleeps until something
            // happens.
            let tick = if others.work {
                Some(STUCK_CHECK)
            } else if others.hold || self.other_consumers() {
                Some(POOL_TICK)
            } else {
                None
            };
            let until = match tick {
                Some(t) => {
                    let t = Instant::now() + t;
                    Some(deadline.map_or(t, |d| d.min(t)))
                }
                None => deadline,
            };
            let event = match self.filter {
                TypeFilter::Any => &seg.shared().data_event,
                _ => &seg.shared().select_event,
            };
            let mut outcome = None;
            let woke = event.wait_until_mapped(
                &DeathWatch(&seg),
                until,
                || seg.check_size().is_ok(),
                || {
                    outcome = match seg.check_size() {
                        _ if cancel.passed(&self.cancels) => Some(Err(RecvError::Interrupted)),
                        Err(e) => Some(Err(RecvError::Corrupt(e))),
                        // Woken, perhaps, for a message somebody else took: nobody is on the way
                        // any more, so senders must wake a sleeper again; then look once more.
                        Ok(()) => match self.take() {
                            Ok(None) if lookout.not_coming() => self.take().transpose(),
                            other => other.transpose(),
                        },
                    };
                    outcome.is_some()
                },
            );
            if woke.is_none() {
                continue; // shrunk while it slept: the first look says so
            }
            if let Some(o) = outcome {
                return Ok(self.going_to_work(o?));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Whether this consumer takes part in the lookout: a plain one that polls. (A selective
    /// one sleeps on its own event, woken by every message, and may not take a sender's
    /// message; one that does not poll sleeps at once, but still arrives for a wake-up.)
    fn looks(&self) -> bool {
        self.spin > Duration::ZERO && self.filter == TypeFilter::Any
    }

    /// With a record taken: keeps looking for messages while it works if it will be back
    /// soon, or gives the lookout up; either way, if messages wait in any lane that nobody
    /// looks for (or pile up past what the one looking keeps up with), wakes a sleeper.
    fn going_to_work(&mut self, f: (usize, Taken)) -> (usize, Taken) {
        if self.filter != TypeFilter::Any {
            return f; // it sleeps on its own event, and gave up any mark in `next`
        }
        let now = monotonic_ns();
        let seg = &self.state.seg;
        self.mark = seg
            .shared()
            .lookout
            .leave(self.mark, now, self.back_soon && self.looks());
        self.left_at = now;
        if self.mark == 0 {
            // It gave the lookout up (or another consumer looks): whatever waits in any lane,
            // since the mark it replaced may have hidden a message of another priority from
            // the senders.
            seg.announce_message(None);
        } else {
            // It keeps looking and is back soon: only a pile-up behind it needs a helper.
            seg.announce_message(Some(&seg.lane(f.0)));
        }
        f
    }

    /// Polls for the spin window (or until `deadline`).
    fn poll(
        &self,
        deadline: Option<Instant>,
        cancel: CancelPoint,
    ) -> Result<Option<(usize, Taken)>, RecvError> {
        let mut window = SpinWindow::new(self.spin, deadline);
        while window.open() {
            if cancel.passed(&self.cancels) {
                return Err(RecvError::Interrupted);
            }
            if let Some(f) = self.take()? {
                return Ok(Some(f));
            }
            baton_ring::spin_hint();
        }
        Ok(None)
    }

    /// Takes the first record this consumer's filter passes, highest priority first.
    fn take(&self) -> Result<Option<(usize, Taken)>, RecvError> {
        let seg = &self.state.seg;
        if seg.is_removed() {
            return Err(RecvError::Removed);
        }
        let max = seg.attributes().max_message;
        let filter = self.filter;
        let mut pick = |ty: i64| filter.pick(ty);
        for p in 0..PRIORITIES {
            let lane = self.state.lane(p).ok_or(RecvError::ForkedCopy)?;
            let select: Option<&mut dyn FnMut(i64) -> Pick> = match filter {
                TypeFilter::Any => None,
                _ => Some(&mut pick),
            };
            if let Some(t) = lane.take(max, select).map_err(Damage::Lane)? {
                failpoint("consume.taken");
                return Ok(Some((p, t)));
            }
        }
        Ok(None)
    }

    /// What a consumer with nothing to take does before it sleeps: frees what is finished at
    /// the heads, wakes the senders a sweep left waiting, and (every [`STUCK_CHECK`], or now
    /// if `now`) gives back the records of processes that are gone. Returns what other
    /// processes hold.
    fn when_idle(&mut self, now: bool) -> OthersHold {
        let seg = &*self.state.seg;
        let mut others_hold = false;
        let mut others_work = false;
        let check = now || Instant::now() >= self.next_check;
        let mut holders = [false; crate::segment::SENDER_SLOTS];
        for p in 0..PRIORITIES {
            let Some(lane) = self.state.lane(p) else {
                return OthersHold::default();
            };
            if sweep(&lane, &OwnerLockSweep(seg), &Futex).is_ok_and(|freed| freed > 0) {
                seg.check_threshold(p, false);
            }
            lane.wake_owed(&Futex);
            lane.holders(|slot, taken| {
                if slot != self.state.slot {
                    holders[slot as usize] = true;
                    others_hold = true;
                    others_work |= taken;
                }
            });
        }
        if check && others_hold {
            self.next_check = Instant::now() + STUCK_CHECK;
            let mut gone = false;
            for slot in (0..holders.len()).filter(|&s| holders[s]) {
                gone |= recovery::reclaim_if_dead(seg, slot as u8).is_some_and(|n| n > 0);
            }
            if gone {
                for p in 0..PRIORITIES {
                    if let Some(lane) = self.state.lane(p) {
                        let _ = sweep(&lane, &OwnerLockSweep(seg), &Futex);
                        seg.check_threshold(p, false);
                    }
                }
            }
        }
        OthersHold {
            hold: others_hold,
            work: others_work,
        }
    }

    /// Whether consumers other than this one are open on the queue (in any process).
    fn other_consumers(&self) -> bool {
        let open: u64 = self
            .state
            .seg
            .shared()
            .consumers
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum();
        open > 1
    }

    fn deliver(&self, (p, taken): (usize, Taken)) -> Result<Message, RecvError> {
        let lane = self.state.lane(p).ok_or(RecvError::ForkedCopy)?;
        let mut payload = Vec::with_capacity(taken.record().header().len as usize);
        lane.copy_payload(&taken, &mut payload);
        let (reply_to, tracked, skip) = split_request(taken.record().header(), &payload)?;
        payload.drain(..skip);
        let redelivered = taken.redelivered();
        if redelivered {
            self.state
                .seg
                .shared()
                .stats
                .redelivered
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Message {
            meta: Metadata::of(p, taken.record(), redelivered, reply_to),
            payload,
            ticket: Some(Ticket::Taken {
                consumer: self.state.clone(),
                priority: p,
                taken,
            }),
            tracked,
        })
    }
}

/// Whether a take with `filter` would find a message now (or a receive must fail: its user
/// must be told), without taking it: what a consumer's ready fd thread asks.
fn may_take(state: &Consuming, filter: TypeFilter) -> bool {
    let seg = &state.seg;
    if seg.is_removed() {
        return true;
    }
    let max = seg.attributes().max_message;
    let mut pick = |ty: i64| filter.pick(ty);
    for p in 0..PRIORITIES {
        let Some(lane) = state.lane(p) else {
            return false; // a forked child's copy: nothing is ever ready
        };
        let select: Option<&mut dyn FnMut(i64) -> Pick> = match filter {
            TypeFilter::Any => None,
            _ => Some(&mut pick),
        };
        // Exactly what a take would find (review: a walk that looked past a record still
        // being written said "ready" where a take stops, and the fd spun while it was).
        match lane.can_take(max, select) {
            Ok(false) => {}
            Ok(true) | Err(_) => return true, // an error: the receive says what
        }
    }
    false
}
