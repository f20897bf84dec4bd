//! # baton-ring
//!
//! The OS-free core of [baton](https://docs.rs/baton): the lock-free priority lane and the
//! sleep/wake protocol, written over a plain memory region and model-checked with loom.
//!
//! - [`lane`]: one lane, a bounded multi-producer ring of variable-length records, and the
//!   views of its roles: [`lane::LaneSender`] (claim, write, commit, cancel) and
//!   [`lane::LaneOwner`] (take, acknowledge, move the head, recover). A view of a role is made
//!   only by an `unsafe` call whose contract is the proof of that role (a held sender slot,
//!   ownership of the queue); the `baton` crate makes them from its lock guards, so "only the
//!   owner calls this" is checked by the compiler there.
//! - [`events`]: the event log, a broadcast ring that any process appends to and any number
//!   of readers follow at their own pace (owner changes, takeovers, consumers, queues made and
//!   removed).
//! - [`reply`]: the reply boxes of request/reply: claimed by a requester, won, written and
//!   published by exactly one replier, taken over from a replier that died.
//! - [`roster`]: a queue group's table, rewritten by one writer at a time and read by anyone
//!   without a lock, never torn; a writer dying half way leaves it as it was.
//! - [`wake`]: the event count that sleepers wait on, behind the [`wake::Waiter`] trait (the
//!   `baton` crate's waiter is a shared futex; the models' a loom condition variable).
//! - [`failpoint`]: named steps where kill tests stop a process.
//!
//! Everything atomic comes from one facade module, swapped whole for loom's in loom builds;
//! nothing else here depends on loom. This crate knows nothing of processes, files or
//! syscalls: shared memory is one region provider ([`lane::Lane::new`]), the heap
//! ([`lane::HeapLane`]) another.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod events;
pub mod failpoint;
pub mod lane;
pub mod lookout;
pub mod reply;
pub mod roster;
mod sync;
pub mod wake;

pub use sync::{spin_hint, AtomicU32, AtomicU64, DataCell, Ordering};
