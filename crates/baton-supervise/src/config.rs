//! The supervisor's configuration file (TOML): the components, their methods and probes, the
//! escalation limits. Every error names the file, the line and the field.

use std::collections::BTreeMap;
use std::time::Duration;

/// A configuration error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {field}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// The field (`component[1].probe_interval`), or `(file)` for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The supervisor itself.
    pub supervisor: Supervisor,
    /// The components, in the file's order (started in it, stopped in reverse).
    pub components: Vec<Component>,
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    /// Its name: one supervisor per name runs at a time (`baton supervise status NAME`).
    pub name: String,
    /// The baton domain of the components' queues (default: `BATON_DOMAIN`).
    pub domain: Option<String>,
    /// Failovers allowed within `failover_window` before the supervisor gives over.
    pub failover_limit: u32,
    /// The window of `failover_limit`.
    pub failover_window: Duration,
    /// Run when the supervisor gives over (the node-level escalation), with the reason in
    /// `BATON_GIVE_OVER_REASON`.
    pub give_over: Option<Vec<String>>,
}

/// What a component's probe is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// None: only the process tree is watched.
    None,
    /// A command: its exit status is the score (0 healthy, 1..=100 a failure of that weight,
    /// 201 fail over at once); one that runs past `probe_timeout` scores 100.
    Command(Vec<String>),
    /// The built-in queue probe: each queue of the component is owned (by a live process),
    /// and its owner makes progress while messages wait (else 100: hung), and at most
    /// `depth_limit` messages wait (else 50).
    Queue,
}

/// `[[component]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Its name (unique).
    pub name: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Environment variables added to the supervisor's.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: Option<String>,
    /// The queues it owns (the built-in probe's, and what a failover hands over).
    pub queues: Vec<String>,
    /// Components with the same redundancy name are one active and its standbys: the first
    /// in the file starts as the active.
    pub redundancy: Option<String>,
    /// Its probe.
    pub probe: Probe,
    /// How often it is probed.
    pub probe_interval: Duration,
    /// How long a probe may run.
    pub probe_timeout: Duration,
    /// Restarts in place allowed within `retry_interval` before it is failed over.
    pub retry_count: u32,
    /// The window of `retry_count`, and of the probe scores' sum.
    pub retry_interval: Duration,
    /// The wait before a restart, doubled for each restart in the window.
    pub restart_backoff: Duration,
    /// How long `stop` (or SIGTERM) has before SIGKILL.
    pub stop_timeout: Duration,
    /// How long `start` has; and how long after a start a component is given before its
    /// probes count.
    pub start_timeout: Duration,
    /// The queue probe's depth limit.
    pub depth_limit: u64,
    /// Run before every start (and on a reload): failing refuses the start.
    pub validate: Option<Vec<String>>,
    /// Run to start it instead of running `command` directly (then `command` is what the
    /// start leaves running, found as the start's process tree).
    pub start: Option<Vec<String>>,
    /// Run to stop it, before SIGTERM.
    pub stop: Option<Vec<String>>,
    /// Run on a standby before it is made active: failing, it is not chosen.
    pub monitor_check: Option<Vec<String>>,
}

/// The file as written, before checks.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    supervisor: RawSupervisor,
    #[serde(default)]
    component: Vec<RawComponent>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    name: String,
    domain: Option<String>,
    #[serde(default = "three")]
    failover_limit: u32,
    #[serde(default = "ten_minutes", with = "humantime_serde_compat")]
    failover_window: Duration,
    give_over: Option<Command>,
}

#[derive(serde::Deserialize, Clone)]
#[serde(untagged)]
enum Command {
    Words(Vec<String>),
    Shell(String),
}

/// The largest duration taken (100 years).
const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

impl Command {
    /// An empty argument list, or an empty program name.
    fn is_empty(&self) -> bool {
        match self {
            Command::Words(w) => w.first().is_none_or(String::is_empty),
            Command::Shell(_) => false,
        }
    }

    fn words(self) -> Vec<String> {
        match self {
            Command::Words(w) => w,
            // A string is a shell command line.
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s],
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: String,
    command: Command,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    queues: Vec<String>,
    redundancy: Option<String>,
    probe: Option<Command>,
    #[serde(default = "two_seconds", with = "humantime_serde_compat")]
    probe_interval: Duration,
    #[serde(default = "two_seconds", with = "humantime_serde_compat")]
    probe_timeout: Duration,
    #[serde(default = "two")]
    retry_count: u32,
    #[serde(default = "five_minutes", with = "humantime_serde_compat")]
    retry_interval: Duration,
    #[serde(default = "hundred_ms", with = "humantime_serde_compat")]
    restart_backoff: Duration,
    #[serde(default = "ten_seconds", with = "humantime_serde_compat")]
    stop_timeout: Duration,
    #[serde(default = "ten_seconds", with = "humantime_serde_compat")]
    start_timeout: Duration,
    #[serde(default = "thousand")]
    depth_limit: u64,
    validate: Option<Command>,
    start: Option<Command>,
    stop: Option<Command>,
    monitor_check: Option<Command>,
}

fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn thousand() -> u64 {
    1000
}
fn hundred_ms() -> Duration {
    Duration::from_millis(100)
}
fn two_seconds() -> Duration {
    Duration::from_secs(2)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

/// Durations as operators write them: `"2s"`, `"500ms"`, `"1m 30s"` (humantime).
mod humantime_serde_compat {
    use serde::Deserialize;
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a duration (\"2s\", \"500ms\"): {e}"))
        })
    }
}

impl Config {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, line and field.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        Config::parse(&file, &text)
    }

    /// Parses and checks a configuration's text; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, line and field.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            file: file.into(),
            line: e.span().map(|s| line_of(text, s.start)),
            field: "(file)".into(),
            message: e.message().to_string(),
        })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string().replace(".component[", "component[");
            let inner = e.into_inner();
            ConfigError {
                file: file.into(),
                line: inner.span().map(|s| line_of(text, s.start)),
                field: if field == "." { "(file)".into() } else { field },
                message: inner.message().to_string(),
            }
        })?;
        let bad = |field: String, message: String| ConfigError {
            file: file.into(),
            line: find_line(text, &field),
            field,
            message,
        };
        let s = raw.supervisor;
        baton::check_queue_name(&s.name)
            .map_err(|e| bad("supervisor.name".into(), e.to_string()))?;
        if s.give_over.as_ref().is_some_and(Command::is_empty) {
            return Err(bad("supervisor.give_over".into(), "empty".into()));
        }
        if s.failover_window > MAX_DURATION {
            return Err(bad(
                "supervisor.failover_window".into(),
                "too large (at most 100 years)".into(),
            ));
        }
        if let Some(d) = &s.domain {
            baton::Domain::new(d).map_err(|e| bad("supervisor.domain".into(), e.to_string()))?;
        }
        let mut components = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, c) in raw.component.into_iter().enumerate() {
            let at = |f: &str| format!("component[{i}].{f}");
            baton::check_queue_name(&c.name).map_err(|e| bad(at("name"), e.to_string()))?;
            if !names.insert(c.name.clone()) {
                return Err(bad(at("name"), format!("{:?} is named twice", c.name)));
            }
            let command = c.command.words();
            if command.is_empty() || command[0].is_empty() {
                return Err(bad(at("command"), "empty".into()));
            }
            for q in &c.queues {
                baton::check_queue_name(q).map_err(|e| bad(at("queues"), e.to_string()))?;
            }
            let probe = match &c.probe {
                None => Probe::None,
                Some(Command::Shell(s)) if s == "queue" => Probe::Queue,
                Some(cmd) => Probe::Command(cmd.clone().words()),
            };
            if probe == Probe::Queue && c.queues.is_empty() {
                return Err(bad(
                    at("probe"),
                    "the queue probe needs the component's queues (queues = [...])".into(),
                ));
            }
            for (f, d) in [
                ("probe_interval", c.probe_interval),
                ("probe_timeout", c.probe_timeout),
                ("retry_interval", c.retry_interval),
                ("start_timeout", c.start_timeout),
            ] {
                if d.is_zero() {
                    return Err(bad(at(f), "must be more than zero".into()));
                }
            }
            // Every duration is added to an Instant (and the back-off doubled up to 2^16
            // times): one too large would overflow it, a panic at the first use.
            for (f, d) in [
                ("probe_interval", c.probe_interval),
                ("probe_timeout", c.probe_timeout),
                ("retry_interval", c.retry_interval),
                ("restart_backoff", c.restart_backoff),
                ("stop_timeout", c.stop_timeout),
                ("start_timeout", c.start_timeout),
            ] {
                if d > MAX_DURATION {
                    return Err(bad(at(f), "too large (at most 100 years)".into()));
                }
            }
            for (f, m) in [
                ("validate", &c.validate),
                ("start", &c.start),
                ("stop", &c.stop),
                ("monitor_check", &c.monitor_check),
                ("probe", &c.probe),
            ] {
                if m.as_ref().is_some_and(Command::is_empty) {
                    return Err(bad(at(f), "empty".into()));
                }
            }
            components.push(Component {
                name: c.name,
                command,
                env: c.env,
                cwd: c.cwd,
                queues: c.queues,
                redundancy: c.redundancy,
                probe,
                probe_interval: c.probe_interval,
                probe_timeout: c.probe_timeout,
                retry_count: c.retry_count,
                retry_interval: c.retry_interval,
                restart_backoff: c.restart_backoff,
                stop_timeout: c.stop_timeout,
                start_timeout: c.start_timeout,
                depth_limit: c.depth_limit,
                validate: c.validate.map(Command::words),
                start: c.start.map(Command::words),
                stop: c.stop.map(Command::words),
                monitor_check: c.monitor_check.map(Command::words),
            });
        }
        Ok(Config {
            supervisor: Supervisor {
                name: s.name,
                domain: s.domain,
                failover_limit: s.failover_limit,
                failover_window: s.failover_window,
                give_over: s.give_over.map(Command::words),
            },
            components,
        })
    }

    /// The components of redundancy set `name`, in the file's order.
    pub fn redundancy_set(&self, name: &str) -> Vec<&Component> {
        self.components
            .iter()
            .filter(|c| c.redundancy.as_deref() == Some(name))
            .collect()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of a checked field (`component[1].probe`): the `[[component]]` table's
/// occurrence, then the key in it.
fn find_line(text: &str, field: &str) -> Option<usize> {
    let (table, key) = field.split_once('.')?;
    let (section, index) = match table.split_once('[') {
        Some((s, i)) => (s, i.trim_end_matches(']').parse::<usize>().ok()?),
        None => (table, 0),
    };
    let header = if table.contains('[') {
        format!("[[{section}]]")
    } else {
        format!("[{section}]")
    };
    let mut seen = 0;
    let mut inside = false;
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = t == header && {
                seen += 1;
                seen == index + 1
            };
            continue;
        }
        if inside && t.split('=').next().is_some_and(|k| k.trim() == key) {
            return Some(n + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[supervisor]
name = "csa104"
failover_limit = 2
failover_window = "1m"
give_over = ["/bin/echo", "gave over"]

[[component]]
name = "a"
command = ["./active"]
queues = ["q"]
redundancy = "csa"
probe = "queue"
probe_interval = "500ms"

[[component]]
name = "b"
command = "exec ./standby --x"
redundancy = "csa"
retry_count = 3
"#;

    #[test]
    fn a_configuration_reads_with_its_defaults() {
        let c = Config::parse("s.toml", GOOD).unwrap();
        assert_eq!(c.supervisor.failover_window, Duration::from_secs(60));
        assert_eq!(c.components[0].probe, Probe::Queue);
        assert_eq!(c.components[0].probe_interval, Duration::from_millis(500));
        assert_eq!(c.components[1].command[..2], ["/bin/sh", "-c"]);
        assert_eq!(c.components[1].retry_count, 3);
        assert_eq!(c.components[1].retry_interval, Duration::from_secs(300));
        assert_eq!(c.redundancy_set("csa").len(), 2);
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let e = Config::parse("s.toml", &GOOD.replace("\"500ms\"", "\"soon\"")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(14), "component[0].probe_interval")
        );
        assert!(
            e.to_string()
                .starts_with("s.toml, line 14: component[0].probe_interval:"),
            "{e}"
        );
        let e = Config::parse("s.toml", &GOOD.replace("retry_count = 3", "retry_cont = 3"))
            .unwrap_err();
        assert_eq!(e.line, Some(20), "{e}");
        assert!(e.to_string().contains("retry_cont"), "{e}");
        let e = Config::parse("s.toml", &GOOD.replace("name = \"b\"", "name = \"a\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(17), "component[1].name"));
        let e = Config::parse("s.toml", &GOOD.replace("queues = [\"q\"]", "")).unwrap_err();
        assert_eq!(e.field, "component[0].probe", "{e}");
        let e = Config::parse("s.toml", "[supervisor\nname=1").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
