//! Looking at what waits in a queue without taking it ([`Queue::peek`]), and removing it
//! ([`Queue::purge`]): for operators and debugging, safe while messages are taken.

use super::consumer::{OwnerLockSweep, TypeFilter};
use super::message::Metadata;
use super::request::split_request;
use super::{message_id, Queue};
use crate::error::OwnError;
use crate::segment::PRIORITIES;
use crate::sys::futex::Futex;
use baton_ring::lane::sweep;

/// A message seen by [`Queue::peek`]: a copy, taken from nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// Its metadata (`redelivered`: it was delivered before and given back, or its consumer
    /// died).
    pub meta: Metadata,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Queue {
    /// Up to `limit` of the messages waiting in the queue (not yet taken), highest priority
    /// first, oldest first within a priority, that pass `filter`: copies, nothing taken or
    /// changed. A snapshot: messages come and go while it looks (one taken while it is copied
    /// is left out).
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue, TypeFilter};
    /// let domain = Domain::new(&format!("doc-peek-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().with_type(1).send(b"a")?;
    /// q.sender().with_type(2).send(b"b")?;
    /// let seen = q.peek(10, TypeFilter::Exactly(2));
    /// assert_eq!(seen.len(), 1);
    /// assert_eq!((seen[0].payload.as_slice(), seen[0].meta.msg_type), (&b"b"[..], 2));
    /// assert_eq!(q.status().lanes[3].messages, 2); // nothing taken
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(&self, limit: usize, filter: TypeFilter) -> Vec<Peeked> {
        let mut out = Vec::new();
        if self.seg.check_size().is_err() {
            return out;
        }
        let max = self.seg.attributes().max_message;
        for p in 0..PRIORITIES {
            if out.len() >= limit {
                break;
            }
            self.seg
                .lane(p)
                .browse(max, |pos, header, payload, redelivered| {
                    if filter.matches(header.msg_type) {
                        // A request too short for its token is shown whole, as no request.
                        let (reply_to, _, skip) =
                            split_request(header, payload).unwrap_or((None, None, 0));
                        out.push(Peeked {
                            meta: Metadata {
                                reply_to,
                                priority: p as u8,
                                msg_type: header.msg_type,
                                version: header.version,
                                sender_pid: header.sender_pid,
                                sent_ns: header.sent_ns,
                                redelivered,
                                id: message_id(p, pos),
                            },
                            payload: payload[skip..].to_vec(),
                        });
                    }
                    out.len() < limit
                });
        }
        out
    }

    /// Removes the messages waiting in the queue (all, or those of one priority): each is
    /// acknowledged unread (counted as received) and its bytes freed. Returns how many.
    ///
    /// In a shared queue this is safe while consumers take: a message is either purged or
    /// taken, never both, and messages taken stay with their consumers. A queue with an owner
    /// is purged by its owner only: this takes ownership for the moment it takes, so it fails
    /// with [`OwnError::Busy`] while another process owns the queue (messages its owner
    /// delivered and has not acknowledged are purged too when nobody owns it).
    ///
    /// # Errors
    ///
    /// [`OwnError::InvalidPriority`] for a priority over 3, [`OwnError::Busy`] as above, and
    /// the errors of [`Queue::receiver`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Queue};
    /// let domain = Domain::new(&format!("doc-purge-{}", std::process::id()))?;
    /// let q = Queue::create(&domain, "q", &Attributes { shared: true, ..Default::default() })?;
    /// q.sender().send(b"stale")?;
    /// q.sender().with_priority(0)?.send(b"urgent")?;
    /// assert_eq!(q.purge(Some(3))?, 1);
    /// assert_eq!(q.consumer()?.recv()?.payload(), b"urgent");
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge(&self, priority: Option<u8>) -> Result<u64, OwnError> {
        let lanes = match priority {
            Some(p) if p as usize >= PRIORITIES => return Err(OwnError::InvalidPriority(p)),
            Some(p) => p as usize..p as usize + 1,
            None => 0..PRIORITIES,
        };
        let mut purged = 0;
        if self.seg.attributes().shared {
            for p in lanes {
                let lane = self.seg.lane(p);
                purged += lane.purge_waiting_with(|h, first| discarded(&self.seg, h, first));
                // A corrupt lane is reported by its consumers; what was purged stays purged.
                let _ = sweep(&lane, &OwnerLockSweep(&self.seg), &Futex);
                self.seg.check_threshold(p, false);
            }
            return Ok(purged);
        }
        let rx = self.receiver()?;
        for p in lanes {
            if let Some(lane) = rx.guard.lane(p) {
                purged += lane.purge_waiting_with(|h, first| discarded(&self.seg, h, first));
                let _ = lane.advance_head(&Futex);
            }
            self.seg.check_threshold(p, false);
        }
        drop(rx);
        Ok(purged)
    }
}

/// A purged record that was a tracked send: its sender is told it was discarded.
fn discarded(
    seg: &crate::recovery::Attachment,
    header: &baton_ring::lane::RecordHeader,
    first: u64,
) {
    if header.flags & super::request::TRACKED != 0 {
        super::request::report_delivery(
            seg,
            super::request::ReplyTo(first),
            super::request::DELIVERED_PURGED,
        );
    }
}
