//! `baton watch`: events as they happen, as text or JSON lines, for a domain or one queue;
//! a clean end on SIGINT.

mod common;
use common::{eventually, ok, run, stderr, Child, Cli, TestDomain};
use std::process::Stdio;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

fn watch(t: &TestDomain, args: &[&str]) -> Child {
    let mut c = t.baton();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    Child::spawn(&mut c)
}

/// Ends a watcher with `sig` once it has printed a line containing `last` (the last event the
/// test makes; at most `LONG` waited for), and collects its output.
fn stop(mut w: Child, last: &str, sig: nix::sys::signal::Signal) -> std::process::Output {
    use std::io::BufRead;
    let stdout = w.0.stdout.take().unwrap();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let last = last.to_string();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(&last) {
                let _ = seen_tx.send(());
            }
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        text
    });
    let _ = seen.recv_timeout(LONG); // if it never comes, the test's assertions say what did
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.pid() as i32), sig).unwrap();
    let mut out = w.wait_output(LONG);
    out.stdout = reader.join().unwrap();
    out
}

/// Waits until the domain's event log has a follower (the watcher joined it: events from now
/// on reach it).
fn following(t: &TestDomain) {
    let followed = || {
        t.leftovers()
            .iter()
            .filter(|f| f.ends_with(".events"))
            .any(|f| {
                let mut n = [0u8; 4];
                std::fs::File::open(std::path::Path::new(baton::SHM_DIR).join(f))
                    .and_then(|file| std::os::unix::fs::FileExt::read_exact_at(&file, &mut n, 24))
                    .is_ok_and(|()| (1..u32::MAX).contains(&u32::from_ne_bytes(n)))
            })
    };
    assert!(eventually(LONG, followed));
}

#[test]
fn watch_prints_a_queues_events_as_json_lines_and_ends_cleanly_on_sigint() {
    let t = TestDomain::new("cli-watch");
    let w = watch(&t, &["--json", "watch", "jobs"]);
    following(&t);
    ok(&t, &["create", "jobs"]);
    ok(&t, &["create", "other"]);
    ok(&t, &["send", "jobs", "a"]);
    ok(&t, &["recv", "jobs", "--count", "1"]);
    ok(&t, &["rm", "jobs", "--force"]);
    let out = stop(w, "queue_removed", nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["queue_created", "owner_took", "owner_left", "queue_removed"],
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["queue"] == "jobs" && e["schema"] == 1));
    assert_eq!(events[1]["epoch"], 1);
    assert_eq!(events[1]["took_over"], false);
    assert_eq!(events[3]["expired"], false);
}

#[test]
fn watch_says_a_takeover_in_text() {
    let t = TestDomain::new("cli-watch-text");
    ok(&t, &["create", "jobs"]);
    let w = watch(&t, &["watch"]);
    following(&t);
    let owner = {
        let mut c = t.baton();
        c.args(["recv", "jobs"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Child::spawn(&mut c)
    };
    assert!(eventually(LONG, || {
        let o = run(&t, &["--json", "stat", "jobs"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["owner_pid"].is_u64()
    }));
    drop(owner); // SIGKILL, by pid
    let o = run(&t, &["recv", "jobs", "--standby", "--timeout", "0.2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stop(w, "let go by its owner", nix::sys::signal::Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(143));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("jobs owned (epoch 1)"), "{text}");
    assert!(
        lines[1].contains("jobs taken over from a dead owner (epoch 2)"),
        "{text}"
    );
    assert!(
        lines[2].contains("jobs let go by its owner (epoch 2)"),
        "{text}"
    );
}

#[test]
fn watch_refuses_a_bad_queue_name() {
    let t = TestDomain::new("cli-watch-bad");
    let o = run(&t, &["watch", "../x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn create_sets_thresholds_that_stat_shows_and_watch_tells() {
    let t = TestDomain::new("cli-watch-threshold");
    let w = watch(&t, &["--json", "watch"]);
    following(&t);
    ok(&t, &["create", "q", "--threshold", "3:8K:4K"]);
    let o = ok(&t, &["--json", "stat", "q"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["lanes"][3]["threshold_reached"], 8192);
    assert_eq!(st["lanes"][3]["threshold_available"], 4096);
    let lines: String = (0..200).map(|i| format!("{i:060}\n")).collect();
    let mut send = t.baton();
    send.args(["send", "q"]).stdin(Stdio::piped());
    let mut child = send.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let o = ok(&t, &["stat", "q"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("thresholds 8 KiB / 4 KiB REACHED"));
    ok(&t, &["recv", "q", "--drain"]);
    let out = stop(w, "threshold_available", nix::sys::signal::Signal::SIGINT);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"].as_str().unwrap().starts_with("threshold"))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "threshold_reached");
    assert_eq!(events[0]["priority"], 3);
    assert_eq!(events[1]["event"], "threshold_available");
    let bad = run(&t, &["create", "q", "--threshold", "3:1K:2K"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
