//! Error types, one per family of operations. Each names the problem in its `Display` text.

use std::path::PathBuf;

/// Errors from creating, opening, listing or removing queues.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A queue or domain name breaks the naming rules.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `"queue name"` or `"domain"`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Attributes out of range.
    #[error("invalid attributes: {0}")]
    InvalidAttributes(AttributeError),
    /// No queue by that name in that domain.
    #[error("queue {name:?} does not exist in domain {domain:?}")]
    NotFound {
        /// The domain looked in.
        domain: String,
        /// The queue name.
        name: String,
    },
    /// The queue exists with other attributes.
    #[error("queue {name:?} already exists with different attributes: {difference}")]
    Exists {
        /// The queue name.
        name: String,
        /// What differs, e.g. `max message 4096 (asked 8192)`.
        difference: String,
    },
    /// The segment is not ours to use: another owner, a link, wrong mode, no access.
    #[error("permission denied for {}: {reason}", path.display())]
    PermissionDenied {
        /// The backing file.
        path: PathBuf,
        /// Why.
        reason: Denial,
    },
    /// The segment was made by an incompatible baton (format, byte order, libc, word size).
    #[error("incompatible queue segment {}: {reason}", path.display())]
    Incompatible {
        /// The backing file.
        path: PathBuf,
        /// What does not match.
        reason: Incompatibility,
    },
    /// The segment's contents make no sense.
    #[error("corrupt queue segment {}: {reason}", path.display())]
    Corrupt {
        /// The backing file.
        path: PathBuf,
        /// What is wrong.
        reason: SegmentDamage,
    },
    /// Not enough shared memory for the queue.
    #[error("no space in shared memory for {} ({needed} bytes)", path.display())]
    NoSpace {
        /// The file that could not be sized.
        path: PathBuf,
        /// Bytes asked for.
        needed: u64,
    },
    /// Any other system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Which attribute is out of range ([`OpenError::InvalidAttributes`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// The maximum message size.
    #[error("max message {value} is out of range 1..={max}")]
    MaxMessage {
        /// As given.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// The mode has bits beyond the permission bits.
    #[error("mode {0:o} has bits outside 0777")]
    ModeBits(u32),
    /// The mode does not let the owner read and write.
    #[error("mode {0:03o} must let the owner read and write (0600)")]
    ModeOwner(u32),
    /// The width of the lane's tags.
    #[error("tag bits {value} are out of range {min}..={max}")]
    TagBits {
        /// As given.
        value: u32,
        /// The fewest allowed.
        min: u32,
        /// The most allowed.
        max: u32,
    },
    /// A lane too small for one message of the maximum size.
    #[error("capacity {capacity} of priority {priority} cannot hold one message of the maximum size {max_message} (needs at least {needed} bytes)")]
    CapacityTooSmall {
        /// The lane's priority.
        priority: usize,
        /// Its capacity as given.
        capacity: u64,
        /// The maximum message size.
        max_message: u32,
        /// The least capacity that holds one.
        needed: u64,
    },
    /// A lane over 1 GiB.
    #[error("capacity {capacity} of priority {priority} is over the 1 GiB limit")]
    CapacityOverLimit {
        /// The lane's priority.
        priority: usize,
        /// Its capacity as given.
        capacity: u64,
    },
    /// A lane with more cells than its tag width can tell apart.
    #[error("capacity {capacity} of priority {priority} is over what {tag_bits}-bit tags allow")]
    CapacityOverTags {
        /// The lane's priority.
        priority: usize,
        /// Its capacity as given.
        capacity: u64,
        /// The tag width.
        tag_bits: u32,
    },
    /// A retention too long to store.
    #[error("retention is over 584 years")]
    Retention,
    /// A retention on a shared queue: the retention counts from when a queue's owner goes,
    /// and a shared queue has no owner.
    #[error("a shared queue has no owner, so no retention: it is kept until removed")]
    RetentionOnShared,
    /// Capacity thresholds that do not fit: `available < reached <= capacity` is needed.
    #[error("thresholds of priority {priority}: reached {reached} and available {available} must satisfy available < reached <= capacity ({capacity})")]
    Threshold {
        /// The priority.
        priority: u8,
        /// As given.
        reached: u64,
        /// As given.
        available: u64,
        /// The lane's capacity.
        capacity: u64,
    },
    /// Too many reply boxes.
    #[error("{value} reply boxes are over the limit of {max}")]
    ReplyBoxes {
        /// As given.
        value: u32,
        /// The most allowed.
        max: u32,
    },
    /// Capacities that give no layout of the segment.
    #[error("capacities give no valid layout")]
    NoLayout,
}

/// Why a segment may not be used ([`OpenError::PermissionDenied`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The name is a symbolic link (never followed).
    #[error("it is a symbolic link")]
    SymbolicLink,
    /// The file cannot be opened for reading and writing.
    #[error("no read/write access")]
    NoAccess,
    /// The name is not a regular file.
    #[error("it is not a regular file")]
    NotRegularFile,
    /// The file belongs to another user.
    #[error("it belongs to uid {owner}, not to this user (uid {user})")]
    OtherUser {
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// Someone changed the file's mode since it was created.
    #[error("its mode is {mode:03o}, but it was created with {created:03o}")]
    ModeChanged {
        /// The mode now.
        mode: u32,
        /// The mode it was created with.
        created: u32,
    },
    /// The file's name cannot be removed by this user.
    #[error("not allowed to remove it")]
    RemoveNotAllowed,
}

/// What does not match between a segment and this build ([`OpenError::Incompatible`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// Made on a machine of the other byte order.
    #[error("it was made on a machine of the other byte order")]
    ByteOrder,
    /// Made by a baton of another layout version.
    #[error("format version {found} (this baton reads {supported})")]
    Format {
        /// The segment's version.
        found: u32,
        /// The one this build reads.
        supported: u32,
    },
    /// Made by a build of another ABI (word size, libc, mutex size, ...).
    #[error("ABI tag {found} does not match this build's {ours}")]
    Abi {
        /// The segment's tag, as text.
        found: String,
        /// This build's tag, as text.
        ours: String,
    },
}

/// What is wrong with a segment's contents ([`OpenError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentDamage {
    /// The file cannot even hold a header.
    #[error("it is {size} bytes, smaller than a header ({header})")]
    SmallerThanHeader {
        /// Its size.
        size: u64,
        /// The header's size.
        header: usize,
    },
    /// The first word is not baton's magic.
    #[error("bad magic {0:#018x}")]
    BadMagic(u64),
    /// The header's size is not this layout's.
    #[error("header size {0}")]
    HeaderSize(u32),
    /// Stored capacities that are not whole cells.
    #[error("capacities are not multiples of 64")]
    CapacityNotCells,
    /// Stored attributes out of range.
    #[error("attributes out of range: {0}")]
    Attributes(AttributeError),
    /// Stored capacities that give no layout.
    #[error("no valid layout")]
    NoLayout,
    /// The stored lane offsets or size differ from what the attributes give.
    #[error("stored layout does not match its attributes")]
    LayoutMismatch,
    /// The header's flags hold bits no version of this format writes.
    #[error("unknown flags {0:#x} in the header")]
    Flags(u32),
    /// The file is not as long as its layout (truncated or extended by someone).
    #[error("it is {size} bytes but its layout needs {needed} (truncated?)")]
    Truncated {
        /// Its size.
        size: u64,
        /// What the layout needs.
        needed: u64,
    },
    /// The stored queue or domain name is not valid text of its stored length.
    #[error("stored name is not valid")]
    BadName,
    /// The file holds another queue (a hashed long name's collision, or a file moved).
    #[error("it holds queue {name:?} of domain {domain:?}")]
    OtherQueue {
        /// The queue it holds.
        name: String,
        /// Of this domain.
        domain: String,
    },
}

/// Why the owner lock is unusable ([`OwnError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockDamage {
    /// Marking the lock consistent after a dead owner failed.
    #[error("consistent failed: errno {0}")]
    ConsistentFailed(i32),
    /// A previous holder unlocked it without recovering it.
    #[error("the lock is not recoverable (a previous owner unlocked it without recovery)")]
    NotRecoverable,
    /// Locking failed with another error number.
    #[error("locking the owner mutex failed: {}", std::io::Error::from_raw_os_error(*.0))]
    LockFailed(i32),
    /// The mutex's type word was overwritten (by a peer that can write the segment): baton
    /// does not hand it to pthread.
    #[error("the owner mutex's type word was overwritten: it reads {found:#x}, baton makes {expected:#x}")]
    KindChanged {
        /// The word found.
        found: u32,
        /// The word a mutex baton makes has.
        expected: u32,
    },
}

/// Errors from taking ownership of a queue (opening a [`crate::Receiver`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnError {
    /// Another live process owns the queue.
    #[error("queue {name:?} is busy: owned by {}", pid.map_or("another process".to_string(), |p| format!("pid {p}")))]
    Busy {
        /// The queue name.
        name: String,
        /// The owner's pid, if known.
        pid: Option<u32>,
    },
    /// The owner lock is unusable.
    #[error("owner lock of queue {name:?} is unusable: {reason}")]
    Corrupt {
        /// The queue name.
        name: String,
        /// What the lock said.
        reason: LockDamage,
    },
    /// Ownership was taken with [`crate::ReceiverOptions::empty`], and discarding the waiting
    /// messages failed (the queue stays owned by nobody; nothing was lost).
    #[error("could not empty queue {name:?} on taking it: {source}")]
    Discard {
        /// The queue name.
        name: String,
        /// What receiving the messages to discard failed with.
        source: RecvError,
    },
    /// A standby's deadline passed before the queue became free.
    #[error("timed out waiting to own queue {name:?}")]
    Timeout {
        /// The queue name.
        name: String,
    },
    /// The queue was removed.
    #[error("queue {name:?} has been removed")]
    Removed {
        /// The queue name.
        name: String,
    },
    /// A standby could not be counted as one ([`crate::Queue::standby_mark`]): it could not
    /// have a slot of the sender table.
    #[error("cannot wait to own queue {name:?} as a standby: {reason}")]
    NoStandbySlot {
        /// The queue name.
        name: String,
        /// Why.
        reason: SlotError,
    },
    /// The queue is shared by competing consumers: nobody owns it. Take from it with
    /// [`crate::Queue::consumer`].
    #[error("queue {name:?} is shared by competing consumers: nobody owns it (use a consumer)")]
    Shared {
        /// The queue name.
        name: String,
    },
    /// The queue has one owner at a time, not competing consumers: receive with
    /// [`crate::Queue::receiver`], or create the queue with [`crate::Attributes::shared`].
    #[error("queue {name:?} is not shared: one owner at a time receives (create it shared for competing consumers)")]
    NotShared {
        /// The queue name.
        name: String,
    },
    /// A consumer needs a slot of the queue's process table (its liveness), and could not
    /// have one.
    #[error("cannot consume from queue {name:?}: {reason}")]
    NoConsumerSlot {
        /// The queue name.
        name: String,
        /// Why.
        reason: SlotError,
    },
    /// A priority over 3 (there are four: 0 highest to 3).
    #[error("priority {0} is out of range: 0 (highest) to 3")]
    InvalidPriority(u8),
    /// The keeper thread could not be started.
    #[error("cannot start the owner thread: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a process could not have a slot of a queue's sender table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// Every slot is held by a live process.
    #[error("all {0} sender slots of the queue are held by live processes")]
    AllHeld(usize),
    /// The thread that holds a slot's lock could not be started.
    #[error("cannot start the thread that holds a sender slot: {0}")]
    NoThread(std::io::ErrorKind),
}

/// Errors from sending.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The payload is larger than the queue's maximum message size. Nothing was written.
    #[error("message of {len} bytes is too big: the queue's maximum is {max}")]
    TooBig {
        /// Payload length.
        len: usize,
        /// The queue's maximum.
        max: u32,
    },
    /// Priorities are 0 (highest) to 3.
    #[error("invalid priority {0}: priorities are 0 (highest) to 3")]
    InvalidPriority(u8),
    /// The lane stayed full until the deadline.
    #[error("timed out waiting for space in the queue")]
    Timeout,
    /// The queue was removed (by `rm`, or because its retention ran out). A message whose send
    /// raced with the removal either went with the queue or was received just before it went
    /// (a retention-0 queue's owner can take it and close): which, nobody can tell.
    #[error("queue has been removed")]
    Removed,
    /// Every slot of the queue's sender table is held by a live process.
    #[error("cannot send: {0}")]
    NoSenderSlot(SlotError),
    /// The message was abandoned while being written: the receiver found this sender's process
    /// dead (only possible after `fork`, when a child sends through its parent's handle).
    #[error("message was abandoned before it was committed")]
    Abandoned,
    /// The loan was inherited through `fork`: its claim is the parent's, which alone may
    /// commit it (the child's copy is empty, and dropping it cancels nothing).
    #[error("this loan was inherited through fork: only the process that made it can commit it")]
    ForkedCopy,
    /// The queue's shared state is damaged.
    #[error("queue is corrupt: {0}")]
    Corrupt(Damage),
    /// [`crate::Sender::space_fd`]: its eventfd or helper thread could not be made.
    #[error("cannot make the space fd: {0}")]
    NoSpaceFd(std::io::ErrorKind),
}

/// Errors from [`crate::Sender::try_send`]: the message comes back when the lane is full.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrySendError<M> {
    /// The lane has no room now; here is the message back.
    #[error("queue is full")]
    Full(M),
    /// Any other failure (too big, corrupt).
    #[error(transparent)]
    Failed(SendError),
}

impl<M> TrySendError<M> {
    /// The message, if the lane was full.
    ///
    /// # Examples
    ///
    /// ```
    /// # use baton::{Attributes, Domain, Queue};
    /// # let domain = Domain::new(&format!("doc-into-message-{}", std::process::id()))?;
    /// # let q = Queue::create(&domain, "q", &Attributes::default())?;
    /// use baton::TrySendError;
    /// let tx = q.sender();
    /// let mut kept = None;
    /// for i in 0u32.. {
    ///     if let Err(e) = tx.try_send(i.to_le_bytes()) {
    ///         kept = e.into_message(); // the lane was full: the message comes back
    ///         break;
    ///     }
    /// }
    /// assert!(kept.is_some());
    /// # Queue::remove(&domain, "q")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_message(self) -> Option<M> {
        match self {
            TrySendError::Full(m) => Some(m),
            TrySendError::Failed(_) => None,
        }
    }
}

/// Errors from receiving.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// `try_recv`: nothing is waiting.
    #[error("queue is empty")]
    Empty,
    /// `recv_timeout`: nothing arrived before the deadline.
    #[error("timed out waiting for a message")]
    Timeout,
    /// A [`Canceller`](crate::Canceller) interrupted the wait; nothing was taken.
    #[error("receive interrupted (cancelled)")]
    Interrupted,
    /// The queue was removed; waiting messages went with it.
    #[error("queue has been removed")]
    Removed,
    /// Another process took the queue over: this receiver no longer owns it.
    #[error("ownership lost: the queue is now owned at epoch {now} (this receiver held {held})")]
    OwnershipLost {
        /// The epoch this receiver held.
        held: u64,
        /// The queue's epoch now.
        now: u64,
    },
    /// This receiver is a copy that a `fork`ed child inherited: only the process that opened
    /// it owns the queue (the child does not hold the owner lock), so the child cannot receive
    /// through it. Open a receiver (or standby) in the child instead.
    #[error(
        "this receiver was inherited through fork: only the process that opened it owns the queue"
    )]
    ForkedCopy,
    /// The queue's shared state is damaged.
    #[error("queue is corrupt: {0}")]
    Corrupt(Damage),
    /// The ready fd (`ready_fd`) could not be made: its eventfd or its helper thread.
    #[error("cannot make the ready fd: {0}")]
    NoHelper(std::io::ErrorKind),
}

/// Errors from acknowledging a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// The receiver that delivered the message is gone (dropped, or its ownership lost), or
    /// this is a `fork`ed child's copy of a consumer's message: the message stays in the queue
    /// and is delivered again, flagged redelivered.
    #[error("the receiver is closed: the message will be redelivered to the next owner")]
    Closed,
    /// The record's shared state is damaged.
    #[error("queue is corrupt: {0}")]
    Corrupt(Damage),
}

/// Errors from [`crate::Sender::request`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply came before the deadline. The request may still be received; its reply will
    /// then be refused to its replier (and counted as dropped).
    #[error("no reply before the deadline")]
    Timeout,
    /// The request's payload is over the queue's maximum message size less the 8 bytes of its
    /// reply token. Nothing was sent.
    #[error("request of {len} bytes is too big: the queue takes requests of at most {max} (its maximum message size less the 8-byte reply token)")]
    TooBig {
        /// Payload length.
        len: usize,
        /// The largest request payload.
        max: usize,
    },
    /// The queue was created with no reply boxes ([`crate::Attributes::reply_boxes`] 0).
    #[error("this queue takes no requests: it was created with 0 reply boxes")]
    NoReplyBoxes,
    /// Every reply box stayed held by other waiting requests until the deadline. Nothing was
    /// sent.
    #[error("all {boxes} reply boxes of the queue stayed in use by other requests until the deadline (create the queue with more reply boxes)")]
    AllBoxesBusy {
        /// How many boxes the queue has.
        boxes: u16,
    },
    /// The queue was removed.
    #[error("queue has been removed")]
    Removed,
    /// The request could not be sent.
    #[error("request not sent: {0}")]
    Send(SendError),
    /// [`crate::PendingRequest`]: its reply was taken already.
    #[error("the reply to this request was taken already")]
    ReplyTaken,
    /// [`crate::PendingRequest::ready_fd`]: its eventfd or helper thread could not be made.
    #[error("cannot make the reply's ready fd: {0}")]
    NoHelper(std::io::ErrorKind),
    /// A `Delivery` inherited through `fork`: its report is the sending process's.
    #[error("this delivery was inherited through fork: only the process that sent the message learns of it")]
    ForkedCopy,
    /// The queue's shared state is damaged (a reply box, or the lane).
    #[error("queue is corrupt: {0}")]
    Corrupt(Damage),
}

/// Errors from replying ([`crate::Message::reply`], [`crate::Queue::reply`]). A reply that is
/// refused reaches nobody; one refused because it was late or a second one is counted in
/// [`crate::Status::replies_dropped`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The message is not a request (it was sent with `send`, not `request`).
    #[error("the message is not a request: there is nobody to reply to")]
    NotARequest,
    /// The request already has its reply (an earlier delivery of it was answered).
    #[error("this request has its reply already (a request is answered once)")]
    AlreadyReplied,
    /// The requester no longer waits for this reply: it gave up (its timeout passed), or died,
    /// or already had a reply and went on. The reply is dropped.
    #[error("the requester no longer waits for this reply (it timed out, died, or has its reply): the reply is dropped")]
    RequesterGone,
    /// The reply is over the queue's maximum message size.
    #[error("reply of {len} bytes is too big: a reply box holds {max}")]
    TooBig {
        /// Reply length.
        len: usize,
        /// What a box holds.
        max: usize,
    },
    /// The queue was removed.
    #[error("queue has been removed")]
    Removed,
    /// Every slot of the queue's sender table is held by a live process.
    #[error("cannot reply: {0}")]
    NoSenderSlot(SlotError),
    /// The queue's shared state is damaged.
    #[error("queue is corrupt: {0}")]
    Corrupt(Damage),
}

/// What is damaged in a queue's shared memory, as sends, receives and acknowledgements report
/// it (the SA-Forum C API maps each to an error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// A lane's words contradict each other: what, and where.
    #[error(transparent)]
    Lane(#[from] baton_ring::lane::Corrupt),
    /// A record flagged as a request too short to hold its reply token.
    #[error("a request of {len} bytes has no room for its 8-byte reply token")]
    RequestWithoutToken {
        /// The record's length.
        len: usize,
    },
    /// A reply box's state word holds what no requester or replier writes.
    #[error("reply box {index} holds state {state:#x}, which no request or reply makes")]
    ReplyBox {
        /// The box.
        index: u16,
        /// Its state word.
        state: u64,
    },
    /// Another process shrank the segment's file: touching the lost part would be a SIGBUS.
    #[error("the segment was truncated to {file_size} bytes by another process (it needs {size})")]
    Truncated {
        /// The file's size now.
        file_size: u64,
        /// The segment's size.
        size: u64,
    },
}

/// A lane's inconsistent shared state, as each operation reports it.
macro_rules! from_damage {
    ($($t:ty),*) => {$(
        impl From<baton_ring::lane::Corrupt> for $t {
            fn from(c: baton_ring::lane::Corrupt) -> Self {
                <$t>::Corrupt(Damage::Lane(c))
            }
        }
        impl From<Damage> for $t {
            fn from(d: Damage) -> Self {
                <$t>::Corrupt(d)
            }
        }
    )*};
}
from_damage!(SendError, RecvError, AckError);

/// Errors from queue groups ([`crate::Group`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No group of that name in the domain.
    #[error("no queue group {group:?} in domain {domain:?}")]
    NotFound {
        /// The domain.
        domain: String,
        /// The group.
        group: String,
    },
    /// A group of that name exists already.
    #[error("queue group {group:?} exists already in domain {domain:?}")]
    Exists {
        /// The domain.
        domain: String,
        /// The group.
        group: String,
    },
    /// A message to the group has nowhere to go (SA-Forum `QUEUE_NOT_AVAILABLE`).
    #[error("queue group {group:?} has no queue to send to: {why}")]
    NotAvailable {
        /// The group.
        group: String,
        /// Why: no members, none on this node, none whose queue exists.
        why: &'static str,
    },
    /// The queue is a member already.
    #[error("queue {queue:?} is a member of group {group:?} already")]
    AlreadyMember {
        /// The group.
        group: String,
        /// The queue.
        queue: String,
    },
    /// The queue is not a member.
    #[error("queue {queue:?} is not a member of group {group:?}")]
    NotMember {
        /// The group.
        group: String,
        /// The queue.
        queue: String,
    },
    /// The group has as many members as it can hold.
    #[error("queue group {group:?} is full: it holds at most {max} members")]
    Full {
        /// The group.
        group: String,
        /// The most members a group holds.
        max: usize,
    },
    /// The group was removed.
    #[error("queue group {group:?} has been removed")]
    Removed {
        /// The group.
        group: String,
    },
    /// Another process held the group's lock for the whole wait (it is hung, or stopped).
    #[error("queue group {group:?} is being changed by a process that does not finish (stopped?)")]
    Busy {
        /// The group.
        group: String,
    },
    /// A broadcast to the group reached none of its members: why each failed.
    #[error("queue group {group:?}: the broadcast reached no member ({})", .failed.iter().map(|(q, e)| format!("{q}: {e}")).collect::<Vec<_>>().join("; "))]
    Undelivered {
        /// The group.
        group: String,
        /// Each member, and why.
        failed: Vec<(String, GroupError)>,
    },
    /// The group's file is damaged (a peer wrote over it).
    #[error("queue group {group:?} is corrupt: {why}")]
    Corrupt {
        /// The group.
        group: String,
        /// What is wrong.
        why: String,
    },
    /// Opening the group, or a member queue.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Sending to the member queue chosen.
    #[error("sending to queue {queue:?}: {error}")]
    Send {
        /// The member queue.
        queue: String,
        /// What went wrong.
        error: SendError,
    },
    /// A request to the member queue chosen.
    #[error("request to queue {queue:?}: {error}")]
    Request {
        /// The member queue.
        queue: String,
        /// What went wrong.
        error: RequestError,
    },
    /// A request to a broadcast group (it would have one reply per member).
    #[error("queue group {group:?} broadcasts: a request needs one receiver")]
    RequestToBroadcast {
        /// The group.
        group: String,
    },
    /// A tracker's ready fd (`GroupTracker::ready_fd`) could not be made: its eventfd or its
    /// helper thread.
    #[error("cannot make the tracker's ready fd: {0}")]
    NoHelper(std::io::ErrorKind),
}

/// What a local process group says went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessGroupError {
    /// The group's segment cannot be made or opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A send failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// This process is a member of the group already: a member is a process.
    #[error("this process is a member of process group {0:?} already")]
    AlreadyMember(String),
    /// A configuration too small for a JOIN record.
    #[error("a process group's maximum message must be at least {min} bytes (a JOIN lists every member), not {max_message}")]
    MaxMessageTooSmall {
        /// What was asked for.
        max_message: u32,
        /// The least.
        min: u32,
    },
    /// This process cannot take a slot in the group (every one is held).
    #[error("cannot join: {0}")]
    NoSlot(#[from] SlotError),
    /// The log stayed full (a member does not read) until the deadline.
    #[error("the process group's log stayed full: a member is not reading")]
    Timeout,
    /// This handle was inherited through `fork`: the membership is the parent's.
    #[error("this member handle was inherited through fork: the membership is the parent's")]
    ForkedCopy,
    /// The group was removed.
    #[error("the process group has been removed")]
    Removed,
    /// This member has left.
    #[error("this member has left the group")]
    Left,
    /// The descriptor of `LocalMember::ready_fd` cannot be made (no eventfd, no thread).
    #[error("cannot make the member's descriptor: {0}")]
    NoHelper(std::io::ErrorKind),
    /// The group's log holds what no member wrote.
    #[error("the process group's log is corrupt: {0}")]
    Corrupt(Damage),
}

impl From<baton_ring::lane::Corrupt> for ProcessGroupError {
    fn from(c: baton_ring::lane::Corrupt) -> Self {
        ProcessGroupError::Corrupt(c.into())
    }
}
