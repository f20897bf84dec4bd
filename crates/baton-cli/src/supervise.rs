//! `baton supervise`: run, inspect and command a supervisor (`baton_supervise`).

use crate::{exit, stdio, Failure};
use baton_supervise::{read_state, Config, Report, SuperviseError, Supervisor};
use serde_json::json;
use std::time::Duration;

pub const AFTER_HELP: &str = "\
Runs the components of CONFIG (TOML, see docs/supervise.md), follows each one's process tree, \
probes it, restarts it in place up to retry_count times within retry_interval, then fails it \
over to a standby of its redundancy set (the standby takes its queues over), and past \
failover_limit failovers within failover_window gives over (runs the give_over program). Logs \
a line per event (--json: objects) until SIGINT/SIGTERM, then stops every component, last \
first. SIGHUP reloads CONFIG: components whose definition did not change go on untouched; \
changed ones are validated, then restarted; a failing validate refuses the reload.

  baton supervise csa104.toml                 # foreground
  baton supervise status csa104.toml          # each component: role, state, pid, restarts, scores
  baton supervise restart csa104.toml active  # an operator's restart (failover, stop, start too)

Exit status: 0 stopped by a signal after stopping the components, 1 error (another supervisor \
of that name runs), 2 bad configuration (file, line and field named), 3 no answer (commands), 4 \
no state (status: the supervisor never ran).";

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The configuration (to run it).
    config: Option<std::path::PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Each component's role, state, pid, restarts in the window and last probe scores.
    Status { config: std::path::PathBuf },
    /// Restart a component in place.
    Restart {
        config: std::path::PathBuf,
        component: String,
    },
    /// Fail an active component over to a standby.
    Failover {
        config: std::path::PathBuf,
        component: String,
    },
    /// Stop a component (it stays stopped until `start`).
    Stop {
        config: std::path::PathBuf,
        component: String,
    },
    /// Start a stopped component.
    Start {
        config: std::path::PathBuf,
        component: String,
    },
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

fn domain(cfg: &Config) -> Result<baton::Domain, Failure> {
    match &cfg.supervisor.domain {
        Some(d) => baton::Domain::new(d),
        None => baton::Domain::from_env(),
    }
    .map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

pub fn run(args: Args, json: bool) -> Result<(), Failure> {
    match args.action {
        None => {
            let path = args.config.ok_or_else(|| {
                Failure::new(
                    exit::USAGE,
                    "a configuration file is needed: baton supervise CONFIG",
                )
            })?;
            supervise(&path, &load(&path)?, json)
        }
        Some(Action::Status { config }) => status(&load(&config)?, json),
        Some(Action::Restart { config, component }) => {
            command(&load(&config)?, "restart", &component, json)
        }
        Some(Action::Failover { config, component }) => {
            command(&load(&config)?, "failover", &component, json)
        }
        Some(Action::Stop { config, component }) => {
            command(&load(&config)?, "stop", &component, json)
        }
        Some(Action::Start { config, component }) => {
            command(&load(&config)?, "start", &component, json)
        }
    }
}

/// Set by SIGHUP: reload the configuration.
static RELOAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn supervise(path: &std::path::Path, cfg: &Config, json: bool) -> Result<(), Failure> {
    stdio::catch_stop_signals();
    // SIGHUP reloads instead of stopping.
    // SAFETY: a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_hup as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGHUP, &act, std::ptr::null_mut());
    }
    let name = cfg.supervisor.name.clone();
    let say = move |r: Report| {
        let line = if json {
            json!({"schema": crate::format::SCHEMA, "supervisor": name, "component": r.component, "event": r.event, "detail": r.detail}).to_string()
        } else {
            match &r.component {
                Some(c) => format!("{c}: {} {}", r.event, r.detail),
                None => format!("{}: {}", r.event, r.detail),
            }
        };
        let _ = crate::watch::stdio_line(line);
    };
    let mut s = Supervisor::start(cfg.clone(), Box::new(say)).map_err(|e| match e {
        SuperviseError::AlreadyRunning { .. } => Failure::new(exit::ERROR, e.to_string()),
        e => Failure::new(exit::ERROR, e.to_string()),
    })?;
    let path = path.to_path_buf();
    s.run(
        || stdio::stop_signal().is_some(),
        || {
            RELOAD
                .swap(false, std::sync::atomic::Ordering::Relaxed)
                .then(|| Config::load(&path).map_err(|e| e.to_string()))
        },
    );
    match stdio::stop_signal() {
        Some(sig) => Err(Failure::new(stdio::signal_status(sig), "")),
        None => Ok(()),
    }
}

fn status(cfg: &Config, json: bool) -> Result<(), Failure> {
    let d = domain(cfg)?;
    let st = read_state(&d, &cfg.supervisor.name)
        .map_err(|e| Failure::new(exit::NOT_FOUND, format!("no supervisor state: {e}")))?;
    let running = baton::Queue::open(
        &d,
        &baton_supervise::supervisor::control_queue_name(&cfg.supervisor.name),
    )
    .ok()
    .and_then(|q| q.status().owner_pid);
    if json {
        println!(
            "{}",
            json!({"schema": crate::format::SCHEMA, "running_pid": running, "state": st})
        );
        return Ok(());
    }
    println!(
        "supervisor {}: {}{}",
        st.name,
        running.map_or("not running".to_string(), |p| format!("running (pid {p})")),
        st.gave_over
            .as_deref()
            .map(|w| format!("; gave over: {w}"))
            .unwrap_or_default()
    );
    println!("failovers in window: {}", st.failovers.len());
    for c in &st.components {
        println!(
            "  {:<16} {:<8} {:<11} pid {:<8} restarts in window {} (total {}) scores {:?}{}",
            c.name,
            format!("{:?}", c.role).to_lowercase(),
            format!("{:?}", c.phase).to_lowercase(),
            c.pid.map_or("-".into(), |p| p.to_string()),
            c.restarts.len(),
            c.restarts_total,
            c.scores,
            c.last_end
                .as_deref()
                .map(|e| format!(", last ended: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn command(cfg: &Config, verb: &str, component: &str, json: bool) -> Result<(), Failure> {
    let d = domain(cfg)?;
    let q = baton::Queue::open(
        &d,
        &baton_supervise::supervisor::control_queue_name(&cfg.supervisor.name),
    )
    .map_err(|e| {
        Failure::new(
            exit::NOT_FOUND,
            format!("supervisor {}: not running ({e})", cfg.supervisor.name),
        )
    })?;
    if q.status().owner_pid.is_none() {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!("supervisor {}: not running", cfg.supervisor.name),
        ));
    }
    let reply = q
        .sender()
        .request(
            format!("{verb} {component}").as_bytes(),
            Duration::from_secs(30),
        )
        .map_err(|e| {
            Failure::new(
                exit::TIMEOUT,
                format!("supervisor {}: {e}", cfg.supervisor.name),
            )
        })?;
    let answer = String::from_utf8_lossy(reply.payload()).into_owned();
    if json {
        println!(
            "{}",
            json!({"schema": crate::format::SCHEMA, "command": verb, "component": component, "answer": answer})
        );
    } else {
        println!("{verb} {component}: {answer}");
    }
    if answer == "ok" {
        Ok(())
    } else {
        Err(Failure::new(exit::ERROR, ""))
    }
}
