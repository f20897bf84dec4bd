//! Request/reply (SA-Forum's `saMsgMessageSendReceive` and `saMsgMessageReply`):
//! [`Sender::request`] sends a message and waits for its one reply, which the receiver (the
//! owner, or a consumer of a shared queue) writes with [`Message::reply`] or [`Queue::reply`]
//! straight into a reply box that the requester holds while it waits.
//!
//! A request is an ordinary record flagged [`REQUEST`] whose first 8 bytes are its reply token
//! (the box's number and the claim's sequence number, `baton_ring::reply::Token`); receivers
//! take the token off and show it as [`Metadata::reply_to`]. The boxes live in the queue's
//! segment after the lanes ([`crate::Attributes::reply_boxes`] of them, each holding a reply
//! of up to `max_message` bytes). What makes exactly one reply reach the requester, and what
//! happens when either side dies, is `baton_ring::reply`'s and `docs/design.md`'s
//! (*Request/reply*).

use super::message::{InPlace, Message, Metadata, Ticket};
use super::spin::SpinWindow;
use super::{Queue, Sender, DEFAULT_SPIN, IDLE_TICK};
use crate::error::{Damage, ReplyError, RequestError, SendError};
use crate::recovery::{self, failpoint, Attachment};
use crate::segment::Segment;
use crate::sys::clock::{deadline_after, monotonic_ns, Deadline};
use crate::sys::futex::Futex;
use crate::sys::liveness::fork_generation;
use crate::sys::robust::Holder;
use baton_ring::lane::RecordHeader;
use baton_ring::reply::{state, GiveUp, Poll, Refused, ReplyBox, ReplyMeta, Token};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// [`RecordHeader::flags`]: the record is a request; its first [`TOKEN_BYTES`] bytes are its
/// reply token.
pub(crate) const REQUEST: u32 = 1;
/// [`RecordHeader::flags`]: the record is a tracked send ([`Sender::send_tracked`]); its first
/// [`TOKEN_BYTES`] bytes are the token of the box its sender learns its fate through.
pub(crate) const TRACKED: u32 = 2;
/// A delivery report's code (the reply's type): acknowledged by its receiver.
pub(crate) const DELIVERED_ACKNOWLEDGED: i64 = 1;
/// A delivery report's code: purged unread.
pub(crate) const DELIVERED_PURGED: i64 = 2;
/// Bytes of the reply token in front of a request's payload.
pub(crate) const TOKEN_BYTES: usize = 8;

/// Where the reply to a request goes: what [`Metadata::reply_to`] holds for a request, and what
/// [`Queue::reply`] takes (SA-Forum's `SaMsgSenderIdT`). Opaque; valid while the requester
/// waits, and refused afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTo(pub(crate) u64);

impl ReplyTo {
    /// The token as a number (to carry it elsewhere, e.g. through the C API).
    pub fn to_u64(self) -> u64 {
        self.0
    }
    /// A token carried as a number; any number is accepted here, and a wrong one is refused
    /// by [`Queue::reply`] as [`ReplyError::RequesterGone`].
    pub fn from_u64(v: u64) -> ReplyTo {
        ReplyTo(v)
    }
}

/// A reply, as its requester receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    payload: Vec<u8>,
    meta: ReplyMeta,
}

impl Reply {
    /// The reply's bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The reply's bytes, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
    /// The type the replier gave it ([`Queue::reply_with`]; 0 otherwise).
    pub fn msg_type(&self) -> i64 {
        self.meta.msg_type
    }
    /// The version the replier gave it ([`Queue::reply_with`]; 0 otherwise).
    pub fn version(&self) -> u32 {
        self.meta.version
    }
    /// The replying process, in its own pid namespace (for display).
    pub fn replier_pid(&self) -> u32 {
        self.meta.replier_pid
    }
    /// When the reply was sent: `CLOCK_MONOTONIC` nanoseconds (see [`crate::monotonic_ns`];
    /// SA-Forum's `replySendTime`).
    pub fn sent_ns(&self) -> u64 {
        self.meta.sent_ns
    }
}

/// Splits a record's bytes into the reply token of a request, the token of a tracked send,
/// and where the payload starts. A record flagged as either with no room for its token is
/// damage.
pub(super) fn split_request(
    header: &RecordHeader,
    bytes: &[u8],
) -> Result<(Option<ReplyTo>, Option<ReplyTo>, usize), Damage> {
    if header.flags & (REQUEST | TRACKED) == 0 {
        return Ok((None, None, 0));
    }
    let Some(token) = bytes.get(..TOKEN_BYTES) else {
        return Err(Damage::RequestWithoutToken { len: bytes.len() });
    };
    let to = ReplyTo(u64::from_ne_bytes(token.try_into().expect("8 bytes")));
    if header.flags & REQUEST != 0 {
        Ok((Some(to), None, TOKEN_BYTES))
    } else {
        Ok((None, Some(to), TOKEN_BYTES))
    }
}

/// Whether no live process holds sender slot `slot` (a box's requester or replier).
fn slot_is_dead(seg: &Segment, slot: u8) -> bool {
    seg.shared()
        .slots
        .get(slot as usize)
        .is_none_or(|s| s.lock.holder() != Holder::Alive)
}

impl Sender {
    /// Sends `payload` as a request and waits at most `timeout` (`Duration::MAX`: without
    /// limit) for its one reply, which the receiver writes straight into a reply box this
    /// process holds while it waits (SA-Forum's `saMsgMessageSendReceive`).
    ///
    /// The request is a message like any other (this sender's priority, type and version;
    /// delivered at least once): if its receiver dies before replying, it is delivered again,
    /// flagged, and the next receiver's reply is the one that arrives. Exactly one reply
    /// arrives: a second reply to the same request is refused to its replier. A reply that
    /// comes after the timeout is refused too, and counted in [`crate::Status::replies_dropped`].
    ///
    /// # Errors
    ///
    /// [`RequestError::Timeout`] (no reply in time; the request may still be received, and
    /// its reply will be refused), [`RequestError::TooBig`] (more than `max_message - 8`
    /// bytes: the token takes 8), [`RequestError::NoReplyBoxes`],
    /// [`RequestError::AllBoxesBusy`], and the send's errors as [`RequestError::Send`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-request-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "svc", &Attributes::default())?;
    /// let server = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///         let mut rx = q.receiver()?;
    ///         let m = rx.recv()?;
    ///         let answer = format!("hello, {}", String::from_utf8_lossy(m.payload()));
    ///         m.reply(answer.as_bytes())?;
    ///         Ok(())
    ///     })
    /// };
    /// let reply = q.sender().request(b"world", Duration::from_secs(5))?;
    /// assert_eq!(reply.payload(), b"hello, world");
    /// server.join().unwrap().unwrap();
    /// # drop(q); Queue::remove(&domain, "svc")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request(&self, payload: &[u8], timeout: Duration) -> Result<Reply, RequestError> {
        let deadline = deadline_after(timeout);
        let mut pending = self.send_with_box(payload, REQUEST, deadline)?;
        failpoint("request.sent");
        pending.wait(deadline)
    }

    /// Sends `payload` as a request and returns at once with its [`PendingRequest`], through
    /// which the one reply is taken when it comes: without blocking
    /// ([`PendingRequest::try_reply`]), waiting ([`PendingRequest::wait`]), or when its
    /// [`PendingRequest::ready_fd`] is readable (`poll`, an async runtime). The request is the
    /// same as [`Sender::request`]'s. Nothing here waits: a full lane is
    /// [`RequestError::Send`] of [`SendError::Timeout`] (wait for space with
    /// [`Sender::space_fd`]), no free reply box [`RequestError::AllBoxesBusy`].
    ///
    /// # Errors
    ///
    /// As [`Sender::request`], but never [`RequestError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-send-request-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "svc", &Attributes::default())?;
    /// let mut pending = q.sender().send_request(b"ping")?;
    /// assert!(pending.try_reply()?.is_none()); // nobody has answered yet
    /// let mut rx = q.receiver()?;
    /// rx.recv()?.reply(b"pong")?;
    /// assert_eq!(pending.wait(Duration::from_secs(5))?.payload(), b"pong");
    /// # drop(rx); Queue::remove(&domain, "svc")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request(&self, payload: &[u8]) -> Result<PendingRequest, RequestError> {
        let pending = self.send_with_box(payload, REQUEST, Some(Instant::now()))?;
        // SAFETY: `pending` borrows the attachment `self.seg` points to (and the mapping it
        // owns), which lives at a stable address as long as an `Arc` to it does; the
        // `PendingRequest` keeps one, and drops `pending` before it (field order).
        let pending: Pending<'static> = unsafe { std::mem::transmute(pending) };
        Ok(PendingRequest {
            ready: None,
            pending: Some(pending),
            seg: self.seg.clone(),
            generation: fork_generation(),
        })
    }

    /// Sends `payload` and returns at once with a [`Delivery`], through which this sender
    /// learns later what became of the message (SA-Forum's `saMsgMessageSendAsync` with
    /// `SA_MSG_MESSAGE_DELIVERED_ACK`, and beyond it): acknowledged by its receiver (end to
    /// end: processed, not only stored), or discarded (purged unread, or the queue removed).
    /// That the send returned `Ok` says the message is stored in the queue. The message is
    /// otherwise like any other (delivered at least once; a receiver that dies before
    /// acknowledging it has it delivered again, and the report comes with the acknowledgement
    /// that counts). Each tracked message holds one of the queue's reply boxes until its report
    /// is taken or the `Delivery` dropped.
    ///
    /// # Errors
    ///
    /// As [`Sender::request`]: [`RequestError::TooBig`] (the token takes 8 bytes),
    /// [`RequestError::NoReplyBoxes`], [`RequestError::AllBoxesBusy`] (at once: this call does
    /// not wait for a box), and the send's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Delivered, Domain, Queue};
    /// use std::time::Duration;
    /// let domain = Domain::new(&format!("doc-tracked-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "jobs", &Attributes::default())?;
    /// let mut delivery = q.sender().send_tracked(b"job 1")?; // stored in the queue
    /// assert_eq!(delivery.try_outcome()?, None); // nobody took it yet
    /// q.receiver()?.recv()?.ack()?;
    /// assert_eq!(delivery.wait(Duration::from_secs(1))?, Delivered::Acknowledged);
    /// # drop(q); Queue::remove(&domain, "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_tracked(&self, payload: &[u8]) -> Result<Delivery, RequestError> {
        let mut pending = self.send_with_box(payload, TRACKED, Some(Instant::now()))?;
        pending.done = true; // the Delivery holds the box from here
        Ok(Delivery {
            seg: self.seg.clone(),
            index: pending.token.index,
            token: pending.token,
            slot: pending.slot,
            outcome: None,
            generation: fork_generation(),
        })
    }

    /// Claims a reply box (waiting until `deadline` for one) and sends `payload` with the box's
    /// token, flagged `flag`.
    fn send_with_box(
        &self,
        payload: &[u8],
        flag: u32,
        deadline: Option<Instant>,
    ) -> Result<Pending<'_>, RequestError> {
        let seg = &self.seg;
        let max = (seg.attributes().max_message as usize).saturating_sub(TOKEN_BYTES);
        if payload.len() + TOKEN_BYTES > seg.attributes().max_message as usize {
            return Err(RequestError::TooBig {
                len: payload.len(),
                max,
            });
        }
        if seg.reply_box_count() == 0 {
            return Err(RequestError::NoReplyBoxes);
        }
        let slot = recovery::sender_slot(seg)
            .map_err(|e| RequestError::Send(SendError::NoSenderSlot(e)))?;
        let pending = Pending::claim(seg, slot, deadline)?;
        let len = TOKEN_BYTES + payload.len();
        let lane = self.lane_for(len, self.priority)?;
        let wait = if flag == TRACKED {
            Deadline::Never // a tracked send waits for space like `send`
        } else {
            deadline.map_or(Deadline::Never, Deadline::At)
        };
        let claim = self.claim_until(&lane, len, wait)?;
        // SAFETY: one slice for this claim, dropped before the claim is published below.
        let cells = unsafe { lane.claimed_payload(&claim, len) };
        cells[..TOKEN_BYTES].copy_from_slice(&pending.token.to_word().to_ne_bytes());
        cells[TOKEN_BYTES..].copy_from_slice(payload);
        self.publish_flagged(&lane, claim, len, flag)?;
        Ok(pending)
    }
}

/// What became of a tracked message ([`Sender::send_tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivered {
    /// Its receiver acknowledged it (processed it, end to end).
    Acknowledged,
    /// It was purged from the queue unread (`Queue::purge`, `baton purge`).
    Purged,
    /// The queue was removed (by `remove`, or for its retention) before it was acknowledged.
    QueueRemoved,
}

/// A tracked message's report, to come ([`Sender::send_tracked`]). Dropping it gives its reply
/// box back (the message stays sent; its report then goes nowhere).
#[derive(Debug)]
pub struct Delivery {
    seg: std::sync::Arc<Attachment>,
    index: u16,
    token: Token,
    slot: u8,
    outcome: Option<Delivered>,
    /// The fork generation of the process that sent: a forked child's copy holds no box.
    generation: u64,
}

impl Delivery {
    /// The report if it is there.
    ///
    /// # Errors
    ///
    /// [`RequestError::Corrupt`] if a peer damaged the reply box; [`RequestError::ForkedCopy`]
    /// in a forked child (the report is the sending process's).
    pub fn try_outcome(&mut self) -> Result<Option<Delivered>, RequestError> {
        if let Some(o) = self.outcome {
            return Ok(Some(o));
        }
        if self.generation != fork_generation() {
            // The box is the sending process's (review: a child's copy freed it).
            return Err(RequestError::ForkedCopy);
        }
        let Some(b) = self.seg.reply_box(self.index) else {
            return Err(self.damaged(0));
        };
        match b.poll(self.token, self.slot) {
            Poll::Replied => {
                let mut bytes = Vec::new();
                let meta = b
                    .read(&mut bytes)
                    .ok_or_else(|| self.damaged(b.state_word()))?;
                b.free(self.token, self.slot);
                self.seg.shared().reply_free.notify(&Futex);
                let o = match meta.msg_type {
                    DELIVERED_ACKNOWLEDGED => Delivered::Acknowledged,
                    DELIVERED_PURGED => Delivered::Purged,
                    _ => return Err(self.damaged(b.state_word())),
                };
                self.outcome = Some(o);
                Ok(Some(o))
            }
            Poll::Lost => Err(self.damaged(b.state_word())),
            Poll::Pending { .. } if self.seg.is_removed() => {
                self.give_back();
                self.outcome = Some(Delivered::QueueRemoved);
                Ok(self.outcome)
            }
            Poll::Pending { .. } => Ok(None),
        }
    }

    /// Waits at most `timeout` for the report.
    ///
    /// # Errors
    ///
    /// [`RequestError::Timeout`] (the `Delivery` stays: wait again), and as
    /// [`Delivery::try_outcome`].
    pub fn wait(&mut self, timeout: Duration) -> Result<Delivered, RequestError> {
        let deadline = deadline_after(timeout);
        loop {
            if let Some(o) = self.try_outcome()? {
                return Ok(o);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(RequestError::Timeout);
            }
            let tick = now + IDLE_TICK;
            let until = deadline.map_or(tick, |d| d.min(tick));
            if let Some(b) = self.seg.reply_box(self.index) {
                let (token, slot) = (self.token, self.slot);
                let woke = b.event().wait_until_mapped(
                    &Futex,
                    Some(until),
                    || self.seg.check_size().is_ok(),
                    || !matches!(b.poll(token, slot), Poll::Pending { .. }),
                );
                if woke.is_none() {
                    self.seg.check_size().map_err(RequestError::Corrupt)?;
                }
            }
        }
    }

    fn damaged(&self, state: u64) -> RequestError {
        RequestError::Corrupt(Damage::ReplyBox {
            index: self.index,
            state,
        })
    }

    fn give_back(&mut self) {
        if self.seg.check_size().is_err() {
            return; // the box is in memory a peer took away
        }
        if let Some(b) = self.seg.reply_box(self.index) {
            if b.give_up(self.token, self.slot, |s| slot_is_dead(&self.seg, s)) == GiveUp::Replied {
                b.free(self.token, self.slot);
            }
            self.seg.shared().reply_free.notify(&Futex);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.outcome.is_none() && self.generation == fork_generation() {
            self.give_back();
        }
    }
}

/// Tells a tracked message's sender what became of it (`code`: a `DELIVERED_*`), through its
/// box: best effort, and not counted as a dropped reply if the sender no longer listens.
pub(super) fn report_delivery(seg: &Attachment, to: ReplyTo, code: i64) {
    let meta = ReplyMeta {
        msg_type: code,
        version: 0,
        replier_pid: std::process::id(),
        sent_ns: monotonic_ns(),
    };
    let _ = reply_inner(seg, to, meta, &[], false);
}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Timeout => RequestError::Timeout,
            SendError::Removed => RequestError::Removed,
            e => RequestError::Send(e),
        }
    }
}

/// A request sent and its reply to come ([`Sender::send_request`]). Dropping it gives its
/// reply box back (a reply that comes later is refused to its replier, and counted). One leaked
/// with `mem::forget` holds its box until its process ends; the next requester that needs a box
/// then reclaims it.
pub struct PendingRequest {
    /// Dropped first: its thread polls the box.
    ready: Option<super::ready::ReadyFd>,
    /// `None` once the reply was taken (or in a forked child's copy, forgotten).
    pending: Option<Pending<'static>>,
    /// Keeps the mapping `pending` borrows: dropped after it.
    seg: std::sync::Arc<Attachment>,
    /// The fork generation of the process that sent it: a forked child's copy holds no box.
    generation: u64,
}

impl std::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRequest")
            .field("queue", &self.seg.names().0)
            .field("box", &self.pending.as_ref().map(|p| p.token.index))
            .finish()
    }
}

impl PendingRequest {
    fn pending(&mut self) -> Result<&mut Pending<'static>, RequestError> {
        if self.generation != fork_generation() {
            return Err(RequestError::ForkedCopy);
        }
        self.pending.as_mut().ok_or(RequestError::ReplyTaken)
    }

    /// The reply if it has come.
    ///
    /// # Errors
    ///
    /// [`RequestError::Removed`] (the queue went; the box is given back),
    /// [`RequestError::Corrupt`], [`RequestError::ForkedCopy`] in a forked child,
    /// [`RequestError::ReplyTaken`] once the reply was taken.
    pub fn try_reply(&mut self) -> Result<Option<Reply>, RequestError> {
        let p = self.pending()?;
        p.seg.check_size().map_err(RequestError::Corrupt)?;
        let r = match p.reply_box.poll(p.token, p.slot) {
            Poll::Replied => p.take().map(Some),
            Poll::Lost => p.lost().map(Some),
            Poll::Pending { .. } if p.seg.is_removed() => {
                p.give_back();
                Err(RequestError::Removed)
            }
            Poll::Pending { .. } => return Ok(None),
        };
        self.pending = None;
        self.ready = None;
        r
    }

    /// Waits at most `timeout` for the reply (as [`Sender::request`] does).
    ///
    /// # Errors
    ///
    /// [`RequestError::Timeout`] (the box is given back: a later reply is refused), and as
    /// [`PendingRequest::try_reply`].
    pub fn wait(mut self, timeout: Duration) -> Result<Reply, RequestError> {
        let deadline = deadline_after(timeout);
        let r = self.pending()?.wait(deadline);
        self.ready = None;
        r
    }

    /// A file descriptor that becomes readable when the reply has come (or the queue is
    /// removed): then [`PendingRequest::try_reply`]. It has a helper thread of its own, which
    /// ends with the request.
    ///
    /// # Errors
    ///
    /// [`RequestError::NoHelper`] if its eventfd or thread cannot be made; as
    /// [`PendingRequest::try_reply`].
    pub fn ready_fd(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, RequestError> {
        let p = self.pending()?;
        let (index, token, slot) = (p.token.index, p.token, p.slot);
        if self.ready.is_none() {
            let seg = self.seg.clone();
            let r = super::ready::ReadyFd::start(
                self.seg.clone(),
                std::sync::Arc::new(move |seg: &Attachment| match seg.reply_box(index) {
                    Some(b) => b.event(),
                    None => &seg.shared().reply_free,
                }),
                move || {
                    seg.is_removed()
                        || seg
                            .reply_box(index)
                            .is_none_or(|b| !matches!(b.poll(token, slot), Poll::Pending { .. }))
                },
            )
            .map_err(|e| RequestError::NoHelper(e.kind()))?;
            self.ready = Some(r);
        }
        Ok(self.ready.as_ref().expect("just made").fd())
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        self.ready = None;
        if self.generation != fork_generation() {
            // The box is the sending process's: a child's copy gives nothing back.
            std::mem::forget(self.pending.take());
        }
        // Otherwise `pending` is dropped next: it gives the box back.
    }
}

/// A reply box this process holds for a request; given back when dropped.
struct Pending<'a> {
    seg: &'a Attachment,
    reply_box: ReplyBox<'a>,
    token: Token,
    slot: u8,
    /// The reply was taken and the box freed, or the box given up.
    done: bool,
}

impl<'a> Pending<'a> {
    /// Claims a free reply box, waiting for one until `deadline`.
    fn claim(
        seg: &'a Attachment,
        slot: u8,
        deadline: Option<Instant>,
    ) -> Result<Self, RequestError> {
        let n = seg.reply_box_count();
        // Each process starts looking at a different box, so that requesters of several
        // processes do not all compete for the first free one.
        let start = (usize::from(slot) * 7) % usize::from(n);
        let try_all = || {
            (0..usize::from(n)).find_map(|k| {
                let i = ((start + k) % usize::from(n)) as u16;
                let b = seg.reply_box(i)?;
                b.try_claim(i, slot).map(|token| (b, token))
            })
        };
        loop {
            if let Some((reply_box, token)) = try_all() {
                return Ok(Pending {
                    seg,
                    reply_box,
                    token,
                    slot,
                    done: false,
                });
            }
            if seg.is_removed() {
                return Err(RequestError::Removed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RequestError::AllBoxesBusy { boxes: n });
            }
            // None free: boxes nobody will take any more (their requester is gone, or a peer
            // scribbled on them) are freed, and the boxes of requesters that died are theirs
            // no more (reclaiming the slot settles them). Look again only if one came free.
            let mut freed = false;
            for i in 0..n {
                let Some(b) = seg.reply_box(i) else { continue };
                if b.free_orphan(|s| slot_is_dead(seg, s)) {
                    freed = true;
                    continue;
                }
                let requester = state::requester(b.state_word());
                if requester != 0 && slot_is_dead(seg, requester) {
                    recovery::reclaim_if_dead(seg, requester);
                    freed |= state::state(b.state_word()) == state::FREE;
                }
            }
            if freed {
                continue;
            }
            let tick = Instant::now() + IDLE_TICK;
            let woke = seg.shared().reply_free.wait_until_mapped(
                &Futex,
                Some(deadline.map_or(tick, |d| d.min(tick))),
                || seg.check_size().is_ok(),
                || {
                    (0..n).any(|i| {
                        seg.reply_box(i)
                            .is_some_and(|b| state::state(b.state_word()) == state::FREE)
                    })
                },
            );
            if woke.is_none() {
                seg.check_size().map_err(RequestError::Corrupt)?;
            }
        }
    }

    /// Waits for the reply until `deadline`: polls for the default spin window, then sleeps on
    /// the box's event.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Reply, RequestError> {
        let b = self.reply_box;
        let mut window = SpinWindow::new(DEFAULT_SPIN, deadline);
        loop {
            match b.poll(self.token, self.slot) {
                Poll::Replied => return self.take(),
                Poll::Lost => return self.lost(),
                Poll::Pending { .. } => {}
            }
            if !window.open() {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            let mut seen = Poll::Pending { replier: 0 };
            let tick = Instant::now() + IDLE_TICK;
            let until = deadline.map_or(tick, |d| d.min(tick));
            let woke = b.event().wait_until_mapped(
                &Futex,
                Some(until),
                || self.seg.check_size().is_ok(),
                || {
                    seen = b.poll(self.token, self.slot);
                    !matches!(seen, Poll::Pending { .. })
                },
            );
            if woke.is_none() {
                self.seg.check_size().map_err(RequestError::Corrupt)?;
            }
            match seen {
                Poll::Replied => return self.take(),
                Poll::Lost => return self.lost(),
                Poll::Pending { .. } => {}
            }
            if self.seg.is_removed() {
                self.give_back();
                return Err(RequestError::Removed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // A reply being written now by a live replier is left to it: it frees the box
                // when it publishes. The requester never waits past its deadline.
                match b.give_up(self.token, self.slot, |s| slot_is_dead(self.seg, s)) {
                    GiveUp::Released => {
                        self.done = true;
                        self.seg.shared().reply_free.notify(&Futex);
                        return Err(RequestError::Timeout);
                    }
                    GiveUp::Replied => return self.take(),
                }
            }
        }
    }

    /// Reads the reply and frees the box.
    fn take(&mut self) -> Result<Reply, RequestError> {
        let mut payload = Vec::new();
        let meta = self.reply_box.read(&mut payload);
        self.reply_box.free(self.token, self.slot);
        self.done = true;
        self.seg.shared().reply_free.notify(&Futex);
        meta.map(|meta| Reply { payload, meta })
            .ok_or(RequestError::Corrupt(Damage::ReplyBox {
                index: self.token.index,
                state: self.reply_box.state_word(),
            }))
    }

    fn lost(&mut self) -> Result<Reply, RequestError> {
        self.done = true;
        Err(RequestError::Corrupt(Damage::ReplyBox {
            index: self.token.index,
            state: self.reply_box.state_word(),
        }))
    }

    /// Gives the box back unused (the request failed or the requester stops waiting).
    fn give_back(&mut self) {
        if self.done || self.seg.check_size().is_err() {
            return; // done, or the box is in memory a peer took away
        }
        self.done = true;
        let b = self.reply_box;
        if b.give_up(self.token, self.slot, |s| slot_is_dead(self.seg, s)) == GiveUp::Replied {
            b.free(self.token, self.slot);
        }
        self.seg.shared().reply_free.notify(&Futex);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// Replies to the request `to` through the mapping `seg`, as this process's sender slot.
pub(super) fn reply_through(
    seg: &Attachment,
    to: ReplyTo,
    meta: ReplyMeta,
    payload: &[u8],
) -> Result<(), ReplyError> {
    reply_inner(seg, to, meta, payload, true)
}

/// [`reply_through`]; `count`: whether a refused reply counts as dropped.
fn reply_inner(
    seg: &Attachment,
    to: ReplyTo,
    meta: ReplyMeta,
    payload: &[u8],
    count: bool,
) -> Result<(), ReplyError> {
    let token = Token::from_word(to.0);
    let dropped = || {
        if count {
            seg.shared()
                .stats
                .replies_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    };
    let Some(b) = seg.reply_box(token.index) else {
        dropped();
        return Err(ReplyError::RequesterGone);
    };
    b.check_size(payload.len()).map_err(refused)?;
    if seg.is_removed() {
        return Err(ReplyError::Removed);
    }
    let slot = recovery::sender_slot(seg).map_err(ReplyError::NoSenderSlot)?;
    let is_dead = |s: u8| slot_is_dead(seg, s);
    // Another replier's slot that looks alive may be a dead one's being settled by another
    // process (its lock is held for that, microseconds): wait a little for the box to be
    // reopened before taking "being replied" for "already replied" (review).
    let patience = Instant::now() + BEING_REPLIED_PATIENCE;
    let won = loop {
        match b.win(token, slot, is_dead) {
            Err(Refused::BeingReplied { .. }) if Instant::now() < patience => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(Refused::BeingReplied { .. }) => break Err(Refused::AlreadyReplied),
            other => break other,
        }
    };
    let result = won.and_then(|won| {
        b.write(&won, meta, payload)?;
        failpoint("reply.written");
        b.publish(won, &Futex)
    });
    result.map_err(|r| {
        if matches!(r, Refused::RequesterGone | Refused::AlreadyReplied) {
            dropped();
        }
        if r == Refused::RequesterGone {
            // The refusal may have freed the box (a requester found gone): a requester waiting
            // for one need not wait for its tick.
            seg.shared().reply_free.notify(&Futex);
        }
        match r {
            Refused::Corrupt { found } => ReplyError::Corrupt(Damage::ReplyBox {
                index: token.index,
                state: found,
            }),
            r => refused(r),
        }
    })
}

/// How long a replier waits for a box another slot is replying into to be reopened (see
/// `reply_through`): the settling takes microseconds, unless the process doing it is stopped;
/// a live replier that is itself stopped costs a second reply this wait, then `AlreadyReplied`.
const BEING_REPLIED_PATIENCE: Duration = Duration::from_secs(1);

fn refused(r: Refused) -> ReplyError {
    match r {
        Refused::AlreadyReplied | Refused::BeingReplied { .. } => ReplyError::AlreadyReplied,
        Refused::RequesterGone => ReplyError::RequesterGone,
        Refused::TooBig { len, max } => ReplyError::TooBig { len, max },
        Refused::Corrupt { found } => ReplyError::Corrupt(Damage::ReplyBox {
            index: u16::MAX,
            state: found,
        }),
    }
}

impl Queue {
    /// Replies to the request `to` (its [`Metadata::reply_to`]), from any handle of the queue
    /// in any process (SA-Forum's `saMsgMessageReply`). The reply is written into the
    /// requester's reply box; the requester is woken.
    ///
    /// # Errors
    ///
    /// [`ReplyError::AlreadyReplied`] (this request has its reply), [`ReplyError::RequesterGone`]
    /// (it gave up or died: the reply is dropped, and counted in
    /// [`crate::Status::replies_dropped`]), [`ReplyError::TooBig`] (over `max_message`),
    /// [`ReplyError::Removed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # use std::time::Duration;
    /// # let domain = Domain::new(&format!("doc-queue-reply-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "svc", &Attributes::default())?;
    /// let server = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || {
    ///         let mut rx = q.receiver().unwrap();
    ///         let mut to = None;
    ///         while to.is_none() {
    ///             // The batch call hands out metadata, and with it where a reply goes.
    ///             rx.try_recv_batch(1, |_, meta| to = meta.reply_to).unwrap();
    ///         }
    ///         q.reply_with(to.unwrap(), 7, 1, b"done").unwrap();
    ///     })
    /// };
    /// let reply = q.sender().request(b"job", Duration::from_secs(5))?;
    /// assert_eq!((reply.payload(), reply.msg_type(), reply.version()), (&b"done"[..], 7, 1));
    /// server.join().unwrap();
    /// # drop(q); Queue::remove(&domain, "svc")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply(&self, to: ReplyTo, payload: &[u8]) -> Result<(), ReplyError> {
        self.reply_with(to, 0, 0, payload)
    }

    /// [`Queue::reply`] with a message type and version for the reply.
    ///
    /// # Errors
    ///
    /// As [`Queue::reply`].
    pub fn reply_with(
        &self,
        to: ReplyTo,
        msg_type: i64,
        version: u32,
        payload: &[u8],
    ) -> Result<(), ReplyError> {
        let meta = ReplyMeta {
            msg_type,
            version,
            replier_pid: std::process::id(),
            sent_ns: monotonic_ns(),
        };
        reply_through(&self.seg, to, meta, payload)
    }
}

/// The reply meta of a plain reply from this process.
fn plain() -> ReplyMeta {
    ReplyMeta {
        replier_pid: std::process::id(),
        sent_ns: monotonic_ns(),
        ..ReplyMeta::default()
    }
}

impl Message {
    /// Replies to this message, a request ([`Metadata::reply_to`]): see [`Queue::reply`].
    /// Reply before acknowledging: a receiver that dies after replying and before its
    /// acknowledgement has the request delivered again, and that second reply is refused
    /// ([`ReplyError::AlreadyReplied`], or [`ReplyError::RequesterGone`] once the requester
    /// has gone on), so the requester still gets exactly one.
    ///
    /// # Errors
    ///
    /// [`ReplyError::NotARequest`], and as [`Queue::reply`].
    pub fn reply(&self, payload: &[u8]) -> Result<(), ReplyError> {
        let to = self.meta.reply_to.ok_or(ReplyError::NotARequest)?;
        let seg = match &self.ticket {
            Some(Ticket::Owned { owned, .. }) => &owned.seg,
            Some(Ticket::Taken { consumer, .. }) => consumer.attachment(),
            None => return Err(ReplyError::NotARequest),
        };
        reply_through(seg, to, plain(), payload)
    }
}

impl InPlace<'_> {
    /// Replies to this message, a request: see [`Message::reply`].
    ///
    /// # Errors
    ///
    /// As [`Message::reply`].
    pub fn reply(&self, payload: &[u8]) -> Result<(), ReplyError> {
        let to = self.meta.reply_to.ok_or(ReplyError::NotARequest)?;
        reply_through(&self.owned.seg, to, plain(), payload)
    }
}

impl Metadata {
    /// Where the reply goes, if this message is a request (see [`Sender::request`]).
    pub fn is_request(&self) -> bool {
        self.reply_to.is_some()
    }
}
