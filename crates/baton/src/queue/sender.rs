//! Sending: [`Sender`] and the zero-copy [`Loan`].

use super::IDLE_TICK;
use crate::error::{SendError, TrySendError};
use crate::recovery::{self, failpoint, Attachment};
use crate::segment::PRIORITIES;
use crate::sys::clock::{monotonic_ns, Deadline};
use crate::sys::futex::Futex;
use crate::sys::liveness::fork_generation;
use baton_ring::lane::{record_cells, Claim, ClaimError, CommitError, LaneSender, RecordHeader};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends messages to a queue. `Clone`, `Send` and `Sync`; any number may send at once.
#[derive(Debug, Clone)]
pub struct Sender {
    pub(super) seg: Arc<Attachment>,
    pub(super) priority: u8,
    pub(super) msg_type: i64,
    pub(super) version: u32,
    pub(super) pid: u32,
}

impl Sender {
    /// This sender, sending at priority `p` (0 highest, 3 lowest).
    ///
    /// # Errors
    ///
    /// [`SendError::InvalidPriority`] above 3.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-with-priority-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let urgent = q.sender().with_priority(0)?; // 0 is the highest; the default is 3
    /// q.sender().send(b"routine")?;
    /// urgent.send(b"urgent")?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.payload(), b"urgent");
    /// assert!(q.sender().with_priority(4).is_err());
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_priority(mut self, p: u8) -> Result<Sender, SendError> {
        if p as usize >= PRIORITIES {
            return Err(SendError::InvalidPriority(p));
        }
        self.priority = p;
        Ok(self)
    }

    /// This sender, stamping messages with a user type.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-with-type-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().with_type(42).send(b"typed")?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.msg_type(), 42);
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_type(mut self, msg_type: i64) -> Sender {
        self.msg_type = msg_type;
        self
    }

    /// This sender, stamping messages with a user version.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-with-version-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().with_version(3).send(b"v3 layout")?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.version(), 3);
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        self.send_until(payload, Deadline::Never)
    }

    /// Sends, waiting at most `timeout` for space (without limit if it is too long for the
    /// clock, such as `Duration::MAX`).
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
        self.send_until(payload, Deadline::After(timeout))
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
        let lane = self
            .lane_for(payload.len(), self.priority)
            .map_err(TrySendError::Failed)?;
        let mut claimed = lane.try_claim(payload.len());
        if claimed == Err(ClaimError::Full) && self.free_finished(&lane) {
            claimed = lane.try_claim(payload.len());
        }
        match claimed {
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

    /// A file descriptor that becomes readable when space is freed in this sender's lane (its
    /// priority's): to wait for space in `poll`, `epoll` or an async runtime (see
    /// [`SpaceFd`](crate::SpaceFd)). It has a helper thread of its own; make one per waiting
    /// sender and keep it.
    ///
    /// # Errors
    ///
    /// [`SendError::NoSpaceFd`] if its eventfd or thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, TrySendError};
    /// use std::os::fd::AsRawFd;
    /// let domain = Domain::new(&format!("doc-space-fd-{}", std::process::id()))?;
    /// let attrs = Attributes { capacity: [4096; 4], max_message: 1024, ..Attributes::default() };
    /// let q = Queue::create(&domain, "q", &attrs)?;
    /// let tx = q.sender();
    /// let space = tx.space_fd()?;
    /// let mut rx = q.receiver()?;
    /// while tx.try_send(&[0u8; 1000][..]).is_ok() {} // until the lane is full
    /// space.arm()?; // then: arm, and try once more before waiting
    /// assert!(matches!(tx.try_send(&[0u8; 1000][..]), Err(TrySendError::Full(_))));
    /// let mut pfd = libc::pollfd { fd: space.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0); // still full
    /// while rx.try_recv().is_ok() {} // the receiver frees the lane
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1); // readable: try again
    /// # drop(rx); drop(space); Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn space_fd(&self) -> Result<super::ready::SpaceFd, SendError> {
        super::ready::SpaceFd::start(self.seg.clone(), self.priority as usize)
            .map_err(|e| SendError::NoSpaceFd(e.kind()))
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
        self.loan_until(len, priority, Deadline::Never)
    }

    /// As [`Sender::loan`], waiting at most `timeout` for space (without limit if it is too
    /// long for the clock).
    ///
    /// # Errors
    ///
    /// As [`Sender::loan`], and [`SendError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-loan-timeout-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use std::time::Duration;
    /// let tx = q.sender();
    /// let mut loan = tx.loan_timeout(4, 1, Duration::from_millis(10))?;
    /// loan.copy_from_slice(b"ping");
    /// loan.commit()?;
    /// assert_eq!(q.status().lanes[1].messages, 1);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loan_timeout(
        &self,
        len: usize,
        priority: u8,
        timeout: Duration,
    ) -> Result<Loan<'_>, SendError> {
        self.loan_until(len, priority, Deadline::After(timeout))
    }

    /// As [`Sender::loan`] if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] with the length asked for; other failures are
    /// [`TrySendError::Failed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-try-loan-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let tx = q.sender();
    /// match tx.try_loan(8, 2) {
    ///     Ok(mut loan) => {
    ///         loan.copy_from_slice(&7u64.to_le_bytes());
    ///         loan.commit()?;
    ///     }
    ///     Err(e) => panic!("an empty queue has room: {e}"),
    /// }
    /// # drop(tx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_loan(&self, len: usize, priority: u8) -> Result<Loan<'_>, TrySendError<usize>> {
        let lane = self.lane_for(len, priority).map_err(TrySendError::Failed)?;
        let mut claimed = lane.try_claim(len);
        if claimed == Err(ClaimError::Full) && self.free_finished(&lane) {
            claimed = lane.try_claim(len);
        }
        match claimed {
            Ok(claim) => Ok(Loan::new(self, lane, claim, len)),
            Err(ClaimError::Full) => {
                self.count_rejected();
                Err(TrySendError::Full(len))
            }
            Err(ClaimError::Corrupt(c)) => Err(TrySendError::Failed(c.into())),
        }
    }

    pub(super) fn loan_until(
        &self,
        len: usize,
        priority: u8,
        deadline: Deadline,
    ) -> Result<Loan<'_>, SendError> {
        let lane = self.lane_for(len, priority)?;
        let claim = self.claim_until(&lane, len, deadline)?;
        Ok(Loan::new(self, lane, claim, len))
    }

    pub(super) fn count_rejected(&self) {
        self.seg
            .shared()
            .stats
            .rejected_full
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The sender's view of the lane of `priority` for a payload of `len` bytes, under this
    /// process's sender slot.
    #[inline]
    pub(super) fn lane_for(&self, len: usize, priority: u8) -> Result<LaneSender<'_>, SendError> {
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
        recovery::sender_lane(&self.seg, priority as usize).map_err(SendError::NoSenderSlot)
    }

    #[inline]
    pub(super) fn send_until(&self, payload: &[u8], deadline: Deadline) -> Result<(), SendError> {
        let lane = self.lane_for(payload.len(), self.priority)?;
        let claim = self.claim_until(&lane, payload.len(), deadline)?;
        self.finish(&lane, claim, payload)
    }

    /// Claims `len` bytes, waiting for space until `deadline` (fixed when the wait begins).
    #[inline]
    pub(super) fn claim_until(
        &self,
        lane: &LaneSender<'_>,
        len: usize,
        deadline: Deadline,
    ) -> Result<Claim, SendError> {
        match lane.try_claim(len) {
            Ok(claim) => Ok(claim),
            Err(ClaimError::Full) => self.claim_slow(lane, len, deadline.start()),
            Err(ClaimError::Corrupt(c)) => Err(c.into()),
        }
    }

    /// In a shared queue, moves the lane's head over what is acknowledged at it, if nobody is
    /// doing it (see `baton_ring::lane::sweep`); returns whether cells were freed. Nothing in
    /// an owned queue (only its owner frees cells).
    fn free_finished(&self, lane: &LaneSender<'_>) -> bool {
        let freed = self.seg.attributes().shared
            && super::consumer::OwnerLockSweep(&self.seg)
                .sweep(lane)
                .is_ok_and(|freed| freed > 0);
        if freed {
            if let Some(p) = (0..PRIORITIES).find(|&p| self.seg.lane(p).id() == lane.id()) {
                self.seg.check_threshold(p, false);
            }
        }
        freed
    }

    #[cold]
    pub(super) fn claim_slow(
        &self,
        lane: &LaneSender<'_>,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Claim, SendError> {
        self.wait_for_space(lane, deadline, || lane.try_claim(len))
    }

    /// Claims with `try_claim`, sleeping while the lane is full, until `deadline`.
    #[cold]
    fn wait_for_space<T>(
        &self,
        lane: &LaneSender<'_>,
        deadline: Option<Instant>,
        try_claim: impl Fn() -> Result<T, ClaimError>,
    ) -> Result<T, SendError> {
        let mut outcome = None;
        let attempt = || match try_claim() {
            Ok(claim) => Some(Ok(claim)),
            Err(ClaimError::Full) => None,
            Err(ClaimError::Corrupt(c)) => Some(Err(c.into())),
        };
        // No spin: a full lane frees cells in bursts (the owner wakes its waiting senders once
        // it has drained half the lane), so a sender sleeps at once and then fills the lane in
        // one go. Spinning (yielding) for space took the CPU of the processes that free it:
        // with competing consumers, every acknowledgement freed a cell that the spinning
        // sender refilled at once, and it never slept (4 consumers on 2 CPUs fell to a fifth
        // of their rate in some runs); one sender to one receiver ran 15% faster without it.
        // Bounded sleeps: a removed queue never frees space, so look again now and then.
        loop {
            self.seg.check_size().map_err(SendError::Corrupt)?;
            // A shared queue whose last sweeper died holding the sweep lock frees nothing
            // until someone sweeps: a waiting sender does, now and every tick.
            if self.free_finished(lane) {
                if let Some(o) = attempt() {
                    outcome = Some(o);
                    break;
                }
            }
            let until = Instant::now() + IDLE_TICK;
            let woke = lane.space_event().wait_until_mapped(
                &Futex,
                Some(deadline.map_or(until, |d| d.min(until))),
                || self.seg.check_size().is_ok(),
                || {
                    outcome = match self.seg.check_size() {
                        Err(e) => Some(Err(SendError::Corrupt(e))),
                        Ok(()) => attempt(),
                    };
                    outcome.is_some()
                },
            );
            if woke.is_none() {
                continue; // shrunk while it slept: the first look says so
            }
            if outcome.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.seg.is_removed() {
                return Err(SendError::Removed);
            }
        }
        outcome.unwrap_or_else(|| {
            self.count_rejected();
            Err(SendError::Timeout)
        })
    }

    /// Sends `messages` in order, waiting while the lane is full, in runs: as many as fit are
    /// claimed at once, written in place, and published by one commit and one wake-up (see
    /// `docs/design.md`, *Runs*). What [`Sender::send`] pays per message (the claim's two
    /// compare-and-swaps, the commit's, a `SeqCst` fence and a clock read), a run pays once.
    /// The messages of a run share their `sent_ns`. A receiver sees them one by one, as if
    /// sent one by one; a sender that dies before a run's commit leaves none of the run
    /// (counted once in `Status::abandoned`).
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`] if any message is too big (then nothing is sent); otherwise those
    /// of [`Sender::send`], after which the runs before the failing one are sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-send-batch-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "ticks", &Attributes::default())?;
    /// let ticks: Vec<[u8; 8]> = (0..100u64).map(|i| i.to_le_bytes()).collect();
    /// q.sender().send_batch(&ticks)?;
    /// let mut rx = q.receiver()?;
    /// for i in 0..100u64 {
    ///     assert_eq!(rx.recv()?.payload(), i.to_le_bytes());
    /// }
    /// # drop(rx); Queue::remove(&domain, "ticks")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&self, messages: &[M]) -> Result<(), SendError> {
        // The caller's `as_ref` runs once per message, here, before anything is claimed: a
        // panic (or a length that changes) between a claim and its commit would wedge the
        // lane or corrupt it. (Found in review.)
        let messages: Vec<&[u8]> = messages.iter().map(AsRef::as_ref).collect();
        self.send_runs(&messages, true).map(|_| ())
    }

    /// Sends, in order and in runs as [`Sender::send_batch`] does, as many of `messages` as
    /// fit now, without waiting; returns how many were sent: all of them, or the first `n`
    /// when the lane had no room for the next (none at all is `Ok(0)`). It counts no
    /// rejection in [`crate::Status::rejected_full`]: what to do with the rest is the
    /// caller's to decide.
    ///
    /// # Errors
    ///
    /// [`SendError::TooBig`] if any message is too big (then nothing is sent); otherwise those
    /// of [`Sender::try_send`], when the first run fails. A failure after some messages were
    /// sent returns how many were, and the next call meets the failure again (if it lasts).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-try-send-batch-{}", std::process::id()))?;
    /// let attrs = Attributes { capacity: [256; 4], max_message: 64, ..Default::default() };
    /// let q = Queue::create(&domain, "small", &attrs)?;
    /// let lines = [&b"one"[..], b"two", b"three", b"four", b"five"];
    /// let tx = q.sender();
    /// let sent = tx.try_send_batch(&lines)?; // four 64-byte cells: four of them fit
    /// assert_eq!(sent, 4);
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.payload(), b"one");
    /// assert_eq!(tx.try_send_batch(&lines[sent..])?, 1); // the rest, now that there is room
    /// # drop(rx); Queue::remove(&domain, "small")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send_batch<M: AsRef<[u8]>>(&self, messages: &[M]) -> Result<usize, SendError> {
        // As in `send_batch`: the caller's `as_ref` once, before anything is claimed.
        let messages: Vec<&[u8]> = messages.iter().map(AsRef::as_ref).collect();
        self.send_runs(&messages, false)
    }

    /// Sends `messages` in runs; waits for space if `wait`, else stops at the first run that
    /// does not fit. Returns how many were sent; with `wait`, all of them or an error.
    fn send_runs(&self, messages: &[&[u8]], wait: bool) -> Result<usize, SendError> {
        let Some(longest) = messages.iter().map(|m| m.len()).max() else {
            return Ok(0);
        };
        let lane = self.lane_for(longest, self.priority)?;
        let cells: Vec<u64> = messages.iter().map(|m| record_cells(m.len())).collect();
        let mut i = 0;
        while i < messages.len() {
            match self.send_run(&lane, &messages[i..], &cells[i..], wait) {
                Ok(0) => break, // full, and not waiting
                Ok(n) => i += n,
                // What was sent is said; the failure comes again on the next call.
                Err(_) if !wait && i > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(i)
    }

    /// Claims one run at the head of `messages` (of `cells` cells each), writes and commits
    /// it; returns how many messages it held (0: full and not `wait`ing).
    fn send_run(
        &self,
        lane: &LaneSender<'_>,
        messages: &[&[u8]],
        cells: &[u64],
        wait: bool,
    ) -> Result<usize, SendError> {
        let (first, rest) = (messages[0].len(), &cells[1..]);
        let mut claimed = lane.try_claim_run(first, rest);
        if !wait && claimed == Err(ClaimError::Full) && self.free_finished(lane) {
            claimed = lane.try_claim_run(first, rest);
        }
        let (claim, n) = match claimed {
            Ok(run) => run,
            Err(ClaimError::Full) if !wait => return Ok(0),
            Err(ClaimError::Full) => {
                self.wait_for_space(lane, None, || lane.try_claim_run(first, rest))?
            }
            Err(ClaimError::Corrupt(c)) => return Err(c.into()),
        };
        failpoint("send.claimed");
        let sent_ns = monotonic_ns();
        let mut at = 0;
        for &payload in &messages[..n] {
            let header = RecordHeader {
                len: payload.len() as u32,
                flags: 0,
                msg_type: self.msg_type,
                version: self.version,
                sender_pid: self.pid,
                sent_ns,
            };
            lane.write_in_run(&claim, at, &header, payload);
            at += record_cells(payload.len());
        }
        failpoint("send.written");
        self.announce_committed(lane, lane.commit_run(claim, &cells[..n]))?;
        Ok(n)
    }

    /// Copies `payload` into a claimed record and publishes it.
    #[inline]
    pub(super) fn finish(
        &self,
        lane: &LaneSender<'_>,
        claim: Claim,
        payload: &[u8],
    ) -> Result<(), SendError> {
        failpoint("send.claimed");
        lane.write_payload(&claim, payload);
        self.publish(lane, claim, payload.len())
    }

    /// Writes the header of a claimed record whose payload is in place, commits it and wakes
    /// the receiver if it sleeps.
    #[inline]
    pub(super) fn publish(
        &self,
        lane: &LaneSender<'_>,
        claim: Claim,
        len: usize,
    ) -> Result<(), SendError> {
        self.publish_flagged(lane, claim, len, 0)
    }

    /// [`Sender::publish`] of a record with header flags `flags` (a request's).
    #[inline]
    pub(super) fn publish_flagged(
        &self,
        lane: &LaneSender<'_>,
        claim: Claim,
        len: usize,
        flags: u32,
    ) -> Result<(), SendError> {
        let header = RecordHeader {
            len: len as u32,
            flags,
            msg_type: self.msg_type,
            version: self.version,
            sender_pid: self.pid,
            sent_ns: monotonic_ns(),
        };
        lane.write_header(&claim, &header);
        failpoint("send.written");
        self.announce_committed(lane, lane.commit(claim))
    }

    /// After a commit (of a record or a run) that returned `committed`: wakes the receiver if
    /// it sleeps, and says whether the queue was removed meanwhile.
    #[inline]
    fn announce_committed(
        &self,
        lane: &LaneSender<'_>,
        committed: Result<(), CommitError>,
    ) -> Result<(), SendError> {
        committed.map_err(|e| match e {
            CommitError::Abandoned => SendError::Abandoned,
            CommitError::Corrupt(c) => c.into(),
        })?;
        failpoint("send.committed");
        // `notify` ends with a SeqCst fence: a removal that this load does not see came after
        // the commit, and then removed the message along with the queue, as `rm` says.
        self.seg.announce_message(Some(lane));
        self.seg.check_threshold_after_send(lane.id());
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
    pub(super) sender: &'a Sender,
    pub(super) lane: LaneSender<'a>,
    pub(super) claim: Option<Claim>,
    pub(super) payload: &'a mut [u8],
    /// The fork generation that made it: a forked child's copy holds no claim of its own.
    pub(super) generation: u64,
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.payload.len())
            .finish()
    }
}

impl<'a> Loan<'a> {
    pub(super) fn new(
        sender: &'a Sender,
        lane: LaneSender<'a>,
        claim: Claim,
        len: usize,
    ) -> Loan<'a> {
        // SAFETY: the claim gives this sender the only access to the record's cells until it
        // commits or cancels, which consumes the claim held next to this borrow.
        let payload = unsafe { lane.claimed_payload(&claim, len) };
        Loan {
            sender,
            lane,
            claim: Some(claim),
            payload,
            generation: fork_generation(),
        }
    }

    /// Whether this is a copy a `fork`ed child inherited.
    fn forked_copy(&self) -> bool {
        self.generation != fork_generation()
    }

    /// Publishes the message.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`] after its space is claimed: [`SendError::Removed`],
    /// [`SendError::Abandoned`], [`SendError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-loan-commit-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// let tx = q.sender();
    /// let mut loan = tx.loan(3, 3)?;
    /// loan.copy_from_slice(b"abc");
    /// loan.commit()?; // now the receiver can see it; dropping a loan instead cancels it
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.payload(), b"abc");
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(mut self) -> Result<(), SendError> {
        if self.forked_copy() {
            return Err(SendError::ForkedCopy);
        }
        let claim = self
            .claim
            .take()
            .expect("a loan holds its claim until it ends");
        let len = self.payload.len();
        self.sender.publish(&self.lane, claim, len)
    }
}

/// The loan's bytes; empty in a forked child's copy (the cells are the parent's to write).
impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.forked_copy() {
            return &[];
        }
        self.payload
    }
}

/// The loan's bytes, to write; empty in a forked child's copy.
impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        if self.forked_copy() {
            return &mut [];
        }
        self.payload
    }
}

impl Drop for Loan<'_> {
    /// Cancels an uncommitted loan: the receiver steps over it.
    fn drop(&mut self) {
        if self.forked_copy() {
            // The claim is the parent's, which still writes and commits it: let it go
            // without cancelling it.
            let _parents = self.claim.take();
            return;
        }
        if let Some(claim) = self.claim.take() {
            self.lane.cancel(claim);
            self.sender.seg.announce_message(None);
        }
    }
}
