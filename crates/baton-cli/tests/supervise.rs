//! `baton supervise` with real processes and short windows: restart in place, failover to the
//! standby, give-over with its action program, an immediate failover (201), a probe that
//! times out, a hung owner (SIGSTOP) failed over by the queue probe, a component that
//! daemonizes, the supervisor killed with SIGKILL and started again with its history, a second
//! supervisor refused, configuration errors, a failing validate and a failing monitor_check.

mod common;
use common::{Cli, TestDomain};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `baton --json supervise CONFIG`, its events on a channel.
struct Sup {
    child: Child,
    /// The marks of its components' processes (killed with it when a test fails).
    marks: String,
    events: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Sup {
    fn start(t: &TestDomain, config: &std::path::Path) -> Sup {
        let mut child = t
            .baton()
            .args(["--json", "supervise"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Sup {
            child,
            marks: format!("{}/sup/", t.name()),
            events,
            seen: Vec::new(),
        }
    }

    /// Waits (20 s at most) for `event` of `component`; its detail.
    fn wait_for(&mut self, component: &str, event: &str) -> String {
        self.wait_within(component, event, Duration::from_secs(20))
    }

    /// Waits at most `within` for `event` of `component`; its detail.
    fn wait_within(&mut self, component: &str, event: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["component"] == component && v["event"] == event {
                        return v["detail"].as_str().unwrap_or_default().to_string();
                    }
                }
                Err(_) => panic!(
                    "no {event} of {component} within {within:?}; the supervisor said:\n{}",
                    self.seen
                        .iter()
                        .map(|v| format!("{} {} {}", v["component"], v["event"], v["detail"]))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Waits (20 s at most) for `event` about no component; its detail.
    fn wait_for_event(&mut self, event: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["component"].is_null() && v["event"] == event {
                        return v["detail"].as_str().unwrap_or_default().to_string();
                    }
                }
                Err(_) => panic!("no {event}"),
            }
        }
    }

    /// Every event so far of `component`, in order, as `event` names.
    fn story(&mut self, component: &str) -> Vec<String> {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        self.seen
            .iter()
            .filter(|v| v["component"] == component)
            .map(|v| v["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that failed leaves no component running either.
        for p in baton_supervise::process::marked_prefix(&self.marks) {
            // SAFETY: kill with the pid of a process carrying this test's mark.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

fn config(t: &TestDomain, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("baton-supervise-{}.toml", t.name()));
    std::fs::write(
        &path,
        format!(
            "[supervisor]\nname = \"sup\"\ndomain = \"{}\"\n{body}",
            t.name()
        ),
    )
    .unwrap();
    path
}

/// The live processes of component `component` (all the supervisor's for "") by their mark.
fn marked(t: &TestDomain, component: &str) -> std::collections::BTreeSet<i32> {
    let prefix = if component.is_empty() {
        format!("{}/sup/", t.name())
    } else {
        format!("{}/sup/{component}/", t.name())
    };
    baton_supervise::process::marked_prefix(&prefix)
}

/// Waits (10 s at most) until the receivers' output file `out` has as many lines as `want`;
/// they must be `want`.
fn received(out: &std::path::Path, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(out).unwrap_or_default();
        if got.lines().count() >= want.len() {
            assert_eq!(got.lines().collect::<Vec<_>>(), want);
            return;
        }
        assert!(Instant::now() < deadline, "the receivers got {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A receiver of `orders` in redundancy set `s` (`baton recv --standby`, after `prefix`,
/// appending to `out`), probed by the queue probe every 100 ms, restarted once in a minute.
fn receiver(name: &str, prefix: &str, out: &std::path::Path) -> String {
    format!(
        r#"
[[component]]
name = "{name}"
command = '{prefix}"{}" recv --standby orders >> {}'
queues = ["orders"]
redundancy = "s"
probe = "queue"
probe_interval = "100ms"
probe_timeout = "300ms"
start_timeout = "5s" # a standby waits for the active to own the queue
retry_count = 1
retry_interval = "1m"
restart_backoff = "50ms"
stop_timeout = "300ms"
"#,
        env!("CARGO_BIN_EXE_baton"),
        out.display()
    )
}

/// No process of the test's supervisor is left (by its mark).
fn none_left(t: &TestDomain) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if marked(t, "").is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An active that fails three times is restarted twice in place, then failed over to its
/// standby and restarted as a standby; when the new active fails past its restarts too, the
/// second failover is over the limit: the supervisor gives over and runs its action.
#[test]
fn restart_then_failover_then_give_over_with_the_action() {
    let t = TestDomain::new("sup-escalate");
    let marker = std::env::temp_dir().join(format!("baton-gave-over-{}", t.name()));
    let _ = std::fs::remove_file(&marker);
    let path = config(
        &t,
        &format!(
            r#"failover_limit = 1
failover_window = "1m"
give_over = "echo \"$BATON_COMPONENT: $BATON_GIVE_OVER_REASON\" > {}"

[[component]]
name = "a"
command = '[ "$BATON_HA_STATE" = active ] && {{ sleep 0.2; exit 3; }}; exec sleep 60'
redundancy = "s"
retry_count = 2
retry_interval = "1m"
restart_backoff = "10ms"
stop_timeout = "1s"

[[component]]
name = "b"
command = '[ "$BATON_HA_STATE" = active ] && {{ sleep 0.2; exit 4; }}; exec sleep 60'
redundancy = "s"
# Made active by the failover while it runs as a standby: its probe (run with its role now)
# fails it, and its restart as the active exits.
probe = 'if [ "$BATON_HA_STATE" = active ]; then exit 100; fi; exit 0'
probe_interval = "100ms"
start_timeout = "100ms"
retry_count = 1
retry_interval = "1m"
restart_backoff = "10ms"
stop_timeout = "1s"
"#,
            marker.display()
        ),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "failover");
    assert_eq!(
        s.story("a")
            .iter()
            .filter(|e| *e == "restart" || *e == "failover")
            .collect::<Vec<_>>(),
        ["restart", "restart", "failover"]
    );
    let detail = s.wait_for("b", "give-over");
    assert!(detail.contains("failovers"), "{detail}");
    s.wait_for("b", "give-over-action");
    let said = std::fs::read_to_string(&marker).unwrap();
    assert!(
        said.starts_with("b: ") && said.contains("failovers"),
        "{said}"
    );
    assert!(s.story("a").contains(&"started".to_string()));
    s.stop();
    assert!(none_left(&t), "components left running");
    let _ = std::fs::remove_file(&marker);
}

/// A probe that exits 201 fails the active over at once (no restart first); a probe that
/// runs past its timeout scores 100, a restart.
#[test]
fn a_201_probe_fails_over_at_once_and_a_probe_timeout_is_a_complete_failure() {
    let t = TestDomain::new("sup-probe");
    let path = config(
        &t,
        r#"
[[component]]
name = "a"
command = "exec sleep 60"
redundancy = "s"
probe = 'if [ "$BATON_HA_STATE" = active ]; then exit 201; fi; exit 0'
probe_interval = "100ms"
start_timeout = "100ms"
retry_count = 5

[[component]]
name = "b"
command = "exec sleep 60"
redundancy = "s"

[[component]]
name = "slow"
command = "exec sleep 60"
probe = "sleep 5"
probe_interval = "100ms"
probe_timeout = "200ms"
start_timeout = "100ms"
retry_count = 3
"#,
    );
    let mut s = Sup::start(&t, &path);
    let d = s.wait_for("a", "failover");
    assert!(d.contains("201") && d.contains("a -> b"), "{d}");
    assert!(!s.story("a").contains(&"restart".to_string()));
    s.wait_for("slow", "probe-timeout");
    let d = s.wait_for("slow", "restart");
    assert!(d.contains("probe scored 100"), "{d}");
    s.stop();
    assert!(none_left(&t));
}

/// An active that owns its queue and hangs (SIGSTOP) while messages wait: the queue probe
/// scores it 100, the supervisor fails it over (retry_count 0), and the standby, waiting on
/// the queue, takes it over and receives what waited.
#[test]
fn a_hung_owner_is_failed_over_and_the_standby_gets_the_messages() {
    let t = TestDomain::new("sup-hung");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let out = std::env::temp_dir().join(format!("baton-hung-{}", t.name()));
    let baton_bin = env!("CARGO_BIN_EXE_baton");
    let path = config(
        &t,
        &format!(
            r#"
[[component]]
name = "a"
command = ["{baton_bin}", "recv", "--standby", "orders"]
queues = ["orders"]
redundancy = "s"
probe = "queue"
probe_interval = "100ms"
probe_timeout = "300ms"
start_timeout = "5s" # a standby waits for the active to own the queue
retry_count = 0
stop_timeout = "300ms"

[[component]]
name = "b"
command = '"{baton_bin}" recv --standby orders > {}'
queues = ["orders"]
redundancy = "s"
"#,
            out.display()
        ),
    );
    let mut s = Sup::start(&t, &path);
    let a = s.wait_for("a", "started");
    s.wait_for("b", "started");
    let pid: i32 = a
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap();
    // a owns the queue once it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.status().owner_pid.is_none() {
        assert!(Instant::now() < deadline, "a never took the queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill with a pid the supervisor reported.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    for i in 0..5 {
        q.sender().send(format!("m{i}").as_bytes()).unwrap();
    }
    let d = s.wait_for("a", "failover");
    assert!(
        d.contains("probe scored 100") && d.contains("a -> b"),
        "{d}"
    );
    received(&out, &["m0", "m1", "m2", "m3", "m4"]);
    s.stop();
    assert!(none_left(&t));
    let _ = std::fs::remove_file(&out);
}

/// The roles follow the queue's owner. The active is killed: the standby, waiting on the
/// queue, takes it over at once, and the supervisor makes it the active (a `role` line) while
/// it restarts the dead one, now as a standby. Then that owner (labelled the standby before)
/// hangs: the queue probe blames it, not the other one, which gets the queue and the messages.
#[test]
fn the_roles_follow_the_queues_owner_and_a_hung_owner_is_the_one_stopped() {
    let t = TestDomain::new("sup-roles");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let out = std::env::temp_dir().join(format!("baton-roles-{}", t.name()));
    let _ = std::fs::remove_file(&out);
    let path = config(&t, &(receiver("a", "", &out) + &receiver("b", "", &out)));
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    s.wait_for("b", "started");
    let owner_of = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mine = marked(&t, name);
            if let Some(p) = q.status().owner_pid {
                if mine.contains(&(p as i32)) {
                    return p as i32;
                }
            }
            assert!(Instant::now() < deadline, "{name} never owned the queue");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let a = owner_of("a");
    // SAFETY: kill with the owner's pid, one of the test's components.
    unsafe { libc::kill(a, libc::SIGKILL) };
    s.wait_for("a", "restart");
    let d = s.wait_for("b", "role");
    assert!(d.contains("a is a standby now"), "{d}");
    let d = s.wait_for("a", "started");
    assert!(d.contains("as Standby"), "{d}");
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    let role = |n: &str| st.components.iter().find(|c| c.name == n).unwrap().role;
    assert_eq!(
        (role("a"), role("b")),
        (
            baton_supervise::supervisor::Role::Standby,
            baton_supervise::supervisor::Role::Active
        )
    );
    let b = owner_of("b");
    // b, labelled the standby when it took the queue, hangs while messages wait.
    // SAFETY: as above.
    unsafe { libc::kill(b, libc::SIGSTOP) };
    for i in 0..3 {
        q.sender().send(format!("m{i}").as_bytes()).unwrap();
    }
    let d = s.wait_for("b", "restart");
    assert!(d.contains("probe scored 100"), "{d}");
    let d = s.wait_for("a", "role");
    assert!(d.contains("b is a standby now"), "{d}");
    received(&out, &["m0", "m1", "m2"]);
    // The hung process went (SIGTERM with SIGCONT), and a was restarted only for its death.
    assert!(!baton_supervise::process::lives(b));
    let a_story = s.story("a");
    assert_eq!(
        a_story.iter().filter(|e| *e == "restart").count(),
        1,
        "{a_story:?}"
    );
    s.stop();
    assert!(none_left(&t));
    let _ = std::fs::remove_file(&out);
}

/// An active slow to take its queue (0.8 s here, past the 300 ms a standby used to wait) is
/// still the one that takes it: its standby starts once a queue of the set has an owner.
#[test]
fn a_standby_starts_once_its_slow_active_owns_the_queue() {
    let t = TestDomain::new("sup-slow-active");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let out = std::env::temp_dir().join(format!("baton-slow-{}", t.name()));
    let _ = std::fs::remove_file(&out);
    let path = config(
        &t,
        &(receiver("a", "sleep 0.8; exec ", &out) + &receiver("b", "", &out)),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("b", "started");
    let owner = q
        .status()
        .owner_pid
        .expect("an owner before the standby started");
    assert!(marked(&t, "a").contains(&(owner as i32)));
    std::thread::sleep(Duration::from_millis(300)); // three looks at the owner
    assert!(!s.story("b").contains(&"role".to_string()));
    s.stop();
    assert!(none_left(&t));
    let _ = std::fs::remove_file(&out);
}

/// An active with two queues, slow (0.8 s) to take its second, still takes both: its standby
/// starts once the active owns its queues, not once it owns one of them (its standby would
/// take the other at once, and the set's queues be split between the two).
#[test]
fn a_standby_starts_once_its_active_owns_every_queue() {
    let t = TestDomain::new("sup-two-queues");
    let orders = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let payments =
        baton::Queue::create(&t.domain, "payments", &baton::Attributes::default()).unwrap();
    let bin = env!("CARGO_BIN_EXE_baton");
    let component = |name: &str, slow: &str| {
        format!(
            r#"
[[component]]
name = "{name}"
command = '"{bin}" recv --standby orders >/dev/null & {slow}exec "{bin}" recv --standby payments >/dev/null'
queues = ["orders", "payments"]
redundancy = "s"
start_timeout = "5s"
stop_timeout = "300ms"
"#
        )
    };
    let path = config(&t, &(component("a", "sleep 0.8; ") + &component("b", "")));
    let mut s = Sup::start(&t, &path);
    s.wait_for("b", "started");
    assert!(common::eventually(Duration::from_secs(5), || {
        orders.status().owner_pid.is_some() && payments.status().owner_pid.is_some()
    }));
    let a = marked(&t, "a");
    for q in [&orders, &payments] {
        let st = q.status();
        let owner = st.owner_pid.unwrap() as i32;
        assert!(
            a.contains(&owner),
            "{} is owned by {owner}, not by a ({a:?})",
            st.name
        );
    }
    s.stop();
    assert!(none_left(&t));
}

/// A component whose receiver runs in a pid namespace of its own (pid 1 there, which is what
/// the queue shows as its owner): the supervisor cannot match that pid with a mark, so the set
/// keeps its roles (no `role` line), and when that owner hangs, the stall is blamed on the
/// labelled active, which it is: a is restarted, b takes the queue and the messages, and the
/// roles follow b, an owner in the supervisor's namespace.
#[test]
fn an_owner_in_a_pid_namespace_of_its_own_keeps_its_role_and_its_hang_is_blamed_on_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for unshare --pid");
        return;
    }
    let t = TestDomain::new("sup-pidns");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let out = std::env::temp_dir().join(format!("baton-pidns-{}", t.name()));
    let _ = std::fs::remove_file(&out);
    let path = config(
        &t,
        &(receiver("a", "unshare --pid --fork --kill-child ", &out) + &receiver("b", "", &out)),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    s.wait_for("b", "started");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = q.status();
        if st.owner_pid == Some(1) && st.standbys == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "a never owned the queue: {st:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300)); // three looks at the owner
    assert!(!s.story("b").contains(&"role".to_string()));
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    assert_eq!(
        st.components.iter().map(|c| c.role).collect::<Vec<_>>(),
        [
            baton_supervise::supervisor::Role::Active,
            baton_supervise::supervisor::Role::Standby
        ]
    );
    for p in marked(&t, "a") {
        // SAFETY: kill with a pid found by its mark (the shell, unshare, the receiver).
        unsafe { libc::kill(p, libc::SIGSTOP) };
    }
    for i in 0..3 {
        q.sender().send(format!("m{i}").as_bytes()).unwrap();
    }
    let d = s.wait_for("a", "restart");
    assert!(d.contains("probe scored 100"), "{d}");
    let d = s.wait_for("b", "role");
    assert!(d.contains("a is a standby now"), "{d}");
    received(&out, &["m0", "m1", "m2"]);
    s.stop();
    assert!(none_left(&t));
    let _ = std::fs::remove_file(&out);
}

/// An owner in a pid namespace of its own whose pid there (what the queue shows)
/// is, in the supervisor's namespace, the pid of another member's process (b's): the set
/// keeps its roles, as documented ("cannot be matched by its pid: its set keeps the roles it
/// had"). It flipped them: b, which owns nothing, was made the active and a the standby.
#[test]
fn an_owner_in_a_pid_namespace_whose_pid_there_is_another_members_keeps_its_role() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for unshare --pid");
        return;
    }
    let t = TestDomain::new("sup-pidnsclash");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let pidfile = std::env::temp_dir().join(format!("baton-pidns-{}.pid", t.name()));
    let out = std::env::temp_dir().join(format!("baton-pidns-{}.out", t.name()));
    let _ = std::fs::remove_file(&pidfile);
    let baton_bin = env!("CARGO_BIN_EXE_baton");
    // a waits for b's pid, then starts its receiver as that pid in a pid namespace of its own.
    let path = config(
        &t,
        &format!(
            r#"
[[component]]
name = "a"
command = '''while [ ! -s {f} ]; do sleep 0.05; done; exec unshare --pid --fork --kill-child sh -c 'n=$(cat {f}); echo $((n - 1)) > /proc/sys/kernel/ns_last_pid; "{baton_bin}" recv --standby orders >> {o}; true' '''
queues = ["orders"]
redundancy = "s"
start_timeout = "300ms"
stop_timeout = "300ms"

[[component]]
name = "b"
command = "exec sleep 60"
queues = ["orders"]
redundancy = "s"
start_timeout = "300ms"
stop_timeout = "300ms"
"#,
            f = pidfile.display(),
            o = out.display()
        ),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    let d = s.wait_for("b", "started");
    let b_pid: u32 = d.split_whitespace().nth(1).unwrap().parse().unwrap();
    let tmp = pidfile.with_extension("tmp");
    std::fs::write(&tmp, b_pid.to_string()).unwrap();
    std::fs::rename(&tmp, &pidfile).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.status().owner_pid != Some(b_pid) {
        assert!(
            Instant::now() < deadline,
            "a never owned the queue as pid {b_pid}: {:?}",
            q.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(400)); // four looks at the owner
    let story = s.story("b");
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    s.stop();
    let _ = std::fs::remove_file(&pidfile);
    let _ = std::fs::remove_file(&out);
    assert!(
        !story.contains(&"role".to_string()),
        "b made the active: {story:?}"
    );
    assert_eq!(
        st.components.iter().map(|c| c.role).collect::<Vec<_>>(),
        [
            baton_supervise::supervisor::Role::Active,
            baton_supervise::supervisor::Role::Standby
        ]
    );
    assert!(none_left(&t));
}

/// Operators' commands. `failover a` checks every standby: b fails its monitor_check and is
/// restarted before a goes (left waiting, it could have taken the queue), c passes and takes
/// the queue over. `failover` of a standby and of an unknown name are refused, `stop` and
/// `start` do what they say, and a command to a supervisor that is not running says so at
/// once.
#[test]
fn operators_commands_and_an_unfit_standby_left_out_of_the_failover() {
    let t = TestDomain::new("sup-ops");
    let q = baton::Queue::create(&t.domain, "orders", &baton::Attributes::default()).unwrap();
    let baton_bin = env!("CARGO_BIN_EXE_baton");
    let component = |name: &str, check: &str| {
        format!(
            r#"
[[component]]
name = "{name}"
command = ["{baton_bin}", "recv", "--standby", "orders"]
queues = ["orders"]
redundancy = "s"
monitor_check = ["{check}"]
start_timeout = "5s" # a standby waits for the active to own the queue
restart_backoff = "50ms"
stop_timeout = "300ms"
"#
        )
    };
    let path = config(
        &t,
        &(component("a", "true") + &component("b", "false") + &component("c", "true")),
    );
    let op = |verb: &str, name: &str| {
        let out = t
            .baton()
            .args(["supervise", verb])
            .arg(&path)
            .arg(name)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, said) = op("stop", "a");
    assert_eq!(code, Some(4), "{said}");
    assert!(said.contains("not running"), "{said}");
    let mut s = Sup::start(&t, &path);
    for n in ["a", "b", "c"] {
        s.wait_for(n, "started");
    }
    let owner = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = q.status().owner_pid {
                for n in ["a", "b", "c"] {
                    if marked(&t, n).contains(&(p as i32)) {
                        return n;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no component owns the queue");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(owner(), "a");
    assert_eq!(op("failover", "a"), (Some(0), "failover a: ok\n".into()));
    s.wait_for("b", "monitor-check-failed");
    s.wait_for("b", "restart");
    let d = s.wait_for("a", "failover");
    assert!(d.contains("a -> c"), "{d}");
    assert_eq!(owner(), "c");
    let (code, said) = op("failover", "b");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("b is not an active"), "{said}");
    let (code, said) = op("restart", "nobody");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no component named \"nobody\""), "{said}");
    // c stopped: another takes the queue and the roles follow; c started again.
    assert_eq!(op("stop", "c").0, Some(0));
    s.wait_for("c", "stopped");
    let next = owner();
    assert_ne!(next, "c");
    s.wait_for(next, "role");
    assert!(marked(&t, "c").is_empty());
    assert_eq!(op("start", "c").0, Some(0));
    let d = s.wait_for("c", "started");
    assert!(d.contains("as Standby"), "{d}");
    s.stop();
    assert!(none_left(&t));
}

/// Command probes run beside the supervisor's loop: while one component's probe takes 5 s,
/// another component's death is seen and restarted, an operator's command answered, and the
/// slow probe's score still counts when it comes (100: a restart).
#[test]
fn a_slow_probe_holds_up_nothing_else() {
    let t = TestDomain::new("sup-slowprobe");
    let path = config(
        &t,
        r#"
[[component]]
name = "slow"
command = "exec sleep 60"
probe = "sleep 5; exit 100"
probe_interval = "100ms"
probe_timeout = "10s"
start_timeout = "100ms"
restart_backoff = "10ms"

[[component]]
name = "w"
command = "exec sleep 60"
restart_backoff = "10ms"
"#,
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("slow", "started");
    s.wait_for("w", "started");
    std::thread::sleep(Duration::from_millis(500)); // slow's first probe is under way
    let killed = Instant::now();
    for p in marked(&t, "w") {
        // SAFETY: kill with a pid found by its mark.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    s.wait_within("w", "restart", Duration::from_secs(3));
    s.wait_within("w", "started", Duration::from_secs(3));
    let o = t
        .baton()
        .args(["supervise", "stop"])
        .arg(&path)
        .arg("w")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "the slow probe held the supervisor up"
    );
    let d = s.wait_within("slow", "restart", Duration::from_secs(10));
    assert!(d.contains("probe scored 100"), "{d}");
    s.stop();
    assert!(none_left(&t));
}

/// A restart while the earlier start's probe still runs (an operator's `restart`
/// here; a death is the same): the new start is probed at its interval. The earlier start's
/// probe (8 s) is dropped when it comes, and it did not hold up the new start's probes
/// (`probing` was left set with the old generation, and no probe ran until it ended).
#[test]
fn a_new_start_is_probed_while_the_earlier_starts_probe_still_runs() {
    let t = TestDomain::new("sup-staleprobe");
    let flag = std::env::temp_dir().join(format!("baton-supervise-{}.flag", t.name()));
    let _ = std::fs::remove_file(&flag);
    let path = config(
        &t,
        &format!(
            r#"
[[component]]
name = "c"
command = "exec sleep 60"
probe = "if [ -e {f} ]; then exit 100; fi; touch {f}; sleep 8"
probe_interval = "100ms"
probe_timeout = "20s"
start_timeout = "100ms"
restart_backoff = "10ms"
retry_count = 100
"#,
            f = flag.display()
        ),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.exists() {
        assert!(Instant::now() < deadline, "the first probe never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = t
        .baton()
        .args(["supervise", "restart"])
        .arg(&path)
        .arg("c")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    s.wait_for("c", "started");
    let started = Instant::now();
    // The new start's first probe scores 100 at once; it must not wait for the old one (8 s).
    let d = s.wait_within("c", "probe", Duration::from_secs(3));
    assert!(d.contains("score 100"), "{d}");
    assert!(started.elapsed() < Duration::from_secs(3));
    s.stop();
    let _ = std::fs::remove_file(&flag);
    assert!(none_left(&t));
}

/// A probe's outcome that gives the component over (201, no standby) is its last
/// probe: no other probe of it is started in the same round (it was, as the probe had taken
/// longer than probe_interval: a probe of a given-over component).
#[test]
fn no_probe_runs_after_the_probe_that_gave_the_component_over() {
    let t = TestDomain::new("sup-probegaveover");
    let runs = std::env::temp_dir().join(format!("baton-supervise-{}.runs", t.name()));
    let _ = std::fs::remove_file(&runs);
    let path = config(
        &t,
        &format!(
            r#"
[[component]]
name = "c"
command = "exec sleep 60"
probe = "echo run >> {f}; sleep 0.3; exit 201"
probe_interval = "100ms"
probe_timeout = "5s"
start_timeout = "100ms"
"#,
            f = runs.display()
        ),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "give-over");
    std::thread::sleep(Duration::from_secs(1));
    let n = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    s.stop();
    let _ = std::fs::remove_file(&runs);
    assert_eq!(n, 1, "probes run of c, given over after the first");
    assert!(none_left(&t));
}

/// A component that daemonizes (its first process exits 0, a child goes on) is still running;
/// when that child dies, it is restarted. Its exit is recorded.
#[test]
fn a_component_that_daemonizes_is_followed_to_its_last_process() {
    let t = TestDomain::new("sup-daemon");
    let path = config(
        &t,
        r#"
[[component]]
name = "d"
command = "sleep 60 & exit 0"
restart_backoff = "10ms"
"#,
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("d", "started");
    let d = s.wait_for("d", "exited");
    assert!(d.contains("exit status 0"), "{d}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !s.story("d").contains(&"restart".to_string()),
        "a daemon whose first process exited was taken for dead"
    );
    let daemons = marked(&t, "d");
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    for p in &daemons {
        // SAFETY: kill with a pid found by its mark.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    s.wait_for("d", "restart");
    s.wait_for("d", "started");
    s.stop();
    assert!(none_left(&t));
}

/// The supervisor killed with SIGKILL leaves its components running; started again, it adopts
/// them (no second copy) and keeps their restart history. A second supervisor of the same name
/// is refused meanwhile.
#[test]
fn a_supervisor_killed_and_started_again_adopts_its_components_and_history() {
    let t = TestDomain::new("sup-restart");
    let path = config(
        &t,
        r#"
[[component]]
name = "c"
command = "sleep 0.3; exec sleep 60"
retry_count = 5
restart_backoff = "10ms"
"#,
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "started");
    // One restart on the record: kill the component's tree once.
    std::thread::sleep(Duration::from_millis(100));
    for p in marked(&t, "c") {
        // SAFETY: kill with a pid found by its mark.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    s.wait_for("c", "restart");
    s.wait_for("c", "started");
    let second = t.baton().args(["supervise"]).arg(&path).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another supervisor named sup"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Its tree settles when the shell has exec'd `sleep 60` (until then: the shell and its
    // `sleep 0.3`, then the shell alone, which an exec under way hides from the scan).
    let settled = || {
        let m = marked(&t, "c");
        m.len() == 1
            && m.iter().all(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x0060\0")
            })
    };
    assert!(common::eventually(Duration::from_secs(10), settled));
    let running = marked(&t, "c");
    // SIGKILL: no stopping of components.
    let _ = s.child.kill();
    let _ = s.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(marked(&t, "c"), running);
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "adopted");
    assert!(!s.story("c").contains(&"started".to_string()));
    let status = t
        .baton()
        .args(["--json", "supervise", "status"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let c = &v["state"]["components"][0];
    assert_eq!(c["restarts_total"], 1, "{v}");
    assert_eq!(c["restarts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(c["phase"], "running");
    s.stop();
    assert!(none_left(&t));
}

/// Configuration errors name the file, line and field (exit 2); a failing validate refuses
/// the start with its output; a standby that fails its monitor_check is not chosen (the
/// failover has nowhere to go: give over).
#[test]
fn bad_configurations_failing_validates_and_monitor_checks() {
    let t = TestDomain::new("sup-checks");
    let path = config(
        &t,
        "\n[[component]]\nname = \"x\"\ncommand = \"true\"\nprobe_interval = \"later\"\n",
    );
    let o = t.baton().args(["supervise"]).arg(&path).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 8") && err.contains("component[0].probe_interval"),
        "{err}"
    );

    let path = config(
        &t,
        r#"
[[component]]
name = "v"
command = "exec sleep 60"
validate = "echo the config is missing; exit 1"
retry_count = 1
restart_backoff = "10ms"

[[component]]
name = "a"
command = '[ "$BATON_HA_STATE" = active ] && exit 3; exec sleep 60'
redundancy = "s"
retry_count = 0

[[component]]
name = "b"
command = "exec sleep 60"
redundancy = "s"
monitor_check = "echo not ready; exit 1"
"#,
    );
    let mut s = Sup::start(&t, &path);
    let d = s.wait_for("v", "validate-failed");
    assert!(d.contains("the config is missing"), "{d}");
    assert!(!s.story("v").contains(&"started".to_string()));
    let d = s.wait_for("b", "monitor-check-failed");
    assert!(d.contains("not ready"), "{d}");
    let d = s.wait_for("a", "give-over");
    assert!(d.contains("no standby"), "{d}");
    s.stop();
    assert!(none_left(&t));
}

/// SIGHUP reloads the configuration: an unchanged component goes on (same process), a changed
/// one is restarted with its new definition, a new one starts; a reload whose validate fails
/// is refused and changes nothing.
#[test]
fn sighup_reloads_without_restarting_what_did_not_change() {
    let t = TestDomain::new("sup-reload");
    let path = config(
        &t,
        "\n[[component]]\nname = \"keep\"\ncommand = \"exec sleep 60\"\n\n[[component]]\nname = \"change\"\ncommand = \"exec sleep 60\"\n",
    );
    let mut s = Sup::start(&t, &path);
    let keep = s.wait_for("keep", "started");
    s.wait_for("change", "started");
    let reload = |s: &Sup| {
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    };
    let body = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        body.replace(
            "name = \"change\"\ncommand = \"exec sleep 60\"",
            "name = \"change\"\ncommand = \"exec sleep 61\"\nvalidate = \"echo no; exit 1\"",
        ),
    )
    .unwrap();
    reload(&s);
    let d = s.wait_for_event("reload-refused");
    assert!(d.contains("change: validate failed: no"), "{d}");
    std::fs::write(
        &path,
        format!(
            "{}\n[[component]]\nname = \"new\"\ncommand = \"exec sleep 60\"\n",
            body.replace(
                "exec sleep 60\"\n\n[[component]]\nname = \"change\"\ncommand = \"exec sleep 60\"",
                "exec sleep 60\"\n\n[[component]]\nname = \"change\"\ncommand = \"exec sleep 61\""
            )
        ),
    )
    .unwrap();
    reload(&s);
    s.wait_for("new", "started");
    let started = |s: &mut Sup, c: &str| s.story(c).iter().filter(|e| *e == "started").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while started(&mut s, "change") < 2 {
        assert!(Instant::now() < deadline, "change was not restarted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(started(&mut s, "keep"), 1, "keep was restarted ({keep})");
    s.stop();
    assert!(none_left(&t));
}

/// The csa104 demo under the supervisor (`examples/csa104/run.sh`): four kills of the active
/// receiver give two restarts, then two failovers, and every numbered message arrives once or
/// flagged as a redelivery (the script checks both).
#[test]
fn the_csa104_demo_runs_its_story_under_the_supervisor() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/csa104/run.sh");
    let o = std::process::Command::new("bash")
        .args([script, "20", "50"])
        .env("BATON_BIN", env!("CARGO_BIN_EXE_baton"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("all 20 messages arrived"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("escalation: 2 restarts, 2 failovers"), "{out}");
}

// The cases below come from an adversarial review; each failed on the code it was written
// against.

/// `baton supervise start CONFIG NAME` of a component that is running starts a second copy of
/// it (a new generation: the old tree is no longer followed, and survives the supervisor's
/// SIGTERM). docs/supervise.md: "none is started twice"; `start` is "Start a stopped component".
#[test]
fn start_of_a_running_component_does_not_start_it_twice() {
    let t = TestDomain::new("rv-start-twice");
    let path = config(
        &t,
        "\n[[component]]\nname = \"c\"\ncommand = \"exec sleep 60\"\n",
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "started");
    let o = t
        .baton()
        .args(["supervise", "start"])
        .arg(&path)
        .arg("c")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    std::thread::sleep(Duration::from_millis(500));
    let running = marked(&t, "c");
    assert_eq!(
        running.len(),
        1,
        "`start c` ({said:?}) while c runs: c runs as {running:?}; events {:?}",
        s.story("c")
    );
    s.stop();
    assert!(
        none_left(&t),
        "components left running: {:?}",
        marked(&t, "")
    );
}

/// The supervisor killed with SIGKILL, its state file then lost or truncated (it lives in
/// /dev/shm; a crash mid-write, a peer's write, an operator's cleanup): started again, it
/// starts the component a second time with the very mark of the copy still running (the
/// generation starts again at 1), so two copies run and are taken for one tree.
#[test]
fn a_truncated_state_file_does_not_start_a_running_component_twice() {
    let t = TestDomain::new("rv-state-trunc");
    let path = config(
        &t,
        "\n[[component]]\nname = \"c\"\ncommand = \"exec sleep 60\"\n",
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("c", "started");
    let first = marked(&t, "c");
    let _ = s.child.kill();
    let _ = s.child.wait();
    let state = baton_supervise::supervisor::state_path(&t.domain, "sup");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    let mut s = Sup::start(&t, &path);
    std::thread::sleep(Duration::from_millis(800));
    let now = marked(&t, "c");
    assert_eq!(
        now,
        first,
        "c ran as {first:?}; after a restart with a truncated state file it runs as {now:?} \
         (events {:?})",
        s.story("c")
    );
    s.stop();
    assert!(none_left(&t));
}

/// A component added at the head of a redundancy set while the supervisor was down (or the
/// set's first component renamed): started again, the supervisor labels the new one active
/// (the first of its set without a prior state) AND keeps the prior active's label: two
/// actives, both started with BATON_HA_STATE=active, and nothing ever corrects it.
#[test]
fn a_component_added_while_the_supervisor_was_down_does_not_make_two_actives() {
    let t = TestDomain::new("rv-two-actives");
    let comp = |n: &str| {
        format!(
            "\n[[component]]\nname = \"{n}\"\ncommand = \"exec sleep 60\"\nredundancy = \"s\"\nstop_timeout = \"300ms\"\nstart_timeout = \"100ms\"\n"
        )
    };
    let path = config(&t, &(comp("a") + &comp("b")));
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    s.wait_for("b", "started");
    s.stop();
    let path = config(&t, &(comp("n") + &comp("a") + &comp("b")));
    let mut s = Sup::start(&t, &path);
    for n in ["n", "a", "b"] {
        if !s.story(n).contains(&"started".to_string()) {
            s.wait_for(n, "started");
        }
    }
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    let actives: Vec<_> = st
        .components
        .iter()
        .filter(|c| c.role == baton_supervise::supervisor::Role::Active)
        .map(|c| c.name.clone())
        .collect();
    let ha_active: Vec<i32> = marked(&t, "")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|v| v == b"BATON_HA_STATE=active"))
        })
        .collect();
    s.stop();
    assert!(none_left(&t));
    assert_eq!(
        actives.len(),
        1,
        "labelled active: {actives:?}; processes with BATON_HA_STATE=active: {ha_active:?}"
    );
}

/// A reload that removes a set's active (or moves it to another set) leaves the set with no
/// active at all: the remaining standby is never made active (without a queue owner to follow,
/// nothing ever does), and its own death is then "a standby, past its restarts".
#[test]
fn a_reload_that_removes_the_active_leaves_the_set_an_active() {
    let t = TestDomain::new("rv-reload-active");
    let comp = |n: &str| {
        format!(
            "\n[[component]]\nname = \"{n}\"\ncommand = \"exec sleep 60\"\nredundancy = \"s\"\nstop_timeout = \"300ms\"\nstart_timeout = \"100ms\"\n"
        )
    };
    let path = config(&t, &(comp("a") + &comp("b")));
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    s.wait_for("b", "started");
    config(&t, &comp("b"));
    // SAFETY: kill with our child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    s.wait_for_event("reload");
    std::thread::sleep(Duration::from_millis(500));
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    let roles: Vec<_> = st
        .components
        .iter()
        .map(|c| (c.name.clone(), c.role))
        .collect();
    s.stop();
    assert!(none_left(&t));
    assert!(
        roles
            .iter()
            .any(|(_, r)| *r == baton_supervise::supervisor::Role::Active),
        "after the reload that removed the active a, set s has no active: {roles:?}"
    );
}

/// A method that leaves a child behind holding its standard output (a probe, validate, stop
/// or monitor_check that backgrounds something: `daemon-ctl status`, `logger &`, ...)
/// freezes the whole supervisor until that child exits: `run_method` reads the pipe to its
/// end. Here the probe itself ends at once, but the supervisor does not see another component
/// die (nor take commands, nor SIGTERM) for 30 s. (The same with a probe past its timeout
/// whose child did `setsid`: the process-group kill misses it, and the read blocks.) The
/// leftover child of a method that ended is never killed either.
#[test]
fn a_methods_child_holding_its_output_does_not_freeze_the_supervisor() {
    let t = TestDomain::new("rv-method-pipe");
    let path = config(
        &t,
        &format!(
            r#"
[[component]]
name = "p"
command = "exec sleep 60"
# The leftover child carries a mark of the test's, so it is killed when the test ends.
probe = 'env BATON_SUPERVISE_MARK={}/sup/leftover/0 sleep 30 & exit 0'
probe_interval = "100ms"
probe_timeout = "300ms"
start_timeout = "100ms"

[[component]]
name = "w"
command = "exec sleep 60"
restart_backoff = "10ms"
"#,
            t.name()
        ),
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("p", "started");
    s.wait_for("w", "started");
    std::thread::sleep(Duration::from_millis(500)); // p's first probe has run
    for p in marked(&t, "w") {
        // SAFETY: kill with a pid found by its mark.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    s.wait_within("w", "restart", Duration::from_secs(5));
    // What a method leaves in its process group is killed when it ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !marked(&t, "leftover").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the probe's leftover child lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.stop();
    assert!(none_left(&t));
}

/// Hostile configurations must be refused with the file, line and field (exit 2), never
/// accepted to panic later: an empty method (`validate = []`: index out of bounds at the first
/// start) or a duration too large for an Instant (overflow when adding it, at the first probe,
/// restart or stop: the supervisor dies and leaves its components running).
#[test]
fn hostile_configurations_are_refused_not_panics() {
    let t = TestDomain::new("rv-hostile");
    let cases = [
        ("validate = []", "exec sleep 60"),
        (
            "probe = []\nprobe_interval = \"100ms\"\nstart_timeout = \"100ms\"",
            "exec sleep 60",
        ),
        ("start = []", "exec sleep 60"),
        ("stop = []\nstart_timeout = \"100ms\"", "exit 1"),
        (
            "probe = \"true\"\nprobe_interval = \"500000000000y\"\nstart_timeout = \"100ms\"",
            "exec sleep 60",
        ),
        ("restart_backoff = \"500000000000y\"", "exit 1"),
        // Every validate and monitor_check would be killed before it ran.
        ("start_timeout = \"0s\"", "exec sleep 60"),
    ];
    let mut bad = Vec::new();
    for (extra, command) in cases {
        let path = config(
            &t,
            &format!("\n[[component]]\nname = \"c\"\ncommand = \"{command}\"\n{extra}\n"),
        );
        let mut child = t
            .baton()
            .args(["supervise"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let outcome = match status {
            None => {
                let _ = child.kill();
                let _ = child.wait();
                "accepted (still running after 2 s)".to_string()
            }
            Some(st) => {
                // The components it started hold its standard error: they go first.
                for p in marked(&t, "") {
                    // SAFETY: kill with the pid of a process carrying this test's mark.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                let mut err = String::new();
                use std::io::Read;
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                if st.code() == Some(2) {
                    continue;
                }
                let panic: Vec<&str> = err
                    .lines()
                    .skip_while(|l| !l.contains("panicked"))
                    .take(2)
                    .collect();
                format!(
                    "{st}: {}",
                    if panic.is_empty() {
                        err.trim()
                    } else {
                        panic[1]
                    }
                )
            }
        };
        for p in marked(&t, "") {
            // SAFETY: kill with the pid of a process carrying this test's mark.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        bad.push(format!("{extra:?}: {outcome}"));
    }
    assert!(bad.is_empty(), "not refused:\n{}", bad.join("\n"));
}

/// Every supervisor of a domain writes its state through the same temporary file:
/// `state_path(..).with_extension("new")` replaces the supervisor's NAME (the text after the
/// last dot of `baton.<domain>~.supervise.<name>`), so it is `baton.<domain>~.supervise.new`
/// for all of them: the state file of a supervisor named `new` (and `x.y` writes through the
/// state of `x.new`). Here supervisor `alpha` starts and its first save moves the state of
/// supervisor `new` onto its own path: `new`'s state is gone (`status` says it never ran, a
/// restart of it adopts nothing and starts its components twice). Two supervisors of other
/// names saving at the same moment rename each other's state into place the same way (seen:
/// "the state file of alpha holds beta's state"; a race, so not asserted here).
#[test]
fn two_supervisors_of_a_domain_do_not_write_each_others_state() {
    let t = TestDomain::new("rv-state-peer");
    let mut sups = Vec::new();
    for name in ["new", "alpha"] {
        let path = std::env::temp_dir().join(format!("baton-supervise-{}-{name}.toml", t.name()));
        let body = format!(
            "[supervisor]\nname = \"{name}\"\ndomain = \"{}\"\n\n[[component]]\nname = \"{name}0\"\ncommand = \"exec sleep 60\"\n",
            t.name()
        );
        std::fs::write(&path, body).unwrap();
        let mut s = Sup::start(&t, &path);
        s.marks = format!("{}/{name}/", t.name());
        s.wait_for(&format!("{name}0"), "started");
        sups.push((s, path));
    }
    std::thread::sleep(Duration::from_millis(200));
    let new = baton_supervise::supervisor::read_state(&t.domain, "new").map(|st| st.name);
    for (s, path) in sups {
        s.stop();
        let _ = std::fs::remove_file(path);
    }
    assert_eq!(
        new,
        Ok("new".to_string()),
        "the state of supervisor new, after supervisor alpha started in its domain"
    );
}

/// A component's death during another component's stop is lost: `process::stop_tree` reaps
/// every child of the supervisor while it waits (`reap()`, results dropped), so the first
/// process of a component that ends meanwhile is reaped there, its `pid` stays set, and
/// `alive()` ("a first process is ours until reaped") takes it for running for ever: never
/// restarted, `status` shows it running with a pid that no longer exists. Any stop that waits
/// does it: an operator's stop or restart, a failover's stop of the active, a restart of a hung
/// one, a reload.
#[test]
fn a_death_during_another_components_stop_is_not_lost() {
    let t = TestDomain::new("rv-reap-lost");
    let path = config(
        &t,
        r#"
[[component]]
name = "x"
command = "trap '' TERM; exec sleep 60"
stop_timeout = "1500ms"

[[component]]
name = "y"
command = "exec sleep 60"
restart_backoff = "10ms"
"#,
    );
    let mut s = Sup::start(&t, &path);
    s.wait_for("x", "started");
    s.wait_for("y", "started");
    let mut op = t
        .baton()
        .args(["supervise", "stop"])
        .arg(&path)
        .arg("x")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    s.wait_for("x", "command");
    std::thread::sleep(Duration::from_millis(300)); // x ignores SIGTERM: its stop waits
    let y = marked(&t, "y");
    for p in &y {
        // SAFETY: kill with a pid found by its mark.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    let _ = op.wait();
    let story = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.wait_within("y", "restart", Duration::from_secs(5));
    }));
    let st = baton_supervise::supervisor::read_state(&t.domain, "sup").unwrap();
    let ys = st
        .components
        .iter()
        .find(|c| c.name == "y")
        .unwrap()
        .clone();
    s.stop();
    assert!(none_left(&t));
    assert!(
        story.is_ok(),
        "y ({y:?}) was killed during x's stop and never restarted; its state: phase {:?}, pid {:?}",
        ys.phase,
        ys.pid
    );
}

/// A set whose active an operator stopped (a set without queues: the roles are labels), then
/// the supervisor restarted: the standby is never started again. `may_launch` makes a standby
/// wait for its set's active's first launch by this supervisor, which never comes (stopped).
#[test]
fn a_standby_is_started_when_its_stopped_active_never_is() {
    let t = TestDomain::new("rv-standby-wait");
    let comp = |n: &str| {
        format!(
            "\n[[component]]\nname = \"{n}\"\ncommand = \"exec sleep 60\"\nredundancy = \"s\"\nstop_timeout = \"300ms\"\nstart_timeout = \"100ms\"\n"
        )
    };
    let path = config(&t, &(comp("a") + &comp("b")));
    let mut s = Sup::start(&t, &path);
    s.wait_for("a", "started");
    s.wait_for("b", "started");
    let o = t
        .baton()
        .args(["supervise", "stop"])
        .arg(&path)
        .arg("a")
        .output()
        .unwrap();
    assert!(o.status.success());
    s.stop();
    let mut s = Sup::start(&t, &path);
    s.wait_within("b", "started", Duration::from_secs(5));
    s.stop();
    assert!(none_left(&t));
}
