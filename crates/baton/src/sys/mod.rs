//! What baton asks of the operating system, and nothing else: the shared clock, futexes,
//! robust process-shared mutexes, liveness across `fork`, and the files in `/dev/shm`.
//!
//! The lowest layer of the crate (after errors and names): it imports nothing from the
//! modules above it.

pub(crate) mod clock;
pub(crate) mod futex;
pub(crate) mod liveness;
pub(crate) mod robust;
pub(crate) mod shm;
