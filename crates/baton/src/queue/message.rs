//! What a receiver hands out: [`Message`] (copied out), [`InPlace`] (read in place), and the
//! [`Metadata`] both carry.

use super::consumer::Consuming;
use super::message_id;
use super::receiver::Owned;
use super::request::ReplyTo;
use crate::error::AckError;
use baton_ring::lane::{RecordRef, Taken};
use std::sync::Arc;

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
    /// When it was sent, `CLOCK_MONOTONIC` nanoseconds (see [`crate::monotonic_ns`]).
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
    /// Where the reply goes, if the message is a request ([`crate::Sender::request`]): give it
    /// to [`crate::Queue::reply`] (or call [`Message::reply`]).
    pub reply_to: Option<ReplyTo>,
}

impl Metadata {
    /// The metadata of the record `r` of lane `lane`.
    pub(super) fn of(
        lane: usize,
        r: &RecordRef,
        redelivered: bool,
        reply_to: Option<ReplyTo>,
    ) -> Metadata {
        Metadata {
            reply_to,
            priority: lane as u8,
            msg_type: r.header().msg_type,
            version: r.header().version,
            sender_pid: r.header().sender_pid,
            sent_ns: r.header().sent_ns,
            redelivered,
            id: message_id(lane, r.pos()),
        }
    }
}

/// The accessors of [`Metadata`]'s fields, for a type with a `meta` field; `$recv` is the
/// receiving call that hands that type out, for the examples.
macro_rules! metadata_accessors {
    ($recv:literal) => {
        /// All of the message's metadata.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "let meta = *m.meta(); // all of it, to keep after the message is gone\nassert_eq!((meta.priority, meta.msg_type), (1, 7));", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn meta(&self) -> &Metadata {
            &self.meta
        }
        /// 0 (highest) to 3.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert_eq!(m.priority(), 1);", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn priority(&self) -> u8 {
            self.meta.priority
        }
        /// The sender's message type.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert_eq!(m.msg_type(), 7);", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn msg_type(&self) -> i64 {
            self.meta.msg_type
        }
        /// The sender's message version.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert_eq!(m.version(), 2);", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn version(&self) -> u32 {
            self.meta.version
        }
        /// The sending process, in its own pid namespace.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert_eq!(m.sender_pid(), std::process::id());", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn sender_pid(&self) -> u32 {
            self.meta.sender_pid
        }
        /// When it was sent, `CLOCK_MONOTONIC` nanoseconds (see [`crate::monotonic_ns`]).
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert!(m.sent_ns() <= baton::monotonic_ns());", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn sent_ns(&self) -> u64 {
            self.meta.sent_ns
        }
        /// Delivered before and not acknowledged: it may have been processed already.
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "assert!(!m.redelivered()); // first delivery", "\n# drop(m);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
        pub fn redelivered(&self) -> bool {
            self.meta.redelivered
        }
        /// The message's id within the queue: the same on every redelivery (see
        /// [`Metadata::id`]).
        ///
        /// # Examples
        ///
        #[doc = concat!("```\n", "# use baton::{Attributes, Domain, Queue};\n# let domain = Domain::new(&format!(\"doc-meta-{}-{}\", std::process::id(), baton::monotonic_ns()))?;\n# let q = Queue::create(&domain, \"q\", &Attributes::default())?;\nq.sender().with_priority(1)?.with_type(7).with_version(2).send(b\"x\")?;\nlet mut rx = q.receiver()?;\n", "let m = rx.", $recv, "()?;\n", "let id = m.id();\nm.release()?; // given back: delivered again, with the same id\nlet again = rx.try_", $recv, "()?;\nassert!(again.redelivered() && again.id() == id);", "\n# drop(again);\n# drop(rx); Queue::remove(&domain, \"q\")?;\n# Ok::<(), Box<dyn std::error::Error>>(())", "\n```")]
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
    pub(super) meta: Metadata,
    pub(super) payload: Vec<u8>,
    pub(super) ticket: Option<Ticket>,
    /// A tracked send's token: its sender learns of the acknowledgement.
    pub(super) tracked: Option<ReplyTo>,
}

/// What acknowledging a message needs: who delivered it, and its place in the lane.
pub(super) enum Ticket {
    /// Delivered by the queue's owner.
    Owned {
        owned: Arc<Owned>,
        priority: usize,
        record: RecordRef,
    },
    /// Taken by a consumer of a shared queue.
    Taken {
        consumer: Arc<Consuming>,
        priority: usize,
        taken: Taken,
    },
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
    metadata_accessors!("recv");

    /// The payload.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-payload-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"hello")?;
    /// let mut rx = q.receiver()?;
    /// let m = rx.recv()?;
    /// assert_eq!(m.payload(), b"hello");
    /// # drop(m); drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The payload, owned; acknowledges the message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-into-payload-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"keep me")?;
    /// let mut rx = q.receiver()?;
    /// let bytes: Vec<u8> = rx.recv()?.into_payload(); // acknowledged: the bytes are yours
    /// assert_eq!(bytes, b"keep me");
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_payload(mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }
    /// Payload length in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-len-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(&[0u8; 100])?;
    /// let mut rx = q.receiver()?;
    /// assert_eq!(rx.recv()?.len(), 100);
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    /// Whether the payload is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-is-empty-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"")?; // an empty message is a message
    /// let mut rx = q.receiver()?;
    /// assert!(rx.recv()?.is_empty());
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
            Some(t) => finish_tracked(t, true, self.tracked),
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
            let _ = finish_tracked(t, !std::thread::panicking(), self.tracked);
        }
    }
}

/// Finishes a ticket; a tracked send acknowledged has its sender told.
fn finish_tracked(t: Ticket, ack: bool, tracked: Option<ReplyTo>) -> Result<(), AckError> {
    let seg = match (ack, tracked) {
        (true, Some(_)) => Some(t.attachment()),
        _ => None,
    };
    t.finish(ack)?;
    if let (Some(seg), Some(to)) = (seg, tracked) {
        super::request::report_delivery(&seg, to, super::request::DELIVERED_ACKNOWLEDGED);
    }
    Ok(())
}

impl Ticket {
    /// The mapping of the queue the message came from.
    fn attachment(&self) -> std::sync::Arc<crate::recovery::Attachment> {
        match self {
            Ticket::Owned { owned, .. } => owned.seg.clone(),
            Ticket::Taken { consumer, .. } => consumer.attachment_arc(),
        }
    }

    pub(super) fn finish(self, ack: bool) -> Result<(), AckError> {
        match self {
            Ticket::Owned {
                owned,
                priority,
                record,
            } => owned.finish(priority, record, ack),
            Ticket::Taken {
                consumer,
                priority,
                taken,
            } => consumer.finish(priority, taken, ack),
        }
    }
}

/// A message read in place from shared memory (see [`crate::Receiver::recv_in_place`]). It borrows its
/// receiver; acknowledging it ([`InPlace::ack`], or dropping it unless the thread is panicking)
/// frees its bytes.
pub struct InPlace<'a> {
    pub(super) owned: &'a Owned,
    /// Its lane.
    pub(super) lane: usize,
    pub(super) meta: Metadata,
    /// The record, until it is acknowledged or released.
    pub(super) record: Option<RecordRef>,
    pub(super) payload: &'a [u8],
    /// A tracked send's token (see [`Message`]).
    pub(super) tracked: Option<ReplyTo>,
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
    metadata_accessors!("recv_in_place");

    /// The payload, in shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-inplace-payload-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"in place")?;
    /// let mut rx = q.receiver()?;
    /// let m = rx.recv_in_place()?;
    /// assert_eq!(m.payload(), b"in place"); // read straight from shared memory
    /// # drop(m); drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// Acknowledges the message: it leaves the queue and its bytes are freed.
    ///
    /// # Errors
    ///
    /// As [`Message::ack`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-inplace-ack-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"done with it")?;
    /// let mut rx = q.receiver()?;
    /// rx.recv_in_place()?.ack()?; // its cells are free for senders again
    /// assert_eq!(q.status().lanes[3].messages, 0);
    /// # drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack(mut self) -> Result<(), AckError> {
        self.finish(true)
    }

    /// Gives the message back for redelivery (see [`Message::release`]).
    ///
    /// # Errors
    ///
    /// As [`Message::ack`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-inplace-release-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// q.sender().send(b"not now")?;
    /// let mut rx = q.receiver()?;
    /// rx.recv_in_place()?.release()?; // given back, not acknowledged
    /// let again = rx.recv_in_place()?;
    /// assert!(again.redelivered());
    /// # drop(again); drop(rx);
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(mut self) -> Result<(), AckError> {
        self.finish(false)
    }

    /// Acknowledges or releases the record, once.
    fn finish(&mut self, ack: bool) -> Result<(), AckError> {
        match self.record.take() {
            Some(record) => {
                self.owned.finish(self.lane, record, ack)?;
                if let (true, Some(to)) = (ack, self.tracked) {
                    super::request::report_delivery(
                        &self.owned.seg,
                        to,
                        super::request::DELIVERED_ACKNOWLEDGED,
                    );
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Drop for InPlace<'_> {
    /// Acknowledges, unless the thread is panicking: then the message is released.
    fn drop(&mut self) {
        let _ = self.finish(!std::thread::panicking());
    }
}
