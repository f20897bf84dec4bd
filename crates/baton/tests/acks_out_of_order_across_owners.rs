//! The head move over records an earlier owner acknowledged out of order, with a release and
//! a second redelivery in between: each record is delivered once per ownership, every
//! `redelivered` flag is kept, and the lane is freed (it wraps without wedging).

mod common;
use baton::{AckError, Attributes, Queue};
use common::TestDomain;
use std::time::Duration;

const T: Duration = Duration::from_millis(200);

#[test]
fn out_of_order_acks_then_release_then_redelivery_across_owners() {
    let t = TestDomain::new("t-ackshold");
    // One-cell records, eight cells a lane.
    let attrs = Attributes {
        capacity: [512; 4],
        max_message: 32,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    for m in [b"A", b"B", b"C", b"D"] {
        tx.send(m).unwrap();
    }
    let mut rx1 = q.receiver().unwrap();
    let a = rx1.recv().unwrap();
    let b = rx1.recv().unwrap();
    let c = rx1.recv().unwrap();
    c.ack().unwrap(); // out of order: ACKED stamps, head stays at A
    b.ack().unwrap();
    drop(rx1); // A delivered, unacknowledged; D never delivered
    assert_eq!(a.ack(), Err(AckError::Closed));

    let mut rx2 = q.receiver().unwrap();
    let a2 = rx2.recv_timeout(T).unwrap();
    assert_eq!((a2.payload(), a2.redelivered()), (&b"A"[..], true));
    a2.release().unwrap();
    let a3 = rx2.recv_timeout(T).unwrap();
    assert_eq!((a3.payload(), a3.redelivered()), (&b"A"[..], true));
    let d = rx2.recv_timeout(T).unwrap();
    assert_eq!((d.payload(), d.redelivered()), (&b"D"[..], false));
    a3.ack().unwrap(); // frees A, and B and C behind it
    d.ack().unwrap();
    assert!(rx2.try_recv().is_err(), "nothing delivered twice");
    // The lane is empty again: three laps of it go through.
    for i in 0..24u8 {
        tx.send_timeout(&[i], T).unwrap();
        let m = rx2.recv_timeout(T).unwrap();
        assert_eq!((m.payload(), m.redelivered()), (&[i][..], false));
    }
    drop(rx2);
}
