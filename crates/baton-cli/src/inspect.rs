//! The operator's commands: `create`, `ls`, `stat`, `rm`, `gc`, and their `--watch` and
//! Prometheus output. Inspection (`ls`, `stat`) changes nothing in any queue.

use crate::format::{human_duration, human_size, print_json, SCHEMA};
use crate::stdio;
use crate::{exit, Failure, Format};
use baton::{Attributes, Domain, ListEntry, Queue, Status};
use serde_json::json;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

/// The attributes `create` was given; those not given are not compared with an existing
/// queue's.
pub struct Asked {
    pub capacity: Option<[u64; 4]>,
    pub max_message: Option<u64>,
    pub mode: Option<u32>,
    pub retention: Option<Duration>,
    /// `--shared` given (a flag: without it, an existing queue's mode is not compared).
    pub shared: bool,
    pub reply_boxes: Option<u32>,
    /// `--threshold P:REACHED:AVAILABLE`, each set on the queue.
    pub thresholds: Vec<(u8, u64, u64)>,
}

pub fn create(domain: &Domain, name: &str, asked: Asked, json: bool) -> Result<(), Failure> {
    let Asked {
        capacity,
        max_message,
        mode,
        retention,
        shared,
        reply_boxes,
        thresholds,
    } = asked;
    // Attributes not given are taken from the existing queue (so only the given ones are
    // compared), or from the defaults for a new one.
    let base = match Queue::open(domain, name) {
        Ok(q) => q.attributes(),
        Err(baton::OpenError::NotFound { .. }) => Attributes::default(),
        Err(e) => return Err(e.into()),
    };
    let max_message = match max_message {
        None => base.max_message,
        Some(m) => u32::try_from(m)
            .map_err(|_| Failure::new(exit::USAGE, format!("max message {m} is out of range")))?,
    };
    let attrs = Attributes {
        capacity: capacity.unwrap_or(base.capacity),
        max_message,
        mode: mode.unwrap_or(base.mode),
        retention: retention.or(base.retention),
        shared: shared || base.shared,
        reply_boxes: reply_boxes.unwrap_or(base.reply_boxes),
        ..base
    };
    let q = Queue::create(domain, name, &attrs)?;
    for (p, reached, available) in thresholds {
        q.set_capacity_thresholds(p, reached, available)
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    }
    let created = q.was_created();
    let attributes = q.attributes();
    if json {
        print_json(
            &json!({
                "schema": SCHEMA,
                "domain": domain.to_string(),
                "queue": name,
                "created": created,
                "attributes": attributes,
            }),
            false,
        )?;
    } else {
        println!(
            "{} queue {name} in domain {domain}: {}",
            if created { "created" } else { "found existing" },
            describe_attributes(&attributes)
        );
    }
    Ok(())
}

pub fn rm(domain: &Domain, name: &str, force: bool, json: bool) -> Result<(), Failure> {
    let st = Queue::inspect(domain, name)?;
    let messages: u64 = st.lanes.iter().map(|l| l.messages).sum();
    let mut in_use = Vec::new();
    if let Some(pid) = st.owner_pid {
        in_use.push(format!("an owner (pid {pid})"));
    }
    if st.standbys > 0 {
        in_use.push(plural(st.standbys as u64, "standby"));
    }
    if messages > 0 {
        in_use.push(plural(messages, "message"));
    }
    if !in_use.is_empty() && !force {
        return Err(Failure::new(
            exit::IN_USE,
            format!(
                "queue {name} has {}; give --force to remove it with them",
                in_use.join(", ")
            ),
        ));
    }
    Queue::remove(domain, name)?;
    if json {
        print_json(
            &json!({
                "schema": SCHEMA,
                "domain": domain.to_string(),
                "queue": name,
                "removed": true,
                "messages": messages,
                "owner_pid": st.owner_pid,
                "standbys": st.standbys,
            }),
            false,
        )?;
    } else if in_use.is_empty() {
        println!("removed queue {name}");
    } else {
        let attached = st.owner_pid.is_some() || st.standbys > 0;
        println!(
            "removed queue {name} with {}{}",
            in_use.join(", "),
            if attached {
                " (its owner and standbys get \"removed\" errors)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `1 message`, `2 messages`.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        return format!("{n} {what}");
    }
    match what.as_bytes() {
        [.., b'x' | b's'] => format!("{n} {what}es"),
        [.., c, b'y'] if !b"aeiou".contains(c) => format!("{n} {}ies", &what[..what.len() - 1]),
        _ => format!("{n} {what}s"),
    }
}

pub fn gc(domain: &Domain, json: bool) -> Result<(), Failure> {
    let removed = Queue::gc(domain)?;
    if json {
        print_json(&json!({ "schema": SCHEMA, "removed": removed }), false)?;
    } else {
        for f in &removed {
            println!("removed {}", f.display());
        }
    }
    Ok(())
}

/// Runs `show` once, or every `every` until a stop signal: in place on a terminal, one block
/// (or JSON line) after another otherwise.
pub fn watching(
    every: Option<Duration>,
    format: Format,
    mut show: impl FnMut(bool) -> Result<String, Failure>,
) -> Result<(), Failure> {
    let Some(every) = every else {
        print!("{}", show(false)?);
        return Ok(());
    };
    stdio::catch_stop_signals();
    // At least this long between refreshes, so that `--watch 0` does not spin a CPU.
    let every = every.max(Duration::from_millis(10));
    let terminal = std::io::stdout().is_terminal() && format == Format::Text;
    let watch_reader = stdio::stdout_sink() != stdio::Sink::File;
    // A stop ends watching like any command stopped by a signal (quietly: it is what the user
    // asked for), and so does a reader that went away.
    let stopped = |sig: i32| Failure::new(stdio::signal_status(sig), "");
    let reader_left = || Failure::new(stdio::signal_status(libc::SIGPIPE), "");
    loop {
        if let Some(sig) = stdio::stop_signal() {
            return Err(stopped(sig));
        }
        let text = show(true)?;
        let text = if terminal {
            // Home, clear, then the new text.
            format!("\x1b[H\x1b[2J{text}")
        } else {
            text
        };
        match stdio::write_stdout(text.as_bytes(), &mut stdio::Grace::default()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Err(reader_left()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                return Err(stopped(stdio::stop_signal().unwrap_or(libc::SIGINT)))
            }
            Err(e) => return Err(Failure::new(exit::ERROR, format!("cannot write: {e}"))),
        }
        let until = std::time::Instant::now() + every;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            if let Some(sig) = stdio::stop_signal() {
                return Err(stopped(sig));
            }
            if watch_reader && stdio::reader_gone() {
                return Err(reader_left());
            }
            if left.is_zero() {
                break;
            }
            std::thread::sleep(stdio::STOP_CHECK.min(left));
        }
    }
}

/// `ls`; `one_line`: JSON on one line (when watching).
pub fn ls(
    domain: &Domain,
    all_domains: bool,
    format: Format,
    one_line: bool,
) -> Result<String, Failure> {
    let rows = if all_domains {
        Queue::list_all_domains()?
    } else {
        Queue::list(domain)?
    };
    let stale = if all_domains {
        Vec::new()
    } else {
        Queue::stale_files(domain)?
    };
    Ok(match format {
        Format::Json => json_text(
            &json!({
                "schema": SCHEMA,
                "domain": if all_domains { None } else { Some(domain.to_string()) },
                "queues": rows.iter().map(entry_json).collect::<Vec<_>>(),
                "stale_files": stale.iter().map(|(file, pid)| json!({
                    "file": file,
                    "creator_pid": pid,
                })).collect::<Vec<_>>(),
            }),
            one_line,
        ),
        Format::Prometheus => prometheus(rows.iter().filter_map(|e| e.status.as_ref().ok())),
        Format::Text => ls_text(&rows, &stale, all_domains),
    })
}

fn json_text(v: &serde_json::Value, one_line: bool) -> String {
    let text = if one_line {
        serde_json::to_string(v)
    } else {
        serde_json::to_string_pretty(v)
    };
    text.unwrap_or_default() + "\n"
}

/// One queue of `ls --json`: the same fields for a usable queue and an unusable file.
fn entry_json(e: &ListEntry) -> serde_json::Value {
    match &e.status {
        Ok(st) => json!({ "file": e.file, "state": state(st), "error": null, "status": st }),
        Err(err) => json!({
            "file": e.file, "state": "unusable", "error": err.to_string(), "status": null,
        }),
    }
}

/// One word for a queue's condition: `ok`, `expired` (gc removes it), `removed`,
/// `dead-owner` (the next owner takes it over) or `truncated`.
fn state(st: &Status) -> &'static str {
    if st.file_size.is_some_and(|f| f < st.size) {
        "truncated"
    } else if st.removed {
        "removed"
    } else if st.expired {
        "expired"
    } else if st.dead_owner_pid.is_some() {
        "dead-owner"
    } else {
        "ok"
    }
}

/// The OWNER column: the owner's pid; for a shared queue, its consumers (`3c/2f`: three
/// consumers open, two messages in flight).
fn owner_text(st: &Status) -> String {
    if st.attributes.shared {
        let consumers: u32 = st.attached.iter().map(|a| a.consumers).sum();
        let in_flight: u64 = st.attached.iter().map(|a| a.in_flight).sum();
        return format!("{consumers}c/{in_flight}f");
    }
    match (st.owner_pid, st.dead_owner_pid) {
        (Some(p), _) => p.to_string(),
        (None, Some(p)) => format!("dead:{p}"),
        (None, None) => "-".to_string(),
    }
}

fn ls_text(rows: &[ListEntry], stale: &[(std::path::PathBuf, u32)], all: bool) -> String {
    let mut s = String::new();
    let name_of = |st: &Status| {
        if all {
            format!("{}/{}", st.domain, st.name)
        } else {
            st.name.clone()
        }
    };
    let width = rows
        .iter()
        .filter_map(|e| e.status.as_ref().ok())
        .map(|st| name_of(st).len())
        .max()
        .unwrap_or(0)
        .max(12);
    let _ = writeln!(
        s,
        "{:<width$} {:>6} {:>6} {:>6} {:>6} {:>10} {:>10} {:>9} {:>10}",
        if all { "DOMAIN/NAME" } else { "NAME" },
        "P0",
        "P1",
        "P2",
        "P3",
        "USED",
        "CAPACITY",
        "OWNER",
        "STATE"
    );
    for e in rows {
        match &e.status {
            Ok(st) => {
                let used: u64 = st.lanes.iter().map(|l| l.used).sum();
                let capacity: u64 = st.lanes.iter().map(|l| l.capacity).sum();
                let _ = writeln!(
                    s,
                    "{:<width$} {:>6} {:>6} {:>6} {:>6} {:>10} {:>10} {:>9} {:>10}",
                    name_of(st),
                    st.lanes[0].messages,
                    st.lanes[1].messages,
                    st.lanes[2].messages,
                    st.lanes[3].messages,
                    human_size(used),
                    human_size(capacity),
                    owner_text(st),
                    state(st)
                );
            }
            Err(err) => {
                let _ = writeln!(s, "{:<width$} unusable: {err}", e.file.display());
            }
        }
    }
    for (file, pid) in stale {
        let _ = writeln!(
            s,
            "{:<width$} stale: left by dead pid {pid} while creating a queue (baton gc removes it)",
            file.display()
        );
    }
    s
}

pub fn stat(
    domain: &Domain,
    name: &str,
    stall_after: Duration,
    format: Format,
    one_line: bool,
) -> Result<String, Failure> {
    let st = Queue::inspect(domain, name)?;
    let stalled = st.owner_stalled(stall_after);
    Ok(match format {
        Format::Json => {
            let mut v = json!({ "schema": SCHEMA, "state": state(&st), "owner_stalled": stalled });
            if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
                (v.as_object_mut(), serde_json::to_value(&st))
            {
                obj.extend(fields);
            }
            json_text(&v, one_line)
        }
        Format::Prometheus => prometheus(std::iter::once(&st)),
        Format::Text => status_text(&st, stalled.then_some(stall_after)),
    })
}

fn describe_attributes(a: &Attributes) -> String {
    format!(
        "capacity {} / {} / {} / {}, max message {}, mode {:03o}, retention {}, {}{}",
        human_size(a.capacity[0]),
        human_size(a.capacity[1]),
        human_size(a.capacity[2]),
        human_size(a.capacity[3]),
        human_size(a.max_message as u64),
        a.mode,
        a.retention.map_or("none".to_string(), human_duration),
        plural(a.reply_boxes as u64, "reply box"),
        if a.shared {
            ", shared by competing consumers"
        } else {
            ""
        }
    )
}

fn status_text(st: &Status, stalled: Option<Duration>) -> String {
    let ns = Duration::from_nanos;
    let mut s = String::new();
    let _ = writeln!(s, "queue      {} (domain {})", st.name, st.domain);
    let _ = writeln!(s, "state      {}", state(st));
    let _ = writeln!(s, "attributes {}", describe_attributes(&st.attributes));
    let owner = match (st.owner_pid, st.dead_owner_pid, stalled) {
        _ if st.attributes.shared => {
            let consumers: u32 = st.attached.iter().map(|a| a.consumers).sum();
            let in_flight: u64 = st.attached.iter().map(|a| a.in_flight).sum();
            format!(
                "none: shared by {} ({} in flight)",
                plural(consumers as u64, "consumer"),
                plural(in_flight, "message")
            )
        }
        (Some(p), _, None) => format!("pid {p}"),
        (Some(p), _, Some(after)) => format!(
            "pid {p} STALLED: the message it would take next has waited {} (threshold {})",
            human_duration(ns(st.owner_stalled_ns.unwrap_or(0))),
            human_duration(after)
        ),
        (None, Some(p), _) => {
            format!("pid {p} DIED holding the queue; the next owner or standby takes it over")
        }
        (None, None, _) => "none".to_string(),
    };
    let _ = writeln!(s, "owner      {owner}");
    let _ = writeln!(s, "standbys   {}", st.standbys);
    let _ = writeln!(
        s,
        "attached   {} process(es) hold sender slots",
        st.attached.len()
    );
    for a in &st.attached {
        let role = if a.standbys > 0 {
            format!("standby ({} thread(s) waiting to own)", a.standbys)
        } else if a.consumers > 0 || a.in_flight > 0 {
            format!(
                "consumer ({} open, {} in flight)",
                a.consumers,
                plural(a.in_flight, "message")
            )
        } else {
            "sender".to_string()
        };
        let _ = writeln!(s, "           pid {:<8} {role}", a.pid);
    }
    let _ = writeln!(s, "epoch      {} ({} takeovers)", st.epoch, st.takeovers);
    let _ = writeln!(
        s,
        "messages   {} sent, {} received, {} redelivered, {} abandoned, {} rejected as full",
        st.sent, st.received, st.redelivered, st.abandoned, st.rejected_full
    );
    if st.reply_boxes_in_use > 0 || st.replies_dropped > 0 {
        let _ = writeln!(
            s,
            "requests   {} of {} reply boxes held by waiting requests, {} dropped",
            st.reply_boxes_in_use,
            st.attributes.reply_boxes,
            plural(st.replies_dropped, "reply")
        );
    }
    if let Some(w) = st.oldest_waiting_ns {
        let _ = writeln!(s, "oldest     waiting for {}", human_duration(ns(w)));
    }
    if st.removed {
        let _ = writeln!(s, "REMOVED    this queue has been removed");
    }
    if st.expired {
        let _ = writeln!(
            s,
            "EXPIRED    no owner for longer than its retention; `baton gc` removes it"
        );
    }
    let _ = writeln!(
        s,
        "priority     capacity       used   messages    unacked  in-flight"
    );
    for (p, l) in st.lanes.iter().enumerate() {
        let threshold = if l.threshold_reached == 0 {
            String::new()
        } else {
            format!(
                "  thresholds {} / {}{}",
                human_size(l.threshold_reached),
                human_size(l.threshold_available),
                if l.above_threshold { " REACHED" } else { "" }
            )
        };
        let _ = writeln!(
            s,
            "{p:>8} {:>12} {:>10} {:>10} {:>10} {:>10}{threshold}",
            human_size(l.capacity),
            human_size(l.used),
            l.messages,
            l.unacknowledged,
            l.in_flight
        );
    }
    for f in &st.files {
        let _ = writeln!(s, "file       {} ({})", f.display(), human_size(st.size));
    }
    if let Some(f) = st.file_size.filter(|&f| f != st.size) {
        let _ = writeln!(
            s,
            "WARNING    the file is {f} bytes, not {}: truncated or extended by someone",
            st.size
        );
    }
    s
}

/// The Prometheus text exposition format (version 0.0.4) of some queues.
fn prometheus<'a>(queues: impl Iterator<Item = &'a Status>) -> String {
    let queues: Vec<&Status> = queues.collect();
    let mut s = String::new();
    let labels = |st: &Status| {
        format!(
            "domain=\"{}\",queue=\"{}\"",
            escape(&st.domain),
            escape(&st.name)
        )
    };
    type Per = fn(&Status) -> u64;
    let per_queue: [(&str, &str, &str, Per); 13] = [
        (
            "baton_sent_total",
            "counter",
            "Messages sent since creation.",
            |st| st.sent,
        ),
        (
            "baton_received_total",
            "counter",
            "Messages received and acknowledged.",
            |st| st.received,
        ),
        (
            "baton_redelivered_total",
            "counter",
            "Deliveries of messages delivered before.",
            |st| st.redelivered,
        ),
        (
            "baton_abandoned_total",
            "counter",
            "Messages whose senders died before committing them.",
            |st| st.abandoned,
        ),
        (
            "baton_rejected_full_total",
            "counter",
            "Sends refused because the lane was full.",
            |st| st.rejected_full,
        ),
        (
            "baton_replies_dropped_total",
            "counter",
            "Replies that reached no requester (late, to a dead requester, or a second one).",
            |st| st.replies_dropped,
        ),
        (
            "baton_reply_boxes_in_use",
            "gauge",
            "Requests waiting for their replies (reply boxes held).",
            |st| st.reply_boxes_in_use as u64,
        ),
        (
            "baton_takeovers_total",
            "counter",
            "Times the queue was taken over from a dead owner.",
            |st| st.takeovers,
        ),
        (
            "baton_owner_pid",
            "gauge",
            "Pid of the live owner (0: none).",
            |st| st.owner_pid.unwrap_or(0) as u64,
        ),
        (
            "baton_owner_dead",
            "gauge",
            "1 if the owner died holding the queue, not yet taken over.",
            |st| st.dead_owner_pid.is_some() as u64,
        ),
        (
            "baton_standbys",
            "gauge",
            "Threads of live processes waiting to own the queue.",
            |st| st.standbys as u64,
        ),
        (
            "baton_attached_processes",
            "gauge",
            "Live processes holding sender slots.",
            |st| st.attached.len() as u64,
        ),
        (
            "baton_expired",
            "gauge",
            "1 if its retention has run out (gc removes it).",
            |st| st.expired as u64,
        ),
    ];
    for (metric, kind, help, value) in per_queue {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for st in &queues {
            let _ = writeln!(s, "{metric}{{{}}} {}", labels(st), value(st));
        }
    }
    let _ = writeln!(
        s,
        "# HELP baton_oldest_waiting_seconds How long the oldest undelivered message has waited.\n# TYPE baton_oldest_waiting_seconds gauge"
    );
    for st in &queues {
        let _ = writeln!(
            s,
            "baton_oldest_waiting_seconds{{{}}} {}",
            labels(st),
            st.oldest_waiting_ns.unwrap_or(0) as f64 / 1e9
        );
    }
    type PerLane = fn(&baton::LaneStatus) -> u64;
    let per_lane: [(&str, &str, PerLane); 4] = [
        (
            "baton_messages",
            "Messages in the lane (waiting or unacknowledged).",
            |l| l.messages,
        ),
        (
            "baton_unacknowledged",
            "Messages delivered and not yet acknowledged.",
            |l| l.unacknowledged,
        ),
        ("baton_used_bytes", "Bytes of the lane in use.", |l| l.used),
        ("baton_capacity_bytes", "The lane's byte budget.", |l| {
            l.capacity
        }),
    ];
    for (metric, help, value) in per_lane {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for st in &queues {
            for (p, l) in st.lanes.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{metric}{{{},priority=\"{p}\"}} {}",
                    labels(st),
                    value(l)
                );
            }
        }
    }
    s
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `baton peek`: the waiting messages, as `recv` writes them (one per line, or JSON lines),
/// each line of text preceded by its priority, type and id.
pub fn peek(
    domain: &Domain,
    name: &str,
    count: usize,
    msg_type: Option<i64>,
    except: Option<i64>,
    json: bool,
) -> Result<(), Failure> {
    let q = Queue::open(domain, name)?;
    let filter = match (msg_type, except) {
        // For looking, a negative type shows every type not above |T| (not only the lowest).
        (Some(t), _) if t < 0 => baton::TypeFilter::AtMost(t.checked_neg().unwrap_or(i64::MAX)),
        (Some(t), _) => baton::TypeFilter::sysv(t),
        (None, Some(t)) => baton::TypeFilter::Except(t),
        (None, None) => baton::TypeFilter::Any,
    };
    let mut out = Vec::new();
    for m in q.peek(count, filter) {
        if json {
            out.extend_from_slice(
                crate::format::message_json(name, &m.meta, &m.payload)
                    .to_string()
                    .as_bytes(),
            );
        } else {
            out.extend_from_slice(
                format!(
                    "p{} type {} id {}{}\t",
                    m.meta.priority,
                    m.meta.msg_type,
                    m.meta.id,
                    if m.meta.redelivered {
                        " redelivered"
                    } else {
                        ""
                    }
                )
                .as_bytes(),
            );
            out.extend_from_slice(&m.payload);
        }
        out.push(b'\n');
    }
    crate::stdio::write_stdout(&out, &mut crate::stdio::Grace::default())
        .map_err(|e| Failure::new(exit::ERROR, format!("cannot write: {e}")))
}

/// `baton purge`.
pub fn purge(domain: &Domain, name: &str, priority: Option<u8>, json: bool) -> Result<(), Failure> {
    let q = Queue::open(domain, name)?;
    let purged = q.purge(priority)?;
    if json {
        print_json(
            &json!({ "schema": SCHEMA, "queue": name, "priority": priority, "purged": purged }),
            false,
        )?;
    } else {
        println!(
            "purged {} from queue {name}{}",
            plural(purged, "message"),
            priority.map_or(String::new(), |p| format!(" (priority {p})"))
        );
    }
    Ok(())
}

/// `retention`: sets the queue's retention in force.
pub fn set_retention(
    domain: &Domain,
    name: &str,
    retention: Option<Duration>,
    json: bool,
) -> Result<(), Failure> {
    let q = Queue::open(domain, name)?;
    q.set_retention(retention)
        .map_err(|e| Failure::new(exit::ERROR, format!("queue {name}: {e}")))?;
    if json {
        print_json(
            &json!({
                "schema": SCHEMA,
                "queue": name,
                "retention": retention.map(|d| d.as_secs_f64()),
            }),
            false,
        )?;
    } else {
        println!(
            "queue {name}: retention {}",
            retention.map_or("none (kept until removed)".to_string(), human_duration)
        );
    }
    Ok(())
}
