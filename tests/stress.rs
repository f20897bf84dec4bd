//! Many threads through one queue, with messages that wrap the ring behind padding, checked by
//! sequence numbers (issue 5 adds processes and a bounded duration).

mod common;
use baton::{Attributes, Queue};
use common::TestDomain;
use std::time::Duration;

fn hammer(size: usize, senders: u64, per: u64, in_place: bool) {
    let t = TestDomain::new("stress");
    let attrs = Attributes {
        capacity: [64 * 1024; 4],
        max_message: 4096,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    std::thread::scope(|s| {
        for id in 0..senders {
            let tx = q.sender();
            s.spawn(move || {
                let mut buf = vec![0u8; size];
                for i in 0..per {
                    buf[..8].copy_from_slice(&(id << 48 | i).to_le_bytes());
                    tx.send_timeout(&buf, Duration::from_secs(20)).unwrap();
                }
            });
        }
        let mut rx = q.receiver().unwrap();
        let mut next = vec![0u64; senders as usize];
        for n in 0..senders * per {
            let seq = if in_place {
                let m = rx.recv_in_place_timeout(Duration::from_secs(20)).unwrap();
                u64::from_le_bytes(m.payload()[..8].try_into().unwrap())
            } else {
                let m = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                u64::from_le_bytes(m.payload()[..8].try_into().unwrap())
            };
            let (id, i) = ((seq >> 48) as usize, seq & ((1 << 48) - 1));
            assert_eq!(i, next[id], "message {n}: sender {id} out of order");
            next[id] += 1;
        }
    });
}

#[test]
fn four_threads_with_wrapping_4k_messages() {
    hammer(4096, 4, 20_000, false);
}

#[test]
fn four_threads_with_wrapping_4k_messages_read_in_place() {
    hammer(4096, 4, 20_000, true);
}

#[test]
fn four_threads_with_odd_sized_messages() {
    hammer(1000, 4, 50_000, false);
}
