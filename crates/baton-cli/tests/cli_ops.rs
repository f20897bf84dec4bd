//! The `baton` CLI as the operator's tool: binary-safe input and output, message metadata,
//! inspection that changes nothing, who is attached, Prometheus output, `rm --force`,
//! idempotent `create`, completions, manual pages and help. All through the real binary.

mod common;
use common::{run, stderr, Cli, TestDomain};
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs baton with `input` on its standard input.
fn run_with_input(t: &TestDomain, args: &[&str], input: &[u8]) -> Output {
    let mut child = t
        .baton()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The payload of a `recv --json` line, from `payload` or `payload_base64`.
fn payload_of(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    match (&v["payload"], &v["payload_base64"]) {
        (serde_json::Value::String(s), serde_json::Value::Null) => s.as_bytes().to_vec(),
        (serde_json::Value::Null, serde_json::Value::String(b)) => {
            base64::engine::general_purpose::STANDARD.decode(b).unwrap()
        }
        other => panic!("exactly one of payload and payload_base64: {other:?}"),
    }
}

/// Bytes that are not UTF-8 go in through arguments, lines, NUL-separated records and whole
/// input, and come out of `recv --json` (base64) and `recv -0` exactly.
#[test]
fn payloads_that_are_not_utf8_survive_every_way_in_and_out() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestDomain::new("ops-binary");
    assert!(run(&t, &["create", "q"]).status.success());
    let odd: &[u8] = b"\xff\xfe caf\xc3\xa9 \x01";
    let o = t
        .baton()
        .args(["send", "q"])
        .arg(std::ffi::OsStr::from_bytes(odd))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut lines = odd.to_vec();
    lines.extend_from_slice(b"\nsecond\n");
    assert!(run_with_input(&t, &["send", "q"], &lines).status.success());
    let mut records = odd.to_vec();
    records.extend_from_slice(b"\0with\nnewline\0");
    assert!(run_with_input(&t, &["send", "q", "-0"], &records)
        .status
        .success());
    let whole = b"\0\n\xffall of it\n\n";
    assert!(run_with_input(&t, &["send", "q", "--whole"], whole)
        .status
        .success());
    let o = run(&t, &["--json", "recv", "q", "--drain"]);
    let got: Vec<Vec<u8>> = json_lines(&o).iter().map(payload_of).collect();
    let want: Vec<Vec<u8>> = vec![
        odd.to_vec(),
        odd.to_vec(),
        b"second".to_vec(),
        odd.to_vec(),
        b"with\nnewline".to_vec(),
        whole.to_vec(),
    ];
    assert_eq!(got, want);
    assert_eq!(json_lines(&o)[2]["payload"], serde_json::json!("second"));
    // And -0 writes them back NUL-separated, byte for byte.
    assert!(run_with_input(&t, &["send", "q", "-0"], &records)
        .status
        .success());
    let o = run(&t, &["recv", "q", "--drain", "-0"]);
    assert_eq!(o.stdout, records);
}

/// Each message carries an id that stays the same when it is delivered again, a wall-clock
/// and a monotonic send time, and the sender's pid.
#[test]
fn json_metadata_identifies_each_message_across_redelivery() {
    let t = TestDomain::new("ops-meta");
    assert!(run(&t, &["create", "q"]).status.success());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let q = baton::Queue::open(&t.domain, "q").unwrap();
    q.sender().send(b"a").unwrap();
    q.sender().with_priority(0).unwrap().send(b"b").unwrap();
    // The first receiver takes `b` (priority 0), fails to write it (the disk is full) and
    // gives it back: same id when it comes again.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = t.baton().args(["recv", "q"]).stdout(full).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = run(&t, &["--json", "recv", "q", "--drain"]);
    let v = json_lines(&o);
    assert_eq!(v.len(), 2);
    for m in &v {
        assert_eq!(m["schema"], serde_json::json!(1));
        assert_eq!(m["queue"], serde_json::json!("q"));
        assert_eq!(m["sender_pid"], serde_json::json!(std::process::id()));
        let unix = m["sent_unix_ns"].as_u64().unwrap();
        assert!(
            unix >= before - 1_000_000_000 && unix <= before + 60_000_000_000,
            "{m}"
        );
        assert!(m["sent_monotonic_ns"].as_u64().unwrap() <= baton::monotonic_ns());
    }
    assert_eq!(
        (&v[0]["payload"], &v[0]["redelivered"]),
        (&serde_json::json!("b"), &serde_json::json!(true))
    );
    assert_ne!(v[0]["id"], v[1]["id"]);
    // The id of `b` is the one the library gives the same message.
    q.sender().with_priority(0).unwrap().send(b"c").unwrap();
    let mut rx = q.receiver().unwrap();
    let c = rx.try_recv().unwrap();
    let first_id = c.id();
    c.release().unwrap();
    let again = rx.try_recv().unwrap();
    assert_eq!((again.id(), again.redelivered()), (first_id, true));
    assert_ne!(
        serde_json::json!(first_id),
        v[0]["id"],
        "a new message, a new id"
    );
    assert_eq!(first_id & 3, 0, "the priority is in the low two bits");
}

/// `ls` and `stat` change nothing: an expired queue is reported, not removed (`gc` removes
/// it); a dead owner is reported the same way by both and not recovered by either.
#[test]
fn inspection_reports_expired_queues_and_dead_owners_without_touching_them() {
    let t = TestDomain::new("ops-inspect");
    assert!(run(&t, &["create", "old", "--retention", "50ms"])
        .status
        .success());
    assert!(run(&t, &["send", "old", "kept"]).status.success());
    assert!(run(&t, &["recv", "old", "--count", "0"]).status.success());
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..2 {
        let ls = stdout(&run(&t, &["ls"]));
        let line = ls.lines().find(|l| l.starts_with("old ")).expect(&ls);
        assert!(line.ends_with("expired"), "{ls}");
        let st = stdout(&run(&t, &["stat", "old"]));
        assert!(st.contains("state      expired"), "{st}");
    }
    assert!(t.file("old").exists(), "inspection removed nothing");
    let gc = stdout(&run(&t, &["gc"]));
    assert!(gc.contains("~old"), "{gc}");
    assert!(!t.file("old").exists());

    // A dead owner: a recv killed with SIGKILL.
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "m"]).status.success());
    let mut owner = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "60"])
            .stdout(Stdio::piped()),
    );
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    let pid = owner.pid();
    let mut out = owner.0.stdout.take().unwrap();
    let mut first = [0u8; 2];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .owner_pid
        == Some(pid)));
    drop(owner); // SIGKILL, reaped
    for _ in 0..2 {
        let ls = stdout(&run(&t, &["ls"]));
        let line = ls.lines().find(|l| l.starts_with("q ")).expect(&ls);
        assert!(
            line.contains(&format!("dead:{pid}")) && line.ends_with("dead-owner"),
            "{ls}"
        );
        let st = stdout(&run(&t, &["stat", "q"]));
        assert!(st.contains(&format!("owner      pid {pid} DIED")), "{st}");
        let v: serde_json::Value =
            serde_json::from_slice(&run(&t, &["--json", "stat", "q"]).stdout).unwrap();
        assert_eq!(v["dead_owner_pid"], serde_json::json!(pid));
        assert_eq!(v["state"], serde_json::json!("dead-owner"));
    }
    assert_eq!(
        queue.status().takeovers,
        0,
        "nobody took it over by looking"
    );
}

/// `retention` changes a queue's retention for everyone, at once; `stat` shows it.
#[test]
fn retention_changes_how_long_a_queue_is_kept_without_an_owner() {
    let t = TestDomain::new("ops-retention");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "kept"]).status.success());
    assert!(run(&t, &["recv", "q", "--count", "0"]).status.success());
    let o = run(&t, &["retention", "q", "50ms"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("retention 0.05 s"), "{}", stdout(&o));
    std::thread::sleep(Duration::from_millis(100));
    let st = stdout(&run(&t, &["stat", "q"]));
    assert!(st.contains("state      expired"), "{st}");
    // Too late to keep it: opening an expired queue removes it, like any open.
    assert_eq!(run(&t, &["retention", "q", "none"]).status.code(), Some(4));
    assert!(!t.file("q").exists());

    assert!(run(&t, &["create", "q", "--retention", "1h"])
        .status
        .success());
    let v: serde_json::Value =
        serde_json::from_slice(&run(&t, &["--json", "retention", "q", "none"]).stdout).unwrap();
    assert_eq!(v["retention"], serde_json::Value::Null);
    let st = stdout(&run(&t, &["stat", "q"]));
    assert!(st.contains("retention none"), "{st}");

    let bad = run(&t, &["retention", "q", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("not a duration"), "{}", stderr(&bad));
    let missing = run(&t, &["retention", "nowhere", "1s"]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(run(&t, &["create", "pool", "--shared"]).status.success());
    let shared = run(&t, &["retention", "pool", "1s"]);
    assert_eq!(shared.status.code(), Some(1));
    assert!(
        stderr(&shared).contains("shared queue"),
        "{}",
        stderr(&shared)
    );
}

/// `ls --all-domains` lists the queues of every domain, like `ipcs -q`.
#[test]
fn ls_all_domains_lists_every_domain() {
    let a = TestDomain::new("ops-all-a");
    let b = TestDomain::new("ops-all-b");
    assert!(run(&a, &["create", "one"]).status.success());
    assert!(run(&b, &["create", "two"]).status.success());
    let text = stdout(&run(&a, &["ls", "--all-domains"]));
    assert!(text.contains(&format!("{}/one", a.name())), "{text}");
    assert!(text.contains(&format!("{}/two", b.name())), "{text}");
    let v: serde_json::Value =
        serde_json::from_slice(&run(&a, &["--json", "ls", "--all-domains"]).stdout).unwrap();
    let names: Vec<(String, String)> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| {
            let st = &q["status"];
            Some((
                st["domain"].as_str()?.to_string(),
                st["name"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert!(names.contains(&(a.name().to_string(), "one".to_string())));
    assert!(names.contains(&(b.name().to_string(), "two".to_string())));
    assert!(v["domain"].is_null());
}

/// `stat` lists who is attached: the owner, and each process holding a sender slot with its
/// pid and whether it waits as a standby.
#[test]
fn stat_lists_the_owner_standbys_and_senders_with_pids() {
    let t = TestDomain::new("ops-attached");
    assert!(run(&t, &["create", "q"]).status.success());
    let queue = baton::Queue::open(&t.domain, "q").unwrap();
    queue.sender().send(b"from this process").unwrap();
    let owner = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "60"])
            .stdout(Stdio::null()),
    );
    // The standby starts only once the owner owns (else it would own first).
    assert!(common::eventually(Duration::from_secs(10), || queue
        .status()
        .owner_pid
        == Some(owner.pid())));
    let standby = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--standby"])
            .stdout(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || {
        let st = queue.status();
        st.owner_pid == Some(owner.pid()) && st.standbys == 1
    }));
    let text = stdout(&run(&t, &["stat", "q"]));
    assert!(
        text.contains(&format!("owner      pid {}", owner.pid())),
        "{text}"
    );
    assert!(
        text.contains(&format!("pid {:<8} sender", std::process::id())),
        "{text}"
    );
    assert!(
        text.contains(&format!("pid {:<8} standby (1 thread(s)", standby.pid())),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&t, &["--json", "stat", "q"]).stdout).unwrap();
    let attached = v["attached"].as_array().unwrap();
    let entry = |pid: u32, standbys: u32| serde_json::json!({"pid": pid, "standbys": standbys, "consumers": 0, "in_flight": 0});
    assert!(
        attached.contains(&entry(std::process::id(), 0)),
        "{attached:?}"
    );
    assert!(attached.contains(&entry(standby.pid(), 1)), "{attached:?}");
}

/// `--format prometheus` writes the text exposition format: HELP and TYPE for each metric,
/// one sample per queue (and priority), values that match the queue.
#[test]
fn prometheus_output_has_the_queue_counters_and_depths() {
    let t = TestDomain::new("ops-prom");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "-p", "2", "a", "b", "c"])
        .status
        .success());
    assert!(run(&t, &["recv", "q", "--count", "1"]).status.success());
    for args in [
        &["--format", "prometheus", "stat", "q"][..],
        &["ls", "--format", "prometheus"],
    ] {
        let text = stdout(&run(&t, args));
        let labels = format!("domain=\"{}\",queue=\"q\"", t.name());
        for sample in [
            format!("baton_sent_total{{{labels}}} 3"),
            format!("baton_received_total{{{labels}}} 1"),
            format!("baton_messages{{{labels},priority=\"2\"}} 2"),
            format!("baton_messages{{{labels},priority=\"0\"}} 0"),
            format!("baton_capacity_bytes{{{labels},priority=\"3\"}} 65536"),
            format!("baton_owner_pid{{{labels}}} 0"),
            format!("baton_takeovers_total{{{labels}}} 0"),
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample} in\n{text}");
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split_whitespace().nth(1).unwrap();
                assert!(kind == "counter" || kind == "gauge", "{line}");
            } else if !line.starts_with("# HELP ") {
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }
    let o = run(&t, &["--format", "prometheus", "send", "q", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `rm` of a queue in use asks for `--force` (exit 5) and says why; with it, it says what
/// went.
#[test]
fn rm_asks_for_force_when_a_queue_has_messages_or_an_owner() {
    let t = TestDomain::new("ops-rm");
    assert!(run(&t, &["create", "q"]).status.success());
    assert!(run(&t, &["send", "q", "a", "b"]).status.success());
    let o = run(&t, &["rm", "q"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(
        stderr(&o),
        "baton: error: queue q has 2 messages; give --force to remove it with them\n"
    );
    assert!(t.file("q").exists());
    let o = run(&t, &["rm", "q", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "removed queue q with 2 messages\n");
    assert!(!t.file("q").exists());
    assert!(run(&t, &["create", "empty"]).status.success());
    assert_eq!(stdout(&run(&t, &["rm", "empty"])), "removed queue empty\n");
}

/// `create NAME` says whether it created the queue or found it; an existing queue is found
/// whatever its attributes when none are given, and only the given ones are compared.
#[test]
fn create_says_whether_it_created_or_found_the_queue() {
    let t = TestDomain::new("ops-create");
    let o = run(
        &t,
        &["create", "q", "--max-message", "1K", "--retention", "30s"],
    );
    assert!(stdout(&o).starts_with("created queue q"), "{}", stdout(&o));
    let o = run(&t, &["create", "q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("found existing queue q"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("max message 1 KiB, mode 600, retention 30 s"));
    assert!(run(&t, &["create", "q", "--max-message", "1K"])
        .status
        .success());
    let o = run(&t, &["create", "q", "--retention", "1m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("retention"), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&run(&t, &["--json", "create", "q"]).stdout).unwrap();
    assert_eq!(
        (&v["created"], &v["schema"]),
        (&serde_json::json!(false), &serde_json::json!(1))
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&t, &["--json", "create", "r"]).stdout).unwrap();
    assert_eq!(v["created"], serde_json::json!(true));
}

/// Shell completions for bash, zsh and fish name the commands (not the internal ones); the
/// manual pages are roff, one per command, each listing the global options.
#[test]
fn completions_and_manual_pages_cover_every_command() {
    let t = TestDomain::new("ops-docs");
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&t, &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for cmd in ["create", "send", "recv", "stat", "completions"] {
            assert!(script.contains(cmd), "{shell} lacks {cmd}");
        }
        assert!(
            !script.contains("bench-serve"),
            "{shell} offers an internal command"
        );
    }
    let page = stdout(&run(&t, &["man", "recv"]));
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(
        page.contains("baton\\-recv") && page.contains("dead\\-letter"),
        "{page}"
    );
    assert!(
        page.contains("\\-\\-domain"),
        "global options on every page"
    );
    assert_eq!(run(&t, &["man", "nope"]).status.code(), Some(2));
    let dir = std::env::temp_dir().join(format!("baton-man-{}", t.name()));
    let o = run(&t, &["man", "--dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(pages.contains(&"baton.1".to_string()));
    for cmd in ["create", "send", "recv", "ls", "stat", "rm", "gc", "bench"] {
        assert!(pages.contains(&format!("baton-{cmd}.1")), "{pages:?}");
    }
    assert!(!pages
        .iter()
        .any(|p| p.contains("bench-s") || p.contains("help")));
}

/// Every command's `--help` has examples, every positional argument has help text, and the
/// top-level help lists the exit statuses.
#[test]
fn help_has_examples_argument_help_and_exit_statuses() {
    let t = TestDomain::new("ops-help");
    let top = stdout(&run(&t, &["--help"]));
    for code in [
        "0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "129", "130", "141", "143",
    ] {
        assert!(
            top.contains(&format!("\n  {code}")),
            "exit status {code}: {top}"
        );
    }
    for cmd in [
        "create",
        "send",
        "recv",
        "ls",
        "stat",
        "rm",
        "gc",
        "completions",
        "man",
    ] {
        let help = stdout(&run(&t, &[cmd, "--help"]));
        assert!(help.contains("Examples:"), "{cmd}: {help}");
        // Under "Arguments:", each argument has a description: after its name on the same
        // line, or (long help) on the next line.
        if let Some(args) = help.split("Arguments:\n").nth(1) {
            let lines: Vec<&str> = args.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.starts_with("Options:") {
                    break;
                }
                let name = line.trim_start();
                if line.starts_with("  ") && (name.starts_with('<') || name.starts_with('[')) {
                    let same_line = name.split_whitespace().count() > 1;
                    let next = lines.get(i + 1).map_or("", |l| l.trim());
                    let next_is_text = !next.is_empty() && !next.starts_with('<');
                    assert!(same_line || next_is_text, "{cmd}: no help for {line:?}");
                }
            }
        }
    }
    let recv = stdout(&run(&t, &["recv", "--help"]));
    assert!(
        recv.contains("to a pipe") && recv.contains("--count N"),
        "{recv}"
    );
}
