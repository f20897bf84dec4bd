//! `baton bridge --config FILE`: this node's bridge to the other nodes' queues (see
//! `baton_cluster::bridge`).

use crate::{exit, stdio, Failure};
use baton_cluster::bridge::{Bridge, BridgeConfig};
use baton_cluster::Backend;
use serde_json::json;

pub const AFTER_HELP: &str = "\
The bridge of this node: it takes what this node's senders address to NODE/QUEUE (`baton send \
node2/orders MESSAGE`; a program's `send_tracked` to the outbox learns when it is in the remote \
queue) from the outbox queue, forwards it through a corosync process group of the nodes' bridges, and sends \
what other nodes address to this one into its queues. At least once end to end: a message is \
kept in the outbox until the destination's bridge confirms it is in the queue (see \
docs/groups.md, The bridge). One bridge per node; a restarted one takes the outbox over and \
forwards again what was not confirmed.

The configuration (TOML):
  node = \"node1\"            # this node's name (others send to node1/QUEUE)
  domain = \"default\"        # the domain of this node's queues (default: BATON_DOMAIN)
  group = \"baton-bridge\"    # the bridges' corosync process group
  outbox = \"bridge.out\"     # where this node's senders put messages for other nodes
  retransmit_ms = 1000      # how often an unconfirmed message is forwarded again

Logs a line per event (--json: objects) until stopped by SIGINT/SIGTERM/SIGHUP.

Exit status: 1 error (corosync gone, a bridge runs for this outbox already), 2 bad \
configuration (the file, line and field are named), 130/143/129 stopped by a signal.";

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short = 'c')]
    config: std::path::PathBuf,
    /// Where the bridges' group lives: corosync (across nodes), or local (this node's
    /// processes only: for trying a bridge out on one machine).
    #[arg(long, default_value = "corosync", value_parser = ["corosync", "local"])]
    backend: String,
}

pub fn run(args: Args, json: bool) -> Result<(), Failure> {
    let config =
        BridgeConfig::load(&args.config).map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    let backend = match args.backend.as_str() {
        "local" => Backend::local(
            &config
                .domain()
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?,
        ),
        _ => Backend::Corosync,
    };
    stdio::catch_stop_signals();
    let node = config.node.clone();
    let say = move |line: &str| {
        let text = if json {
            json!({"schema": crate::format::SCHEMA, "bridge": node, "event": line}).to_string()
        } else {
            format!("bridge {node}: {line}")
        };
        // A closed standard output does not stop a bridge: the log is a courtesy.
        let _ = crate::watch::stdio_line(text);
    };
    let mut bridge = Bridge::start(config, backend, Box::new(say))
        .map_err(|e| Failure::new(exit::ERROR, e.to_string()))?;
    let _ = crate::watch::stdio_line(if json {
        json!({"schema": crate::format::SCHEMA, "bridge": bridge.node(), "event": "started"})
            .to_string()
    } else {
        format!("bridge {}: started", bridge.node())
    });
    bridge
        .run(|| stdio::stop_signal().is_some())
        .map_err(|e| Failure::new(exit::ERROR, format!("bridge {}: {e}", bridge.node())))?;
    match stdio::stop_signal() {
        Some(sig) => Err(Failure::new(stdio::signal_status(sig), "")),
        None => Ok(()),
    }
}
