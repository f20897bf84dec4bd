//! Loom models of a process group's log (`baton_ring::lane::LogReader`, `sweep_log`): members
//! reading one lane at their own cursors while senders reuse what the slowest has read.
//! Payload bytes live in loom's tracked cells, so a record read after its cells were reused
//! shows up as a race (or a wrong byte).
//!
//! Each model has a mutant that it must catch (`loom-tests/mutants.sh`).
#![cfg(loom)]

use baton_loom_tests::{send, try_send, LoomSweepLock, LoomWaiter};
use baton_ring::lane::{sweep_log, HeapLane, Lane, Slot};
use baton_ring::{AtomicU64, Ordering};
use loom::sync::Arc;

/// The members' cursors, as the `baton` crate keeps them: one word each.
struct Cursors([AtomicU64; 2]);

impl Cursors {
    fn slowest(&self) -> Option<u64> {
        self.0.iter().map(|c| c.load(Ordering::Acquire)).min()
    }
}

/// Member `m` reads the next record at its cursor, if one is committed, moves its cursor past
/// it and sweeps.
fn read_one(
    lane: &Lane<'_>,
    m: usize,
    cursors: &Cursors,
    lock: &LoomSweepLock,
    waiter: &LoomWaiter,
) -> Option<Vec<u8>> {
    // SAFETY: member `m` reads only at its own cursor, which the sweepers see.
    let reader = unsafe { lane.reader() };
    let mut pos = cursors.0[m].load(Ordering::Relaxed);
    loop {
        match reader.at(pos, 64).unwrap() {
            Slot::Record(r) => {
                let mut out = Vec::new();
                reader.copy_payload(&r, &mut out).unwrap();
                cursors.0[m].store(pos + r.cells(), Ordering::Release);
                sweep_log(lane, &lock, || cursors.slowest(), 64, waiter).unwrap();
                return Some(out);
            }
            Slot::Skip { cells } => {
                pos += cells;
                cursors.0[m].store(pos, Ordering::Release);
            }
            Slot::InFlight { .. } | Slot::End => return None,
        }
    }
}

/// Two members read a one-cell log while a sender appends a second message, which reuses the
/// cell only the slower member's read frees: both members read both messages, in order, each
/// before its cell is reused. (Bounded tries in the threads; the main thread finishes what
/// they left, so every interleaving ends.) Catches `log_free_past_cursor` (a sweep up to the
/// faster member's cursor lets the sender write the cell the slower one reads).
#[test]
fn two_members_read_every_message_in_order_before_its_cells_are_reused() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let heap = Arc::new(HeapLane::new(1));
        let waiter = Arc::new(LoomWaiter::default());
        let lock = Arc::new(LoomSweepLock::default());
        let cursors = Arc::new(Cursors([AtomicU64::new(0), AtomicU64::new(0)]));
        send(&heap.lane(), 1, &[0]);
        let members: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|m| {
                let (heap, waiter, lock, cursors) =
                    (heap.clone(), waiter.clone(), lock.clone(), cursors.clone());
                loom::thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        match read_one(&heap.lane(), m, &cursors, &lock, &waiter) {
                            Some(msg) => got.push(msg[0]),
                            None => loom::thread::yield_now(),
                        }
                        if got.len() == 2 {
                            break;
                        }
                    }
                    got
                })
            })
            .collect();
        let sender = {
            let heap = heap.clone();
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    if try_send(&heap.lane(), 2, &[1]) {
                        return true;
                    }
                    loom::thread::yield_now();
                }
                false
            })
        };
        let mut got: Vec<Vec<u8>> = members.into_iter().map(|m| m.join().unwrap()).collect();
        let sent = sender.join().unwrap();
        let lane = heap.lane();
        for (m, g) in got.iter_mut().enumerate() {
            if g.is_empty() {
                g.push(read_one(&lane, m, &cursors, &lock, &waiter).unwrap()[0]);
            }
        }
        if !sent {
            assert!(
                try_send(&lane, 2, &[1]),
                "both members read the first message: its cell is free"
            );
        }
        for (m, g) in got.iter_mut().enumerate() {
            if g.len() == 1 {
                g.push(read_one(&lane, m, &cursors, &lock, &waiter).unwrap()[0]);
            }
        }
        assert_eq!(got, vec![vec![0, 1], vec![0, 1]]);
    });
}

/// Two members read the one message of a one-cell log at once, and stop: whichever moves its
/// cursor last, even while the other holds the sweep lock, the cell is freed. Catches
/// `log_sweep_no_fence` (a cursor move that lands while the other member holds the lock is
/// never swept, and a sender would wait for ever).
#[test]
fn the_last_members_read_is_always_swept() {
    loom::model(|| {
        let heap = Arc::new(HeapLane::new(1));
        let waiter = Arc::new(LoomWaiter::default());
        let lock = Arc::new(LoomSweepLock::default());
        let cursors = Arc::new(Cursors([AtomicU64::new(0), AtomicU64::new(0)]));
        send(&heap.lane(), 1, &[7]);
        let members: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|m| {
                let (heap, waiter, lock, cursors) =
                    (heap.clone(), waiter.clone(), lock.clone(), cursors.clone());
                loom::thread::spawn(move || {
                    read_one(&heap.lane(), m, &cursors, &lock, &waiter).unwrap()
                })
            })
            .collect();
        for m in members {
            assert_eq!(m.join().unwrap(), vec![7]);
        }
        assert_eq!(
            heap.lane().head(),
            1,
            "both members read it: the cell is freed"
        );
    });
}
