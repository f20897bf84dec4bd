//! Process groups on one node (`LocalMember`): one order for every member, self-delivery, a
//! joiner's first delivery, LEAVE and PROCDOWN in order with the messages (each once), flow
//! control by the slowest member, a dead member's cursor released, and bad input refused.
//! Members are real processes (forked), killed by pid.

mod common;
use baton::{
    LocalChange, LocalDelivery, LocalGroupConfig, LocalMember, ProcessGroupError, SendError,
};
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use std::os::fd::AsRawFd;
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn config() -> LocalGroupConfig {
    LocalGroupConfig::default()
}

/// Receives until `f` says stop (or 10 s without a delivery: a panic).
fn recv_until(
    m: &mut LocalMember,
    mut f: impl FnMut(&LocalDelivery) -> bool,
) -> Vec<LocalDelivery> {
    let mut got = Vec::new();
    loop {
        let d = m.recv(WAIT).unwrap().expect("a delivery within 10 s");
        let stop = f(&d);
        got.push(d);
        if stop {
            return got;
        }
    }
}

fn is_change(d: &LocalDelivery, pid: u32, change: LocalChange) -> bool {
    matches!(d, LocalDelivery::Membership { pid: p, change: c, .. } if *p == pid && *c == change)
}

#[test]
fn a_member_first_receives_its_own_join_then_every_message_its_own_included() {
    let t = TestDomain::new("pg-self");
    let mut m = LocalMember::join(&t.domain, "g", &config()).unwrap();
    let me = std::process::id();
    assert_eq!(
        m.recv(WAIT).unwrap(),
        Some(LocalDelivery::Membership {
            pid: me,
            change: LocalChange::Join,
            members: vec![me]
        })
    );
    for i in 0..100u32 {
        m.send(&i.to_le_bytes()).unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(
            m.recv(WAIT).unwrap(),
            Some(LocalDelivery::Message {
                pid: me,
                payload: i.to_le_bytes().to_vec()
            })
        );
    }
    assert_eq!(m.recv(Some(Duration::from_millis(20))).unwrap(), None);
    assert!(matches!(
        LocalMember::join(&t.domain, "g", &config()),
        Err(ProcessGroupError::AlreadyMember(_))
    ));
    m.leave().unwrap();
    // Joining again after leaving is a new membership.
    let mut again = LocalMember::join(&t.domain, "g", &config()).unwrap();
    assert!(is_change(
        &again.recv(WAIT).unwrap().unwrap(),
        me,
        LocalChange::Join
    ));
    drop(again);
    LocalMember::remove(&t.domain, "g").unwrap();
}

/// Three member processes join `g` with `cfg` and, once all three are in, each sends `each`
/// messages (message `n` is `n` as 4 bytes, padded to `size(n)` bytes of `n as u8`) while it
/// receives. Every member must receive all of them intact, and the same membership changes,
/// in one identical order, each sender's in its order. Returns when the members have exited.
fn three_members_agree(t: &TestDomain, cfg: LocalGroupConfig, each: u32, size: fn(u32) -> usize) {
    let message = move |n: u32| {
        let mut m = n.to_le_bytes().to_vec();
        m.resize(size(n).max(4), n as u8);
        m
    };
    let domain = t.domain.clone();
    let members: Vec<_> = (0..3)
        .map(|_| {
            let domain = domain.clone();
            common::fork_writing(move |out| {
                let mut m = LocalMember::join(&domain, "g", &cfg).unwrap();
                // Wait until all three are in, then send.
                recv_until(&mut m, |d| {
                    matches!(d, LocalDelivery::Membership { members, .. } if members.len() == 3)
                });
                writeln!(out, "ready").unwrap();
                out.flush().unwrap();
                let mut sent = 0u32;
                let mut seen = Vec::new();
                let mut from_all = 0;
                while from_all < 3 * each {
                    if sent < each && m.try_send(&message(sent)).unwrap() {
                        sent += 1;
                    }
                    if let Some(d) = m.recv(Some(Duration::ZERO)).unwrap() {
                        if let LocalDelivery::Message { pid, payload } = &d {
                            from_all += 1;
                            let n = u32::from_le_bytes(payload[..4].try_into().unwrap());
                            assert_eq!(*payload, message(n), "message {n} of {pid} changed");
                            seen.push(format!("{pid}:{n}"));
                        } else {
                            seen.push(format!("{d:?}"));
                        }
                    }
                }
                writeln!(out, "{}", seen.join(";")).unwrap();
                out.flush().unwrap();
                // Leaving now is fine: every message is in the log before this LEAVE, and
                // the others stop at their last message.
            })
        })
        .collect();
    let mut readers = Vec::new();
    let mut pids = Vec::new();
    for (pid, mut r) in members {
        assert_eq!(common::read_line(&mut r), "ready");
        pids.push(pid);
        readers.push(r);
    }
    let sequences: Vec<String> = readers.iter_mut().map(common::read_line).collect();
    for pid in &pids {
        assert_eq!(common::reap(*pid, Duration::from_secs(10)), Some(0));
    }
    let messages = sequences[0]
        .split(';')
        .filter(|e| !e.starts_with("Membership"))
        .count();
    assert_eq!(messages, 3 * each as usize);
    assert_eq!(sequences[0], sequences[1], "members 0 and 1 disagree");
    assert_eq!(sequences[0], sequences[2], "members 0 and 2 disagree");
    // Each sender's messages in its order.
    for pid in &pids {
        let mine: Vec<u32> = sequences[0]
            .split(';')
            .filter_map(|e| e.strip_prefix(&format!("{pid}:")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..each).collect::<Vec<_>>());
    }
}

/// Three member processes send 300 messages each at once: every member receives all 900 and
/// the same membership changes, in one identical order, each sender's in its order.
#[test]
fn three_member_processes_see_one_total_order() {
    let t = TestDomain::new("pg-order");
    let small = LocalGroupConfig {
        log_bytes: 64 << 10, // small: senders wait for the slowest reader many times
        max_message: 4096,
        ..LocalGroupConfig::default()
    };
    three_members_agree(&t, small, 300, |_| 4);
}

/// The log's position tags wrap many times (10-bit tags: 1,024 positions, against 2^32 in
/// production, with the same code): three member processes send messages of varying sizes
/// (so records start on shifting cells), all agree on one order with every message once, and
/// a member that joins and leaves after the wraps gets its own join first and its own messages.
#[test]
fn the_log_keeps_one_order_after_its_position_tags_wrap() {
    let t = TestDomain::new("pg-wrap");
    let narrow = LocalGroupConfig {
        log_bytes: 4 << 10, // 64 cells: senders wait for the slowest reader all along
        max_message: 2315,
        tag_bits: 10,
    };
    // The tags are the log's: a log over what 10 bits allow is refused.
    let e = LocalMember::join(
        &t.domain,
        "too-long",
        &LocalGroupConfig {
            log_bytes: 64 << 10,
            ..narrow
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("10-bit tags"), "{e}");
    // 4 to 200 bytes: one to four cells.
    three_members_agree(&t, narrow, 800, |n| 4 + (n as usize * 37) % 197);
    // Well past the wraps now (2,400 messages of one to four cells, and the memberships).
    let mut late = LocalMember::join(&t.domain, "g", &narrow).unwrap();
    let me = std::process::id();
    let first = recv_until(&mut late, |_| true);
    assert!(is_change(&first[0], me, LocalChange::Join), "{first:?}");
    for i in 0..300u32 {
        late.send(&i.to_le_bytes()).unwrap();
        assert_eq!(
            late.recv(WAIT).unwrap(),
            Some(LocalDelivery::Message {
                pid: me,
                payload: i.to_le_bytes().to_vec()
            })
        );
    }
    late.leave().unwrap();
    LocalMember::remove(&t.domain, "g").unwrap();
}

/// A joiner's first delivery is its own join with every member in it; nothing sent before
/// comes to it; its join comes to the others in order with their messages; its leave comes
/// after its last message, and a killed member's PROCDOWN after its last message, once.
#[test]
fn joins_leaves_and_deaths_come_in_order_with_the_messages_each_once() {
    let t = TestDomain::new("pg-changes");
    let mut a = LocalMember::join(&t.domain, "g", &config()).unwrap();
    let me = std::process::id();
    assert!(is_change(
        &a.recv(WAIT).unwrap().unwrap(),
        me,
        LocalChange::Join
    ));
    a.send(b"before").unwrap();
    let domain = t.domain.clone();
    let (child, mut r) = common::fork_writing(move |out| {
        let mut b = LocalMember::join(&domain, "g", &config()).unwrap();
        let first = b.recv(WAIT).unwrap().unwrap();
        writeln!(out, "{first:?}").unwrap();
        out.flush().unwrap();
        b.send(b"one").unwrap();
        b.send(b"two").unwrap();
        b.leave().unwrap();
    });
    let first = common::read_line(&mut r);
    assert_eq!(
        first,
        format!(
            "{:?}",
            LocalDelivery::Membership {
                pid: child.as_raw() as u32,
                change: LocalChange::Join,
                members: {
                    let mut v = vec![me, child.as_raw() as u32];
                    v.sort_by_key(|&p| if p == me { 0 } else { 1 }); // slot order: a joined first
                    v
                }
            }
        ),
        "the joiner's first delivery: its join, with every member"
    );
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    let b = child.as_raw() as u32;
    let got = recv_until(&mut a, |d| is_change(d, b, LocalChange::Leave));
    let want = vec![
        LocalDelivery::Message {
            pid: me,
            payload: b"before".to_vec(),
        },
        LocalDelivery::Membership {
            pid: b,
            change: LocalChange::Join,
            members: vec![me, b],
        },
        LocalDelivery::Message {
            pid: b,
            payload: b"one".to_vec(),
        },
        LocalDelivery::Message {
            pid: b,
            payload: b"two".to_vec(),
        },
        LocalDelivery::Membership {
            pid: b,
            change: LocalChange::Leave,
            members: vec![me],
        },
    ];
    assert_eq!(got, want);

    // A member killed with SIGKILL: its PROCDOWN after its last message, once.
    let domain = t.domain.clone();
    let (child, mut r) = common::fork_writing(move |out| {
        let mut c = LocalMember::join(&domain, "g", &config()).unwrap();
        c.send(b"last words").unwrap();
        writeln!(out, "sent").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    assert_eq!(common::read_line(&mut r), "sent");
    kill(child, Signal::SIGKILL).unwrap();
    let c = child.as_raw() as u32;
    let got = recv_until(&mut a, |d| is_change(d, c, LocalChange::ProcessDown));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(is_change(&got[0], c, LocalChange::Join));
    assert_eq!(
        got[1],
        LocalDelivery::Message {
            pid: c,
            payload: b"last words".to_vec()
        }
    );
    assert_eq!(common::reap(child, Duration::from_secs(1)), None);
    // Nothing more: no second PROCDOWN, whoever else looks at the dead slot.
    LocalMember::join(&t.domain, "other", &config())
        .map(drop)
        .unwrap();
    assert_eq!(a.recv(Some(Duration::from_millis(300))).unwrap(), None);
    assert_eq!(a.members(), vec![me]);
}

/// A member that does not read holds the log: a sender then gets "try again" (`try_send`),
/// or waits and times out; once the slow member reads, sends go on. A slow member that dies
/// is told as PROCDOWN and no longer holds the log.
#[test]
fn the_slowest_member_bounds_reuse_and_a_dead_ones_cursor_is_released() {
    let t = TestDomain::new("pg-flow");
    let small = LocalGroupConfig {
        log_bytes: 16 << 10,
        max_message: 4096,
        ..LocalGroupConfig::default()
    };
    let mut a = LocalMember::join(&t.domain, "g", &small).unwrap();
    let domain = t.domain.clone();
    let (child, mut r) = common::fork_writing(move |out| {
        let _slow = LocalMember::join(&domain, "g", &small).unwrap();
        writeln!(out, "joined").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs(60)); // never reads; killed
    });
    assert_eq!(common::read_line(&mut r), "joined");
    let mut sent = 0u32;
    while a.try_send(&[7u8; 1000]).unwrap() {
        sent += 1;
        // The fast member reads everything at once.
        while a.recv(Some(Duration::ZERO)).unwrap().is_some() {}
        assert!(sent < 100, "a member that does not read must hold the log");
    }
    assert!(sent >= 10, "the log holds about 16 KiB: {sent} messages");
    assert!(matches!(
        a.send_timeout(&[7u8; 1000], Duration::from_millis(200)),
        Err(ProcessGroupError::Send(SendError::Timeout))
    ));
    // The slow member dies without reading: PROCDOWN, and the log is free again.
    kill(child, Signal::SIGKILL).unwrap();
    let c = child.as_raw() as u32;
    recv_until(&mut a, |d| is_change(d, c, LocalChange::ProcessDown));
    for i in 0..100u32 {
        a.send_timeout(&i.to_le_bytes(), Duration::from_secs(5))
            .unwrap();
        let d = a.recv(WAIT).unwrap().unwrap();
        assert!(matches!(d, LocalDelivery::Message { .. }), "{d:?}");
    }
    assert_eq!(common::reap(child, Duration::from_secs(1)), None);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let t = TestDomain::new("pg-bad");
    let small = LocalGroupConfig {
        log_bytes: 64 << 10,
        max_message: 4096,
        ..LocalGroupConfig::default()
    };
    assert!(matches!(
        LocalMember::join(&t.domain, "a/b", &small),
        Err(ProcessGroupError::Open(
            baton::OpenError::InvalidName { .. }
        ))
    ));
    assert!(matches!(
        LocalMember::join(&t.domain, "", &small),
        Err(ProcessGroupError::Open(
            baton::OpenError::InvalidName { .. }
        ))
    ));
    let e = LocalMember::join(
        &t.domain,
        "g",
        &LocalGroupConfig {
            max_message: 100,
            ..small
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least"), "{e}");
    let mut m = LocalMember::join(&t.domain, "g", &small).unwrap();
    assert!(matches!(
        m.send(&[0u8; 4097]),
        Err(ProcessGroupError::Send(SendError::TooBig {
            len: 4097,
            max: 4096
        }))
    ));
    m.send(&[0u8; 4096]).unwrap();
    // A forked child's copy is the parent's membership: refused, and dropping it leaves the
    // parent a member.
    let (child, mut r) = common::fork_writing(|out| {
        let e = m.try_send(b"x").unwrap_err();
        writeln!(out, "{}", matches!(e, ProcessGroupError::ForkedCopy)).unwrap();
    });
    assert_eq!(common::read_line(&mut r), "true");
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    let got = recv_until(&mut m, |d| matches!(d, LocalDelivery::Message { .. }));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(m.members(), vec![std::process::id()]);
    // A removed group says so.
    LocalMember::remove(&t.domain, "g").unwrap();
    assert!(matches!(
        m.send(b"x"),
        Err(ProcessGroupError::Send(SendError::Removed))
    ));
    assert!(matches!(m.recv(WAIT), Err(ProcessGroupError::Removed)));
}

/// A member handle leaked with `mem::forget` keeps its membership while its process lives (no
/// LEAVE is written, nothing is freed under it); when the process goes, its PROCDOWN comes.
#[test]
fn a_leaked_member_stays_a_member_until_its_process_goes() {
    let t = TestDomain::new("pg-leak");
    let mut a = LocalMember::join(&t.domain, "g", &config()).unwrap();
    let me = std::process::id();
    assert!(is_change(
        &a.recv(WAIT).unwrap().unwrap(),
        me,
        LocalChange::Join
    ));
    let domain = t.domain.clone();
    // The child lives until this process closes `go_on`'s writing end (its end of file).
    let (go_on, go_on_writer) = nix::unistd::pipe().unwrap();
    let (rfd, wfd) = (go_on.as_raw_fd(), go_on_writer.as_raw_fd());
    let (child, mut r) = common::fork_writing(move |out| {
        // SAFETY: the child's copy of the writing end, which it never uses.
        unsafe { libc::close(wfd) };
        let mut m = LocalMember::join(&domain, "g", &config()).unwrap();
        m.send(b"then forgotten").unwrap();
        std::mem::forget(m);
        writeln!(out, "leaked").unwrap();
        out.flush().unwrap();
        let mut byte = 0u8;
        // SAFETY: a read into a byte of ours, from the child's copy of the reading end.
        unsafe { libc::read(rfd, (&mut byte as *mut u8).cast(), 1) };
    });
    drop(go_on);
    assert_eq!(common::read_line(&mut r), "leaked");
    let c = child.as_raw() as u32;
    let got = recv_until(&mut a, |d| matches!(d, LocalDelivery::Message { .. }));
    assert!(is_change(&got[0], c, LocalChange::Join), "{got:?}");
    assert_eq!(
        a.recv(Some(Duration::from_millis(100))).unwrap(),
        None,
        "no LEAVE while it lives"
    );
    assert_eq!(a.members(), vec![me, c]);
    drop(go_on_writer);
    assert_eq!(common::reap(child, Duration::from_secs(10)), Some(0));
    let got = recv_until(&mut a, |d| is_change(d, c, LocalChange::ProcessDown));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(a.members(), vec![me]);
}
