//! The `baton` CLI loses no message at its edges: readers that stop early, commands that fail,
//! signals at each step. Each test runs the real binary and counts what stays in the queue.

mod common;
use common::{ok, run, stderr, Cli, TestDomain};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Output, Stdio};
use std::time::Duration;

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
    common::received(&o)
}

fn numbers(from: u32, to: u32) -> Vec<String> {
    (from..=to).map(|i| i.to_string()).collect()
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// A queue `q` for messages up to 1 MiB, holding `payload`.
fn big_queue(t: &TestDomain, payload: &[u8]) -> baton::Queue {
    let o = run(
        t,
        &["create", "q", "--max-message", "1M", "--capacity", "4M"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    queue.sender().send(payload).unwrap();
    queue
}

/// Sends `sig` to `child` and waits for it to end (at most 10 s).
fn stop(child: common::Child, sig: Signal) -> Output {
    signal(child.pid(), sig);
    child.wait_output(Duration::from_secs(10))
}

/// Waits (at most 10 s) for another process to bring about `cond`, and fails if it does not.
fn until(cond: impl FnMut() -> bool) {
    assert!(common::eventually(Duration::from_secs(10), cond));
}

/// `recv | head -n 3` used to lose the ~40 messages written into the pipe after the three
/// `head` printed. recv now acknowledges a message only once its reader has read it: nothing
/// is lost, the one message left in the pipe is given back, and recv ends as quietly as a tool
/// killed by SIGPIPE.
#[test]
fn a_reader_that_stops_early_loses_nothing() {
    let t = TestDomain::new("edge-head");
    ok(&t, &["create", "q"]);
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
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "a", "b", "c"]);
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
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "1", "2", "3", "4", "5"]);
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
    ok(&t, &["create", "q"]);
    let o = run(&t, &["recv", "q", "--drain"]);
    assert_eq!(
        (o.status.code(), o.stdout.len()),
        (Some(0), 0),
        "{}",
        stderr(&o)
    );
    ok(&t, &["send", "q", "a", "b"]);
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
        ok(&t, &["create", q]);
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
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "x", "y"]);
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
    ok(&t, &["send", "q", "z"]);
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
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "slow"]);
    let marker = std::env::temp_dir().join(format!("baton-exec-started-{}", t.name()));
    ok(&t, &["create", "dead"]);
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--max-attempts", "1", "--dead-letter", "dead"])
            .args(["--exec", "sh", "-c"])
            .arg(format!("touch {}; exec sleep 30", marker.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    assert!(common::eventually(Duration::from_secs(10), || marker.exists()));
    let _ = std::fs::remove_file(&marker);
    let out = stop(rx, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(
        drain(&t, "q"),
        vec![("slow".into(), true)],
        "the stop used up no attempt: not dead-lettered"
    );
    assert_eq!(drain(&t, "dead"), vec![]);
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!(st.takeovers, 0, "a clean close, not a crash");
}

/// A signal while recv waits for a slow pipe reader gives the message back.
#[test]
fn a_signal_while_the_pipe_reader_is_slow_gives_the_message_back() {
    let t = TestDomain::new("edge-slow");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "one"]);
    // A reader that never reads: the message sits in the pipe.
    let (reader, pipe) = common::reader_that_never_reads();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(pipe)
            .stderr(Stdio::piped()),
    );
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    until(|| queue.status().lanes[3].unacknowledged == 1);
    let out = stop(rx, Signal::SIGINT);
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
    until(|| queue.status().lanes[3].waiting_senders > 0);
    let out = stop(tx, Signal::SIGTERM);
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
    let out = stop(tx, Signal::SIGINT);
    drop(input);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 sent"), "{}", stderr(&out));
    assert_eq!(drain(&t, "q"), vec![("first".into(), false)]);
}

/// A failed send reports how many went and which input record failed, also in JSON.
#[test]
fn a_partial_send_says_what_went_and_what_failed() {
    let t = TestDomain::new("edge-partial");
    ok(&t, &["create", "q", "--max-message", "8"]);
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

/// `--watch` refreshes until a signal, which ends it as any command stopped by one (130).
#[test]
fn watch_refreshes_json_lines_until_a_signal() {
    let t = TestDomain::new("edge-watch");
    ok(&t, &["create", "q"]);
    let mut w = common::Child::spawn(
        t.baton()
            .args(["--json", "stat", "q", "--watch", "50ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Each refresh's `sent`, as it comes.
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let stdout = w.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let v = serde_json::from_str::<serde_json::Value>(&line).unwrap()["sent"]
                .as_u64()
                .unwrap();
            seen.push(v);
            let _ = sent_tx.send(v);
        }
        seen
    });
    let next = || sent.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(next(), 0);
    ok(&t, &["send", "q", "x"]);
    while next() != 1 {}
    next(); // and it goes on refreshing
    let out = stop(w, Signal::SIGINT);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let seen = reader.join().unwrap();
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(
        (seen.first(), seen.last()),
        (Some(&0), Some(&1)),
        "{seen:?}"
    );
}

/// The same protection as a pipe when standard output is a Unix socket (a supervisor's
/// socketpair, inetd, systemd): a peer that reads one message and closes loses nothing.
#[test]
fn a_unix_socket_reader_that_stops_early_loses_nothing() {
    use std::io::Read;
    let t = TestDomain::new("edge-socket");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "m1", "m2", "m3"]);
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(std::os::fd::OwnedFd::from(theirs))
            .stderr(Stdio::piped()),
    );
    let mut first = [0u8; 3];
    ours.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"m1\n");
    // Once recv has seen m1 read (and acknowledged it), the peer goes with m2 unread. (A
    // peer that reads and closes at once may get its last message again: a socket drops
    // what its peer left, so recv cannot tell "read" from "dropped" then.)
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .received
        == 1));
    drop(ours);
    let out = rx.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(
        drain(&t, "q"),
        vec![("m2".into(), true), ("m3".into(), false)]
    );
}

/// A signal ends recv even in the middle of writing a message bigger than the pipe to a
/// reader that does not read: the message is given back, recv exits 143 at once.
#[test]
fn a_signal_ends_a_write_blocked_on_a_reader_that_does_not_read() {
    let t = TestDomain::new("edge-bigwrite");
    let queue = big_queue(&t, &vec![b'x'; 1 << 20]);
    let (reader, pipe) = common::reader_that_never_reads();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(pipe)
            .stderr(Stdio::piped()),
    );
    until(|| queue.status().lanes[3].unacknowledged == 1);
    std::thread::sleep(Duration::from_millis(50));
    let asked = std::time::Instant::now();
    let out = stop(rx, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "ended at once, not when the reader left"
    );
    drop(reader);
    let o = run(&t, &["--json", "recv", "q", "--drain"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["len"].as_u64(), &v["redelivered"]),
        (Some(1 << 20), &serde_json::json!(true))
    );
}

/// A whole record waiting in the pipe for a reader that does not read it within the grace is
/// not counted as delivered: recv ends on the stop, and the message comes again, flagged.
#[test]
fn a_record_left_unread_past_the_grace_comes_again() {
    let t = TestDomain::new("edge-unread-grace");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "m"]);
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    let (reader, pipe) = common::reader_that_never_reads();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(pipe)
            .stderr(Stdio::piped()),
    );
    until(|| queue.status().lanes[3].unacknowledged == 1);
    let out = stop(rx, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    drop(reader);
    let o = run(&t, &["--json", "recv", "q", "--drain"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["payload"].as_str(), &v["redelivered"]),
        (Some("m"), &serde_json::json!(true))
    );
}

/// A dead-letter queue that is full does not trap recv: a signal ends the wait for space,
/// and the message stays where it was.
#[test]
fn a_signal_ends_a_wait_for_space_in_a_full_dead_letter_queue() {
    let t = TestDomain::new("edge-dlq-full");
    ok(&t, &["create", "q"]);
    assert!(run(
        &t,
        &["create", "dead", "--capacity", "128", "--max-message", "32"]
    )
    .status
    .success());
    ok(&t, &["send", "dead", "a", "b"]);
    ok(&t, &["send", "q", "job"]);
    let rx = common::Child::spawn(
        t.baton()
            .args([
                "recv",
                "q",
                "--max-attempts",
                "1",
                "--dead-letter",
                "dead",
                "--exec",
                "false",
            ])
            .stderr(Stdio::piped()),
    );
    let dead = baton::Queue::open(&t.domain, "dead").unwrap();
    until(|| dead.status().lanes[3].waiting_senders > 0);
    let out = stop(rx, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(drain(&t, "q"), vec![("job".into(), true)]);
    assert_eq!(drain(&t, "dead").len(), 2);
    let o = run(&t, &["recv", "q", "--dead-letter", "q", "--exec", "true"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a queue is not its own dead-letter queue"
    );
}

/// Once the command has exited, recv stops feeding it, even if a child it left behind keeps
/// its input open without reading; the message is acknowledged by the exit status.
#[test]
fn exec_does_not_wait_for_a_leftover_child_holding_the_input() {
    let t = TestDomain::new("edge-exec-bg");
    big_queue(&t, &vec![b'y'; 300_000]);
    let pidfile = std::env::temp_dir().join(format!("baton-exec-bg-{}", t.name()));
    let script = format!(
        "exec 3<&0; sleep 30 <&3 >/dev/null 2>&1 & echo $! > {}; exit 0",
        pidfile.display()
    );
    let started = std::time::Instant::now();
    let o = run(&t, &["recv", "q", "--drain", "--exec", "sh", "-c", &script]);
    let elapsed = started.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(&pidfile);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        elapsed < Duration::from_secs(20),
        "waited for the leftover child"
    );
    assert_eq!(drain(&t, "q"), vec![]);
}

/// `--count` counts messages taken, not runs of a failing command: a message tried twice and
/// dead-lettered is one.
#[test]
fn count_with_exec_counts_messages_not_failed_runs() {
    let t = TestDomain::new("edge-exec-count");
    for q in ["q", "dead"] {
        ok(&t, &["create", q]);
    }
    ok(&t, &["send", "q", "job1", "job2"]);
    let o = run(
        &t,
        &[
            "recv",
            "q",
            "--count",
            "1",
            "--max-attempts",
            "2",
            "--dead-letter",
            "dead",
            "--exec",
            "false",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(drain(&t, "dead"), vec![("job1".into(), false)]);
    assert_eq!(drain(&t, "q"), vec![("job2".into(), false)]);
}

/// An idle recv into a pipe whose reader has gone ends (141) instead of holding the queue.
#[test]
fn an_idle_recv_ends_when_its_reader_goes() {
    let t = TestDomain::new("edge-idle-reader");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "only"]);
    let o = shell(&t, "$B recv q | head -n 1; exit 0");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "only\n");
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!((st.owner_pid, st.takeovers, st.received), (None, 0, 1));
}

/// `send` with standard input closed and no messages refuses instead of sending nothing (or,
/// with `--whole`, one empty message); a report it cannot write still says what was sent.
#[test]
fn send_refuses_a_closed_stdin_and_reports_what_went_when_its_report_fails() {
    let t = TestDomain::new("edge-send-closed");
    ok(&t, &["create", "q"]);
    for extra in ["", "--whole"] {
        let o = shell(&t, &format!("exec $B send q {extra} <&-"));
        assert_eq!(o.status.code(), Some(1), "{extra}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("standard input is closed"),
            "{}",
            stderr(&o)
        );
    }
    let o = shell(&t, "exec $B --json send q a b c > /dev/full");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("3 sent, but the report cannot be written"),
        "{}",
        stderr(&o)
    );
    assert_eq!(drain(&t, "q").len(), 3);
}

/// A stop in the middle of a record that the reader is reading lets the record finish: the
/// reader never sees half a record, and since it read the record within the grace, the
/// message was delivered (acknowledged; it does not come again).
#[test]
fn a_stop_mid_record_lets_a_reading_reader_get_the_whole_record() {
    use std::io::Read;
    let t = TestDomain::new("edge-mid-record");
    big_queue(&t, &vec![b'z'; 1 << 20]);
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q"])
            .stdout(write_end)
            .stderr(Stdio::piped()),
    );
    let mut reader = std::fs::File::from(read_end);
    let mut got = vec![0u8; 1000];
    reader.read_exact(&mut got).unwrap();
    signal(rx.pid(), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    reader.read_to_end(&mut got).unwrap();
    let out = rx.wait_output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(got.len(), (1 << 20) + 1, "one whole record");
    assert_eq!(got.last(), Some(&b'\n'));
    // Read within the grace, it was delivered: acknowledged, never to come again.
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!((st.takeovers, st.lanes[3].messages), (0, 0));
    let o = run(&t, &["recv", "q", "--drain"]);
    assert_eq!(
        (o.status.code(), o.stdout.len()),
        (Some(0), 0),
        "{}",
        stderr(&o)
    );
}

/// A write past the file size limit (SIGXFSZ, EFBIG) gives the message back instead of killing
/// recv mid-write (which would leave a dead owner and a takeover).
#[test]
fn a_file_size_limit_gives_the_message_back() {
    let t = TestDomain::new("edge-fsize");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", &"w".repeat(3000)]);
    let file = std::env::temp_dir().join(format!("baton-fsize-{}", t.name()));
    let o = shell(
        &t,
        &format!("ulimit -f 1; exec $B recv q > {}", file.display()),
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("it stays in the queue"),
        "{}",
        stderr(&o)
    );
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!((st.takeovers, st.lanes[3].messages), (0, 1));
}

/// `--watch` into a pipe nobody reads ends promptly on SIGTERM, and `--watch` ends soon after
/// its reader goes, not at its next refresh.
#[test]
fn watch_ends_promptly_on_a_signal_and_when_its_reader_goes() {
    let t = TestDomain::new("edge-watch-blocked");
    ok(&t, &["create", "q"]);
    let (reader, pipe) = common::reader_that_never_reads();
    let w = common::Child::spawn(
        t.baton()
            .args(["stat", "q", "--watch", "10ms"])
            .stdout(pipe)
            .stderr(Stdio::piped()),
    );
    // Long enough to fill the pipe (about 1 KiB a refresh, 64 KiB of pipe).
    std::thread::sleep(Duration::from_millis(1500));
    let asked = std::time::Instant::now();
    let out = stop(w, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(asked.elapsed() < Duration::from_secs(5));
    drop(reader);
    let started = std::time::Instant::now();
    let o = shell(&t, "$B stat q --watch 30 | head -n 1 >/dev/null; exit 0");
    assert!(o.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the next refresh"
    );
}

/// A retention-0 queue goes when its owner closes, with what it still holds: recv says so,
/// rather than let "it stays in the queue" stand.
#[test]
fn recv_says_when_a_retention_zero_queue_went_with_its_messages() {
    let t = TestDomain::new("edge-ret0");
    ok(&t, &["create", "q", "--retention", "0"]);
    ok(&t, &["send", "q", "a", "b", "c"]);
    let o = shell(&t, "$B recv q | head -n 1");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a\n");
    assert!(
        stderr(&o)
            .contains("queue q has retention 0: it was removed as recv closed it, with 2 messages"),
        "{}",
        stderr(&o)
    );
}

/// A stop that comes while the last message of `--count` is being handled still ends recv
/// with the signal's status (the message is taken: its command exited 0).
#[test]
fn a_stop_during_the_last_counted_message_still_says_so() {
    let t = TestDomain::new("edge-count-stop");
    ok(&t, &["create", "q"]);
    ok(&t, &["send", "q", "one"]);
    let marker = std::env::temp_dir().join(format!("baton-count-stop-{}", t.name()));
    let rx = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--count", "1", "--exec", "sh", "-c"])
            .arg(format!(
                "trap '' TERM; touch {}; sleep 0.5; exit 0",
                marker.display()
            ))
            .stderr(Stdio::piped()),
    );
    assert!(common::eventually(Duration::from_secs(10), || marker.exists()));
    let _ = std::fs::remove_file(&marker);
    let out = stop(rx, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(
        drain(&t, "q"),
        vec![],
        "the command succeeded: acknowledged"
    );
}

/// With `--exec`, a command that fails because the reader of the output left (SIGPIPE) uses up
/// no attempt and sends nothing to the dead-letter queue: recv ends (141) with the message kept.
#[test]
fn exec_whose_output_reader_left_keeps_the_message() {
    let t = TestDomain::new("edge-exec-pipe");
    for q in ["q", "dead"] {
        ok(&t, &["create", q]);
    }
    ok(&t, &["send", "q", "a"]);
    let o = shell(
        &t,
        "$B recv q --max-attempts 1 --dead-letter dead --exec sh -c 'sleep 0.2; cat' | true; exit 0",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(drain(&t, "dead"), vec![]);
    assert_eq!(drain(&t, "q").len(), 1);
}

/// A standby that cannot be counted (every sender slot is held) refuses to wait rather than
/// let a retention-0 queue go without it.
#[test]
fn a_standby_that_cannot_be_counted_refuses_to_wait() {
    let t = TestDomain::new("edge-slots-full");
    ok(&t, &["create", "q", "--retention", "0"]);
    let mut senders = Vec::new();
    for _ in 0..255 {
        let mut child = common::Child::spawn(
            t.baton()
                .args(["send", "q"])
                .stdin(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let mut input = child.0.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, b"x\n").unwrap();
        senders.push((child, input));
    }
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    assert!(common::eventually(Duration::from_secs(60), || queue
        .status()
        .sender_slots
        == 255));
    let o = run(&t, &["recv", "q", "--standby", "--standby-timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot wait to own queue \"q\" as a standby: all 255 sender slots"),
        "{}",
        stderr(&o)
    );
    drop(senders);
}

/// Records of standard input already read are sent together, in runs, and one that does not
/// fit waits for room on its own: 20,000 lines through a queue of 64 cells, drained by a
/// receiver meanwhile, all arrive, once, in order; `send --json` counts them all; and a line
/// too long in the middle of a batch is reported as itself, with the ones before it sent.
#[test]
fn lines_sent_in_runs_through_a_small_queue_arrive_once_in_order() {
    let t = TestDomain::new("edge-runs");
    ok(
        &t,
        &["create", "q", "--capacity", "4K", "--max-message", "16"],
    );
    let o = shell(
        &t,
        "seq 0 19999 | $B --json send q >&2 & $B recv q --count 20000; wait",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, numbers(0, 19999));
    assert!(stderr(&o).contains("\"sent\": 20000"), "{}", stderr(&o));

    let o = shell(
        &t,
        "(seq 1 30; echo 'this line is too long'; seq 31 40) | $B send q",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 31 of standard input not sent (30 sent before it)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        drain(&t, "q")
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        numbers(1, 30)
    );
}
