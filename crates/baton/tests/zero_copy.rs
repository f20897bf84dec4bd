//! The zero-copy API: loans written in place, messages read in place.

mod common;
use baton::{Attributes, Queue, RecvError, SendError, TrySendError};
use common::TestDomain;

#[test]
fn a_loan_written_in_place_is_read_in_place_and_freed_by_its_acknowledgement() {
    let t = TestDomain::new("zc");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let tx = q.sender().with_type(9);
    let mut loan = tx.loan(4000, 1).unwrap();
    assert_eq!(loan.len(), 4000);
    for (i, b) in loan.iter_mut().enumerate() {
        *b = i as u8;
    }
    loan.commit().unwrap();
    assert_eq!(q.status().lanes[1].messages, 1);
    let mut rx = q.receiver().unwrap();
    let m = rx.recv_in_place().unwrap();
    assert_eq!((m.priority(), m.msg_type(), m.redelivered()), (1, 9, false));
    assert!(m.payload().iter().enumerate().all(|(i, &b)| b == i as u8));
    assert_eq!(m.sender_pid(), std::process::id());
    m.ack().unwrap();
    let st = q.status();
    assert_eq!((st.lanes[1].used, st.received), (0, 1));
}

#[test]
fn a_dropped_loan_is_cancelled_and_skipped_without_counting_as_abandoned() {
    let t = TestDomain::new("zc-cancel");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let tx = q.sender();
    let loan = tx.loan(10, 3).unwrap();
    tx.send(b"after the loan").unwrap();
    let mut rx = q.receiver().unwrap();
    assert_eq!(
        rx.try_recv(),
        Err(RecvError::Empty),
        "an open loan holds back what was claimed after it"
    );
    drop(loan);
    assert_eq!(rx.try_recv().unwrap().payload(), b"after the loan");
    let st = q.status();
    assert_eq!((st.sent, st.received, st.abandoned), (1, 1, 0));
    assert_eq!(st.lanes[3].used, 0);
}

#[test]
fn loans_are_refused_like_sends() {
    let t = TestDomain::new("zc-refuse");
    let attrs = Attributes {
        capacity: [128; 4],
        max_message: 64,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    assert!(matches!(
        tx.loan(65, 0),
        Err(SendError::TooBig { len: 65, max: 64 })
    ));
    assert!(matches!(tx.loan(1, 4), Err(SendError::InvalidPriority(4))));
    let held = tx.try_loan(64, 0).unwrap();
    match tx.try_loan(64, 0) {
        Err(TrySendError::Full(len)) => assert_eq!(len, 64),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        tx.loan_timeout(64, 0, std::time::Duration::from_millis(10)),
        Err(SendError::Timeout)
    ));
    held.commit().unwrap();
}

#[test]
fn an_in_place_message_released_or_dropped_in_a_panic_comes_again() {
    let t = TestDomain::new("zc-release");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"x").unwrap();
    let mut rx = q.receiver().unwrap();
    rx.recv_in_place().unwrap().release().unwrap();
    let again = rx.recv().unwrap();
    assert!(again.redelivered());
    again.release().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _m = rx.recv_in_place().unwrap();
        panic!("processing failed");
    }));
    assert!(caught.is_err());
    let m = rx.try_recv_in_place().unwrap();
    assert!(m.redelivered());
    assert_eq!(m.payload(), b"x");
}
