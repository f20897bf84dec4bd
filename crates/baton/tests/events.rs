//! The event log of a domain (`Events`): what happens to its queues, in order, across
//! processes, with deaths, and against a hostile log file.

mod common;
use baton::{Attributes, Domain, EventKind, Events, Followed, OpenError, Queue};
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

/// Every event that comes within `quiet` of the last one, as (queue, kind).
fn drain(events: &mut Events, quiet: Duration) -> Vec<(String, EventKind)> {
    let mut out = Vec::new();
    while let Some(f) = events.next_timeout(quiet).unwrap() {
        match f {
            Followed::Event(e) => out.push((e.queue, e.kind)),
            Followed::Missed(n) => panic!("missed {n}"),
        }
    }
    out
}

/// Waits for the next event (at most `LONG`).
fn next(events: &mut Events) -> (String, EventKind) {
    match events.next_timeout(LONG).unwrap() {
        Some(Followed::Event(e)) => (e.queue, e.kind),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_queue_made_owned_let_go_and_removed_is_told_in_order_to_every_follower() {
    let t = TestDomain::new("ev-order");
    let mut a = Events::follow(&t.domain).unwrap();
    let mut b = Events::follow(&t.domain).unwrap().only("q");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let _other = Queue::create(&t.domain, "other", &Attributes::default()).unwrap();
    drop(q.receiver().unwrap());
    drop(q);
    Queue::remove(&t.domain, "q").unwrap();
    let q = |k| ("q".to_string(), k);
    let want = vec![
        q(EventKind::QueueCreated),
        ("other".to_string(), EventKind::QueueCreated),
        q(EventKind::OwnerTook {
            epoch: 1,
            took_over: false,
        }),
        q(EventKind::OwnerLeft { epoch: 1 }),
        q(EventKind::QueueRemoved { expired: false }),
    ];
    assert_eq!(drain(&mut a, Duration::from_millis(50)), want);
    let only_q: Vec<_> = want.into_iter().filter(|(n, _)| n == "q").collect();
    assert_eq!(drain(&mut b, Duration::from_millis(50)), only_q);
}

#[test]
fn a_domain_nobody_follows_has_no_log_and_a_follower_starts_from_now() {
    let t = TestDomain::new("ev-none");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    assert!(
        t.leftovers().iter().all(|f| !f.ends_with(".events")),
        "{:?}",
        t.leftovers()
    );
    let mut e = Events::follow(&t.domain).unwrap();
    assert_eq!(
        e.try_next().unwrap(),
        None,
        "what happened before is not in it"
    );
    Queue::remove(&t.domain, "q").unwrap();
    assert_eq!(next(&mut e).1, EventKind::QueueRemoved { expired: false });
    Events::remove(&t.domain).unwrap();
    Events::remove(&t.domain).unwrap(); // none: fine
}

/// The last follower to go removes the log: a domain nobody follows any more costs its
/// writers a failed open again, not appends for nobody (review).
#[test]
fn a_domain_whose_followers_are_gone_has_no_log() {
    let t = TestDomain::new("ev-left");
    let a = Events::follow(&t.domain).unwrap();
    let b = Events::follow(&t.domain).unwrap();
    drop(a);
    assert!(
        t.leftovers().iter().any(|f| f.ends_with(".events")),
        "b still follows"
    );
    drop(b);
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    assert!(
        t.leftovers().iter().all(|f| !f.ends_with(".events")),
        "{:?}",
        t.leftovers()
    );
    // Followed again: a new log, from now on.
    let mut c = Events::follow(&t.domain).unwrap();
    Queue::remove(&t.domain, "q").unwrap();
    assert_eq!(next(&mut c).1, EventKind::QueueRemoved { expired: false });
}

/// A peer shrinks the log after a follower and a writer mapped it: neither dies of SIGBUS; the
/// follower gets an error, the writer skips it (review).
#[test]
fn a_log_shrunk_after_mapping_kills_neither_follower_nor_writer() {
    use nix::sys::wait::{waitpid, WaitStatus};
    let t = TestDomain::new("ev-sigbus");
    let path = std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.events", t.name()));
    let shrink = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap()
    };
    let in_child = |f: &dyn Fn()| {
        // SAFETY: the child runs `f` and exits without returning into the harness.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                f();
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => waitpid(child, None).unwrap(),
        }
    };
    let follower = in_child(&|| {
        let mut e = Events::follow(&t.domain).unwrap();
        shrink();
        assert!(matches!(e.try_next(), Err(OpenError::Corrupt { .. })));
        std::mem::forget(e);
    });
    let _ = std::fs::remove_file(&path);
    let writer = in_child(&|| {
        let e = Events::follow(&t.domain).unwrap();
        Queue::create(&t.domain, "a", &Attributes::default()).unwrap(); // maps the log
        shrink();
        Queue::create(&t.domain, "b", &Attributes::default()).unwrap();
        std::mem::forget(e);
    });
    assert!(matches!(follower, WaitStatus::Exited(_, 0)), "{follower:?}");
    assert!(matches!(writer, WaitStatus::Exited(_, 0)), "{writer:?}");
}

#[test]
fn a_takeover_from_a_killed_owner_is_told_as_such() {
    let t = TestDomain::new("ev-takeover");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    // SAFETY: the child takes the queue and waits to be killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            let _rx = q.receiver().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(
        next(&mut e).1,
        EventKind::OwnerTook {
            epoch: 1,
            took_over: false
        }
    );
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    let rx = q.standby(Some(LONG)).unwrap();
    assert_eq!(
        next(&mut e).1,
        EventKind::OwnerTook {
            epoch: 2,
            took_over: true
        }
    );
    drop(rx);
    assert_eq!(next(&mut e).1, EventKind::OwnerLeft { epoch: 2 });
}

#[test]
fn consumers_joining_leaving_and_dying_are_told() {
    let t = TestDomain::new("ev-consumers");
    let shared = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "pool", &shared).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    let c1 = q.consumer().unwrap();
    let c2 = q.consumer().unwrap();
    drop(c1);
    assert_eq!(next(&mut e).1, EventKind::ConsumerJoined { open: 1 });
    assert_eq!(next(&mut e).1, EventKind::ConsumerJoined { open: 2 });
    assert_eq!(
        next(&mut e).1,
        EventKind::ConsumerLeft {
            open: 1,
            died: false
        }
    );
    q.sender().send(b"work").unwrap();
    // SAFETY: the child opens a consumer, takes the message and waits to be killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "pool").unwrap();
            let mut c = q.consumer().unwrap();
            std::mem::forget(c.recv().unwrap());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(next(&mut e).1, EventKind::ConsumerJoined { open: 1 });
    common::eventually(LONG, || q.status().lanes[3].unacknowledged == 1);
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    // The other consumer finds it dead (its message comes back) and says so.
    let mut c2 = c2;
    let m = c2.recv_timeout(LONG).unwrap();
    assert!(m.redelivered());
    assert_eq!(
        next(&mut e).1,
        EventKind::ConsumerLeft {
            open: 0,
            died: true
        }
    );
}

#[test]
fn a_queue_removed_for_its_retention_is_told_as_expired() {
    let t = TestDomain::new("ev-retention");
    let attrs = Attributes {
        retention: Some(Duration::ZERO),
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "brief", &attrs).unwrap();
    let mut e = Events::follow(&t.domain).unwrap();
    drop(q.receiver().unwrap()); // closed with no standby: removed at once
    let got = drain(&mut e, Duration::from_millis(100));
    assert!(
        got.contains(&(
            "brief".to_string(),
            EventKind::QueueRemoved { expired: true }
        )),
        "{got:?}"
    );
}

#[test]
fn a_follower_more_than_the_log_behind_is_told_how_many_it_missed() {
    let t = TestDomain::new("ev-missed");
    let mut e = Events::follow(&t.domain).unwrap();
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for _ in 0..600 {
        drop(q.receiver().unwrap()); // two events each
    }
    match e.try_next().unwrap() {
        Some(Followed::Missed(n)) => assert_eq!(n, 1201 - 1024),
        other => panic!("{other:?}"),
    }
    let mut rest = 0;
    while let Some(f) = e.try_next().unwrap() {
        assert!(matches!(f, Followed::Event(_)), "{f:?}");
        rest += 1;
    }
    assert_eq!(rest, 1024);
}

#[test]
fn a_log_file_that_is_a_link_another_size_or_not_a_log_is_refused() {
    let t = TestDomain::new("ev-hostile");
    let path = std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.events", t.name()));
    std::fs::write(&path, b"not a log").unwrap();
    assert!(matches!(
        Events::follow(&t.domain),
        Err(OpenError::Corrupt { .. })
    ));
    // Writers pass it by: a queue is still made.
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    assert!(matches!(
        Events::follow(&t.domain),
        Err(OpenError::PermissionDenied { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    let kept = Events::follow(&t.domain).unwrap(); // a follower keeps the log there
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(4096).unwrap();
    assert!(matches!(
        Events::follow(&t.domain),
        Err(OpenError::Corrupt { .. })
    ));
    std::mem::forget(kept); // its log is damaged: nothing to count out of
    let _ = Domain::new("unused");
}

/// A writer that took its number and claimed its slot, then died before publishing, does not
/// hold its followers up: once a later event is out, they count it missed and go on.
#[test]
fn a_writer_dead_half_way_does_not_hold_its_followers_up() {
    use std::os::unix::fs::FileExt;
    let t = TestDomain::new("ev-dead-writer");
    let mut e = Events::follow(&t.domain).unwrap();
    let path = std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.events", t.name()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // What the dead writer did: `next` taken (at offset 128), its slot claimed (stamp 2s + 1).
    let mut w = [0u8; 8];
    f.read_exact_at(&mut w, 128).unwrap();
    let s = u64::from_ne_bytes(w);
    f.write_all_at(&(s + 1).to_ne_bytes(), 128).unwrap();
    f.write_all_at(&(2 * s + 1).to_ne_bytes(), 4096 + (s % 1024) * 256)
        .unwrap();
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(e.next_timeout(LONG).unwrap(), Some(Followed::Missed(1)));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(next(&mut e), ("q".to_string(), EventKind::QueueCreated));
}

/// Children forked while other threads write events still write theirs and go on: the
/// process's cache of event logs is not a lock a child can inherit held (a test's forked child
/// hung there once).
#[test]
fn children_forked_while_other_threads_write_events_do_not_hang() {
    let t = TestDomain::new("ev-fork");
    let _e = Events::follow(&t.domain).unwrap();
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (domain, stop) = (t.domain.clone(), stop.clone());
            std::thread::spawn(move || {
                let name = format!("w{w}");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    drop(Queue::create(&domain, &name, &Attributes::default()).unwrap());
                    Queue::remove(&domain, &name).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..40 {
        // SAFETY: the child takes and lets go of the queue (two events), then `_exit`s.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(q.receiver());
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        };
        assert_eq!(
            common::reap(child, Duration::from_secs(5)),
            Some(0),
            "a child hung"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}
