//! The corosync backend against a real corosync, run by each test in private network and
//! mount namespaces (so nothing outside is touched): loopback up, a tmpfs on `/run` (corosync's
//! fixed paths), a state directory of its own. Members are threads (and forked processes) that
//! enter that network namespace: libcpg talks to corosync over abstract Unix sockets, which
//! belong to a network namespace. Needs root (namespaces) and corosync (`scripts/test-deps.sh`).

mod harness;
use baton_cluster::{Backend, ClusterError, Delivery, ProcessGroup, Reason};
use harness::*;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Three member processes send at once; each receives every message, its own included, in
/// the order its sender sent them, and all three see the same sequence.
#[test]
fn three_members_see_every_message_in_one_order_their_own_included() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("order");
    node.enter();
    const EACH: usize = 200;
    let out = node.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let children: Vec<_> = (0..3u8)
        .map(|i| {
            let file = out.join(format!("member-{i}"));
            member_process(move || {
                let why = file.with_extension("err");
                let fail = |what: String| {
                    let _ = std::fs::write(&why, what);
                    false
                };
                let mut g = match join_when_up("order") {
                    Ok(g) => g,
                    Err(e) => return fail(format!("join: {e}")),
                };
                // Everyone joined before anyone sends.
                let mut early = Vec::new();
                loop {
                    match g.recv(Some(Duration::from_secs(20))) {
                        Ok(Some(d)) => {
                            let all = matches!(&d,
                                Delivery::Membership { members, .. } if members.len() == 3);
                            early.push(d);
                            if all {
                                break;
                            }
                        }
                        other => {
                            return fail(format!(
                                "waiting for 3 members: {other:?} after {early:?}; members {:?}",
                                g.members()
                            ))
                        }
                    }
                }
                let mut got = Vec::new();
                for n in 0..EACH {
                    if let Err(e) =
                        g.send_timeout(format!("{i}:{n}").as_bytes(), Duration::from_secs(10))
                    {
                        return fail(format!("send {n}: {e}"));
                    }
                    // Receive along the way, so that flow control never blocks everyone.
                    loop {
                        match g.recv(Some(Duration::ZERO)) {
                            Ok(Some(d)) => got.push(d),
                            Ok(None) => break,
                            Err(e) => return fail(format!("recv: {e}")),
                        }
                    }
                }
                let count = |got: &Vec<Delivery>| {
                    got.iter()
                        .filter(|d| matches!(d, Delivery::Message { .. }))
                        .count()
                };
                while count(&got) < 3 * EACH {
                    match g.recv(Some(Duration::from_secs(20))) {
                        Ok(Some(d)) => got.push(d),
                        other => return fail(format!("after {} messages: {other:?}", count(&got))),
                    }
                }
                let Ok(me) = g.me() else {
                    return fail("me".into());
                };
                let lines: Vec<String> = got
                    .iter()
                    .filter_map(|d| match d {
                        Delivery::Message { from, payload } => Some(format!(
                            "{}{} {}",
                            if *from == me { "*" } else { "" },
                            from,
                            String::from_utf8_lossy(payload)
                        )),
                        _ => None,
                    })
                    .collect();
                std::fs::write(&file, lines.join("\n")).is_ok()
            })
        })
        .collect();
    let statuses: Vec<_> = children
        .into_iter()
        .map(|c| reap(c, Duration::from_secs(60)))
        .collect();
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(
            *status,
            Some(0),
            "member {i} failed: {:?}; the others: {:?}",
            std::fs::read_to_string(out.join(format!("member-{i}.err"))),
            (0..3)
                .map(|j| std::fs::read_to_string(out.join(format!("member-{j}.err"))))
                .collect::<Vec<_>>()
        );
    }
    let read = |i: u8| std::fs::read_to_string(out.join(format!("member-{i}"))).unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim_start_matches('*').to_string())
            .collect()
    };
    let first = strip(&read(0));
    assert_eq!(first.len(), 3 * EACH);
    for i in 0..3u8 {
        let text = read(i);
        assert_eq!(strip(&text), first, "member {i} saw another order");
        let own: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
        assert_eq!(own.len(), EACH, "member {i} received its own messages");
        assert!(
            own.iter()
                .all(|l| l.split_once(' ').unwrap().1.starts_with(&format!("{i}:"))),
            "member {i}'s own messages are the ones it sent"
        );
    }
    // Each sender's messages in the order it sent them.
    for i in 0..3u8 {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|l| {
                let text = l.split_once(' ').unwrap().1;
                let (who, n) = text.split_once(':').unwrap();
                (who == i.to_string()).then(|| n.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

/// A member sees its own join first and nothing sent before it; the others see the join, a
/// leave and a process's death (SIGKILL) in one order with the messages around them.
#[test]
fn joins_leaves_and_deaths_are_told_in_order_with_the_messages() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("members");
    let mut a = node.join("members");
    let me_a = a.me().unwrap();
    until(&mut a, |d| is_change(d, me_a, Reason::Join));
    a.send(b"before b").unwrap();
    until(&mut a, |d| is_message(d, b"before b"));

    // b: its first delivery is its own join; it never sees "before b"; it leaves when told.
    let (go_read, go_write) = nix::unistd::pipe().unwrap();
    let b = member_process(move || {
        let Ok(mut b) = join_when_up("members") else {
            return false;
        };
        let Ok(me) = b.me() else { return false };
        let Ok(Some(first)) = b.recv(Some(Duration::from_secs(20))) else {
            return false;
        };
        let after = until(&mut b, |d| is_message(d, b"after b"));
        let mut go = [0u8; 1];
        let _ = nix::unistd::read(go_read.as_raw_fd(), &mut go);
        is_change(&first, me, Reason::Join)
            && !after.iter().any(|d| is_message(d, b"before b"))
            && b.leave().is_ok()
    });
    let seen = until(
        &mut a,
        |d| matches!(d, Delivery::Membership { reason: Reason::Join, member, .. } if *member != me_a),
    );
    let Some(Delivery::Membership {
        member: me_b,
        members,
        ..
    }) = seen.last()
    else {
        unreachable!()
    };
    let me_b = *me_b;
    assert_eq!(me_b.pid, b.as_raw() as u32);
    assert_eq!(members.len(), 2);
    a.send(b"after b").unwrap();
    until(&mut a, |d| is_message(d, b"after b"));
    nix::unistd::write(&go_write, b"g").unwrap();
    assert_eq!(
        reap(b, Duration::from_secs(30)),
        Some(0),
        "b saw something wrong"
    );
    let seen = until(&mut a, |d| is_change(d, me_b, Reason::Leave));
    assert_eq!(seen.len(), 1, "{seen:?}");

    // c sends, then is killed: its message, then its PROCDOWN, in that order.
    let (said_read, said_write) = nix::unistd::pipe().unwrap();
    let c = member_process(move || {
        let Ok(mut c) = join_when_up("members") else {
            return false;
        };
        if c.send(b"last words").is_err() {
            return false;
        }
        let _ = nix::unistd::write(&said_write, b"y");
        loop {
            std::thread::sleep(Duration::from_secs(1)); // killed here
        }
    });
    let mut said = [0u8; 1];
    nix::unistd::read(said_read.as_raw_fd(), &mut said).unwrap();
    let seen = until(&mut a, |d| is_message(d, b"last words"));
    let Some(Delivery::Message { from: me_c, .. }) = seen.last() else {
        unreachable!()
    };
    let me_c = *me_c;
    assert_eq!(me_c.pid, c.as_raw() as u32);
    nix::sys::signal::kill(c, nix::sys::signal::Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(c, None).unwrap();
    let seen = until(&mut a, |d| is_change(d, me_c, Reason::ProcessDown));
    assert!(
        seen.iter().all(|d| !matches!(d, Delivery::Message { .. })),
        "{seen:?}"
    );
    assert_eq!(a.members().unwrap(), vec![me_a]);
}

/// Names, sizes, and a corosync that is not there: clear errors.
#[test]
fn bad_names_big_messages_and_no_corosync_are_clear_errors() {
    let _serial = serial();
    if !root() {
        return;
    }
    assert!(matches!(
        ProcessGroup::join(Backend::Corosync, ""),
        Err(ClusterError::EmptyName)
    ));
    let long = "x".repeat(129);
    assert!(matches!(
        ProcessGroup::join(Backend::Corosync, &long),
        Err(ClusterError::NameTooLong { max: 128 })
    ));
    // A thread in a network namespace with no corosync in it.
    let lonely = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        ProcessGroup::join(Backend::Corosync, "nobody").map(|_| ())
    })
    .join()
    .unwrap();
    match lonely {
        Err(ClusterError::Corosync(why)) => assert!(why.contains("corosync"), "{why}"),
        other => panic!("{other:?}"),
    }
    let node = Node::start("errors");
    let mut g = node.join("errors");
    match ProcessGroup::join(Backend::Corosync, "errors") {
        Err(ClusterError::Corosync(why)) => assert!(why.contains("already"), "{why}"),
        other => panic!("a second membership of one process: {other:?}"),
    }
    assert!(matches!(
        g.send(&vec![0u8; ProcessGroup::MAX_MESSAGE + 1]),
        Err(ClusterError::TooBig { .. })
    ));
    let big = vec![7u8; 256 * 1024]; // many totem packets, one libcpg message
    g.send_timeout(&big, Duration::from_secs(10)).unwrap();
    let seen = until(&mut g, |d| matches!(d, Delivery::Message { .. }));
    assert!(is_message(seen.last().unwrap(), &big));
}

/// Two nodes (two network namespaces joined by a veth pair): a member on each sends at once
/// and both see one order; then node 2's corosync is killed and node 1's member is told
/// NODEDOWN for the member there.
#[test]
fn two_nodes_agree_on_one_order_and_a_dead_node_is_told_nodedown() {
    let _serial = serial();
    if !root() {
        return;
    }
    let (one, two) = Node::pair("pair");
    let mut a = one.join("pair");
    let me_a = a.me().unwrap();
    assert_eq!(me_a.node, 1);
    two.enter();
    const EACH: usize = 100;
    let out = two.dir.join("b-saw");
    let b = member_process({
        let out = out.clone();
        move || {
            let mut b = match join_when_up("pair") {
                Ok(b) => b,
                Err(e) => {
                    let _ = std::fs::write(out.with_extension("err"), e.to_string());
                    return false;
                }
            };
            until(
                &mut b,
                |d| matches!(d, Delivery::Membership { members, .. } if members.len() == 2),
            );
            let mut got = Vec::new();
            for n in 0..EACH {
                if b.send_timeout(format!("b:{n}").as_bytes(), Duration::from_secs(10))
                    .is_err()
                {
                    return false;
                }
                loop {
                    match b.recv(Some(Duration::ZERO)) {
                        Ok(Some(d)) => got.push(d),
                        Ok(None) => break,
                        Err(_) => return false,
                    }
                }
            }
            while got
                .iter()
                .filter(|d| matches!(d, Delivery::Message { .. }))
                .count()
                < 2 * EACH
            {
                match b.recv(Some(Duration::from_secs(20))) {
                    Ok(Some(d)) => got.push(d),
                    _ => return false,
                }
            }
            let lines: Vec<String> = got
                .iter()
                .filter_map(|d| match d {
                    Delivery::Message { from, payload } => {
                        Some(format!("{from} {}", String::from_utf8_lossy(payload)))
                    }
                    _ => None,
                })
                .collect();
            // Whole or not at all: the parent reads it once it exists.
            let part = out.with_extension("part");
            if std::fs::write(&part, lines.join("\n")).is_err()
                || std::fs::rename(&part, &out).is_err()
            {
                return false;
            }
            loop {
                std::thread::sleep(Duration::from_secs(1)); // goes with its node
            }
        }
    });
    let err = out.with_extension("err");
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A Join, or a NodeUp if b joined on node 2 before the two corosyncs met.
        until(&mut a, |d| {
            matches!(d, Delivery::Membership { member, reason: Reason::Join | Reason::NodeUp, .. }
                if member.node == 2)
        })
    }))
    .unwrap_or_else(|_| panic!("b: {:?}", std::fs::read_to_string(&err)));
    let Some(Delivery::Membership { member: me_b, .. }) = seen.last() else {
        unreachable!()
    };
    let me_b = *me_b;
    assert_eq!(
        me_b.pid,
        b.as_raw() as u32,
        "pids are the node's own: one pid namespace here"
    );
    let mut got = Vec::new();
    for n in 0..EACH {
        a.send_timeout(format!("a:{n}").as_bytes(), Duration::from_secs(10))
            .unwrap();
        while let Some(d) = a.recv(Some(Duration::ZERO)).unwrap() {
            got.push(d);
        }
    }
    let messages = |got: &Vec<Delivery>| -> Vec<String> {
        got.iter()
            .filter_map(|d| match d {
                Delivery::Message { from, payload } => {
                    Some(format!("{from} {}", String::from_utf8_lossy(payload)))
                }
                _ => None,
            })
            .collect()
    };
    while messages(&got).len() < 2 * EACH {
        got.push(
            a.recv(Some(Duration::from_secs(20)))
                .unwrap()
                .expect("all came"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(Instant::now() < deadline, "b never wrote what it saw");
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_saw: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(messages(&got), b_saw, "the two nodes saw different orders");

    // Node 2 dies: its corosync is killed; node 1's member is told NODEDOWN for b.
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(two.corosync.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let seen = until(&mut a, |d| is_change(d, me_b, Reason::NodeDown));
    assert!(seen.iter().all(|d| !matches!(d, Delivery::Message { .. })));
    eprintln!("NODEDOWN told {:?} after the kill", killed.elapsed());
    assert_eq!(a.members().unwrap(), vec![me_a]);
    let _ = nix::sys::signal::kill(b, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(b, None);
}

// ---- review 17 ----

/// Corosync stops while a member waits in `recv(None)`: the wait ends with an error (it must
/// neither hang nor spin).
#[test]
fn recv_errors_when_corosync_stops() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("stop");
    let mut g = node.join("stop");
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = g.recv(None);
        let _ = tx.send(format!("{r:?}"));
        g
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.corosync.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => {
            assert!(
                r.starts_with("Err(Corosync"),
                "recv after corosync died: {r}"
            );
            drop(waiter.join().unwrap());
        }
        Err(_) => panic!("recv(None) still waiting 10 s after corosync was killed"),
    }
}

/// A message of exactly `MAX_MESSAGE` bytes (over libcpg's atomic size, so really
/// fragmented) is accepted and delivered whole.
#[test]
fn a_message_of_exactly_max_message_is_delivered() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("max");
    let mut g = node.join("max");
    let big: Vec<u8> = (0..ProcessGroup::MAX_MESSAGE)
        .map(|i| (i % 251) as u8)
        .collect();
    g.send_timeout(&big, Duration::from_secs(10)).unwrap();
    let seen = until(&mut g, |d| matches!(d, Delivery::Message { .. }));
    assert!(is_message(seen.last().unwrap(), &big));
}

/// A name of exactly 128 bytes joins, and the member gets its own join and its message.
#[test]
fn a_name_of_128_bytes_joins() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("name128");
    let name = "n".repeat(128);
    let mut g = node.join(&name);
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    g.send(b"hi").unwrap();
    until(&mut g, |d| is_message(d, b"hi"));
    assert_eq!(g.members().unwrap(), vec![me]);
}

/// `fd()` is "readable when `recv` may have something": with three messages waiting, a
/// poll, one `recv(ZERO)`, and a poll again must find the fd readable (two are still there).
#[test]
fn fd_is_readable_while_deliveries_are_queued() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("fd");
    let mut g = node.join("fd");
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    for m in [&b"one"[..], b"two", b"three"] {
        g.send(m).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500)); // all three at this member's corosync
    let fd = g.fd().unwrap();
    let readable = |_: &ProcessGroup| {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 2000) == 1 }
    };
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(
            readable(&g),
            "fd not readable; got {got:?}; inbox still had: {:?}",
            {
                let mut rest = Vec::new();
                while let Ok(Some(d)) = g.recv(Some(Duration::ZERO)) {
                    rest.push(d);
                }
                rest
            }
        );
        if let Some(d) = g.recv(Some(Duration::ZERO)).unwrap() {
            got.push(d);
        }
    }
}

/// A forked child that drops its copy of the parent's handle (a child returning from the
/// scope that held it) must not take the parent out of the group.
#[test]
fn a_forked_child_dropping_the_handle_leaves_the_parent_a_member() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("fork");
    let mut a = node.join("fork");
    let me = a.me().unwrap();
    until(&mut a, |d| is_change(d, me, Reason::Join));
    let a_ref = &a;
    let child = member_process(move || {
        // The child's own copy of the parent's handle goes out of scope.
        // SAFETY: the child owns its copy of the parent's memory; the parent never sees it.
        drop(unsafe { std::ptr::read(a_ref) });
        true
    });
    assert_eq!(reap(child, Duration::from_secs(20)), Some(0));
    a.send(b"still here").unwrap();
    let seen = until(&mut a, |d| is_message(d, b"still here"));
    assert!(
        seen.iter()
            .all(|d| !matches!(d, Delivery::Membership { .. })),
        "{seen:?}"
    );
    assert_eq!(a.members().unwrap(), vec![me]);
}
