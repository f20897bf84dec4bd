//! The library's test helpers (`crates/baton/tests/common`), and the `baton` binary of this
//! crate to run in a test's domain.
#![allow(dead_code)]

#[path = "../../../baton/tests/common/mod.rs"]
mod shared;
pub use shared::*;

use std::process::{Command, Stdio};

/// The `baton` CLI with a test domain in its environment.
pub trait Cli {
    fn baton(&self) -> Command;
}

impl Cli for TestDomain {
    fn baton(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
        c.env("BATON_DOMAIN", self.name()).stdin(Stdio::null());
        c
    }
}
