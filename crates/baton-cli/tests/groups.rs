//! `baton group` and `baton send --group`, and a process killed in the middle of a group
//! change (in this pid namespace and in another): the group stays consistent, senders never
//! wait for the changer, and the next change goes through.

mod common;
use baton::{Attributes, Group, GroupPolicy, Queue};
use common::{ok, run, stderr, Child, Cli, TestDomain};
use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn groups_are_made_filled_listed_sent_to_and_removed_from_the_command_line() {
    let t = TestDomain::new("cli-grp");
    ok(&t, &["create", "a"]);
    ok(&t, &["create", "b"]);
    ok(&t, &["group", "create", "w", "--policy", "round-robin"]);
    ok(&t, &["group", "add", "w", "a", "b"]);
    let o = ok(&t, &["group", "ls"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "w (round-robin): a b\n");
    let o = ok(
        &t,
        &["--json", "send", "--group", "w", "one", "two", "three"],
    );
    let v = json(&o);
    assert_eq!(v["sent"], 3);
    assert_eq!(v["delivered_to"], serde_json::json!([["a"], ["b"], ["a"]]));
    // Standard input, one message per line, each picking its queue.
    let mut c = t.baton();
    c.args(["--json", "send", "-g", "w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"x\ny\n").unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(json(&o)["delivered_to"], serde_json::json!([["b"], ["a"]]));
    ok(&t, &["group", "remove", "w", "b"]);
    ok(&t, &["rm", "--force", "a"]);
    let v = json(&ok(&t, &["--json", "group", "ls", "w"]));
    assert_eq!(v["groups"][0]["members"][0]["queue"], "a");
    assert_eq!(v["groups"][0]["members"][0]["queue_exists"], false);
    let o = ok(&t, &["group", "ls", "w"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("a (no such queue)"));
    ok(&t, &["group", "rm", "w"]);
    let o = ok(&t, &["group", "ls"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("no queue groups"));
}

#[test]
fn group_commands_say_what_is_wrong_with_their_own_exit_status() {
    let t = TestDomain::new("cli-grp-errs");
    ok(&t, &["create", "a"]);
    ok(&t, &["group", "create", "w"]);
    let cases: [(&[&str], i32, &str); 8] = [
        (&["group", "create", "w"], 5, "exists already"),
        (&["group", "add", "nope", "a"], 4, "no queue group \"nope\""),
        (
            &["group", "add", "w", "missing"],
            4,
            "queue \"missing\" does not exist",
        ),
        (&["group", "remove", "w", "a"], 5, "not a member"),
        (
            &["group", "create", "x", "--policy", "random"],
            2,
            "unknown policy",
        ),
        (&["send", "--group", "w", "hi"], 1, "no members"),
        (&["send", "--group", "nope", "hi"], 4, "no queue group"),
        (&["group", "rm", "nope"], 4, "no queue group"),
    ];
    for (args, code, text) in cases {
        let o = run(&t, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(text), "{args:?}: {}", stderr(&o));
    }
    ok(&t, &["group", "add", "w", "a"]);
    let o = run(&t, &["group", "add", "w", "a"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}

#[test]
fn a_broadcast_from_the_command_line_reaches_every_member() {
    let t = TestDomain::new("cli-grp-bc");
    ok(&t, &["create", "a"]);
    ok(&t, &["create", "b"]);
    ok(&t, &["group", "create", "all", "--policy", "broadcast"]);
    ok(&t, &["group", "add", "all", "a", "b"]);
    let v = json(&ok(&t, &["--json", "send", "-g", "all", "news"]));
    assert_eq!(v["delivered_to"], serde_json::json!([["a", "b"]]));
    for q in ["a", "b"] {
        let o = ok(&t, &["recv", q, "--count", "1"]);
        assert_eq!(o.stdout, b"news\n");
    }
}

/// `baton ARGS` with failpoint `fp` set to pause; returns once it has paused there.
fn paused_at(t: &TestDomain, namespace: bool, args: &[&str], fp: &str) -> Child {
    let mut c = if namespace {
        common::baton_in_new_pid_namespace(t)
    } else {
        t.baton()
    };
    c.args(args)
        .env("BATON_FAILPOINT", format!("{fp}:pause"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Child::spawn(&mut c);
    let err = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(err).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("reached the failpoint");
    assert!(line.contains(&format!("failpoint {fp}")), "{line}");
    child
}

fn killed_in_the_middle_of_a_change(namespace: bool) {
    if namespace && !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot make pid namespaces; test not run");
        return;
    }
    let t = TestDomain::new(if namespace { "grp-kill-ns" } else { "grp-kill" });
    for q in ["a", "b", "c"] {
        Queue::create(&t.domain, q, &Attributes::default()).unwrap();
    }
    let g = Group::create(&t.domain, "g", GroupPolicy::RoundRobin).unwrap();
    g.add("a").unwrap();
    // Where the changer stops, and whether its change was published by then.
    for (fp, published) in [
        ("roster_written", false),
        ("roster_stamped", false),
        ("group_changed", true),
    ] {
        let changer = paused_at(&t, namespace, &["group", "add", "g", "b"], fp);
        // It holds the group's lock: senders do not wait for it, and see whole tables.
        let before = g.members().unwrap();
        let to = g.sender().send(b"during").unwrap().delivered;
        assert!(
            before.iter().any(|m| m.queue == to[0]),
            "{fp}: sent to a member"
        );
        drop(changer); // SIGKILL, by pid
        let names = |g: &Group| -> Vec<String> {
            g.members().unwrap().into_iter().map(|m| m.queue).collect()
        };
        let expect_b = published;
        assert_eq!(
            names(&g).contains(&"b".to_string()),
            expect_b,
            "{fp}: {:?}",
            names(&g)
        );
        // The next change finds the lock of a dead holder and goes through at once.
        let start = std::time::Instant::now();
        g.add("c").unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{fp}: {:?}",
            start.elapsed()
        );
        g.remove_member("c").unwrap();
        if expect_b {
            g.remove_member("b").unwrap();
        }
        assert_eq!(names(&g), ["a"], "{fp}");
    }
}

#[test]
fn a_process_killed_in_the_middle_of_a_group_change_leaves_the_group_consistent() {
    killed_in_the_middle_of_a_change(false);
}

#[test]
fn a_changer_killed_in_another_pid_namespace_leaves_the_group_consistent() {
    killed_in_the_middle_of_a_change(true);
}
