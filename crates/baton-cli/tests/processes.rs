//! Real processes: senders and owners are separate `baton` processes.

mod common;
use baton::{Attributes, OwnError, Queue};
use common::{Child, Cli, TestDomain};
use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn four_sender_processes_times_10000_messages_arrive_once_each_in_per_sender_order() {
    const SENDERS: usize = 4;
    const PER_SENDER: u64 = 10_000;
    let t = TestDomain::new("4x10k");
    // A small lane, so senders also block on a full lane and are woken across processes.
    let attrs = Attributes {
        capacity: [16 * 1024; 4],
        max_message: 64,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut rx = q.receiver().unwrap();
    let mut senders: Vec<Child> = (0..SENDERS)
        .map(|_| {
            Child::spawn(
                t.baton()
                    .args(["send", "q", "--priority", "2"])
                    .stdin(Stdio::piped()),
            )
        })
        .collect();
    for (s, child) in senders.iter_mut().enumerate() {
        let mut input = String::new();
        for i in 0..PER_SENDER {
            input.push_str(&format!("{s} {i}\n"));
        }
        let mut stdin = child.0.stdin.take().unwrap();
        std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    }
    let mut next = [0u64; SENDERS];
    let mut pids: Vec<HashSet<u32>> = vec![HashSet::new(); SENDERS];
    for _ in 0..SENDERS as u64 * PER_SENDER {
        let m = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a message within 30 s");
        let text = std::str::from_utf8(m.payload()).unwrap();
        let (s, i) = text.split_once(' ').unwrap();
        let (s, i): (usize, u64) = (s.parse().unwrap(), i.parse().unwrap());
        assert_eq!(
            i, next[s],
            "sender {s}: expected #{}, got #{i} (loss, duplicate or reorder)",
            next[s]
        );
        next[s] += 1;
        pids[s].insert(m.sender_pid());
    }
    assert_eq!(next, [PER_SENDER; SENDERS]);
    for (s, child) in senders.into_iter().enumerate() {
        let pid = child.pid();
        let out = child.wait_output(Duration::from_secs(10));
        assert!(
            out.status.success(),
            "sender {s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            pids[s],
            HashSet::from([pid]),
            "messages carry their sender's pid"
        );
    }
    assert!(rx.try_recv().is_err(), "nothing more than was sent");
    let st = q.status();
    assert_eq!((st.sent, st.received), (40_000, 40_000));
}

#[test]
fn a_second_process_trying_to_own_an_owned_queue_gets_busy() {
    let t = TestDomain::new("busy-proc");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let owner = Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "30"])
            .stdout(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        == Some(owner.pid())));
    match q.receiver() {
        Err(OwnError::Busy { pid, .. }) => assert_eq!(pid, Some(owner.pid())),
        other => panic!("expected Busy, got {other:?}"),
    }
    let out = t
        .baton()
        .args(["recv", "q", "--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("busy") && err.contains(&owner.pid().to_string()),
        "{err}"
    );
}

#[test]
fn a_receiver_blocked_in_another_process_is_woken_by_a_send() {
    let t = TestDomain::new("xwake");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let rx = Child::spawn(
        t.baton()
            .args(["recv", "q", "-n", "2", "--timeout", "30"])
            .stdout(Stdio::piped()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        == Some(rx.pid())));
    // Let it pass its spin window and go to sleep on the futex.
    std::thread::sleep(Duration::from_millis(50));
    q.sender().send(b"low").unwrap();
    let out = t
        .baton()
        .args(["send", "q", "--priority", "0", "high"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = rx.wait_output(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(
        lines == "low\nhigh\n" || lines == "high\nlow\n",
        "{lines:?}"
    );
}

#[test]
fn messages_sent_by_processes_come_out_by_priority() {
    let t = TestDomain::new("prio-proc");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    for (p, text) in [
        ("3", "p3"),
        ("1", "p1"),
        ("0", "p0"),
        ("2", "p2"),
        ("0", "p0-again"),
    ] {
        let out = t
            .baton()
            .args(["send", "q", "--priority", p, text])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = t
        .baton()
        .args(["recv", "q", "-n", "5", "--timeout", "10"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "p0\np0-again\np1\np2\np3\n"
    );
    drop(q);
}

#[test]
fn an_owner_that_exits_frees_the_queue() {
    let t = TestDomain::new("exit-owner");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let child = Child::spawn(
        t.baton()
            .args(["recv", "q", "-n", "1", "--timeout", "30"])
            .stdout(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        == Some(child.pid())));
    q.sender().send(b"bye").unwrap();
    assert!(child.wait_output(Duration::from_secs(10)).status.success());
    let rx = q
        .receiver()
        .expect("the queue is free once its owner has exited");
    assert_eq!(rx.epoch(), 2);
}

#[test]
fn an_owner_killed_with_sigkill_frees_the_queue_and_its_messages_stay() {
    let t = TestDomain::new("kill-owner");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let child = Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "60"])
            .stdout(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || q
        .status()
        .owner_pid
        == Some(child.pid())));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_output(Duration::from_secs(10));
    assert!(!out.status.success());
    q.sender().send(b"still here").unwrap();
    let mut rx = q
        .receiver()
        .expect("the kernel released the dead owner's robust lock");
    assert!(rx.took_over());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap().payload(),
        b"still here"
    );
    let st = q.status();
    assert_eq!(
        (st.takeovers, st.epoch, st.owner_pid),
        (1, 2, Some(std::process::id()))
    );
}
