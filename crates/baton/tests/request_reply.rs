//! Request/reply: `Sender::request` gets exactly one reply, written by the receiver into a reply
//! box the requester holds; late, second and orphaned replies are refused and counted; real
//! processes die on either side.

mod common;
use baton::{Attributes, OpenError, Queue, ReplyError, RequestError, Status};
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

/// Answers `n` requests with "re:" and the request, acknowledging each after its reply.
fn serve(q: Queue, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rx = q.receiver().unwrap();
        for _ in 0..n {
            let m = rx.recv().unwrap();
            let mut answer = b"re:".to_vec();
            answer.extend_from_slice(m.payload());
            m.reply(&answer).unwrap();
        }
    })
}

fn boxes_settled(st: &Status) -> bool {
    st.reply_boxes_in_use == 0
}

#[test]
fn concurrent_requests_each_get_their_own_reply() {
    let t = TestDomain::new("rr-concurrent");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let server = serve(q.clone(), 4 * 50);
    let requesters: Vec<_> = (0..4)
        .map(|r| {
            let q = q.clone();
            std::thread::spawn(move || {
                let tx = q.sender();
                for i in 0..50 {
                    let ask = format!("{r}-{i}");
                    let reply = tx.request(ask.as_bytes(), LONG).unwrap();
                    assert_eq!(reply.payload(), format!("re:{ask}").as_bytes());
                    assert_eq!(reply.replier_pid(), std::process::id());
                    assert!(reply.sent_ns() > 0 && reply.sent_ns() <= baton::monotonic_ns());
                }
            })
        })
        .collect();
    for r in requesters {
        r.join().unwrap();
    }
    server.join().unwrap();
    let st = q.status();
    assert!(boxes_settled(&st), "{st:?}");
    assert_eq!(st.replies_dropped, 0);
}

#[test]
fn a_request_is_a_message_with_its_senders_priority_type_and_version() {
    let t = TestDomain::new("rr-meta");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let q2 = q.clone();
    let server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        let m = rx.recv().unwrap();
        assert!(m.meta().is_request());
        assert_eq!((m.priority(), m.msg_type(), m.version()), (1, 42, 3));
        assert_eq!(m.payload(), b"ask"); // the token is not part of the payload
        q2.reply_with(m.meta().reply_to.unwrap(), -7, 9, b"answer")
            .unwrap();
    });
    let tx = q
        .sender()
        .with_priority(1)
        .unwrap()
        .with_type(42)
        .with_version(3);
    let reply = tx.request(b"ask", LONG).unwrap();
    assert_eq!(
        (reply.payload(), reply.msg_type(), reply.version()),
        (&b"answer"[..], -7, 9)
    );
    server.join().unwrap();
}

#[test]
fn every_way_of_receiving_sees_the_request_and_can_reply() {
    let t = TestDomain::new("rr-ways");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let q2 = q.clone();
    let server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        // In place.
        let m = rx.recv_in_place().unwrap();
        assert_eq!(m.payload(), b"one");
        m.reply(b"in place").unwrap();
        drop(m);
        // In a batch (the closure has the metadata; the queue handle replies).
        let mut to = None;
        while to.is_none() {
            rx.try_recv_batch(1, |p, meta| {
                assert_eq!(p, b"two");
                to = meta.reply_to;
            })
            .unwrap();
        }
        q2.reply(to.unwrap(), b"batch").unwrap();
        // Browsed first, then received.
        while q2.peek(1, baton::TypeFilter::Any).is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let seen = q2.peek(1, baton::TypeFilter::Any);
        assert_eq!(seen[0].payload, b"three");
        assert!(seen[0].meta.is_request());
        rx.recv().unwrap().reply(b"copied").unwrap();
    });
    let tx = q.sender();
    assert_eq!(tx.request(b"one", LONG).unwrap().payload(), b"in place");
    assert_eq!(tx.request(b"two", LONG).unwrap().payload(), b"batch");
    assert_eq!(tx.request(b"three", LONG).unwrap().payload(), b"copied");
    server.join().unwrap();
}

#[test]
fn a_reply_after_the_timeout_is_refused_and_counted() {
    let t = TestDomain::new("rr-late");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let err = q
        .sender()
        .request(b"anyone?", Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(err, RequestError::Timeout);
    assert!(boxes_settled(&q.status()), "the box is given back at once");
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    assert_eq!(m.reply(b"too late"), Err(ReplyError::RequesterGone));
    let st = q.status();
    assert_eq!(st.replies_dropped, 1);
    assert!(boxes_settled(&st));
}

#[test]
fn a_second_reply_to_one_request_is_refused_and_counted() {
    let t = TestDomain::new("rr-twice");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let q2 = q.clone();
    let server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        let m = rx.recv().unwrap();
        m.reply(b"first").unwrap();
        m.reply(b"second")
    });
    assert_eq!(q.sender().request(b"?", LONG).unwrap().payload(), b"first");
    assert_eq!(server.join().unwrap(), Err(ReplyError::AlreadyReplied));
    assert_eq!(q.status().replies_dropped, 1);
    // And a plain message has nobody to reply to.
    q.sender().send(b"plain").unwrap();
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    assert!(!m.meta().is_request());
    assert_eq!(m.reply(b"x"), Err(ReplyError::NotARequest));
}

#[test]
fn requests_and_replies_over_their_limits_are_refused_with_the_limits() {
    let t = TestDomain::new("rr-limits");
    let attrs = Attributes {
        max_message: 100,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "svc", &attrs).unwrap();
    assert_eq!(
        q.sender().request(&[0; 93], LONG).unwrap_err(),
        RequestError::TooBig { len: 93, max: 92 }
    );
    let q2 = q.clone();
    let server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        let m = rx.recv().unwrap();
        assert_eq!(m.len(), 92);
        assert_eq!(
            m.reply(&[0; 129]),
            Err(ReplyError::TooBig { len: 129, max: 128 })
        );
        m.reply(&[1; 128]).unwrap();
    });
    assert_eq!(
        q.sender().request(&[0; 92], LONG).unwrap().payload(),
        [1; 128]
    );
    server.join().unwrap();
}

#[test]
fn reply_boxes_are_an_attribute_with_a_limit_and_zero_means_no_requests() {
    let t = TestDomain::new("rr-boxes");
    let none = Attributes {
        reply_boxes: 0,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "none", &none).unwrap();
    assert_eq!(
        q.sender().request(b"x", LONG).unwrap_err(),
        RequestError::NoReplyBoxes
    );
    let too_many = Attributes {
        reply_boxes: Attributes::MAX_REPLY_BOXES + 1,
        ..Attributes::default()
    };
    assert!(matches!(
        Queue::create(&t.domain, "many", &too_many),
        Err(OpenError::InvalidAttributes(_))
    ));
    match Queue::create(&t.domain, "none", &Attributes::default()) {
        Err(OpenError::Exists { difference, .. }) => {
            assert!(difference.contains("reply boxes are 0"), "{difference}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_requester_finding_every_box_held_waits_then_says_so() {
    let t = TestDomain::new("rr-busy");
    let one = Attributes {
        reply_boxes: 1,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "svc", &one).unwrap();
    let q2 = q.clone();
    let holder = std::thread::spawn(move || {
        q2.sender()
            .request(b"holds the box", Duration::from_millis(600))
    });
    common::eventually(Duration::from_secs(5), || {
        q.status().reply_boxes_in_use == 1
    });
    assert_eq!(
        q.sender()
            .request(b"no box", Duration::from_millis(50))
            .unwrap_err(),
        RequestError::AllBoxesBusy { boxes: 1 }
    );
    assert_eq!(holder.join().unwrap().unwrap_err(), RequestError::Timeout);
    // Freed: a request now gets the box. The first request, still in the queue, is answered
    // too late.
    let q2 = q.clone();
    let server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        let stale = rx.recv().unwrap();
        assert_eq!(stale.payload(), b"holds the box");
        assert_eq!(stale.reply(b"late"), Err(ReplyError::RequesterGone));
        drop(stale);
        rx.recv().unwrap().reply(b"re:b").unwrap();
    });
    assert_eq!(q.sender().request(b"b", LONG).unwrap().payload(), b"re:b");
    server.join().unwrap();
    assert_eq!(q.status().replies_dropped, 1);
}

#[test]
fn a_consumer_of_a_shared_queue_replies_the_same_way() {
    let t = TestDomain::new("rr-shared");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "pool", &attrs).unwrap();
    // The workers serve until told to stop (an idle timeout could end both while this thread
    // is descheduled between two requests).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let q = q.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut c = q.consumer().unwrap();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.recv_timeout(Duration::from_millis(50)) {
                        Ok(m) => m
                            .reply(
                                format!("{w}:{}", String::from_utf8_lossy(m.payload())).as_bytes(),
                            )
                            .unwrap(),
                        Err(baton::RecvError::Timeout) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let tx = q.sender();
    for i in 0..40 {
        let r = tx.request(format!("{i}").as_bytes(), LONG).unwrap();
        let text = String::from_utf8(r.into_payload()).unwrap();
        assert!(text.ends_with(&format!(":{i}")), "{text}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(boxes_settled(&q.status()));
}

/// The owner dies (SIGKILL) after receiving a request and before replying: the request is
/// delivered again, flagged, and the next owner's reply is the one the requester gets.
#[test]
fn an_owner_killed_between_receiving_a_request_and_replying_leaves_it_to_the_next() {
    let t = TestDomain::new("rr-owner-dies");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let q2 = q.clone();
    let requester = std::thread::spawn(move || q2.sender().request(b"once", LONG));
    common::eventually(Duration::from_secs(5), || {
        q.status().lanes.iter().any(|l| l.messages > 0)
    });
    // SAFETY: the child takes the queue, receives the request and stops there until killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "svc").unwrap();
            let mut rx = q.receiver().unwrap();
            let m = rx.recv().unwrap();
            std::mem::forget(m);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ForkResult::Parent { child } => child,
    };
    common::eventually(Duration::from_secs(5), || q.status().owner_pid.is_some());
    common::eventually(Duration::from_secs(5), || {
        q.status().lanes.iter().any(|l| l.unacknowledged > 0)
    });
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    let mut rx = q.standby(Some(LONG)).unwrap();
    let m = rx.recv().unwrap();
    assert!(m.redelivered());
    assert_eq!(m.payload(), b"once");
    m.reply(b"from the next owner").unwrap();
    drop(m);
    let reply = requester.join().unwrap().unwrap();
    assert_eq!(reply.payload(), b"from the next owner");
    let st = q.status();
    assert_eq!(st.replies_dropped, 0);
    assert!(boxes_settled(&st));
}

/// The owner replies and dies before acknowledging: the requester has its reply; the request
/// comes again to the next owner, whose reply is refused (and counted): exactly one arrives.
#[test]
fn an_owner_killed_after_replying_and_before_acknowledging_is_not_answered_twice() {
    let t = TestDomain::new("rr-owner-replied");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    // SAFETY: the child takes the queue, replies to one request, and exits without acknowledging.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "svc").unwrap();
            let mut rx = q.receiver().unwrap();
            let m = rx.recv().unwrap();
            m.reply(b"first owner").unwrap();
            // SAFETY: dies at once, no destructor runs (no acknowledgement).
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let reply = q.sender().request(b"q", LONG).unwrap();
    assert_eq!(reply.payload(), b"first owner");
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    assert!(m.redelivered());
    assert_eq!(m.reply(b"second owner"), Err(ReplyError::AlreadyReplied));
    assert_eq!(q.status().replies_dropped, 1);
}

/// The requester is killed while it waits: the reply finds it gone, is dropped and counted,
/// and its box is free again.
#[test]
fn a_requester_killed_while_waiting_has_its_reply_dropped_and_its_box_freed() {
    let t = TestDomain::new("rr-requester-dies");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    // SAFETY: the child sends one request and waits for its reply until killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "svc").unwrap();
            let _ = q.sender().request(b"waiting", LONG);
            // SAFETY: not reached in time; no destructor runs.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let mut rx = q.receiver().unwrap();
    let m = rx.recv_timeout(LONG).unwrap();
    assert_eq!(q.status().reply_boxes_in_use, 1);
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    assert_eq!(m.reply(b"nobody"), Err(ReplyError::RequesterGone));
    let st = q.status();
    assert_eq!(st.replies_dropped, 1);
    assert!(boxes_settled(&st), "{st:?}");
}

/// The requester dies after its reply was written and before reading it: the box is freed
/// when its slot is found gone (by a requester needing a box), and the reply counted dropped.
#[test]
fn a_reply_nobody_reads_is_counted_and_its_box_reclaimed() {
    let t = TestDomain::new("rr-unread");
    let one = Attributes {
        reply_boxes: 1,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "svc", &one).unwrap();
    // SAFETY: the child sends a request, and is stopped (SIGSTOP) before the reply can wake it.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "svc").unwrap();
            let _ = q.sender().request(b"stop me", LONG);
            // SAFETY: not reached; no destructor runs.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let mut rx = q.receiver().unwrap();
    let m = rx.recv_timeout(LONG).unwrap();
    kill(child, Signal::SIGSTOP).unwrap();
    let stopped = nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WUNTRACED));
    assert!(
        matches!(stopped, Ok(nix::sys::wait::WaitStatus::Stopped(..))),
        "{stopped:?}"
    );
    m.reply(b"unread").unwrap();
    drop(m);
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    assert_eq!(q.status().reply_boxes_in_use, 1, "written, not read");
    // The one box is the dead requester's: the next request reclaims it.
    drop(rx);
    let server = serve(q.clone(), 1);
    assert_eq!(
        q.sender().request(b"next", LONG).unwrap().payload(),
        b"re:next"
    );
    server.join().unwrap();
    let st = q.status();
    assert_eq!(st.replies_dropped, 1);
    assert!(boxes_settled(&st));
}
