//! Arbitrary bytes written over a live queue's segment (header page, lane words, payloads),
//! then every operation: open, status, list, send, receive (after a takeover, so recovery runs
//! over the damage too), gc, remove. Everything must return a value or an error: a panic,
//! a hang or a fault is a finding.
//!
//! The input is a list of patches: 4 bytes of offset (modulo the segment size, with the first
//! byte choosing the region) followed by 1 to 8 bytes of data, repeated.
#![no_main]

use baton::{Attributes, Domain, Queue};
use libfuzzer_sys::fuzz_target;
use std::os::unix::fs::FileExt;

/// Bytes before the first lane (`segment::HEADER_SIZE`).
const HEADER: u64 = 32768;

fn domain() -> Domain {
    Domain::new(&format!("fuzz-{}", std::process::id())).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let d = domain();
    let _ = Queue::remove(&d, "q");
    let attrs = Attributes {
        capacity: [4096, 1024, 1024, 4096],
        max_message: 200,
        ..Default::default()
    };
    let q = Queue::create(&d, "q", &attrs).unwrap();
    for i in 0..6u8 {
        let _ = q
            .sender()
            .with_priority(i % 4)
            .unwrap()
            .try_send(vec![i; 20 * i as usize]);
    }
    let size = q.status().size;
    let path = q.status().files[0].clone();
    // An owner thread that ends holding the lock: the kernel marks it owner-dead, so the next
    // receiver runs recovery. (Only possible in-process through raw pthread calls.)
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let mutex = unsafe { (map as *mut u8).add(1024) } as *mut libc::pthread_mutex_t;
        let m = mutex as usize;
        std::thread::spawn(move || unsafe {
            libc::pthread_mutex_lock(m as *mut libc::pthread_mutex_t);
        })
        .join()
        .unwrap();
        unsafe { libc::munmap(map, 4096) };
    }
    drop(q);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut rest = data;
    while rest.len() >= 5 {
        let at = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let at = match rest[0] % 3 {
            0 => at % HEADER,                   // header
            1 => HEADER + at % (size - HEADER), // lanes
            _ => at % size,
        };
        let len = 1 + (rest[4] as usize % 8).min(rest.len() - 5);
        let bytes = &rest[5..5 + len.min(rest.len() - 5)];
        let _ = file.write_all_at(bytes, at);
        rest = &rest[5 + bytes.len()..];
    }
    if let Ok(q) = Queue::open(&d, "q") {
        let _ = q.status();
        let _ = Queue::list(&d);
        let _ = q.sender().with_priority(1).unwrap().try_send(&b"fuzz"[..]);
        if let Ok(mut rx) = q.receiver() {
            for _ in 0..10 {
                match rx.try_recv() {
                    Ok(m) => drop(m),
                    Err(_) => break,
                }
            }
            let _ = rx.recv_timeout(std::time::Duration::from_millis(1));
        }
        let _ = q.status();
    }
    let _ = Queue::gc(&d);
    let _ = Queue::remove(&d, "q");
    let _ = std::fs::remove_file(&path);
});
