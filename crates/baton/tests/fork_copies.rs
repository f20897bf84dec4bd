//! What a `fork`ed child inherits holds nothing and touches nothing: a child's copies of a
//! receiver and its messages, and of a loan the parent is writing in place (dropping it must
//! not cancel the parent's claim, nor let the parent write into another message's cells).

mod common;
use baton::{AckError, Attributes, Queue, RecvError};
use common::TestDomain;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

/// The parent holds a loan (a claim it is writing in place) when it forks. The child leaves
/// the scope that held it, so its copy of the `Loan` is dropped: `Loan::drop` cancels the claim
/// (a compare-and-swap on the shared stamp, under the PARENT's slot). The parent's commit then
/// fails with a corrupt-queue error and its message is lost; worse, the owner steps over the
/// cancelled claim and frees its cells while the parent still writes into them.
#[test]
fn a_forked_childs_copy_of_a_loan_does_not_cancel_the_parents_loan() {
    let t = TestDomain::new("rv-forkloan");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let tx = q.sender();
    let mut loan = tx.loan(8, 3).unwrap();
    loan.copy_from_slice(b"parent!!");
    // SAFETY: the child only drops its copy of the loan and `_exit`s.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(loan); // e.g. a forked worker leaving the scope that held it
                        // SAFETY: ends the child without running the parent's other destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, LONG), Some(0));
    let committed = loan.commit();
    assert_eq!(
        committed,
        Ok(()),
        "the parent's loan was cancelled by the child's copy"
    );
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.try_recv().unwrap().payload(), b"parent!!");
}

/// The same, carried on: once the child's copy has cancelled the parent's claim, the owner
/// steps over it and frees its cell, and the next message is written into that cell, while
/// the parent's loan still hands out `&mut` access to it. The parent's (safe) writes land in
/// another sender's committed message. (A one-cell lane, so the next message reuses the cell.)
#[test]
fn a_forked_childs_copy_of_a_loan_cannot_make_the_parent_write_into_another_message() {
    let t = TestDomain::new("rv-forkloan2");
    let attrs = Attributes {
        capacity: [64; 4],
        max_message: 32,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    let mut loan = tx.loan(8, 3).unwrap();
    // SAFETY: the child only drops its copy of the loan and `_exit`s.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(loan);
            // SAFETY: ends the child without running the parent's other destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, LONG), Some(0));
    let mut rx = q.receiver().unwrap();
    let _ = rx.try_recv(); // steps over the cancelled claim: its cell is free
    let victim = Queue::open(&t.domain, "q").unwrap();
    let sent = victim.sender().try_send(b"victim!!");
    loan.copy_from_slice(b"scribble"); // safe: the parent's loan, still live
    drop(loan);
    // Fixed: the parent's claim still holds its cell, so the lane is full (`Full`). Today the
    // cell was freed, the victim took it, and the parent's write lands in the victim.
    if sent.is_ok() {
        assert_eq!(
            rx.try_recv().unwrap().payload(),
            b"victim!!",
            "the parent's loan wrote into another sender's committed message"
        );
    }
}

/// What held up: a child forked with a live receiver and unacknowledged messages. In the child,
/// receiving says `ForkedCopy`, acknowledging says `Closed`, dropping touches nothing; the
/// parent's ownership and messages are untouched.
#[test]
fn a_forked_childs_copies_of_a_receiver_and_its_messages_touch_nothing() {
    let t = TestDomain::new("rv-forkrx");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        q.sender().send(m).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    let one = rx.recv().unwrap();
    let two = rx.recv().unwrap();
    // SAFETY: the child only uses its copies and `_exit`s with a code saying what it saw.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let mut code = 0;
            if one.ack() != Err(AckError::Closed) {
                code |= 1;
            }
            if !matches!(rx.try_recv(), Err(RecvError::ForkedCopy)) {
                code |= 2;
            }
            drop(two);
            drop(rx);
            drop(q);
            // SAFETY: ends the child without running the parent's other destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, LONG), Some(0));
    assert!(q.receiver().is_err(), "the parent still owns the queue");
    assert_eq!(rx.try_recv().unwrap().payload(), b"three");
    one.ack().unwrap();
    two.ack().unwrap();
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    drop(rx);
    let s = q.status();
    assert_eq!(s.lanes[3].messages, 0, "{s:?}");
}
