//! `baton group join|send|members`: process groups (Corosync CPG semantics), local or over
//! corosync.

use crate::format::SCHEMA;
use crate::{exit, stdio, Failure};
use baton_cluster::{Backend, ClusterError, Delivery, Member, ProcessGroup, Reason};
use serde_json::json;
use std::time::{Duration, Instant};

/// The exit status and message of a process-group error.
fn failure(group: &str, e: ClusterError) -> Failure {
    let code = match e {
        ClusterError::NameTooLong { .. }
        | ClusterError::EmptyName
        | ClusterError::TooBig { .. }
        | ClusterError::Config(_) => exit::USAGE,
        ClusterError::Local(baton::ProcessGroupError::Open(baton::OpenError::InvalidName {
            ..
        })) => exit::USAGE,
        ClusterError::Timeout | ClusterError::TryAgain => exit::TIMEOUT,
        _ => exit::ERROR,
    };
    Failure::new(code, format!("process group {group}: {e}"))
}

fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Join => "join",
        Reason::Leave => "leave",
        Reason::ProcessDown => "process-down",
        Reason::NodeDown => "node-down",
        Reason::NodeUp => "node-up",
    }
}

fn member_json(m: &Member) -> serde_json::Value {
    json!({ "node": m.node, "pid": m.pid })
}

/// One delivery as a line.
fn line(group: &str, d: &Delivery, json: bool) -> String {
    match (d, json) {
        (Delivery::Message { from, payload }, false) => {
            format!(
                "{from}: {}",
                String::from_utf8_lossy(payload).escape_debug()
            )
        }
        (Delivery::Message { from, payload }, true) => {
            use base64::Engine as _;
            let (text, b64) = match std::str::from_utf8(payload) {
                Ok(t) => (Some(t.to_string()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(payload)),
                ),
            };
            json!({
                "schema": SCHEMA, "group": group, "kind": "message", "from": member_json(from),
                "len": payload.len(), "payload": text, "payload_base64": b64,
            })
            .to_string()
        }
        (
            Delivery::Membership {
                member,
                reason,
                members,
            },
            false,
        ) => format!(
            "{member} {} (members: {})",
            reason_name(*reason),
            members
                .iter()
                .map(Member::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        (
            Delivery::Membership {
                member,
                reason,
                members,
            },
            true,
        ) => json!({
            "schema": SCHEMA, "group": group, "kind": "membership", "member": member_json(member),
            "reason": reason_name(*reason),
            "members": members.iter().map(member_json).collect::<Vec<_>>(),
        })
        .to_string(),
    }
}

/// `group join`: prints every delivery, in the group's order, until stopped (or `count`
/// messages came).
pub fn join(
    backend: &Backend,
    group: &str,
    count: Option<usize>,
    json: bool,
) -> Result<(), Failure> {
    stdio::catch_stop_signals();
    let mut member = ProcessGroup::join(backend.clone(), group).map_err(|e| failure(group, e))?;
    let stopped = |sig: i32| Failure::new(stdio::signal_status(sig), "");
    let mut messages = 0;
    while count.is_none_or(|c| messages < c) {
        if let Some(sig) = stdio::stop_signal() {
            return Err(stopped(sig));
        }
        let Some(d) = member
            .recv(Some(stdio::STOP_CHECK))
            .map_err(|e| failure(group, e))?
        else {
            continue;
        };
        messages += usize::from(matches!(d, Delivery::Message { .. }));
        crate::watch::stdio_line(line(group, &d, json))?;
    }
    member.leave().map_err(|e| failure(group, e))
}

/// `group send`: joins, multicasts each message, waits until the last has come back in the
/// group's order (so it is ordered for every member), and leaves.
pub fn send(
    backend: &Backend,
    group: &str,
    messages: &[String],
    timeout: Duration,
    json: bool,
) -> Result<(), Failure> {
    let mut member = ProcessGroup::join(backend.clone(), group).map_err(|e| failure(group, e))?;
    let me = member.me().map_err(|e| failure(group, e))?;
    let deadline = Instant::now() + timeout;
    for (i, m) in messages.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        member.send_timeout(m.as_bytes(), left).map_err(|e| {
            let mut f = failure(group, e);
            f.message = format!("{} ({i} of {} sent)", f.message, messages.len());
            f
        })?;
    }
    // Self-delivery of the last one: everything before it is in the total order too.
    let mut own = 0;
    while own < messages.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.recv(Some(left)).map_err(|e| failure(group, e))? {
            Some(Delivery::Message { from, .. }) if from == me => own += 1,
            Some(_) => {}
            None => {
                return Err(Failure::new(
                    exit::TIMEOUT,
                    format!(
                    "process group {group}: sent, but not yet delivered back within the timeout"
                ),
                ))
            }
        }
    }
    member.leave().map_err(|e| failure(group, e))?;
    if json {
        println!(
            "{}",
            json!({"schema": SCHEMA, "group": group, "sent": messages.len(), "from": member_json(&me)})
        );
    } else {
        println!("sent {} to process group {group} as {me}", messages.len());
    }
    Ok(())
}

/// `group members`: the members now, asked without joining.
pub fn members(backend: &Backend, group: &str, json: bool) -> Result<(), Failure> {
    let members =
        ProcessGroup::members_of(backend.clone(), group).map_err(|e| failure(group, e))?;
    if json {
        println!(
            "{}",
            json!({"schema": SCHEMA, "group": group, "members": members.iter().map(member_json).collect::<Vec<_>>()})
        );
    } else if members.is_empty() {
        println!("process group {group} has no members");
    } else {
        for m in members {
            println!("{m}");
        }
    }
    Ok(())
}
