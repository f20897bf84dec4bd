//! Request/reply against deaths at the worst moments, stopped processes and a peer's scribbles
//! (from an adversarial review: each test failed on the first version of request/reply).
//!
//! Some helper processes are this test binary run again with `BATON_RR_ROLE` set, so that they
//! reach failpoints from a fresh process (needs the `failpoints` feature).

mod common;
use baton::{Attributes, Domain, Queue, RequestError};
use common::TestDomain;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

/// One reply box of 1000 bytes: it lies in the segment's last page (a control line of 64
/// bytes, then 16 cells).
fn one_box() -> Attributes {
    Attributes {
        reply_boxes: 1,
        max_message: 1000,
        ..Attributes::default()
    }
}

/// The one box's state word, read and written through the segment's file.
struct BoxWord {
    file: std::fs::File,
    at: u64,
}

impl BoxWord {
    fn of(t: &TestDomain) -> BoxWord {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(t.file("svc"))
            .unwrap();
        let at = file.metadata().unwrap().len() - 4096;
        BoxWord { file, at }
    }
    fn get(&self) -> u64 {
        let mut b = [0; 8];
        self.file.read_exact_at(&mut b, self.at).unwrap();
        u64::from_ne_bytes(b)
    }
    fn set(&self, w: u64) {
        self.file.write_all_at(&w.to_ne_bytes(), self.at).unwrap();
    }
}

/// (seq, replier, requester, state) of a state word (`baton_ring::reply::state`).
fn fields(w: u64) -> (u64, u8, u8, u64) {
    (w >> 26, (w >> 12) as u8, (w >> 4) as u8, w & 0xf)
}

const REPLYING: u64 = 2;
const WAITING: u64 = 1;

/// The roles a helper process plays (see the module); true if this process is one.
fn role() -> bool {
    let Ok(role) = std::env::var("BATON_RR_ROLE") else {
        return false;
    };
    let domain = Domain::new(&std::env::var("BATON_RR_DOMAIN").unwrap()).unwrap();
    let q = Queue::open(&domain, "svc").unwrap();
    match role.as_str() {
        "requester" => {
            let _ = q.sender().request(b"from a requester that dies", LONG);
        }
        // Receives one request and replies (BATON_FAILPOINT stops it in the reply).
        "server" => {
            let mut rx = q.receiver().unwrap();
            let m = rx.recv().unwrap();
            let _ = m.reply(b"answer");
        }
        // The documented batch pattern: the batch acknowledges, the queue handle replies.
        "batch-server" => {
            let mut rx = q.receiver().unwrap();
            let mut to = None;
            while to.is_none() {
                rx.try_recv_batch(1, |_, meta| to = meta.reply_to).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = q.reply(to.unwrap(), b"answer");
        }
        // Takes a sender slot (its first send); BATON_FAILPOINT parks it with the slot's lock
        // taken and what the slot's last holder left not yet settled.
        "slot-taker" => {
            let _ = q.sender().send(b"p");
        }
        // Waits to own the queue, then answers every request with "re:" and the request,
        // acknowledging each after its reply, until killed.
        "standby-server" => {
            let mut rx = q.standby(None).unwrap();
            loop {
                let m = rx.recv().unwrap();
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(m.payload());
                let _ = m.reply(&answer);
            }
        }
        other => panic!("role {other}"),
    }
    true
}

/// This test binary again, as `role`, running only test `test`.
fn helper(t: &TestDomain, test: &str, role: &str, failpoint: Option<&str>) -> common::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([test, "--exact", "--test-threads=1"])
        .env("BATON_RR_ROLE", role)
        .env("BATON_RR_DOMAIN", t.name())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(f) = failpoint {
        c.env("BATON_FAILPOINT", f);
    }
    common::Child::spawn(&mut c)
}

fn kill(c: &mut common::Child) {
    let _ = c.0.kill();
    let _ = c.0.wait();
}

/// A replier stopped half way through its reply (parked at `reply.written`; SIGSTOP or a
/// debugger do the same), alive: the requester still returns by its deadline, and the box is
/// freed when that replier is found gone.
#[cfg(feature = "failpoints")]
#[test]
fn a_request_returns_by_its_deadline_while_a_live_replier_is_stopped_mid_reply() {
    if role() {
        return;
    }
    const ME: &str = "a_request_returns_by_its_deadline_while_a_live_replier_is_stopped_mid_reply";
    let t = TestDomain::new("rr-stopped-replier");
    let q = Queue::create(&t.domain, "svc", &one_box()).unwrap();
    let word = BoxWord::of(&t);
    let mut server = helper(&t, ME, "server", Some("reply.written:pause"));
    assert!(common::eventually(LONG, || q.status().owner_pid.is_some()));
    let (tx, rx) = mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = q2.sender().request(b"q", Duration::from_secs(1));
        let _ = tx.send((r, started.elapsed()));
    });
    let in_time = rx.recv_timeout(Duration::from_secs(6));
    let w = word.get();
    kill(&mut server);
    let (r, took) = in_time
        .unwrap_or_else(|_| panic!("no return 6 s after a 1 s deadline; box {:?}", fields(w)));
    assert_eq!(r.unwrap_err(), RequestError::Timeout);
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The box, held by the stopped replier until it died, comes back to the next request.
    let next = q.sender().request(b"next", Duration::from_millis(300));
    assert_eq!(
        next.unwrap_err(),
        RequestError::Timeout,
        "a box, but no server"
    );
}

/// The requester dies while a server replies through `Queue::reply` after a batch (the
/// request is acknowledged: no redelivery), and the server dies before publishing: the box is
/// not leaked.
#[cfg(feature = "failpoints")]
#[test]
fn a_box_is_not_leaked_when_requester_and_replier_both_die() {
    if role() {
        return;
    }
    const ME: &str = "a_box_is_not_leaked_when_requester_and_replier_both_die";
    let t = TestDomain::new("rr-both-die");
    let q = Queue::create(&t.domain, "svc", &one_box()).unwrap();
    let word = BoxWord::of(&t);
    let mut server = helper(&t, ME, "batch-server", Some("reply.written:pause"));
    let mut requester = helper(&t, ME, "requester", None);
    assert!(
        common::eventually(LONG, || fields(word.get()).3 == REPLYING),
        "the server won the box"
    );
    kill(&mut requester);
    // A requester needing the box finds its requester dead and settles that slot.
    assert_eq!(
        q.sender()
            .request(b"probe", Duration::from_millis(300))
            .unwrap_err(),
        RequestError::AllBoxesBusy { boxes: 1 }
    );
    kill(&mut server);
    drop(q.receiver().unwrap()); // the next owner's recovery settles the dead server's slot
    let w = word.get();
    let q2 = q.clone();
    let next_server = std::thread::spawn(move || {
        let mut rx = q2.receiver().unwrap();
        if let Ok(m) = rx.recv_timeout(Duration::from_secs(5)) {
            m.reply(b"re:next").unwrap();
        }
    });
    let r = q.sender().request(b"next", Duration::from_secs(3));
    let st = q.status();
    next_server.join().unwrap();
    assert_eq!(
        r.as_ref().map(|r| r.payload().to_vec()),
        Ok(b"re:next".to_vec()),
        "the box leaked: {:?} = (seq, replier, requester, state), {} in use",
        fields(w),
        st.reply_boxes_in_use
    );
}

/// A peer scribbles the one box's state to a value no step writes, naming a slot nobody
/// holds: a request neither spins nor hangs; it gets the box (freed as an orphan) and times
/// out, as there is no server.
#[test]
fn a_scribbled_box_state_does_not_hold_up_a_request() {
    let t = TestDomain::new("rr-scribbled-claim");
    let q = Queue::create(&t.domain, "svc", &one_box()).unwrap();
    let word = BoxWord::of(&t);
    word.set(5 << 26 | 200 << 4 | 7); // seq 5, requester slot 200 (free), state 7
    let (tx, rx) = mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        let _ = tx.send(q2.sender().request(b"x", Duration::from_millis(300)));
    });
    let r = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(
        r.expect("no spin, no hang").unwrap_err(),
        RequestError::Timeout
    );
}

/// A peer scribbles a waiting box to REPLYING under a live slot (the requester's own): the
/// request still returns by its deadline.
#[test]
fn a_box_scribbled_to_replying_does_not_hold_a_request_past_its_deadline() {
    let t = TestDomain::new("rr-scribbled-replying");
    let q = Queue::create(&t.domain, "svc", &one_box()).unwrap();
    let word = BoxWord::of(&t);
    let (tx, rx) = mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        let _ = tx.send(q2.sender().request(b"x", Duration::from_millis(300)));
    });
    assert!(common::eventually(LONG, || fields(word.get()).3 == WAITING));
    let w = word.get();
    let requester = (w >> 4) & 0xff;
    word.set(w & !(0xff << 12 | 0xf) | requester << 12 | REPLYING);
    let r = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(
        r.expect("returned by its deadline").unwrap_err(),
        RequestError::Timeout
    );
}

/// The server (a dead slot) died holding the box REPLYING; a process taking a sender slot gets
/// that slot and holds its lock before settling what it left (parked at `slot.locked` here for
/// 200 ms; normally microseconds). The next owner's reply to the redelivered request, made in
/// that window, must not be refused: it waits for the box to come back.
#[cfg(feature = "failpoints")]
#[test]
fn the_next_owners_reply_is_not_refused_while_the_dead_repliers_slot_is_being_taken() {
    if role() {
        return;
    }
    const ME: &str =
        "the_next_owners_reply_is_not_refused_while_the_dead_repliers_slot_is_being_taken";
    let t = TestDomain::new("rr-slot-taken");
    let q = Queue::create(&t.domain, "svc", &one_box()).unwrap();
    let word = BoxWord::of(&t);
    let (tx, rx) = mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        let _ = tx.send(q2.sender().request(b"once", Duration::from_secs(8)));
    });
    assert!(common::eventually(LONG, || fields(word.get()).3 == WAITING));
    let mut server = helper(&t, ME, "server", Some("reply.written:pause"));
    assert!(common::eventually(LONG, || fields(word.get()).3 == REPLYING));
    kill(&mut server);
    let mut taker = helper(&t, ME, "slot-taker", Some("slot.locked:pause"));
    assert!(common::eventually(LONG, || q.status().sender_slots == 2));
    let mut owner = q.receiver().unwrap(); // takes over from the dead server
    let m = owner.recv_timeout(LONG).unwrap();
    assert!(m.redelivered());
    // The taker dies 200 ms into the reply's wait, leaving the slot to be found dead again.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill(&mut taker);
    });
    let replied = m.reply(b"from the next owner");
    m.ack().unwrap();
    killer.join().unwrap();
    let got = rx.recv().unwrap();
    assert_eq!(
        got.map(|r| r.into_payload()),
        Ok(b"from the next owner".to_vec()),
        "the next owner's reply: {replied:?}; replies dropped {}",
        q.status().replies_dropped
    );
}

/// A reply token given to another queue (a server serving several queues; a token carried as a
/// number; a queue removed and made again) is refused, not delivered to a stranger.
#[test]
fn a_token_of_another_queue_is_refused() {
    let t = TestDomain::new("rr-other-queue");
    let a = Queue::create(&t.domain, "a", &Attributes::default()).unwrap();
    let b = Queue::create(&t.domain, "b", &Attributes::default()).unwrap();
    let ask = |q: &Queue| {
        let q = q.clone();
        std::thread::spawn(move || q.sender().request(b"ask", Duration::from_secs(2)))
    };
    let (wait_a, wait_b) = (ask(&a), ask(&b));
    let mut rx_a = a.receiver().unwrap();
    let mut rx_b = b.receiver().unwrap();
    let to_a = rx_a.recv().unwrap().meta().reply_to.unwrap();
    let _m_b = rx_b.recv().unwrap();
    let misrouted = b.reply(to_a, b"meant for a's requester");
    assert!(
        misrouted.is_err(),
        "a's token {:#x} was accepted by queue b",
        to_a.to_u64()
    );
    assert_eq!(wait_b.join().unwrap().unwrap_err(), RequestError::Timeout);
    let _ = wait_a.join();
}

/// Servers killed with SIGKILL every few milliseconds, each time at some step of receiving,
/// replying or acknowledging, with a standby taking over; three requesters keep asking. Every
/// request gets exactly its own reply; nothing is left holding a box.
#[test]
fn requests_answered_by_servers_killed_over_and_over_each_get_their_own_reply() {
    if role() {
        return;
    }
    const ME: &str = "requests_answered_by_servers_killed_over_and_over_each_get_their_own_reply";
    let t = TestDomain::new("rr-kill-loop");
    let q = Queue::create(&t.domain, "svc", &Attributes::default()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requesters: Vec<_> = (0..3)
        .map(|r| {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || {
                let tx = q.sender();
                let mut answered = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ask = format!("{r}-{answered}");
                    let reply = tx.request(ask.as_bytes(), LONG).unwrap();
                    assert_eq!(reply.payload(), format!("re:{ask}").as_bytes());
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut servers = vec![
        helper(&t, ME, "standby-server", None),
        helper(&t, ME, "standby-server", None),
    ];
    let mut kills = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_micros(2000 + 1777 * (kills % 7)));
        // Kill the one that owns the queue (the first to come), and start another standby.
        let owner = q.status().owner_pid;
        if let Some(i) = servers.iter().position(|s| Some(s.pid()) == owner) {
            let mut s = servers.swap_remove(i);
            kill(&mut s);
            kills += 1;
            servers.push(helper(&t, ME, "standby-server", None));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: u32 = requesters.into_iter().map(|h| h.join().unwrap()).sum();
    for s in &mut servers {
        kill(s);
    }
    assert!(kills >= 10, "{kills} kills");
    assert!(answered > 0);
    assert!(
        common::eventually(LONG, || q.status().reply_boxes_in_use == 0),
        "{:?}",
        q.status()
    );
    eprintln!(
        "request kill loop: {kills} servers killed, {answered} requests answered, {} second \
         replies refused",
        q.status().replies_dropped
    );
}
