//! Sleepers without ticks (the death watch) and cancels, against the cases a review found:
//! the kernel's one wake-up for a death spent on a thread of the dying process, and a consumer
//! cancelled while it looks for messages.

mod common;
use baton::{Attributes, Queue, RecvError};
use common::TestDomain;
use nix::unistd::{fork, ForkResult};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn shared() -> Attributes {
    Attributes {
        shared: true,
        ..Attributes::default()
    }
}

/// A process that consumes from a shared queue and sends to it is killed holding a claim; a
/// consumer of another process sleeps behind the claim. The kernel wakes one waiter of the
/// dead process's lock word: its own consumer thread, asleep on it too, would take that
/// wake-up to its grave. Sleepers do not watch their own process's slot, so the live consumer
/// is the one woken, and the message behind the dead claim comes at once.
#[test]
fn a_worker_killed_with_a_claim_does_not_spend_the_death_wake_on_its_own_thread() {
    let mut late = Vec::new();
    for round in 0..8 {
        let t = TestDomain::new("watch-self");
        let q = Queue::create(&t.domain, "q", &shared()).unwrap();
        let mut here = q.consumer().unwrap(); // this process's slot, taken now
        here.set_spin(Duration::ZERO);
        let tx = q.sender();
        let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
        // SAFETY: the child only uses baton's API and a pipe until it is killed.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(ready_r);
                let q = Queue::open(&t.domain, "q").unwrap();
                let mut consumer = q.consumer().unwrap();
                consumer.set_spin(Duration::ZERO);
                std::thread::spawn(move || {
                    let _ = consumer.recv();
                });
                std::thread::sleep(Duration::from_millis(200)); // asleep on the watched words
                let tx = q.sender();
                let loan = tx.loan(8, 3).unwrap(); // a claim, never committed
                ready_w.write_all(b"r").unwrap();
                std::thread::sleep(Duration::from_secs(60));
                drop(loan);
                // SAFETY: not reached (killed); no destructor runs.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        };
        drop(ready_w);
        let mut byte = [0u8];
        ready_r.read_exact(&mut byte).unwrap();
        tx.send(b"behind").unwrap(); // behind the worker's claim, same lane
        std::thread::sleep(Duration::from_millis(200));
        let waiting = std::thread::spawn(move || {
            let r = here
                .recv_timeout(Duration::from_secs(3))
                .map(|m| m.payload().to_vec());
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300)); // asleep behind the claim
        let killed = Instant::now();
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = nix::sys::wait::waitpid(child, None);
        let (r, at) = waiting.join().unwrap();
        if r != Ok(b"behind".to_vec()) || at - killed > Duration::from_millis(500) {
            late.push((round, r.map(|_| at - killed)));
        }
    }
    assert!(
        late.is_empty(),
        "the worker's death did not wake the live consumer at once (round, outcome): {late:?}"
    );
}

/// A consumer cancelled while it polls (it holds the lookout's polling mark) gives the mark up
/// and announces what waits: a message sent just then reaches the pool's sleeping consumer at
/// once, not at its next look. (Found in review.)
#[test]
fn a_consumer_cancelled_while_it_polls_does_not_keep_the_others_from_a_message() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{mpsc, Arc};
    let t = TestDomain::new("cancel-lookout");
    let q = Queue::create(&t.domain, "q", &shared()).unwrap();
    let tx = q.sender();
    let mut looker = q.consumer().unwrap();
    looker.set_spin(Duration::from_secs(10));
    let cancel = looker.canceller();
    let mut sleeper = q.consumer().unwrap();
    sleeper.set_spin(Duration::ZERO); // sleeps at once, never polls
    let (go, started) = mpsc::channel::<()>();
    let (result, results) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        while started.recv().is_ok() {
            let r = sleeper
                .recv_timeout(Duration::from_millis(1500))
                .map(|m| m.payload().to_vec());
            result.send((r, Instant::now())).unwrap();
        }
    });
    let status = format!("/proc/self/task/{}/status", tid_rx.recv().unwrap());
    // How many times the sleeper thread has gone to sleep.
    let sleeps = || {
        std::fs::read_to_string(&status)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let mut late = Vec::new();
    let mut cases = 0;
    for round in 0..30u32 {
        if late.len() >= 2 {
            break;
        }
        go.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the sleeper sleeps
                                                        // The looker polls, and is cancelled soon after.
        let begun = Arc::new(AtomicBool::new(false));
        let b = begun.clone();
        let looking = std::thread::spawn(move || {
            b.store(true, SeqCst);
            let r = looker
                .recv_timeout(Duration::from_millis(1500))
                .map(|m| m.payload().to_vec());
            (r, looker)
        });
        while !begun.load(SeqCst) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(200)); // polling by now
        let asleep = sleeps();
        cancel.cancel();
        // The cancel's poke wakes the sleeper, which looks and sleeps again, and the looker
        // returns; then a message comes, while the cancelled poller's mark would still stand.
        let give_up = Instant::now() + Duration::from_micros(700);
        while (sleeps() == asleep || !looking.is_finished()) && Instant::now() < give_up {
            std::hint::spin_loop();
        }
        let payload = format!("m{round}").into_bytes();
        tx.send(&payload).unwrap();
        let sent = Instant::now();
        let (r, l) = looking.join().unwrap();
        looker = l;
        let (got, at) = results.recv().unwrap();
        if r == Err(RecvError::Interrupted) {
            cases += 1;
            assert_eq!(got, Ok(payload), "round {round}");
            if at - sent > Duration::from_millis(500) {
                late.push((round, at - sent));
            }
        } else if got.is_err() {
            // The cancel came before the receive began, and the looker took the message.
            assert_eq!(r, Ok(payload));
        }
    }
    drop(go);
    sleeper.join().unwrap();
    assert!(cases > 0, "no round had the looker cancelled while polling");
    assert!(
        late.is_empty(),
        "messages sent right after a polling consumer was cancelled waited (round, delay): \
         {late:?} of {cases}"
    );
}
