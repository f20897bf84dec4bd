//! The owner lock is shared between a `Receiver` and the messages it hands out (an
//! `Arc<OwnerGuard>` in the receiver and, until the receiver is dropped, in the state its
//! messages reach). Acknowledgements racing the receiver's drop, on other threads, from a
//! receiver moved to another thread, forgotten handles and panics: every message is
//! acknowledged or redelivered, never both or neither, and the lock is free once the receiver
//! is dropped.

mod common;
use baton::{AckError, Attributes, Message, OwnError, Queue, RecvError};
use common::TestDomain;
use std::sync::{Arc, Barrier};

fn queue(t: &TestDomain) -> Queue {
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap()
}

fn fill(q: &Queue, n: u32) {
    for i in 0..n {
        q.sender().send(&i.to_ne_bytes()).unwrap();
    }
}

/// Acks on two threads race with the drop of the receiver on a third (or the receiver moved to
/// it). Every ack lands (`Ok`) or says `Closed`; the next owner gets exactly the others again,
/// flagged redelivered.
fn acks_race_the_receivers_drop(move_receiver_to_a_thread: bool) {
    for round in 0..20 {
        let t = TestDomain::new(&format!("rv-ackdrop{round}"));
        let q = queue(&t);
        const N: u32 = 200;
        fill(&q, N);
        let mut rx = q.receiver().unwrap();
        let mut messages: Vec<Message> = (0..N).map(|_| rx.recv().unwrap()).collect();
        let second = messages.split_off(N as usize / 2);
        let go = Arc::new(Barrier::new(3));
        let acker = |batch: Vec<Message>, go: Arc<Barrier>| {
            std::thread::spawn(move || {
                go.wait();
                batch
                    .into_iter()
                    .map(|m| m.ack())
                    .collect::<Vec<Result<(), AckError>>>()
            })
        };
        let a = acker(messages, go.clone());
        let b = acker(second, go.clone());
        if move_receiver_to_a_thread {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                std::thread::yield_now();
                drop(rx);
            })
            .join()
            .unwrap();
        } else {
            go.wait();
            std::thread::yield_now();
            drop(rx);
        }
        let results: Vec<_> = a
            .join()
            .unwrap()
            .into_iter()
            .chain(b.join().unwrap())
            .collect();
        assert!(results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(AckError::Closed))));
        let landed = results.iter().filter(|r| r.is_ok()).count() as u64;
        let mut rx2 = q
            .receiver()
            .expect("the lock is released with the receiver");
        let mut again = 0u64;
        loop {
            match rx2.try_recv() {
                Ok(m) => {
                    assert!(m.redelivered());
                    again += 1;
                    m.ack().unwrap();
                }
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(landed + again, N as u64, "round {round}");
        drop(rx2);
        // Not asserted here: `q.status().received == N`. It fails (e.g. 100 of 200) whenever
        // acks landed out of order before the drop: the next owner never frees those ACKED
        // records (see acks_across_owners.rs, where it is reduced to a wedge).
    }
}

#[test]
fn acks_racing_the_drop_of_the_receiver() {
    acks_race_the_receivers_drop(false);
}

#[test]
fn acks_racing_the_drop_of_a_receiver_moved_to_another_thread() {
    acks_race_the_receivers_drop(true);
}

/// A leaked `Message` or `InPlace` holds no lock: the receiver's drop releases ownership, and
/// the next owner gets both again.
#[test]
fn forgotten_messages_do_not_keep_the_owner_lock() {
    let t = TestDomain::new("rv-forgetmsg");
    let q = queue(&t);
    fill(&q, 2);
    let mut rx = q.receiver().unwrap();
    std::mem::forget(rx.recv().unwrap());
    std::mem::forget(rx.recv_in_place().unwrap());
    drop(rx);
    let mut rx = q.receiver().expect("released with the receiver");
    for _ in 0..2 {
        assert!(rx.try_recv().unwrap().redelivered());
    }
}

/// A leaked `Receiver` keeps the queue owned for the life of the process (the lock is never
/// given up), and its messages still acknowledge.
#[test]
fn a_forgotten_receiver_keeps_the_queue_and_its_acks_land() {
    let t = TestDomain::new("rv-forgetrx");
    let q = queue(&t);
    fill(&q, 1);
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    std::mem::forget(rx);
    assert!(matches!(q.receiver(), Err(OwnError::Busy { .. })));
    assert_eq!(m.ack(), Ok(()));
    assert_eq!(q.status().received, 1);
}

/// A panic while a message is held gives it back for redelivery (not acknowledged), and the
/// receiver goes on.
#[test]
fn a_panic_while_holding_a_message_releases_it() {
    let t = TestDomain::new("rv-panic");
    let q = queue(&t);
    fill(&q, 1);
    let mut rx = q.receiver().unwrap();
    let id = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let m = rx.recv().unwrap();
        let _id = m.id();
        panic!("worker failed");
    }));
    assert!(id.is_err());
    let again = rx.try_recv().unwrap();
    assert!(again.redelivered());
    again.ack().unwrap();
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
}
