//! Loom models of the event log (`baton_ring::events`): a reader never shows an event that is
//! not exactly one that was written, whatever lap of the ring overwrites the slot it reads.
#![cfg(loom)]

use baton_loom_tests::LoomWaiter;
use baton_ring::events::{HeapEventLog, Read, Record};
use loom::sync::Arc;

fn ev(kind: u16) -> Record {
    Record {
        kind,
        pid: kind as u32 * 10,
        time_ns: kind as u64 * 100,
        a: kind as u64 * 1000,
        b: 7,
        subject: Vec::new(),
    }
}

struct Shared {
    log: HeapEventLog,
    waiter: LoomWaiter,
}

fn one_slot_with_event_0() -> Arc<Shared> {
    let s = Arc::new(Shared {
        log: HeapEventLog::new(1, 0),
        waiter: LoomWaiter::default(),
    });
    s.log.log().append(&ev(0), &s.waiter);
    s
}

/// A reader reads event 0 while the next lap's writer overwrites its slot: it shows event 0
/// exactly, or says it missed it; never event 1's words (or a mix) as event 0.
#[test]
fn an_event_is_read_whole_or_missed_while_the_next_lap_overwrites_it() {
    loom::model(|| {
        let s = one_slot_with_event_0();
        let s2 = s.clone();
        let writer = loom::thread::spawn(move || {
            s2.log.log().append(&ev(1), &s2.waiter);
        });
        let mut c = 0;
        match s.log.log().read(&mut c) {
            Read::Event(e) => assert_eq!(e, ev(0)),
            Read::Missed(_) => {}
            Read::NotYet => panic!("event 0 was written before"),
        }
        writer.join().unwrap();
    });
}

/// A reader waits for event 1 while it is written over event 0 in the same slot: what it
/// reads once published is event 1, not event 0's words under event 1's stamp.
#[test]
fn a_published_event_is_read_with_its_own_words() {
    loom::model(|| {
        let s = one_slot_with_event_0();
        let s2 = s.clone();
        let writer = loom::thread::spawn(move || {
            s2.log.log().append(&ev(1), &s2.waiter);
        });
        let mut c = 1;
        loop {
            match s.log.log().read(&mut c) {
                Read::Event(e) => {
                    assert_eq!(e, ev(1));
                    break;
                }
                Read::NotYet => loom::thread::yield_now(),
                Read::Missed(n) => panic!("missed {n}"),
            }
        }
        writer.join().unwrap();
    });
}

/// Two writers a lap apart write one slot at once (the first stalled): the event a reader
/// finds there afterwards is one of theirs whole, or counted as missed, never a mix.
#[test]
fn two_writers_of_one_slot_leave_a_whole_event_or_a_missed_one() {
    loom::model(|| {
        let s = Arc::new(Shared {
            log: HeapEventLog::new(1, 0),
            waiter: LoomWaiter::default(),
        });
        let spawn = |k: u16| {
            let s = s.clone();
            loom::thread::spawn(move || s.log.log().append(&ev(k), &s.waiter))
        };
        let (a, b) = (spawn(1), spawn(2));
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        // The sequence numbers are 0 and 1 in some order; the slot ends with number 1's
        // stamp (the later lap), its words whole or torn.
        let kind_of_1 = if ra == Some(1) { 1 } else { 2 };
        let _ = rb;
        let mut c = 1;
        match s.log.log().read(&mut c) {
            Read::Event(e) => assert_eq!(e, ev(kind_of_1)),
            Read::Missed(1) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// A follower looks once for event 1 while it is written over event 0: if it sees the event
/// published, it reads it with its own words, never counts it missed (review: the looping
/// model above never showed the weakened orderings, as loom gives a yielding thread fresh
/// values).
#[test]
fn a_published_event_seen_at_first_look_is_read_with_its_own_words() {
    loom::model(|| {
        let s = one_slot_with_event_0();
        let s2 = s.clone();
        let reader = loom::thread::spawn(move || {
            let mut c = 1;
            match s2.log.log().read(&mut c) {
                Read::Event(e) => assert_eq!(e, ev(1)),
                Read::NotYet => {}
                Read::Missed(n) => panic!("event 1 is there, yet missed {n}"),
            }
        });
        s.log.log().append(&ev(1), &s.waiter);
        reader.join().unwrap();
    });
}
