//! Process groups: the local backend (shared memory) against the corosync backend on one
//! node, through the same API (`baton_cluster::ProcessGroup`), in the same run.
//!
//! Three member processes join a group and poll it (`recv` with a zero timeout, in a loop,
//! yielding the CPU when it finds nothing):
//!
//! - *latency*: one member multicasts 64-byte messages one at a time, each once its previous
//!   one came back to it and at least `PACE` after the previous send (so that no queue builds
//!   up at the others): its round trip (send to own delivery), and the time from the send to
//!   the delivery at each of the two other polling members (the send time rides in the
//!   message; `CLOCK_MONOTONIC` is one clock for the machine);
//! - *throughput*: all three multicast 64-byte messages as fast as the group takes them
//!   (`TryAgain`: receive, then try again) while receiving everything; deliveries per second at
//!   each member (each receives every member's messages).
//!
//! Corosync runs in private network and mount namespaces (the tests' harness), so it needs
//! root and `corosync` installed (`scripts/test-deps.sh`); without them only the local backend
//! runs. Run: `cargo bench --bench groups` (add `-- --quick` for a short run, `-- --local` for
//! the local backend alone). Not a criterion
//! bench: members are processes, and the numbers are percentiles of their own clocks.
#![allow(clippy::print_stdout)]

#[path = "../crates/baton-cluster/tests/harness/mod.rs"]
mod harness;

use baton_cluster::{Backend, ClusterError, Delivery, ProcessGroup};
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

const MEMBERS: usize = 3;
const SIZE: usize = 64;
/// The least time between two sends of the latency phase.
const PACE: Duration = Duration::from_micros(200);

struct Plan {
    /// Round trips measured by member 0.
    round_trips: usize,
    /// Messages each member multicasts in the throughput phase.
    each: u64,
}

fn now_ns() -> u64 {
    baton::monotonic_ns()
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A message: kind (0 latency, 1 start the throughput phase, 2 throughput), member, sequence,
/// send time; padded to 64 bytes.
fn message(kind: u8, member: u8, seq: u64) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    m[0] = kind;
    m[1] = member;
    m[2..10].copy_from_slice(&seq.to_le_bytes());
    if kind == 0 {
        // Only the latency phase reads the clock (a clock read costs about what a send does).
        m[10..18].copy_from_slice(&now_ns().to_le_bytes());
    }
    m
}

fn fields(p: &[u8]) -> (u8, u8, u64, u64) {
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(p[r].try_into().unwrap());
    (p[0], p[1], u(2..10), u(10..18))
}

/// Sends `m`, receiving (and handing to `got`) while the group says "try again".
fn send(
    g: &mut ProcessGroup,
    m: &[u8],
    got: &mut impl FnMut(Delivery),
) -> Result<(), ClusterError> {
    loop {
        match g.send(m) {
            Err(ClusterError::TryAgain) => {
                if let Some(d) = g.recv(Some(Duration::ZERO))? {
                    got(d);
                }
            }
            other => return other,
        }
    }
}

/// One member's run; returns the line it reports.
fn member(backend: Backend, group: &str, me: u8, plan: &Plan) -> Result<String, ClusterError> {
    let mut g = loop {
        match ProcessGroup::join(backend.clone(), group) {
            Err(ClusterError::Corosync(_)) => std::thread::sleep(Duration::from_millis(50)),
            other => break other?,
        }
    };
    // Everyone in.
    loop {
        if let Some(Delivery::Membership { members, .. }) = g.recv(Some(Duration::ZERO))? {
            if members.len() == MEMBERS {
                break;
            }
        }
    }
    let mut latencies = Vec::with_capacity(plan.round_trips);
    let mut started = None;
    let mut delivered = 0u64;
    let total = plan.each * MEMBERS as u64;
    let mut sent = 0u64;
    let mut seq = 0u64;
    let mut waiting_own = false;
    let mut last_send = Instant::now();
    let mut finished_at = None;
    let mut ignore = |_: Delivery| {};
    while finished_at.is_none() {
        if me == 0 && started.is_none() && !waiting_own && last_send.elapsed() >= PACE {
            if (seq as usize) < plan.round_trips {
                last_send = Instant::now();
                send(&mut g, &message(0, 0, seq), &mut ignore)?;
                waiting_own = true;
            } else {
                send(&mut g, &message(1, 0, 0), &mut ignore)?;
                waiting_own = true;
            }
        }
        if started.is_some() && sent < plan.each {
            match g.send(&message(2, me, sent)) {
                Ok(()) => sent += 1,
                Err(ClusterError::TryAgain) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(d) = g.recv(Some(Duration::ZERO))? else {
            // A polite poller: with more members than CPUs (3 on the 2 of CI), a member that
            // finds nothing lets a runnable one have its CPU rather than spin out its slice.
            std::thread::yield_now();
            continue;
        };
        let Delivery::Message { payload, .. } = d else {
            continue;
        };
        let (kind, from, s, sent_ns) = fields(&payload);
        match kind {
            0 => {
                let at = now_ns();
                if me == 0 && from == 0 {
                    latencies.push(at - sent_ns);
                    seq = s + 1;
                    waiting_own = false;
                } else if me != 0 {
                    latencies.push(at - sent_ns);
                }
            }
            1 => {
                started = Some(Instant::now());
                waiting_own = false;
            }
            _ => {
                delivered += 1;
                if delivered == total {
                    finished_at = Some(Instant::now());
                }
            }
        }
    }
    let took = finished_at.unwrap() - started.unwrap();
    let rate = total as f64 / took.as_secs_f64();
    let (p50, p99) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    );
    // Stay until every member is done: a leave must not reach one still counting.
    let _ = g.send(&message(3, me, 0));
    let mut done = 0;
    while done < MEMBERS {
        if let Some(Delivery::Message { payload, .. }) = g.recv(Some(Duration::from_secs(10)))? {
            done += usize::from(payload[0] == 3);
        }
    }
    Ok(format!("{me} {p50} {p99} {rate:.0}"))
}

struct Result3 {
    round_trip: (u64, u64),
    delivery: (u64, u64),
    rate: f64,
}

/// Runs the three members (forked from the calling thread, so in its network namespace).
fn run(backend: Backend, group: &str, plan: &Plan) -> Option<Result3> {
    let mut readers = Vec::new();
    let mut pids = Vec::new();
    for me in 0..MEMBERS as u8 {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
        let backend = backend.clone();
        let group = group.to_string();
        let plan = Plan { ..*plan };
        let pid = harness::member_process(move || {
            let line = member(backend, &group, me, &plan);
            match line {
                Ok(l) => writeln!(w, "{l}").is_ok(),
                Err(e) => {
                    let _ = writeln!(w, "error {e}");
                    false
                }
            }
        });
        readers.push(BufReader::new(r));
        pids.push(pid);
    }
    let mut lines = Vec::new();
    for r in &mut readers {
        let mut s = String::new();
        let _ = r.read_line(&mut s);
        lines.push(s.trim().to_string());
    }
    for pid in pids {
        harness::reap(pid, Duration::from_secs(60));
    }
    let mut out = Result3 {
        round_trip: (0, 0),
        delivery: (0, 0),
        rate: f64::MAX,
    };
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() != 4 || f[0] == "error" {
            eprintln!("a member failed: {l:?}");
            return None;
        }
        let (p50, p99, rate): (u64, u64, f64) =
            (f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?);
        if f[0] == "0" {
            out.round_trip = (p50, p99);
        } else {
            out.delivery = (out.delivery.0.max(p50), out.delivery.1.max(p99));
        }
        out.rate = out.rate.min(rate);
    }
    Some(out)
}

impl Plan {
    fn quick(&self, quick: bool) -> Plan {
        if quick {
            Plan {
                round_trips: self.round_trips / 10,
                each: self.each / 10,
            }
        } else {
            Plan { ..*self }
        }
    }
}

fn report(name: &str, r: &Result3) {
    println!(
        "{name:<10} round trip p50 {:>9.1} µs  p99 {:>9.1} µs | send to delivery at the 2 others p50 {:>9.1} µs  p99 {:>9.1} µs | {:>12.0} deliveries/s per member",
        r.round_trip.0 as f64 / 1e3,
        r.round_trip.1 as f64 / 1e3,
        r.delivery.0 as f64 / 1e3,
        r.delivery.1 as f64 / 1e3,
        r.rate
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; there is nothing to list
    }
    let domain = baton::Domain::new(&format!("bench-groups-{}", std::process::id())).unwrap();
    println!("process groups, {MEMBERS} polling members, {SIZE}-byte messages, one node");
    let local = run(
        Backend::local(&domain),
        "bench",
        &Plan {
            round_trips: 20_000,
            each: 300_000,
        }
        .quick(quick),
    );
    let _ = baton::LocalMember::remove(&domain, "bench");
    if let Some(l) = &local {
        report("local", l);
    }
    if std::env::args().any(|a| a == "--local") {
        return; // the local backend only (for profiling)
    }
    if !nix::unistd::geteuid().is_root()
        || std::process::Command::new("corosync")
            .arg("-v")
            .output()
            .is_err()
    {
        println!("corosync   not measured: needs root and corosync (bash scripts/test-deps.sh)");
        return;
    }
    let node = harness::Node::start("bench");
    node.enter();
    let corosync = run(
        Backend::Corosync,
        "bench",
        &Plan {
            round_trips: 2_000,
            each: 20_000,
        }
        .quick(quick),
    );
    drop(node);
    if let Some(c) = &corosync {
        report("corosync", c);
    }
    if let (Some(l), Some(c)) = (&local, &corosync) {
        println!(
            "local / corosync: throughput {:.0}x, round trip p50 {:.0}x faster, delivery p50 {:.0}x faster",
            l.rate / c.rate,
            c.round_trip.0 as f64 / l.round_trip.0.max(1) as f64,
            c.delivery.0 as f64 / l.delivery.0.max(1) as f64,
        );
    }
}
