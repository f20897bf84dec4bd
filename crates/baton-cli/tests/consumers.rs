//! `recv --shared` (competing consumers), `--type`/`--except`, `peek`, `purge`, and how `stat`
//! and `ls` show consumers. All through the real binary.

mod common;
use common::{ok, run, Cli, TestDomain};
use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    lines(o)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Three `recv --shared` processes, all waiting, and 300 messages: together they take each
/// once, each in the sender's order. (How the messages are shared out is up to the scheduler:
/// on a loaded machine the first one woken may take them all, and the others end with "no
/// message", status 3.)
#[test]
fn three_shared_receivers_together_take_every_message_once() {
    let t = TestDomain::new("cli-shared-pool");
    ok(&t, &["create", "q", "--shared"]);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            common::Child::spawn(
                t.baton()
                    .args(["recv", "q", "--shared", "--timeout", "1"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )
        })
        .collect();
    assert!(common::eventually(Duration::from_secs(10), || {
        let st = baton::Queue::inspect(&t.domain, "q").unwrap();
        st.attached.iter().map(|a| a.consumers).sum::<u32>() == 3
    }));
    let numbers: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut args = vec!["send", "q"];
    args.extend(numbers.iter().map(String::as_str));
    ok(&t, &args);
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    for c in consumers {
        let out = c.wait_output(Duration::from_secs(30));
        let code = out.status.code();
        assert!(
            code == Some(0) || (code == Some(3) && out.stdout.is_empty()),
            "{code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<u32> = lines(&out).iter().map(|l| l.parse().unwrap()).collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "one sender's order per consumer"
        );
        for n in got {
            *seen.entry(n).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|&n| n == 1), "each message once");
}

#[test]
fn a_killed_shared_receiver_s_message_comes_again_flagged_to_another() {
    let t = TestDomain::new("cli-shared-kill");
    ok(&t, &["create", "q", "--shared"]);
    ok(&t, &["send", "q", "job"]);
    // A consumer that holds its message (its command sleeps), killed with SIGKILL.
    let holder = common::Child::spawn(
        t.baton()
            .args(["recv", "q", "--shared", "--exec", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || {
        let st = baton::Queue::inspect(&t.domain, "q").unwrap();
        st.attached.iter().any(|a| a.in_flight == 1)
    }));
    let stat = String::from_utf8_lossy(&ok(&t, &["stat", "q"]).stdout).into_owned();
    assert!(
        stat.contains("shared by 1 consumer (1 message in flight)"),
        "{stat}"
    );
    assert!(
        stat.contains("consumer (1 open, 1 message in flight)"),
        "{stat}"
    );
    let ls = String::from_utf8_lossy(&ok(&t, &["ls"]).stdout).into_owned();
    assert!(ls.contains("1c/1f"), "{ls}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    drop(holder);
    let o = ok(
        &t,
        &[
            "--json",
            "recv",
            "q",
            "--shared",
            "-n",
            "1",
            "--timeout",
            "10",
        ],
    );
    let v = &json_lines(&o)[0];
    assert_eq!(
        (&v["payload"], &v["redelivered"]),
        (&serde_json::json!("job"), &serde_json::json!(true))
    );
}

#[test]
fn selective_receive_takes_by_type_and_leaves_the_rest_in_order() {
    let t = TestDomain::new("cli-shared-type");
    ok(&t, &["create", "q", "--shared"]);
    for (ty, m) in [("5", "e"), ("2", "b"), ("9", "i"), ("1", "a"), ("2", "b2")] {
        ok(&t, &["send", "q", "--type", ty, m]);
    }
    let take = |extra: &[&str]| {
        let mut args = vec!["recv", "q", "--shared", "--drain"];
        args.extend_from_slice(extra);
        lines(&ok(&t, &args))
    };
    assert_eq!(take(&["--type", "2", "-n", "1"]), ["b"]);
    assert_eq!(
        take(&["--type=-4", "-n", "1"]),
        ["a"],
        "lowest type not above 4"
    );
    assert_eq!(take(&["--except", "9"]), ["e", "b2"]);
    assert_eq!(take(&["--type", "7"]), Vec::<String>::new());
    assert_eq!(take(&[]), ["i"]);
    let o = run(&t, &["recv", "q", "--type", "2"]);
    assert_eq!(o.status.code(), Some(2), "--type needs --shared");
}

#[test]
fn peek_shows_without_taking_and_purge_removes() {
    let t = TestDomain::new("cli-peek-purge");
    ok(&t, &["create", "q", "--shared"]);
    ok(&t, &["send", "q", "--type", "4", "low"]);
    ok(&t, &["send", "q", "--priority", "0", "high"]);
    let text = lines(&ok(&t, &["peek", "q"]));
    assert_eq!(text.len(), 2);
    assert!(
        text[0].starts_with("p0 type 0 id ") && text[0].ends_with("\thigh"),
        "{text:?}"
    );
    assert!(
        text[1].starts_with("p3 type 4 id ") && text[1].ends_with("\tlow"),
        "{text:?}"
    );
    let v = json_lines(&ok(&t, &["--json", "peek", "q", "--type", "4", "-n", "5"]));
    assert_eq!(v.len(), 1);
    assert_eq!(
        (&v[0]["payload"], &v[0]["type"]),
        (&serde_json::json!("low"), &serde_json::json!(4))
    );
    assert_eq!(lines(&ok(&t, &["peek", "q", "--count", "1"])).len(), 1);
    let st = baton::Queue::inspect(&t.domain, "q").unwrap();
    assert_eq!(
        (st.lanes[0].messages, st.lanes[3].messages),
        (1, 1),
        "peek took nothing"
    );
    let o = ok(&t, &["purge", "q", "--priority", "3"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("purged 1 message"));
    assert_eq!(
        lines(&ok(&t, &["recv", "q", "--shared", "--drain"])),
        ["high"]
    );
    // A queue with a live owner is purged by nobody else.
    ok(&t, &["create", "owned"]);
    ok(&t, &["send", "owned", "x"]);
    let owner = common::Child::spawn(
        t.baton()
            .args(["recv", "owned", "--exec", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(common::eventually(Duration::from_secs(10), || {
        baton::Queue::inspect(&t.domain, "owned")
            .unwrap()
            .owner_pid
            .is_some()
    }));
    assert_eq!(run(&t, &["purge", "owned"]).status.code(), Some(5));
    drop(owner);
}

#[test]
fn each_mode_says_how_to_receive_from_the_other() {
    let t = TestDomain::new("cli-shared-modes");
    ok(&t, &["create", "s", "--shared"]);
    ok(&t, &["create", "e"]);
    let o = run(&t, &["recv", "s", "--drain"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("recv --shared"));
    let o = run(&t, &["recv", "e", "--shared", "--drain"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not shared"));
    let o = run(&t, &["create", "e", "--shared"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("consumers are exclusive (asked shared)"));
}

/// `baton bench --consumers` measures a pool of consumer processes on each of the three
/// queues, and every consumer took its share: the case fails if the counts do not add up.
#[test]
fn bench_consumers_measures_each_transport_with_each_pool() {
    let t = TestDomain::new("cli-bench-consumers");
    let o = ok(
        &t,
        &[
            "--json",
            "bench",
            "--consumers",
            "1,3",
            "--work",
            "10us",
            "--rounds",
            "1",
            "--consumer-messages",
            "600",
        ],
    );
    let rows = json_lines(&o);
    let cases: Vec<(u64, &str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["consumers"].as_u64().unwrap(),
                r["transport"].as_str().unwrap(),
                r["work_us"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cases,
        [
            (1, "baton-blocking", 10),
            (1, "posix-mq", 10),
            (1, "sysv-mq", 10),
            (3, "baton-blocking", 10),
            (3, "posix-mq", 10),
            (3, "sysv-mq", 10),
            (1, "sleep-floor", 10),
            (3, "sleep-floor", 10)
        ]
    );
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    let o = run(&t, &["bench", "--consumers", "2", "--transports", "pipe"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no transport with competing consumers"));
}
