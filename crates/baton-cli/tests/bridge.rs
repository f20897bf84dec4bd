//! `baton bridge` between two corosync nodes (two network namespaces joined by a veth pair,
//! the harness of baton-cluster's tests; each node's queues in a domain of its own): sends to
//! `node2/orders` from node 1 arrive in node 2's queue, each once, and their tracked senders
//! learn it; node 2's bridge killed with SIGKILL and restarted delivers what was sent
//! meanwhile, once; node 1's bridge killed with messages unconfirmed is taken over by its
//! restart; a message to a queue that does not exist goes to the dead letters with why.

#[path = "../../baton/tests/common/mod.rs"]
mod common;
#[path = "../../baton-cluster/tests/harness/mod.rs"]
mod harness;
use baton::{Delivered, Queue, RemoteAddress};
use common::TestDomain;
use harness::{root, serial, Node};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A bridge process of `node`, started from a thread in the node's network namespace; its
/// log lines come on the channel.
struct BridgeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl BridgeProcess {
    fn start(node: &Node, config: &std::path::Path) -> BridgeProcess {
        node.enter();
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["bridge", "--config"])
            .arg(config)
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
        BridgeProcess { child, lines }
    }

    /// Waits for a log line containing `text` (20 s at most).
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

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &std::path::Path, node: &str, t: &TestDomain, group: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{node}.toml"));
    std::fs::write(
        &path,
        format!(
            "node = \"{node}\"\ndomain = \"{}\"\ngroup = \"{group}\"\nretransmit_ms = 200\n",
            t.name()
        ),
    )
    .unwrap();
    path
}

/// Receives from `rx` until `n` messages came (or 20 s passed); their payloads.
fn receive(rx: &mut baton::Receiver, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(String::from_utf8_lossy(m.payload()).into_owned());
            m.ack().unwrap();
        }
    }
    got
}

#[test]
fn sends_cross_the_bridge_once_through_a_bridge_killed_and_restarted() {
    let _serial = serial();
    if !root() {
        return;
    }
    let (one, two) = Node::pair("bridge");
    let (t1, t2) = (TestDomain::new("bridge-n1"), TestDomain::new("bridge-n2"));
    let dir = std::env::temp_dir().join(format!("baton-bridge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let group = format!("bridge-{}", std::process::id());
    let (c1, c2) = (
        config(&dir, "n1", &t1, &group),
        config(&dir, "n2", &t2, &group),
    );
    let orders = Queue::create(&t2.domain, "orders", &baton::Attributes::default()).unwrap();
    let mut rx = orders.receiver().unwrap();
    let b1 = BridgeProcess::start(&one, &c1);
    b1.wait_for("started");
    let mut b2 = BridgeProcess::start(&two, &c2);
    b2.wait_for("bridge of n1 is");
    b1.wait_for("bridge of n2 is");

    let outbox = baton_cluster::bridge::outbox(&t1.domain, baton::DEFAULT_OUTBOX).unwrap();
    let to = RemoteAddress::parse("n2/orders").unwrap().unwrap();
    let send = |text: &str| {
        outbox
            .sender()
            .send_tracked(&to.envelope(text.as_bytes()))
            .unwrap()
    };
    let mut first: Vec<_> = (0..10).map(|i| send(&format!("a{i}"))).collect();
    let got = receive(&mut rx, 10);
    assert_eq!(got, (0..10).map(|i| format!("a{i}")).collect::<Vec<_>>());
    for d in &mut first {
        assert_eq!(
            d.wait(Duration::from_secs(20)).unwrap(),
            Delivered::Acknowledged
        );
    }

    // Node 2's bridge dies; what is sent meanwhile waits in node 1's outbox, unconfirmed.
    b2.kill();
    let mut second: Vec<_> = (0..10).map(|i| send(&format!("b{i}"))).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx.try_recv().is_err(),
        "nothing can arrive without node 2's bridge"
    );
    assert!(second
        .iter_mut()
        .all(|d| d.try_outcome().unwrap().is_none()));
    let b2 = BridgeProcess::start(&two, &c2);
    b2.wait_for("started");
    let mut got = receive(&mut rx, 10);
    got.sort();
    let mut want: Vec<_> = (0..10).map(|i| format!("b{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each once, after the restart");
    for d in &mut second {
        assert_eq!(
            d.wait(Duration::from_secs(20)).unwrap(),
            Delivered::Acknowledged
        );
    }

    // Node 1's bridge dies with messages unconfirmed (node 2's is down): its restart takes
    // the outbox over and forwards them.
    let mut b2 = b2;
    b2.kill();
    let mut b1 = b1;
    let mut third: Vec<_> = (0..5).map(|i| send(&format!("c{i}"))).collect();
    std::thread::sleep(Duration::from_millis(300)); // taken from the outbox, forwarded
    b1.kill();
    let b1 = BridgeProcess::start(&one, &c1);
    b1.wait_for("started");
    let _b2 = BridgeProcess::start(&two, &c2);
    let mut got = receive(&mut rx, 5);
    got.sort();
    assert_eq!(got, (0..5).map(|i| format!("c{i}")).collect::<Vec<_>>());
    for d in &mut third {
        assert_eq!(
            d.wait(Duration::from_secs(20)).unwrap(),
            Delivered::Acknowledged
        );
    }
    std::thread::sleep(Duration::from_millis(600)); // a retransmit or two: no duplicates
    assert!(rx.try_recv().is_err(), "a message came twice");

    // A queue that does not exist there: refused, to the dead letters with why.
    let nowhere = RemoteAddress::parse("n2/nowhere").unwrap().unwrap();
    outbox.sender().send(&nowhere.envelope(b"lost?")).unwrap();
    let dead = Queue::open(&t1.domain, "bridge.out.failed").map(|_| ());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dead_rx = loop {
        if let Ok(q) = Queue::open(&t1.domain, "bridge.out.failed") {
            break q.receiver().unwrap();
        }
        assert!(Instant::now() < deadline, "no dead letter: {dead:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let letter = dead_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(letter.payload()).into_owned();
    assert!(
        text.contains("n2/nowhere") && text.ends_with("lost?"),
        "{text}"
    );
    drop(b1);
    let _ = std::fs::remove_dir_all(&dir);
}
