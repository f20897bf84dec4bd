//! `baton request` and `baton serve`: a shell user's request/reply, with real processes,
//! SIGKILL and injected faults (needs `--features failpoints`).

mod common;
use common::{eventually, ok, run, stderr, Child, Cli, TestDomain};
use std::process::Stdio;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

fn stat_json(t: &TestDomain, name: &str) -> serde_json::Value {
    let o = ok(t, &["--json", "stat", name]);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `baton serve Q -- ARGS` in the background, killed by pid when dropped.
fn serve(t: &TestDomain, extra: &[&str], command: &[&str], failpoint: Option<&str>) -> Child {
    let mut cmd = t.baton();
    cmd.args(["serve", "svc"])
        .args(extra)
        .arg("--")
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("BATON_FAILPOINT", f);
    }
    Child::spawn(&mut cmd)
}

#[test]
fn a_request_is_answered_by_the_output_of_serves_command() {
    let t = TestDomain::new("cli-serve");
    ok(&t, &["create", "svc"]);
    let _server = serve(&t, &[], &["sh", "-c", "printf 'got: '; cat"], None);
    let o = ok(&t, &["request", "svc", "hello"]);
    assert_eq!(o.stdout, b"got: hello");
    let o = ok(&t, &["--json", "request", "svc", "--priority", "0", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reply"], "got: json");
    assert_eq!(v["len"], 9);
    let st = stat_json(&t, "svc");
    assert_eq!(st["reply_boxes_in_use"], 0);
    assert_eq!(st["replies_dropped"], 0);
}

#[test]
fn no_reply_in_time_exits_3_and_the_late_reply_is_dropped_and_counted() {
    let t = TestDomain::new("cli-late");
    ok(&t, &["create", "svc"]);
    let o = run(&t, &["request", "svc", "anyone", "--timeout", "0.1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no reply from queue svc"),
        "{}",
        stderr(&o)
    );
    let o = ok(&t, &["serve", "svc", "--count", "1", "--", "cat"]);
    assert!(stderr(&o).contains("no longer waits"), "{}", stderr(&o));
    assert_eq!(stat_json(&t, "svc")["replies_dropped"], 1);
}

#[test]
fn a_failing_command_sends_no_reply_and_the_request_is_tried_again() {
    let t = TestDomain::new("cli-serve-fails");
    ok(&t, &["create", "svc"]);
    // Fails on the first attempt, answers on the second (BATON_ATTEMPT counts them).
    let _server = serve(
        &t,
        &["--max-attempts", "2"],
        &[
            "sh",
            "-c",
            "[ \"$BATON_ATTEMPT\" = 2 ] && echo \"second try\"",
        ],
        None,
    );
    let o = ok(&t, &["request", "svc", "x"]);
    assert_eq!(o.stdout, b"second try\n");
}

#[test]
fn an_output_too_long_for_a_reply_is_a_failed_attempt_not_a_cut_reply() {
    let t = TestDomain::new("cli-serve-long");
    ok(&t, &["create", "svc", "--max-message", "100"]);
    let requester = {
        let mut c = t.baton();
        c.args(["request", "svc", "big", "--timeout", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Child::spawn(&mut c)
    };
    eventually(LONG, || stat_json(&t, "svc")["reply_boxes_in_use"] == 1);
    let o = t
        .baton()
        .args(["serve", "svc", "--count", "1", "--max-attempts", "1", "--"])
        .args(["sh", "-c", "head -c 101 /dev/zero"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a reply holds at most 100 bytes"),
        "{}",
        stderr(&o)
    );
    let out = requester.wait_output(LONG);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no reply: the requester times out"
    );
}

#[test]
fn create_takes_reply_boxes_and_zero_refuses_requests() {
    let t = TestDomain::new("cli-boxes");
    let o = ok(&t, &["create", "svc", "--reply-boxes", "0"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 reply boxes"));
    let o = run(&t, &["request", "svc", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("0 reply boxes"), "{}", stderr(&o));
    let o = run(&t, &["create", "svc", "--reply-boxes", "2"]);
    assert!(
        stderr(&o).contains("reply boxes are 0 (asked 2)"),
        "{}",
        stderr(&o)
    );
}

/// The server is killed (SIGKILL) after its command ran and in the middle of writing the
/// reply: a standby server takes the queue over, runs the command on the redelivered request,
/// and its reply is the one the requester prints, exactly once.
#[test]
fn a_server_killed_while_writing_its_reply_is_replaced_and_the_requester_gets_one_reply() {
    let t = TestDomain::new("cli-serve-killed");
    ok(&t, &["create", "svc"]);
    let first = serve(
        &t,
        &[],
        &["sh", "-c", "echo \"first $BATON_REDELIVERED\""],
        Some("reply.written:pause"),
    );
    let requester = {
        let mut c = t.baton();
        c.args(["request", "svc", "once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Child::spawn(&mut c)
    };
    // The first server stops with the reply box won and written, not published.
    assert!(eventually(LONG, || {
        let st = stat_json(&t, "svc");
        st["reply_boxes_in_use"] == 1 && st["lanes"][3]["unacknowledged"] == 1
    }));
    std::thread::sleep(Duration::from_millis(100));
    let _second = serve(
        &t,
        &["--standby"],
        &["sh", "-c", "echo \"second $BATON_REDELIVERED\""],
        None,
    );
    drop(first); // SIGKILL, by pid
    let out = requester.wait_output(LONG);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"second 1\n");
    let st = stat_json(&t, "svc");
    assert_eq!(st["reply_boxes_in_use"], 0);
    assert_eq!(st["replies_dropped"], 0);
}

/// Review: every sender slot is held when serve replies (a transient condition), so its reply
/// cannot be written: the request must stay in the queue, not be acknowledged unanswered.
#[test]
fn a_reply_that_could_not_be_written_leaves_the_request_in_the_queue() {
    let t = TestDomain::new("cli-serve-noslot");
    ok(&t, &["create", "svc"]);
    let requester = {
        let mut c = t.baton();
        c.args(["request", "svc", "x", "--timeout", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Child::spawn(&mut c)
    };
    assert!(eventually(LONG, || stat_json(&t, "svc")
        ["reply_boxes_in_use"]
        == 1));
    // Hold every other slot: one attachment (and keeper thread) each.
    let mut held = Vec::new();
    loop {
        let q = baton::Queue::open(&t.domain, "svc").unwrap();
        match q.standby_mark() {
            Ok(m) => held.push((m, q)),
            Err(_) => break,
        }
    }
    let o = run(
        &t,
        &["serve", "svc", "--count", "1", "--", "echo", "answer"],
    );
    drop(held);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the request stays in the queue"),
        "{}",
        stderr(&o)
    );
    // The request is still there: a serve with a slot answers it, and the requester prints it.
    let _server = serve(&t, &[], &["echo", "answer"], None);
    let out = requester.wait_output(LONG);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"answer\n");
}
