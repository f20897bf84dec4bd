//! baton under tokio: every message once through receives, sends and requests that a
//! `select!` keeps cancelling; sends that wait for space; takeover after the owner (a tokio
//! program) is killed.

#[path = "../../baton/tests/common/mod.rs"]
mod common;
use baton::{Attributes, Queue, RecvError, RequestError};
use baton_tokio::{AsyncConsumer, AsyncReceiver, AsyncSender};
use common::TestDomain;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A receive cancelled by a timer thousands of times loses and duplicates nothing.
#[test]
fn recv_cancelled_by_select_loses_and_duplicates_nothing() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-recv-cancel");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    assert!(
        matches!(
            AsyncReceiver::new(q.receiver().unwrap()),
            Err(RecvError::NoHelper(std::io::ErrorKind::Unsupported))
        ),
        "outside a runtime: an error, not a panic"
    );
    let rt = rt();
    let mut rx = {
        let _in = rt.enter();
        AsyncReceiver::new(q.receiver().unwrap()).unwrap()
    };
    let tx = q.sender();
    let sender = std::thread::spawn(move || {
        for i in 0..20_000u32 {
            tx.send(&i.to_le_bytes()).unwrap();
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let (next, cancelled) = rt.block_on(async {
        let mut next = 0u32;
        let mut cancelled = 0u32;
        while next < 20_000 {
            tokio::select! {
                m = rx.recv() => {
                    assert_eq!(m.unwrap().payload(), next.to_le_bytes(), "in order, once");
                    next += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(100)) => cancelled += 1,
            }
        }
        (next, cancelled)
    });
    sender.join().unwrap();
    assert_eq!(next, 20_000);
    assert!(cancelled > 0, "the timer won some races");
    assert!(matches!(rx.get_mut().try_recv(), Err(RecvError::Empty)));
}

/// Sends into a lane of four cells' worth wait for space (a slow receiver thread frees it);
/// cancelled sends send nothing; what was sent arrives once, in order.
#[test]
fn send_waits_for_space_and_a_cancelled_send_sends_nothing() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-send");
    let attrs = Attributes {
        capacity: [4096; 4],
        max_message: 1024,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut rx = q.receiver().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(m) => {
                    let n = u32::from_le_bytes(m.payload()[..4].try_into().unwrap());
                    got.push(n);
                    if got.len() % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(3));
                    }
                }
                Err(RecvError::Timeout) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    let (sent, cancelled) = rt().block_on(async {
        let mut tx = AsyncSender::to(&q);
        let mut sent = Vec::new();
        let mut cancelled = 0;
        let mut i = 0u32;
        while sent.len() < 2000 {
            let mut msg = vec![0u8; 900];
            msg[..4].copy_from_slice(&i.to_le_bytes());
            tokio::select! {
                r = tx.send(&msg) => { r.unwrap(); sent.push(i); }
                _ = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
            }
            i += 1;
        }
        (sent, cancelled)
    });
    let got = receiver.join().unwrap();
    assert_eq!(got, sent, "exactly the sends that returned Ok, in order");
    assert!(cancelled > 0, "some sends were cancelled while they waited");
}

/// Requests answered by a server thread; requests cancelled by a timeout give their reply box
/// back (none stays in use).
#[test]
fn requests_are_answered_and_cancelled_ones_give_their_box_back() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-request");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let server = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut rx = q.receiver().unwrap();
            let mut n = 0;
            loop {
                match rx.recv_timeout(Duration::from_secs(2)) {
                    Ok(m) => {
                        n += 1;
                        if m.payload().starts_with(b"slow") {
                            std::thread::sleep(Duration::from_millis(30));
                        }
                        let mut answer = b"re: ".to_vec();
                        answer.extend_from_slice(m.payload());
                        let _ = m.reply(&answer); // a late one is refused
                    }
                    Err(RecvError::Timeout) => return n,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    rt().block_on(async {
        let mut tx = AsyncSender::to(&q);
        for i in 0..200 {
            let ask = format!("q{i}");
            let reply = tx.request(ask.as_bytes()).await.unwrap();
            assert_eq!(reply.payload(), format!("re: q{i}").as_bytes());
        }
        for _ in 0..5 {
            let r = tokio::time::timeout(Duration::from_millis(5), tx.request(b"slow")).await;
            assert!(r.is_err(), "timed out: the future was dropped");
        }
    });
    assert_eq!(server.join().unwrap(), 205);
    let st = q.status();
    assert_eq!(st.reply_boxes_in_use, 0, "every box given back");
    assert_eq!(
        st.replies_dropped, 5,
        "the late replies were refused and counted"
    );
}

#[test]
fn two_async_consumers_share_a_queue() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-consumers");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let total = rt().block_on(async {
        let mut a = AsyncConsumer::new(q.consumer().unwrap()).unwrap();
        let mut b = AsyncConsumer::new(q.consumer().unwrap()).unwrap();
        let tx = q.sender();
        let sender = tokio::task::spawn_blocking(move || {
            for i in 0..1000u32 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
        });
        let mut seen = vec![0u8; 1000];
        let mut n = 0;
        while n < 1000 {
            let m = tokio::select! { m = a.recv() => m, m = b.recv() => m };
            let i = u32::from_le_bytes(m.unwrap().payload().try_into().unwrap());
            seen[i as usize] += 1;
            n += 1;
        }
        sender.await.unwrap();
        assert!(seen.iter().all(|c| *c == 1));
        n
    });
    assert_eq!(total, 1000);
}

/// A tokio program owns the queue, takes a message without finishing it, and is killed; the
/// next owner (a tokio program here, its standby wait on a blocking thread) gets it again,
/// flagged, and everything after it.
#[test]
fn after_a_tokio_owner_is_killed_the_next_tokio_owner_gets_everything() {
    let _running = side_by_side();
    if let Ok(d) = std::env::var("BATON_TOKIO_OWNER") {
        let domain = baton::Domain::new(&d).unwrap();
        let q = Queue::open(&domain, "q").unwrap();
        rt().block_on(async {
            let mut rx = AsyncReceiver::new(q.receiver().unwrap()).unwrap();
            let m = rx.recv().await.unwrap();
            std::mem::forget(m); // taken, never acknowledged
            std::future::pending::<()>().await;
        });
        return;
    }
    let t = TestDomain::new("tk-takeover");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let owner = common::Child::spawn(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "after_a_tokio_owner_is_killed_the_next_tokio_owner_gets_everything",
            ])
            .env("BATON_TOKIO_OWNER", t.name()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        .is_some()));
    q.sender().send(b"0").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || {
        q.status().lanes[3].unacknowledged == 1
    }));
    let got = rt().block_on(async {
        let standby = {
            let q = q.clone();
            tokio::task::spawn_blocking(move || q.standby(Some(Duration::from_secs(10))))
        };
        q.sender().send(b"1").unwrap();
        drop(owner); // SIGKILL, by pid
        let mut rx = AsyncReceiver::new(standby.await.unwrap().unwrap()).unwrap();
        q.sender().send(b"2").unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("in time")
                .unwrap();
            got.push((m.payload().to_vec(), m.redelivered()));
        }
        got
    });
    assert_eq!(
        got,
        [
            (b"0".to_vec(), true),
            (b"1".to_vec(), false),
            (b"2".to_vec(), false)
        ]
    );
}

#[test]
fn a_request_to_a_removed_queue_says_so() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-removed");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let r = rt().block_on(async {
        let mut tx = AsyncSender::to(&q);
        let fut = tx.request(b"anyone?");
        let remover = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Queue::remove(&t.domain, "svc").unwrap();
            std::future::pending::<()>().await
        };
        tokio::select! { r = fut => r, _ = remover => unreachable!() }
    });
    assert!(matches!(r, Err(RequestError::Removed)), "{r:?}");
}

/// In a runtime built without I/O, wrapping is an error, not tokio's panic (review).
#[test]
fn a_runtime_without_io_is_an_error_not_a_panic() {
    let _running = side_by_side();
    let t = TestDomain::new("tk-noio");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _in = rt.enter();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        AsyncReceiver::new(q.receiver().unwrap())
    }));
    assert!(
        matches!(
            r,
            Ok(Err(RecvError::NoHelper(std::io::ErrorKind::Unsupported)))
        ),
        "{r:?}"
    );
}

/// Tests that measure this process's CPU time or its threads' wake-ups run alone; the others
/// run side by side (a parallel test's work would count as theirs).
static PROCESS_WIDE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn side_by_side() -> std::sync::RwLockReadGuard<'static, ()> {
    PROCESS_WIDE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    PROCESS_WIDE.write().unwrap_or_else(|e| e.into_inner())
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A consumer waiting behind a message still being written costs no CPU (review: 635 ms of
/// CPU in 0.5 s, the fd spinning).
#[test]
fn an_async_consumer_waiting_behind_an_open_claim_costs_no_cpu() {
    let _running = alone();
    let t = TestDomain::new("tk-open-claim");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let rt = rt();
    let mut c = {
        let _in = rt.enter();
        AsyncConsumer::new(q.consumer().unwrap()).unwrap()
    };
    let tx = q.sender();
    let loan = tx.loan(8, 3).unwrap();
    q.sender().send(b"behind").unwrap();
    let before = cpu_time();
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_millis(500), c.recv()).await });
    let used = cpu_time() - before;
    assert!(r.is_err(), "nothing can be taken past the claim");
    drop(loan);
    assert!(
        used < Duration::from_millis(100),
        "{used:?} of CPU in 0.5 s of waiting"
    );
}

/// The voluntary context switches of each fd helper thread of this process, by thread id.
fn helper_switches() -> std::collections::BTreeMap<u32, u64> {
    let mut by_thread = std::collections::BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            != "baton-ready"
        {
            continue;
        }
        for l in std::fs::read_to_string(p.join("status"))
            .unwrap_or_default()
            .lines()
        {
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                let tid = e.file_name().to_str().unwrap().parse().unwrap();
                by_thread.insert(tid, v.trim().parse::<u64>().unwrap());
            }
        }
    }
    by_thread
}

/// The wake-ups of helper threads between two readings (a helper that ended in between, of
/// an earlier test, counts for nothing).
fn wake_ups(
    before: &std::collections::BTreeMap<u32, u64>,
    after: &std::collections::BTreeMap<u32, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0))
        .sum()
}

/// Once its lane was full once (its space fd made), an async sender on a lane that is not
/// full any more costs the space fd's thread no wake-ups per message (review: it armed before
/// every try, and the receiver woke the thread at every head move).
#[test]
fn an_async_sender_on_a_lane_not_full_wakes_nobody() {
    let _running = alone();
    let t = TestDomain::new("tk-space-quiet");
    let attrs = Attributes {
        capacity: [4096; 4],
        max_message: 1024,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut rx = q.receiver().unwrap();
    rt().block_on(async {
        let mut tx = AsyncSender::to(&q);
        // Fill the lane, then one more send waits until a receive frees space.
        while q.sender().try_send(&[0u8; 1000][..]).is_ok() {}
        let q2 = q.clone();
        let drainer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let _ = &q2;
            while rx.try_recv().is_ok() {}
            rx
        });
        tx.send(&[1u8; 1000]).await.unwrap();
        let mut rx = drainer.join().unwrap();
        while rx.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(50));
        let before = helper_switches();
        for i in 0..2000u32 {
            tx.send(&i.to_le_bytes()).await.unwrap();
            drop(rx.try_recv().unwrap());
        }
        let woken = wake_ups(&before, &helper_switches());
        assert!(
            woken < 20,
            "{woken} wake-ups of the space fd's thread for 2000 messages on a lane not full"
        );
    });
}
