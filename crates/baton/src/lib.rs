//! # baton
//!
//! Named message queues between processes on one machine, in POSIX shared memory, that keep
//! working when processes die.
//!
//! A queue has four priority lanes (0 highest), each a lock-free ring with its own byte budget.
//! Any process may send; one process at a time owns the queue and receives. Receivers spin
//! briefly, then sleep on a futex; senders make no syscall while nobody sleeps. Ownership is a
//! robust process-shared mutex.
//!
//! ```
//! use baton::{Attributes, Domain, Queue};
//! let domain = Domain::new(&format!("doc-{}", std::process::id()))?;
//! let q = Queue::create(&domain, "orders", &Attributes::default())?;
//! let urgent = q.sender().with_priority(0)?;
//! q.sender().send(b"routine")?;
//! urgent.send(b"urgent")?;
//! let mut rx = q.receiver()?;
//! assert_eq!(rx.recv()?.payload(), b"urgent");
//! assert_eq!(rx.recv()?.payload(), b"routine");
//! # drop(rx); Queue::remove(&domain, "orders")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/design.md` for the memory layout, the lane algorithm and the wake protocol.
//!
//! The lock-free lane and the wake protocol underneath live in the `baton-ring` crate and are
//! not part of this API: used wrongly they would let safe code race on shared memory.
//!
//! ```compile_fail
//! use baton::lane::Lane; // not exported: the queue is the API
//! ```
//!
//! # Layers
//!
//! The modules are layers, and a module imports only from the layers below it (a test,
//! `tests/layers.rs`, enforces it; `docs/design.md` has the map):
//!
//! | layer      | owns                                                                      |
//! |------------|---------------------------------------------------------------------------|
//! | `error`    | the public error types                                                    |
//! | `name`     | domains and queue names                                                   |
//! | `sys`      | the OS: clock, futex, robust mutexes, liveness across `fork`, `/dev/shm` files |
//! | `segment`  | attributes, the `repr(C)` layout, mapping and validating a segment        |
//! | `recovery` | what survives a dead process: sender slots, standbys, the recovery procedure |
//! | `owner`    | the owner lock: acquiring it, the guard that proves it, releasing it      |
//! | `queue`    | the API: `Queue`, `Sender`, `Receiver`, `Message`, `Status`               |
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod error;
mod name;
mod owner;
mod queue;
mod recovery;
mod segment;
mod sys;

pub use baton_ring::lane::Corrupt as LaneDamage;
pub use error::{
    AckError, AttributeError, Damage, Denial, GroupError, Incompatibility, LockDamage, OpenError,
    OwnError, RecvError, ReplyError, RequestError, SegmentDamage, SendError, SlotError,
    TrySendError,
};
pub use name::{check_queue_name, Domain, DEFAULT_DOMAIN, DOMAIN_ENV, MAX_NAME};
pub use queue::{check_node_name, outbox};
pub use queue::{
    Attached, CancelPoint, Canceller, Consumer, Delivered, Delivery, Event, EventKind, Events,
    Followed, Group, GroupChange, GroupMember, GroupPolicy, GroupSender, GroupSent, GroupTracker,
    InPlace, LaneStatus, ListEntry, Loan, LocalChange, LocalDelivery, LocalGroupConfig,
    LocalMember, MemberChange, Message, Metadata, Peeked, PendingRequest, ProcessGroupError, Queue,
    Receiver, ReceiverOptions, RemoteAddress, Reply, ReplyTo, Sender, SpaceFd, StandbyMark, Status,
    TrackedMember, TypeFilter, DEFAULT_OUTBOX, DEFAULT_SPIN, MAX_NODE_NAME, OTHER_NODE, THIS_NODE,
};
pub use segment::{Attributes, PRIORITIES};
pub use sys::clock::monotonic_ns;
pub use sys::shm::SHM_DIR;
