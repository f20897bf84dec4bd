//! baton.h from Rust (the crate is also an rlib): a `baton_recv` blocked without a message
//! sleeps (it does not wake to poll for a close), and a close from another thread ends it at
//! once.

#[path = "../../baton/tests/common/mod.rs"]
mod common;
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use SaMsg::native::*;

/// The voluntary context switches of thread `tid` of this process so far.
fn switches(tid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_blocked_receive_sleeps_until_its_receiver_is_closed() {
    let t = common::TestDomain::new("native-wait");
    let domain = CString::new(t.name()).unwrap();
    let name = CString::new("q").unwrap();
    let mut q = 0;
    let mut rx = 0;
    // SAFETY: valid strings and out pointers.
    unsafe {
        assert_eq!(
            baton_queue_create(domain.as_ptr(), name.as_ptr(), std::ptr::null(), &mut q),
            BatonStatus::BATON_OK
        );
        assert_eq!(baton_receiver_open(q, 0, &mut rx), BatonStatus::BATON_OK);
    }
    let tid = Arc::new(AtomicI32::new(0));
    let waiter = {
        let tid = tid.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() }, Ordering::Release);
            let mut buf = [0u8; 16];
            let mut len = 0usize;
            // SAFETY: a live buffer of 16 bytes and a live length.
            let status = unsafe {
                baton_recv(
                    rx,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut len,
                    std::ptr::null_mut(),
                    BATON_FOREVER,
                )
            };
            (status, Instant::now())
        })
    };
    assert!(common::eventually(Duration::from_secs(5), || tid
        .load(Ordering::Acquire)
        != 0));
    let tid = tid.load(Ordering::Acquire);
    std::thread::sleep(Duration::from_millis(200)); // past its spin, asleep
    let before = switches(tid);
    std::thread::sleep(Duration::from_secs(1));
    let woke = switches(tid) - before;
    // Polling every 50 ms (as it once did) is 20 a second; asleep, it wakes for nothing.
    assert!(woke < 5, "a blocked receive woke {woke} times in a second");
    assert_eq!(baton_receiver_close(rx), BatonStatus::BATON_OK);
    let closed = Instant::now();
    let (status, returned) = waiter.join().unwrap();
    assert_eq!(status, BatonStatus::BATON_BAD_HANDLE);
    assert!(returned.duration_since(closed) < Duration::from_secs(2));
    // SAFETY: valid strings.
    unsafe {
        assert_eq!(baton_queue_close(q), BatonStatus::BATON_OK);
        assert_eq!(
            baton_queue_remove(domain.as_ptr(), name.as_ptr()),
            BatonStatus::BATON_OK
        );
    }
}
