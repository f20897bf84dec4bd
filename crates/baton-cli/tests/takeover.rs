//! Takeover with real processes, SIGKILL and injected faults (needs `--features failpoints`).
//!
//! Every `baton` child here is a real process, killed by pid. A fault is injected with
//! `BATON_FAILPOINT=<point>[@<hit>][:abort|pause|panic]` (see src/recovery.rs).

mod common;
use baton::{Attributes, Queue};
use common::{eventually, Child, Cli, TestDomain};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

/// One delivered message as `baton recv --json` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    payload: String,
    redelivered: bool,
}

/// A `baton recv --json` child whose output lines are collected as they come.
struct Recv {
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    reader: Option<JoinHandle<()>>,
}

impl Recv {
    fn spawn(t: &TestDomain, extra: &[&str], failpoint: Option<&str>) -> Recv {
        let mut cmd = t.baton();
        cmd.args(["recv", "q", "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(f) = failpoint {
            cmd.env("BATON_FAILPOINT", f);
        }
        let mut child = Child::spawn(&mut cmd);
        let out = child.0.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // A line cut short by SIGKILL is not a delivery: its message was not acknowledged.
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                sink.lock().unwrap().push(Line {
                    payload: v["payload"].as_str().unwrap().to_string(),
                    redelivered: v["redelivered"].as_bool().unwrap(),
                });
            }
        });
        Recv {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn kill(&self) {
        kill(self.pid());
    }

    /// Waits for the process to end (killing it after `limit`) and returns its exit status
    /// and everything it printed.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<Line>) {
        let deadline = std::time::Instant::now() + limit;
        while self.child.0.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.0.kill();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let status = self.child.0.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        (status, lines)
    }
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    );
}

fn owned_by(q: &Queue, pid: u32) -> bool {
    eventually(LONG, || q.status().owner_pid == Some(pid))
}

fn standbys(q: &Queue, n: u32) -> bool {
    eventually(LONG, || q.status().standbys == n)
}

fn line(p: &str, redelivered: bool) -> Line {
    Line {
        payload: p.to_string(),
        redelivered,
    }
}

fn send_all(q: &Queue, msgs: &[&str]) {
    for m in msgs {
        q.sender().send(m.as_bytes()).unwrap();
    }
}

/// Drains the queue in this process: what is left, in delivery order.
fn drain(q: &Queue) -> Vec<Line> {
    let mut rx = q.receiver().unwrap();
    let mut out = Vec::new();
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(300)) {
        out.push(line(
            std::str::from_utf8(m.payload()).unwrap(),
            m.redelivered(),
        ));
    }
    out
}

fn aborted(status: std::process::ExitStatus) -> bool {
    status.signal() == Some(libc::SIGABRT)
}

#[test]
fn a_standby_takes_over_from_an_owner_killed_while_blocked_in_recv() {
    let t = TestDomain::new("blocked");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let active = Recv::spawn(&t, &[], None);
    assert!(owned_by(&q, active.pid()));
    let standby = Recv::spawn(&t, &["--standby", "--count", "3"], None);
    assert!(standbys(&q, 1));
    active.kill();
    assert!(owned_by(&q, standby.pid()));
    send_all(&q, &["a", "b", "c"]);
    let (status, lines) = standby.finish(LONG);
    assert!(status.success());
    assert_eq!(
        lines,
        vec![line("a", false), line("b", false), line("c", false)]
    );
    let st = q.status();
    assert_eq!((st.takeovers, st.epoch, st.redelivered), (1, 2, 0));
}

#[test]
fn a_standby_takes_over_a_stopped_owners_waiting_messages_after_it_is_killed() {
    let t = TestDomain::new("stopped");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let active = Recv::spawn(&t, &[], None);
    assert!(owned_by(&q, active.pid()));
    let pid = nix::unistd::Pid::from_raw(active.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).unwrap();
    send_all(&q, &["1", "2", "3"]);
    // A hung owner is reported, not replaced.
    assert!(eventually(LONG, || q
        .status()
        .owner_stalled(Duration::from_millis(50))));
    assert_eq!(q.status().owner_pid, Some(active.pid()));
    let standby = Recv::spawn(&t, &["--standby", "--count", "3"], None);
    assert!(standbys(&q, 1));
    active.kill();
    let (status, lines) = standby.finish(LONG);
    assert!(status.success());
    assert_eq!(
        lines,
        vec![line("1", false), line("2", false), line("3", false)]
    );
}

#[test]
fn messages_an_owner_held_unacknowledged_when_killed_are_redelivered_flagged_and_only_those() {
    let t = TestDomain::new("held");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    send_all(&q, &["m0", "m1", "m2", "m3", "m4"]);
    // The owner prints and acknowledges m0 and m1, takes m2 off the lane and stops there.
    let active = Recv::spawn(&t, &[], Some("recv.marked@3:pause"));
    assert!(eventually(LONG, || active.count() == 2
        && q.status().lanes[3].unacknowledged == 1));
    let standby = Recv::spawn(&t, &["--standby", "--count", "3"], None);
    assert!(standbys(&q, 1));
    active.kill();
    let (_, first) = active.finish(LONG);
    let (status, second) = standby.finish(LONG);
    assert!(status.success());
    assert_eq!(first, vec![line("m0", false), line("m1", false)]);
    assert_eq!(
        second,
        vec![line("m2", true), line("m3", false), line("m4", false)]
    );
    let st = q.status();
    assert_eq!((st.received, st.redelivered, st.takeovers), (5, 1, 1));
}

/// The heart of it: 200 owners killed one after another while three sender processes send
/// without pause. Every message arrives; a message arrives twice only as a flagged redelivery.
#[test]
fn two_hundred_takeovers_under_continuous_sending_lose_nothing() {
    const TAKEOVERS: usize = 200;
    const SENDERS: usize = 3;
    let t = TestDomain::new("200");
    let attrs = Attributes {
        capacity: [16 * 1024; 4],
        max_message: 64,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut feeders = Vec::new();
    for s in 0..SENDERS {
        let mut child = Child::spawn(t.baton().args(["send", "q"]).stdin(Stdio::piped()));
        let mut stdin = child.0.stdin.take().unwrap();
        let stop = stop.clone();
        feeders.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: String = (n..n + 50).map(|i| format!("{s} {i}\n")).collect();
                if stdin.write_all(batch.as_bytes()).is_err() {
                    break;
                }
                n += 50;
            }
            n // lines written; the sender sends them all before it exits
        }));
        senders.push(child);
    }
    let mut finished = Vec::new();
    let mut active = Recv::spawn(&t, &["--standby"], None);
    assert!(owned_by(&q, active.pid()));
    for round in 0..TAKEOVERS {
        let next = Recv::spawn(&t, &["--standby"], None);
        assert!(standbys(&q, 1), "round {round}: standby registered");
        // Let some traffic through this owner.
        let before = active.count();
        assert!(
            eventually(LONG, || active.count() > before),
            "round {round}: owner receives"
        );
        active.kill();
        assert!(owned_by(&q, next.pid()), "round {round}: standby took over");
        finished.push(active);
        active = next;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: Vec<u64> = feeders.into_iter().map(|f| f.join().unwrap()).collect();
    for (s, child) in senders.into_iter().enumerate() {
        let out = child.wait_output(LONG);
        assert!(out.status.success(), "sender {s}: {out:?}");
    }
    let total: u64 = written.iter().sum();
    assert!(eventually(LONG, || {
        let st = q.status();
        st.lanes.iter().all(|l| l.messages == 0)
    }));
    finished.push(active);
    let mut seen: HashMap<(usize, u64), (u32, u32)> = HashMap::new();
    for r in finished {
        r.kill();
        let (_, lines) = r.finish(LONG);
        for l in lines {
            let (s, i) = l.payload.split_once(' ').unwrap();
            let e = seen
                .entry((s.parse().unwrap(), i.parse().unwrap()))
                .or_default();
            if l.redelivered {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
    }
    for (s, &n) in written.iter().enumerate() {
        for i in 0..n {
            let (fresh, again) = seen.get(&(s, i)).copied().unwrap_or_default();
            assert!(fresh + again >= 1, "sender {s} message {i} was lost");
            assert!(
                fresh <= 1,
                "sender {s} message {i} delivered {fresh} times unflagged"
            );
        }
    }
    assert_eq!(seen.len() as u64, total, "nothing that was not sent");
    let st = q.status();
    assert_eq!(st.takeovers, TAKEOVERS as u64);
    assert_eq!(st.received, total);
    eprintln!(
        "{TAKEOVERS} takeovers, {total} messages, {} redelivered",
        st.redelivered
    );
}

/// A sender that dies at each step of a send: what it committed arrives, what it did not is
/// abandoned and counted, and the lane goes on.
#[test]
fn a_sender_dying_at_any_step_of_a_send_never_wedges_the_lane_or_loses_a_committed_message() {
    for (point, committed) in [
        ("send.claimed", false),
        ("send.written", false),
        ("send.committed", true),
    ] {
        let t = TestDomain::new("send-fp");
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        send_all(&q, &["early"]);
        let out = Child::spawn(
            t.baton()
                .args(["send", "q", "s0", "s1", "s2", "s3"])
                .env("BATON_FAILPOINT", format!("{point}@3"))
                .stderr(Stdio::null()),
        )
        .wait_output(LONG);
        assert!(aborted(out.status), "{point}: {:?}", out.status);
        send_all(&q, &["late"]);
        let mut want = vec![line("early", false), line("s0", false), line("s1", false)];
        if committed {
            want.push(line("s2", false));
        }
        want.push(line("late", false));
        assert_eq!(drain(&q), want, "{point}");
        let st = q.status();
        assert_eq!(st.abandoned, u64::from(!committed), "{point}");
        assert_eq!(st.lanes[3].in_flight, 0, "{point}");
    }
}

/// An owner dying at each step of receiving or acknowledging: nothing is lost, and only what it
/// may have handed out comes again, flagged.
#[test]
fn an_owner_dying_at_any_step_of_receive_or_acknowledge_loses_nothing() {
    for (point, again) in [
        ("recv.found", None),
        ("recv.marked", Some(true)),
        // m2 is at the head: its acknowledgement is the head move itself, so an owner that
        // stops before that has not acknowledged it, and it comes again, flagged.
        ("ack.marked", Some(true)),
        ("ack.counted", None),
        ("ack.advanced", None),
    ] {
        let t = TestDomain::new("recv-fp");
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        send_all(&q, &["m0", "m1", "m2", "m3"]);
        let fp = format!("{point}@3");
        let (status, first) = Recv::spawn(&t, &[], Some(&fp)).finish(LONG);
        assert!(aborted(status), "{point}: {status:?}");
        let printed_m2 = point.starts_with("ack");
        let mut want_first = vec![line("m0", false), line("m1", false)];
        if printed_m2 {
            want_first.push(line("m2", false));
        }
        assert_eq!(first, want_first, "{point}");
        let mut want = Vec::new();
        match again {
            Some(flag) => want.push(line("m2", flag)),
            None if !printed_m2 => want.push(line("m2", false)),
            None => {}
        }
        want.push(line("m3", false));
        assert_eq!(drain(&q), want, "{point}");
        let st = q.status();
        assert_eq!(
            (st.takeovers, st.sent, st.received),
            (1, 4, 4),
            "{point}: counters exact"
        );
    }
}

/// A standby that dies at each step of recovery: the next one redoes it all.
#[test]
fn a_standby_dying_at_any_step_of_recovery_leaves_it_to_the_next_one() {
    for point in [
        "recover.begin",
        "recover.lanes",
        "recover.senders",
        "recover.epoch",
        "recover.consistent",
    ] {
        let t = TestDomain::new("recover-fp");
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        send_all(&q, &["m0", "m1", "m2"]);
        // A sender dies half way through x1: recovery must abandon that claim.
        let out = Child::spawn(
            t.baton()
                .args(["send", "q", "x0", "x1"])
                .env("BATON_FAILPOINT", "send.written@2")
                .stderr(Stdio::null()),
        )
        .wait_output(LONG);
        assert!(aborted(out.status));
        // The owner acknowledges m0 and stops holding m1.
        let active = Recv::spawn(&t, &[], Some("recv.marked@2:pause"));
        assert!(eventually(LONG, || active.count() == 1
            && q.status().lanes[3].unacknowledged == 1));
        let dying = Recv::spawn(&t, &["--standby"], Some(point));
        assert!(standbys(&q, 1));
        active.kill();
        let (status, lines) = dying.finish(LONG);
        assert!(aborted(status), "{point}: {status:?}");
        assert!(lines.is_empty(), "{point}: {lines:?}");
        let next = Recv::spawn(&t, &["--standby", "--count", "3"], None);
        let (status, lines) = next.finish(LONG);
        assert!(status.success(), "{point}: {status:?}");
        assert_eq!(
            lines,
            vec![line("m1", true), line("m2", false), line("x0", false)],
            "{point}"
        );
        let st = q.status();
        assert_eq!((st.takeovers, st.abandoned), (2, 1), "{point}");
        assert_eq!(st.lanes[3].messages + st.lanes[3].in_flight, 0, "{point}");
        drop(active);
    }
}

/// An owner that dies while abandoning a dead sender's claims: the slot stays locked by a dead
/// process, and the next owner reclaims it again.
#[test]
fn an_owner_dying_while_it_reclaims_a_dead_senders_slot_leaves_it_to_the_next_owner() {
    let t = TestDomain::new("slot-fp");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    // This process takes its slot first: taking a slot from a dead holder would resolve the
    // dead sender's claim before any owner sees it.
    send_all(&q, &["w"]);
    let out = Child::spawn(
        t.baton()
            .args(["send", "q", "y0", "y1"])
            .env("BATON_FAILPOINT", "send.written@2")
            .stderr(Stdio::null()),
    )
    .wait_output(LONG);
    assert!(aborted(out.status));
    send_all(&q, &["z"]);
    let (status, lines) = Recv::spawn(&t, &[], Some("slot.locked")).finish(LONG);
    assert!(aborted(status), "{status:?}");
    assert_eq!(lines, vec![line("w", false), line("y0", false)]);
    assert_eq!(drain(&q), vec![line("z", false)]);
    assert_eq!(q.status().abandoned, 1);
}

/// The owner lock's thread can never end while its process lives on thinking it owns the
/// queue: a panic there ends the process, and the next owner takes over.
#[test]
fn a_panic_on_the_owner_thread_ends_the_process_so_there_are_never_two_owners() {
    let t = TestDomain::new("keeper");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let (status, _) = Recv::spawn(&t, &[], Some("keeper.hold:panic")).finish(LONG);
    assert!(aborted(status), "{status:?}");
    let mut rx = q.receiver().unwrap();
    assert!(rx.took_over());
    q.sender().send(b"m").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"m");
}
