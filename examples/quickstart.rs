//! Quickstart: send, receive and take over, across real processes.
//!
//! `cargo run --release --example quickstart`
//!
//! 1. The parent creates a queue and sends four messages at priorities 3, 2, 1, 0.
//! 2. Receiver A, a child process, takes ownership and receives them, highest priority first.
//! 3. The parent kills A with SIGKILL. Messages sent while nobody owns the queue are kept.
//! 4. Receiver B, another child process, takes the queue over from the dead owner (the kernel
//!    released A's robust lock) and receives the messages that waited.

use baton::{Attributes, Domain, Queue};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("receive") {
        return receive(&args[2], &args[3], args[4].parse()?);
    }

    let domain = Domain::new(&format!("quickstart-{}", std::process::id()))?;
    let queue = Queue::create(&domain, "demo", &Attributes::default())?;
    let result = demo(&domain, &queue);
    Queue::remove(&domain, "demo")?;
    result
}

fn demo(domain: &Domain, queue: &Queue) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "parent  pid {}: created queue 'demo' in domain '{domain}'",
        std::process::id()
    );
    for p in [3u8, 2, 1, 0] {
        queue
            .sender()
            .with_priority(p)?
            .send(format!("hello at priority {p}").as_bytes())?;
    }
    println!("parent: sent 4 messages at priorities 3, 2, 1, 0");

    let mut a = spawn_receiver(domain, "A", 1000)?;
    let took_four = wait_for(
        || queue.status().received == 4,
        "receiver A to take the first 4 messages",
    );
    a.kill()?; // SIGKILL (by pid): A dies holding the owner lock
    a.wait()?;
    took_four?;
    println!("parent: killed receiver A (pid {}) with SIGKILL", a.id());

    for i in 1..=3 {
        queue
            .sender()
            .with_priority(1)?
            .send(format!("sent while nobody owns the queue #{i}").as_bytes())?;
    }
    let st = queue.status();
    println!(
        "parent: sent 3 more; waiting: {}, owner: {:?}",
        st.sent - st.received,
        st.owner_pid
    );

    let mut b = spawn_receiver(domain, "B", 3)?;
    let status = b.wait()?;
    let st = queue.status();
    println!(
        "parent: receiver B done ({status}); sent {}, received {}, ownership epoch {}, takeovers {}",
        st.sent, st.received, st.epoch, st.takeovers
    );
    if st.received != st.sent {
        return Err("some messages were not received".into());
    }
    Ok(())
}

fn spawn_receiver(domain: &Domain, label: &str, count: u32) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["receive", domain.as_str(), label, &count.to_string()])
        .spawn()
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The child: own the queue and print what arrives.
fn receive(domain: &str, label: &str, count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::open(&Domain::new(domain)?, "demo")?;
    let mut rx = queue.receiver()?;
    let how = if rx.took_over() {
        "took the queue over from a dead owner"
    } else {
        "owns the queue"
    };
    println!(
        "receiver {label} pid {}: {how} (epoch {})",
        std::process::id(),
        rx.epoch()
    );
    for _ in 0..count {
        let m = rx.recv_timeout(Duration::from_secs(10))?;
        println!(
            "receiver {label}: priority {} from pid {}: {}",
            m.priority(),
            m.sender_pid(),
            String::from_utf8_lossy(m.payload())
        );
    }
    Ok(())
}
