//! Capacity thresholds (`Queue::set_capacity_thresholds`): each crossing told once, as an
//! event, under concurrent senders and in shared queues; no storm at a level.

mod common;
use baton::{AttributeError, Attributes, Domain, EventKind, Events, Followed, Queue};
use common::TestDomain;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The threshold events that come within `quiet` of each other, as (reached?, priority).
fn crossings(events: &mut Events, quiet: Duration) -> Vec<(bool, u8)> {
    let mut out = Vec::new();
    while let Some(f) = events.next_timeout(quiet).unwrap() {
        match f {
            Followed::Event(e) => match e.kind {
                EventKind::ThresholdReached { priority, .. } => out.push((true, priority)),
                EventKind::ThresholdAvailable { priority, .. } => out.push((false, priority)),
                _ => {}
            },
            Followed::Missed(n) => panic!("missed {n}"),
        }
    }
    out
}

/// 64-byte payloads take 128 bytes of a lane each (two cells, with the header).
fn send(q: &Queue, n: usize) {
    let tx = q.sender();
    for _ in 0..n {
        tx.send(&[0u8; 64]).unwrap();
    }
}

#[test]
fn each_crossing_is_told_once_and_hovering_between_the_levels_tells_nothing() {
    let t = TestDomain::new("th-once");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.set_capacity_thresholds(3, 8192, 4096).unwrap();
    assert_eq!(q.capacity_thresholds(3), Some((8192, 4096)));
    let mut e = Events::follow(&t.domain).unwrap();
    let mut rx = q.receiver().unwrap();
    send(&q, 63); // 8064 bytes: below
    assert_eq!(crossings(&mut e, Duration::from_millis(50)), []);
    send(&q, 1); // 8192: reached
                 // Hover: down to 6 KiB and up to 8 KiB again, many times: nothing more.
    for _ in 0..20 {
        for _ in 0..16 {
            drop(rx.recv().unwrap());
        }
        send(&q, 16);
    }
    assert_eq!(crossings(&mut e, Duration::from_millis(50)), [(true, 3)]);
    assert!(q.status().lanes[3].above_threshold);
    for _ in 0..32 {
        drop(rx.recv().unwrap()); // 4096 bytes left: available
    }
    assert_eq!(crossings(&mut e, Duration::from_millis(50)), [(false, 3)]);
    assert!(!q.status().lanes[3].above_threshold);
    // Removed: nothing told any more.
    q.set_capacity_thresholds(3, 0, 0).unwrap();
    send(&q, 100);
    assert_eq!(crossings(&mut e, Duration::from_millis(50)), []);
}

#[test]
fn under_concurrent_senders_each_crossing_is_told_once_in_turn() {
    let t = TestDomain::new("th-concurrent");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.set_capacity_thresholds(3, 16384, 4096).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    let mut rx = q.receiver().unwrap();
    for round in 0..5 {
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || send(&q, 40)) // 4 x 40 x 128 = 20 KiB
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(
            crossings(&mut e, Duration::from_millis(50)),
            [(true, 3), (false, 3)],
            "round {round}"
        );
    }
}

#[test]
fn a_shared_queues_consumers_tell_the_way_back_down() {
    let t = TestDomain::new("th-shared");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "pool", &attrs).unwrap();
    q.set_capacity_thresholds(3, 4096, 1024).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    send(&q, 40);
    let mut c = q.consumer().unwrap();
    while c.try_recv().is_ok() {}
    assert_eq!(
        crossings(&mut e, Duration::from_millis(50)),
        [(true, 3), (false, 3)]
    );
}

#[test]
fn thresholds_that_do_not_fit_are_refused_naming_the_rule() {
    let t = TestDomain::new("th-bad");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for (p, r, a) in [(3, 100, 100), (3, 65537, 0), (4, 10, 1)] {
        let err = q.set_capacity_thresholds(p, r, a).unwrap_err();
        assert!(matches!(err, AttributeError::Threshold { .. }), "{err}");
        assert!(err.to_string().contains("available < reached <= capacity"));
    }
    assert_eq!(q.capacity_thresholds(3), Some((0, 0)));
    assert_eq!(q.capacity_thresholds(4), None);
}

/// A helper role (this test binary run again, to reach a failpoint from a fresh process).
fn role() -> bool {
    let Ok(role) = std::env::var("BATON_TH_ROLE") else {
        return false;
    };
    let domain = Domain::new(&std::env::var("BATON_TH_DOMAIN").unwrap()).unwrap();
    let q = Queue::open(&domain, "q").unwrap();
    match role.as_str() {
        // A consumer that takes all 64 messages; BATON_FAILPOINT stops it in its last ack.
        "consumer" => {
            let mut c = q.consumer().unwrap();
            for _ in 0..64 {
                drop(c.recv().unwrap());
            }
        }
        other => panic!("role {other}"),
    }
    true
}

/// In a shared queue a consumer dies between marking its last message acknowledged and its
/// sweep: the sweep another consumer makes when idle frees the cells, and tells the way back
/// down (review: the lane stayed "above" for good, empty).
#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_dying_mid_ack_does_not_leave_the_threshold_flag_above_an_empty_lane() {
    if role() {
        return;
    }
    const ME: &str =
        "a_consumer_dying_mid_ack_does_not_leave_the_threshold_flag_above_an_empty_lane";
    let t = TestDomain::new("th-consumer-dies");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    q.set_capacity_thresholds(3, 8192, 0).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    send(&q, 64);
    let mut helper = Command::new(std::env::current_exe().unwrap());
    helper
        .args([ME, "--exact", "--test-threads=1"])
        .env("BATON_TH_ROLE", "consumer")
        .env("BATON_TH_DOMAIN", t.name())
        .env("BATON_FAILPOINT", "consume.acked@64")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _ = common::Child::spawn(&mut helper).wait_output(Duration::from_secs(20));
    let mut c = q.consumer().unwrap();
    assert!(c.recv_timeout(Duration::from_millis(300)).is_err()); // idle: it sweeps
    assert_eq!(
        crossings(&mut e, Duration::from_millis(100)),
        [(true, 3), (false, 3)]
    );
    assert!(!q.status().lanes[3].above_threshold);
}
