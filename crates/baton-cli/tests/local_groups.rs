//! Local process groups against deaths at every step of a membership change: `baton group`
//! processes stopped (SIGABRT) at each failpoint of a JOIN, a LEAVE and a PROCDOWN they write,
//! a member killed in another pid namespace, and the CLI's `--backend local`. An observing
//! member (this test) must see each change exactly when its record was committed, each once,
//! in one order with the messages, and the group must go on working.

mod common;
use baton::{LocalChange, LocalDelivery, LocalGroupConfig, LocalMember};
use common::{ok, Cli, TestDomain};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn observer(t: &TestDomain) -> LocalMember {
    let mut a = LocalMember::join(&t.domain, "g", &LocalGroupConfig::default()).unwrap();
    let first = a.recv(WAIT).unwrap().unwrap();
    assert!(matches!(
        first,
        LocalDelivery::Membership {
            change: LocalChange::Join,
            ..
        }
    ));
    a
}

/// Everything the observer receives until nothing comes for `quiet`.
fn drain(a: &mut LocalMember, quiet: Duration) -> Vec<LocalDelivery> {
    let mut got = Vec::new();
    while let Some(d) = a.recv(Some(quiet)).unwrap() {
        got.push(d);
    }
    got
}

/// What the observer saw of `pid`, in order: "join", "leave", "down", or the message text.
fn story(got: &[LocalDelivery], pid: u32) -> Vec<String> {
    got.iter()
        .filter_map(|d| match d {
            LocalDelivery::Message { pid: p, payload } if *p == pid => {
                Some(String::from_utf8_lossy(payload).into_owned())
            }
            LocalDelivery::Membership { pid: p, change, .. } if *p == pid => Some(
                match change {
                    LocalChange::Join => "join",
                    LocalChange::Leave => "leave",
                    LocalChange::ProcessDown => "down",
                }
                .to_string(),
            ),
            _ => None,
        })
        .collect()
}

/// Runs `baton group ARGS` with `BATON_FAILPOINT=point` until it aborts there; returns its pid.
fn dies_at(t: &TestDomain, point: &str, args: &[&str]) -> u32 {
    let o = t
        .baton()
        .args(["group"])
        .args(args)
        .args(["--backend", "local"])
        .env("BATON_FAILPOINT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = o.id();
    let out = o.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "failpoint {}",
            point.split(['@', ':']).next().unwrap()
        )),
        "{point}: stopped elsewhere: {err}"
    );
    pid
}

/// The group still works after the deaths: the observer's own message comes back, and a new
/// member can join and is told.
fn still_works(t: &TestDomain, a: &mut LocalMember) {
    a.send(b"after").unwrap();
    let got = drain(a, Duration::from_millis(300));
    assert!(
        story(&got, std::process::id()).contains(&"after".to_string()),
        "{got:?}"
    );
    let o = ok(t, &["group", "send", "g", "late", "--backend", "local"]);
    assert!(common::stderr(&o).is_empty() || o.status.success());
    let got = drain(a, Duration::from_millis(300));
    let joiners: Vec<u32> = got
        .iter()
        .filter_map(|d| match d {
            LocalDelivery::Membership {
                pid,
                change: LocalChange::Join,
                ..
            } => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(joiners.len(), 1, "{got:?}");
    assert_eq!(story(&got, joiners[0]), ["join", "late", "leave"]);
}

/// A joiner dies at each step of its JOIN: before its record is claimed, after, and after the
/// commit. The observer hears of it only in the last case, and then once as joined and once
/// as down.
#[test]
fn a_joiner_dying_at_each_step_is_told_exactly_when_its_join_was_committed() {
    for (point, seen) in [
        ("pgroup.journaled", vec![]),
        ("pgroup.claimed", vec![]),
        ("pgroup.committed", vec!["join", "down"]),
    ] {
        let t = TestDomain::new("lg-join-death");
        let mut a = observer(&t);
        let pid = dies_at(&t, point, &["join", "g"]);
        // The observer's wait watches the dead process's slot; the lock it died holding is
        // repaired by the next taker.
        let got = drain(&mut a, Duration::from_millis(500));
        assert_eq!(story(&got, pid), seen, "{point}: {got:?}");
        still_works(&t, &mut a);
    }
}

/// A member dies at each step of its LEAVE (after its message): until the LEAVE is committed
/// it is still a member, and goes as PROCDOWN; after, it left.
#[test]
fn a_leaver_dying_at_each_step_leaves_or_goes_down_once() {
    for (point, seen) in [
        ("pgroup.journaled@2", vec!["join", "x", "down"]),
        ("pgroup.claimed@2", vec!["join", "x", "down"]),
        ("pgroup.committed@2", vec!["join", "x", "leave"]),
    ] {
        let t = TestDomain::new("lg-leave-death");
        let mut a = observer(&t);
        let pid = dies_at(&t, point, &["send", "g", "x"]);
        let got = drain(&mut a, Duration::from_millis(500));
        assert_eq!(story(&got, pid), seen, "{point}: {got:?}");
        still_works(&t, &mut a);
    }
}

/// The process writing a dead member's PROCDOWN dies half way (its claim made, under the dead
/// member's slot, holding the group lock): the next one writes it, once, and the writer's own
/// death is told too.
#[test]
fn a_procdown_writer_dying_half_way_leaves_it_to_the_next_once() {
    let t = TestDomain::new("lg-down-death");
    // Nobody in this process watches while the others act: the observer joins afterwards...
    // but a joiner sees nothing before its join. So the observer joins first and does not
    // receive (does not watch) until the writer is dead.
    let mut a = observer(&t);
    let mut b = spawn_member(&t, &[]);
    // C's first claim is its own JOIN; its second, the PROCDOWN of B, which it writes when
    // its sleep is woken by B's death.
    let mut c = spawn_member(&t, &[("BATON_FAILPOINT", "pgroup.claimed@2")]);
    let (b_pid, c_pid) = (b.id(), c.id());
    wait_for_members(&t, 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    b.wait().unwrap();
    let status = wait_exit(&mut c, Duration::from_secs(10)).expect("C stops at its PROCDOWN claim");
    assert!(!status.success());
    let got = drain(&mut a, Duration::from_millis(500));
    assert_eq!(story(&got, b_pid), ["join", "down"], "{got:?}");
    assert_eq!(story(&got, c_pid), ["join", "down"], "{got:?}");
    still_works(&t, &mut a);
}

/// A member in another pid namespace (pid 1 there) killed with SIGKILL: its PROCDOWN comes,
/// from the kernel's robust-lock release, not from its pid.
#[test]
fn a_member_in_another_pid_namespace_killed_is_told_down() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for unshare --pid");
        return;
    }
    let t = TestDomain::new("lg-pidns");
    let mut a = observer(&t);
    let mut other = common::baton_in_new_pid_namespace(&t)
        .args(["group", "join", "g", "--backend", "local"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let joined = wait_for_members(&t, 2);
    assert!(joined.contains(&1), "pid 1 in its namespace: {joined:?}");
    let got = drain(&mut a, Duration::from_millis(300));
    assert_eq!(story(&got, 1), ["join"]);
    other.kill().unwrap(); // `unshare --kill-child`: the member dies with it
    other.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while !story(&got, 1).contains(&"down".to_string()) && Instant::now() < deadline {
        if let Some(d) = a.recv(Some(Duration::from_millis(100))).unwrap() {
            got.push(d);
        }
    }
    assert_eq!(story(&got, 1), ["down"], "{got:?}");
    assert_eq!(a.members(), vec![std::process::id()]);
}

/// `baton group join|send|members --backend local`: the CLI's local groups, in the domain.
#[test]
fn the_cli_joins_sends_and_lists_a_local_group() {
    let t = TestDomain::new("lg-cli");
    let mut joined = t
        .baton()
        .args([
            "--json",
            "group",
            "join",
            "g",
            "-n",
            "2",
            "--backend",
            "local",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_members(&t, 1);
    let o = ok(&t, &["group", "members", "g", "--backend", "local"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("0/{}", joined.id())
    );
    ok(
        &t,
        &["group", "send", "g", "one", "two", "--backend", "local"],
    );
    let out = wait_exit(&mut joined, Duration::from_secs(10)).unwrap();
    assert!(out.success());
    let mut text = String::new();
    use std::io::Read;
    joined
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "membership");
    assert_eq!(lines[0]["reason"], "join");
    assert_eq!(lines.last().unwrap()["payload"], "two");
    let o = t
        .baton()
        .args(["group", "join", "a/b", "--backend", "local"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    let o = t
        .baton()
        .args(["group", "members", "g", "--backend", "nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn spawn_member(t: &TestDomain, env: &[(&str, &str)]) -> Child {
    let mut c = t.baton();
    c.args(["group", "join", "g", "--backend", "local"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// The members once there are `n` (10 s at most), from the table.
fn wait_for_members(t: &TestDomain, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = LocalMember::members_of(&t.domain, "g").unwrap();
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exit(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
