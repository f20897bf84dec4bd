//! Loom models of the reply boxes (`baton_ring::reply`): a reply is read whole by its
//! requester, a box is written again only after its last reply was read, exactly one of two
//! replies to one request gets through, a requester giving up never loses a reply that was
//! published, and a replier that dies half way is replaced. A data race on a box's cells is
//! reported by loom; a lost wake-up shows as a deadlock.
#![cfg(loom)]

use baton_loom_tests::LoomWaiter;
use baton_ring::reply::{GiveUp, HeapReplyBox, Poll, Refused, ReplyMeta, Token};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

struct Shared {
    reply_box: HeapReplyBox,
    waiter: LoomWaiter,
    /// Replier slot 2 has died (set after its last step, Release; read Acquire), as the
    /// kernel's release of its slot lock tells its peers.
    dead: AtomicBool,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        reply_box: HeapReplyBox::new(1),
        waiter: LoomWaiter::default(),
        dead: AtomicBool::new(false),
    })
}

fn alive(_: u8) -> bool {
    false
}

fn reply(s: &Shared, t: Token, replier: u8, bytes: &[u8]) -> Result<(), Refused> {
    s.reply_box
        .view()
        .reply(t, replier, ReplyMeta::default(), bytes, alive, &s.waiter)
}

/// Waits (sleeping on the box's event) until the reply is there, and reads it.
fn wait_and_read(s: &Shared, t: Token, requester: u8) -> Vec<u8> {
    let b = s.reply_box.view();
    b.event()
        .wait_until(&s.waiter, None, || b.poll(t, requester) == Poll::Replied);
    let mut out = Vec::new();
    b.read(&mut out).expect("a length in bounds");
    out
}

/// The requester sleeps until the replier publishes, then reads every byte it wrote.
#[test]
fn a_reply_is_read_whole_by_its_requester() {
    loom::model(|| {
        let s = shared();
        let t = s.reply_box.view().try_claim(0, 1).unwrap();
        let s2 = s.clone();
        let replier = loom::thread::spawn(move || reply(&s2, t, 2, &[7, 8, 9]).unwrap());
        assert_eq!(wait_and_read(&s, t, 1), [7, 8, 9]);
        assert!(s.reply_box.view().free(t, 1));
        replier.join().unwrap();
    });
}

/// A requester reads its reply and frees the box while the next request's replier writes
/// into it: the next reply's write never races the first one's read.
#[test]
fn a_box_is_written_again_only_after_its_last_reply_was_read() {
    loom::model(|| {
        let s = shared();
        let b = s.reply_box.view();
        let t = b.try_claim(0, 1).unwrap();
        reply(&s, t, 2, &[1, 1]).unwrap();
        let s2 = s.clone();
        let next = loom::thread::spawn(move || {
            let b = s2.reply_box.view();
            let t2 = loop {
                if let Some(t2) = b.try_claim(0, 3) {
                    break t2;
                }
                loom::thread::yield_now();
            };
            reply(&s2, t2, 4, &[2, 2]).unwrap();
            t2
        });
        let mut out = Vec::new();
        assert_eq!(b.poll(t, 1), Poll::Replied);
        b.read(&mut out).unwrap();
        assert_eq!(out, [1, 1]);
        assert!(b.free(t, 1));
        let t2 = next.join().unwrap();
        assert_eq!(wait_and_read(&s, t2, 3), [2, 2]);
    });
}

/// A request redelivered to a second replier is answered twice at once: exactly one reply
/// gets through, whole, and the other is refused.
#[test]
fn two_replies_to_one_request_deliver_exactly_one() {
    loom::model(|| {
        let s = shared();
        let t = s.reply_box.view().try_claim(0, 1).unwrap();
        let spawn = |replier: u8, byte: u8| {
            let s = s.clone();
            loom::thread::spawn(move || reply(&s, t, replier, &[byte, byte]))
        };
        let (a, b) = (spawn(2, 0xa), spawn(3, 0xb));
        let got = wait_and_read(&s, t, 1);
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        match (ra, rb) {
            (Ok(()), Err(Refused::AlreadyReplied | Refused::BeingReplied { replier: 2 })) => {
                assert_eq!(got, [0xa, 0xa])
            }
            (Err(Refused::AlreadyReplied | Refused::BeingReplied { replier: 3 }), Ok(())) => {
                assert_eq!(got, [0xb, 0xb])
            }
            other => panic!("exactly one reply must get through, got {other:?}"),
        }
    });
}

/// The requester's deadline passes while the reply is being published: either it gets the
/// reply (published first), or the replier is told the requester is gone (a reply still being
/// written is left to its replier, which frees the box); never both, never neither; the box
/// ends free.
#[test]
fn a_requester_giving_up_while_the_reply_comes_never_loses_a_published_reply() {
    loom::model(|| {
        let s = shared();
        let b = s.reply_box.view();
        let t = b.try_claim(0, 1).unwrap();
        let s2 = s.clone();
        let replier = loom::thread::spawn(move || reply(&s2, t, 2, &[5]));
        let got = match b.give_up(t, 1, alive) {
            GiveUp::Released => None,
            GiveUp::Replied => Some(wait_and_read(&s, t, 1)),
        };
        let replied = replier.join().unwrap();
        match (got, replied) {
            (Some(bytes), Ok(())) => {
                assert_eq!(bytes, [5]);
                assert!(b.free(t, 1));
            }
            (None, Err(Refused::RequesterGone)) => {}
            other => panic!("the reply must reach the requester or be refused: {other:?}"),
        }
        assert!(b.try_claim(0, 1).is_some(), "the box ends free");
    });
}

/// Replier 2 wins the box, writes half a reply and dies; the request, redelivered, is answered
/// by replier 3, which takes the box over once 2 is known dead: the requester reads 3's reply
/// whole, and 3's writes never race 2's.
#[test]
fn a_replier_dying_half_way_is_replaced_and_its_bytes_never_reach_the_requester() {
    loom::model(|| {
        let s = shared();
        let t = s.reply_box.view().try_claim(0, 1).unwrap();
        let s2 = s.clone();
        let dying = loom::thread::spawn(move || {
            let b = s2.reply_box.view();
            if let Ok(won) = b.win(t, 2, alive) {
                b.write(&won, ReplyMeta::default(), &[2, 2, 2]).unwrap();
                // Dies here, holding the box: the kernel then releases its slot lock.
            }
            s2.dead.store(true, Ordering::Release);
        });
        let s3 = s.clone();
        let next = loom::thread::spawn(move || {
            let dead = |slot: u8| slot == 2 && s3.dead.load(Ordering::Acquire);
            loop {
                match s3
                    .reply_box
                    .view()
                    .reply(t, 3, ReplyMeta::default(), &[3], dead, &s3.waiter)
                {
                    Ok(()) => return,
                    // 2 holds the box and is not known dead yet: try again.
                    Err(Refused::BeingReplied { replier: 2 }) => loom::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        assert_eq!(wait_and_read(&s, t, 1), [3]);
        dying.join().unwrap();
        next.join().unwrap();
    });
}

/// Review: replier 2 writes a reply while its requester (1) is found gone (`settle(1)` by
/// another process); its `publish` then frees the box itself. The next request's replier (4)
/// wins the box by an Acquire that reads from that free: the free must be a Release, or 2's
/// cell writes race 4's.
#[test]
fn a_reply_dropped_for_a_gone_requester_comes_before_the_next_reply() {
    loom::model(|| {
        let s = shared();
        let b = s.reply_box.view();
        let t = b.try_claim(0, 1).unwrap();
        let s2 = s.clone();
        let first = loom::thread::spawn(move || {
            let b = s2.reply_box.view();
            if let Ok(won) = b.win(t, 2, alive) {
                b.write(&won, ReplyMeta::default(), &[1, 1]).unwrap();
                let _ = b.publish(won, &s2.waiter);
            }
        });
        let s3 = s.clone();
        let next = loom::thread::spawn(move || {
            let b = s3.reply_box.view();
            if let Some(t2) = b.try_claim(0, 3) {
                let _ = reply(&s3, t2, 4, &[2, 2]);
            }
        });
        b.settle(1); // requester 1 found gone
        first.join().unwrap();
        next.join().unwrap();
    });
}
