//! The owner's lane views are made once and kept in `OwnerGuard` (written as an adversarial
//! review of that change): a forked child's copies must still touch no lane, including the one path where the forking thread
//! holds a view across the fork (a fork inside `try_recv_batch`'s closure), and the receive
//! calls that use the cached views directly (in place, batch).

mod common;
use baton::{Attributes, Queue, RecvError};
use common::TestDomain;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

#[test]
fn a_child_forked_inside_a_batch_closure_touches_no_lane() {
    let t = TestDomain::new("rv-forkbatch");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for i in 0..6u8 {
        q.sender().send(&[i]).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    let mut child = None;
    let mut seen = Vec::new();
    let n = rx
        .try_recv_batch(3, |payload, meta| {
            seen.push((payload[0], meta.redelivered));
            if payload[0] == 1 {
                // SAFETY: the child only finishes the batch and its copies, then `_exit`s.
                match unsafe { fork() }.unwrap() {
                    ForkResult::Child => child = None,
                    ForkResult::Parent { child: c } => child = Some(c),
                }
            }
        })
        .map_err(|e| e.to_string());
    let Some(child) = child else {
        // The child: the batch must have ended at the fork with an error, handing out nothing
        // more (record 2 is the parent's), and every receive says ForkedCopy.
        let mut code = 0;
        if n.is_ok() || seen.len() != 2 {
            code |= 1;
        }
        if !matches!(rx.try_recv(), Err(RecvError::ForkedCopy)) {
            code |= 2;
        }
        if !matches!(rx.try_recv_in_place(), Err(RecvError::ForkedCopy)) {
            code |= 4;
        }
        if !matches!(rx.try_recv_batch(4, |_, _| {}), Err(RecvError::ForkedCopy)) {
            code |= 8;
        }
        drop(rx);
        drop(q);
        // SAFETY: ends the child without running the parent's other destructors.
        unsafe { libc::_exit(code) }
    };
    assert_eq!(
        common::reap(child, LONG),
        Some(0),
        "what the child saw (bits)"
    );
    assert_eq!(n, Ok(3));
    assert_eq!(seen, vec![(0, false), (1, false), (2, false)]);
    // The parent's ownership and lanes are as it left them: the rest, once each, unflagged.
    let rest: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|m| (m.payload()[0], m.redelivered()))
        .collect();
    assert_eq!(rest, vec![(3, false), (4, false), (5, false)]);
    drop(rx);
    assert_eq!(q.status().lanes[3].messages, 0);
}
