//! `baton group join|send|members` against a real corosync in private namespaces (the
//! harness of baton-cluster's tests): a joined member prints every message and membership
//! change in order, `send` returns once its messages are delivered back, `members` lists
//! without joining, and the errors say what is wrong.

#[path = "../../baton-cluster/tests/harness/mod.rs"]
mod harness;
use harness::{root, serial, Node};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `baton ARGS` (run from a thread in the node's network namespace, so the child is in it).
fn baton(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
    c.args(args)
        .stdin(Stdio::null())
        .env("BATON_GROUP_BACKEND", "corosync");
    c
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn join_prints_messages_and_changes_in_order_and_send_returns_once_delivered() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("cli");
    node.enter();
    // Corosync up: a join works.
    drop(node.join("cli-probe"));
    let mut joined = baton(&["--json", "group", "join", "jobs", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = joined.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(first["kind"], "membership");
    assert_eq!(first["reason"], "join");
    assert_eq!(first["member"]["pid"], joined.id());

    let members = baton(&["--json", "group", "members", "jobs"])
        .output()
        .unwrap();
    assert!(members.status.success(), "{}", text(&members.stderr));
    let m: serde_json::Value = serde_json::from_slice(&members.stdout).unwrap();
    assert_eq!(
        m["members"].as_array().unwrap().len(),
        1,
        "members does not join"
    );
    assert_eq!(m["members"][0]["pid"], joined.id());

    let sent = baton(&["group", "send", "jobs", "one", "two"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    assert!(text(&sent.stdout).starts_with("sent 2 to process group jobs as 1/"));

    let mut seen = vec![first];
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(serde_json::from_str(&l).unwrap());
    }
    let status = joined.wait().unwrap();
    assert!(status.success(), "join exits after --count messages");
    let kinds: Vec<String> = seen
        .iter()
        .map(|v| match v["kind"].as_str().unwrap() {
            "message" => format!("message {}", v["payload"].as_str().unwrap()),
            _ => format!("{} {}", v["reason"].as_str().unwrap(), v["member"]["pid"]),
        })
        .collect();
    let sender = seen
        .iter()
        .find(|v| v["kind"] == "message")
        .map(|v| v["from"]["pid"].clone())
        .unwrap();
    assert_eq!(
        kinds,
        vec![
            format!("join {}", joined.id()),
            format!("join {sender}"),
            "message one".to_string(),
            "message two".to_string(),
        ],
        "{seen:#?}"
    );
}

#[test]
fn a_stopped_join_exits_130_and_errors_say_what_is_wrong() {
    let _serial = serial();
    if !root() {
        return;
    }
    // No corosync in this thread's network namespace: a clear error, exit 1.
    let lonely = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        baton(&["group", "send", "jobs", "x"]).output().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(lonely.status.code(), Some(1));
    assert!(
        text(&lonely.stderr).contains("corosync"),
        "{}",
        text(&lonely.stderr)
    );

    let long = "x".repeat(129);
    let o = baton(&["group", "members", &long]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("128"), "{}", text(&o.stderr));

    let node = Node::start("cli-stop");
    node.enter();
    drop(node.join("cli-probe"));
    let mut joined = baton(&["group", "join", "jobs"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(joined.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains(" join (members: "), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(joined.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(joined.wait().unwrap().code(), Some(130));
}
