//! The csa104 scenario: an active component receives, standby components wait to take over and
//! send meanwhile; the active one is killed with SIGKILL, a standby takes the queue over with
//! every message in place, and a restarted component becomes the new standby.
//!
//! `cargo run --release --example active_standby`
//!
//! Every component sends numbered messages ("#N from <name>") every 10 ms, whether it is active
//! or standby. The log shows each message as the active component receives it; it acknowledges
//! it after 3 ms of "processing". A message the killed owner had taken but not acknowledged
//! comes again, marked REDELIVERED. At the end the
//! parent takes the queue over itself, drains it, and checks that every component's numbers
//! arrived with no gap. Exit status 1 if one is missing.

use baton::{Attributes, Domain, Queue};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUEUE: &str = "csa104msgqueue";
/// Bytes per priority, as csa104's QUEUE_LENGTH.
const QUEUE_LENGTH: u64 = 2048;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("component") {
        return component(&args[2], &args[3]);
    }
    let domain = Domain::new(&format!("csa104-{}", std::process::id()))?;
    let attrs = Attributes {
        capacity: [QUEUE_LENGTH; 4],
        max_message: 64,
        ..Default::default()
    };
    let queue = Queue::create(&domain, QUEUE, &attrs)?;
    let result = scenario(&domain, &queue);
    Queue::remove(&domain, QUEUE)?;
    result
}

/// One component: sends a numbered message every 10 ms on one thread; on the main thread waits
/// as a standby to own the queue, then receives and logs until killed.
fn component(domain: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::open(&Domain::new(domain)?, QUEUE)?;
    let tx = queue.sender();
    let me = name.to_string();
    std::thread::spawn(move || {
        for n in 0u64.. {
            if tx.send(format!("#{n} from {me}").as_bytes()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    println!("{name}: standby (pid {})", std::process::id());
    let mut rx = queue.standby(None)?;
    println!(
        "{name}: ACTIVE now (epoch {}{})",
        rx.epoch(),
        if rx.took_over() {
            ", took over from a dead owner"
        } else {
            ""
        }
    );
    loop {
        let m = rx.recv()?;
        let text = String::from_utf8_lossy(m.payload()).into_owned();
        println!(
            "{name}: received {text}{}",
            if m.redelivered() { "  REDELIVERED" } else { "" }
        );
        // "Process" the message before acknowledging it: a kill that lands here leaves it
        // unacknowledged, and the next owner delivers it again, marked.
        std::thread::sleep(Duration::from_millis(3));
        m.ack()?;
    }
}

/// Output lines of all components, as they come.
type Log = Arc<Mutex<Vec<String>>>;

fn spawn(domain: &Domain, name: &str, log: &Log) -> Result<Child, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["component", domain.as_str(), name])
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("  {line}");
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    Ok(child)
}

fn kill(child: &mut Child, name: &str) -> std::io::Result<()> {
    println!("parent: kill -9 {name} (pid {})", child.id());
    child.kill()?; // SIGKILL, by pid
    child.wait()?;
    Ok(())
}

fn scenario(domain: &Domain, queue: &Queue) -> Result<(), Box<dyn std::error::Error>> {
    let log: Log = Arc::default();
    println!("parent: queue {QUEUE}, {QUEUE_LENGTH} bytes per priority, domain {domain}");
    let mut a = spawn(domain, "A", &log)?;
    std::thread::sleep(Duration::from_millis(200));
    let mut b = spawn(domain, "B", &log)?;
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut a, "A")?;
    let mut a2 = spawn(domain, "A2", &log)?;
    println!("parent: restarted A as A2");
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut b, "B")?;
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut a2, "A2")?;
    std::thread::sleep(Duration::from_millis(50)); // let the log readers finish

    // Take the queue over from the last (dead) owner and drain what is left.
    let mut rx = queue.receiver()?;
    let mut lines = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
        let line = format!(
            "parent: received {}{}",
            String::from_utf8_lossy(m.payload()),
            if m.redelivered() { "  REDELIVERED" } else { "" }
        );
        println!("  {line}");
        lines.push(line);
    }
    drop(rx);

    // Every component's numbers must have arrived with no gap.
    let mut got: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut redelivered = 0;
    for l in &lines {
        let Some((_, msg)) = l.split_once(": received #") else {
            continue;
        };
        redelivered += usize::from(msg.ends_with("REDELIVERED"));
        let mut words = msg.split_whitespace();
        let n: u64 = words.next().ok_or("no number")?.parse()?;
        let from = words.nth(1).ok_or("no sender")?.to_string();
        got.entry(from).or_default().insert(n);
    }
    let st = queue.status();
    println!(
        "parent: {} takeovers, {} messages received, {redelivered} redelivered, \
         {} abandoned by senders killed half way through a send",
        st.takeovers, st.received, st.abandoned
    );
    let mut complete = true;
    for (from, nums) in &got {
        let last = nums.iter().next_back().copied().unwrap_or(0);
        let missing: Vec<u64> = (0..=last).filter(|n| !nums.contains(n)).collect();
        if missing.is_empty() {
            println!("parent: from {from}: #0..#{last}, no gap");
        } else {
            complete = false;
            println!("parent: from {from}: MISSING {missing:?}");
        }
    }
    if complete {
        Ok(())
    } else {
        Err("messages were lost".into())
    }
}
