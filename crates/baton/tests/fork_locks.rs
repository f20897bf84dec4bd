//! A forked child inherits the parent's process-local mutexes in the state they were in at the
//! fork. A child's copy of a receiver, of its messages, and of a queue handle that holds no
//! slot of its own, must not lock them: a thread of the parent may have held one at the fork
//! (acknowledging a message on a worker thread), and the child's copy stays locked for ever.
//! (A child's own first send still locks its sender-slot state: docs/failure-model.md, "fork".)
//!
//! The window is made deterministic with the failpoints (`pause` parks the thread that holds
//! the mutex). Everything runs in a forked helper process, so that the parked thread and the
//! hung child go with it.

mod common;
use baton::{Attributes, Queue};
use common::TestDomain;
use nix::unistd::{fork, ForkResult, Pid};
use std::time::Duration;

/// Runs `scenario` in a forked helper process with `BATON_FAILPOINT=<failpoint>`; the scenario
/// returns the pid of the grandchild whose exit within 3 s is what the test wants. Returns the
/// helper's exit code: 0 the grandchild exited by itself, 1 it hung (and was killed), 2 it
/// failed otherwise.
fn in_helper(failpoint: &str, scenario: impl FnOnce() -> Pid) -> Option<i32> {
    // SAFETY: the helper runs the scenario and `_exit`s.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // Single-threaded here, and before any failpoint was reached in this process.
            // BATON_FORK_LOCKS_CONTROL=1: the same run with no thread parked; it passes even
            // without the fix, which shows that the inherited mutex, and nothing else, hangs
            // the child.
            let control = std::env::var("BATON_FORK_LOCKS_CONTROL").is_ok();
            std::env::set_var(
                "BATON_FAILPOINT",
                if control { "none:pause" } else { failpoint },
            );
            let grandchild = scenario();
            let code = match common::reap(grandchild, Duration::from_secs(3)) {
                Some(0) => 0,
                None => 1,
                Some(_) => 2,
            };
            // SAFETY: ends the helper; its parked thread goes with it.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => common::reap(child, Duration::from_secs(30)),
    }
}

/// A worker thread acknowledges a message while the main thread forks (here parked inside the
/// acknowledgement, holding `Owned::local`). The child drops its copy of the receiver: a no-op
/// by design (a forked copy), but it waits for ever on the inherited locked mutex.
#[test]
fn a_child_forked_during_an_ack_on_another_thread_can_drop_its_copy_of_the_receiver() {
    let t = TestDomain::new("rv-forkack");
    let domain = t.domain.clone();
    let code = in_helper("ack.marked:pause", move || {
        let q = Queue::create(&domain, "q", &Attributes::default()).unwrap();
        q.sender().send(b"one").unwrap();
        q.sender().send(b"two").unwrap();
        let mut rx = q.receiver().unwrap();
        let one = rx.recv().unwrap();
        std::thread::spawn(move || one.ack()); // parks in the ack, holding the receiver's mutex
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: the grandchild drops its copy of the receiver and `_exit`s.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(rx);
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                std::mem::forget(rx); // its mutex is held by the parked thread
                child
            }
        }
    });
    assert_eq!(
        code,
        Some(0),
        "the forked child hung dropping its copy of the receiver (Owned::local inherited locked)"
    );
}
