//! Consumer processes of a shared queue killed with SIGKILL, at any step, while a sender
//! sends: nothing is lost, a message comes twice only flagged redelivered, and each consumer
//! sees each sender's messages in order.
//!
//! This binary is its own consumer process: run with `BATON_TEST_CONSUMER=<domain>`, it takes
//! messages from queue `q` and prints each (`<sender> <seq> <redelivered>`) before it
//! acknowledges it, until killed.

#[path = "common/mod.rs"]
mod common;

use baton::{Attributes, Domain, Queue};
use common::TestDomain;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SENDERS: u32 = 2;
const CONSUMERS: usize = 3;
/// Consumers killed before the senders stop.
const KILLS: usize = 40;

fn main() {
    if let Ok(domain) = std::env::var("BATON_TEST_CONSUMER") {
        consume(&domain);
        return;
    }
    if let Ok(domain) = std::env::var("BATON_TEST_SWEEPER") {
        take_one_and_acknowledge(&domain);
        return;
    }
    kill_loop_loses_nothing();
    if cfg!(feature = "failpoints") {
        a_consumer_stopped_at_any_step_loses_nothing();
        a_sweeper_that_dies_holding_the_lock_leaves_nothing_unswept();
    }
    println!("consumer_kills: ok");
}

/// The consumer process.
fn consume(domain: &str) {
    let q = Queue::open(&Domain::new(domain).unwrap(), "q").unwrap();
    let mut c = q.consumer().unwrap();
    let out = std::io::stdout();
    loop {
        if std::env::var_os("BATON_TEST_RELEASE_ODD").is_some() {
            // Gives back every message with an odd sequence number once (the release step).
            let m = c.recv_timeout(Duration::from_secs(30)).unwrap();
            if !m.redelivered() && m.payload()[1] % 2 == 1 {
                m.release().unwrap();
                continue;
            }
            print_and_ack(&out, m);
            continue;
        }
        let m = match c.recv_timeout(Duration::from_secs(30)) {
            Ok(m) => m,
            Err(e) => panic!("consumer: {e}"),
        };
        print_and_ack(&out, m);
    }
}

fn print_and_ack(out: &std::io::Stdout, m: baton::Message) {
    let p = m.payload();
    let (sender, seq) = (p[0], u32::from_le_bytes(p[1..5].try_into().unwrap()));
    let mut o = out.lock();
    writeln!(o, "{sender} {seq} {}", m.redelivered() as u8).unwrap();
    o.flush().unwrap();
    drop(o);
    m.ack().unwrap();
}

struct Running {
    child: common::Child,
    lines: std::thread::JoinHandle<Vec<(u8, u32, bool)>>,
}

fn start(t: &TestDomain) -> Running {
    start_with(t, &[])
}

fn start_with(t: &TestDomain, env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("BATON_TEST_CONSUMER", t.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = common::Child::spawn(&mut cmd);
    let stdout = child.0.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2] == "1")
            })
            .collect()
    });
    Running { child, lines }
}

fn stop(r: Running) -> Vec<(u8, u32, bool)> {
    let pid = nix::unistd::Pid::from_raw(r.child.pid() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    drop(r.child); // reaps it
    r.lines.join().unwrap()
}

fn kill_loop_loses_nothing() {
    let t = TestDomain::new("consumer-kills");
    let attrs = Attributes {
        shared: true,
        capacity: [16 * 1024; 4],
        max_message: 64,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let mut running: Vec<Running> = (0..CONSUMERS).map(|_| start(&t)).collect();
    let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (q, stop_sending) = (q.clone(), stop_sending.clone());
            std::thread::spawn(move || {
                let tx = q.sender();
                let mut i = 0u32;
                while !stop_sending.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut p = vec![s as u8];
                    p.extend_from_slice(&i.to_le_bytes());
                    match tx.send_timeout(&p, Duration::from_millis(100)) {
                        Ok(()) => i += 1,
                        Err(baton::SendError::Timeout) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                i
            })
        })
        .collect();
    let mut outputs = Vec::new();
    let started = Instant::now();
    for kills in 0..KILLS {
        std::thread::sleep(Duration::from_millis(10 + (kills as u64 * 7) % 13));
        let victim = kills % CONSUMERS;
        let fresh = start(&t);
        outputs.push(stop(std::mem::replace(&mut running[victim], fresh)));
    }
    stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
    let each: Vec<u32> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let total: u64 = each.iter().map(|&n| n as u64).sum();
    while q.status().received < total {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {:?}",
            q.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for r in running {
        outputs.push(stop(r));
    }
    let st = q.status();
    assert_eq!(st.received, total);
    assert!(
        st.lanes.iter().all(|l| l.messages == 0 && l.used == 0),
        "{st:?}"
    );
    // Zero loss; a message seen twice was flagged the second time; per sender, each consumer
    // saw the fresh ones in order.
    let mut seen: HashMap<(u8, u32), u32> = HashMap::new();
    let mut flagged = 0;
    for out in &outputs {
        let mut last: HashMap<u8, u32> = HashMap::new();
        for &(s, seq, again) in out {
            *seen.entry((s, seq)).or_default() += 1;
            flagged += again as u32;
            if !again {
                if let Some(&prev) = last.get(&s) {
                    assert!(seq > prev, "sender {s}: {seq} after {prev} in one consumer");
                }
                last.insert(s, seq);
            }
        }
    }
    for s in 0..SENDERS as u8 {
        for i in 0..each[s as usize] {
            assert!(seen.contains_key(&(s, i)), "message {s}/{i} lost");
        }
    }
    let twice: u32 = seen.values().map(|&n| n - 1).sum();
    assert!(
        twice <= flagged,
        "{twice} duplicates but only {flagged} flagged"
    );
    eprintln!(
        "consumer_kills: {KILLS} consumers killed, {total} messages, {twice} seen twice, {flagged} flagged, {} redelivered",
        st.redelivered
    );
}

/// A consumer process that stops (abort) at each step of taking, acknowledging, giving back
/// and sweeping: every message still arrives, a second time only flagged, and the queue ends
/// empty. (`ack.counted` is the sweeper stopped half way through a head move: the next
/// sweeper finds the lock owner-died and finishes the move from the journal.)
fn a_consumer_stopped_at_any_step_loses_nothing() {
    use nix::sys::wait::{waitpid, WaitStatus};
    // (failpoint, the consumer gives back odd messages, the stopped one's message comes again)
    for (point, release, again) in [
        ("consume.taken@3", false, true),
        ("consume.acked@3", false, false),
        ("ack.counted@3", false, false),
        ("consume.released@2", true, true),
    ] {
        let t = TestDomain::new("consumer-failpoint");
        let attrs = Attributes {
            shared: true,
            max_message: 64,
            ..Attributes::default()
        };
        let q = Queue::create(&t.domain, "q", &attrs).unwrap();
        let n = 10u32;
        for i in 0..n {
            let mut p = vec![0u8];
            p.extend_from_slice(&i.to_le_bytes());
            q.sender().send(&p).unwrap();
        }
        let mut env = vec![("BATON_FAILPOINT", point)];
        if release {
            env.push(("BATON_TEST_RELEASE_ODD", "1"));
        }
        let dying = start_with(&t, &env);
        let pid = nix::unistd::Pid::from_raw(dying.child.pid() as i32);
        let status = waitpid(pid, None).unwrap();
        assert!(
            matches!(
                status,
                WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGABRT, _)
            ),
            "{point}: {status:?}"
        );
        std::mem::forget(dying.child); // reaped above
        let mut seen: Vec<(u32, bool)> = dying
            .lines
            .join()
            .unwrap()
            .iter()
            .map(|&(_, s, a)| (s, a))
            .collect();
        let rest = start(&t);
        let started = Instant::now();
        while q.status().received < n as u64 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{point}: stuck at {:?}",
                q.status()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        seen.extend(stop(rest).iter().map(|&(_, s, a)| (s, a)));
        for i in 0..n {
            let copies: Vec<bool> = seen.iter().filter(|m| m.0 == i).map(|m| m.1).collect();
            assert!(!copies.is_empty(), "{point}: message {i} lost");
            assert!(
                copies[1..].iter().all(|&again| again),
                "{point}: {i} twice, unflagged: {copies:?}"
            );
        }
        let st = q.status();
        assert!(
            st.lanes.iter().all(|l| l.messages == 0 && l.used == 0),
            "{point}: {st:?}"
        );
        // Taken (or given back) and not acknowledged: it comes again. Acknowledged (the sweep
        // not done, or half done): it does not.
        assert_eq!(st.redelivered >= 1, again, "{point}: {st:?}");
    }
}

/// The sweeper child: takes one message and acknowledges it (with
/// `BATON_FAILPOINT=ack.counted:pause` it stops in the sweep that follows, holding the sweep
/// lock, the head move journaled and not made).
fn take_one_and_acknowledge(domain: &str) {
    let q = Queue::open(&Domain::new(domain).unwrap(), "q").unwrap();
    let mut c = q.consumer().unwrap();
    let m = c.recv_timeout(Duration::from_secs(10)).unwrap();
    m.ack().unwrap();
}

/// A consumer that acknowledges the record at the head while another holds the sweep lock
/// leaves the sweep to the holder. If the holder dies there, the next sender that finds the
/// lane full sweeps (it finds the lock owner-died and finishes the dead one's head move from
/// its journal): the acknowledged records do not keep the lane full. And the dead sweeper is
/// no dead owner: no takeover, no recovery, nothing in `stat` (found in review: `open` and
/// `gc` took it for one, and expired a queue with a retention under its consumers; a shared
/// queue now refuses a retention).
fn a_sweeper_that_dies_holding_the_lock_leaves_nothing_unswept() {
    // The sender that finds the lane full: one that waits, and one that does not
    // (`try_send_batch` sweeps once before it says how many fit).
    a_dead_sweepers_lane_refilled_by(|q| {
        for i in 0..4u8 {
            q.sender()
                .send_timeout(&[i], Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("send {i}: {e}: {:?}", q.status().lanes[3]));
        }
    });
    a_dead_sweepers_lane_refilled_by(|q| {
        let four: Vec<[u8; 1]> = (0..4u8).map(|i| [i]).collect();
        let sent = q.sender().try_send_batch(&four).unwrap();
        assert_eq!(sent, 4, "{:?}", q.status().lanes[3]);
    });
}

fn a_dead_sweepers_lane_refilled_by(refill: impl Fn(&Queue)) {
    let t = TestDomain::new("consumer-dead-sweeper");
    let attrs = Attributes {
        shared: true,
        capacity: [256; 4], // four cells a lane
        max_message: 16,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    assert!(matches!(
        Queue::create(
            &t.domain,
            "r",
            &Attributes {
                retention: Some(Duration::from_secs(1)),
                ..attrs
            }
        ),
        Err(baton::OpenError::InvalidAttributes(
            baton::AttributeError::RetentionOnShared
        ))
    ));
    q.sender().send(b"one").unwrap();
    q.sender().send(b"two").unwrap();
    let mut c = q.consumer().unwrap();
    let mut child = common::Child::spawn(
        Command::new(std::env::current_exe().unwrap())
            .env("BATON_TEST_SWEEPER", t.name())
            .env("BATON_FAILPOINT", "ack.counted:pause")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("failpoint ack.counted"), "{line}");
    // The child took "one" and stands in its sweep; we take "two" and acknowledge it: our
    // sweep finds the lock held and leaves the work to the child, which then dies.
    let m = c.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(m.payload(), b"two");
    m.ack().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(child);
    drop(Queue::open(&t.domain, "q").unwrap());
    assert!(Queue::gc(&t.domain).unwrap().is_empty());
    // Every message was acknowledged: the lane (four cells) takes four more.
    refill(&q);
    let st = q.status();
    assert_eq!(
        (st.received, st.takeovers, st.dead_owner_pid),
        (2, 0, None),
        "{st:?}"
    );
    assert_eq!(st.lanes[3].messages, 4);
}
