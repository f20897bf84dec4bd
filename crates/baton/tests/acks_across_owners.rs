//! Records an earlier owner acknowledged out of order (stamp `ACKED`, behind an unacknowledged
//! record at the head) are freed once the next owner acknowledges the ones before them: the
//! head moves over them, as far as what an earlier owner delivered, so a full lane is not left
//! full of acknowledged messages (which once wedged it: senders waited for space for ever and
//! the receiver had nothing to receive).

mod common;
use baton::{Attributes, Queue, RecvError, SendError};
use common::TestDomain;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

/// Lane 3 holds 8 cells; 8 one-cell messages fill it.
fn small_queue(t: &TestDomain) -> Queue {
    let attrs = Attributes {
        capacity: [64 * 8; 4],
        max_message: 100,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    for i in 0..8u8 {
        q.sender().send(&[i]).unwrap();
    }
    q
}

/// Takes the queue, receives what there is (all redelivered), acknowledges it, and checks that
/// the lane is empty and takes a two-cell message.
fn next_owner_drains(q: &Queue) {
    let mut rx = q.receiver().unwrap();
    let mut got = 0;
    loop {
        match rx.try_recv() {
            Ok(m) => {
                assert!(m.redelivered());
                m.ack().unwrap();
                got += 1;
            }
            Err(RecvError::Empty) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, 1, "only the unacknowledged message is delivered again");
    let lane = q.status().lanes[3];
    let sent = q
        .sender()
        .send_timeout(&[9; 60], Duration::from_millis(500));
    assert!(
        lane.used == 0 && sent.is_ok(),
        "everything is acknowledged, yet {} bytes of the lane stay used ({} messages) and a \
         two-cell send says {sent:?}; the receiver has nothing to receive: {:?}",
        lane.used,
        lane.messages,
        rx.try_recv().map(|m| m.payload().to_vec())
    );
    let _ = SendError::Timeout;
}

/// In one process: the receiver is dropped after acknowledging messages 1..8 but not 0 (its
/// handle said `Closed`, e.g. it raced the drop).
#[test]
fn acks_out_of_order_before_a_close_are_freed_after_the_next_owner_acks_the_rest() {
    let t = TestDomain::new("rv-redeliv");
    let q = small_queue(&t);
    let mut rx = q.receiver().unwrap();
    let mut ms: Vec<_> = (0..8).map(|_| rx.recv().unwrap()).collect();
    let first = ms.remove(0);
    for m in ms {
        m.ack().unwrap(); // ACKED stamps behind the unacknowledged head
    }
    drop(rx);
    drop(first); // Closed: redelivered to the next owner
    next_owner_drains(&q);
}

/// The crash form: the owner acknowledges messages 1..8 and dies before acknowledging 0. The
/// standby that takes over redelivers 0, acknowledges it, and the lane stays full.
#[test]
fn acks_out_of_order_before_an_owner_dies_are_freed_after_the_successor_acks_the_rest() {
    let t = TestDomain::new("rv-redeliv-crash");
    let q = small_queue(&t);
    // SAFETY: the child takes the queue, acknowledges, and `_exit`s holding the owner lock.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            let mut rx = q.receiver().unwrap();
            let mut ms: Vec<_> = (0..8).map(|_| rx.recv().unwrap()).collect();
            let _first = ms.remove(0); // held, unacknowledged, when the owner dies
            for m in ms {
                m.ack().unwrap();
            }
            // SAFETY: dies as a crashed owner would: no destructor, the lock owner-died.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    next_owner_drains(&q);
}
