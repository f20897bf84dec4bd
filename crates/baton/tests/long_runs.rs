//! Runs long enough to wrap every counter a lane keeps in its stamps. Production lanes keep 32
//! bits of a position; these queues keep 10 (`Attributes::tag_bits`), so 2^10 positions reach
//! what 2^32 do in production, with the same code.

mod common;
use baton::{Attributes, Queue, RecvError};
use common::TestDomain;

/// 256-byte lanes (4 cells), 64-byte messages (2 cells each), 10-bit tags.
fn narrow() -> Attributes {
    Attributes {
        capacity: [256; 4],
        max_message: 64,
        tag_bits: 10,
        ..Default::default()
    }
}

fn round_trip(q: &Queue, rx: &mut baton::Receiver, msg: &[u8], what: &str) {
    q.sender()
        .send(msg)
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let m = rx
        .try_recv()
        .unwrap_or_else(|e| panic!("{what}: recv: {e}"));
    assert_eq!(m.payload(), msg, "{what}");
    m.ack().unwrap();
    assert_eq!(
        rx.try_recv(),
        Err(RecvError::Empty),
        "{what}: one message in, one out"
    );
}

/// The reported failure, scaled to a 10-bit tag: one 8-byte message, then `k` 64-byte ones,
/// then one 8-byte message shifts which cells start records, onto cells whose stamps were last
/// written `2k` positions before. With 32 bits, `k = 2^30 + 4` made every later send fail with
/// "the lane's tail makes no progress", and `k = 2^31` made old records come out again. Every
/// `k` from 0 to past the wrap is run here.
#[test]
fn a_lane_keeps_working_after_its_tag_wraps_under_fixed_size_traffic() {
    let t = TestDomain::new("tagwrap");
    for k in 0..(1u32 << 9) + 8 {
        let q = Queue::create(&t.domain, "q", &narrow()).unwrap();
        let mut rx = q.receiver().unwrap();
        round_trip(&q, &mut rx, &[0xee; 8], &format!("k {k}: first short"));
        for i in 0..k {
            let msg: Vec<u8> = (0..64u8).map(|j| j ^ i as u8).collect();
            round_trip(&q, &mut rx, &msg, &format!("k {k}: long {i}"));
        }
        round_trip(&q, &mut rx, &[0xdd; 8], &format!("k {k}: second short"));
        for i in 0..8u8 {
            round_trip(
                &q,
                &mut rx,
                &[i; 64],
                &format!("k {k}: long {i} after the shift"),
            );
        }
        drop(rx);
        drop(q);
        Queue::remove(&t.domain, "q").unwrap();
    }
}

/// Sizes from a seeded generator, several messages in the lane at a time, over sixteen wraps of
/// a 10-bit tag: every message comes out once, in order, intact.
#[test]
fn mixed_sizes_over_many_tag_wraps_come_out_in_order_and_intact() {
    let t = TestDomain::new("tagmix");
    let attrs = Attributes {
        capacity: [1024; 4],
        ..narrow()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    let mut rx = q.receiver().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut sent, mut received) = (0u64, 0u64);
    let message = |n: u64| -> Vec<u8> {
        let len = (n.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 58) as usize; // 0..64
        (0..len).map(|i| (n as u8).wrapping_add(i as u8)).collect()
    };
    while received < 16 << 10 {
        for _ in 0..next() % 5 {
            if tx.try_send(message(sent)).is_ok() {
                sent += 1;
            }
        }
        for _ in 0..next() % 5 {
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(m.payload(), message(received), "message {received}");
                    received += 1;
                }
                Err(RecvError::Empty) => break,
                Err(e) => panic!("after {received}: {e}"),
            }
        }
    }
    let st = q.status();
    assert_eq!(
        (st.received, st.sent),
        (received, received + st.lanes[3].messages)
    );
}
