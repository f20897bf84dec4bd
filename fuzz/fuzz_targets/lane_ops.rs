//! Sequences of queue operations against a model of what must come out: sends of every size
//! into small lanes whose stamps keep 8-bit tags (so runs pass the tag's wrap many times),
//! receives with acknowledgement or release, loans leaked with `mem::forget`, and sender
//! handles dropped and opened again (slots freed with claims still in them, slots taken again).
//! Every message must come out exactly once (again only when released, flagged), in order per
//! lane, and nothing else: a lane that wedges, loses, duplicates or corrupts is a finding.
//!
//! The input is a list of two-byte operations: the first byte picks the operation, the second
//! its argument (priority and size).
#![no_main]

use baton::{Attributes, Domain, Queue, RecvError};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

/// What a lane holds, in order, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// A committed message.
    Message(Vec<u8>),
    /// A claim leaked by sender handle `h`: holds back what follows until `h` is dropped.
    Leaked(u32),
}

fuzz_target!(|data: &[u8]| {
    let d = Domain::new(&format!("fuzz-ops-{}", std::process::id())).unwrap();
    let _ = Queue::remove(&d, "q");
    let attrs = Attributes {
        capacity: [256, 512, 256, 1024],
        max_message: 100,
        tag_bits: 8,
        ..Default::default()
    };
    let q = Queue::create(&d, "q", &attrs).unwrap();
    let mut rx = q.receiver().unwrap();
    let mut handle = (0u32, Queue::open(&d, "q").unwrap());
    let mut lanes: [VecDeque<Entry>; 4] = Default::default();
    let mut next = 0u32;
    let message = |n: u32, len: usize| -> Vec<u8> {
        let mut m = n.to_le_bytes().to_vec();
        m.resize(len.max(4), n as u8);
        m
    };
    // The highest-priority message the model says is deliverable now.
    let deliverable = |lanes: &[VecDeque<Entry>; 4]| {
        lanes.iter().enumerate().find_map(|(p, l)| match l.front() {
            Some(Entry::Message(m)) => Some((p, m.clone())),
            _ => None,
        })
    };
    for op in data.chunks_exact(2) {
        let (p, len) = ((op[1] % 4) as usize, (op[1] / 4) as usize % 101);
        match op[0] % 8 {
            0..=2 => {
                let m = message(next, len);
                next += 1;
                let tx = handle.1.sender().with_priority(p as u8).unwrap();
                if tx.try_send(&m[..]).is_ok() {
                    lanes[p].push_back(Entry::Message(m));
                }
            }
            3 | 4 => {
                let want = deliverable(&lanes);
                match rx.try_recv() {
                    Ok(m) => {
                        let (wp, wm) = want.expect("a message came out that the model lacks");
                        assert_eq!((m.priority() as usize, m.payload()), (wp, &wm[..]));
                        assert!(!m.redelivered());
                        lanes[wp].pop_front();
                        if op[0] % 8 == 4 {
                            m.ack().unwrap();
                        } else {
                            // Given back: it comes again, flagged, before anything else.
                            m.release().unwrap();
                            let again = rx.try_recv().unwrap();
                            assert!(again.redelivered());
                            assert_eq!(again.payload(), &wm[..]);
                            again.ack().unwrap();
                        }
                    }
                    Err(RecvError::Empty) => assert_eq!(want, None, "a message is stuck"),
                    Err(e) => panic!("receive failed: {e}"),
                }
            }
            5 => {
                let tx = handle.1.sender();
                let leaked = tx.try_loan(len, p as u8).map(std::mem::forget).is_ok();
                if leaked {
                    lanes[p].push_back(Entry::Leaked(handle.0));
                }
            }
            6 => {
                // The handle goes: its leaked loans are abandoned, what follows them flows.
                let gone = handle.0;
                handle = (gone + 1, Queue::open(&d, "q").unwrap());
                for l in &mut lanes {
                    l.retain(|e| *e != Entry::Leaked(gone));
                }
            }
            _ => {
                // Drain what can come out now.
                while let Some((wp, wm)) = deliverable(&lanes) {
                    let m = rx.try_recv().unwrap();
                    assert_eq!((m.priority() as usize, m.payload()), (wp, &wm[..]));
                    lanes[wp].pop_front();
                }
                assert_eq!(rx.try_recv(), Err(RecvError::Empty));
            }
        }
    }
    drop(handle);
    drop(rx);
    drop(q);
    let _ = Queue::remove(&d, "q");
});
