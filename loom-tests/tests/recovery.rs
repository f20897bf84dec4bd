//! Loom model of the ownership handover: the robust owner lock is modelled by a loom mutex
//! holding an owner-died flag (what `EOWNERDEAD` reports). The owner receives and acknowledges
//! a message and dies at each step of it in turn; a sender keeps sending; the standby takes the
//! lock, runs the lane's part of recovery (journal replay, `read` repair), possibly twice (a
//! recoverer that dies half way is followed by another), and checks what it sees.
//!
//! Catches the `no_journal_replay` mutant (`loom-tests/mutants.sh`).
#![cfg(loom)]

use baton_loom_tests::LoomWaiter;
use baton_loom_tests::{owner_view, send, successor_view};
use baton_ring::lane::{HeapLane, MoveStop, Slot};
use loom::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// After marking the message delivered and handing it out.
    AfterHandOut,
    /// After writing the freeing journal.
    AfterJournal,
    /// After storing the counters, before moving `head`.
    AfterCounters,
    /// The owner finishes and releases the lock normally.
    Never,
}

fn handover(death: Death, recover_twice: bool) {
    loom::model(move || {
        let heap = Arc::new(HeapLane::new(4));
        send(&heap.lane(), 1, &[1]);
        send(&heap.lane(), 1, &[2]);
        // The robust mutex: `true` inside means its last holder died holding it.
        let lock = Arc::new(Mutex::new(false));
        let (h, l) = (heap.clone(), lock.clone());
        // The owner takes the lock before anyone else can.
        let guard_taken = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let taken = guard_taken.clone();
        let owner = loom::thread::spawn(move || {
            let mut guard = l.lock().unwrap();
            taken.store(true, loom::sync::atomic::Ordering::SeqCst);
            let lane = owner_view(&h.lane());
            let waiter = LoomWaiter::default();
            let Slot::Record(r) = lane.at(lane.head(), 64).unwrap() else {
                panic!("message 1 is committed");
            };
            let cursor = r.pos() + r.cells();
            lane.set_read_cursor(cursor);
            let acked = match death {
                Death::AfterHandOut => false,
                Death::AfterJournal | Death::AfterCounters | Death::Never => {
                    assert!(lane.ack(&r).unwrap(), "message 1 is at the head");
                    let stop = match death {
                        Death::AfterJournal => MoveStop::AfterJournal,
                        Death::AfterCounters => MoveStop::AfterCounters,
                        _ => MoveStop::Never,
                    };
                    lane.advance_head_stopping(Some(&r), cursor, &waiter, stop)
                        .unwrap();
                    death == Death::Never
                }
            };
            // Dying: the kernel releases the lock and marks it owner-dead.
            *guard = death != Death::Never;
            acked
        });
        let h = heap.clone();
        let sender = loom::thread::spawn(move || send(&h.lane(), 1, &[3]));
        while !guard_taken.load(loom::sync::atomic::Ordering::SeqCst) {
            loom::thread::yield_now();
        }
        // The standby.
        let mut guard = lock.lock().unwrap();
        let lane = owner_view(&heap.lane());
        let waiter = LoomWaiter::default();
        if *guard {
            // EOWNERDEAD: the one recovery procedure (its lane part), then consistent.
            if recover_twice {
                lane.replay_journal(&waiter); // a recoverer that died here ...
            }
            lane.replay_journal(&waiter); // ... and the next one, from the start
            lane.repair_read_cursor(64);
            *guard = false;
        }
        let acked_by_owner = owner.join().unwrap();
        sender.join().unwrap();
        // What the new owner delivers: `head..read` again (flagged), then fresh ones.
        let (again, fresh) = successor_view(&lane);
        let again: Vec<u8> = again.iter().map(|m| m[0]).collect();
        let fresh: Vec<u8> = fresh.iter().map(|m| m[0]).collect();
        let (received, _) = lane.counters();
        // Message 1: acknowledged durably (counted once, gone) once its journal was written;
        // otherwise handed out but unacknowledged, so delivered again, flagged.
        let durable = acked_by_owner || matches!(death, Death::AfterJournal | Death::AfterCounters);
        if durable {
            assert_eq!((received, again.clone()), (1, vec![]), "{death:?}");
        } else {
            assert_eq!((received, again.clone()), (0, vec![1]), "{death:?}");
        }
        assert_eq!(fresh, vec![2, 3], "{death:?}: the others come once, fresh");
        assert_eq!(
            received as usize + again.len() + fresh.len(),
            3,
            "{death:?}: nothing lost, nothing counted twice"
        );
        drop(guard);
    });
}

#[test]
fn an_owner_dying_after_handing_out_leaves_the_message_for_redelivery() {
    handover(Death::AfterHandOut, false);
}

#[test]
fn an_owner_dying_after_its_journal_has_acknowledged_the_message() {
    handover(Death::AfterJournal, false);
}

#[test]
fn an_owner_dying_between_counters_and_head_counts_the_message_once() {
    handover(Death::AfterCounters, true);
}

#[test]
fn an_owner_that_finishes_hands_over_a_clean_lane() {
    handover(Death::Never, false);
}
