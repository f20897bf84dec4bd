//! Receiving: the [`Receiver`] (the owner of a queue), its walk over the lanes, and
//! acknowledgement.

use super::cancel::{CancelPoint, Canceller};
use super::message::{InPlace, Message, Metadata, Ticket};
use super::ready::ReadyFd;
use super::request::split_request;
use super::spin::SpinWindow;
use super::Queue;
use crate::error::{AckError, Damage, OwnError, RecvError};
use crate::owner::{OwnerGuard, Ownership};
use crate::recovery::{self, failpoint, Attachment, DeathWatch};
use crate::segment::{Segment, PRIORITIES};
use crate::sys::clock::Deadline;
use crate::sys::futex::Futex;
use crate::sys::liveness::fork_generation;
use baton_ring::lane::{LaneOwner, RecordRef, Slot};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

impl Owned {
    /// Acknowledges a delivered record, or (`ack == false`) releases it for redelivery.
    pub(super) fn finish(&self, p: usize, record: RecordRef, ack: bool) -> Result<(), AckError> {
        if self.forked_copy() {
            // Before the lock: a forked child's copy of it may have been taken by a thread of
            // the parent at the fork, and stays so for ever in the child.
            return Err(AckError::Closed);
        }
        let mut local = self.lock();
        let local = &mut *local;
        if self.lost() {
            return Err(AckError::Closed);
        }
        let Some(lane) = local.lane(p) else {
            return Err(AckError::Closed);
        };
        if ack {
            let at_head = lane.ack(&record)?;
            failpoint("ack.marked");
            // Up to what this owner has looked at, or what an earlier owner delivered if that
            // is further: records an earlier owner acknowledged out of order lie between, and
            // with the one before them acknowledged now they are freed too (the walk steps over
            // them without freeing them).
            let limit = local.cursor[p].max(local.redeliver_end[p]);
            lane.advance_head_until(at_head.then_some(&record), limit, &Futex)?;
            failpoint("ack.advanced");
            self.seg.check_threshold(p, false);
            if self.seg.shared().data_event.waiters() != 0 {
                // Acknowledged on another thread while the receiving one sleeps: it will not
                // pay the senders the wake-up this head move may owe them, so pay it now.
                lane.wake_owed(&Futex);
            }
        } else {
            let queue = &mut local.released[p];
            let at = queue.partition_point(|r| r.pos() < record.pos());
            queue.insert(at, record);
        }
        Ok(())
    }
}

impl Owned {
    /// Acknowledges the first `handed` records of `batch` (they were handed out and finished)
    /// and releases the rest for redelivery, under one lock, with one head move per lane.
    fn finish_batch(&self, batch: &mut Vec<Found>, handed: usize) -> Result<(), AckError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut local = self.lock();
        let local = &mut *local;
        if self.lost() {
            return Err(AckError::Closed);
        }
        let mut at_head: [Option<usize>; PRIORITIES] = [None; PRIORITIES];
        let mut touched = [false; PRIORITIES];
        for (i, found) in batch.iter().enumerate().take(handed) {
            let lane = local.lane(found.lane).ok_or(AckError::Closed)?;
            if lane.ack(&found.record)? {
                at_head[found.lane] = Some(i);
            }
            touched[found.lane] = true;
        }
        failpoint("ack.marked");
        for p in (0..PRIORITIES).filter(|&p| touched[p]) {
            let lane = local.lane(p).ok_or(AckError::Closed)?;
            let limit = local.cursor[p].max(local.redeliver_end[p]);
            let first = at_head[p].map(|i| &batch[i].record);
            lane.advance_head_until(first, limit, &Futex)?;
            self.seg.check_threshold(p, false);
        }
        failpoint("ack.advanced");
        for found in batch.drain(handed..) {
            let queue = &mut local.released[found.lane];
            let at = queue.partition_point(|r| r.pos() < found.record.pos());
            queue.insert(at, found.record);
        }
        Ok(())
    }
}

/// The state a receiver shares with the messages it has handed out.
pub(super) struct Owned {
    pub(super) seg: Arc<Attachment>,
    pub(super) epoch: u64,
    /// The fork generation of the process that owns the queue: a forked child's copy of this
    /// state owns nothing (it does not hold the owner lock) and must not touch the lanes.
    pub(super) generation: u64,
    pub(super) local: Mutex<Local>,
}

/// Process-local receiving state, behind one mutex (uncontended unless messages are
/// acknowledged on other threads).
pub(super) struct Local {
    /// The owner lock, shared with the receiver while it lives: the proof of ownership every
    /// owner operation on a lane needs. Taken out when the receiver is dropped (closed): from
    /// then on message handles get [`AckError::Closed`] and nothing touches the lanes. Only
    /// the receiver's own reference can be the last, so the lock is released by its drop.
    pub(super) guard: Option<Arc<OwnerGuard>>,
    /// Per lane, the next position to look at.
    pub(super) cursor: [u64; PRIORITIES],
    /// Per lane, positions before this were delivered by an earlier owner (or an earlier
    /// receiver of this one) and are redelivered first.
    pub(super) redeliver_end: [u64; PRIORITIES],
    /// Per lane, messages given back by [`Message::release`] (or a panic), by position.
    pub(super) released: [VecDeque<RecordRef>; PRIORITIES],
}

impl Local {
    /// The owner's view of lane `p`: `None` once closed, or in a forked child's copy.
    #[inline]
    pub(super) fn lane(&self, p: usize) -> Option<&LaneOwner<'_>> {
        self.guard.as_ref()?.lane(p)
    }
}

impl Owned {
    pub(super) fn lock(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another process has taken the queue since this receiver got it. (Every caller
    /// has already turned a forked child's copy away, before locking anything.)
    pub(super) fn lost(&self) -> bool {
        self.seg.shared().owner.epoch.load(Ordering::Relaxed) != self.epoch
    }

    /// Whether this is a copy a `fork`ed child inherited.
    pub(super) fn forked_copy(&self) -> bool {
        self.generation != fork_generation()
    }
}

/// The owner of a queue: the one process (and thread) that receives. Dropping it releases
/// ownership; messages it delivered and that are not yet acknowledged stay in the queue and are
/// redelivered to the next owner.
pub struct Receiver {
    pub(super) owned: Arc<Owned>,
    /// The owner lock (see `Local::guard`); declared after `owned`, so it is dropped last.
    pub(super) guard: Arc<OwnerGuard>,
    pub(super) ownership: Ownership,
    pub(super) spin: Duration,
    pub(super) discarded: u64,
    /// Bumped by this receiver's [`Canceller`]s.
    pub(super) cancels: Arc<AtomicU64>,
    /// The records of a batch being received, kept to reuse its memory.
    pub(super) batch: Vec<Found>,
    /// The pollable descriptor, once asked for ([`Receiver::ready_fd`]).
    pub(super) ready: Option<ReadyFd>,
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
        // Its thread looks at the lanes: ended before they close.
        drop(self.ready.take());
        if self.owned.forked_copy() {
            // A forked child's copy holds nothing, and its copy of the mutex may be locked for
            // ever (held by a thread of the parent at the fork): touch neither.
            return;
        }
        // Close first, so that no message handle touches the lanes once the lock is released.
        let mut local = self.owned.lock();
        // Not on a segment a peer has shrunk: touching a page that is gone is a SIGBUS.
        let whole = self.owned.seg.check_size().is_ok();
        if whole && !self.owned.lost() {
            // Senders left waiting by this owner's last head moves are not kept waiting for
            // the next one. (Not on a segment a peer has shrunk: that would be a SIGBUS.)
            for p in 0..PRIORITIES {
                if let Some(lane) = local.lane(p) {
                    lane.wake_owed(&Futex);
                }
            }
        }
        let had = local.guard.take().is_some() && whole && !self.owned.lost();
        drop(local);
        if had {
            self.owned.seg.emit(
                crate::segment::events::kind::OWNER_LEFT,
                self.owned.epoch,
                0,
            );
        }
        // `self.guard`, dropped after this, releases the lock.
    }
}

impl Receiver {
    /// A handle that interrupts this receiver's blocked receives from another thread or a
    /// signal handler (SA-Forum's `saMsgMessageCancel`; see [`Canceller`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// let domain = Domain::new(&format!("doc-cancel-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let mut rx = q.receiver()?;
    /// let cancel = rx.canceller();
    /// let t = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(50));
    ///     cancel.cancel();
    /// });
    /// assert!(matches!(rx.recv(), Err(RecvError::Interrupted)));
    /// t.join().unwrap();
    /// q.sender().send(b"still here")?; // nothing lost: the next receive waits as usual
    /// assert_eq!(rx.recv()?.payload(), b"still here");
    /// # drop(rx); Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn canceller(&self) -> Canceller {
        Canceller {
            seg: self.owned.seg.clone(),
            cancels: self.cancels.clone(),
        }
    }

    /// Waits to own `queue`, as a standby; see [`Queue::standby`].
    ///
    /// # Errors
    ///
    /// As [`Queue::standby`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-receiver-standby-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use baton::Receiver;
    /// use std::time::Duration;
    /// // Nobody owns the queue: the wait ends at once.
    /// let rx = Receiver::standby(&q, Some(Duration::from_secs(1)))?;
    /// assert!(!rx.took_over());
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        self.recv_until(Deadline::Never)
    }

    /// Receives the next message, waiting at most `timeout` (one too long for the clock, such
    /// as `Duration::MAX`, waits without limit).
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
        self.recv_until(Deadline::After(timeout))
    }

    /// As [`Receiver::recv_timeout`], but interrupted by every cancel of this receiver's
    /// cancellers after `since` ([`Canceller::point`]), even one made before this call began:
    /// for a caller that looks for its own reasons to stop before it waits (a C handle closed
    /// from another thread), and must not sleep through a cancel made between its look and
    /// its wait.
    ///
    /// # Errors
    ///
    /// [`RecvError::Interrupted`] if a cancel came after `since` (at once if it came before the
    /// call, and no message is waiting), and as [`Receiver::recv_timeout`].
    ///
    /// # Panics
    ///
    /// If `since` is a point of another handle's canceller.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// use std::time::Duration;
    /// # let domain = Domain::new(&format!("doc-recv-since-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut rx = q.receiver()?;
    /// let canceller = rx.canceller();
    /// let since = canceller.point(); // before this thread looks at its own state
    /// canceller.cancel(); // another thread, between the look and the wait
    /// let r = rx.recv_timeout_since(since, Duration::MAX);
    /// assert!(matches!(r, Err(RecvError::Interrupted))); // not asleep for ever
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout_since(
        &mut self,
        since: CancelPoint,
        timeout: Duration,
    ) -> Result<Message, RecvError> {
        since.check_of(&self.cancels);
        let found = self.next_record_since(Deadline::After(timeout), since)?;
        self.deliver(found)
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

    /// Sets how long a blocking receive polls before sleeping (default 50 µs; zero sleeps at once;
    /// `Duration::MAX` polls without end). Polling is a fast path: it does not look at the
    /// file's size (`docs/security.md`, *Truncation*).
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-set-spin-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use std::time::Duration;
    /// let mut rx = q.receiver()?;
    /// rx.set_spin(Duration::ZERO); // sleep on the futex at once: no CPU spent waiting
    /// assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// The ownership epoch this receiver holds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-epoch-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let first = q.receiver()?.epoch(); // owned, then closed
    /// let second = q.receiver()?.epoch();
    /// assert!(second > first); // every owner has an epoch of its own
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn epoch(&self) -> u64 {
        self.ownership.epoch
    }

    /// Whether this receiver took the queue over from an owner that had died.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-took-over-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let rx = q.receiver()?;
    /// assert!(!rx.took_over()); // the previous owner (none) did not die holding the queue
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn took_over(&self) -> bool {
        self.ownership.took_over
    }

    /// How many waiting messages [`ReceiverOptions::empty`] discarded.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-discarded-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let rx = q.receiver()?;
    /// assert_eq!(rx.discarded(), 0); // not opened with `empty`
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Acknowledges every message in the queue without delivering it; returns how many.
    pub(super) fn discard_all(&mut self) -> Result<u64, RecvError> {
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
        let found = self.next_record(Deadline::Never)?;
        self.deliver_in_place(found)
    }

    /// As [`Receiver::recv_in_place`], waiting at most `timeout` (without limit if it is too
    /// long for the clock).
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-in-place-timeout-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use baton::RecvError;
    /// use std::time::Duration;
    /// let mut rx = q.receiver()?;
    /// assert!(matches!(rx.recv_in_place_timeout(Duration::from_millis(5)), Err(RecvError::Timeout)));
    /// q.sender().send(b"now")?;
    /// assert_eq!(rx.recv_in_place_timeout(Duration::from_secs(1))?.payload(), b"now");
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_in_place_timeout(&mut self, timeout: Duration) -> Result<InPlace<'_>, RecvError> {
        let found = self.next_record(Deadline::After(timeout))?;
        self.deliver_in_place(found)
    }

    /// As [`Receiver::recv_in_place`] if a message is waiting.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-try-in-place-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use baton::RecvError;
    /// let mut rx = q.receiver()?;
    /// assert!(matches!(rx.try_recv_in_place(), Err(RecvError::Empty)));
    /// q.sender().send(b"here")?;
    /// assert_eq!(rx.try_recv_in_place()?.payload(), b"here");
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        let found = self.take_record()?.ok_or(RecvError::Empty)?;
        self.deliver_in_place(found)
    }

    /// Takes the messages waiting, up to `max`, without waiting; hands each to `f` in place
    /// (no copy, no allocation), in the order [`Receiver::recv`] would; then acknowledges them
    /// all at once. Returns how many it handed out: 0 when none waited (or `max` is 0).
    ///
    /// The batch pays once what `recv` pays per message: the head move with its journal and
    /// counters, and the look for senders waiting for space (a `SeqCst` fence); and `f` gets
    /// the payload in place instead of a copy. At-least-once as ever: a process that dies
    /// before this returns has the messages it handed out delivered again, flagged. If `f`
    /// panics, the messages it finished are acknowledged, the one it panicked on is released
    /// (delivered again, flagged), those it did not reach stay as they were, and the panic
    /// goes on.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`], except that an empty queue is `Ok(0)`. An error met after
    /// some messages were handed out ends the batch early; the next call reports it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-batch-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let tx = q.sender();
    /// for i in 0..10u8 {
    ///     tx.send(&[i])?;
    /// }
    /// let mut rx = q.receiver()?;
    /// let mut sum = 0;
    /// while rx.try_recv_batch(4, |payload, _meta| sum += payload[0] as u32)? > 0 {}
    /// assert_eq!(sum, 45);
    /// assert_eq!(q.status().lanes[3].messages, 0); // all acknowledged
    /// # drop(rx); Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8], &Metadata),
    ) -> Result<usize, RecvError> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        // One record at a time is taken and handed out: only records handed out are ever
        // given back (flagged) if `f` panics; the ones not reached stay untaken, unflagged.
        let mut failed = None;
        let mut finished = 0;
        // Per message handed out, a tracked send's token: its sender is told once the batch
        // is acknowledged.
        let mut reports = Vec::new();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while batch.len() < max {
                let found = match self.take_record() {
                    Ok(Some(found)) => found,
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                batch.push(found);
                let found = &batch[batch.len() - 1];
                let Some(view) = self.guard.lane(found.lane) else {
                    failed = Some(RecvError::ForkedCopy);
                    break;
                };
                // SAFETY: the record is taken and not acknowledged, so no sender writes its
                // cells, until `finish_batch` below; the slice does not outlive this call.
                let payload = match unsafe { view.record_payload(&found.record) } {
                    Ok(p) => p,
                    Err(e) => {
                        failed = Some(RecvError::Corrupt(Damage::Lane(e)));
                        break;
                    }
                };
                let (reply_to, tracked, skip) = match split_request(found.record.header(), payload)
                {
                    Ok(split) => split,
                    Err(d) => {
                        failed = Some(RecvError::Corrupt(d));
                        break;
                    }
                };
                reports.push(tracked);
                self.count_delivery(found.redelivered);
                f(
                    &payload[skip..],
                    &Metadata::of(found.lane, &found.record, found.redelivered, reply_to),
                );
                finished += 1;
            }
        }));
        let acked = self.owned.finish_batch(&mut batch, finished);
        self.batch = batch;
        if acked.is_ok() {
            for to in reports.into_iter().take(finished).flatten() {
                super::request::report_delivery(
                    &self.owned.seg,
                    to,
                    super::request::DELIVERED_ACKNOWLEDGED,
                );
            }
        }
        if let Err(panic) = run {
            std::panic::resume_unwind(panic);
        }
        acked.map_err(|e| match e {
            AckError::Corrupt(d) => RecvError::Corrupt(d),
            AckError::Closed => RecvError::OwnershipLost {
                held: self.owned.epoch,
                now: self.owned.seg.shared().owner.epoch.load(Ordering::Relaxed),
            },
        })?;
        match failed {
            // What was handed out before the error is acknowledged; the error comes again.
            Some(e) if finished == 0 => Err(e),
            _ => Ok(finished),
        }
    }

    pub(super) fn recv_until(&mut self, deadline: Deadline) -> Result<Message, RecvError> {
        let found = self.next_record(deadline)?;
        self.deliver(found)
    }

    pub(super) fn take(&mut self) -> Result<Option<Message>, RecvError> {
        self.take_record()?
            .map(|found| self.deliver(found))
            .transpose()
    }

    /// Waits for the next record: polls for the spin window, then sleeps on the receiver event.
    pub(super) fn next_record(&mut self, deadline: Deadline) -> Result<Found, RecvError> {
        let cancel = CancelPoint::now(&self.cancels);
        self.next_record_since(deadline, cancel)
    }

    /// As [`Receiver::next_record`], interrupted by any cancel after `cancel`.
    fn next_record_since(
        &mut self,
        deadline: Deadline,
        cancel: CancelPoint,
    ) -> Result<Found, RecvError> {
        if let Some(f) = self.take_record()? {
            return Ok(f);
        }
        let deadline = deadline.start();
        let mut window = SpinWindow::new(self.spin, deadline);
        while window.open() {
            if cancel.passed(&self.cancels) {
                return Err(RecvError::Interrupted);
            }
            if let Some(f) = self.take_record()? {
                return Ok(f);
            }
            baton_ring::spin_hint();
        }
        let seg = self.owned.seg.clone();
        loop {
            seg.check_size().map_err(RecvError::Corrupt)?;
            // No tick: a sender that dies (with a message committed and not announced, or a
            // claim it will never commit) wakes this sleep through the death watch.
            let mut outcome = None;
            let woke = seg.shared().data_event.wait_until_mapped(
                &DeathWatch(&seg),
                deadline,
                // Looked at after each sleep, before the event is touched again.
                || seg.check_size().is_ok(),
                || {
                    // Woken (or about to sleep): the segment may have been shrunk meanwhile; look
                    // before touching the lanes.
                    outcome = match seg.check_size() {
                        _ if cancel.passed(&self.cancels) => Some(Err(RecvError::Interrupted)),
                        Err(e) => Some(Err(RecvError::Corrupt(e))),
                        Ok(()) => self.take_record().transpose(),
                    };
                    outcome.is_some()
                },
            );
            if woke.is_none() {
                continue; // shrunk while it slept: the first look says so
            }
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
    pub(super) fn take_record(&mut self) -> Result<Option<Found>, RecvError> {
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
        let mut local = owned.lock();
        let found = self.take_locked(&mut local);
        drop(local);
        if let (Ok(None), Some(r)) = (&found, &self.ready) {
            r.rearm(); // found nothing: the fd goes quiet until something comes
        }
        found
    }

    /// [`Receiver::take_record`] under the receiver's lock, after its checks.
    fn take_locked(&self, local: &mut Local) -> Result<Option<Found>, RecvError> {
        let seg = &self.owned.seg;
        let max = seg.attributes().max_message;
        for p in 0..PRIORITIES {
            if let Some(r) = local.released[p].pop_front() {
                return Ok(Some(Found {
                    lane: p,
                    record: r,
                    redelivered: true,
                }));
            }
        }
        let Some(lanes) = self.guard.lanes() else {
            return Err(RecvError::ForkedCopy);
        };
        for (p, lane) in lanes.iter().enumerate() {
            if local.cursor[p] >= local.redeliver_end[p] {
                continue; // nothing (left) to deliver again: the usual case, decided without a load
            }
            // What the head passed is freed: nothing there to deliver again (an acknowledgement
            // may have freed records of the range that an earlier owner acknowledged).
            local.cursor[p] = local.cursor[p].max(lane.head());
            while local.cursor[p] < local.redeliver_end[p] {
                match lane.at(local.cursor[p], max)? {
                    Slot::Skip { cells } => local.cursor[p] += cells,
                    Slot::Record(r) => {
                        local.cursor[p] += r.cells();
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
        for (p, lane) in lanes.iter().enumerate() {
            // The head may have moved past the cursor over padding or cancelled claims that the
            // cursor had not reached (they need no delivery): follow it, since their stamps may
            // already belong to the next lap.
            local.cursor[p] = local.cursor[p].max(lane.head());
            let mut skipped = false;
            loop {
                let at = local.cursor[p];
                match lane.at(at, max)? {
                    Slot::End => break,
                    Slot::Skip { cells } => {
                        local.cursor[p] += cells;
                        skipped = true;
                    }
                    Slot::InFlight { sender } => {
                        if !Self::check_stuck(seg, sender) {
                            break;
                        }
                    }
                    Slot::Record(r) => {
                        failpoint("recv.found");
                        local.cursor[p] += r.cells();
                        lane.set_read_cursor(local.cursor[p]);
                        failpoint("recv.marked");
                        if skipped {
                            lane.advance_head(&Futex)?;
                            seg.check_threshold(p, false);
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
                seg.check_threshold(p, false);
            }
        }
        // Nothing to receive: wake the senders that head moves left waiting for space.
        for lane in lanes {
            lane.wake_owed(&Futex);
        }
        Ok(None)
    }

    /// A file descriptor that is readable while a message waits for this receiver, for
    /// `poll`, `epoll`, `select` or an async runtime's reactor (SA-Forum's selection object).
    ///
    /// Readable from the moment a message is there until a receive finds the queue empty:
    /// receive with [`Receiver::try_recv`] (or any receive) until it returns
    /// [`RecvError::Empty`], then wait on the fd again. Level-triggered for `poll`; with
    /// `EPOLLET`, one edge each time the queue goes from empty to not empty, so drain it on
    /// each edge. A readable fd may be a false alarm (a receive then finds nothing); a
    /// waiting message never leaves it unreadable. While messages keep coming, taking them
    /// makes no syscall; a receive that finds nothing costs a `read` and a wake-up.
    ///
    /// The first call starts a helper thread that sleeps on the queue for the fd (the death
    /// watch included); the fd and the thread end with the receiver. The same fd each call.
    /// A forked child's copy of the receiver owns nothing and its fd stays quiet.
    ///
    /// # Errors
    ///
    /// [`RecvError::ForkedCopy`] in a forked child; [`RecvError::NoHelper`] if the eventfd or
    /// the thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, RecvError};
    /// use std::os::fd::AsRawFd;
    /// let domain = Domain::new(&format!("doc-ready-fd-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut rx = q.receiver()?;
    /// let fd = rx.ready_fd()?.as_raw_fd();
    /// q.sender().send(b"job")?;
    /// let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1); // readable
    /// assert_eq!(rx.try_recv()?.payload(), b"job");
    /// assert!(matches!(rx.try_recv(), Err(RecvError::Empty))); // drained: quiet again
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    /// # drop(rx); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready_fd(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, RecvError> {
        if self.owned.forked_copy() {
            return Err(RecvError::ForkedCopy);
        }
        if self.ready.is_none() {
            let owned = self.owned.clone();
            let r = ReadyFd::start(
                self.owned.seg.clone(),
                Arc::new(|seg: &Attachment| &seg.shared().data_event),
                move || ready_to_take(&owned),
            )
            .map_err(|e| RecvError::NoHelper(e.kind()))?;
            self.ready = Some(r);
        }
        Ok(self.ready.as_ref().expect("just made").fd())
    }

    /// An uncommitted claim of sender slot `sender` sits at a cursor. If no live process holds
    /// the slot, its claims are abandoned (rule 3 of `recovery`). Returns whether to look again
    /// now. While the holder lives, a sleeper is woken by its commit or, through the death
    /// watch, by its death.
    pub(super) fn check_stuck(seg: &Segment, sender: u8) -> bool {
        let alive = seg
            .shared()
            .slots
            .get(sender as usize)
            .is_some_and(|s| s.lock.holder() == crate::sys::robust::Holder::Alive);
        !alive && recovery::reclaim_if_dead(seg, sender).is_some_and(|n| n > 0)
    }

    /// Counts a redelivery in the queue's counter.
    pub(super) fn count_delivery(&self, redelivered: bool) {
        if redelivered {
            self.owned
                .seg
                .shared()
                .stats
                .redelivered
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn deliver_in_place(&mut self, found: Found) -> Result<InPlace<'_>, RecvError> {
        let Found {
            lane,
            record,
            redelivered,
        } = found;
        self.count_delivery(redelivered);
        let owned = &*self.owned;
        let payload: &[u8] = match self.guard.lane(lane) {
            // SAFETY: the record stays unacknowledged, so its cells stay untouched by senders,
            // for as long as the `InPlace` (which acknowledges or releases it when it ends)
            // lives; it borrows this receiver, so the owner lock stays held as long.
            Some(view) => unsafe { view.record_payload(&record) }.map_err(Damage::Lane)?,
            // Only `take_record`, which just had the views, finds records: not reached.
            None => return Err(RecvError::ForkedCopy),
        };
        let (reply_to, tracked, skip) = split_request(record.header(), payload)?;
        Ok(InPlace {
            owned,
            lane,
            meta: Metadata::of(lane, &record, redelivered, reply_to),
            record: Some(record),
            payload: &payload[skip..],
            tracked,
        })
    }

    pub(super) fn deliver(&self, found: Found) -> Result<Message, RecvError> {
        let Found {
            lane,
            record,
            redelivered,
        } = found;
        let mut payload = Vec::with_capacity(record.header().len as usize);
        match self.guard.lane(lane) {
            Some(view) => view
                .copy_payload(&record, &mut payload)
                .map_err(Damage::Lane)?,
            // Only `take_record`, which just had the views, finds records: not reached.
            None => return Err(RecvError::ForkedCopy),
        }
        let (reply_to, tracked, skip) = split_request(record.header(), &payload)?;
        payload.drain(..skip);
        self.count_delivery(redelivered);
        Ok(Message {
            meta: Metadata::of(lane, &record, redelivered, reply_to),
            payload,
            ticket: Some(Ticket::Owned {
                owned: self.owned.clone(),
                priority: lane,
                record,
            }),
            tracked,
        })
    }
}

/// A record found for delivery.
pub(super) struct Found {
    /// Its lane (priority).
    pub(super) lane: usize,
    /// Where it is.
    pub(super) record: RecordRef,
    /// It was delivered before and not acknowledged.
    pub(super) redelivered: bool,
}

/// Whether a receive of `owned` would find something now (or fail: its user must be told),
/// without taking it: what the ready fd's thread asks.
fn ready_to_take(owned: &Owned) -> bool {
    if owned.forked_copy() {
        return false;
    }
    let seg = &owned.seg;
    if seg.is_removed() || owned.lost() {
        return true; // the receive says so
    }
    let local = owned.lock();
    if local.released.iter().any(|q| !q.is_empty()) {
        return true;
    }
    let max = seg.attributes().max_message;
    for p in 0..PRIORITIES {
        let Some(lane) = local.lane(p) else {
            return true; // closed: the receive says so
        };
        let mut at = local.cursor[p].max(lane.head());
        loop {
            match lane.at(at, max) {
                Err(_) | Ok(Slot::Record(_)) => return true,
                Ok(Slot::End) => break,
                Ok(Slot::Skip { cells }) => at += cells,
                Ok(Slot::InFlight { sender }) => {
                    if !Receiver::check_stuck(seg, sender) {
                        break;
                    }
                }
            }
        }
    }
    false
}
