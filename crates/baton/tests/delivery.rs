//! At-least-once delivery, standby, removal and retention, within one process.

mod common;
use baton::{
    AckError, Attributes, OpenError, OwnError, Queue, ReceiverOptions, RecvError, SendError,
};
use common::TestDomain;
use std::time::{Duration, Instant};

fn queue(t: &TestDomain, attrs: Attributes) -> Queue {
    Queue::create(&t.domain, "q", &attrs).unwrap()
}

/// Five 64-byte cells per lane, for messages of two cells (up to 96 bytes): records wrap
/// behind padding every other lap.
fn five_cell_queue(t: &TestDomain) -> Queue {
    queue(
        t,
        Attributes {
            capacity: [320; 4],
            max_message: 96,
            ..Default::default()
        },
    )
}

fn payloads(rx: &mut baton::Receiver) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push((
            String::from_utf8_lossy(m.payload()).into_owned(),
            m.redelivered(),
        ));
    }
    out
}

fn s(x: &str, redelivered: bool) -> (String, bool) {
    (x.to_string(), redelivered)
}

#[test]
fn a_dropped_message_is_acknowledged_and_never_seen_again() {
    let t = TestDomain::new("drop-acks");
    let q = queue(&t, Attributes::default());
    q.sender().send(b"a").unwrap();
    q.sender().send(b"b").unwrap();
    let mut rx = q.receiver().unwrap();
    drop(rx.recv().unwrap());
    rx.recv().unwrap().ack().unwrap();
    drop(rx);
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.try_recv(), Err(RecvError::Empty));
    let st = q.status();
    assert_eq!((st.received, st.redelivered, st.lanes[3].used), (2, 0, 0));
}

#[test]
fn messages_held_when_the_receiver_closes_go_to_the_next_owner_flagged_redelivered_first() {
    let t = TestDomain::new("held");
    let q = queue(&t, Attributes::default());
    for m in ["1", "2", "3"] {
        q.sender().send(m.as_bytes()).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    let one = rx.recv().unwrap();
    let two = rx.recv().unwrap();
    q.sender()
        .with_priority(0)
        .unwrap()
        .send(b"urgent")
        .unwrap();
    drop(rx);
    // Too late: the receiver is gone, so these stay in the queue.
    assert_eq!(one.ack(), Err(AckError::Closed));
    drop(two);
    let mut rx = q.receiver().unwrap();
    assert_eq!(
        payloads(&mut rx),
        vec![
            s("1", true),
            s("2", true),
            s("urgent", false),
            s("3", false)
        ],
        "redeliveries come first, then priority order"
    );
    assert_eq!(q.status().redelivered, 2);
}

#[test]
fn out_of_order_acknowledgements_free_space_only_up_to_the_first_unacknowledged() {
    let t = TestDomain::new("ooo");
    let attrs = Attributes {
        capacity: [128; 4], // two 64-byte cells per lane
        max_message: 32,
        ..Default::default()
    };
    let q = queue(&t, attrs);
    let tx = q.sender();
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    let mut rx = q.receiver().unwrap();
    let a = rx.recv().unwrap();
    let b = rx.recv().unwrap();
    b.ack().unwrap();
    assert!(
        tx.try_send(&b"c"[..]).is_err(),
        "b is acknowledged but a still holds the head"
    );
    a.ack().unwrap();
    tx.try_send(&b"c"[..]).unwrap();
    tx.try_send(&b"d"[..]).unwrap();
    assert_eq!(payloads(&mut rx), vec![s("c", false), s("d", false)]);
}

#[test]
fn a_released_message_comes_back_to_the_same_receiver_before_newer_ones() {
    let t = TestDomain::new("release");
    let q = queue(&t, Attributes::default());
    for m in ["1", "2"] {
        q.sender().send(m.as_bytes()).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    rx.recv().unwrap().release().unwrap();
    assert_eq!(payloads(&mut rx), vec![s("1", true), s("2", false)]);
}

#[test]
fn a_message_held_by_a_panicking_thread_is_not_acknowledged() {
    let t = TestDomain::new("panic");
    let q = queue(&t, Attributes::default());
    q.sender().send(b"work").unwrap();
    let mut rx = q.receiver().unwrap();
    let m = rx.recv().unwrap();
    let r = std::thread::spawn(move || {
        let _held = m;
        panic!("processing failed");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(payloads(&mut rx), vec![s("work", true)]);
}

#[test]
fn messages_can_be_acknowledged_on_other_threads() {
    let t = TestDomain::new("threads");
    let q = queue(&t, Attributes::default());
    for i in 0..100u32 {
        q.sender().send(&i.to_ne_bytes()).unwrap();
    }
    let mut rx = q.receiver().unwrap();
    let msgs: Vec<_> = (0..100).map(|_| rx.recv().unwrap()).collect();
    std::thread::scope(|s| {
        let mut it = msgs.into_iter();
        for _ in 0..4 {
            let part: Vec<_> = it.by_ref().take(25).collect();
            s.spawn(move || part.into_iter().rev().for_each(|m| m.ack().unwrap()));
        }
    });
    let st = q.status();
    assert_eq!(
        (st.received, st.lanes[3].messages, st.lanes[3].used),
        (100, 0, 0)
    );
}

#[test]
fn a_standby_times_out_while_the_owner_lives_and_owns_the_queue_once_it_closes() {
    let t = TestDomain::new("standby");
    let q = queue(&t, Attributes::default());
    let owner = q.receiver().unwrap();
    let started = Instant::now();
    match q.standby(Some(Duration::from_millis(50))) {
        Err(OwnError::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        q.status().standbys,
        0,
        "a standby that gave up is not counted"
    );
    let q2 = q.clone();
    let standby = std::thread::spawn(move || {
        let mut rx = q2.standby(None).unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap()
            .into_payload()
    });
    assert!(common::eventually(Duration::from_secs(5), || q
        .status()
        .standbys
        == 1));
    q.sender().send(b"for the standby").unwrap();
    drop(owner);
    assert_eq!(standby.join().unwrap(), b"for the standby");
    assert_eq!(q.status().epoch, 2);
}

#[test]
fn the_receiver_lives_on_when_the_thread_that_opened_it_ends() {
    let t = TestDomain::new("thread-ends");
    let q = queue(&t, Attributes::default());
    let q2 = q.clone();
    let mut rx = std::thread::spawn(move || q2.receiver().unwrap())
        .join()
        .unwrap();
    assert!(matches!(q.receiver(), Err(OwnError::Busy { .. })));
    assert!(matches!(
        q.standby(Some(Duration::from_millis(20))),
        Err(OwnError::Timeout { .. })
    ));
    q.sender().send(b"x").unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"x");
}

#[test]
fn the_empty_flag_discards_waiting_messages() {
    let t = TestDomain::new("empty");
    let q = queue(&t, Attributes::default());
    for _ in 0..3 {
        q.sender().send(b"stale").unwrap();
    }
    let mut rx = q
        .receiver_with(ReceiverOptions {
            empty: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rx.discarded(), 3);
    assert_eq!(rx.try_recv(), Err(RecvError::Empty));
    q.sender().send(b"fresh").unwrap();
    assert_eq!(rx.try_recv().unwrap().payload(), b"fresh");
}

#[test]
fn a_removed_queue_fails_sends_and_receives_and_its_name_is_free_at_once() {
    let t = TestDomain::new("removed");
    let q = queue(&t, Attributes::default());
    let tx = q.sender();
    let mut rx = q.receiver().unwrap();
    tx.send(b"before").unwrap();
    Queue::remove(&t.domain, "q").unwrap();
    assert_eq!(tx.send(b"after"), Err(SendError::Removed));
    assert_eq!(rx.try_recv(), Err(RecvError::Removed));
    assert!(q.status().removed);
    let fresh = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    fresh.sender().send(b"new").unwrap();
    assert_eq!(tx.send(b"old handle"), Err(SendError::Removed));
    drop(rx);
    assert_eq!(
        fresh.receiver().unwrap().try_recv().unwrap().payload(),
        b"new"
    );
    assert!(matches!(q.receiver(), Err(OwnError::Removed { .. })));
}

#[test]
fn a_blocked_sender_learns_that_its_queue_was_removed() {
    let t = TestDomain::new("removed-blocked");
    let attrs = Attributes {
        capacity: [64; 4],
        max_message: 32,
        ..Default::default()
    };
    let q = queue(&t, attrs);
    q.sender().send(b"fills the lane").unwrap();
    let tx = q.sender();
    let blocked = std::thread::spawn(move || tx.send(b"waits"));
    std::thread::sleep(Duration::from_millis(20));
    Queue::remove(&t.domain, "q").unwrap();
    assert_eq!(blocked.join().unwrap(), Err(SendError::Removed));
}

#[test]
fn retention_zero_deletes_the_queue_when_its_owner_closes_unless_a_standby_waits() {
    let t = TestDomain::new("ret0");
    let attrs = Attributes {
        retention: Some(Duration::ZERO),
        ..Default::default()
    };
    let q = queue(&t, attrs);
    q.sender().send(b"kept while unowned").unwrap();
    let q_again = Queue::open(&t.domain, "q").expect("never owned: not expired");
    let rx = q_again.receiver().unwrap();
    // A standby is waiting: closing hands over instead of deleting.
    let q2 = q.clone();
    let standby = std::thread::spawn(move || q2.standby(Some(Duration::from_secs(10))));
    assert!(common::eventually(Duration::from_secs(5), || q
        .status()
        .standbys
        == 1));
    drop(rx);
    let mut rx = standby.join().unwrap().expect("the standby got the queue");
    assert_eq!(rx.try_recv().unwrap().payload(), b"kept while unowned");
    drop(rx);
    assert!(matches!(
        Queue::open(&t.domain, "q"),
        Err(OpenError::NotFound { .. })
    ));
    assert_eq!(q.sender().send(b"too late"), Err(SendError::Removed));
    assert!(t.leftovers().is_empty(), "{:?}", t.leftovers());
}

#[test]
fn a_queue_with_retention_expires_after_that_long_without_an_owner() {
    let t = TestDomain::new("ret");
    let attrs = Attributes {
        retention: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let q = queue(&t, attrs);
    q.sender().send(b"m").unwrap();
    drop(q.receiver().unwrap());
    let listed = |t: &TestDomain| {
        Queue::list(&t.domain)
            .unwrap()
            .into_iter()
            .map(|e| {
                let st = e.status.unwrap();
                (st.name, st.expired)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(&t),
        vec![("q".to_string(), false)],
        "not yet expired"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        listed(&t),
        vec![("q".to_string(), true)],
        "listed as expired, and not removed by listing"
    );
    assert!(Queue::inspect(&t.domain, "q").unwrap().expired);
    assert_eq!(Queue::gc(&t.domain).unwrap().len(), 1, "gc removes it");
    assert!(t.leftovers().is_empty());
    assert_eq!(q.sender().send(b"x"), Err(SendError::Removed));
}

#[test]
fn a_retention_set_later_is_in_force_for_every_mapping_and_counts_from_the_last_owner() {
    let t = TestDomain::new("setret");
    let q = queue(&t, Attributes::default()); // kept until removed
    q.sender().send(b"m").unwrap();
    drop(q.receiver().unwrap()); // owned once, then closed: unowned from now
    std::thread::sleep(Duration::from_millis(200));
    assert!(!Queue::inspect(&t.domain, "q").unwrap().expired);

    // Another mapping sets it: this one sees it at once, and the clock started at the close.
    let other = Queue::open(&t.domain, "q").unwrap();
    other
        .set_retention(Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(q.attributes().retention, Some(Duration::from_millis(100)));
    assert!(Queue::inspect(&t.domain, "q").unwrap().expired);

    // Back to none: kept again.
    q.set_retention(None).unwrap();
    assert!(!Queue::inspect(&t.domain, "q").unwrap().expired);

    // `create` compares against the retention in force, not the one it was made with.
    q.set_retention(Some(Duration::from_secs(3600))).unwrap();
    let made_with = Attributes::default();
    assert!(matches!(
        Queue::create(&t.domain, "q", &made_with),
        Err(OpenError::Exists { difference, .. }) if difference.contains("retention")
    ));
    q.set_retention(None).unwrap();
    Queue::create(&t.domain, "q", &made_with).expect("the same attributes again");
    assert_eq!(q.receiver().unwrap().try_recv().unwrap().payload(), b"m");

    // Set to 0 while owned: the owner's close removes it.
    let rx = q.receiver().unwrap();
    q.set_retention(Some(Duration::ZERO)).unwrap();
    drop(rx);
    assert!(matches!(
        Queue::open(&t.domain, "q"),
        Err(OpenError::NotFound { .. })
    ));
    assert!(t.leftovers().is_empty(), "{:?}", t.leftovers());
}

#[test]
fn a_retention_is_refused_on_a_shared_queue_and_past_what_nanoseconds_hold() {
    let t = TestDomain::new("setret-bad");
    let shared = queue(
        &t,
        Attributes {
            shared: true,
            ..Default::default()
        },
    );
    assert_eq!(
        shared.set_retention(Some(Duration::from_secs(1))),
        Err(baton::AttributeError::RetentionOnShared)
    );
    assert_eq!(shared.attributes().retention, None);
    Queue::remove(&t.domain, "q").unwrap();
    let q = queue(&t, Attributes::default());
    assert_eq!(
        q.set_retention(Some(Duration::MAX)),
        Err(baton::AttributeError::Retention)
    );
    assert_eq!(q.attributes().retention, None, "unchanged");
    Queue::remove(&t.domain, "q").unwrap();
}

#[test]
fn gc_removes_expired_queues_and_dead_temporaries_but_nothing_else() {
    let t = TestDomain::new("gc");
    let keep = Queue::create(&t.domain, "keep", &Attributes::default()).unwrap();
    let attrs = Attributes {
        retention: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let gone = Queue::create(&t.domain, "gone", &attrs).unwrap();
    drop(gone.receiver().unwrap());
    std::thread::sleep(Duration::from_millis(80));
    let dead_pid = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let temp =
        std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.tmp.{dead_pid}.0", t.name()));
    std::fs::write(&temp, b"half made").unwrap();
    let live_temp = std::path::Path::new(baton::SHM_DIR).join(format!(
        "baton.{}~.tmp.{}.99",
        t.name(),
        std::process::id()
    ));
    std::fs::write(&live_temp, b"being made").unwrap();
    // A creator at work holds a lock on its temporary; the pid in the name is for display.
    let creating = nix::fcntl::Flock::lock(
        std::fs::File::open(&live_temp).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let removed = Queue::gc(&t.domain).unwrap();
    assert_eq!(removed, vec![t.file("gone"), temp.clone()]);
    assert!(gone.status().removed);
    assert!(live_temp.exists());
    drop(creating);
    std::fs::remove_file(&live_temp).unwrap();
    assert_eq!(keep.status().name, "keep");
    assert!(Queue::open(&t.domain, "keep").is_ok());
}

#[test]
fn status_reports_an_owner_that_makes_no_progress_while_messages_wait() {
    let t = TestDomain::new("stall");
    let q = queue(&t, Attributes::default());
    let mut rx = q.receiver().unwrap();
    // Generous margins: on a loaded machine this thread may pause between steps.
    let after = Duration::from_millis(500);
    assert!(!q.status().owner_stalled(after), "idle, nothing waiting");
    std::thread::sleep(Duration::from_millis(550));
    assert!(
        !q.status().owner_stalled(after),
        "idle owner, but nothing waits"
    );
    q.sender().send(b"waits").unwrap();
    assert!(
        !q.status().owner_stalled(after),
        "the message has not waited long yet"
    );
    std::thread::sleep(Duration::from_millis(550));
    let st = q.status();
    assert!(st.owner_stalled(after), "{st:?}");
    rx.recv().unwrap().ack().unwrap();
    assert!(!q.status().owner_stalled(after));
}

#[test]
fn every_drop_order_leaves_the_queue_usable() {
    let t = TestDomain::new("drops");
    let q = queue(&t, Attributes::default());
    // A second handle maps the queue again and takes its own sender slot at its first send.
    let other = Queue::open(&t.domain, "q").unwrap();
    other.sender().send(b"1").unwrap();
    assert_eq!(q.status().sender_slots, 1);
    let tx = other.sender();
    drop(other);
    tx.send(b"2").unwrap();
    drop(tx);
    assert_eq!(
        q.status().sender_slots,
        0,
        "the last handle gave its slot back"
    );
    // The queue handle may go before the receiver, and messages before or after either.
    let q2 = Queue::open(&t.domain, "q").unwrap();
    let mut rx = q2.receiver().unwrap();
    drop(q2);
    let one = rx.recv().unwrap();
    let two = rx.recv().unwrap();
    drop(rx);
    drop(one);
    assert_eq!(two.ack(), Err(AckError::Closed));
    let mut rx = q.receiver().unwrap();
    assert_eq!(payloads(&mut rx), vec![s("1", true), s("2", true)]);
    drop(rx);
    assert_eq!(q.status().owner_pid, None);
}

#[test]
fn the_receiver_follows_the_head_over_padding_that_a_sender_has_since_reused() {
    let t = TestDomain::new("wrap");
    // A B | pad | C D ...
    let q = five_cell_queue(&t);
    let tx = q.sender();
    let msg = |c: char| c.to_string().repeat(90);
    let mut rx = q.receiver().unwrap();
    tx.send(msg('A').as_bytes()).unwrap(); // cells 0-1
    let a = rx.try_recv().unwrap();
    tx.send(msg('B').as_bytes()).unwrap(); // cells 2-3
    let b = rx.try_recv().unwrap();
    assert_eq!(rx.try_recv(), Err(RecvError::Empty)); // the receiver looks at cell 4: nothing
    a.ack().unwrap();
    tx.send(msg('C').as_bytes()).unwrap(); // padding at cell 4, C at cells 5-6 (0-1)
    b.ack().unwrap(); // the head moves over B and the padding, to C
    tx.send(msg('D').as_bytes()).unwrap(); // cells 7-8 (2-3)
                                           // Padding again at cell 9, the same cell as the first padding: that stamp is gone.
    assert!(tx.try_send(msg('E')).is_err());
    assert_eq!(rx.try_recv().unwrap().payload(), msg('C').as_bytes());
    assert_eq!(rx.try_recv().unwrap().payload(), msg('D').as_bytes());
}

#[test]
fn records_that_wrap_behind_padding_keep_flowing_whatever_the_acknowledgement_order() {
    let t = TestDomain::new("wrap");
    // Every other lap ends in a padding record, which the head passes as soon as the record
    // before it is acknowledged.
    let q = five_cell_queue(&t);
    let tx = q.sender();
    let mut rx = q.receiver().unwrap();
    for round in 0..200u32 {
        let a = format!("{round:>90}");
        tx.send_timeout(a.as_bytes(), Duration::from_secs(5))
            .unwrap();
        let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(m.payload(), a.as_bytes(), "round {round}");
        // The sender fills the lane while the receiver still holds its message.
        tx.send_timeout(a.as_bytes(), Duration::from_secs(5))
            .unwrap();
        drop(m);
        let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(m.payload(), a.as_bytes(), "round {round}");
    }
    assert_eq!(q.status().received, 400);
}

/// `open`, `ls` and `gc` look whether a queue with a retention expired by taking its owner lock
/// for an instant; a `receiver()` at that instant waits for them instead of answering `Busy`.
#[test]
fn looking_whether_a_queue_expired_never_makes_receiver_answer_busy() {
    let t = TestDomain::new("probe-busy");
    let attrs = Attributes {
        retention: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Queue::open(&t.domain, "q").unwrap();
            }
        });
        let busy = (0..2000).find_map(|i| q.receiver().err().map(|e| format!("attempt {i}: {e}")));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy
    });
    assert_eq!(busy, None);
}

/// `gc` running in a loop beside `create` never takes a segment being made for a dead
/// creator's (found in review: a named temporary locked just after it was created could be
/// unlinked in between, and `create` then failed with "No such file or directory").
#[test]
fn gc_running_beside_creates_never_breaks_one() {
    let t = TestDomain::new("gc-race");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (failures, removed) = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut removed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                removed.extend(Queue::gc(&t.domain).unwrap_or_default());
            }
            removed
        });
        let mut failures = Vec::new();
        for i in 0..3000 {
            let name = format!("q{i}");
            match Queue::create(&t.domain, &name, &Attributes::default()) {
                Ok(q) => {
                    drop(q);
                    Queue::remove(&t.domain, &name).unwrap();
                }
                Err(e) => failures.push(format!("create #{i}: {e}")),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (failures, gc.join().unwrap())
    });
    assert_eq!((failures, removed), (vec![], vec![]));
}

/// A standby mark keeps a retention-0 queue when its owner closes while no standby thread
/// happens to be waiting (a standby between two timed waits), and counts the process once.
#[test]
fn a_standby_mark_keeps_a_retention_zero_queue_between_timed_waits() {
    let t = TestDomain::new("ret0-mark");
    let attrs = Attributes {
        retention: Some(Duration::ZERO),
        ..Default::default()
    };
    let q = queue(&t, attrs);
    q.sender().send(b"kept for the standby").unwrap();
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let mark = q.standby_mark().unwrap();
    assert_eq!(q.status().standbys, 1);
    // A timed wait under the mark does not count twice.
    assert!(matches!(
        q.standby(Some(Duration::from_millis(20))),
        Err(OwnError::Timeout { .. })
    ));
    assert_eq!(q.status().standbys, 1);
    drop(rx); // closes with no thread waiting: only the mark says a standby is coming
    assert!(
        !q.status().removed,
        "the queue was kept for the marked standby"
    );
    let mut rx = q.standby(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(rx.try_recv().unwrap().payload(), b"kept for the standby");
    drop(mark);
    assert_eq!(q.status().standbys, 0);
    drop(rx);
    assert!(
        q.status().removed,
        "without a mark, retention 0 removes it at close"
    );
}
