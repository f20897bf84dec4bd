//! A Tuxedo-style server pool (MSSQ): three server processes share one request queue; a client
//! sends numbered requests, each naming its own reply queue (Tuxedo's RQADDR / REPLYQ). One
//! server is killed with SIGKILL in the middle of a request and restarted; the request it had
//! taken comes again, flagged redelivered, to another server.
//!
//! `cargo run --release --example server_pool`
//!
//! Each server takes a request, "works" on it for 20 ms, replies `<n> <server>` (with
//! `redelivered` when the request had been taken before), and only then acknowledges it. The
//! client checks that every request was answered, that a request answered twice was answered
//! the second time as redelivered, and that the killed server's request was answered by
//! another server, flagged. Exit status 1 if not.

use baton::{Attributes, Domain, Queue};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const REQUESTS: &str = "requests";
const REPLIES: &str = "client-replies";
const N: u32 = 60;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        return server(&args[2], &args[3]);
    }
    let domain = Domain::new(&format!("server-pool-{}", std::process::id()))?;
    let shared = Attributes {
        shared: true,
        max_message: 128,
        ..Default::default()
    };
    let requests = Queue::create(&domain, REQUESTS, &shared)?;
    let replies = Queue::create(&domain, REPLIES, &Attributes::default())?;
    let result = client(&domain, &requests, &replies);
    Queue::remove(&domain, REQUESTS)?;
    Queue::remove(&domain, REPLIES)?;
    result
}

/// One server: takes requests from the shared queue, works, replies on the queue the request
/// names, then acknowledges.
fn server(domain: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let domain = Domain::new(domain)?;
    let requests = Queue::open(&domain, REQUESTS)?;
    let mut pool = requests.consumer()?;
    let mut reply_queues: BTreeMap<String, Queue> = BTreeMap::new();
    loop {
        let request = pool.recv()?;
        let text = String::from_utf8_lossy(request.payload()).into_owned();
        let (n, reply_to) = text
            .split_once(' ')
            .ok_or("a request is `<n> <reply queue>`")?;
        std::thread::sleep(Duration::from_millis(20)); // the work
        let q = match reply_queues.get(reply_to) {
            Some(q) => q,
            None => reply_queues
                .entry(reply_to.to_string())
                .or_insert(Queue::open(&domain, reply_to)?),
        };
        let flag = if request.redelivered() {
            " redelivered"
        } else {
            ""
        };
        q.sender().send(format!("{n} {name}{flag}").as_bytes())?;
        request.ack()?; // only now does the request leave the queue
    }
}

fn spawn_server(domain: &Domain, name: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["server", domain.as_str(), name])
        .spawn()
}

fn client(
    domain: &Domain,
    requests: &Queue,
    replies: &Queue,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut servers: Vec<(String, Child)> = ["s1", "s2", "s3"]
        .iter()
        .map(|&n| Ok((n.to_string(), spawn_server(domain, n)?)))
        .collect::<std::io::Result<_>>()?;
    let tx = requests.sender();
    for n in 0..N {
        tx.send(format!("{n} {REPLIES}").as_bytes())?;
    }
    println!("client: sent {N} requests to {REQUESTS} (3 servers share it)");

    // Kill s2 while it works on a request: wait until it has one in flight.
    let victim = servers[1].1.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !requests
        .status()
        .attached
        .iter()
        .any(|a| a.pid == victim && a.in_flight > 0)
    {
        if Instant::now() > deadline {
            return Err("s2 never took a request".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // SAFETY: kill(2) of our own child, by pid; no memory is touched.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    servers[1].1.wait()?;
    println!("client: killed s2 (pid {victim}) in the middle of a request; restarting it as s2b");
    servers[1] = ("s2b".to_string(), spawn_server(domain, "s2b")?);

    let mut rx = replies.receiver()?;
    let mut answers: BTreeMap<u32, Vec<(String, bool)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.len() < N as usize || requests.status().lanes.iter().any(|l| l.messages > 0) {
        if Instant::now() > deadline {
            break;
        }
        let Ok(reply) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let text = String::from_utf8_lossy(reply.payload()).into_owned();
        let mut f = text.split(' ');
        let n: u32 = f.next().unwrap_or("").parse()?;
        let server = f.next().unwrap_or("?").to_string();
        let again = f.next() == Some("redelivered");
        if again {
            println!("client: request {n} answered by {server}, REDELIVERED");
        }
        answers.entry(n).or_default().push((server, again));
    }
    for (_, child) in &mut servers {
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait()?;
    }

    let missing: Vec<u32> = (0..N).filter(|n| !answers.contains_key(n)).collect();
    let unflagged_twice: Vec<u32> = answers
        .iter()
        .filter(|(_, a)| a.len() > 1 && !a[1..].iter().all(|(_, again)| *again))
        .map(|(n, _)| *n)
        .collect();
    let redelivered: Vec<u32> = answers
        .iter()
        .filter(|(_, a)| a.iter().any(|(_, again)| *again))
        .map(|(n, _)| *n)
        .collect();
    let mut per_server: BTreeMap<&str, u32> = BTreeMap::new();
    for a in answers.values().flatten() {
        *per_server.entry(a.0.as_str()).or_default() += 1;
    }
    println!(
        "client: {} of {N} requests answered; per server {per_server:?}",
        answers.len()
    );
    println!("client: redelivered after the kill: {redelivered:?}");
    if !missing.is_empty() || !unflagged_twice.is_empty() || redelivered.len() != 1 {
        println!("FAILED: missing {missing:?}, answered twice unflagged {unflagged_twice:?}");
        std::process::exit(1);
    }
    let n = redelivered[0];
    println!(
        "client: every request answered; request {n} (s2's when it was killed) answered {} time(s), the last flagged",
        answers[&n].len()
    );
    Ok(())
}
