//! The library half of the `baton` command: the transport comparison that `baton bench` and
//! `benches/transports.rs` share. The command itself is `src/main.rs`.

pub mod transports;
