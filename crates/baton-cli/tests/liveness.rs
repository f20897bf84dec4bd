//! Whether a peer is alive comes from locks the kernel releases when the peer dies, never from
//! its pid: claims of leaked loans and of forked children, and peers in other pid namespaces.
//! The namespace tests need root (`unshare --pid`); CI runs as root; elsewhere each says it
//! cannot run and returns.

mod common;
use baton::{Attributes, Queue, Status};
use common::{eventually, Child, Cli, TestDomain};
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

/// Runs `child` in a forked child process and returns its exit code, or `None` if it had not
/// exited within `LONG` (it is then killed, by pid). The child only uses baton's API and ends
/// with `_exit`.
fn in_fork_child(child: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child runs only `child` (baton calls) and `_exit`; the test harness's other
    // threads are parked in channel waits, holding no lock the child needs.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = child();
            // SAFETY: ends the child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => common::reap(child, LONG),
    }
}

#[test]
fn a_loan_leaked_with_forget_is_abandoned_when_its_queue_handle_goes_not_left_to_wedge_the_lane() {
    let t = TestDomain::new("forget");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let other = Queue::open(&t.domain, "q").unwrap();
    let tx = other.sender();
    std::mem::forget(tx.loan(10, 3).unwrap());
    drop(tx);
    drop(other);
    q.sender().send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"after");
    let st = q.status();
    assert_eq!((st.abandoned, st.lanes[3].in_flight), (1, 0));
}

#[test]
fn a_forked_child_sends_under_its_own_slot_so_its_death_does_not_wedge_the_lane() {
    let t = TestDomain::new("fork");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    let tx = q.sender();
    tx.send(b"parent").unwrap();
    assert_eq!(q.status().sender_slots, 1);
    let code = in_fork_child(|| {
        // Dies half way through a send, as a crash would leave it.
        let mut loan = tx.loan(5, 3).unwrap();
        loan.copy_from_slice(b"child");
        std::mem::forget(loan);
        0
    });
    assert_eq!(code, Some(0));
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"parent");
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"after");
    let st = q.status();
    assert_eq!(
        (st.abandoned, st.sender_slots),
        (1, 1),
        "the child's claim was abandoned; the parent still holds its own slot"
    );
}

fn root() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        eprintln!("not root: cannot make pid namespaces; test not run");
    }
    is_root
}

/// `baton ARGS` as pid 1 of a new pid namespace; killing the returned child (the `unshare`
/// process, by pid) kills it too (`--kill-child`).
fn in_pid_namespace(t: &TestDomain, args: &[&str], failpoint: Option<&str>) -> Command {
    let mut c = common::baton_in_new_pid_namespace(t);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(f) = failpoint {
        c.env("BATON_FAILPOINT", f);
    }
    c
}

/// `baton ARGS` (with `failpoint`), in a new pid namespace or in this one; output discarded
/// but for standard output in a namespace (see `in_pid_namespace`).
fn baton_in(t: &TestDomain, namespace: bool, args: &[&str], failpoint: Option<&str>) -> Command {
    if namespace {
        return in_pid_namespace(t, args, failpoint);
    }
    let mut c = t.baton();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(f) = failpoint {
        c.env("BATON_FAILPOINT", f);
    }
    c
}

fn status(q: &Queue) -> Status {
    q.status()
}

#[test]
fn a_sender_killed_in_another_pid_namespace_has_its_claim_abandoned() {
    if !root() {
        return;
    }
    let t = TestDomain::new("ns-send");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    // Pid 1 in its namespace: here, pid 1 is init, alive, so `kill(1, 0)` said "alive" forever
    // and the claim wedged the lane.
    let sender = Child::spawn(&mut in_pid_namespace(
        &t,
        &["send", "q", "stuck"],
        Some("send.claimed:pause"),
    ));
    assert!(eventually(LONG, || status(&q).lanes[3].in_flight == 1));
    drop(sender); // SIGKILL, by pid
    q.sender().send(b"after").unwrap();
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"after");
    assert_eq!(status(&q).abandoned, 1);
}

#[test]
fn a_live_sender_in_another_pid_namespace_is_never_taken_for_dead() {
    if !root() {
        return;
    }
    let t = TestDomain::new("ns-live");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    // A pid that no process has here: `kill(pid, 0)` said "dead" and the claim of a live
    // sender was abandoned under it.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let free = (pid_max / 2..pid_max - 1)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let script = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid && {} send q live; true",
        free - 1,
        env!("CARGO_BIN_EXE_baton")
    );
    let sender = Child::spawn(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
            ])
            .arg(&script)
            .env("BATON_DOMAIN", t.name())
            .env("BATON_FAILPOINT", "send.claimed:pause")
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(eventually(LONG, || status(&q).lanes[3].in_flight == 1));
    // An owner looks at the claim for a second (it checks a stuck claim every 2 ms).
    let mut rx = q.receiver().unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err());
    let st = status(&q);
    assert_eq!(
        (st.lanes[3].in_flight, st.abandoned, st.sender_slots),
        (1, 0, 1),
        "a live sender's claim is left alone"
    );
    drop(sender);
    q.sender().send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"after");
    assert_eq!(status(&q).abandoned, 1);
}

#[test]
fn an_owner_in_another_pid_namespace_is_seen_alive_then_dead_and_taken_over() {
    if !root() {
        return;
    }
    let t = TestDomain::new("ns-owner");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"m0").unwrap();
    // The owner takes m0 and stops before acknowledging it.
    let owner = Child::spawn(&mut in_pid_namespace(
        &t,
        &["recv", "q", "--count", "2"],
        Some("recv.marked:pause"),
    ));
    // Owner first, then m0 taken: the owner's pid shows before it receives.
    assert!(eventually(LONG, || {
        let st = status(&q);
        st.owner_pid == Some(1) && st.lanes[3].unacknowledged == 1
    }));
    assert_eq!(status(&q).dead_owner_pid, None);
    drop(owner);
    // Here pid 1 is alive: only the lock says the owner died.
    assert!(eventually(LONG, || status(&q).dead_owner_pid == Some(1)));
    assert_eq!(status(&q).owner_pid, None);
    let mut rx = q.standby(Some(LONG)).unwrap();
    assert!(rx.took_over());
    let m = rx.recv_timeout(LONG).unwrap();
    assert_eq!((m.payload(), m.redelivered()), (&b"m0"[..], true));
}

#[test]
fn a_forked_child_dropping_its_copy_of_a_receiver_neither_hangs_nor_ends_the_parents_ownership() {
    let t = TestDomain::new("fork-owner");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    // Its copy of the receiver has no keeper thread: dropping it must not wait for one.
    let code = in_fork_child(|| {
        // SAFETY: in the child, these are its own copies (fork copied the memory); the child
        // never uses the originals again: it ends with _exit right after.
        drop(unsafe { std::ptr::read(&rx) });
        // SAFETY: as above, for the queue handle.
        drop(unsafe { std::ptr::read(&q) });
        0
    });
    assert_eq!(
        code,
        Some(0),
        "the child hung dropping its copy of the receiver"
    );
    assert_eq!(q.status().owner_pid, Some(std::process::id()));
    q.sender().send(b"still mine").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"still mine");
}

/// Found in review: a forked child could receive through its copy of the owner's receiver
/// (without holding the owner lock), and the owner then got the same message again, unflagged.
#[test]
fn a_forked_child_cannot_receive_through_its_parents_receiver() {
    let t = TestDomain::new("fork-recv");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let mut rx = q.receiver().unwrap();
    q.sender().send(b"one").unwrap();
    let code = in_fork_child(|| match rx.try_recv() {
        Err(baton::RecvError::ForkedCopy) => 0,
        Ok(m) => {
            std::mem::forget(m);
            1
        }
        Err(_) => 2,
    });
    assert_eq!(
        code,
        Some(0),
        "the child received through its parent's receiver"
    );
    let m = rx.try_recv().unwrap();
    assert_eq!((m.payload(), m.redelivered()), (&b"one"[..], false));
}

/// A consumer of a shared queue in another pid namespace (pid 1 there) holds a message: while
/// it lives, consumers here never take its message for a dead one's, however often they look;
/// once it is killed, the message comes here, flagged redelivered.
#[test]
fn a_consumer_in_another_pid_namespace_keeps_its_message_until_it_dies() {
    if !root() {
        return;
    }
    let t = TestDomain::new("ns-consumer");
    let q = Queue::create(
        &t.domain,
        "q",
        &Attributes {
            shared: true,
            ..Attributes::default()
        },
    )
    .unwrap();
    q.sender().send(b"held").unwrap();
    let holder = Child::spawn(&mut in_pid_namespace(
        &t,
        &["recv", "q", "--shared", "--exec", "sleep", "30"],
        None,
    ));
    assert!(eventually(LONG, || status(&q)
        .attached
        .iter()
        .any(|a| a.in_flight == 1)));
    let mut here = q.consumer().unwrap();
    // Each try looks for gone holders (it has nothing to take); over 200 ms, many times.
    let until = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < until {
        assert!(
            matches!(here.try_recv(), Err(baton::RecvError::Empty)),
            "a live consumer's message was taken from it"
        );
        std::thread::sleep(Duration::from_millis(3));
    }
    drop(holder); // kills the namespace's pid 1, by pid, and reaps it
    let m = here.recv_timeout(LONG).unwrap();
    assert_eq!((m.payload(), m.redelivered()), (&b"held"[..], true));
}

/// Voluntary context switches of the calling thread so far: one per sleep it went into.
fn sleeps_of_this_thread() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/thread-self/status")
}

/// A receiver held up by a live sender's unfinished claim sleeps until something happens (it
/// used to look every 2 ms, and an idle one every 100 ms), and the sender's death, in this or
/// another pid namespace, wakes it at once to skip the claim.
#[test]
fn a_receiver_behind_a_live_senders_claim_sleeps_until_that_sender_dies() {
    for namespace in [false, true] {
        if namespace && !root() {
            return;
        }
        let t = TestDomain::new("watch-claim");
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        let args = ["send", "q", "stuck"];
        let sender = Child::spawn(&mut baton_in(
            &t,
            namespace,
            &args,
            Some("send.written:pause"),
        ));
        assert!(eventually(LONG, || status(&q).lanes[3].in_flight == 1));
        q.sender().send(b"behind").unwrap();
        let mut rx = q.receiver().unwrap();
        let before = sleeps_of_this_thread();
        assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
        let sleeps = sleeps_of_this_thread() - before;
        assert!(
            sleeps <= 3,
            "namespace {namespace}: slept {sleeps} times in 1.5 s"
        );
        let killed = std::time::Instant::now();
        drop(sender); // SIGKILL, by pid
        assert_eq!(rx.recv_timeout(LONG).unwrap().payload(), b"behind");
        let waited = killed.elapsed();
        assert!(
            waited < Duration::from_millis(500),
            "namespace {namespace}: the death took {waited:?} to wake the receiver"
        );
        assert_eq!(status(&q).abandoned, 1);
    }
}

/// A sender that dies between committing a message and waking the sleeping receiver: its
/// death wakes the receiver instead (the message used to wait for the receiver's tick).
#[test]
fn a_message_whose_sender_died_before_announcing_it_wakes_the_sleeping_receiver() {
    for namespace in [false, true] {
        if namespace && !root() {
            return;
        }
        let t = TestDomain::new("watch-commit");
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        let (tx, rx_done) = std::sync::mpsc::channel();
        let receiver = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut rx = q.receiver().unwrap();
                tx.send(()).unwrap();
                let before = sleeps_of_this_thread();
                let m = rx
                    .recv_timeout(Duration::from_secs(30))
                    .map(|m| m.payload().to_vec());
                (m, sleeps_of_this_thread() - before)
            })
        };
        rx_done.recv().unwrap();
        std::thread::sleep(Duration::from_secs(1)); // asleep by now
        let args = ["send", "q", "last words"];
        let out = Child::spawn(&mut baton_in(&t, namespace, &args, Some("send.committed")))
            .wait_output(LONG);
        assert!(
            !out.status.success(),
            "namespace {namespace}: {:?}",
            out.status
        );
        let died = std::time::Instant::now();
        let (m, sleeps) = receiver.join().unwrap();
        assert_eq!(m.unwrap(), b"last words", "namespace {namespace}");
        assert!(
            died.elapsed() < Duration::from_secs(1),
            "namespace {namespace}: the death took {:?} to wake the receiver",
            died.elapsed()
        );
        // Asleep 1 s and more: woken by the new sender's slot, then its death (and not
        // ten times a second).
        assert!(sleeps <= 4, "namespace {namespace}: slept {sleeps} times");
    }
}

/// An idle pool of consumers sleeps until something happens (it used to look every 100 ms),
/// with a live sender process attached; a consumer that dies holding a message, in this or
/// another pid namespace, is noticed at once and the message taken again, flagged.
#[test]
fn an_idle_consumer_sleeps_and_a_dead_consumers_message_comes_back_at_once() {
    for namespace in [false, true] {
        if namespace && !root() {
            return;
        }
        let t = TestDomain::new("watch-consumer");
        let shared = Attributes {
            shared: true,
            ..Attributes::default()
        };
        let q = Queue::create(&t.domain, "q", &shared).unwrap();
        // A live sender process holds a slot and a claim; nothing is taken or waiting.
        let idle = Child::spawn(
            t.baton()
                .args(["send", "q", "x"])
                .env("BATON_FAILPOINT", "send.claimed:pause")
                .stderr(Stdio::null()),
        );
        let mut here = q.consumer().unwrap();
        // The paused sender's claim is a claim, not a message: nothing to take, and a live
        // holder's claim is watched, not looked at.
        assert!(eventually(LONG, || status(&q).lanes[3].in_flight == 1));
        let before = sleeps_of_this_thread();
        assert!(here.recv_timeout(Duration::from_millis(1500)).is_err());
        let sleeps = sleeps_of_this_thread() - before;
        drop(idle);
        q.sender().send(b"held").unwrap();
        let args = ["recv", "q", "--shared", "--exec", "sleep", "30"];
        let holder = Child::spawn(&mut baton_in(&t, namespace, &args, None));
        assert!(eventually(LONG, || status(&q)
            .attached
            .iter()
            .any(|a| a.in_flight == 1)));
        let killed = std::time::Instant::now();
        drop(holder); // SIGKILL, by pid
        let m = here.recv_timeout(LONG).unwrap();
        assert_eq!((m.payload(), m.redelivered()), (&b"held"[..], true));
        let waited = killed.elapsed();
        assert!(
            waited < Duration::from_millis(500),
            "namespace {namespace}: the death took {waited:?} to wake the consumer"
        );
        assert!(
            sleeps <= 3,
            "namespace {namespace}: slept {sleeps} times in 1.5 s"
        );
    }
}

/// The kernel wakes ONE watcher of a dead sender's lock word (and the reclaim's unlock one
/// more). When those are selective consumers that cannot take the message the sender
/// committed and died before announcing, the plain consumer that could take it must still
/// hear of it: a reclaim of a dead slot announces, whatever it resolved. (Found in review.)
#[test]
fn a_dead_senders_unannounced_message_reaches_a_plain_consumer_behind_two_selective_ones() {
    use baton::{Consumer, TypeFilter};
    use std::io::Write;
    use std::time::Instant;
    let t = TestDomain::new("watch-selective");
    let shared = Attributes {
        shared: true,
        ..Attributes::default()
    };
    let q = Queue::create(&t.domain, "q", &shared).unwrap();
    // Every consumer first: the first takes this process's slot, which wakes sleepers.
    let a = q.consumer().unwrap().with_filter(TypeFilter::Exactly(98));
    let b = q.consumer().unwrap().with_filter(TypeFilter::Exactly(99));
    let mut c = q.consumer().unwrap();
    // A sender process that holds its slot: its first message goes through, its second is
    // committed and the process dies before announcing it.
    let mut sender = Child::spawn(
        t.baton()
            .args(["send", "q"])
            .env("BATON_FAILPOINT", "send.committed@2")
            .stdin(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut input = sender.0.stdin.take().unwrap();
    writeln!(input, "first").unwrap();
    input.flush().unwrap();
    assert_eq!(c.recv_timeout(LONG).unwrap().payload(), b"first");
    // They go to sleep in this order, so the sender's lock word has them queued A, B, C.
    let sleep = |mut k: Consumer, wait: u64| {
        let h = std::thread::spawn(move || {
            let r = k
                .recv_timeout(Duration::from_secs(wait))
                .map(|m| m.payload().to_vec());
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        h
    };
    let ha = sleep(a, 8);
    let hb = sleep(b, 8);
    let hc = sleep(c, 4);
    writeln!(input, "last words").unwrap();
    input.flush().unwrap();
    drop(input);
    let out = sender.wait_output(LONG);
    assert!(
        !out.status.success(),
        "the sender died at its second commit"
    );
    let died = Instant::now();
    let (got, at) = hc.join().unwrap();
    let _ = (ha.join(), hb.join());
    assert_eq!(got, Ok(b"last words".to_vec()));
    assert!(
        at - died < Duration::from_millis(500),
        "the plain consumer found the dead sender's message {:?} after the death",
        at - died
    );
}

/// A `baton request` waiting for its reply, in this pid namespace or another, is killed: the
/// reply finds its slot dead, is refused and counted, and its reply box is free again.
#[test]
fn a_requester_killed_in_any_pid_namespace_has_its_reply_refused_and_its_box_freed() {
    if !root() {
        return;
    }
    for namespace in [false, true] {
        let t = TestDomain::new(if namespace {
            "ns-request"
        } else {
            "here-request"
        });
        let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
        let mut rx = q.receiver().unwrap();
        let requester = Child::spawn(&mut baton_in(
            &t,
            namespace,
            &["request", "q", "waiting", "--timeout", "30"],
            None,
        ));
        let m = rx.recv_timeout(LONG).unwrap();
        assert_eq!(status(&q).reply_boxes_in_use, 1);
        assert_eq!(
            status(&q).sender_slots,
            1,
            "the requester's slot, none of ours"
        );
        drop(requester); // SIGKILL, by pid (with --kill-child, the namespace's too)
                         // Waited for `unshare` only: its child, the requester, dies a moment later.
        assert!(eventually(LONG, || status(&q).sender_slots == 0));
        assert_eq!(
            m.reply(b"nobody"),
            Err(baton::ReplyError::RequesterGone),
            "namespace {namespace}"
        );
        let st = status(&q);
        assert_eq!(st.replies_dropped, 1, "namespace {namespace}");
        assert_eq!(st.reply_boxes_in_use, 0, "namespace {namespace}");
    }
}
