//! Hostile input: random bytes written over a live queue's segment, then every command run
//! against it as a separate process. Whatever the bytes, each command ends by itself, with a
//! normal exit status (never a signal: no panic abort, no SIGSEGV, no SIGBUS), and an error is
//! one line naming the problem.
//!
//! The rounds are seeded and the seed of a failing round is printed: `BATON_SCRIBBLE_SEED=<n>`
//! replays that round alone.

mod common;
use baton::{Attributes, Queue};
use common::{Child, Cli, TestDomain};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};
use std::time::Duration;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs a `baton` command to its end (killing it after 20 s, which fails the check).
fn run(t: &TestDomain, args: &[&str]) -> Output {
    let child = Child::spawn(
        t.baton()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    child.wait_output(Duration::from_secs(20))
}

/// Checks one command's ending; returns whether it reported an error.
fn check(seed: u64, args: &[&str], o: &Output) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code();
    assert!(
        code.is_some(),
        "seed {seed}: `baton {}` died by signal {:?}; stderr: {err}",
        args.join(" "),
        o.status.signal()
    );
    assert!(
        matches!(code, Some(0 | 1 | 3 | 4 | 5)),
        "seed {seed}: `baton {}` exited {code:?}; stderr: {err}",
        args.join(" ")
    );
    if code != Some(0) {
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("baton: took"))
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("baton: error: "),
            "seed {seed}: `baton {}`: not one error line: {err}",
            args.join(" ")
        );
    }
    code.is_some_and(|c| c != 0 && c != 3)
}

/// One seeded round; returns the error lines the commands printed.
fn round(seed: u64) -> Vec<String> {
    let t = TestDomain::new("scribble");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let attrs = Attributes {
        capacity: [4096, 1024, 1024, 4096],
        max_message: 200,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    for i in 0..rng.below(12) {
        let p = rng.below(4) as u8;
        let len = rng.below(200) as usize;
        let _ = q
            .sender()
            .with_priority(p)
            .unwrap()
            .try_send(vec![i as u8; len]);
    }
    // Every other round, an owner dies holding the lock and a message, so that the next
    // receive runs recovery over whatever the scribbling leaves.
    if seed % 2 == 0 {
        let owner = Child::spawn(
            t.baton()
                .args(["recv", "q", "--count", "1", "--timeout", "30"])
                .env("BATON_FAILPOINT", "recv.marked:pause")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let pid = owner.pid();
        common::eventually(Duration::from_secs(10), || {
            q.status().owner_pid == Some(pid)
        });
        drop(owner); // SIGKILL
    }
    let size = q.status().size;
    drop(q);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(t.file("q"))
        .unwrap();
    // Where the lanes' control blocks and stamps are (docs/design.md: lane offsets at 104,
    // capacities at 72), to aim at the words that steer the algorithms.
    let word = |at: u64| {
        let mut b = [0u8; 8];
        std::fs::File::open(t.file("q"))
            .unwrap()
            .read_exact_at(&mut b, at)
            .unwrap();
        u64::from_ne_bytes(b)
    };
    let steering: Vec<(u64, u64)> = (0..4)
        .map(|p| (word(104 + 8 * p), 384 + 64 + 8 * word(72 + 8 * p) / 64))
        .collect();
    // Each round aims at one part: the header page (identity, owner block, counters, tables),
    // the lane control words and stamps, or anywhere at all.
    let aim = seed % 3;
    for _ in 0..1 + rng.below(if aim == 1 { 16 } else { 6 }) {
        let at = match aim {
            0 => rng.below(4096),
            1 => {
                let (start, len) = steering[rng.below(4) as usize];
                start + rng.below(len)
            }
            _ => rng.below(size),
        };
        let len = 1 + rng.below(8) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        file.write_all_at(&bytes, at).unwrap();
    }
    let mut errors = Vec::new();
    for args in [
        &["stat", "q"][..],
        &["--json", "stat", "q"],
        &["ls"],
        &["recv", "q", "--count", "20", "--timeout", "0.02"],
        &["send", "q", "--priority", "1", "--timeout", "0.02", "hello"],
        &["recv", "q", "--timeout", "0.02"],
        &["gc"],
        &["rm", "q", "--force"],
    ] {
        let o = run(&t, args);
        if check(seed, args, &o) {
            errors.push(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
    }
    errors
}

#[test]
fn random_bytes_over_a_live_segment_never_crash_or_hang_a_command() {
    if let Some(seed) = std::env::var("BATON_SCRIBBLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        round(seed);
        return;
    }
    let errors: Vec<String> = (1..=90).flat_map(round).collect();
    // The scribbling must have hit something: the commands did find and name damage.
    assert!(
        errors.iter().any(|e| e.contains("corrupt")),
        "no command reported a corrupt queue: {errors:?}"
    );
    let mut kinds: Vec<String> = errors
        .iter()
        .map(|e| {
            e.rsplit(": ")
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    eprintln!(
        "{} errors reported, {} kinds: {kinds:?}",
        errors.len(),
        kinds.len()
    );
}

/// A peer shrinks a live segment: a receiver asleep on it reports the truncation and exits
/// instead of dying of SIGBUS, `stat` warns, and opening it again is refused. (A process busy
/// in a fast path can still die of SIGBUS: docs/security.md.)
#[test]
fn a_segment_truncated_under_a_sleeping_receiver_is_reported_not_a_crash() {
    let t = TestDomain::new("truncate");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let size = q.status().size;
    let rx = Child::spawn(
        t.baton()
            .args(["recv", "q", "--timeout", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pid = rx.pid();
    // Asleep: a receiver that is polling has no chance to look before it touches the lanes.
    assert!(common::eventually(Duration::from_secs(10), || {
        let st = q.status();
        st.owner_pid == Some(pid) && st.owner_sleeping
    }));
    std::fs::OpenOptions::new()
        .write(true)
        .open(t.file("q"))
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let out = rx.wait_output(Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {err}",
        out.status.signal()
    );
    assert!(err.contains("truncated to"), "{err}");
    let st = q.status();
    assert_eq!(st.file_size, Some(size / 2));
    let stat = run(&t, &["stat", "q"]);
    assert!(!stat.status.success(), "open refuses a truncated segment");
    assert!(String::from_utf8_lossy(&stat.stderr).contains("truncated"));
}

/// A peer truncates a live segment to nothing (its header's page too) under a process asleep
/// in it: a receiver, a sender waiting for space, a requester waiting for its reply. Each
/// reports the truncation when it wakes; none touches the gone page first and dies of SIGBUS
/// (review: the sleep's own wake-up bookkeeping touched it).
#[test]
fn a_segment_truncated_to_nothing_under_sleepers_is_reported_not_a_crash() {
    let small = Attributes {
        capacity: [4096; 4],
        max_message: 1024,
        ..Attributes::default()
    };
    let cases: [(&str, &[&str]); 3] = [
        ("receiver", &["recv", "q", "--timeout", "30"]),
        (
            "sender",
            &["send", "q", "--priority", "3", "--timeout", "30", "x"],
        ),
        ("requester", &["request", "q", "hello", "--timeout", "30"]),
    ];
    for (who, args) in cases {
        let t = TestDomain::new("truncate0");
        let q = Queue::create(&t.domain, "q", &small).unwrap();
        if who == "sender" {
            while q.sender().try_send(&[0u8; 1000][..]).is_ok() {}
        }
        drop(q); // this process maps nothing of it when it is truncated
        let child = Child::spawn(
            t.baton()
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        // Asleep in its wait (past its spin), as the queue and the process show.
        let waiting = |st: baton::Status| match who {
            "receiver" => st.owner_sleeping,
            "sender" => st.lanes[3].waiting_senders > 0,
            _ => st.reply_boxes_in_use == 1,
        };
        assert!(
            common::eventually(Duration::from_secs(10), || {
                Queue::inspect(&t.domain, "q").is_ok_and(waiting) && common::sleeps(child.pid())
            }),
            "{who} never slept"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.file("q"))
            .unwrap()
            .set_len(0)
            .unwrap();
        let out = child.wait_output(Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{who}: {:?} {err}",
            out.status.signal()
        );
        assert!(err.contains("truncated"), "{who}: {err}");
    }
}
