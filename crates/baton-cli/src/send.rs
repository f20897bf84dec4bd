//! `baton send`.

use crate::format::{parse_duration, print_json, SCHEMA};
use crate::stdio::{self, RawStdin, STOP_CHECK};
use crate::{exit, os_bytes, Failure};
use baton::{Domain, Group, GroupError, GroupPolicy, GroupSender, Queue, SendError};
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// The most records of standard input sent together (see `run`).
const SEND_BATCH: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    #[arg(help = crate::NAME_HELP, required_unless_present = "group")]
    name: Option<String>,
    /// Send to this queue group instead (`baton group`): its policy picks the queue of each
    /// message. Every argument is then a message.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// The messages, one per argument (default: read standard input).
    messages: Vec<OsString>,
    /// 0 (highest) to 3.
    #[arg(long, short, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=3))]
    priority: u8,
    /// User message type.
    #[arg(
        long = "type",
        short = 't',
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    msg_type: i64,
    /// User message version.
    #[arg(long, default_value_t = 0)]
    version: u32,
    /// Give up (exit 3) if a message waits longer than this for space (`5s`, `250ms`, or
    /// seconds). Default: wait as long as it takes.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Send all of standard input as one message.
    #[arg(long, conflicts_with_all = ["null", "messages"])]
    whole: bool,
    /// Split standard input on NUL bytes instead of newlines.
    #[arg(long, short = '0', conflicts_with = "messages")]
    null: bool,
    /// For NODE/QUEUE: the outbox queue of this node's bridge (`baton bridge`).
    #[arg(long, env = "BATON_OUTBOX", default_value = baton::DEFAULT_OUTBOX)]
    outbox: String,
}

/// Where a message came from, to say which one failed.
enum Source {
    Argument,
    Record(&'static str),
    Whole,
}

/// Where the messages go.
enum Target {
    Queue(baton::Sender),
    Group(GroupSender),
    /// A queue on another node: each message goes into the bridge's outbox in an envelope.
    Remote(baton::Sender, baton::RemoteAddress),
}

pub fn run(domain: &Domain, mut args: Args, json: bool) -> Result<(), Failure> {
    if args.group.is_some() {
        // `send --group G MESSAGE...`: the first argument is a message, not a queue.
        if let Some(first) = args.name.take() {
            args.messages.insert(0, first.into());
        }
    }
    if args.messages.is_empty() && stdio::stdin_closed_at_start() {
        return Err(Failure::new(
            exit::ERROR,
            "standard input is closed and no messages were given; refusing to send nothing (give messages, a file or /dev/null)",
        ));
    }
    let (target, to) = match (&args.group, &args.name) {
        (Some(g), _) => (
            Target::Group(
                Group::open(domain, g)?
                    .sender()
                    .with_priority(args.priority)?
                    .with_type(args.msg_type),
            ),
            g.clone(),
        ),
        (None, Some(name)) if name.contains('/') => {
            let to = baton::RemoteAddress::parse(name)?.expect("a name with a '/'");
            let outbox = baton_cluster::bridge::outbox(domain, &args.outbox)?;
            (
                Target::Remote(
                    outbox
                        .sender()
                        .with_priority(args.priority)?
                        .with_type(args.msg_type)
                        .with_version(args.version),
                    to,
                ),
                name.clone(),
            )
        }
        (None, Some(name)) => (
            Target::Queue(
                Queue::open(domain, name)?
                    .sender()
                    .with_priority(args.priority)?
                    .with_type(args.msg_type)
                    .with_version(args.version),
            ),
            name.clone(),
        ),
        (None, None) => unreachable!("clap requires a queue or a group"),
    };
    // Where each message to a group went, for --json.
    let delivered_to = std::cell::RefCell::new(Vec::<Vec<String>>::new());
    // From here a signal ends `send` between messages: none is ever half sent.
    stdio::catch_stop_signals();
    let send_one = |payload: &[u8]| -> Result<(), Failure> {
        let deadline = args.timeout.map(|t| Instant::now() + t);
        let enveloped;
        let (tx, payload) = match &target {
            Target::Queue(tx) => (tx, payload),
            Target::Remote(tx, to) => {
                enveloped = to.envelope(payload);
                (tx, &enveloped[..])
            }
            Target::Group(tx) => {
                return send_to_group(tx, payload, deadline, &args, &delivered_to);
            }
        };
        loop {
            if let Some(sig) = stdio::stop_signal() {
                return Err(Failure::new(
                    stdio::signal_status(sig),
                    format!("stopped by signal {sig}"),
                ));
            }
            let slice = deadline.map_or(STOP_CHECK, |d| {
                d.saturating_duration_since(Instant::now()).min(STOP_CHECK)
            });
            match tx.send_timeout(payload, slice) {
                Err(SendError::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => continue,
                Err(SendError::Timeout) => {
                    return Err(Failure::new(
                        exit::TIMEOUT,
                        format!(
                            "timed out after {} waiting for space in queue {} (priority {})",
                            crate::format::human_duration(args.timeout.unwrap_or_default()),
                            to,
                            args.priority
                        ),
                    ))
                }
                other => return Ok(other?),
            }
        }
    };
    let mut sent = 0u64;
    let mut input = RawStdin::new();
    let (source, result) = if !args.messages.is_empty() {
        let r = args
            .messages
            .iter()
            .try_for_each(|m| send_one(os_bytes(m)).map(|()| sent += 1));
        (Source::Argument, r)
    } else if args.whole {
        let r = input
            .rest()
            .map_err(read_failure)
            .and_then(|all| send_one(&all).map(|()| sent += 1));
        (Source::Whole, r)
    } else {
        let (delimiter, what) = if args.null {
            (b'\0', "NUL-separated record")
        } else {
            (b'\n', "line")
        };
        let r = (|| loop {
            let Some(first) = input.next_record(delimiter).map_err(read_failure)? else {
                return Ok(());
            };
            // The records already read go together, in runs (`try_send_batch`): one claim,
            // one commit and one clock read for as many as fit. One that does not fit, or
            // fails, is sent on its own, as before.
            let mut batch = vec![first];
            while batch.len() < SEND_BATCH {
                match input.buffered_record(delimiter) {
                    Some(record) => batch.push(record),
                    None => break,
                }
            }
            let mut i = 0;
            while i < batch.len() {
                if let Some(sig) = stdio::stop_signal() {
                    return Err(Failure::new(
                        stdio::signal_status(sig),
                        format!("stopped by signal {sig}"),
                    ));
                }
                // A batch that fails sends nothing; then the record it failed on is sent on
                // its own, which waits for room or says exactly which record failed and why.
                let n = match &target {
                    Target::Queue(tx) => tx.try_send_batch(&batch[i..]).unwrap_or(0),
                    // Each message picks its own queue, or needs its envelope.
                    Target::Group(_) | Target::Remote(..) => 0,
                };
                sent += n as u64;
                i += n;
                if n == 0 {
                    send_one(&batch[i])?;
                    sent += 1;
                    i += 1;
                }
            }
        })();
        (Source::Record(what), r)
    };
    let failure = result.err().map(|f| {
        let which = match source {
            Source::Argument => format!("argument {}", sent + 1),
            Source::Record(what) => format!("{what} {} of standard input", sent + 1),
            Source::Whole => "standard input".to_string(),
        };
        let message = if f.message == SendError::Removed.to_string() {
            format!(
                "the queue was removed while {which} was sent: it may or may not have been received ({sent} sent before it)"
            )
        } else if stdio::stop_signal().is_some() || f.code == exit::TIMEOUT {
            format!("{}; {sent} sent, {which} not", f.message)
        } else {
            format!("{which} not sent ({sent} sent before it): {}", f.message)
        };
        (which, Failure::new(f.code, message))
    });
    if json {
        let mut v = serde_json::json!({
            "schema": SCHEMA,
            "queue": args.name,
            "sent": sent,
            "failed": failure.as_ref().map(|(which, f)| serde_json::json!({
                "message": which,
                "index": sent + 1,
                "error": f.message,
                "exit_status": f.code,
            })),
        });
        if let Some(g) = &args.group {
            v.as_object_mut().map(|o| o.remove("queue"));
            v["group"] = g.clone().into();
            v["delivered_to"] = serde_json::json!(delivered_to.borrow().clone());
        }
        if let Err(e) = print_json(&v, false) {
            return Err(Failure::new(
                exit::ERROR,
                format!("{sent} sent, but the report cannot be written: {e}"),
            ));
        }
    }
    match failure {
        Some((_, f)) => Err(f),
        None => Ok(()),
    }
}

/// Reading standard input failed, or a stop signal interrupted the read.
fn read_failure(e: std::io::Error) -> Failure {
    match stdio::stop_signal() {
        Some(sig) => Failure::new(
            stdio::signal_status(sig),
            format!("stopped by signal {sig}"),
        ),
        None => Failure::new(exit::ERROR, format!("cannot read standard input: {e}")),
    }
}

/// Sends one message to a group: in slices (to see stop signals) while it waits for space,
/// except a broadcast, which waits once for all its members (a slice that timed out on one
/// member after others took the message would send it to them again).
fn send_to_group(
    tx: &GroupSender,
    payload: &[u8],
    deadline: Option<Instant>,
    args: &Args,
    delivered_to: &std::cell::RefCell<Vec<Vec<String>>>,
) -> Result<(), Failure> {
    let broadcast = tx.policy() == GroupPolicy::Broadcast;
    let sent = loop {
        if let Some(sig) = stdio::stop_signal() {
            return Err(Failure::new(
                stdio::signal_status(sig),
                format!("stopped by signal {sig}"),
            ));
        }
        let r = match (broadcast, deadline) {
            (true, None) => tx.send(payload),
            (true, Some(d)) => {
                tx.send_timeout(payload, d.saturating_duration_since(Instant::now()))
            }
            (false, _) => {
                let slice = deadline.map_or(STOP_CHECK, |d| {
                    d.saturating_duration_since(Instant::now()).min(STOP_CHECK)
                });
                tx.send_timeout(payload, slice)
            }
        };
        match r {
            Err(GroupError::Send {
                error: SendError::Timeout,
                ..
            }) if !broadcast && deadline.is_none_or(|d| Instant::now() < d) => continue,
            Err(
                e @ GroupError::Send {
                    error: SendError::Timeout,
                    ..
                },
            ) => {
                return Err(Failure::new(
                    exit::TIMEOUT,
                    format!(
                        "timed out after {} waiting for space ({e})",
                        crate::format::human_duration(args.timeout.unwrap_or_default())
                    ),
                ))
            }
            other => break other?,
        }
    };
    for (queue, why) in &sent.failed {
        eprintln!("baton: warning: not delivered to member {queue}: {why}");
    }
    delivered_to.borrow_mut().push(sent.delivered);
    Ok(())
}
