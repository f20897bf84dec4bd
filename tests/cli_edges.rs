//! The `baton` CLI loses no message at its edges: readers that stop early, commands that fail,
//! signals at each step. Each test runs the real binary and counts what stays in the queue.

mod common;
use common::TestDomain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Output, Stdio};
use std::time::Duration;

fn run(t: &TestDomain, args: &[&str]) -> Output {
    t.baton().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A shell pipeline with `$B` the baton binary and the test's domain.
fn shell(t: &TestDomain, script: &str) -> Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("B", env!("CARGO_BIN_EXE_baton"))
        .env("BATON_DOMAIN", t.name())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What `recv --drain --json` takes now, as (payload, redelivered) pairs.
fn drain(t: &TestDomain, q: &str) -> Vec<(String, bool)> {
    let o = run(t, &["--json", "recv", q, "--drain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["payload"].as_str().unwrap().to_string(),
                v["redelivered"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn numbers(from: u32, to: u32) -> Vec<String> {
    (from..=to).map(|i| i.to_string()).collect()
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// `recv | head -n 3` used to lose the ~40 messages written into the pipe after the three
/// `head` printed. recv now acknowledges a message only once its reader has read it: nothing
/// is lost, the one message left in the pipe is given back, and recv ends as quietly as a tool
/// killed by SIGPIPE.
#[test]
fn a_reader_that_stops_early_loses_nothing() {
    let t = TestDomain::new("edge-head");
    assert!(run(&t, &["create", "q"]).status.success());
    let o = shell(&t, "seq 1000 | $B send q");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = shell(&t, "$B recv q | head -n 3; exit 0");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n2\n3\n");
    assert_eq!(stderr(&o), "", "quiet, like a tool killed by SIGPIPE");
    let rest = drain(&t, "q");
    assert_eq!(rest.len(), 997, "{:?}", &rest[..rest.len().min(5)]);
    assert_eq!(
        rest.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        numbers(4, 1000),
        "every message the reader did not read is still there"
    );
    assert!(
        rest[0].1,
        "the one left in the pipe comes back flagged redelivered"
    );
    assert!(rest[1..].iter().all(|(_, r)| !r));
}

/// The status of a recv whose reader left is 141 (128 + SIGPIPE), as for other tools.
#[test]
fn recv_whose_reader_left_exits_141() {
    let t = TestDomain::new("edge-141");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "a", "b", "c"]).status.success());
    let o = shell(&t, "$B recv q | (read first; echo \"$first\"); exit 0");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a\n");
    let o = shell(&t, "$B recv q --timeout 10s | head -c 0; exit 0");
    assert!(o.status.success(), "{}", stderr(&o));
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg("$B recv q --timeout 10s | head -n 1 >/dev/null; echo ${PIPESTATUS[0]}")
        .env("B", env!("CARGO_BIN_EXE_baton"))
        .env("BATON_DOMAIN", t.name())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&bash.stdout), "141\n");
    // `read` took a, `head -c 0` nothing, `head -n 1` b (given back once before).
    assert_eq!(drain(&t, "q"), vec![("c".into(), true)]);
}

/// `--count N` takes exactly N: the rest stay, and are not even flagged redelivered.
#[test]
fn count_takes_exactly_n_and_acknowledges_nothing_beyond() {
    let t = TestDomain::new("edge-count");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "1", "2", "3", "4", "5"])
        .status
        .success());
    let o = shell(&t, "$B recv q --count 2 | cat");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n2\n");
    assert_eq!(
        drain(&t, "q"),
        vec![
            ("3".into(), false),
            ("4".into(), false),
            ("5".into(), false)
        ]
    );
}

/// `--drain` takes what waits and exits 0, also when nothing waits.
#[test]
fn drain_takes_what_waits_and_exits_0_on_an_empty_queue() {
    let t = TestDomain::new("edge-drain");
    assert!(run(&t, &["create", "q"]).status.success());
    let o = run(&t, &["recv", "q", "--drain"]);
    assert_eq!(
        (o.status.code(), o.stdout.len()),
        (Some(0), 0),
        "{}",
        stderr(&o)
    );
    assert!(run(&t, &["send", "q", "a", "b"]).status.success());
    let o = run(&t, &["recv", "q", "--drain"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a\nb\n");
    assert_eq!(o.status.code(), Some(0));
}

/// `--exec`: a message is acknowledged only when the command exits 0; a failing one is tried
/// `--max-attempts` times, flagged redelivered after the first, then moved to the dead-letter
/// queue with its priority and type; the command sees payload and metadata.
#[test]
fn exec_acknowledges_on_success_retries_then_dead_letters() {
    let t = TestDomain::new("edge-exec");
    for q in ["q", "dead"] {
        assert!(run(&t, &["create", q]).status.success());
    }
    assert!(run(
        &t,
        &["send", "q", "-p", "1", "-t", "7", "good", "bad", "fine"]
    )
    .status
    .success());
    let log = std::env::temp_dir().join(format!("baton-exec-{}.log", t.name()));
    let script = format!(
        "p=$(cat); echo \"$p $BATON_ATTEMPT $BATON_REDELIVERED $BATON_PRIORITY $BATON_TYPE \
         $BATON_QUEUE $BATON_LENGTH\" >> {}; [ \"$p\" != bad ]",
        log.display()
    );
    let o = run(
        &t,
        &[
            "recv",
            "q",
            "--drain",
            "--max-attempts",
            "2",
            "--dead-letter",
            "dead",
            "--exec",
            "sh",
            "-c",
            &script,
        ],
    );
    let runs = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        runs,
        "good 1 0 1 7 q 4\nbad 1 0 1 7 q 3\nbad 2 1 1 7 q 3\nfine 1 0 1 7 q 4\n"
    );
    assert!(
        stderr(&o).contains("moved it to queue dead"),
        "{}",
        stderr(&o)
    );
    assert_eq!(drain(&t, "q"), vec![]);
    let o = run(&t, &["--json", "recv", "dead", "--drain"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["payload"], &v["priority"], &v["type"]),
        (
            &serde_json::json!("bad"),
            &serde_json::json!(1),
            &serde_json::json!(7)
        )
    );
}

/// Without a dead-letter queue, a message the command keeps failing on stays in the queue and
/// recv stops with an error naming it.
#[test]
fn exec_without_dead_letter_leaves_a_failing_message_in_place() {
    let t = TestDomain::new("edge-exec-stay");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "x", "y"]).status.success());
    let o = run(&t, &["recv", "q", "--max-attempts", "3", "--exec", "false"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("false exited 1 on message"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("3 times; it stays in the queue"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        drain(&t, "q"),
        vec![("x".into(), true), ("y".into(), false)]
    );
    assert!(run(&t, &["send", "q", "z"]).status.success());
    let o = run(&t, &["recv", "q", "--drain", "--exec", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot run /no/such/command"));
    assert_eq!(drain(&t, "q"), vec![("z".into(), true)]);
}

/// A signal while the command runs is passed on to it; the message is acknowledged only if
/// the command still exits 0, so a command killed by it leaves the message in the queue.
#[test]
fn a_signal_during_exec_is_passed_on_and_the_message_stays() {
    let t = TestDomain::new("edge-exec-sig");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "slow"]).status.success());
    let marker = std::env::temp_dir().join(format!("baton-exec-started-{}", t.name()));
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--exec", "sh", "-c"])
            .arg(format!("touch {}; exec sleep 30", marker.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    assert!(common::eventually(Duration::from_secs(10), || marker.exists()));
    let _ = std::fs::remove_file(&marker);
    signal(rx.pid(), Signal::SIGTERM);
    let out = rx.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(drain(&t, "q"), vec![("slow".into(), true)]);
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!(st.takeovers, 0, "a clean close, not a crash");
}

/// A signal while recv waits for a slow pipe reader gives the message back.
#[test]
fn a_signal_while_the_pipe_reader_is_slow_gives_the_message_back() {
    let t = TestDomain::new("edge-slow");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "one"]).status.success());
    // A reader that never reads: the message sits in the pipe.
    let mut reader = common::Child::spawn(
        std::process::Command::new("sleep")
            .arg("30")
            .stdin(Stdio::piped()),
    );
    let pipe = reader.0.stdin.take().unwrap();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(pipe)
            .stderr(Stdio::piped()),
    );
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .lanes[3]
        .unacknowledged
        == 1));
    signal(rx.pid(), Signal::SIGINT);
    let out = rx.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    drop(reader);
    assert_eq!(drain(&t, "q"), vec![("one".into(), true)]);
}

/// SIGTERM ends `send` between messages: waiting for space in a full queue, or waiting for
/// input. It says how many went; none is half sent.
#[test]
fn send_ends_cleanly_on_a_signal_and_says_how_many_went() {
    let t = TestDomain::new("edge-send-sig");
    assert!(run(
        &t,
        &["create", "q", "--capacity", "128", "--max-message", "32"]
    )
    .status
    .success());
    // Blocked on space: 128 bytes hold two 1-byte messages (64-byte cells).
    let tx = common::Child::spawn(
        t.baton()
            .args(["send", "q", "a", "b", "c"])
            .stderr(Stdio::piped()),
    );
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .lanes[3]
        .waiting_senders
        > 0));
    signal(tx.pid(), Signal::SIGTERM);
    let out = tx.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped by signal 15; 2 sent, argument 3 not"),
        "{}",
        stderr(&out)
    );
    assert_eq!(drain(&t, "q").len(), 2);
    // Waiting for input on a pipe that stays open.
    let mut tx = common::Child::spawn(
        t.baton()
            .args(["send", "q"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = tx.0.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"first\n").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .sent
        == 3));
    signal(tx.pid(), Signal::SIGINT);
    let out = tx.wait_output(Duration::from_secs(10));
    drop(input);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 sent"), "{}", stderr(&out));
    assert_eq!(drain(&t, "q"), vec![("first".into(), false)]);
}

/// A failed send reports how many went and which input record failed, also in JSON.
#[test]
fn a_partial_send_says_what_went_and_what_failed() {
    let t = TestDomain::new("edge-partial");
    assert!(run(&t, &["create", "q", "--max-message", "8"])
        .status
        .success());
    let o = shell(
        &t,
        "printf 'ok\\nfine\\nmuch too long\\nlost\\n' | $B --json send q",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("line 3 of standard input not sent (2 sent before it)"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], serde_json::json!(1));
    assert_eq!(v["sent"], serde_json::json!(2));
    assert_eq!(v["failed"]["index"], serde_json::json!(3));
    assert_eq!(
        v["failed"]["message"],
        serde_json::json!("line 3 of standard input")
    );
    assert!(v["failed"]["error"].as_str().unwrap().contains("too big"));
    assert_eq!(drain(&t, "q").len(), 2);
}

/// `--watch` refreshes until a signal, which ends it with status 0 (nothing to give back).
#[test]
fn watch_refreshes_json_lines_until_a_signal() {
    let t = TestDomain::new("edge-watch");
    assert!(run(&t, &["create", "q"]).status.success());
    let w = common::Child::spawn(
        t.baton()
            .args(["--json", "stat", "q", "--watch", "50ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(run(&t, &["send", "q", "x"]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    signal(w.pid(), Signal::SIGINT);
    let out = w.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sent"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(
        (seen.first(), seen.last()),
        (Some(&0), Some(&1)),
        "{seen:?}"
    );
}
