//! The queue API within one process: order, blocking, timeouts and every error.

mod common;
use baton::{Attributes, OpenError, OwnError, Queue, RecvError, SendError, TrySendError};
use common::TestDomain;
use std::time::Duration;

fn small() -> Attributes {
    Attributes {
        capacity: [1024; 4],
        max_message: 256,
        ..Default::default()
    }
}

/// A shared queue (competing consumers) with `small()` attributes.
fn shared_small(t: &TestDomain) -> Queue {
    let attrs = Attributes {
        shared: true,
        ..small()
    };
    Queue::create(&t.domain, "s", &attrs).unwrap()
}

#[test]
fn higher_priority_is_received_first() {
    let t = TestDomain::new("prio");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for p in [3u8, 1, 2, 0, 3, 0] {
        q.sender().with_priority(p).unwrap().send(&[p]).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    let got: Vec<u8> = (0..6).map(|_| rx.try_recv().unwrap().priority()).collect();
    assert_eq!(got, vec![0, 0, 1, 2, 3, 3]);
    assert_eq!(rx.try_recv(), Err(RecvError::Empty));
}

#[test]
fn metadata_travels_with_the_message() {
    let t = TestDomain::new("meta");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let before = baton::monotonic_ns();
    q.sender()
        .with_priority(1)
        .unwrap()
        .with_type(-42)
        .with_version(7)
        .send(b"payload")
        .unwrap();
    let m = q.receiver().unwrap().recv().unwrap();
    assert_eq!(
        (m.priority(), m.msg_type(), m.version(), m.payload()),
        (1, -42, 7, &b"payload"[..])
    );
    assert_eq!(m.sender_pid(), std::process::id());
    assert!(m.sent_ns() >= before && m.sent_ns() <= baton::monotonic_ns());
}

#[test]
fn empty_and_maximum_size_payloads_round_trip() {
    let t = TestDomain::new("sizes");
    let attrs = Attributes {
        capacity: [2 << 20; 4],
        max_message: 1 << 20,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31) as u8).collect();
    q.sender().send(b"").unwrap();
    q.sender().send(&big).unwrap();
    let mut rx = q.receiver().unwrap();
    assert!(rx.recv().unwrap().is_empty());
    assert_eq!(rx.recv().unwrap().payload(), &big[..]);
}

#[test]
fn a_message_over_the_maximum_is_too_big_and_nothing_is_written() {
    let t = TestDomain::new("toobig");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    assert_eq!(
        q.sender().send(&[0; 257]),
        Err(SendError::TooBig { len: 257, max: 256 })
    );
    assert!(matches!(
        q.sender().try_send([0u8; 300]),
        Err(TrySendError::Failed(SendError::TooBig { .. }))
    ));
    let st = q.status();
    assert_eq!((st.sent, st.lanes[3].used), (0, 0));
}

#[test]
fn a_priority_above_3_is_invalid() {
    let t = TestDomain::new("badprio");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    assert_eq!(
        q.sender().with_priority(4).unwrap_err(),
        SendError::InvalidPriority(4)
    );
}

#[test]
fn try_send_on_a_full_lane_hands_the_message_back_and_counts_it() {
    let t = TestDomain::new("full");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let tx = q.sender();
    let mut sent = 0;
    loop {
        match tx.try_send(format!("m{sent}")) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(back)) => {
                assert_eq!(back, format!("m{sent}"));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sent, 1024 / 64, "each small message takes one 64-byte cell");
    let st = q.status();
    assert_eq!(
        (st.rejected_full, st.lanes[3].messages, st.lanes[3].used),
        (1, sent, 1024)
    );
}

#[test]
fn send_timeout_gives_up_on_a_full_lane() {
    let t = TestDomain::new("sendtimeout");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let tx = q.sender();
    while tx.try_send(b"x").is_ok() {}
    assert_eq!(
        tx.send_timeout(b"x", Duration::from_millis(30)),
        Err(SendError::Timeout)
    );
}

#[test]
fn a_blocked_send_completes_when_the_receiver_frees_space() {
    let t = TestDomain::new("sendblock");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let tx = q.sender();
    while tx.try_send(b"x").is_ok() {}
    let mut rx = q.receiver().unwrap();
    std::thread::scope(|s| {
        let sender = s.spawn(|| tx.send_timeout(b"last", Duration::from_secs(20)));
        let blocked = common::eventually(Duration::from_secs(10), || {
            q.status().lanes[3].waiting_senders == 1
        });
        // Free one cell whatever happened, so the sender thread ends and the scope can too.
        rx.recv().unwrap();
        assert!(blocked, "the sender announced itself as waiting for space");
        sender.join().unwrap().unwrap();
    });
    let mut n = 0;
    while let Ok(m) = rx.try_recv() {
        n += 1;
        if m.payload() == b"last" {
            break;
        }
    }
    assert_eq!(n, 16, "15 older messages and then the blocked one");
}

#[test]
fn recv_timeout_returns_timeout_on_an_empty_queue() {
    let t = TestDomain::new("recvtimeout");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let mut rx = q.receiver().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    );
    rx.set_spin(Duration::ZERO);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    );
}

#[test]
fn a_sleeping_receiver_is_woken_by_a_send_from_another_thread() {
    let t = TestDomain::new("wake");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let mut rx = q.receiver().unwrap();
    rx.set_spin(Duration::ZERO);
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            rx.recv_timeout(Duration::from_secs(20))
                .map(|m| m.into_payload())
        });
        std::thread::sleep(Duration::from_millis(20));
        q.sender().send(b"wake up").unwrap();
        assert_eq!(h.join().unwrap().unwrap(), b"wake up");
    });
}

#[test]
fn invalid_names_are_refused() {
    let t = TestDomain::new("names");
    for bad in ["", ".x", "a/b", "../../etc/passwd", "white space"] {
        let e = Queue::create(&t.domain, bad, &small()).unwrap_err();
        assert!(matches!(e, OpenError::InvalidName { .. }), "{bad:?}: {e}");
    }
    assert!(baton::Domain::new("bad/domain").is_err());
}

#[test]
fn invalid_attributes_are_refused_with_the_reason() {
    let t = TestDomain::new("attrs");
    let e = Queue::create(
        &t.domain,
        "q",
        &Attributes {
            max_message: 0,
            ..small()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("max message 0"), "{e}");
    let e = Queue::create(
        &t.domain,
        "q",
        &Attributes {
            capacity: [64, 1024, 1024, 1024],
            ..small()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("priority 0"), "{e}");
    // The reason is a value a caller (the C API) can match, not only text.
    assert!(
        matches!(
            e,
            OpenError::InvalidAttributes(baton::AttributeError::CapacityTooSmall {
                priority: 0,
                capacity: 64,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(t.leftovers().is_empty());
}

#[test]
fn opening_a_missing_queue_is_not_found() {
    let t = TestDomain::new("missing");
    assert!(matches!(
        Queue::open(&t.domain, "nope"),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn creating_again_with_the_same_attributes_opens_the_queue() {
    let t = TestDomain::new("same");
    let a = Queue::create(&t.domain, "q", &small()).unwrap();
    a.sender().send(b"kept").unwrap();
    let b = Queue::create(&t.domain, "q", &small()).unwrap();
    assert_eq!(b.receiver().unwrap().recv().unwrap().payload(), b"kept");
}

#[test]
fn creating_again_with_other_attributes_is_exists_naming_the_difference() {
    let t = TestDomain::new("exists");
    Queue::create(&t.domain, "q", &small()).unwrap();
    let e = Queue::create(
        &t.domain,
        "q",
        &Attributes {
            max_message: 128,
            ..small()
        },
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::Exists { .. }));
    assert!(
        e.to_string().contains("max message is 256 (asked 128)"),
        "{e}"
    );
}

#[test]
fn a_second_receiver_gets_busy_with_the_owner_pid() {
    let t = TestDomain::new("busy");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let rx = q.receiver().unwrap();
    match q.receiver() {
        Err(OwnError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(q.status().owner_pid, Some(std::process::id()));
    drop(rx);
    assert_eq!(q.status().owner_pid, None);
    assert!(
        q.receiver().is_ok(),
        "ownership is free again once the receiver is dropped"
    );
}

#[test]
fn status_counts_sends_receives_and_ownership() {
    let t = TestDomain::new("status");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    q.sender()
        .with_priority(0)
        .unwrap()
        .send(&[1; 100])
        .unwrap();
    q.sender().send(b"a").unwrap();
    let st = q.status();
    assert_eq!(
        (st.sent, st.received, st.lanes[0].messages, st.lanes[0].used),
        (2, 0, 1, 192)
    );
    assert_eq!(st.lanes[0].capacity, 1024);
    assert_eq!(st.files, vec![t.file("q")]);
    let mut rx = q.receiver().unwrap();
    rx.recv().unwrap();
    let st = q.status();
    assert_eq!(
        (st.sent, st.received, st.epoch, st.lanes[0].used),
        (2, 1, 1, 0)
    );
}

#[test]
fn remove_frees_the_name_at_once() {
    let t = TestDomain::new("rm");
    let old = Queue::create(&t.domain, "q", &small()).unwrap();
    Queue::remove(&t.domain, "q").unwrap();
    assert!(matches!(
        Queue::open(&t.domain, "q"),
        Err(OpenError::NotFound { .. })
    ));
    let new = Queue::create(
        &t.domain,
        "q",
        &Attributes {
            max_message: 128,
            ..small()
        },
    )
    .unwrap();
    assert_eq!(new.attributes().max_message, 128);
    drop(old);
    assert!(matches!(
        Queue::remove(&t.domain, "gone"),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn list_shows_the_domains_queues_only() {
    let t = TestDomain::new("list");
    let other = TestDomain::new("list-other");
    Queue::create(&t.domain, "b", &small()).unwrap();
    Queue::create(&t.domain, "a", &small())
        .unwrap()
        .sender()
        .send(b"x")
        .unwrap();
    Queue::create(&other.domain, "c", &small()).unwrap();
    let names: Vec<(String, u64)> = Queue::list(&t.domain)
        .unwrap()
        .into_iter()
        .map(|e| e.status.map(|s| (s.name, s.sent)).unwrap())
        .collect();
    assert_eq!(names, vec![("a".to_string(), 1), ("b".to_string(), 0)]);
}

#[test]
fn long_names_in_long_domains_work() {
    let t = TestDomain::new("long");
    let name = "n".repeat(200);
    let q = Queue::create(&t.domain, &name, &small()).unwrap();
    q.sender().send(b"x").unwrap();
    assert_eq!(Queue::open(&t.domain, &name).unwrap().name(), name);
    let listed = Queue::list(&t.domain).unwrap();
    assert_eq!(listed[0].status.as_ref().unwrap().name, name);
}

/// A cancel interrupts the receives under way, takes nothing, and leaves later receives alone.
#[test]
fn a_cancel_interrupts_the_receives_under_way_and_nothing_else() {
    let t = TestDomain::new("cancel");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let cancel = rx.canceller();
    cancel.cancel(); // nothing under way: no effect on the next receive
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    let blocked = std::thread::spawn(move || {
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .map(|m| m.payload().to_vec());
        (r, rx)
    });
    // Under way: asleep in it (a cancel before the receive begins is no cancel of it).
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_sleeping));
    let since = std::time::Instant::now();
    cancel.cancel();
    let (r, mut rx) = blocked.join().unwrap();
    assert_eq!(r, Err(RecvError::Interrupted));
    assert!(since.elapsed() < Duration::from_secs(5));
    q.sender().send(b"kept").unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"kept");
    assert_eq!(q.status().redelivered, 0);
}

/// A spin window longer than the clock can add (`Duration::MAX`) used to panic in the first
/// blocking receive; the deadline ends it, and a message sent meanwhile is found by the poll.
#[test]
fn a_spin_too_long_for_the_clock_is_cut_by_the_timeout_not_a_panic() {
    let t = TestDomain::new("spinmax");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let mut rx = q.receiver().unwrap();
    rx.set_spin(Duration::MAX);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)).unwrap_err(),
        RecvError::Timeout
    );
    let sender = std::thread::spawn({
        let q = q.clone();
        move || {
            std::thread::sleep(Duration::from_millis(5));
            q.sender().send(b"late").unwrap();
        }
    });
    assert_eq!(rx.recv().unwrap().payload(), b"late");
    sender.join().unwrap();

    let s = shared_small(&t);
    let mut c = s.consumer().unwrap();
    c.set_spin(Duration::MAX);
    assert_eq!(
        c.recv_timeout(Duration::from_millis(5)).unwrap_err(),
        RecvError::Timeout
    );
}

/// Timeouts too long for the clock (`Duration::MAX`) mean "as long as it takes": they used to
/// panic adding to `Instant::now()`. A send finds room at once, a receive gets what is sent
/// while it waits, and an owner is never "stalled" for longer than u64 nanoseconds can say.
#[test]
fn timeouts_too_long_for_the_clock_wait_without_limit_instead_of_panicking() {
    let t = TestDomain::new("tmax");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let tx = q.sender();
    tx.send_timeout(b"now", Duration::MAX).unwrap();
    let loan = tx.loan_timeout(3, 3, Duration::MAX).unwrap();
    loan.commit().unwrap();
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv_timeout(Duration::MAX).unwrap().payload(), b"now");
    assert_eq!(
        rx.recv_in_place_timeout(Duration::MAX)
            .unwrap()
            .payload()
            .len(),
        3
    );
    let late = std::thread::spawn({
        let q = q.clone();
        move || {
            std::thread::sleep(Duration::from_millis(5));
            q.sender().send(b"late").unwrap();
        }
    });
    assert_eq!(rx.recv_timeout(Duration::MAX).unwrap().payload(), b"late");
    late.join().unwrap();
    // A message waits while the owner does nothing: stalled after 1 ms, never after 300
    // thousand years (whose nanoseconds, cut to 64 bits, were 20992: 21 µs).
    tx.send(b"waits").unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let status = q.status();
    assert!(status.owner_stalled(Duration::from_millis(1)));
    assert!(!status.owner_stalled(Duration::from_secs(9_463_179_709_813)));
    assert!(!status.owner_stalled(Duration::MAX));

    let s = shared_small(&t);
    s.sender().send(b"shared").unwrap();
    let mut c = s.consumer().unwrap();
    assert_eq!(c.recv_timeout(Duration::MAX).unwrap().payload(), b"shared");
}

/// `status()` on a segment a peer truncated to nothing reports it, touching nothing past the
/// file's end. (Review: the retention in force, read from shared memory, made it a SIGBUS.)
#[test]
fn status_of_a_segment_truncated_to_nothing_reports_it_without_sigbus() {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let t = TestDomain::new("status-trunc0");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(t.file("q"))
        .unwrap()
        .set_len(0)
        .unwrap();
    // SAFETY: the child only calls status() and attributes() and exits with _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let st = q.status();
            let ok = st.file_size == Some(0) && q.attributes() == st.attributes;
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        ForkResult::Parent { child } => {
            let status = waitpid(child, None).unwrap();
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "status() on a truncated segment"
            );
        }
    }
}

/// A cancel made after `Canceller::point` interrupts `recv_timeout_since`, whether it comes
/// before the receive begins, while it spins, or while it sleeps; a receive given a point
/// after the cancel waits as usual.
#[test]
fn a_cancel_after_the_point_interrupts_the_receive_wherever_it_lands() {
    let t = TestDomain::new("recv-since");
    let q = Queue::create(&t.domain, "q", &small()).unwrap();
    let mut rx = q.receiver().unwrap();
    let canceller = rx.canceller();
    for i in 0..200u64 {
        let since = canceller.point();
        let c = canceller.clone();
        let delay = Duration::from_micros((i * 37) % 300);
        let cancelling = std::thread::spawn(move || {
            std::thread::sleep(delay);
            c.cancel();
        });
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_micros((i * 53) % 300));
        }
        assert!(
            matches!(
                rx.recv_timeout_since(since, Duration::from_secs(30)),
                Err(RecvError::Interrupted)
            ),
            "round {i}"
        );
        cancelling.join().unwrap();
        assert!(canceller.cancelled_since(since));
    }
    let since = canceller.point();
    assert!(!canceller.cancelled_since(since));
    assert!(matches!(
        rx.recv_timeout_since(since, Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    q.sender().send(b"m").unwrap();
    canceller.cancel();
    assert_eq!(
        rx.recv_timeout_since(since, Duration::from_secs(1))
            .unwrap()
            .payload(),
        b"m",
        "a waiting message is taken, cancel or not"
    );
    drop(rx);
    Queue::remove(&t.domain, "q").unwrap();
}

/// Review: a point is of one canceller. A point taken of another receiver's (or a consumer's)
/// canceller must not make `recv_timeout_since` report a cancel that never happened to this
/// receiver (nor hide one that did).
#[test]
fn a_point_of_another_canceller_is_not_a_cancel_of_this_receiver() {
    let t = TestDomain::new("recv-since-foreign");
    let qa = Queue::create(&t.domain, "a", &small()).unwrap();
    let qb = Queue::create(&t.domain, "b", &small()).unwrap();
    let mut a = qa.receiver().unwrap();
    let b = qb.receiver().unwrap();
    let other = b.canceller();
    other.cancel(); // b's history moves on; a's never does
    let foreign = other.point();
    // Refusing the point (a panic, as `Condvar::wait` with a second mutex) would do; a
    // cancel that never happened would not.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.recv_timeout_since(foreign, Duration::from_millis(50))
    }));
    assert!(
        !matches!(r, Ok(Err(RecvError::Interrupted))),
        "a's receive was interrupted though nobody cancelled a: {r:?}"
    );
    assert!(!matches!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a
            .canceller()
            .cancelled_since(foreign))),
        Ok(true)
    ));
    drop((a, b));
    Queue::remove(&t.domain, "a").unwrap();
    Queue::remove(&t.domain, "b").unwrap();
}
