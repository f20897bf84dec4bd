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

/// The `baton` CLI as pid 1 of a new pid namespace, in the test's domain (root only); killing
/// the `unshare` process (by pid) kills it too (`--kill-child`).
pub fn baton_in_new_pid_namespace(t: &TestDomain) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--kill-child",
        env!("CARGO_BIN_EXE_baton"),
    ])
    .env("BATON_DOMAIN", t.name())
    .stdin(Stdio::null());
    c
}

/// Runs `baton ARGS` in the test's domain and waits for it.
pub fn run(t: &TestDomain, args: &[&str]) -> std::process::Output {
    t.baton().args(args).output().unwrap()
}

/// Runs `baton ARGS`, which must succeed (the assertion shows its standard error).
pub fn ok(t: &TestDomain, args: &[&str]) -> std::process::Output {
    let o = run(t, args);
    assert!(
        o.status.success(),
        "baton {}: {}",
        args.join(" "),
        stderr(&o)
    );
    o
}

/// A command's standard error, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
