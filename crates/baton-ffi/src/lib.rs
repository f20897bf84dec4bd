//! # baton-ffi: libSaMsg
//!
//! The SA-Forum Message Service C interface (`saMsg.h`, `saAis.h`, in `include/`) over baton
//! queues in shared memory: `cargo build --release -p baton-ffi` makes `libSaMsg.so` and
//! `libSaMsg.a` and writes the headers and `SaMsg.pc` to `target/include/` and
//! `target/pkgconfig/` (see `docs/c-api.md`).
//!
//! Every function checks its handles (a stale, forged or finalized one is
//! `SA_AIS_ERR_BAD_HANDLE`, never a crash), its pointers (NULL where one is needed is
//! `SA_AIS_ERR_INVALID_PARAM`) and its names, and returns the specification's code; a panic
//! is caught at the boundary and becomes `SA_AIS_ERR_LIBRARY`.
//!
//! Handles are numbers: an index into a table and a generation, so a handle that was closed
//! (or finalized) is recognised as such even after its slot is reused. Blocking calls work on
//! the handle's own state, outside the table's lock: a `saMsgMessageGet` waiting on one queue
//! does not hold up calls on others, and `saMsgMessageCancel` from another thread interrupts
//! it.
#![allow(non_snake_case)] // the library is libSaMsg, and the functions are the specification's
#![deny(unsafe_op_in_unsafe_fn)]

mod handles;
mod msg;
mod names;
mod types;

pub use msg::*;
pub use types::*;
