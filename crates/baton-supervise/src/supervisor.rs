//! The supervisor: runs the components, watches their process trees, probes them, and
//! escalates (restart, failover, give over) by the policy of `policy`.
//!
//! One supervisor per name runs at a time: it owns the queue `supervise.<name>` of its domain
//! (the same robust ownership as any queue: a second supervisor is refused while the first
//! lives, in whatever pid namespace, and takes over when it dies). Operators' commands
//! (`restart`, `failover`, `stop`) come to it as requests on that queue. Its state (roles,
//! restart and failover history, what it started) is a file in `/dev/shm`, written at every
//! change: a supervisor killed and started again reads it, finds its components still running
//! (by their mark, `process`) and goes on with their history.

use crate::config::{Component, Config, Probe};
use crate::policy::{Escalation, Failovers, Limits, Step, COMPLETE_FAILURE};
use crate::process::{self, Ended, MARK_ENV};
use baton::{Domain, Queue, Receiver};
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a component is in its redundancy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not in a set.
    Alone,
    /// The set's active.
    Active,
    /// A standby of its set.
    Standby,
}

/// Where a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Running (its tree has a live process).
    Running,
    /// Waiting to be started again (restart back-off).
    Restarting,
    /// Stopped by an operator.
    Stopped,
    /// Given over: not started again.
    GaveOver,
}

/// A component's state, as the state file and `status` show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ComponentState {
    /// Its name.
    pub name: String,
    /// Active, standby or alone.
    pub role: Role,
    /// Running, restarting, stopped, gave-over.
    pub phase: Phase,
    /// The pid of its first process (in the supervisor's pid namespace), while it has one.
    pub pid: Option<i32>,
    /// Its mark's generation (one per start).
    pub generation: u64,
    /// Restarts in place in the current window (unix ns of each).
    pub restarts: Vec<u64>,
    /// Restarts since the supervisor first ran.
    pub restarts_total: u64,
    /// The last probe scores (newest last).
    pub scores: Vec<u32>,
    /// How its last process tree ended.
    pub last_end: Option<String>,
}

/// The whole state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The supervisor's name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Failovers in the window (unix ns).
    pub failovers: Vec<u64>,
    /// Why it gave over, if it did.
    pub gave_over: Option<String>,
    /// The components.
    pub components: Vec<ComponentState>,
}

/// What the supervisor reports, line by line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The component, if it is about one.
    pub component: Option<String>,
    /// `started`, `exited`, `probe`, `restart`, `failover`, `give-over`, `validate-failed`,
    /// `monitor-check-failed`, `stopped`, `adopted`, `command`, `role` (the roles followed a
    /// queue's owner), ...
    pub event: String,
    /// Details.
    pub detail: String,
}

/// How a method ended (`None`: past its time) and what it printed.
type MethodOutcome = (Option<Ended>, String);

struct Comp {
    cfg: Component,
    st: ComponentState,
    esc: Escalation,
    next_probe: Instant,
    started: Instant,
    /// The tree's pids last found (for a component whose first process ended).
    tree: BTreeSet<i32>,
    last_scan: Instant,
    /// When it was first started by this supervisor.
    first_launch: Option<Instant>,
    /// A command probe running in a thread of its own: the start it probes (generation) and
    /// where its outcome comes.
    probing: Option<(u64, std::sync::mpsc::Receiver<MethodOutcome>)>,
}

impl Comp {
    fn mark(&self, sup: &str) -> String {
        format!("{sup}/{}/{}", self.cfg.name, self.st.generation)
    }

    fn mark_in(&self, domain: &Domain, sup: &str) -> String {
        self.mark(&format!("{domain}/{sup}"))
    }

    fn limits(&self) -> Limits {
        Limits {
            retry_count: self.cfg.retry_count,
            retry_interval: self.cfg.retry_interval,
            restart_backoff: self.cfg.restart_backoff,
        }
    }
}

/// A running supervisor.
pub struct Supervisor {
    cfg: Config,
    domain: Domain,
    comps: Vec<Comp>,
    failovers: Failovers,
    failover_times: Vec<u64>,
    gave_over: Option<String>,
    control: Receiver,
    _control_queue: Queue,
    state_path: std::path::PathBuf,
    report: Box<dyn FnMut(Report)>,
    /// When the roles are next compared with the queues' owners.
    next_owner_look: Instant,
    /// Children reaped while a tree was being stopped, handled at the next tick.
    reaped: Vec<(i32, Ended)>,
}

/// What can stop a supervisor from running.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// Another supervisor of that name runs.
    #[error("another supervisor named {name} runs (pid {pid})")]
    AlreadyRunning {
        /// The name.
        name: String,
        /// Its pid, as its queue shows it.
        pid: String,
    },
    /// A baton error (the control queue).
    #[error("supervisor {0}")]
    Baton(String),
    /// The OS refused something (subreaper, the state file).
    #[error("supervisor: {0}")]
    Io(#[from] std::io::Error),
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The queue a supervisor owns (its liveness and its operators' commands).
pub fn control_queue_name(supervisor: &str) -> String {
    format!("supervise.{supervisor}")
}

/// The state file of supervisor `name` in `domain`.
pub fn state_path(domain: &Domain, name: &str) -> std::path::PathBuf {
    std::path::Path::new(baton::SHM_DIR).join(format!("baton.{domain}~.supervise.{name}"))
}

/// Reads a supervisor's state file.
///
/// # Errors
///
/// The file's, or a message saying it is not a state.
pub fn read_state(domain: &Domain, name: &str) -> Result<State, String> {
    let path = state_path(domain, name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Supervisor {
    /// Takes the supervisor's name (refused while another supervisor of that name lives),
    /// reads its state if it ran before, adopts the components still running, and makes
    /// itself the subreaper of what it starts.
    ///
    /// # Errors
    ///
    /// [`SuperviseError::AlreadyRunning`], and what the control queue and the OS refuse.
    pub fn start(
        cfg: Config,
        report: Box<dyn FnMut(Report)>,
    ) -> Result<Supervisor, SuperviseError> {
        let domain = match &cfg.supervisor.domain {
            Some(d) => Domain::new(d),
            None => Domain::from_env(),
        }
        .map_err(|e| SuperviseError::Baton(e.to_string()))?;
        let name = cfg.supervisor.name.clone();
        let qname = control_queue_name(&name);
        let q = match Queue::open(&domain, &qname) {
            Err(baton::OpenError::NotFound { .. }) => {
                Queue::create(&domain, &qname, &baton::Attributes::default())
            }
            other => other,
        }
        .map_err(|e| SuperviseError::Baton(e.to_string()))?;
        let control = match q.receiver() {
            Ok(r) => r,
            Err(baton::OwnError::Busy { .. }) => {
                return Err(SuperviseError::AlreadyRunning {
                    pid: q
                        .status()
                        .owner_pid
                        .map_or("unknown".into(), |p| p.to_string()),
                    name,
                })
            }
            Err(e) => return Err(SuperviseError::Baton(e.to_string())),
        };
        process::become_subreaper()?;
        let state_path = state_path(&domain, &name);
        let old: Option<State> = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let now = Instant::now();
        let now_ns = unix_ns();
        let at = |ns: u64| now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(ns)));
        let mut comps = Vec::new();
        for c in &cfg.components {
            let prior = old
                .as_ref()
                .and_then(|o| o.components.iter().find(|s| s.name == c.name));
            // A prior role is kept; a component new to its set is a standby, and a set left
            // without an active (or with two) is put right below (`settle_roles`).
            let role = match (&c.redundancy, prior) {
                (None, _) => Role::Alone,
                (Some(_), Some(p)) if p.role != Role::Alone => p.role,
                (Some(_), _) => Role::Standby,
            };
            let mut esc = Escalation::default();
            let mut restarts = Vec::new();
            if let Some(p) = prior {
                for &t in &p.restarts {
                    if let Some(i) = at(t) {
                        esc.replay_restart(i);
                        restarts.push(t);
                    }
                }
            }
            comps.push(Comp {
                st: ComponentState {
                    name: c.name.clone(),
                    role,
                    phase: prior.map_or(Phase::Restarting, |p| match p.phase {
                        Phase::Running => Phase::Running,
                        other => other,
                    }),
                    pid: None,
                    generation: prior.map_or(0, |p| p.generation),
                    restarts,
                    restarts_total: prior.map_or(0, |p| p.restarts_total),
                    scores: Vec::new(),
                    last_end: prior.and_then(|p| p.last_end.clone()),
                },
                cfg: c.clone(),
                esc,
                next_probe: now + c.start_timeout.min(c.probe_interval),
                started: now,
                tree: BTreeSet::new(),
                last_scan: now,
                first_launch: None,
                probing: None,
            });
        }
        let mut failovers = Failovers::default();
        let mut failover_times = Vec::new();
        if let Some(o) = &old {
            for &t in &o.failovers {
                if let Some(i) = at(t) {
                    failovers.allow(i, u32::MAX, cfg.supervisor.failover_window);
                    failover_times.push(t);
                }
            }
        }
        let mut s = Supervisor {
            gave_over: old.as_ref().and_then(|o| o.gave_over.clone()),
            cfg,
            domain,
            comps,
            failovers,
            failover_times,
            control,
            _control_queue: q,
            state_path,
            report,
            next_owner_look: now,
            reaped: Vec::new(),
        };
        if old.is_none() && s.state_path.exists() {
            s.say(
                None,
                "state-unreadable",
                format!(
                    "{}: not a state; the running components are found by their marks",
                    s.state_path.display()
                ),
            );
        }
        // Components a dead supervisor left running are adopted, not started twice: found by
        // their marks, whatever the state file says (lost, truncated, or saved before a start
        // it did not see), the newest generation running is adopted, older ones stopped.
        for i in 0..s.comps.len() {
            let prefix = format!(
                "{}/{}/{}/",
                s.domain, s.cfg.supervisor.name, s.comps[i].cfg.name
            );
            let mut gens = BTreeSet::new();
            for p in process::marked_prefix(&prefix) {
                if let Some(g) = process::mark_of(p)
                    .and_then(|m| m.strip_prefix(&prefix).and_then(|g| g.parse::<u64>().ok()))
                {
                    gens.insert(g);
                }
            }
            if let Some(&newest) = gens.last() {
                if newest >= s.comps[i].st.generation
                    && matches!(s.comps[i].st.phase, Phase::Running | Phase::Restarting)
                {
                    s.comps[i].st.generation = newest;
                    s.comps[i].st.phase = Phase::Running;
                }
                for &g in &gens {
                    let running =
                        s.comps[i].st.phase == Phase::Running && g == s.comps[i].st.generation;
                    if !running {
                        s.say(Some(i), "stale", format!("generation {g} stopped"));
                        let _ = process::stop_tree(
                            &format!("{prefix}{g}"),
                            s.comps[i].cfg.stop_timeout,
                        );
                    }
                }
            }
        }
        s.settle_roles();
        for i in 0..s.comps.len() {
            s.comps[i].next_probe = now;
            if s.comps[i].st.phase == Phase::Running {
                let mark = s.comps[i].mark_in(&s.domain, &s.cfg.supervisor.name);
                let tree = process::marked(&mark);
                if tree.is_empty() {
                    s.comps[i].st.phase = Phase::Restarting;
                } else {
                    s.say(Some(i), "adopted", format!("running as {tree:?}"));
                    s.comps[i].tree = tree;
                    s.comps[i].first_launch = Some(now);
                }
            }
        }
        s.save();
        Ok(s)
    }

    /// The baton domain of the components' queues.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Takes a new configuration (SIGHUP): components whose definition did not change go on
    /// untouched (their processes, roles and history); changed ones are validated first (a
    /// failing `validate` refuses the whole reload, with its output), then stopped and
    /// started with the new definition; removed ones are stopped; new ones are started.
    ///
    /// # Errors
    ///
    /// Why the reload was refused (nothing changed then).
    pub fn reload(&mut self, new: Config) -> Result<(), String> {
        if new.supervisor.name != self.cfg.supervisor.name
            || new.supervisor.domain != self.cfg.supervisor.domain
        {
            return Err("the supervisor's name and domain cannot change on a reload".into());
        }
        for c in &new.components {
            let same = self.comps.iter().any(|o| o.cfg == *c);
            if let (false, Some(v)) = (same, &c.validate) {
                let cwd = c.cwd.as_deref().map(std::path::Path::new);
                let (ended, out) = process::run_method(v, &[], cwd, c.start_timeout);
                if ended != Some(Ended::Exited(0)) {
                    return Err(format!("{}: validate failed: {}", c.name, out.trim()));
                }
            }
        }
        // Removed or changed: stopped.
        for i in (0..self.comps.len()).rev() {
            let keep = new.components.iter().any(|c| *c == self.comps[i].cfg);
            if !keep {
                self.stop_component(i, "the configuration changed");
                let gone = self.comps.remove(i);
                self.say(
                    None,
                    "reload",
                    format!("{} stopped for the new configuration", gone.cfg.name),
                );
            }
        }
        let now = Instant::now();
        let mut comps = Vec::new();
        for c in &new.components {
            match self.comps.iter().position(|o| o.cfg == *c) {
                Some(i) => comps.push(self.comps.remove(i)),
                None => {
                    let role = match &c.redundancy {
                        None => Role::Alone,
                        Some(r) => {
                            let has_active =
                                comps.iter().chain(self.comps.iter()).any(|o: &Comp| {
                                    o.cfg.redundancy.as_ref() == Some(r)
                                        && o.st.role == Role::Active
                                });
                            if has_active {
                                Role::Standby
                            } else {
                                Role::Active
                            }
                        }
                    };
                    comps.push(Comp {
                        cfg: c.clone(),
                        st: ComponentState {
                            name: c.name.clone(),
                            role,
                            phase: Phase::Restarting,
                            pid: None,
                            generation: 0,
                            restarts: Vec::new(),
                            restarts_total: 0,
                            scores: Vec::new(),
                            last_end: None,
                        },
                        esc: Escalation::default(),
                        next_probe: now,
                        started: now,
                        tree: BTreeSet::new(),
                        last_scan: now,
                        first_launch: None,
                        probing: None,
                    });
                }
            }
        }
        self.comps = comps;
        self.cfg = new;
        self.settle_roles();
        self.say(None, "reload", "the new configuration is in force".into());
        self.save();
        Ok(())
    }

    fn say(&mut self, i: Option<usize>, event: &str, detail: String) {
        (self.report)(Report {
            component: i.map(|i| self.comps[i].cfg.name.clone()),
            event: event.into(),
            detail,
        });
    }

    fn save(&self) {
        let state = State {
            name: self.cfg.supervisor.name.clone(),
            pid: std::process::id(),
            failovers: self.failover_times.clone(),
            gave_over: self.gave_over.clone(),
            components: self.comps.iter().map(|c| c.st.clone()).collect(),
        };
        if let Ok(text) = serde_json::to_string_pretty(&state) {
            // Not `with_extension`: that replaces what follows the name's last dot (the
            // supervisor's name), the same file for every supervisor of the domain. `~` is in
            // no name.
            let mut temp = self.state_path.clone().into_os_string();
            temp.push("~new");
            if std::fs::write(&temp, text).is_ok() {
                let _ = std::fs::rename(&temp, &self.state_path);
            }
        }
    }

    /// Runs until `stop()` says so; then stops every component, last first. `reload()` is
    /// asked every round: a new configuration it gives is taken (see [`Supervisor::reload`]).
    pub fn run(
        &mut self,
        stop: impl Fn() -> bool,
        mut reload: impl FnMut() -> Option<Result<Config, String>>,
    ) {
        while !stop() {
            match reload() {
                Some(Ok(new)) => {
                    if let Err(why) = self.reload(new) {
                        self.say(None, "reload-refused", why);
                    }
                }
                Some(Err(why)) => self.say(None, "reload-refused", why),
                None => {}
            }
            self.tick();
            std::thread::sleep(TICK);
        }
        for i in (0..self.comps.len()).rev() {
            self.stop_component(i, "the supervisor stops");
        }
        process::kill_methods(); // probes still running in their threads
        process::reap(); // no zombie is left to an init that may not reap
        self.save();
    }

    /// One round: reap, watch, probe, restart, take operators' commands.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(process::reap());
        for (pid, ended) in reaped {
            if let Some(i) = self.comps.iter().position(|c| c.st.pid == Some(pid)) {
                self.comps[i].st.pid = None;
                self.comps[i].st.last_end = Some(ended.to_string());
                self.say(Some(i), "exited", format!("first process {pid}: {ended}"));
                self.save();
            }
        }
        for i in 0..self.comps.len() {
            match self.comps[i].st.phase {
                Phase::Running => {
                    if !self.alive(i, now) {
                        let why = self.comps[i]
                            .st
                            .last_end
                            .clone()
                            .unwrap_or_else(|| "its processes are gone".into());
                        self.say(Some(i), "failed", format!("its process tree ended ({why})"));
                        let step = {
                            let l = self.comps[i].limits();
                            self.comps[i].esc.failed(now, &l)
                        };
                        self.escalate(i, step, "process tree ended");
                    } else {
                        self.probe_outcome(i, now);
                        // The outcome may have restarted, failed over or given it over.
                        if self.comps[i].st.phase == Phase::Running
                            && now >= self.comps[i].next_probe
                            && self.comps[i].probing.is_none()
                        {
                            self.probe(i, now);
                        }
                    }
                }
                Phase::Restarting => {
                    if now >= self.comps[i].next_probe && self.may_launch(i, now) {
                        self.launch(i);
                    }
                }
                Phase::Stopped | Phase::GaveOver => {}
            }
        }
        if now >= self.next_owner_look {
            self.next_owner_look = now + OWNER_LOOK;
            for i in 0..self.comps.len() {
                let first_of_set = self.comps[i].cfg.redundancy.as_ref().is_some_and(|r| {
                    !self.comps[..i]
                        .iter()
                        .any(|o| o.cfg.redundancy.as_ref() == Some(r))
                });
                if first_of_set {
                    self.follow_owner(i);
                }
            }
        }
        self.commands();
    }

    /// Makes the roles of component `i`'s redundancy set follow its queues' owner.
    ///
    /// baton moves a queue without the supervisor: at an owner's death the standby waiting
    /// on it takes it over at once, whatever the supervisor's roles say. So the roles are
    /// read from the queues: the component whose process tree owns one of the set's queues
    /// is the active (found by the mark of the owning process), the one labelled active
    /// before becomes a standby, and a `role` line says so. What the roles drive follows:
    /// the queue probe judges the owner, `BATON_HA_STATE` of a start, a failover's
    /// direction, `status`. A labelled active whose tree is dead but whose death has not been
    /// handled yet keeps its label until it is, so its death escalates as the active's.
    fn follow_owner(&mut self, i: usize) {
        let Some(set) = self.comps[i].cfg.redundancy.clone() else {
            return;
        };
        let members: Vec<usize> = (0..self.comps.len())
            .filter(|&k| self.comps[k].cfg.redundancy.as_ref() == Some(&set))
            .collect();
        let queues: BTreeSet<String> = members
            .iter()
            .flat_map(|&k| self.comps[k].cfg.queues.iter().cloned())
            .collect();
        for name in queues {
            let Ok(q) = Queue::open(&self.domain, &name) else {
                continue;
            };
            let Some(pid) = q.status().owner_pid else {
                continue;
            };
            let Some(j) = self.component_of(pid) else {
                continue; // not one of ours (or in a pid namespace of its own)
            };
            if !members.contains(&j) || self.comps[j].st.role == Role::Active {
                return;
            }
            let old = members
                .iter()
                .copied()
                .find(|&k| self.comps[k].st.role == Role::Active);
            if let Some(k) = old {
                if self.comps[k].st.phase == Phase::Running && !self.lives(k) {
                    return; // its death is handled first, as the active's
                }
                self.comps[k].st.role = Role::Standby;
            }
            self.comps[j].st.role = Role::Active;
            let was = old.map_or(String::new(), |k| {
                format!("; {} is a standby now", self.comps[k].cfg.name)
            });
            self.say(
                Some(j),
                "role",
                format!("it owns {name} (pid {pid}): the active{was}"),
            );
            self.save();
            return;
        }
    }

    /// Every redundancy set has one active: a set left without (its active removed by a reload,
    /// or moved to another set; a state file that does not say) gets its first member that is
    /// not stopped or given over; of two (a state file's), the first stays.
    fn settle_roles(&mut self) {
        let sets: BTreeSet<String> = self
            .comps
            .iter()
            .filter_map(|c| c.cfg.redundancy.clone())
            .collect();
        for set in sets {
            let members: Vec<usize> = (0..self.comps.len())
                .filter(|&k| self.comps[k].cfg.redundancy.as_ref() == Some(&set))
                .collect();
            let mut actives = members
                .iter()
                .copied()
                .filter(|&k| self.comps[k].st.role == Role::Active);
            match actives.next() {
                Some(_) => {
                    for k in actives.collect::<Vec<_>>() {
                        self.comps[k].st.role = Role::Standby;
                    }
                }
                None => {
                    let first = members
                        .iter()
                        .copied()
                        .find(|&k| {
                            !matches!(self.comps[k].st.phase, Phase::Stopped | Phase::GaveOver)
                        })
                        .or(members.first().copied());
                    if let Some(k) = first {
                        self.comps[k].st.role = Role::Active;
                    }
                }
            }
        }
    }

    /// The component whose current start's process tree holds `pid` (by the process's mark).
    ///
    /// `pid` is what the owner sees (`Status::owner_pid`): in a pid namespace of its own, it
    /// may be the pid of another process here. A match with the labelled active changes
    /// nothing and is taken as it is; any other is taken only when exactly one of the
    /// supervisor's marked processes has `pid` as its own pid, and that one is in the
    /// supervisor's pid namespace (a scan of the marks, so only when the roles would change).
    fn component_of(&self, pid: u32) -> Option<usize> {
        let pid = i32::try_from(pid).ok()?;
        let mark = process::mark_of(pid)?;
        let j = self
            .comps
            .iter()
            .position(|c| c.mark_in(&self.domain, &self.cfg.supervisor.name) == mark)?;
        if self.comps[j].st.role == Role::Active {
            return Some(j);
        }
        let depth = process::ns_pids(std::process::id() as i32)?.len();
        let prefix = format!("{}/{}/", self.domain, self.cfg.supervisor.name);
        let seen: Vec<Vec<i32>> = process::marked_prefix(&prefix)
            .into_iter()
            .filter_map(process::ns_pids)
            .filter(|ns| ns.last() == Some(&pid))
            .collect();
        if seen.len() != 1 || seen[0].len() != depth {
            return None; // ambiguous: the roles stay as they are
        }
        Some(j)
    }

    /// Whether component `k`'s tree lives now (without waiting for the next reap).
    fn lives(&self, k: usize) -> bool {
        let c = &self.comps[k];
        match c.st.pid {
            Some(p) => process::lives(p),
            None => {
                process::any_alive(&c.tree, &c.mark_in(&self.domain, &self.cfg.supervisor.name))
            }
        }
    }

    /// A standby starts once its set's active has taken its queues first: when every queue of
    /// the active has an owner (looked at from 300 ms after the active was first started), or,
    /// for an active without queues, 300 ms after; in any case once the active's
    /// `start_timeout` has passed (an active that never takes its queues is not waited for
    /// longer). One queue owned is not enough: the standby would take the others at once.
    fn may_launch(&self, i: usize, now: Instant) -> bool {
        let c = &self.comps[i];
        if c.st.role != Role::Standby {
            return true;
        }
        self.comps
            .iter()
            .find(|a| a.st.role == Role::Active && a.cfg.redundancy == c.cfg.redundancy)
            .is_none_or(|a| {
                // An active stopped or given over is not waited for: it may never start.
                if !matches!(a.st.phase, Phase::Running | Phase::Restarting) {
                    return true;
                }
                let Some(first) = a.first_launch else {
                    return false;
                };
                now >= first + a.cfg.start_timeout
                    || (now >= first + a.cfg.start_timeout.min(Duration::from_millis(300))
                        && self.took_its_queues(a))
            })
    }

    /// Whether every queue of component `a` has an owner (true of one without queues).
    fn took_its_queues(&self, a: &Comp) -> bool {
        a.cfg
            .queues
            .iter()
            .all(|name| Queue::inspect(&self.domain, name).is_ok_and(|st| st.owner_pid.is_some()))
    }

    fn alive(&mut self, i: usize, now: Instant) -> bool {
        let mark = self.comps[i].mark_in(&self.domain, &self.cfg.supervisor.name);
        let c = &mut self.comps[i];
        if c.st.pid.is_some() {
            return true;
        }
        // The first process ended (or was adopted): the tree lives while a marked process
        // does (a daemon's children). Looked for at most every 50 ms: among the processes
        // found last time first (a few reads), in the whole of `/proc` only when none of them
        // is left (a process forked since is found then).
        if now.duration_since(c.last_scan) >= Duration::from_millis(50) || c.tree.is_empty() {
            c.last_scan = now;
            if !process::any_alive(&c.tree, &mark) {
                c.tree = process::marked(&mark);
            }
        }
        !c.tree.is_empty()
    }

    /// Starts component `i` (validate first): its process tree carries its mark.
    fn launch(&mut self, i: usize) {
        self.follow_owner(i); // its BATON_HA_STATE is what the queues say
        let c = &self.comps[i];
        if let Some(v) = c.cfg.validate.clone() {
            let (ended, out) =
                process::run_method(&v, &self.env(i), self.cwd(i), c.cfg.start_timeout);
            if ended != Some(Ended::Exited(0)) {
                let why = ended.map_or("timed out".to_string(), |e| e.to_string());
                self.say(Some(i), "validate-failed", format!("{why}: {}", out.trim()));
                let now = Instant::now();
                let step = {
                    let l = self.comps[i].limits();
                    self.comps[i].esc.failed(now, &l)
                };
                self.escalate(i, step, "validate failed");
                return;
            }
        }
        self.comps[i].st.generation += 1;
        let mark = self.comps[i].mark_in(&self.domain, &self.cfg.supervisor.name);
        let argv = self.comps[i]
            .cfg
            .start
            .clone()
            .unwrap_or_else(|| self.comps[i].cfg.command.clone());
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.env(i))
            .env(MARK_ENV, &mark)
            .stdin(std::process::Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        if let Some(d) = self.cwd(i) {
            cmd.current_dir(d);
        }
        let now = Instant::now();
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id() as i32;
                std::mem::forget(child); // reaped by `process::reap`, as every child
                let c = &mut self.comps[i];
                c.st.pid = Some(pid);
                c.st.phase = Phase::Running;
                c.started = now;
                c.first_launch.get_or_insert(now);
                c.tree.clear();
                c.next_probe = now + c.cfg.start_timeout.min(c.cfg.probe_interval);
                let role = c.st.role;
                self.say(Some(i), "started", format!("pid {pid} as {role:?}"));
            }
            Err(e) => {
                self.say(Some(i), "start-failed", format!("{:?}: {e}", argv[0]));
                let step = {
                    let l = self.comps[i].limits();
                    self.comps[i].esc.failed(now, &l)
                };
                self.escalate(i, step, "could not start");
                return;
            }
        }
        self.save();
    }

    fn env(&self, i: usize) -> Vec<(String, String)> {
        let c = &self.comps[i];
        let mut env: Vec<(String, String)> = c
            .cfg
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("BATON_DOMAIN".into(), self.domain.to_string()));
        env.push(("BATON_COMPONENT".into(), c.cfg.name.clone()));
        env.push((
            "BATON_HA_STATE".into(),
            match c.st.role {
                Role::Alone | Role::Active => "active",
                Role::Standby => "standby",
            }
            .into(),
        ));
        env
    }

    fn cwd(&self, i: usize) -> Option<&std::path::Path> {
        self.comps[i].cfg.cwd.as_deref().map(std::path::Path::new)
    }

    /// Probes component `i`: the queue probe at once; a command probe in a thread of its own
    /// (one component's slow probe does not hold up the others' deaths, probes and commands),
    /// its outcome taken by `probe_outcome` at a later tick.
    fn probe(&mut self, i: usize, now: Instant) {
        let c = &mut self.comps[i];
        c.next_probe = now + c.cfg.probe_interval;
        match c.cfg.probe.clone() {
            Probe::None => {}
            Probe::Command(argv) => {
                let (tx, rx) = std::sync::mpsc::channel();
                let env = self.env(i);
                let cwd = self.cwd(i).map(std::path::Path::to_path_buf);
                let timeout = self.comps[i].cfg.probe_timeout;
                let spawned = std::thread::Builder::new()
                    .name("baton-probe".into())
                    .spawn(move || {
                        let _ = tx.send(process::run_method(&argv, &env, cwd.as_deref(), timeout));
                    });
                match spawned {
                    Ok(_) => self.comps[i].probing = Some((self.comps[i].st.generation, rx)),
                    Err(e) => {
                        self.say(Some(i), "probe-failed", format!("no thread to run it: {e}"));
                        self.scored(i, now, COMPLETE_FAILURE);
                    }
                }
            }
            Probe::Queue => {
                let score = self.queue_score(i);
                self.scored(i, now, score);
            }
        }
    }

    /// Takes the outcome of component `i`'s command probe, if it has come. One of an earlier
    /// start (the component was restarted meanwhile) is dropped.
    fn probe_outcome(&mut self, i: usize, now: Instant) {
        let Some((generation, rx)) = &self.comps[i].probing else {
            return;
        };
        let generation = *generation;
        let (ended, out) = match rx.try_recv() {
            Ok(outcome) => outcome,
            // A probe of an earlier start is not waited for: it would hold up the probes of
            // this one until it ended (up to probe_timeout). It runs on to its own end, its
            // outcome dropped with the channel.
            Err(std::sync::mpsc::TryRecvError::Empty)
                if generation != self.comps[i].st.generation =>
            {
                self.comps[i].probing = None;
                return;
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.comps[i].probing = None;
                return;
            }
        };
        self.comps[i].probing = None;
        if generation != self.comps[i].st.generation {
            return;
        }
        let score = match ended {
            Some(Ended::Exited(code)) => code.clamp(0, 255) as u32,
            Some(Ended::Signaled(_)) => COMPLETE_FAILURE,
            None => {
                self.say(Some(i), "probe-timeout", out);
                COMPLETE_FAILURE
            }
        };
        self.scored(i, now, score);
    }

    /// Records a probe's score for component `i` and escalates on it.
    fn scored(&mut self, i: usize, now: Instant, score: u32) {
        let c = &mut self.comps[i];
        c.st.scores.push(score);
        if c.st.scores.len() > 8 {
            c.st.scores.remove(0);
        }
        if score == 0 {
            return;
        }
        self.say(Some(i), "probe", format!("score {score}"));
        let step = {
            let l = self.comps[i].limits();
            self.comps[i].esc.probed(now, score, &l)
        };
        self.escalate(i, step, &format!("probe scored {score}"));
    }

    /// The built-in queue probe (see `config::Probe::Queue`). Only an active's queues are
    /// judged (a standby owns none), the roles brought up to date with the queues' owners
    /// first; a stall is the owner's: it is blamed on `i` unless the owner is another of
    /// the supervisor's components.
    fn queue_score(&mut self, i: usize) -> u32 {
        self.follow_owner(i);
        let c = &self.comps[i];
        if c.st.role == Role::Standby {
            return 0;
        }
        let mut score = 0;
        for name in &c.cfg.queues {
            let Ok(q) = Queue::open(&self.domain, name) else {
                continue; // not made yet: the component makes it
            };
            let st = q.status();
            let waiting: u64 = st
                .lanes
                .iter()
                .map(|l| l.messages.saturating_sub(l.unacknowledged))
                .sum();
            if st.owner_pid.is_none() && waiting > 0 {
                score = score.max(COMPLETE_FAILURE); // nobody takes what waits
            } else if st.owner_stalled(c.cfg.probe_timeout)
                && st
                    .owner_pid
                    .and_then(|p| self.component_of(p))
                    .is_none_or(|j| j == i)
            {
                score = score.max(COMPLETE_FAILURE); // hung: owns, and takes nothing
            } else if waiting > c.cfg.depth_limit {
                score = score.max(50);
            }
        }
        score
    }

    fn escalate(&mut self, i: usize, step: Step, why: &str) {
        match step {
            Step::Continue => {}
            Step::Restart { after } => {
                self.stop_tree(i);
                let c = &mut self.comps[i];
                c.st.phase = Phase::Restarting;
                c.st.restarts_total += 1;
                c.st.restarts.push(unix_ns());
                let window = c.cfg.retry_interval.as_nanos() as u64;
                let now_ns = unix_ns();
                c.st.restarts.retain(|&t| now_ns.saturating_sub(t) < window);
                c.next_probe = Instant::now() + after;
                self.say(Some(i), "restart", format!("{why}; in {after:?}"));
                self.save();
            }
            Step::Failover => self.failover(i, why),
        }
    }

    /// Fails component `i` over to a standby of its set that passes its monitor_check, or
    /// gives over.
    fn failover(&mut self, i: usize, why: &str) {
        if self.comps[i].st.role != Role::Active {
            // A standby (or a component alone) past its restarts: nothing to fail over to.
            let whom = if self.comps[i].st.role == Role::Standby {
                "a standby"
            } else {
                "a component without standbys"
            };
            self.give_over(i, &format!("{why}: {whom}, past its restarts"), false);
            return;
        }
        let set = self.comps[i].cfg.redundancy.clone();
        let candidates: Vec<usize> = match &set {
            Some(r) => (0..self.comps.len())
                // A standby not started yet (it waits for the active's first moments, or
                // for a restart) is a candidate too: it is started as the active.
                .filter(|&j| {
                    j != i
                        && self.comps[j].cfg.redundancy.as_ref() == Some(r)
                        && matches!(self.comps[j].st.phase, Phase::Running | Phase::Restarting)
                })
                .collect(),
            None => Vec::new(),
        };
        // Every candidate is checked: a standby waiting on the queues could take them over
        // whatever the supervisor chose, so one that fails its monitor_check must not be
        // left waiting.
        let mut chosen = None;
        let mut unfit = Vec::new();
        for j in candidates {
            if let Some(m) = self.comps[j].cfg.monitor_check.clone() {
                let (ended, out) = process::run_method(
                    &m,
                    &self.env(j),
                    self.cwd(j),
                    self.comps[j].cfg.start_timeout,
                );
                if ended != Some(Ended::Exited(0)) {
                    self.say(Some(j), "monitor-check-failed", out.trim().to_string());
                    unfit.push(j);
                    continue;
                }
            }
            chosen = chosen.or(Some(j));
        }
        let Some(j) = chosen else {
            self.give_over(i, &format!("{why}, and no standby to fail over to"), true);
            return;
        };
        // The unfit standbys are restarted (their own escalation) before the active goes,
        // so none of them is waiting to take its queues.
        for k in unfit {
            if self.comps[k].st.phase == Phase::Running {
                let step = {
                    let l = self.comps[k].limits();
                    self.comps[k].esc.failed(Instant::now(), &l)
                };
                self.escalate(k, step, "its monitor_check failed");
            }
        }
        let limit = self.cfg.supervisor.failover_limit;
        let window = self.cfg.supervisor.failover_window;
        if !self.failovers.allow(Instant::now(), limit, window) {
            self.give_over(
                i,
                &format!("{why}, and {limit} failovers within {window:?} already"),
                true,
            );
            return;
        }
        self.failover_times.push(unix_ns());
        let window_ns = window.as_nanos() as u64;
        let now_ns = unix_ns();
        self.failover_times
            .retain(|&t| now_ns.saturating_sub(t) < window_ns);
        self.save(); // the failover counts even if the supervisor dies during the stop
                     // The failed one goes: its queues' owner lock with it, and the standby, waiting on
                     // it, takes the queues over with every message.
        self.stop_tree(i);
        self.comps[j].st.role = Role::Active;
        if self.comps[j].st.phase == Phase::Restarting {
            self.comps[j].next_probe = Instant::now();
        }
        let c = &mut self.comps[i];
        c.st.role = Role::Standby;
        c.esc.reset();
        c.st.restarts.clear();
        c.st.phase = Phase::Restarting;
        c.next_probe = Instant::now();
        let (from, to) = (
            self.comps[i].cfg.name.clone(),
            self.comps[j].cfg.name.clone(),
        );
        self.say(
            Some(i),
            "failover",
            format!("{why}: {from} -> {to}; {from} restarts as a standby"),
        );
        self.save();
    }

    /// Gives over: the component (and with `whole_set` its set) stop and are not started
    /// again; the configured action runs with the reason.
    fn give_over(&mut self, i: usize, why: &str, whole_set: bool) {
        let set = self.comps[i].cfg.redundancy.clone();
        for j in 0..self.comps.len() {
            if j == i || (whole_set && set.is_some() && self.comps[j].cfg.redundancy == set) {
                self.stop_tree(j);
                self.comps[j].st.phase = Phase::GaveOver;
            }
        }
        self.gave_over = Some(format!("{}: {why}", self.comps[i].cfg.name));
        self.say(Some(i), "give-over", why.to_string());
        if let Some(action) = self.cfg.supervisor.give_over.clone() {
            let mut env = self.env(i);
            env.push(("BATON_GIVE_OVER_REASON".into(), why.to_string()));
            let (ended, out) = process::run_method(&action, &env, None, Duration::from_secs(60));
            self.say(
                Some(i),
                "give-over-action",
                format!(
                    "{}: {}",
                    ended.map_or("timed out".into(), |e| e.to_string()),
                    out.trim()
                ),
            );
        }
        self.save();
    }

    fn stop_tree(&mut self, i: usize) {
        let mark = self.comps[i].mark_in(&self.domain, &self.cfg.supervisor.name);
        if let Some(stop) = self.comps[i].cfg.stop.clone() {
            let _ = process::run_method(
                &stop,
                &self.env(i),
                self.cwd(i),
                self.comps[i].cfg.stop_timeout,
            );
        }
        let reaped = process::stop_tree(&mark, self.comps[i].cfg.stop_timeout);
        // Its own first process among them is done with; any other is another's end.
        let own = self.comps[i].st.pid;
        self.reaped
            .extend(reaped.into_iter().filter(|&(p, _)| Some(p) != own));
        self.comps[i].st.pid = None;
        self.comps[i].tree.clear();
    }

    fn stop_component(&mut self, i: usize, why: &str) {
        if self.comps[i].st.phase == Phase::Running {
            self.stop_tree(i);
            self.say(Some(i), "stopped", why.to_string());
        }
    }

    /// Operators' commands: requests on the control queue, `restart NAME`, `failover NAME`,
    /// `stop NAME`, `start NAME`; each replied `ok` or why not.
    fn commands(&mut self) {
        while let Ok(m) = self.control.try_recv() {
            let text = String::from_utf8_lossy(m.payload()).into_owned();
            let (verb, name) = text.split_once(' ').unwrap_or((&text, ""));
            let answer = match self.comps.iter().position(|c| c.cfg.name == name) {
                None => format!("no component named {name:?}"),
                Some(i) => {
                    self.say(Some(i), "command", text.clone());
                    match verb {
                        "restart" => {
                            self.stop_tree(i);
                            self.comps[i].st.phase = Phase::Restarting;
                            self.comps[i].next_probe = Instant::now();
                            "ok".into()
                        }
                        "failover" if self.comps[i].st.role == Role::Active => {
                            self.failover(i, "an operator asked");
                            "ok".into()
                        }
                        "failover" => format!("{name} is not an active"),
                        "stop" => {
                            self.stop_component(i, "an operator asked");
                            self.comps[i].st.phase = Phase::Stopped;
                            self.save();
                            "ok".into()
                        }
                        "start"
                            if matches!(
                                self.comps[i].st.phase,
                                Phase::Running | Phase::Restarting
                            ) =>
                        {
                            format!("{name} is running already")
                        }
                        "start" => {
                            self.comps[i].st.phase = Phase::Restarting;
                            self.comps[i].next_probe = Instant::now();
                            "ok".into()
                        }
                        other => {
                            format!("unknown command {other:?}: restart, failover, stop, start")
                        }
                    }
                }
            };
            if m.meta().is_request() {
                let _ = m.reply(answer.as_bytes());
            }
            let _ = m.ack();
        }
    }
}

/// How often the supervisor looks.
const TICK: Duration = Duration::from_millis(20);

/// How often the roles are compared with the queues' owners (a probe compares them too).
const OWNER_LOOK: Duration = Duration::from_millis(100);
