//! Process groups (`LocalMember`) against deaths, full logs and removal, from an adversarial
//! review: a PROCDOWN that finds the log full, two dead members each holding the log, churn of
//! members joining, sending, leaving and being killed, a member stopped (SIGABRT) at each
//! failpoint of a join, a leave and a PROCDOWN it writes, a join waiting when the group is
//! removed, and a member whose own unread records fill the log.

mod common;
use baton::{LocalChange, LocalDelivery, LocalGroupConfig, LocalMember, ProcessGroupError};
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::BufRead;
use std::time::{Duration, Instant};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn small() -> LocalGroupConfig {
    LocalGroupConfig {
        log_bytes: 16 << 10,
        max_message: 4096,
        ..LocalGroupConfig::default()
    }
}

fn is_change(d: &LocalDelivery, pid: u32, change: LocalChange) -> bool {
    matches!(d, LocalDelivery::Membership { pid: p, change: c, .. } if *p == pid && *c == change)
}

/// A child that joins, says "joined", and never reads (killed later).
fn idle_member(domain: &baton::Domain, cfg: LocalGroupConfig) -> Pid {
    let domain = domain.clone();
    let (child, mut r) = common::fork_writing(move |out| {
        let _m = LocalMember::join(&domain, "g", &cfg).unwrap();
        writeln!(out, "joined").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs(120));
    });
    assert_eq!(common::read_line(&mut r), "joined");
    child
}

fn kill_and_reap(child: Pid) {
    kill(child, Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
}

/// (Review.) The log is full because member `b` does not read; `b` dies. Before the fix: `a.try_send` finds the log full, its sweep takes b's dead slot and tries to write
/// b's PROCDOWN, which needs room only `a` can free by reading: `try_send` blocks 10 s, the
/// PROCDOWN is given up, and b's slot is unlocked with b still in the table. Nobody ever
/// retries (the sweeps only look at *owner-died* slots): b's cursor pins the log for ever and
/// the PROCDOWN never comes.
#[test]
fn a_procdown_that_finds_the_log_full_comes_later_and_the_dead_cursor_holds_nothing() {
    let t = TestDomain::new("pgr-f1");
    let mut a = LocalMember::join(&t.domain, "g", &small()).unwrap();
    let child = idle_member(&t.domain, small());
    while a.try_send(&[7u8; 1000]).unwrap() {}
    kill_and_reap(child);
    let b = child.as_raw() as u32;
    let t0 = Instant::now();
    let _ = a.try_send(&[7u8; 1000]).unwrap();
    let took = t0.elapsed();
    // Read everything, PROCDOWN included.
    let mut saw_down = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !saw_down {
        match a.recv(Some(Duration::from_millis(200))).unwrap() {
            Some(d) => saw_down |= is_change(&d, b, LocalChange::ProcessDown),
            None => {
                // Nothing more to read: a send must go through (a read everything).
                let _ = a.try_send(b"poke").unwrap();
            }
        }
    }
    assert!(saw_down, "b's PROCDOWN never came (try_send took {took:?})");
    assert!(took < Duration::from_secs(1), "try_send blocked {took:?}");
    // And the log is usable again.
    for i in 0..50u32 {
        assert!(
            a.try_send(&[i as u8; 1000]).unwrap(),
            "log stays pinned by a dead member's cursor (message {i})"
        );
        while a.recv(Some(Duration::ZERO)).unwrap().is_some() {}
    }
}

/// (Review.) Two dead members each held the log. Before the fix: Whoever writes one's PROCDOWN excludes only that
/// one's cursor, so the other dead cursor keeps the log full: neither PROCDOWN can be written
/// (each waits 10 s and gives up), and a new process cannot join (its join writes the DOWN of
/// the dead slot it takes first and times out).
#[test]
fn two_dead_members_holding_the_log_block_neither_procdown_nor_a_join() {
    let t = TestDomain::new("pgr-f2");
    let cfg = small();
    let c1 = idle_member(&t.domain, cfg);
    let domain = t.domain.clone();
    // c2 fills the log and dies without reading.
    let (c2, mut r) = common::fork_writing(move |out| {
        let mut m = LocalMember::join(&domain, "g", &cfg).unwrap();
        while m.try_send(&[7u8; 1000]).unwrap() {}
        writeln!(out, "full").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs(120));
    });
    assert_eq!(common::read_line(&mut r), "full");
    kill_and_reap(c1);
    kill_and_reap(c2);
    let t0 = Instant::now();
    let joined = LocalMember::join(&t.domain, "g", &cfg);
    let took = t0.elapsed();
    let mut a = joined.unwrap_or_else(|e| panic!("join after {took:?}: {e}"));
    let first = a.recv(WAIT).unwrap().unwrap();
    assert!(
        is_change(&first, std::process::id(), LocalChange::Join),
        "{first:?}"
    );
}

/// Churn: children join, send, and leave or get killed, several at a time, with a small log
/// (sweeps and full waits). Every child's own JOIN lists the same members as the JOIN the
/// first member receives for it; each child ends with exactly one LEAVE or PROCDOWN.
#[test]
fn churn_join_snapshots_agree_and_each_member_ends_once() {
    let t = TestDomain::new("pgr-churn");
    let cfg = LocalGroupConfig {
        log_bytes: 8 << 10,
        max_message: 4096,
        ..LocalGroupConfig::default()
    };
    let mut a = LocalMember::join(&t.domain, "g", &cfg).unwrap();
    let mut firsts = std::collections::HashMap::new();
    let mut got = Vec::new();
    let mut kids = Vec::new();
    for round in 0..8u32 {
        let mut batch = Vec::new();
        for k in 0..3u32 {
            let domain = t.domain.clone();
            let kill_it = (round + k) % 2 == 0;
            let (pid, r) = common::fork_writing(move |out| {
                let mut m = LocalMember::join(&domain, "g", &cfg).unwrap();
                let first = m.recv(WAIT).unwrap().unwrap();
                writeln!(out, "{first:?}").unwrap();
                out.flush().unwrap();
                // try_send and reads between (send() would read while it waits: see f4).
                let mut i = 0u32;
                while i < 20 {
                    if m.try_send(&[i as u8; 300]).unwrap() {
                        i += 1;
                    }
                    while m.recv(Some(Duration::ZERO)).unwrap().is_some() {}
                }
                if kill_it {
                    writeln!(out, "wait").unwrap();
                    out.flush().unwrap();
                    loop {
                        while m.recv(Some(Duration::from_millis(10))).unwrap().is_some() {}
                    }
                }
                m.leave().unwrap();
            });
            batch.push((pid, r, kill_it));
        }
        // a keeps reading while they run.
        for (pid, mut r, kill_it) in batch {
            let mut s = String::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Read lines while draining a.
            let fd = std::os::fd::AsRawFd::as_raw_fd(r.get_ref());
            // SAFETY: sets a flag on the pipe this test owns.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
            let mut lines = Vec::new();
            let want = if kill_it { 2 } else { 1 };
            while lines.len() < want && Instant::now() < deadline {
                while let Some(d) = a.recv(Some(Duration::from_millis(5))).unwrap() {
                    got.push(d);
                }
                s.clear();
                if r.read_line(&mut s).is_ok() && !s.is_empty() {
                    lines.push(s.trim_end().to_string());
                }
            }
            assert_eq!(lines.len(), want, "child {pid} stuck: {lines:?}");
            firsts.insert(pid.as_raw() as u32, lines[0].clone());
            if kill_it {
                kill(pid, Signal::SIGKILL).unwrap();
            }
            kids.push(pid);
        }
    }
    for pid in &kids {
        let _ = common::reap(*pid, Duration::from_secs(20));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && a.members().len() > 1 {
        if let Some(d) = a.recv(Some(Duration::from_millis(50))).unwrap() {
            got.push(d);
        }
    }
    while let Some(d) = a.recv(Some(Duration::from_millis(50))).unwrap() {
        got.push(d);
    }
    for pid in &kids {
        let p = pid.as_raw() as u32;
        let join = got
            .iter()
            .find(|d| is_change(d, p, LocalChange::Join))
            .unwrap_or_else(|| panic!("no JOIN of {p}"));
        assert_eq!(
            format!("{join:?}"),
            firsts[&p],
            "JOIN snapshots of {p} disagree"
        );
        let ends = got
            .iter()
            .filter(|d| {
                is_change(d, p, LocalChange::Leave) || is_change(d, p, LocalChange::ProcessDown)
            })
            .count();
        assert_eq!(ends, 1, "{p} ended {ends} times");
    }
    assert_eq!(a.members(), vec![std::process::id()]);
    assert_eq!(
        LocalMember::members_of(&t.domain, "g").unwrap(),
        vec![std::process::id()]
    );
}

/// Run by the failpoint tests in a fresh process (BATON_FAILPOINT is read once per process).
#[test]
fn fp_helper() {
    let Ok(role) = std::env::var("PGR_ROLE") else {
        return;
    };
    let domain = baton::Domain::new(&std::env::var("PGR_DOMAIN").unwrap()).unwrap();
    let m = LocalMember::join(&domain, "g", &small());
    match role.as_str() {
        "leave" => {
            let mut m = m.unwrap();
            m.send(b"x").unwrap();
            let _ = m.leave();
        }
        "join" => {
            let _ = m;
        }
        _ => {}
    }
    std::process::exit(0);
}

fn run_helper(t: &TestDomain, role: &str, fp: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fp_helper", "--nocapture", "--test-threads", "1"])
        .env("PGR_ROLE", role)
        .env("PGR_DOMAIN", t.domain.as_str())
        .env("BATON_FAILPOINT", fp)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
}

fn drain(a: &mut LocalMember) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(d) = a.recv(Some(Duration::from_millis(500))).unwrap() {
        v.push(match d {
            LocalDelivery::Message { payload, .. } => {
                format!("msg {}", String::from_utf8_lossy(&payload))
            }
            LocalDelivery::Membership {
                change, members, ..
            } => format!("{change:?} {}", members.len()),
        });
    }
    v
}

#[test]
fn failpoints_membership_changes_are_exactly_once() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "leave",
            "pgroup.journaled@2",
            &["Join 2", "msg x", "ProcessDown 1"],
        ),
        (
            "leave",
            "pgroup.claimed@2",
            &["Join 2", "msg x", "ProcessDown 1"],
        ),
        (
            "leave",
            "pgroup.committed@2",
            &["Join 2", "msg x", "Leave 1"],
        ),
        ("join", "pgroup.journaled@1", &[]),
        ("join", "pgroup.claimed@1", &[]),
        ("join", "pgroup.committed@1", &["Join 2", "ProcessDown 1"]),
    ];
    for (i, (role, fp, want)) in cases.iter().enumerate() {
        let t = TestDomain::new(&format!("pgr-fp{i}"));
        let mut a = LocalMember::join(&t.domain, "g", &small()).unwrap();
        assert_eq!(drain(&mut a), vec!["Join 1"]);
        let st = run_helper(&t, role, fp);
        assert!(!st.success(), "{role} {fp}: the failpoint was not hit");
        let got = drain(&mut a);
        assert_eq!(&got, want, "{role} {fp}");
        assert_eq!(a.members(), vec![std::process::id()], "{role} {fp}");
        // A later joiner sees one member besides itself.
        let a2 = LocalMember::members_of(&t.domain, "g").unwrap();
        assert_eq!(a2, vec![std::process::id()], "{role} {fp}: table");
    }
}

/// The writer of a dead member's PROCDOWN dies at each step: the PROCDOWN comes once.
#[test]
fn failpoints_procdown_writer_dies() {
    for (i, fp) in [
        "pgroup.journaled",
        "pgroup.claimed",
        "pgroup.committed",
        "pgroup.recover",
    ]
    .iter()
    .enumerate()
    {
        let t = TestDomain::new(&format!("pgr-fpd{i}"));
        let mut a = LocalMember::join(&t.domain, "g", &small()).unwrap();
        assert_eq!(drain(&mut a), vec!["Join 1"]);
        let d = idle_member(&t.domain, small());
        kill_and_reap(d);
        // The helper takes d's dead slot and dies writing its PROCDOWN (or, for
        // pgroup.recover, gets past it: there is no dead lock holder yet).
        let st = run_helper(&t, "join", fp);
        let got = drain(&mut a);
        let downs = got.iter().filter(|s| s.starts_with("ProcessDown")).count();
        assert_eq!(downs, if st.success() { 2 } else { 1 }, "{fp}: {got:?}");
        assert_eq!(a.members(), vec![std::process::id()], "{fp}: {got:?}");
    }
}

/// (Review.) A join waiting for room in a full log when the group is removed. Before the fix
/// it went on waiting
/// (lock_group and wait_for_room never look at `removed`) and ends with `Timeout` after 10 s
/// (or, if room appears, succeeds on a removed group) instead of `Removed`.
#[test]
fn removal_ends_a_join_waiting_for_room() {
    let t = TestDomain::new("pgr-rm");
    let mut a = LocalMember::join(&t.domain, "g", &small()).unwrap();
    // Another member that never reads holds the log full (a's own sends read into its inbox).
    let holder = idle_member(&t.domain, small());
    while a.try_send(&[7u8; 1000]).unwrap() {}
    while a.try_send(&[7u8; 1]).unwrap() {}
    let domain = t.domain.clone();
    let (child, mut r) = common::fork_writing(move |out| {
        let t0 = Instant::now();
        let e = LocalMember::join(&domain, "g", &small()).map(std::mem::forget);
        writeln!(out, "{:?} {e:?}", t0.elapsed()).unwrap();
    });
    // Waiting in its join (the child's one thread sleeps only there).
    assert!(common::eventually(Duration::from_secs(10), || {
        common::sleeps(child.as_raw() as u32)
    }));
    LocalMember::remove(&t.domain, "g").unwrap();
    let t0 = Instant::now();
    let j = common::read_line(&mut r);
    let waited = t0.elapsed();
    let _ = common::reap(child, Duration::from_secs(20));
    kill_and_reap(holder);
    drop(a);
    assert!(j.contains("Removed"), "join: {j}");
    assert!(
        waited < Duration::from_secs(2),
        "join ended {waited:?} after the removal"
    );
}

/// (Review.) Before the fix a member blocked in `send` read nothing while it waited, so when
/// its own cursor was the slowest nobody could ever free room: two members that each sent with
/// `send()` and read between sends deadlocked for ever. Now a waiting send reads into the
/// member's inbox (up to a log's worth): the only member sends twice what its log holds
/// without receiving, then receives all of it, in order, its join first. Past the inbox too,
/// the send says `Timeout` rather than wait for ever. And two member processes that both
/// `send()` a lot before they receive finish.
#[test]
fn a_member_waiting_in_send_reads_meanwhile_so_its_own_records_never_hold_the_log() {
    let t = TestDomain::new("pgr-f4");
    let mut a = LocalMember::join(&t.domain, "g", &small()).unwrap();
    let me = std::process::id();
    let n = 24u8; // 16 KiB of log and 16 KiB of inbox hold 28 of these
    for i in 0..n {
        a.send_timeout(&[i; 1000], Duration::from_secs(2)).unwrap();
    }
    let mut over = Ok(());
    for i in n..60 {
        over = a.send_timeout(&[i; 1000], Duration::from_millis(100));
        if over.is_err() {
            break;
        }
    }
    assert!(
        matches!(
            over,
            Err(ProcessGroupError::Send(baton::SendError::Timeout))
        ),
        "{over:?}"
    );
    assert!(is_change(
        &a.recv(WAIT).unwrap().unwrap(),
        me,
        LocalChange::Join
    ));
    for i in 0..n {
        match a.recv(WAIT).unwrap().unwrap() {
            LocalDelivery::Message { payload, .. } => assert_eq!(payload[0], i),
            d => panic!("{d:?}"),
        }
    }

    // Two processes that send 200 each before receiving anything.
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let domain = t.domain.clone();
            common::fork_writing(move |out| {
                let mut m = LocalMember::join(&domain, "two", &small()).unwrap();
                while m.members().len() < 2 {
                    m.recv(WAIT).unwrap();
                }
                for i in 0..200u32 {
                    if let Err(e) = m.send_timeout(&i.to_le_bytes(), Duration::from_secs(10)) {
                        writeln!(out, "send {i}: {e}").unwrap();
                        return;
                    }
                }
                let mut got = 0;
                while got < 400 {
                    if let LocalDelivery::Message { .. } = m.recv(WAIT).unwrap().unwrap() {
                        got += 1;
                    }
                }
                writeln!(out, "done").unwrap();
                // Stay until the other has read everything too.
                std::thread::sleep(Duration::from_millis(500));
            })
        })
        .collect();
    for (pid, mut r) in senders {
        assert_eq!(common::read_line(&mut r), "done");
        let _ = common::reap(pid, Duration::from_secs(20));
    }
}
