//! Loom models of the roster (`baton_ring::roster`), a queue group's table: a reader racing
//! writers gets one whole table of one generation, never a mix of two, and never takes a copy
//! being rewritten for a scribbled one.
#![cfg(loom)]

use baton_ring::roster::HeapRoster;
use loom::sync::Arc;

struct Shared {
    roster: HeapRoster,
}

/// One writer publishes generations 1 and 2 (the second rewrites the copy generation 0 was
/// read from) while a reader reads: what the reader gets is generation 0, 1 or 2, whole.
#[test]
fn a_reader_racing_two_writes_gets_one_whole_generation() {
    loom::model(|| {
        let s = Arc::new(Shared {
            roster: HeapRoster::new(2),
        });
        let s2 = s.clone();
        let writer = loom::thread::spawn(move || {
            let r = s2.roster.roster();
            assert_eq!(r.write(&[1, 1]), 1);
            assert_eq!(r.write(&[2, 2]), 2);
        });
        let mut out = [0; 2];
        let g = s
            .roster
            .roster()
            .read(&mut out)
            .expect("a copy being written is no scribble");
        assert!(g <= 2);
        assert_eq!(out, [g, g], "generation {g} read torn");
        writer.join().unwrap();
    });
}

/// A reader that comes after a generation was published (it sees the generation) reads that
/// generation's words, not the ones before.
#[test]
fn a_reader_that_sees_a_generation_reads_its_words() {
    loom::model(|| {
        let s = Arc::new(Shared {
            roster: HeapRoster::new(1),
        });
        let s2 = s.clone();
        let writer = loom::thread::spawn(move || {
            s2.roster.roster().write(&[1]);
        });
        let mut out = [0; 1];
        loop {
            let g = s.roster.roster().read(&mut out).expect("no scribble");
            assert_eq!(out, [g]);
            if g == 1 {
                break;
            }
            loom::thread::yield_now();
        }
        writer.join().unwrap();
    });
}
