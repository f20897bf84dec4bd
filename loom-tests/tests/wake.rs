//! Loom models of the sleep/wake protocol (`baton_ring::wake::Event`) driving baton's own lane code
//! over heap memory. A lost wake-up leaves a thread asleep forever, which loom reports as a
//! deadlock.
#![cfg(loom)]

use baton_loom_tests::{consumer_view, owner_view, sender_view, LoomWaiter};
use baton_ring::lane::{HeapLane, Peek, RecordHeader};
use baton_ring::wake::Event;
use loom::sync::Arc;

struct Shared {
    lane: HeapLane,
    data: Event,
    waiter: LoomWaiter,
}

fn shared(cells: usize) -> Arc<Shared> {
    Arc::new(Shared {
        lane: HeapLane::new(cells),
        data: Event::new(),
        waiter: LoomWaiter::default(),
    })
}

fn send(s: &Shared, byte: u8) -> bool {
    let lane = sender_view(&s.lane.lane(), 0);
    match lane.try_claim(1) {
        Ok(claim) => {
            lane.write(
                &claim,
                &RecordHeader {
                    len: 1,
                    ..Default::default()
                },
                &[byte],
            );
            lane.commit(claim).unwrap();
            s.data.notify(&s.waiter);
            true
        }
        Err(_) => false,
    }
}

fn take(s: &Shared) -> Option<u8> {
    let lane = owner_view(&s.lane.lane());
    match lane.peek(64, &s.waiter).unwrap() {
        Peek::Record(r) => {
            let mut out = Vec::new();
            lane.copy_payload(&r, &mut out).unwrap();
            lane.release(r, &s.waiter).unwrap();
            Some(out[0])
        }
        Peek::Empty | Peek::InFlight => None,
    }
}

/// The receiver checks, finds nothing, and goes to sleep while a sender commits and notifies:
/// whatever the interleaving, the receiver wakes with the message.
#[test]
fn a_receiver_going_to_sleep_while_a_sender_commits_is_woken() {
    loom::model(|| {
        let s = shared(4);
        let s2 = s.clone();
        let sender = loom::thread::spawn(move || assert!(send(&s2, 42)));
        let mut got = None;
        s.data.wait_until(&s.waiter, None, || {
            got = take(&s);
            got.is_some()
        });
        assert_eq!(got, Some(42));
        sender.join().unwrap();
    });
}

/// A consumer of a shared lane checks, finds nothing, and goes to sleep while a sender commits
/// and wakes one sleeper (`Event::notify_one_if`, a shared queue's wake-up): the consumer
/// wakes with the message.
#[test]
fn a_consumer_going_to_sleep_while_a_sender_commits_is_woken_by_a_wake_one() {
    loom::model(|| {
        let s = shared(4);
        let s2 = s.clone();
        let sender = loom::thread::spawn(move || {
            let lane = sender_view(&s2.lane.lane(), 0);
            let claim = lane.try_claim(1).unwrap();
            lane.write(
                &claim,
                &RecordHeader {
                    len: 1,
                    ..Default::default()
                },
                &[42],
            );
            lane.commit(claim).unwrap();
            s2.data.notify_one_if(&s2.waiter, || true);
        });
        let mut got = None;
        s.data.wait_until(&s.waiter, None, || {
            let c = consumer_view(&s.lane.lane(), 1);
            got = c.take(64, None).unwrap().map(|t| {
                let mut out = Vec::new();
                c.copy_payload(&t, &mut out);
                c.ack(t).unwrap();
                out[0]
            });
            got.is_some()
        });
        assert_eq!(got, Some(42));
        sender.join().unwrap();
    });
}

/// A sender finds the one-cell lane full and sleeps on the lane's space event while the
/// receiver frees the cell: the sender wakes and its message goes in.
#[test]
fn a_sender_going_to_sleep_while_the_receiver_frees_space_is_woken() {
    loom::model(|| {
        let s = shared(1);
        assert!(send(&s, 1));
        let s2 = s.clone();
        let receiver = loom::thread::spawn(move || assert_eq!(take(&s2), Some(1)));
        let lane = s.lane.lane();
        lane.space_event()
            .wait_until(&s.waiter, None, || send(&s, 2));
        receiver.join().unwrap();
        assert_eq!(take(&s), Some(2));
    });
}

/// Senders are woken once the lane drains to half, not for every freed cell; a head move that
/// frees room without waking them owes them a wake-up, which the owner pays when it runs out
/// of work. Here a full three-cell lane has one cell freed (still more than half full): the
/// sleeping sender is woken all the same, by the owner going idle.
#[test]
fn a_sender_left_waiting_by_a_head_move_is_woken_when_the_owner_goes_idle() {
    loom::model(|| {
        let s = shared(3);
        for b in 0..3 {
            assert!(send(&s, b));
        }
        let s2 = s.clone();
        let receiver = loom::thread::spawn(move || {
            assert_eq!(take(&s2), Some(0));
            // Nothing more it wants to take: it goes idle.
            owner_view(&s2.lane.lane()).wake_owed(&s2.waiter);
        });
        let lane = s.lane.lane();
        lane.space_event()
            .wait_until(&s.waiter, None, || send(&s, 3));
        receiver.join().unwrap();
        for b in 1..4 {
            assert_eq!(take(&s), Some(b));
        }
    });
}
