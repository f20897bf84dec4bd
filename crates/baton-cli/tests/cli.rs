//! The `baton` command line: output, exit codes, and one-line errors for bad input.

mod common;
use common::{run, stderr, Cli, TestDomain};
use std::process::Output;

/// A user error: exit status `code`, exactly one line on stderr containing `needle`, no panic.
fn assert_user_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("baton: error: ") && err.contains(needle),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn create_send_stat_recv_rm_round_trip() {
    let t = TestDomain::new("cli-trip");
    assert!(run(
        &t,
        &["create", "q", "--capacity", "4K", "--max-message", "1K"]
    )
    .status
    .success());
    assert!(
        run(&t, &["send", "q", "-p", "1", "--type", "-5", "one", "two"])
            .status
            .success()
    );
    let stat = run(&t, &["stat", "q"]);
    let text = String::from_utf8_lossy(&stat.stdout);
    assert!(text.contains("2 sent, 0 received"), "{text}");
    let out = run(&t, &["recv", "q", "-n", "2", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["payload"].as_str(), lines[0]["priority"].as_u64()),
        (Some("one"), Some(1))
    );
    assert_eq!(lines[1]["type"].as_i64(), Some(-5));
    assert!(run(&t, &["rm", "q"]).status.success());
    assert!(t.leftovers().is_empty());
}

#[test]
fn send_reads_one_message_per_line_of_stdin() {
    let t = TestDomain::new("cli-stdin");
    run(&t, &["create", "q"]);
    let mut child = t
        .baton()
        .args(["send", "q"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alpha\n\nbeta\ngamma")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = run(&t, &["recv", "q", "-n", "4"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alpha\n\nbeta\ngamma\n"
    );
}

#[test]
fn stat_json_lists_the_backing_files_and_per_priority_usage() {
    let t = TestDomain::new("cli-stat");
    let created = run(
        &t,
        &[
            "create",
            "q",
            "--capacity",
            "1K,2K,3K,4K",
            "--max-message",
            "512",
            "--mode",
            "640",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    run(&t, &["send", "q", "-p", "2", "x"]);
    let out = run(&t, &["stat", "q", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0].as_str(), Some(t.file("q").to_str().unwrap()));
    assert_eq!(v["lanes"][2]["messages"].as_u64(), Some(1));
    assert_eq!(v["lanes"][3]["capacity"].as_u64(), Some(4096));
    assert_eq!(v["attributes"]["mode"].as_str(), Some("0640"));
    assert!(v["owner_pid"].is_null());
}

#[test]
fn ls_lists_queues_with_depth_per_priority() {
    let t = TestDomain::new("cli-ls");
    run(&t, &["create", "alpha"]);
    run(&t, &["create", "beta"]);
    run(&t, &["send", "beta", "-p", "0", "a", "b"]);
    let out = run(&t, &["ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let beta = text.lines().find(|l| l.starts_with("beta")).expect(&text);
    assert_eq!(beta.split_whitespace().nth(1), Some("2"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&t, &["ls", "--json"]).stdout).unwrap();
    assert_eq!(json["schema"], serde_json::json!(1));
    assert_eq!(json["queues"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(
        json["queues"][1]["status"]["lanes"][0]["messages"],
        serde_json::json!(2)
    );
}

#[test]
fn recv_timeout_exits_3_with_a_clear_message() {
    let t = TestDomain::new("cli-timeout");
    run(&t, &["create", "q"]);
    run(&t, &["send", "q", "only"]);
    // Something arrived: the idle timeout ends the run, successfully, and says so.
    let out = run(&t, &["recv", "q", "-n", "2", "--timeout", "0.1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "only\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        "baton: no message for 0.1 s; 1 received of 2\n"
    );
    // Nothing arrived: exit 3.
    let out = run(&t, &["recv", "q", "--timeout", "100ms"]);
    assert_user_error(&out, 3, "timed out after 0.1 s with no message on queue q");
}

#[test]
fn send_timeout_on_a_full_queue_exits_3() {
    let t = TestDomain::new("cli-full");
    run(
        &t,
        &["create", "q", "--capacity", "128", "--max-message", "32"],
    );
    let out = run(&t, &["send", "q", "--timeout", "0.05", "a", "b", "c"]);
    assert_user_error(
        &out,
        3,
        "timed out after 0.05 s waiting for space in queue q (priority 3); 2 sent, argument 3 not",
    );
}

#[test]
fn user_errors_are_one_line_with_a_non_zero_exit() {
    let t = TestDomain::new("cli-errors");
    assert_user_error(&run(&t, &["create", "../evil"]), 2, "invalid queue name");
    assert_user_error(
        &run(&t, &["send", "bad name", "x"]),
        2,
        "invalid queue name",
    );
    assert_user_error(&run(&t, &["recv", "missing"]), 4, "does not exist");
    assert_user_error(&run(&t, &["stat", "missing"]), 4, "does not exist");
    assert_user_error(&run(&t, &["rm", "missing"]), 4, "does not exist");
    assert_user_error(&run(&t, &["send", "missing", "x"]), 4, "does not exist");
    run(&t, &["create", "q", "--max-message", "16"]);
    assert_user_error(
        &run(&t, &["send", "q", "this is longer than sixteen"]),
        1,
        "too big",
    );
    let o = run(&t, &["send", "q", "-p", "4", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 is not in 0..=3"), "{}", stderr(&o));
    assert_user_error(
        &run(&t, &["create", "q", "--max-message", "32"]),
        1,
        "max message is 16 (asked 32)",
    );
    assert_user_error(
        &run(&t, &["create", "r", "--max-message", "99999999999"]),
        2,
        "max message",
    );
    assert_user_error(
        &run(&t, &["create", "r", "--capacity", "64"]),
        2,
        "cannot hold one message",
    );
    assert_user_error(&run(&t, &["--domain", "a/b", "ls"]), 2, "invalid domain");
    let out = t
        .baton()
        .args(["ls"])
        .env("BATON_DOMAIN", ".hidden")
        .output()
        .unwrap();
    assert_user_error(&out, 2, "invalid domain");
}

#[test]
fn malformed_arguments_are_usage_errors_not_panics() {
    let t = TestDomain::new("cli-usage");
    for args in [
        &["create", "q", "--capacity", "lots"][..],
        &["create", "q", "--capacity", "1,2"],
        &["create", "q", "--mode", "999"],
        &["recv", "q", "--timeout", "-1"],
        &["send", "q", "--priority", "300"],
        &["recv", "q", "--timeout", "1.5e19"],
        &["send", "q", "--timeout", "1000years", "x"],
        &["recv", "q", "--standby", "--standby-timeout", "1e300"],
    ] {
        let out = run(&t, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[test]
fn retention_standby_and_gc_from_the_command_line() {
    let t = TestDomain::new("cli-ret");
    let o = run(&t, &["--json", "create", "q", "--retention", "0.05"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["attributes"]["retention"], serde_json::json!(0.05));
    // Different retention: an Exists error naming it.
    assert_user_error(
        &run(&t, &["create", "q", "--retention", "9"]),
        1,
        "retention",
    );
    assert!(run(&t, &["send", "q", "m"]).status.success());
    // Standby with nobody owning: owns at once, receives, acknowledges, closes.
    let o = run(
        &t,
        &[
            "recv",
            "q",
            "--standby",
            "--standby-timeout",
            "5",
            "-n",
            "1",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "m\n", "{}", stderr(&o));
    let o = run(&t, &["--json", "stat", "q"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            &v["received"],
            &v["redelivered"],
            &v["abandoned"],
            &v["owner_stalled"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(false)
        )
    );
    std::thread::sleep(std::time::Duration::from_millis(80));
    let o = run(&t, &["--json", "gc"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert_user_error(&run(&t, &["stat", "q"]), 4, "does not exist");
}

#[test]
fn a_standby_that_times_out_exits_3_with_a_clear_message() {
    let t = TestDomain::new("cli-standby");
    assert!(run(&t, &["create", "q"]).status.success());
    let q = baton::Queue::open(&t.domain, "q").unwrap();
    let _owner = q.receiver().unwrap();
    assert_user_error(
        &run(&t, &["recv", "q", "--standby", "--standby-timeout", "0.05"]),
        3,
        "timed out waiting to own queue",
    );
    assert_user_error(&run(&t, &["recv", "q"]), 5, "busy");
}

#[test]
fn bench_measures_every_transport_and_checks_every_sequence_number() {
    let t = TestDomain::new("cli-bench");
    let o = run(
        &t,
        &[
            "--json",
            "bench",
            "--sizes",
            "64",
            "--rounds",
            "1",
            "--case-seconds",
            "0.01",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    for want in [
        "baton-polled",
        "baton-blocking",
        "baton-zero-copy",
        "baton-request",
        "shm-spin",
        "shm-futex",
        "shm-ring",
        "shm-ring-acked",
        "pipe",
        "unix-socket",
        "posix-mq",
        "sysv-mq",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["round_trips"].as_u64().unwrap() >= 100, "{r}");
        if r["mode"] == "request" {
            // A request waits for its reply: no one-way stream to measure.
            assert!(r["msgs_per_sec"].is_null(), "{r}");
        } else {
            assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    let baton = rows
        .iter()
        .find(|r| r["transport"] == "baton-blocking")
        .unwrap();
    assert_eq!(baton["p50_ratio_to_baton"], serde_json::json!(1.0));
    assert_user_error(
        &run(&t, &["bench", "--transports", "carrier-pigeon"]),
        1,
        "unknown transport",
    );
}

/// `bench --fan-in`: sender processes, more of them than CPUs, into one receiver that checks
/// every sender's sequence; baton and POSIX queues side by side.
#[test]
fn bench_fan_in_runs_many_sender_processes_and_checks_every_sequence() {
    let t = TestDomain::new("cli-fanin");
    let o = run(
        &t,
        &[
            "--json",
            "bench",
            "--fan-in",
            "1,7",
            "--rounds",
            "1",
            "--fan-in-messages",
            "7000",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<(u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["senders"].as_u64().unwrap(),
                r["transport"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cases,
        vec![
            (1, "baton-blocking"),
            (1, "posix-mq"),
            (7, "baton-blocking"),
            (7, "posix-mq")
        ]
    );
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn ls_shows_a_dead_owner_and_stale_files_and_gc_removes_only_the_stale_file() {
    let t = TestDomain::new("cli-stale");
    assert!(run(&t, &["create", "q"]).status.success());
    let owner = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "30"])
            .stdout(std::process::Stdio::null()),
    );
    let pid = owner.pid();
    let q = baton::Queue::open(&t.domain, "q").unwrap();
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || q.status().owner_pid == Some(pid)
    ));
    drop(owner); // SIGKILL
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let temp =
        std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.tmp.{dead}.0", t.name()));
    std::fs::write(&temp, b"half made").unwrap();
    let ls = String::from_utf8_lossy(&run(&t, &["ls"]).stdout).into_owned();
    assert!(ls.contains(&format!("dead:{pid}")), "{ls}");
    assert!(
        ls.contains(&format!("stale: left by dead pid {dead}")),
        "{ls}"
    );
    let gc = String::from_utf8_lossy(&run(&t, &["gc"]).stdout).into_owned();
    assert!(gc.contains(".tmp.") && !gc.contains("~q\n"), "{gc}");
    assert!(!temp.exists());
    assert!(t.file("q").exists(), "a queue without retention stays");
}

/// A message `recv` could not write (here: the disk is full) stays in the queue and comes
/// again, flagged; it used to be acknowledged and lost.
#[test]
fn recv_gives_back_a_message_it_cannot_write() {
    let t = TestDomain::new("cli-full");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "a", "b", "c"]).status.success());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = t.baton().args(["recv", "q"]).stdout(full).output().unwrap();
    assert_user_error(&o, 1, "it stays in the queue");
    let o = run(&t, &["--json", "recv", "q", "--count", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        common::received(&o),
        vec![("a".into(), true), ("b".into(), false), ("c".into(), false)]
    );
}

/// With standard output closed, `recv` would write into nothing (the runtime puts /dev/null
/// there) and acknowledge: it refuses to start instead, and the messages stay.
#[test]
fn recv_refuses_to_run_with_standard_output_closed() {
    let t = TestDomain::new("cli-closed");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "a", "b"]).status.success());
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} recv q --count 2 >&-",
            env!("CARGO_BIN_EXE_baton")
        ))
        .env("BATON_DOMAIN", t.name())
        .output()
        .unwrap();
    assert_user_error(&o, 1, "standard output is closed");
    let o = run(&t, &["--json", "recv", "q", "--count", "2"]);
    assert_eq!(
        common::received(&o),
        vec![("a".into(), false), ("b".into(), false)]
    );
}

/// SIGINT, SIGTERM and SIGHUP end `recv` as a close, not as a crash: exit 128 + signal, no
/// takeover for the next owner, and a retention-0 queue goes with its owner.
#[test]
fn recv_ends_cleanly_on_sigint_sigterm_and_sighup() {
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGHUP, 129),
    ] {
        let t = TestDomain::new("cli-signal");
        assert!(run(&t, &["create", "q"]).status.success());
        assert!(run(&t, &["create", "gone", "--retention", "0"])
            .status
            .success());
        for q in ["q", "gone"] {
            let rx = common::Child::spawn(
                t.baton()
                    .args(["recv", q, "--timeout", "30"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped()),
            );
            let queue = baton::Queue::open(&t.domain, q).unwrap();
            assert!(common::eventually(
                std::time::Duration::from_secs(10),
                || { queue.status().owner_pid == Some(rx.pid()) }
            ));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(rx.pid() as i32), sig).unwrap();
            let out = rx.wait_output(std::time::Duration::from_secs(10));
            assert_eq!(out.status.code(), Some(code), "{sig}: {}", stderr(&out));
            let st = queue.status();
            assert_eq!(
                (st.takeovers, st.owner_pid, st.dead_owner_pid),
                (0, None, None)
            );
            assert_eq!(st.removed, q == "gone", "{sig}: {q}");
        }
    }
}

/// A standby waiting for the owner lock stops on a signal too, promptly and cleanly.
#[test]
fn a_standby_recv_ends_cleanly_on_sigterm() {
    let t = TestDomain::new("cli-standby-signal");
    assert!(run(&t, &["create", "q"]).status.success());
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    let _owner = queue.receiver().unwrap();
    let standby = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--standby"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || { queue.status().standbys == 1 }
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standby.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = standby.wait_output(std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(queue.status().owner_pid, Some(std::process::id()));
}
