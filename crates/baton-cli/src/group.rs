//! `baton group`: queue groups (create, add, remove, ls, rm), and process groups (join, send,
//! members: `pgroup`).

use crate::format::{print_json, SCHEMA};
use crate::Failure;
use baton::{Domain, Group, GroupPolicy, Queue};
use serde_json::json;

pub const AFTER_HELP: &str = "\
A queue group is a name a message can be sent to (`baton send --group G`): its policy picks \
the queue. round-robin: each message to the next member in turn; local-round-robin: in turn \
over the members on this node; local-best-queue: the member on this node with the most free \
space at the message's priority; broadcast: every member. Members are queues of the domain, \
added and removed at any time, by name: a member whose queue is removed stays a member, and \
sends pass it by until a queue of that name exists again.

Examples:
  baton group create workers --policy round-robin
  baton group add workers worker-a worker-b
  baton send --group workers 'job 1' 'job 2'     # one to each
  baton group ls workers
  baton group remove workers worker-b
  baton group rm workers

A process group (join, send, members) is another thing: Corosync's closed process group, a set \
of processes that all receive the same messages and membership changes (join, leave, \
process-down, and with corosync node-down, node-up) in one total order, their own messages \
included. --backend local (the default, or BATON_GROUP_BACKEND): this node's processes, in \
shared memory, in the domain. --backend corosync: every node of the cluster; needs corosync \
running on the node (the name is corosync's, cluster-wide: domains do not apply). See \
docs/groups.md.

  baton group join replicas              # prints each message and change, until stopped
  baton group send replicas 'set x 1'    # joins, sends, waits for it to come back, leaves
  baton group members replicas

Exit status: 0, 1 error, 2 bad usage, 3 timeout (send), 4 no such group (or, for add, no such \
queue), 5 the queue is a member already (add) or not a member (remove), or the group exists \
(create); 130/143/129 join stopped by a signal.";

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create a group (with no members).
    Create {
        /// The group's name (the rules of a queue name).
        group: String,
        /// round-robin, local-round-robin, local-best-queue or broadcast.
        #[arg(long, default_value = "round-robin", value_parser = parse_policy)]
        policy: GroupPolicy,
    },
    /// Add queues to a group (each must exist).
    Add {
        group: String,
        #[arg(required = true)]
        queues: Vec<String>,
    },
    /// Remove queues from a group (the queues stay).
    Remove {
        group: String,
        #[arg(required = true)]
        queues: Vec<String>,
    },
    /// List the domain's groups with their policies and members, or one group's.
    Ls { group: Option<String> },
    /// Remove a group (its queues stay).
    Rm { group: String },
    /// Join a process group and print each message and membership change, in the group's
    /// order, until stopped (or COUNT messages came).
    Join {
        /// The process group's name (local: a queue name's rules; corosync: up to 128 bytes).
        group: String,
        /// Leave after this many messages.
        #[arg(long, short = 'n')]
        count: Option<usize>,
        /// Where the group lives: local (this node's processes, in shared memory, in the
        /// domain) or corosync (every node of the corosync cluster; domains do not apply).
        #[arg(long, default_value = "local", env = "BATON_GROUP_BACKEND", value_parser = ["local", "corosync"])]
        backend: String,
    },
    /// Send each MESSAGE to a process group (joining it for the while): every member
    /// receives them, in one order; returns once they are delivered back here.
    #[command(name = "send")]
    Multicast {
        group: String,
        #[arg(required = true)]
        messages: Vec<String>,
        /// Give up after this long (flow control, or no delivery).
        #[arg(long, default_value = "10s", value_parser = crate::format::parse_duration)]
        timeout: std::time::Duration,
        /// Where the group lives: local (this node's processes, in shared memory, in the
        /// domain) or corosync (every node of the corosync cluster; domains do not apply).
        #[arg(long, default_value = "local", env = "BATON_GROUP_BACKEND", value_parser = ["local", "corosync"])]
        backend: String,
    },
    /// List a process group's members (node/pid; node 0 on the local backend), without
    /// joining it.
    Members {
        group: String,
        /// Where the group lives: local (this node's processes, in shared memory, in the
        /// domain) or corosync (every node of the corosync cluster; domains do not apply).
        #[arg(long, default_value = "local", env = "BATON_GROUP_BACKEND", value_parser = ["local", "corosync"])]
        backend: String,
    },
}

/// The process-group backend called `name` (clap allows only the two), local ones in `domain`.
fn backend_of(name: &str, domain: &Domain) -> baton_cluster::Backend {
    match name {
        "corosync" => baton_cluster::Backend::Corosync,
        _ => baton_cluster::Backend::local(domain),
    }
}

fn parse_policy(s: &str) -> Result<GroupPolicy, String> {
    GroupPolicy::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = GroupPolicy::ALL.iter().map(|p| p.name()).collect();
        format!("unknown policy {s:?}: one of {}", names.join(", "))
    })
}

pub fn run(domain: &Domain, action: Action, json: bool) -> Result<(), Failure> {
    match action {
        Action::Join {
            group,
            count,
            backend,
        } => return crate::pgroup::join(&backend_of(&backend, domain), &group, count, json),
        Action::Multicast {
            group,
            messages,
            timeout,
            backend,
        } => {
            return crate::pgroup::send(
                &backend_of(&backend, domain),
                &group,
                &messages,
                timeout,
                json,
            )
        }
        Action::Members { group, backend } => {
            return crate::pgroup::members(&backend_of(&backend, domain), &group, json)
        }
        Action::Create { group, policy } => {
            Group::create(domain, &group, policy)?;
            say(
                json,
                json!({"created": group, "policy": policy.name()}),
                || format!("created group {group} ({policy})"),
            )?;
        }
        Action::Add { group, queues } => {
            let g = Group::open(domain, &group)?;
            for q in &queues {
                g.add(q)?;
            }
            say(json, json!({"group": group, "added": queues}), || {
                format!("added to group {group}: {}", queues.join(" "))
            })?;
        }
        Action::Remove { group, queues } => {
            let g = Group::open(domain, &group)?;
            for q in &queues {
                g.remove_member(q)?;
            }
            say(json, json!({"group": group, "removed": queues}), || {
                format!("removed from group {group}: {}", queues.join(" "))
            })?;
        }
        Action::Rm { group } => {
            Group::remove(domain, &group)?;
            say(json, json!({"removed": group}), || {
                format!("removed group {group}")
            })?;
        }
        Action::Ls { group } => {
            let names = match group {
                Some(g) => vec![g],
                None => Group::list(domain)?,
            };
            let mut out = Vec::new();
            for name in names {
                let g = Group::open(domain, &name)?;
                let members = g.members()?;
                let members: Vec<_> = members
                    .into_iter()
                    .map(|m| {
                        let exists = Queue::open(domain, &m.queue).is_ok();
                        (m, exists)
                    })
                    .collect();
                out.push((name, g.policy(), members));
            }
            if json {
                let groups: Vec<_> = out
                    .iter()
                    .map(|(name, policy, members)| {
                        json!({
                            "name": name,
                            "policy": policy.name(),
                            "members": members.iter().map(|(m, exists)| json!({
                                "queue": m.queue, "node": m.node, "queue_exists": exists,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(
                    &json!({"schema": SCHEMA, "domain": domain.as_str(), "groups": groups}),
                    false,
                )
                .map_err(|e| Failure::new(crate::exit::ERROR, format!("cannot write: {e}")))?;
            } else if out.is_empty() {
                println!("no queue groups in domain {domain}");
            } else {
                for (name, policy, members) in out {
                    let list: Vec<String> = members
                        .iter()
                        .map(|(m, exists)| {
                            if *exists {
                                m.queue.clone()
                            } else {
                                format!("{} (no such queue)", m.queue)
                            }
                        })
                        .collect();
                    let list = if list.is_empty() {
                        "no members".to_string()
                    } else {
                        list.join(" ")
                    };
                    println!("{name} ({policy}): {list}");
                }
            }
        }
    }
    Ok(())
}

fn say(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<(), Failure> {
    let written = if json {
        let mut v = value;
        v["schema"] = SCHEMA.into();
        print_json(&v, false)
    } else {
        use std::io::Write;
        writeln!(std::io::stdout(), "{}", text())
    };
    written.map_err(|e| {
        Failure::new(
            crate::exit::ERROR,
            format!("done, but the report cannot be written: {e}"),
        )
    })
}
