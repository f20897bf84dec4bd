//! csa104, the SAFplus eval guide's messaging example (`examples/c/csa104`), compiled with `cc`
//! against the headers and `libSaMsg.so` this build made, and run as the guide runs it: an
//! active receiving, a standby sending numbered messages, the active killed (SIGKILL), the next
//! active (waiting in `saMsgQueueOpen` meanwhile) taking the queue over, and every number
//! arriving.

mod cc;
#[path = "../../baton/tests/common/mod.rs"]
mod common;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QUEUE: &str = "csa104msgqueue";
const MESSAGES: u32 = 30;
const KILL_AFTER: u32 = 10;

/// Compiles the example into a temporary executable.
fn build(t: &common::TestDomain) -> PathBuf {
    let dir = "../../examples/c/csa104";
    cc::compile(
        &[
            cc::source(format!("{dir}/msgFns.c")),
            cc::source(format!("{dir}/main.c")),
        ],
        &format!("csa104-{}", t.name()),
    )
}

/// Starts `exe args` in domain `t`; its standard output's lines come through the receiver.
fn start(
    exe: &PathBuf,
    args: &[&str],
    t: &common::TestDomain,
    stop_at: &str,
) -> (common::Child, mpsc::Receiver<String>) {
    let mut child = common::Child::spawn(
        Command::new(exe)
            .args(args)
            .env("BATON_DOMAIN", t.name())
            .env("CSA104_STOP_AT", stop_at)
            .stdout(Stdio::piped()),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line containing `what`, keeping every line seen in `log`.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, log: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(what);
                log.push(line);
                if found {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {what:?}; saw:\n{}", log.join("\n"));
}

/// The numbers in `Received Message : Msg    N from ...` lines.
fn received(log: &[String], counts: &mut BTreeMap<u32, u32>) {
    for line in log {
        if let Some(rest) = line.split("Received Message : Msg").nth(1) {
            let n: u32 = rest.split_whitespace().next().unwrap().parse().unwrap();
            *counts.entry(n).or_default() += 1;
        }
    }
}

#[test]
fn csa104_keeps_every_message_through_the_actives_death() {
    let t = common::TestDomain::new("csa104");
    let exe = build(&t);

    // The first active stops (SIGSTOP) right after it logs message KILL_AFTER, before its
    // next get: the kill lands with that message got and nothing else taken (review: killed
    // at a free moment, it was always inside a get, and the test could not tell).
    let (mut active, active_out) =
        start(&exe, &["active"], &t, &format!("Msg {KILL_AFTER:4} from"));
    let mut first_log = Vec::new();
    wait_for(&active_out, "queue open, receiving", &mut first_log);

    // The next active waits in saMsgQueueOpen as a standby: the queue is non-persistent with
    // retention 0, so without one it would go with the active.
    let (mut next, next_out) = start(&exe, &["active"], &t, "");
    let queue = baton::Queue::open(&t.domain, QUEUE).unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || queue.status().standbys == 1),
        "the next active never waited for the queue"
    );

    let (standby, standby_out) = start(
        &exe,
        &["standby", "csa104CompI1", "100", &MESSAGES.to_string()],
        &t,
        "",
    );
    wait_for(
        &active_out,
        &format!("Msg {KILL_AFTER:4} from csa104CompI1"),
        &mut first_log,
    );
    let stat = format!("/proc/{}/stat", active.pid());
    assert!(
        common::eventually(Duration::from_secs(10), || std::fs::read_to_string(&stat)
            .is_ok_and(|s| s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('T'))),
        "the active never stopped after message {KILL_AFTER}"
    );
    let _ = active.0.kill(); // SIGKILL, as `kill -9`
    let _ = active.0.wait();
    while let Ok(line) = active_out.recv_timeout(Duration::from_millis(100)) {
        first_log.push(line); // what it printed before it died
    }

    let sent = standby.wait_output(Duration::from_secs(30));
    assert!(sent.status.success());
    let sends: Vec<String> = standby_out.try_iter().collect();
    assert!(
        !sends.iter().any(|l| l.contains("ERROR")),
        "a send failed:\n{}",
        sends.join("\n")
    );

    let mut next_log = Vec::new();
    wait_for(&next_out, "queue open, receiving", &mut next_log);
    wait_for(
        &next_out,
        &format!("Msg {MESSAGES:4} from csa104CompI1"),
        &mut next_log,
    );
    let _ = next.0.kill();
    let _ = next.0.wait();

    let mut counts = BTreeMap::new();
    received(&first_log, &mut counts);
    let before = counts.len();
    received(&next_log, &mut counts);
    let missing: Vec<u32> = (1..=MESSAGES).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "lost {missing:?}\nfirst active:\n{}\nnext active:\n{}",
        first_log.join("\n"),
        next_log.join("\n")
    );
    // The specification's get: the message got (and logged) before the kill is gone with the
    // active; every other waited in the queue for the next one. Nothing twice.
    let twice: Vec<u32> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert!(
        before == KILL_AFTER as usize && counts.len() == MESSAGES as usize,
        "the first active received {before}, both {}",
        counts.len()
    );

    // The queue had retention 0: with its last active dead and nobody waiting, it goes at
    // the next look.
    drop(queue);
    baton::Queue::gc(&t.domain).unwrap();
    assert!(t.leftovers().is_empty(), "left: {:?}", t.leftovers());
    let _ = std::fs::remove_file(&exe);
}
