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

/// Claims, writes and commits a one-byte message; false if the lane is full.
fn commit(s: &Shared, byte: u8) -> bool {
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
            true
        }
        Err(_) => false,
    }
}

fn send(s: &Shared, byte: u8) -> bool {
    let sent = commit(s, byte);
    if sent {
        s.data.notify(&s.waiter);
    }
    sent
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

/// The lookout (`baton_ring::lookout`), its models' world: a lane, its event, the lookout word,
/// and a clock that stands still (no mark ever runs out, so every wake-up a model gets is one
/// the protocol gives, not a timeout's).
struct Pool {
    s: Arc<Shared>,
    lookout: baton_ring::lookout::Lookout,
    taken: loom::sync::atomic::AtomicUsize,
}

const NOW: u64 = 1_000;

fn pool() -> Arc<Pool> {
    Arc::new(Pool {
        s: shared(4),
        lookout: baton_ring::lookout::Lookout::new(),
        taken: loom::sync::atomic::AtomicUsize::new(0),
    })
}

/// A consumer's take (and acknowledgement); whether it got a message.
fn pool_take(p: &Pool, slot: u8) -> bool {
    let c = consumer_view(&p.s.lane.lane(), slot);
    let got = c
        .take(64, None)
        .unwrap()
        .map(|t| c.ack(t).unwrap())
        .is_some();
    if got {
        p.taken.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
    }
    got
}

/// A sender's commit, then its question to the lookout (a quarter lane of 100 cells: never
/// "piling up" here, so while somebody looks the sender wakes nobody).
fn pool_send(p: &Pool, byte: u8) {
    assert!(commit(&p.s, byte));
    p.s.data.notify_one_if(&p.s.waiter, || {
        p.lookout
            .should_wake(NOW, p.s.lane.lane().unread_cells(), 100)
    });
}

/// A sleeper's wait: take, or clear a handoff it finds and take again, or sleep.
fn pool_sleep(p: &Pool, slot: u8, done: impl Fn() -> bool) {
    p.s.data.wait_until(&p.s.waiter, None, || {
        done() || pool_take(p, slot) || (p.lookout.not_coming() && pool_take(p, slot))
    });
}

/// A consumer woken for a message that somebody else took clears the handoff mark the sender
/// left and goes back to sleep, just as the sender commits the next message and asks the
/// lookout: either the sleeper's last look finds the message, or the sender finds the mark
/// cleared and wakes it.
#[test]
fn a_sleeper_clearing_a_handoff_while_a_sender_commits_gets_the_message() {
    loom::model(|| {
        let p = pool();
        // A sender woke somebody for a message that is gone: the mark says one is on its way.
        assert!(p.lookout.should_wake(NOW, 1, 100));
        let p2 = p.clone();
        let sender = loom::thread::spawn(move || pool_send(&p2, 1));
        pool_sleep(&p, 1, || false);
        sender.join().unwrap();
        assert_eq!(p.taken.load(loom::sync::atomic::Ordering::SeqCst), 1);
    });
}

/// A polling consumer looks once, finds nothing and stops looking, while a sender commits and
/// (seeing it look) wakes nobody: the consumer's look before it sleeps finds the message, or
/// the sender sees the lookout free and wakes it.
#[test]
fn a_poller_stopping_while_a_sender_commits_gets_the_message() {
    loom::model(|| {
        let p = pool();
        let mark = p.lookout.start_polling(NOW, 0).unwrap();
        let p2 = p.clone();
        let sender = loom::thread::spawn(move || pool_send(&p2, 1));
        if !pool_take(&p, 1) {
            p.lookout.stop_polling(mark);
            pool_sleep(&p, 1, || false);
        }
        sender.join().unwrap();
        assert_eq!(p.taken.load(loom::sync::atomic::Ordering::SeqCst), 1);
    });
}

/// Two consumers, one polling and one asleep, and a sender: the message is taken, whoever
/// takes it, and nobody sleeps forever (the taker wakes the other only at the model's end).
#[test]
fn a_poller_and_a_sleeper_share_a_message_without_a_lost_wake_up() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let p = pool();
        let mark = p.lookout.start_polling(NOW, 0).unwrap();
        let done = |p: &Pool| p.taken.load(loom::sync::atomic::Ordering::SeqCst) == 1;
        let (pb, ps) = (p.clone(), p.clone());
        let sleeper = loom::thread::spawn(move || {
            pool_sleep(&pb, 2, || done(&pb));
            pb.s.data.notify(&pb.s.waiter);
        });
        let sender = loom::thread::spawn(move || pool_send(&ps, 1));
        if pool_take(&p, 1) {
            p.lookout.leave(mark, NOW, true);
        } else {
            p.lookout.stop_polling(mark);
            pool_sleep(&p, 1, || done(&p));
        }
        p.s.data.notify(&p.s.waiter); // the model's end, for whoever still sleeps
        sender.join().unwrap();
        sleeper.join().unwrap();
        assert_eq!(p.taken.load(loom::sync::atomic::Ordering::SeqCst), 1);
    });
}

/// A receive is cancelled while it goes to sleep: the canceller publishes its reason (a count,
/// Release) and pokes the event (the count bumped and every sleeper woken); the sleeper, which
/// re-checks the reason after reading the count, returns instead of sleeping for ever.
/// (`Event::poke`, what `baton::Canceller` does.)
#[test]
fn a_sleeper_poked_for_a_cancel_sees_the_cancel() {
    loom::model(|| {
        let s = shared(1);
        let cancels = Arc::new(loom::sync::atomic::AtomicU32::new(0));
        let (s2, c2) = (s.clone(), cancels.clone());
        let canceller = loom::thread::spawn(move || {
            c2.fetch_add(1, loom::sync::atomic::Ordering::Release);
            s2.data.poke(&s2.waiter);
        });
        let ready = s.data.wait_until(&s.waiter, None, || {
            cancels.load(loom::sync::atomic::Ordering::Acquire) != 0
        });
        assert!(ready);
        canceller.join().unwrap();
    });
}
