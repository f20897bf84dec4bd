//! A steady stream from one process to an awake receiver in another: how many messages per
//! second, and (run under `strace -f -c`) how many system calls per message.
//!
//! `cargo run --release --example steady_stream -- [MESSAGES] [SIZE]` (default 1,000,000 x 64 B)
//!
//! The receiver uses the default blocking `recv`; while messages keep coming it never needs to
//! sleep, and the sender never needs to wake it: neither makes a system call per message.
//! docs/performance.md shows the `strace -f -c` counts.

use baton::{Attributes, Domain, Queue};
use std::process::Command;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("receive") {
        return receive(&args[2], args[3].parse()?);
    }
    let count: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let size: usize = args.get(2).map_or(Ok(64), |a| a.parse())?;
    let domain = Domain::new(&format!("steady-{}", std::process::id()))?;
    let attrs = Attributes {
        capacity: [1 << 20; 4],
        max_message: size.max(8) as u32,
        ..Default::default()
    };
    let queue = Queue::create(&domain, "stream", &attrs)?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["receive", domain.as_str(), &count.to_string()])
            .spawn()?;
        // Start when the receiver owns the queue.
        while queue.status().owner_pid.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tx = queue.sender();
        let mut payload = vec![0u8; size.max(8)];
        let start = Instant::now();
        for i in 0..count {
            payload[..8].copy_from_slice(&i.to_le_bytes());
            tx.send(&payload)?;
        }
        let status = child.wait()?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("receiver failed: {status}").into());
        }
        println!(
            "{count} messages of {} bytes in {secs:.3} s: {:.0} messages/s",
            payload.len(),
            count as f64 / secs
        );
        Ok(())
    })();
    Queue::remove(&domain, "stream")?;
    result
}

fn receive(domain: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::open(&Domain::new(domain)?, "stream")?;
    let mut rx = queue.receiver()?;
    for i in 0..count {
        let m = rx.recv()?;
        let seq = u64::from_le_bytes(m.payload()[..8].try_into()?);
        if seq != i {
            return Err(format!("expected #{i}, got #{seq}").into());
        }
    }
    Ok(())
}
