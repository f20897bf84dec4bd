//! A tokio program that waits, in one `select!`, on a baton queue, a TCP listener and a timer:
//! the queue is one more source of events in the loop, and nothing blocks a runtime thread.
//!
//! A helper thread sends five messages to the queue and connects to the listener twice; the
//! loop prints what comes, from whichever source, and stops once it has seen all of it.
//!
//!     cargo run --release --example tokio_select

use baton::{Attributes, Domain, Queue};
use baton_tokio::AsyncReceiver;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let domain = Domain::new(&format!("example-tokio-{}", std::process::id()))?;
    let q = Queue::create(&domain, "events", &Attributes::default())?;
    let mut rx = AsyncReceiver::new(q.receiver()?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));

    let tx = q.sender();
    let helper = std::thread::spawn(move || -> std::io::Result<()> {
        for i in 1..=5 {
            tx.send(format!("message {i}").as_bytes())
                .map_err(std::io::Error::other)?;
            std::thread::sleep(Duration::from_millis(15));
            if i % 2 == 0 {
                drop(std::net::TcpStream::connect(addr)?);
            }
        }
        Ok(())
    });

    let (mut messages, mut connections, mut ticks) = (0, 0, 0);
    while messages < 5 || connections < 2 {
        tokio::select! {
            m = rx.recv() => {
                let m = m?;
                messages += 1;
                println!("queue: {}", String::from_utf8_lossy(m.payload()));
            }
            conn = listener.accept() => {
                connections += 1;
                println!("tcp: a connection from {}", conn?.1);
            }
            _ = tick.tick() => ticks += 1,
        }
    }
    helper.join().expect("helper")?;
    println!("{messages} messages, {connections} connections and {ticks} ticks, in one loop");
    drop(rx);
    Queue::remove(&domain, "events")?;
    Ok(())
}
