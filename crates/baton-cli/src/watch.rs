//! `baton watch`: follow what happens to a domain's queues (or one queue's), as it happens.

use crate::format::{unix_ns_of_monotonic, SCHEMA};
use crate::stdio;
use crate::{exit, Failure};
use baton::{Domain, EventKind, Events, Followed};
use std::time::Duration;

pub const AFTER_HELP: &str = "\
Events: a queue created or removed (by rm, or for its retention), an owner taking a queue \
(a takeover says so) or letting it go, a consumer of a shared queue joining or leaving (a dead \
one is found and said to have left), a priority's bytes in use rising to its threshold or \
falling back to its available level (`create --threshold`), a queue group created or removed, \
a queue added to or removed from a group (`baton group`). An owner that dies says nothing itself: the takeover that \
follows does. Events are kept in a log of 1024 per domain; a watcher further behind is told how \
many it missed.

Examples:
  baton watch                 # every queue of the domain
  baton watch jobs --json     # one queue, as JSON lines

SIGINT, SIGTERM and SIGHUP end it quietly (status 130, 143, 129); so does a reader of its \
output that goes away (141).";

#[derive(clap::Args)]
pub struct Args {
    /// Only this queue's events (or this group's).
    name: Option<String>,
}

pub fn run(domain: &Domain, args: Args, json: bool) -> Result<(), Failure> {
    if let Some(name) = &args.name {
        baton::check_queue_name(name)?;
    }
    stdio::catch_stop_signals();
    let mut events = Events::follow(domain)?;
    if let Some(name) = &args.name {
        events = events.only(name);
    }
    let stopped = |sig: i32| Failure::new(stdio::signal_status(sig), "");
    loop {
        if let Some(sig) = stdio::stop_signal() {
            return Err(stopped(sig));
        }
        let Some(next) = events.next_timeout(Duration::from_millis(200))? else {
            if stdio::stdout_sink() != stdio::Sink::File && stdio::reader_gone() {
                return Err(Failure::new(stdio::signal_status(libc::SIGPIPE), ""));
            }
            continue;
        };
        stdio_line(if json { as_json(&next) } else { as_text(&next) })?;
    }
}

/// Writes `line` and a newline to standard output, for a command that prints until stopped:
/// a reader gone is SIGPIPE's status, a stop signal during the write is its own status.
pub fn stdio_line(mut line: String) -> Result<(), Failure> {
    line.push('\n');
    match stdio::write_stdout(line.as_bytes(), &mut stdio::Grace::default()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(stdio::signal_status(libc::SIGPIPE), ""))
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(Failure::new(
            stdio::signal_status(stdio::stop_signal().unwrap_or(libc::SIGINT)),
            "",
        )),
        Err(e) => Err(Failure::new(exit::ERROR, format!("cannot write: {e}"))),
    }
}

/// An event's name and details, as `(name, [(field, value)])`.
fn parts(kind: &EventKind) -> (&'static str, Vec<(&'static str, serde_json::Value)>) {
    use serde_json::json;
    match *kind {
        EventKind::QueueCreated => ("queue_created", vec![]),
        EventKind::QueueRemoved { expired } => ("queue_removed", vec![("expired", json!(expired))]),
        EventKind::OwnerTook { epoch, took_over } => (
            "owner_took",
            vec![("epoch", json!(epoch)), ("took_over", json!(took_over))],
        ),
        EventKind::OwnerLeft { epoch } => ("owner_left", vec![("epoch", json!(epoch))]),
        EventKind::ConsumerJoined { open } => ("consumer_joined", vec![("open", json!(open))]),
        EventKind::ConsumerLeft { open, died } => (
            "consumer_left",
            vec![("open", json!(open)), ("died", json!(died))],
        ),
        EventKind::ThresholdReached { priority, used } => (
            "threshold_reached",
            vec![("priority", json!(priority)), ("used", json!(used))],
        ),
        EventKind::ThresholdAvailable { priority, used } => (
            "threshold_available",
            vec![("priority", json!(priority)), ("used", json!(used))],
        ),
        EventKind::GroupCreated { policy } => {
            ("group_created", vec![("policy", json!(policy.name()))])
        }
        EventKind::GroupRemoved => ("group_removed", vec![]),
        EventKind::MemberAdded => ("member_added", vec![]),
        EventKind::MemberRemoved => ("member_removed", vec![]),
        EventKind::Other { kind, a, b } => (
            "other",
            vec![("code", json!(kind)), ("a", json!(a)), ("b", json!(b))],
        ),
        _ => ("other", vec![]),
    }
}

fn as_json(f: &Followed) -> String {
    let mut o = serde_json::Map::new();
    o.insert("schema".into(), SCHEMA.into());
    match f {
        Followed::Missed(n) => {
            o.insert("event".into(), "missed".into());
            o.insert("count".into(), (*n).into());
        }
        Followed::Event(e) => {
            let (name, fields) = parts(&e.kind);
            o.insert("event".into(), name.into());
            o.insert("queue".into(), e.queue.clone().into());
            if let Some(g) = &e.group {
                o.insert("group".into(), g.clone().into());
            }
            o.insert("pid".into(), e.pid.into());
            o.insert("seq".into(), e.seq.into());
            o.insert("time_monotonic_ns".into(), e.time_ns.into());
            o.insert(
                "time_unix_ns".into(),
                unix_ns_of_monotonic(e.time_ns).into(),
            );
            for (k, v) in fields {
                o.insert(k.into(), v);
            }
        }
    }
    serde_json::Value::Object(o).to_string()
}

fn as_text(f: &Followed) -> String {
    match f {
        Followed::Missed(n) => format!("(missed {})", crate::inspect::plural(*n, "event")),
        Followed::Event(e) => {
            let what = match e.kind {
                EventKind::QueueCreated => "created".to_string(),
                EventKind::QueueRemoved { expired: false } => "removed".to_string(),
                EventKind::QueueRemoved { expired: true } => {
                    "removed: its retention ran out".to_string()
                }
                EventKind::OwnerTook {
                    epoch,
                    took_over: true,
                } => format!("taken over from a dead owner (epoch {epoch})"),
                EventKind::OwnerTook { epoch, .. } => format!("owned (epoch {epoch})"),
                EventKind::OwnerLeft { epoch } => format!("let go by its owner (epoch {epoch})"),
                EventKind::ConsumerJoined { open } => {
                    format!("consumer joined ({open} open in its process)")
                }
                EventKind::ConsumerLeft { died: true, .. } => {
                    "consumer left: its process died".to_string()
                }
                EventKind::ConsumerLeft { open, .. } => {
                    format!("consumer left ({open} open in its process)")
                }
                EventKind::ThresholdReached { priority, used } => format!(
                    "priority {priority} reached its threshold ({} in use)",
                    crate::format::human_size(used)
                ),
                EventKind::ThresholdAvailable { priority, used } => format!(
                    "priority {priority} back to its available threshold ({} in use)",
                    crate::format::human_size(used)
                ),
                EventKind::GroupCreated { policy } => format!("group created ({policy})"),
                EventKind::GroupRemoved => "group removed".to_string(),
                EventKind::MemberAdded => {
                    format!("added to group {}", e.group.as_deref().unwrap_or("?"))
                }
                EventKind::MemberRemoved => {
                    format!("removed from group {}", e.group.as_deref().unwrap_or("?"))
                }
                EventKind::Other { kind, a, b } => format!("event {kind} ({a}, {b})"),
                _ => "event of a newer kind".to_string(),
            };
            let subject = match (&e.group, e.queue.is_empty()) {
                (Some(g), true) => g.as_str(),
                _ => e.queue.as_str(),
            };
            format!(
                "{} {subject} {what} (pid {})",
                clock(unix_ns_of_monotonic(e.time_ns)),
                e.pid
            )
        }
    }
}

/// The time of day (UTC) of a wall-clock instant, to the millisecond.
fn clock(unix_ns: u64) -> String {
    let ms = unix_ns / 1_000_000;
    let (s, ms) = (ms / 1000, ms % 1000);
    let (h, m, s) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}
