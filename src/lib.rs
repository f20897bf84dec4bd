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
//! The lock-free lane and the wake protocol underneath are not part of the API: used wrongly
//! they would let safe code race on shared memory.
//!
//! ```compile_fail
//! use baton::lane::Lane; // crate-private outside loom model builds
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

// The lane and the wake protocol are the crate's own: used wrongly (two writers through one
// claim, a made-up record reference) they race. Only loom builds, which exist for the models in
// `loom-tests/`, export them.
#[cfg(loom)]
pub mod lane;
#[cfg(not(loom))]
pub(crate) mod lane;
mod sync;
#[cfg(loom)]
pub mod wait;
#[cfg(not(loom))]
pub(crate) mod wait;

#[cfg(not(loom))]
#[doc(hidden)]
pub mod bench;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
mod owner;
#[cfg(not(loom))]
mod queue;
#[cfg(not(loom))]
mod recovery;
#[cfg(not(loom))]
mod robust;
#[cfg(not(loom))]
mod segment;

#[cfg(not(loom))]
pub use error::{
    AckError, Damage, OpenError, OwnError, RecvError, SendError, SlotError, TrySendError,
};
#[cfg(not(loom))]
pub use lane::Corrupt as LaneDamage;
#[cfg(not(loom))]
pub use name::{check_queue_name, Domain, DEFAULT_DOMAIN, DOMAIN_ENV, MAX_NAME};
#[cfg(not(loom))]
pub use queue::{
    monotonic_ns, Attached, InPlace, LaneStatus, ListEntry, Loan, Message, Metadata, Queue,
    Receiver, ReceiverOptions, Sender, StandbyMark, Status, DEFAULT_SPIN, PRIORITIES,
};
#[cfg(not(loom))]
pub use segment::{Attributes, SHM_DIR};
