//! The receiver's pollable descriptor (`Receiver::ready_fd`): readable exactly while something
//! waits, in `poll` and edge-triggered `epoll`, across processes, after a sender dies half way,
//! after the owner is killed, in a forked child, and when the receiver goes.

mod common;
use baton::{Attributes, Queue, RecvError};
use common::TestDomain;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

fn readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// Tests that count this process's threads or measure its memory run alone; the others run
/// side by side (a parallel test's helper thread starting or ending would skew the count).
static PROCESS_WIDE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn side_by_side() -> std::sync::RwLockReadGuard<'static, ()> {
    PROCESS_WIDE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    PROCESS_WIDE.write().unwrap_or_else(|e| e.into_inner())
}

/// The ids of this process's fd helper threads. A test running alone still sees helpers of
/// earlier tests that are ending, so tests compare sets of ids, never counts.
fn ready_threads() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let named = std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "baton-ready");
            named.then(|| e.file_name().to_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// The helper threads started since `before`, once there are `n` (a new thread names itself
/// after it starts), or what there are after 5 s.
fn started_since(before: &std::collections::BTreeSet<u32>, n: usize) -> Vec<u32> {
    let new = || -> Vec<u32> { ready_threads().difference(before).copied().collect() };
    common::eventually(Duration::from_secs(5), || new().len() >= n);
    new()
}

/// True once none of `threads` runs any more.
fn all_ended(threads: &[u32]) -> bool {
    let now = ready_threads();
    threads.iter().all(|t| !now.contains(t))
}

#[test]
fn the_fd_is_readable_while_messages_wait_and_quiet_once_a_receive_finds_none() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-level");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    assert_eq!(
        rx.ready_fd().unwrap().as_raw_fd(),
        fd,
        "one fd per receiver"
    );
    assert!(!readable(fd, 50), "nothing waits");
    for i in 0..3u8 {
        q.sender().send(&[i]).unwrap();
    }
    assert!(readable(fd, 5000));
    // Level-triggered: still readable after one of three is taken.
    assert_eq!(rx.try_recv().unwrap().payload(), [0]);
    assert!(readable(fd, 0));
    assert_eq!(rx.try_recv().unwrap().payload(), [1]);
    assert_eq!(rx.try_recv().unwrap().payload(), [2]);
    assert!(readable(fd, 0), "quiet only once a receive finds nothing");
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    assert!(!readable(fd, 50));
    q.sender()
        .with_priority(0)
        .unwrap()
        .send(b"urgent")
        .unwrap();
    assert!(readable(fd, 5000));
    assert_eq!(rx.recv().unwrap().payload(), b"urgent");
}

#[test]
fn an_edge_triggered_epoll_gets_one_edge_per_empty_to_not_empty() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-et");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    // SAFETY: plain epoll calls on descriptors we own; `ev` outlives them.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 7,
    };
    // SAFETY: registers our eventfd with our epoll; `ev` is read during the call only.
    let added = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    assert_eq!(added, 0);
    let wait = |ms| {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` has room for 4 events.
        unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, ms) }
    };
    for round in 0..20 {
        for i in 0..3u8 {
            q.sender().send(&[round, i]).unwrap();
        }
        assert_eq!(wait(5000), 1, "round {round}: an edge");
        let mut got = 0;
        loop {
            match rx.try_recv() {
                Ok(_) => got += 1,
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, 3);
        assert_eq!(wait(0), 0, "round {round}: drained, no edge left");
    }
    // SAFETY: closing our epoll descriptor.
    unsafe { libc::close(ep) };
}

/// A sender process sends 5000 messages at random moments; this process waits only in
/// `poll` on the fd and receives until empty each time: every message arrives, in order.
#[test]
fn a_poll_loop_receives_everything_a_sender_process_sends() {
    let _running = side_by_side();
    if let Ok(d) = std::env::var("BATON_FD_SENDER") {
        let domain = baton::Domain::new(&d).unwrap();
        let tx = Queue::open(&domain, "q").unwrap().sender();
        for i in 0..5000u32 {
            tx.send(&i.to_le_bytes()).unwrap();
            if i % 97 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        return;
    }
    let t = TestDomain::new("fd-procs");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    let sender = common::Child::spawn(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_poll_loop_receives_everything_a_sender_process_sends",
            ])
            .env("BATON_FD_SENDER", t.name()),
    );
    let mut next = 0u32;
    let start = Instant::now();
    while next < 5000 {
        assert!(start.elapsed() < Duration::from_secs(60), "stuck at {next}");
        if !readable(fd, 10_000) {
            panic!("not readable with {} still to come", 5000 - next);
        }
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(m.payload(), next.to_le_bytes());
                    next += 1;
                }
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let out = sender.wait_output(Duration::from_secs(20));
    assert!(out.status.success());
}

/// A sender killed between its claim and its commit (a forked child stopped half way) holds
/// the lane up; its death wakes the fd's thread, the claim is abandoned, and the message after
/// it makes the fd readable.
#[test]
fn a_sender_dying_half_way_does_not_leave_the_fd_quiet() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-dead-claim");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    let other = Queue::open(&t.domain, "q").unwrap();
    // SAFETY: the child only sends through baton and sleeps until killed.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let tx = baton::Queue::open(&t.domain, "q").unwrap().sender();
            let loan = tx.loan(5, 3).unwrap();
            std::mem::forget(loan);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .lanes[3]
        .in_flight
        == 1));
    other.sender().send(b"after").unwrap();
    assert!(!readable(fd, 200), "held up behind a live claim");
    nix::sys::signal::kill(child, nix::sys::signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    assert!(readable(fd, 5000), "the death wakes it");
    assert_eq!(rx.try_recv().unwrap().payload(), b"after");
}

/// The owner polls its fd and is killed; a standby in this process takes over and polls its
/// own fd: every message arrives, the dead owner's taken one again, flagged.
#[test]
fn after_the_owner_is_killed_the_next_owners_fd_gets_everything() {
    let _running = side_by_side();
    if let Ok(d) = std::env::var("BATON_FD_OWNER") {
        let domain = baton::Domain::new(&d).unwrap();
        let q = Queue::open(&domain, "q").unwrap();
        let mut rx = q.receiver().unwrap();
        let fd = rx.ready_fd().unwrap().as_raw_fd();
        assert!(readable(fd, 10_000));
        let m = rx.try_recv().unwrap(); // taken, never acknowledged
        println!("took {:?}", m.payload());
        std::mem::forget(m);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let t = TestDomain::new("fd-takeover");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let owner = common::Child::spawn(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "after_the_owner_is_killed_the_next_owners_fd_gets_everything",
                "--nocapture",
            ])
            .env("BATON_FD_OWNER", t.name())
            .stdout(std::process::Stdio::piped()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        .is_some()));
    q.sender().send(b"0").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .lanes[3]
        .unacknowledged
        == 1));
    q.sender().send(b"1").unwrap();
    drop(owner); // SIGKILL, by pid
    let mut rx = q.standby(Some(Duration::from_secs(10))).unwrap();
    assert!(rx.took_over());
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    q.sender().send(b"2").unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(readable(fd, 10_000), "got {got:?}");
        while let Ok(m) = rx.try_recv() {
            got.push((m.payload().to_vec(), m.redelivered()));
        }
    }
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
fn a_removed_queue_makes_the_fd_readable_and_the_receive_says_removed() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-removed");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let fd = rx.ready_fd().unwrap().as_raw_fd();
    assert!(!readable(fd, 20));
    Queue::remove(&t.domain, "q").unwrap();
    assert!(readable(fd, 5000));
    assert!(matches!(rx.try_recv(), Err(RecvError::Removed)));
}

#[test]
fn the_fds_thread_ends_with_its_receiver_and_a_forked_copy_has_none() {
    let _running = alone();
    let t = TestDomain::new("fd-threads");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let before = ready_threads();
    let mut rx = q.receiver().unwrap();
    rx.ready_fd().unwrap();
    let helper = started_since(&before, 1);
    assert_eq!(helper.len(), 1, "one helper thread for the fd");
    // SAFETY: the child only asks its copy of the receiver for an fd, then exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match rx.ready_fd() {
                Err(RecvError::ForkedCopy) => 0,
                _ => 1,
            };
            std::mem::forget(rx);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
        }
    }
    let started = Instant::now();
    drop(rx);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the thread is woken to end"
    );
    assert!(common::eventually(Duration::from_secs(5), || all_ended(
        &helper
    )));
    // The queue is free: another receiver takes it.
    let mut again = q.receiver().unwrap();
    q.sender().send(b"x").unwrap();
    assert_eq!(
        again
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .payload(),
        b"x"
    );
}

/// Two consumers of a shared queue wait in one `poll` on their two fds while a sender process
/// sends: every message is taken once, by one of them.
#[test]
fn two_consumers_polling_their_fds_take_each_message_once() {
    let _running = side_by_side();
    if let Ok(d) = std::env::var("BATON_FD_SHARED_SENDER") {
        let domain = baton::Domain::new(&d).unwrap();
        let tx = Queue::open(&domain, "q").unwrap().sender();
        for i in 0..3000u32 {
            tx.send(&i.to_le_bytes()).unwrap();
            if i % 101 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        return;
    }
    let t = TestDomain::new("fd-shared");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut cs = [q.consumer().unwrap(), q.consumer().unwrap()];
    let fds: Vec<RawFd> = cs
        .iter_mut()
        .map(|c| c.ready_fd().unwrap().as_raw_fd())
        .collect();
    let sender = common::Child::spawn(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "two_consumers_polling_their_fds_take_each_message_once",
            ])
            .env("BATON_FD_SHARED_SENDER", t.name()),
    );
    let mut seen = vec![0u8; 3000];
    let mut per = [0usize; 2];
    let mut got = 0;
    let start = Instant::now();
    while got < 3000 {
        assert!(start.elapsed() < Duration::from_secs(60), "stuck at {got}");
        let mut p: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, 10_000) };
        assert!(n > 0, "neither readable with {} to come", 3000 - got);
        for (i, pfd) in p.iter().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                match cs[i].try_recv() {
                    Ok(m) => {
                        let n = u32::from_le_bytes(m.payload().try_into().unwrap()) as usize;
                        seen[n] += 1;
                        per[i] += 1;
                        got += 1;
                    }
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    assert!(seen.iter().all(|n| *n == 1), "each once");
    assert!(sender.wait_output(Duration::from_secs(20)).status.success());
    assert_eq!(per[0] + per[1], 3000);
}

#[test]
fn a_selective_consumers_fd_is_readable_only_for_the_types_it_takes() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-select");
    let attrs = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut c = q
        .consumer()
        .unwrap()
        .with_filter(baton::TypeFilter::Exactly(7));
    let fd = c.ready_fd().unwrap().as_raw_fd();
    q.sender().with_type(3).send(b"three").unwrap();
    assert!(!readable(fd, 100), "a type it does not take");
    q.sender().with_type(7).send(b"seven").unwrap();
    assert!(readable(fd, 5000));
    assert_eq!(c.try_recv().unwrap().payload(), b"seven");
    assert!(matches!(c.try_recv(), Err(RecvError::Empty)));
    assert!(!readable(fd, 100), "only the type 3 message is left");
}

/// A sender still writing (an open loan) holds the message committed behind it: a consumer's
/// fd stays quiet, as a take would find nothing, instead of turning readable, then empty,
/// over and over (review: 22 788 false alarms in 0.5 s).
#[test]
fn a_consumers_fd_stays_quiet_behind_a_message_still_being_written() {
    let _running = side_by_side();
    for filter in [baton::TypeFilter::Any, baton::TypeFilter::Exactly(7)] {
        let t = TestDomain::new("fd-open-claim");
        let attrs = Attributes {
            shared: true,
            ..Attributes::default()
        };
        let q = Queue::create(&t.domain, "q", &attrs).unwrap();
        let mut c = q.consumer().unwrap().with_filter(filter);
        let fd = c.ready_fd().unwrap().as_raw_fd();
        let tx = q.sender();
        let loan = tx.loan(8, 3).unwrap(); // claimed, not committed
        q.sender().with_type(7).send(b"behind").unwrap();
        let start = Instant::now();
        let mut false_alarms = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            if readable(fd, 50) {
                match c.try_recv() {
                    Err(RecvError::Empty) => false_alarms += 1,
                    Ok(m) => panic!("took {:?} past an open claim", m.payload()),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert!(false_alarms < 5, "{filter:?}: {false_alarms} false alarms");
        drop(loan); // cancelled: the message behind it can be taken now
        assert!(readable(fd, 5000), "{filter:?}");
        assert_eq!(c.try_recv().unwrap().payload(), b"behind");
    }
}

fn vm_size_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Receivers dropped after their segments were truncated to nothing leave their helper threads
/// to end on their own, detached: their stacks are freed (review: forgotten handles kept 40
/// stacks of 128 KiB).
#[test]
fn helpers_left_on_truncated_segments_end_and_free_their_stacks() {
    let _running = alone();
    const N: usize = 40;
    let t = TestDomain::new("fd-trunc-leak");
    let small = Attributes {
        capacity: [4096; 4],
        max_message: 1024,
        ..Attributes::default()
    };
    let before = ready_threads();
    let mut rxs = Vec::new();
    for i in 0..N {
        let q = Queue::create(&t.domain, &format!("q{i}"), &small).unwrap();
        let mut rx = q.receiver().unwrap();
        rx.ready_fd().unwrap();
        rxs.push(rx);
    }
    let helpers = started_since(&before, N);
    assert_eq!(helpers.len(), N, "one helper thread per fd");
    for i in 0..N {
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.file(&format!("q{i}")))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    drop(rxs);
    assert!(common::eventually(Duration::from_secs(5), || all_ended(
        &helpers
    )));
    std::thread::sleep(Duration::from_millis(100));
    let v1 = vm_size_kb();
    let hs: Vec<_> = (0..N)
        .map(|_| {
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(|| std::thread::sleep(Duration::from_millis(200)))
                .unwrap()
        })
        .collect();
    let v2 = vm_size_kb();
    for h in hs {
        h.join().unwrap();
    }
    assert!(
        v2 < v1 + (N as u64 * 132) / 2,
        "VmSize grew {} kB for {N} new 128 KiB threads: the ended helpers' stacks were kept",
        v2 - v1
    );
}

/// A forked child's copy of a space fd is the parent's: arming it says so, instead of
/// spinning on the parent's readable eventfd (review).
#[test]
fn a_forked_childs_space_fd_says_forked_copy() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-space-fork");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let space = q.sender().space_fd().unwrap();
    space.arm().unwrap();
    // SAFETY: the child only arms its copy and exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match space.arm() {
                Err(baton::SendError::ForkedCopy) => 0,
                _ => 1,
            };
            std::mem::forget(space);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
        }
    }
}

/// A `PendingRequest` leaked with `mem::forget` holds its reply box only while its process
/// lives: once the process is gone, the next request reclaims the box (as for a `Delivery`).
#[test]
fn a_leaked_pending_request_holds_its_box_only_while_its_process_lives() {
    let _running = side_by_side();
    let t = TestDomain::new("fd-leak-request");
    let one = Attributes {
        reply_boxes: 1,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &one).unwrap();
    // SAFETY: the child sends a request, leaks its PendingRequest and ends.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let q = Queue::open(&t.domain, "q").unwrap();
            std::mem::forget(q.sender().send_request(b"leaked").unwrap());
            // SAFETY: ends the child at once, the request leaked.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    assert_eq!(q.status().reply_boxes_in_use, 1);
    let pending = q.sender().send_request(b"next").unwrap();
    assert_eq!(
        q.status().reply_boxes_in_use,
        1,
        "the dead child's box, reclaimed"
    );
    let mut rx = q.receiver().unwrap();
    drop(rx.recv().unwrap()); // the leaked request: its requester is gone
    rx.recv().unwrap().reply(b"answer").unwrap();
    assert_eq!(
        pending.wait(Duration::from_secs(10)).unwrap().payload(),
        b"answer"
    );
}

fn group_file(t: &TestDomain, group: &str) -> std::path::PathBuf {
    std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.group.{group}", t.name()))
}

/// A group tracker's fd: readable while a change waits to be told, from this process or
/// another, quiet once `next_change` finds none; readable for the group's removal, which the
/// next `next_change` says; its thread ends with the tracker.
#[test]
fn a_trackers_fd_is_readable_while_a_change_waits_from_any_process() {
    let _running = alone();
    use baton::{Group, GroupError, GroupPolicy, MemberChange};
    let t = TestDomain::new("fd-track");
    for q in ["a", "b"] {
        Queue::create(&t.domain, q, &Attributes::default()).unwrap();
    }
    let g = Group::create(&t.domain, "g", GroupPolicy::RoundRobin).unwrap();
    g.add("a").unwrap();
    let before = ready_threads();
    let mut tracker = g.track().unwrap();
    let fd = tracker.ready_fd().unwrap().as_raw_fd();
    let helper = started_since(&before, 1);
    assert_eq!(helper.len(), 1, "one helper thread for the tracker's fd");
    assert!(!readable(fd, 50), "no change since the tracker was made");

    g.add("b").unwrap();
    assert!(readable(fd, 5000));
    assert!(readable(fd, 0), "level-triggered: readable until told");
    let change = tracker.next_change(Some(Duration::ZERO)).unwrap().unwrap();
    let added: Vec<_> = change
        .changes_only()
        .map(|m| m.member.queue.clone())
        .collect();
    assert_eq!(added, ["b"]);
    assert!(readable(fd, 0), "quiet only once next_change finds none");
    assert!(tracker.next_change(Some(Duration::ZERO)).unwrap().is_none());
    assert!(!readable(fd, 50));

    // A change made by another process.
    // SAFETY: the child removes a member and exits without returning into the harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = Group::open(&t.domain, "g")
                .and_then(|g| g.remove_member("a"))
                .is_ok();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
        }
    }
    assert!(readable(fd, 5000));
    let change = tracker.next_change(Some(Duration::ZERO)).unwrap().unwrap();
    assert!(change
        .members
        .iter()
        .any(|m| m.member.queue == "a" && m.change == MemberChange::Removed));
    assert!(tracker.next_change(Some(Duration::ZERO)).unwrap().is_none());
    assert!(!readable(fd, 50));

    // The group removed: readable, and the tracker says so.
    Group::remove(&t.domain, "g").unwrap();
    assert!(readable(fd, 5000));
    assert!(matches!(
        tracker.next_change(Some(Duration::ZERO)),
        Err(GroupError::Removed { .. })
    ));
    drop(tracker);
    assert!(common::eventually(Duration::from_secs(5), || all_ended(
        &helper
    )));
    for q in ["a", "b"] {
        Queue::remove(&t.domain, q).unwrap();
    }
}

/// A tracker's fd whose group file a peer shrinks: readable, the tracker reports the damage,
/// nobody dies of SIGBUS; a forked child's tracker makes its own fd, which works.
#[test]
fn a_trackers_fd_survives_a_shrunk_file_and_a_fork() {
    let _running = side_by_side();
    use baton::{Group, GroupError, GroupPolicy};
    let t = TestDomain::new("fd-track-edge");
    let g = Group::create(&t.domain, "g", GroupPolicy::Broadcast).unwrap();
    Queue::create(&t.domain, "a", &Attributes::default()).unwrap();
    let mut tracker = g.track().unwrap();
    tracker.ready_fd().unwrap();
    // SAFETY: the child uses its copy of the tracker, then exits without returning.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = (|| {
                let fd = tracker.ready_fd().ok()?.as_raw_fd();
                Group::open(&t.domain, "g").ok()?.add("a").ok()?;
                readable(fd, 5000).then_some(())?;
                tracker.next_change(Some(Duration::ZERO)).ok()??;
                Some(())
            })()
            .map_or(1, |()| 0);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
        }
    }
    // The parent's fd saw the child's change too.
    let fd = tracker.ready_fd().unwrap().as_raw_fd();
    assert!(readable(fd, 5000));
    assert!(tracker.next_change(Some(Duration::ZERO)).unwrap().is_some());
    assert!(tracker.next_change(Some(Duration::ZERO)).unwrap().is_none());
    assert!(!readable(fd, 50));
    std::fs::OpenOptions::new()
        .write(true)
        .open(group_file(&t, "g"))
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(
        readable(fd, 5000),
        "the thread finds the file shrunk within its slice"
    );
    assert!(matches!(
        tracker.next_change(Some(Duration::ZERO)),
        Err(GroupError::Corrupt { .. })
    ));
    drop(tracker);
    drop(g);
    let _ = Group::remove(&t.domain, "g");
    let _ = std::fs::remove_file(group_file(&t, "g"));
    Queue::remove(&t.domain, "a").unwrap();
}
