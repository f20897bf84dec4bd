//! `Receiver::try_recv_batch`: many messages under one lock and one head move, with the same
//! order, acknowledgement and redelivery as one `recv` at a time.

mod common;
use baton::{Attributes, Queue};
use common::TestDomain;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

fn sent(q: &Queue, n: u32) {
    for i in 0..n {
        let p = (i % 4) as u8; // every priority
        q.sender()
            .with_priority(p)
            .unwrap()
            .send(&i.to_le_bytes())
            .unwrap();
    }
}

fn number(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload.try_into().unwrap())
}

/// What `recv` one at a time would give: highest priority first, in order within each.
fn one_at_a_time(t: &TestDomain, n: u32) -> Vec<u32> {
    let q = Queue::create(&t.domain, "reference", &Attributes::default()).unwrap();
    sent(&q, n);
    let mut rx = q.receiver().unwrap();
    let order = (0..n)
        .map(|_| number(rx.recv().unwrap().payload()))
        .collect();
    drop(rx);
    Queue::remove(&t.domain, "reference").unwrap();
    order
}

#[test]
fn a_batch_takes_messages_in_recv_order_and_acknowledges_them_all() {
    let t = TestDomain::new("batch-order");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    sent(&q, 100);
    let mut rx = q.receiver().unwrap();
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let n = rx
            .try_recv_batch(7, |p, m| {
                assert!(!m.redelivered);
                got.push(number(p));
            })
            .unwrap();
        if n == 0 {
            break;
        }
        sizes.push(n);
    }
    assert_eq!(got, one_at_a_time(&t, 100));
    assert!(sizes.iter().all(|&n| n <= 7) && sizes[0] == 7);
    let st = q.status();
    assert!(st.lanes.iter().all(|l| l.messages == 0), "{st:?}");
    assert_eq!(st.redelivered, 0);
    // The cells are free: a full lane's worth fits again.
    drop(rx);
    let again = Queue::open(&t.domain, "q").unwrap();
    assert_eq!(
        again
            .receiver()
            .unwrap()
            .try_recv_batch(10, |_, _| {})
            .unwrap(),
        0
    );
}

#[test]
fn a_panic_in_a_batch_acknowledges_what_was_finished_and_gives_the_rest_back() {
    let t = TestDomain::new("batch-panic");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    sent(&q, 10);
    let order = one_at_a_time(&t, 10);
    let mut rx = q.receiver().unwrap();
    let mut seen = 0;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.try_recv_batch(10, |_, _| {
            seen += 1;
            if seen == 4 {
                panic!("the fourth message");
            }
        })
    }));
    assert!(panicked.is_err());
    // Three finished and acknowledged; the fourth (which panicked) comes again, flagged; the
    // six it did not reach come as they were, unflagged, in order.
    let mut rest = Vec::new();
    while let Ok(m) = rx.try_recv() {
        rest.push((number(m.payload()), m.redelivered()));
    }
    let want: Vec<_> = order[3..]
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i == 0))
        .collect();
    assert_eq!(rest, want);
    assert_eq!(q.status().redelivered, 1);
}

#[test]
fn a_batch_of_at_most_zero_takes_nothing() {
    let t = TestDomain::new("batch-zero");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"keep me").unwrap();
    let mut rx = q.receiver().unwrap();
    let mut calls = 0;
    let n = rx.try_recv_batch(0, |_, _| calls += 1).unwrap();
    assert_eq!((n, calls), (0, 0), "max 0 took a message");
    assert_eq!(rx.try_recv().unwrap().payload(), b"keep me");
}

/// Messages whose `AsRef` panics on its n-th call.
struct PanicsOnCall {
    calls: std::cell::Cell<u32>,
    panic_at: u32,
}

impl AsRef<[u8]> for PanicsOnCall {
    fn as_ref(&self) -> &[u8] {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if n == self.panic_at {
            panic!("as_ref failed");
        }
        b"payload"
    }
}

/// The caller's code never runs between a run's claim and its commit: a panic in its
/// `AsRef` leaves no claim under this live process to hold the lane. (Found in review.)
#[test]
fn a_panicking_as_ref_in_send_batch_does_not_wedge_the_lane() {
    let t = TestDomain::new("batch-asref-panic");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    for panic_at in 1..=6 {
        let msgs = [PanicsOnCall {
            calls: std::cell::Cell::new(0),
            panic_at,
        }];
        let tx = q.sender();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.send_batch(&msgs)));
        q.sender().send(b"after").unwrap();
        loop {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(m) if m.payload() == b"payload" => continue,
                Ok(m) => {
                    assert_eq!(m.payload(), b"after");
                    break;
                }
                Err(e) => panic!("panic at call {panic_at}: the lane is wedged: {e:?}"),
            }
        }
    }
}

/// Messages whose `AsRef` gives 90 bytes for its first three calls, then 10.
struct Shrinks {
    calls: std::cell::Cell<u32>,
}

impl AsRef<[u8]> for Shrinks {
    fn as_ref(&self) -> &[u8] {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if n <= 3 {
            &[1u8; 90]
        } else {
            &[1u8; 10]
        }
    }
}

/// An `AsRef` whose length changes between calls cannot make a run's records disagree with
/// its claim: every message is read once. (Found in review.)
#[test]
fn an_inconsistent_as_ref_in_send_batch_cannot_corrupt_the_lane() {
    let t = TestDomain::new("batch-asref-shrink");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let msgs = [
        Shrinks {
            calls: std::cell::Cell::new(0),
        },
        Shrinks {
            calls: std::cell::Cell::new(3),
        },
    ];
    q.sender().send_batch(&msgs).unwrap();
    let mut rx = q.receiver().unwrap();
    let lens: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok().map(|m| m.len())).collect();
    assert_eq!(lens, vec![90, 10]);
}

/// An owner that dies in the middle of a batch: the messages of the batch it had handed out
/// come again, flagged (they may have been processed), and the rest as usual.
#[test]
fn an_owner_dying_in_a_batch_has_what_it_handed_out_delivered_again() {
    let t = TestDomain::new("batch-death");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    sent(&q, 20);
    let order = one_at_a_time(&t, 20);
    // SAFETY: the child takes the queue, and `_exit`s in the middle of a batch holding the
    // owner lock and the batch, as a crashed owner would.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            let mut rx = q.receiver().unwrap();
            let first = rx.try_recv_batch(5, |_, _| {}).unwrap();
            let mut seen = 0;
            let _ = rx.try_recv_batch(8, |_, _| {
                seen += 1;
                if seen == 3 {
                    // SAFETY: dies at once, no destructor runs.
                    unsafe { libc::_exit(first as i32) }
                }
            });
            // SAFETY: as above; not reached.
            unsafe { libc::_exit(99) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(5));
    let mut rx = q.receiver().unwrap();
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push((number(m.payload()), m.redelivered()));
    }
    let want: Vec<_> = order[5..]
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i < 3))
        .collect();
    // Redeliveries come first (all lanes), then the rest in priority order: compare as sets
    // of flagged and unflagged, and the unflagged in order.
    let flagged = |v: &[(u32, bool)], f: bool| {
        let mut s: Vec<u32> = v.iter().filter(|x| x.1 == f).map(|x| x.0).collect();
        if f {
            s.sort_unstable();
        }
        s
    };
    assert_eq!(flagged(&got, true), flagged(&want, true));
    assert_eq!(flagged(&got, false), flagged(&want, false));
}

/// Senders killed (SIGKILL) at random points while they send runs: every run is delivered
/// whole or not at all, in order, and a killed sender leaves at most one claim, skipped and
/// counted.
#[test]
fn a_sender_killed_while_sending_runs_leaves_each_run_whole_or_absent() {
    let t = TestDomain::new("batch-kills");
    let attrs = Attributes {
        capacity: [64 * 1024, 64 * 1024, 64 * 1024, 4 << 20],
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut rx = q.receiver().unwrap();
    for kill in 0..20u32 {
        // SAFETY: the child only sends through baton's API until it is killed.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let q = Queue::open(&t.domain, "q").unwrap();
                let tx = q.sender();
                for run in 0u32.. {
                    let msgs: Vec<[u8; 12]> = (0..8u32)
                        .map(|i| {
                            let mut m = [0u8; 12];
                            m[..4].copy_from_slice(&kill.to_le_bytes());
                            m[4..8].copy_from_slice(&run.to_le_bytes());
                            m[8..].copy_from_slice(&i.to_le_bytes());
                            m
                        })
                        .collect();
                    tx.send_batch(&msgs).unwrap();
                }
                // SAFETY: not reached; no destructor runs.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        };
        std::thread::sleep(Duration::from_micros(500 + 997 * u64::from(kill % 13)));
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = nix::sys::wait::waitpid(child, None);
        let mut next = (0u32, 0u32); // run, index
        while let Ok(m) = rx.recv_timeout(Duration::from_millis(200)) {
            let p = m.payload();
            let word = |i: usize| u32::from_le_bytes(p[i * 4..i * 4 + 4].try_into().unwrap());
            assert_eq!(word(0), kill, "a message of an earlier sender");
            assert_eq!(
                (word(1), word(2)),
                next,
                "kill {kill}: out of order or a run cut"
            );
            next = if word(2) == 7 {
                (word(1) + 1, 0)
            } else {
                (word(1), word(2) + 1)
            };
        }
        assert_eq!(next.1, 0, "kill {kill}: run {} delivered in part", next.0);
        assert!(q.status().abandoned <= u64::from(kill) + 1);
    }
    let st = q.status();
    assert_eq!(st.lanes[3].in_flight, 0);
    eprintln!(
        "20 kills: {} runs cut by a kill, skipped whole",
        st.abandoned
    );
}

/// `try_send_batch` sends as many as fit now, in order, and says how many: a full lane stops
/// it (0 when nothing fits), the rest goes later, and every message arrives once, in order.
/// A message too big sends nothing; an empty batch sends nothing.
#[test]
fn try_send_batch_sends_what_fits_and_says_how_many() {
    let t = TestDomain::new("try-batch");
    let attrs = Attributes {
        capacity: [1024; 4],
        max_message: 200,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    // Mixed sizes: one, two and three cells (32 bytes of header each).
    let all: Vec<Vec<u8>> = (0..40u32)
        .map(|i| {
            let mut m = vec![i as u8; [4, 60, 130][i as usize % 3]];
            m[..4].copy_from_slice(&i.to_le_bytes());
            m
        })
        .collect();
    let mut rx = q.receiver().unwrap();
    let (mut sent, mut got) = (0usize, Vec::new());
    let (mut rounds, mut probes) = (0, 0u64);
    while got.len() < all.len() {
        rounds += 1;
        assert!(
            rounds < 1000,
            "no progress: sent {sent}, received {}",
            got.len()
        );
        let n = tx.try_send_batch(&all[sent..]).unwrap();
        sent += n;
        assert!(sent <= all.len());
        if sent < all.len() {
            // The lane (16 cells) had no room for the next one: it does not fit now.
            probes += 1;
            assert!(matches!(
                tx.try_send(&all[sent][..]),
                Err(baton::TrySendError::Full(_))
            ));
        }
        // Take a few, so that the next round finds some room.
        for _ in 0..3 {
            match rx.try_recv() {
                Ok(m) => got.push(u32::from_le_bytes(m.payload()[..4].try_into().unwrap())),
                Err(_) => break,
            }
        }
    }
    assert_eq!(got, (0..40).collect::<Vec<u32>>());
    assert!(rounds > 3, "the lane was never full: {rounds} rounds");
    assert_eq!(
        q.status().rejected_full,
        probes,
        "only try_send's rejections count"
    );

    let too_big = [vec![1u8; 10], vec![2u8; 201]];
    assert!(matches!(
        tx.try_send_batch(&too_big),
        Err(baton::SendError::TooBig { len: 201, .. })
    ));
    assert_eq!(tx.try_send_batch::<&[u8]>(&[]).unwrap(), 0);
    assert!(matches!(rx.try_recv(), Err(baton::RecvError::Empty)));
}

/// In a shared queue, `try_send_batch` fills the lane, finds it full, and fills what the
/// consumers' acknowledgements freed. (When the consumer that should have swept died holding
/// the sweep lock, it sweeps itself: `consumer_kills`, a dead sweeper's lane.)
#[test]
fn try_send_batch_on_a_shared_queue_sends_into_what_consumers_freed() {
    let t = TestDomain::new("try-batch-shared");
    let attrs = Attributes {
        capacity: [512; 4],
        max_message: 64,
        shared: true,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let tx = q.sender();
    let msgs: Vec<[u8; 4]> = (0..8u32).map(|i| i.to_le_bytes()).collect();
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 8); // 8 cells: full
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 0);
    let mut c = q.consumer().unwrap();
    for i in 0..8u32 {
        let m = c.try_recv().unwrap();
        assert_eq!(m.payload(), i.to_le_bytes());
    } // each acknowledged as it is dropped
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 8);
}
