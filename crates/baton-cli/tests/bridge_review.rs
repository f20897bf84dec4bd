//! Adversarial review of the bridge, on one machine: `baton bridge --backend local`, two
//! bridges ("n1", "n2") in one domain with outboxes of their own (n1.out, n2.out).

#[path = "../../baton/tests/common/mod.rs"]
mod common;
use baton::{Attributes, Queue, RemoteAddress};
use common::TestDomain;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct BridgeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl BridgeProcess {
    fn start(t: &TestDomain, node: &str) -> BridgeProcess {
        BridgeProcess::start_with(t, node, &format!("{node}.out"))
    }

    fn start_with(t: &TestDomain, node: &str, outbox: &str) -> BridgeProcess {
        let path = std::env::temp_dir().join(format!(
            "baton-bridge-review-{}-{node}-{outbox}.toml",
            t.name()
        ));
        std::fs::write(
            &path,
            format!(
                "node = \"{node}\"\ndomain = \"{}\"\ngroup = \"bridges\"\noutbox = \"{outbox}\"\nretransmit_ms = 200\n",
                t.name()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["bridge", "--backend", "local", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let b = BridgeProcess { child, lines };
        b.wait_for("started");
        b
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("the bridge never said {text:?}"),
            }
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn held(q: &Queue) -> u64 {
    q.status().lanes.iter().map(|l| l.messages).sum()
}

fn receive(rx: &mut baton::Receiver, n: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload()).into_owned());
            m.ack().unwrap();
        }
    }
    got
}

/// A bridge stopped by SIGTERM (or one that exits on an error: corosync gone) with messages
/// not yet confirmed must leave them in the outbox, unacknowledged. The bridge's `Pending`
/// holds `baton::Message`s, and dropping a Message acknowledges it: every unconfirmed message
/// is lost, and its tracked sender is told `Acknowledged` (in the remote queue: it is not).
#[test]
fn a_bridge_stopped_with_unconfirmed_messages_keeps_them() {
    let t = TestDomain::new("brv-stop");
    let mut b1 = BridgeProcess::start(&t, "n1");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    let mut d = outbox.sender().send_tracked(&to.envelope(b"x")).unwrap();
    // Taken from the outbox and forwarded; no bridge of n2 confirms it.
    assert!(common::eventually(Duration::from_secs(10), || held(
        &outbox
    ) == 1
        && b1.alive()));
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b1.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    b1.child.wait().unwrap();
    assert_eq!(
        d.try_outcome().unwrap(),
        None,
        "the stopped bridge told the sender its message is in n2/orders"
    );
    assert_eq!(held(&outbox), 1, "the unconfirmed message is gone");
    // And it does arrive once both bridges run.
    let orders = Queue::create(&t.domain, "orders", &Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    let _b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    assert_eq!(receive(&mut rx, 1, Duration::from_secs(10)), vec!["x"]);
}

/// A message the bridges' group cannot carry (over its largest message: 64 KiB for a local
/// group, 1 MiB for corosync) in an outbox made with a larger max_message: the bridge must
/// refuse it with a reason, not exit (and lose it, and every other unconfirmed one).
#[test]
fn a_message_too_big_for_the_group_is_refused_not_fatal() {
    let t = TestDomain::new("brv-big");
    Queue::create(
        &t.domain,
        "n1.out",
        &Attributes {
            max_message: 200 << 10,
            capacity: [1 << 20; 4],
            ..Attributes::default()
        },
    )
    .unwrap();
    let orders = Queue::create(
        &t.domain,
        "orders",
        &Attributes {
            max_message: 200 << 10,
            capacity: [1 << 20; 4],
            ..Attributes::default()
        },
    )
    .unwrap();
    let mut rx = orders.receiver().unwrap();
    let mut b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    outbox
        .sender()
        .send(&to.envelope(&vec![b'b'; 100 << 10]))
        .unwrap();
    outbox.sender().send(&to.envelope(b"after")).unwrap();
    let got = receive(&mut rx, 1, Duration::from_secs(5));
    if !b1.alive() {
        let _ = b1.child.wait();
        panic!(
            "the bridge exited on a big message; the outbox holds {} message(s) of the 2 sent",
            held(&outbox)
        );
    }
    assert_eq!(got, vec!["after"]);
}

/// "In order per sender and destination queue except around a destination bridge's
/// restart": a destination queue that is full makes the destination bridge drop a forward
/// after 100 ms (the source's retransmit brings it again later) and go on with the next,
/// which gets in first if room came meanwhile.
#[test]
fn a_full_destination_queue_keeps_the_order() {
    let t = TestDomain::new("brv-order");
    let orders = Queue::create(
        &t.domain,
        "orders",
        &Attributes {
            capacity: [128; 4], // two small messages a lane
            max_message: 64,
            ..Attributes::default()
        },
    )
    .unwrap();
    let mut rx = orders.receiver().unwrap();
    let b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    let n = 12;
    for i in 0..n {
        outbox
            .sender()
            .send(&to.envelope(format!("m{i:02}").as_bytes()))
            .unwrap();
    }
    // A slow reader: one message every 150 ms.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload()).into_owned());
            m.ack().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let want: Vec<_> = (0..n).map(|i| format!("m{i:02}")).collect();
    assert_eq!(got, want, "out of order with no bridge restarted");
}

/// 4096 messages to a node whose bridge is down (or a mistyped node name) fill the pending
/// map; the bridge then takes nothing more from the outbox: nothing goes to any other node.
#[test]
fn a_node_down_does_not_stop_messages_to_the_others() {
    let t = TestDomain::new("brv-hol");
    let orders = Queue::create(&t.domain, "orders", &Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    let outbox = Queue::create(
        &t.domain,
        "n1.out",
        &Attributes {
            max_message: 4096 + 256,
            capacity: [4 << 20; 4],
            ..Attributes::default()
        },
    )
    .unwrap();
    let ghost = RemoteAddress::parse("n3/orders").unwrap().unwrap();
    for i in 0..4100 {
        outbox
            .sender()
            .send(&ghost.envelope(format!("g{i}").as_bytes()))
            .unwrap();
    }
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    outbox.sender().send(&to.envelope(b"to n2")).unwrap();
    let b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    assert_eq!(
        receive(&mut rx, 1, Duration::from_secs(10)),
        vec!["to n2"],
        "node n3 being down stopped the traffic to n2"
    );
}

/// A refused message whose dead letter cannot be written is acknowledged anyway: lost, with
/// a log line. With the defaults: the dead letter is the reason plus the whole envelope, and
/// `<outbox>.failed` is made with the outbox's max_message, so a refused message near the
/// outbox's largest never fits.
#[test]
fn a_refused_big_message_reaches_the_dead_letters() {
    let t = TestDomain::new("brv-dead");
    let b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/nowhere").unwrap().unwrap();
    let max = outbox.status().attributes.max_message as usize - to.overhead();
    outbox
        .sender()
        .send(&to.envelope(&vec![b'x'; max]))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rx = loop {
        if let Ok(q) = Queue::open(&t.domain, "n1.out.failed") {
            break q.receiver().unwrap();
        }
        assert!(Instant::now() < deadline, "no dead-letter queue");
        std::thread::sleep(Duration::from_millis(50));
    };
    let letter = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        letter.is_ok(),
        "the refused message is lost: {letter:?}; outbox holds {}",
        held(&outbox)
    );
}

/// The same with the dead-letter queue full: lost too.
#[test]
fn a_refused_message_is_not_lost_when_the_dead_letters_are_full() {
    let t = TestDomain::new("brv-full");
    let dead = Queue::create(
        &t.domain,
        "n1.out.failed",
        &Attributes {
            capacity: [256; 4], // one letter
            max_message: 200,
            ..Attributes::default()
        },
    )
    .unwrap();
    let b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/nowhere").unwrap().unwrap();
    for i in 0..3 {
        outbox
            .sender()
            .send(&to.envelope(format!("{i}").as_bytes()))
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut rx = dead.receiver().unwrap();
    let got = receive(&mut rx, 3, Duration::from_secs(10));
    assert_eq!(got.len(), 3, "dead letters lost: got {got:?}");
}

/// Two bridges that call themselves the same node (two configurations with the same `node`
/// and different outboxes on one machine, or two machines given the same name): both deliver
/// each forward to that node. "A second bridge of the node is refused" holds only for the
/// same outbox; nothing looks at a hello with this bridge's own name from another member.
#[test]
fn a_second_bridge_with_the_same_node_name_does_not_duplicate() {
    let t = TestDomain::new("brv-twin");
    let orders = Queue::create(&t.domain, "orders", &Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    let b1 = BridgeProcess::start(&t, "n1");
    let _b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let _twin = BridgeProcess::start_with(&t, "n2", "other.out");
    std::thread::sleep(Duration::from_millis(500));
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    for i in 0..5 {
        outbox
            .sender()
            .send(&to.envelope(format!("{i}").as_bytes()))
            .unwrap();
    }
    let got = receive(&mut rx, 10, Duration::from_secs(3));
    assert_eq!(got.len(), 5, "duplicates: {got:?}");
}

/// The destination bridge caches queue handles; a queue removed and made again (its program
/// restarted) is then refused as "removed" and the message dead-lettered, though a queue of
/// that name is there. And the first message, received and the queue removed just as the
/// bridge finished writing it (its send said "removed"), must not come again in the new queue
/// (it did, under load, when a send that said "removed" was tried again).
#[test]
fn a_destination_queue_made_again_still_gets_messages() {
    let t = TestDomain::new("brv-again");
    let orders = Queue::create(&t.domain, "orders", &Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    let b1 = BridgeProcess::start(&t, "n1");
    let b2 = BridgeProcess::start(&t, "n2");
    b1.wait_for("bridge of n2 is");
    let outbox = baton_cluster::bridge::outbox(&t.domain, "n1.out").unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    outbox.sender().send(&to.envelope(b"first")).unwrap();
    assert_eq!(receive(&mut rx, 1, Duration::from_secs(5)), vec!["first"]);
    drop(rx);
    drop(orders);
    Queue::remove(&t.domain, "orders").unwrap();
    let orders = Queue::create(&t.domain, "orders", &Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    outbox.sender().send(&to.envelope(b"second")).unwrap();
    let got = receive(&mut rx, 1, Duration::from_secs(5));
    let dead = Queue::open(&t.domain, "n1.out.failed")
        .ok()
        .and_then(|q| q.receiver().ok())
        .and_then(|mut r| r.try_recv().ok())
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned());
    let logs: Vec<String> = b1.lines.try_iter().chain(b2.lines.try_iter()).collect();
    assert_eq!(
        got,
        vec!["second"],
        "dead letter: {dead:?}; bridges said {logs:?}"
    );
}

/// The destination remembers the last 65,536 delivered ids of all sources together. A source
/// bridge that forwarded a message and died before the DONE (its outbox keeps the message)
/// and comes back after the destination delivered 65,536 others forwards it again: delivered
/// twice, though no record file was lost. (The source is played here by a group member that
/// speaks the bridges' wire format.)
#[test]
fn a_late_retransmit_is_not_delivered_twice() {
    use baton_cluster::{Backend, ProcessGroup};
    let t = TestDomain::new("brv-ring");
    let orders = Queue::create(
        &t.domain,
        "orders",
        &Attributes {
            capacity: [1 << 20; 4],
            ..Attributes::default()
        },
    )
    .unwrap();
    let mut rx = orders.receiver().unwrap();
    let _b2 = BridgeProcess::start(&t, "n2");
    let mut g = ProcessGroup::join(Backend::local(&t.domain), "bridges").unwrap();
    let forward = |k: u64| {
        let mut f = vec![b'F'];
        // The source's mark: its message 1 never confirmed (it died before the DONE).
        for w in [7u64, 7, k, 1 << 2] {
            f.extend_from_slice(&w.to_le_bytes());
        }
        f.push(2);
        f.extend_from_slice(b"n2");
        f.push(6);
        f.extend_from_slice(b"orders");
        f.push(0);
        f.extend_from_slice(&0i64.to_le_bytes());
        f.extend_from_slice(b"m");
        f
    };
    let counter = std::thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(m) = rx.recv_timeout(Duration::from_secs(5)) {
            m.ack().unwrap();
            n += 1;
        }
        n
    });
    let total = 65_536 + 2;
    for k in 1..=total {
        let id = if k == total { 1 } else { k }; // the last one: the first again, late
        g.send_timeout(&forward(id << 2), Duration::from_secs(10))
            .unwrap();
        while g.recv(Some(Duration::ZERO)).unwrap().is_some() {}
    }
    let n = counter.join().unwrap();
    assert_eq!(n, total - 1, "delivered {n} for {} distinct ids", total - 1);
}
