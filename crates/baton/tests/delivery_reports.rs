//! Tracked sends (`Sender::send_tracked`): the sender learns, per message, that its receiver
//! acknowledged it, or that it was purged or its queue removed.

mod common;
use baton::{Attributes, Delivered, Queue, RequestError};
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn each_tracked_message_reports_its_own_acknowledgement_from_every_way_of_receiving() {
    let t = TestDomain::new("dr-ways");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let tx = q.sender();
    let mut d: Vec<_> = (0..4)
        .map(|i| tx.send_tracked(format!("m{i}").as_bytes()).unwrap())
        .collect();
    tx.send(b"plain").unwrap();
    let mut rx = q.receiver().unwrap();
    // Copied, acknowledged explicitly.
    let m = rx.recv().unwrap();
    assert_eq!(m.payload(), b"m0");
    assert!(!m.meta().is_request());
    assert_eq!(d[0].try_outcome().unwrap(), None);
    m.ack().unwrap();
    assert_eq!(d[0].wait(LONG).unwrap(), Delivered::Acknowledged);
    // Copied, released (not acknowledged: no report), then dropped (acknowledged).
    let m = rx.recv().unwrap();
    assert_eq!(m.payload(), b"m1");
    m.release().unwrap();
    assert_eq!(d[1].try_outcome().unwrap(), None);
    drop(rx.recv().unwrap());
    assert_eq!(d[1].wait(LONG).unwrap(), Delivered::Acknowledged);
    // In place.
    let m = rx.recv_in_place().unwrap();
    assert_eq!(m.payload(), b"m2");
    drop(m);
    assert_eq!(d[2].wait(LONG).unwrap(), Delivered::Acknowledged);
    // In a batch, with the plain message after it.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        rx.try_recv_batch(8, |p, _| seen.push(p.to_vec())).unwrap();
    }
    assert_eq!(seen, [b"m3".to_vec(), b"plain".to_vec()]);
    assert_eq!(d[3].wait(LONG).unwrap(), Delivered::Acknowledged);
    assert_eq!(q.status().reply_boxes_in_use, 0);
    assert_eq!(q.status().replies_dropped, 0);
}

#[test]
fn a_purged_message_reports_purged_and_a_removed_queue_reports_removed() {
    let t = TestDomain::new("dr-discard");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut purged = q.sender().send_tracked(b"stale").unwrap();
    assert_eq!(q.purge(None).unwrap(), 1);
    assert_eq!(purged.wait(LONG).unwrap(), Delivered::Purged);
    let mut gone = q.sender().send_tracked(b"never read").unwrap();
    Queue::remove(&t.domain, "q").unwrap();
    assert_eq!(gone.wait(LONG).unwrap(), Delivered::QueueRemoved);
}

#[test]
fn a_shared_queues_consumer_and_its_purge_report_too() {
    let t = TestDomain::new("dr-shared");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "pool", &attrs).unwrap();
    let mut a = q.sender().send_tracked(b"a").unwrap();
    let mut b = q.sender().send_tracked(b"b").unwrap();
    let mut c = q.consumer().unwrap();
    drop(c.recv().unwrap());
    assert_eq!(a.wait(LONG).unwrap(), Delivered::Acknowledged);
    assert_eq!(q.purge(None).unwrap(), 1);
    assert_eq!(b.wait(LONG).unwrap(), Delivered::Purged);
}

/// The receiver dies holding the message unacknowledged: no report yet; the next owner's
/// acknowledgement is the one reported.
#[test]
fn a_message_whose_receiver_died_reports_the_next_receivers_acknowledgement() {
    let t = TestDomain::new("dr-death");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut d = q.sender().send_tracked(b"work").unwrap();
    // SAFETY: the child takes the queue and the message, and waits to be killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            let mut rx = q.receiver().unwrap();
            std::mem::forget(rx.recv().unwrap());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ForkResult::Parent { child } => child,
    };
    assert!(common::eventually(LONG, || q.status().lanes[3]
        .unacknowledged
        == 1));
    assert_eq!(d.try_outcome().unwrap(), None);
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    let mut rx = q.standby(Some(LONG)).unwrap();
    let m = rx.recv().unwrap();
    assert!(m.redelivered());
    assert_eq!(d.try_outcome().unwrap(), None);
    drop(m);
    assert_eq!(d.wait(LONG).unwrap(), Delivered::Acknowledged);
}

#[test]
fn a_dropped_delivery_gives_its_box_back_and_tracked_sends_need_a_free_box() {
    let t = TestDomain::new("dr-boxes");
    let one = Attributes {
        reply_boxes: 1,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &one).unwrap();
    let d = q.sender().send_tracked(b"1").unwrap();
    assert!(matches!(
        q.sender().send_tracked(b"2"),
        Err(RequestError::AllBoxesBusy { boxes: 1 })
    ));
    assert_eq!(
        q.status().lanes[3].messages,
        1,
        "refused before anything was sent"
    );
    drop(d);
    let mut d2 = q.sender().send_tracked(b"3").unwrap();
    assert_eq!(
        d2.wait(Duration::from_millis(10)),
        Err(RequestError::Timeout)
    );
    // The message of the dropped Delivery is acknowledged: its report goes nowhere, uncounted.
    let mut rx = q.receiver().unwrap();
    drop(rx.recv().unwrap());
    drop(rx.recv().unwrap());
    assert_eq!(d2.wait(LONG).unwrap(), Delivered::Acknowledged);
    assert_eq!(q.status().replies_dropped, 0);
}

/// A forked child's copy of a `Delivery` is not the sender's: dropping it frees nothing, and
/// asking it says so (review: the child's drop freed the parent's box).
#[test]
fn a_forked_childs_copy_of_a_delivery_does_not_take_the_parents_box() {
    let t = TestDomain::new("dr-fork");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut d = q.sender().send_tracked(b"job").unwrap();
    // SAFETY: the child uses its copy of the Delivery, drops it and exits at once.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = match d.try_outcome() {
                Err(RequestError::ForkedCopy) => 0,
                _ => 1,
            };
            drop(d);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            assert_eq!(common::reap(child, LONG), Some(0));
        }
    }
    assert_eq!(
        q.status().reply_boxes_in_use,
        1,
        "the parent still holds its box"
    );
    drop(q.receiver().unwrap().recv().unwrap());
    assert_eq!(d.wait(LONG), Ok(Delivered::Acknowledged));
}

/// A `Delivery` leaked with `mem::forget` keeps its queue mapped, like a leaked `Queue`, and
/// so its box held, until its process ends: then the box is the first free one a requester
/// needing a box finds (its slot found dead).
#[test]
fn a_leaked_delivery_holds_its_box_only_while_its_process_lives() {
    let t = TestDomain::new("dr-leak");
    let one = Attributes {
        reply_boxes: 1,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &one).unwrap();
    // SAFETY: the child sends a tracked message, leaks its Delivery and ends.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            std::mem::forget(q.sender().send_tracked(b"leaked").unwrap());
            // SAFETY: ends the child at once, the Delivery leaked.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, LONG), Some(0));
    assert_eq!(q.status().reply_boxes_in_use, 1);
    let mut d = q.sender().send_tracked(b"next").unwrap();
    assert_eq!(
        q.status().reply_boxes_in_use,
        1,
        "the dead child's box, reclaimed"
    );
    let mut rx = q.receiver().unwrap();
    drop(rx.recv().unwrap());
    drop(rx.recv().unwrap());
    assert_eq!(d.wait(LONG).unwrap(), Delivered::Acknowledged);
}
