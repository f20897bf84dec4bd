//! Many threads and processes through one queue, checked by sequence numbers: messages that
//! wrap the ring behind padding, and a bounded-time run of sender processes and threads.

mod common;
use baton::{Attributes, Queue};
use common::{Cli, TestDomain};
use std::time::Duration;

fn hammer(size: usize, senders: u64, per: u64, in_place: bool) {
    let t = TestDomain::new("stress");
    let attrs = Attributes {
        capacity: [64 * 1024; 4],
        max_message: 4096,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    std::thread::scope(|s| {
        for id in 0..senders {
            let tx = q.sender();
            s.spawn(move || {
                let mut buf = vec![0u8; size];
                for i in 0..per {
                    buf[..8].copy_from_slice(&(id << 48 | i).to_le_bytes());
                    tx.send_timeout(&buf, Duration::from_secs(20)).unwrap();
                }
            });
        }
        let mut rx = q.receiver().unwrap();
        let mut next = vec![0u64; senders as usize];
        for n in 0..senders * per {
            let seq = if in_place {
                let m = rx.recv_in_place_timeout(Duration::from_secs(20)).unwrap();
                u64::from_le_bytes(m.payload()[..8].try_into().unwrap())
            } else {
                let m = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                u64::from_le_bytes(m.payload()[..8].try_into().unwrap())
            };
            let (id, i) = ((seq >> 48) as usize, seq & ((1 << 48) - 1));
            assert_eq!(i, next[id], "message {n}: sender {id} out of order");
            next[id] += 1;
        }
    });
}

#[test]
fn four_threads_with_wrapping_4k_messages() {
    hammer(4096, 4, 20_000, false);
}

#[test]
fn four_threads_with_wrapping_4k_messages_read_in_place() {
    hammer(4096, 4, 20_000, true);
}

#[test]
fn four_threads_with_odd_sized_messages() {
    hammer(1000, 4, 50_000, false);
}

/// Three sender processes (the `baton` CLI, fed without pause) and two sender threads of this
/// process hammer one queue for two seconds; every message arrives once, in order per sender.
#[test]
fn processes_and_threads_for_two_seconds() {
    use std::io::Write;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = TestDomain::new("stress-procs");
    let attrs = Attributes {
        capacity: [16 * 1024; 4],
        max_message: 64,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut children = Vec::new();
    let mut feeders = Vec::new();
    for s in 0..3u64 {
        let mut child = common::Child::spawn(t.baton().args(["send", "q"]).stdin(Stdio::piped()));
        let mut stdin = child.0.stdin.take().unwrap();
        let stop = stop.clone();
        feeders.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: String = (n..n + 100).map(|i| format!("{s} {i}\n")).collect();
                if stdin.write_all(batch.as_bytes()).is_err() {
                    break;
                }
                n += 100;
            }
            n
        }));
        children.push(child);
    }
    for s in 3..5u64 {
        let tx = q.sender();
        let stop = stop.clone();
        feeders.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tx.send_timeout(format!("{s} {n}").as_bytes(), Duration::from_secs(20))
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut rx = q.receiver().unwrap();
    let mut next = [0u64; 5];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut stopped = false;
    let mut sent: Option<Vec<u64>> = None;
    loop {
        if !stopped && std::time::Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            stopped = true;
        }
        // Once the feeders have stopped and every sender process has sent all it was given
        // and exited, what is left in the queue is the last of it.
        let exited: Vec<_> = children
            .iter_mut()
            .map(|c| c.0.try_wait().unwrap())
            .collect();
        if let Some(st) = exited.iter().flatten().find(|st| !st.success()) {
            panic!("a sender process failed: {st}");
        }
        if stopped
            && sent.is_none()
            && feeders.iter().all(|f| f.is_finished())
            && exited.iter().all(Option::is_some)
        {
            sent = Some(feeders.drain(..).map(|f| f.join().unwrap()).collect());
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => {
                let text = std::str::from_utf8(m.payload()).unwrap().to_string();
                let (s, i) = text.split_once(' ').unwrap();
                let (s, i): (usize, u64) = (s.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[s], "sender {s}: loss, duplicate or reorder");
                next[s] += 1;
            }
            Err(baton::RecvError::Timeout) if sent.is_some() => break,
            Err(baton::RecvError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next.to_vec(), sent.unwrap(), "everything sent arrived");
}
