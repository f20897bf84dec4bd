//! A peer that can open the queue for writing may overwrite the type word of its robust
//! mutexes (the owner lock's, a sender slot's). glibc reads it to choose how to lock: with the
//! lock-elision bit set, `pthread_mutex_trylock` faulted on a CPU without it (found by
//! fuzzing). baton checks the word before any pthread call: a clear error, never a fault.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;
use baton::{Attributes, LockDamage, OwnError, Queue};
use common::TestDomain;
use std::os::unix::fs::FileExt;

/// The owner mutex is the first word of the shared header (offset 1024); glibc's `__kind`
/// lies 16 bytes into a `pthread_mutex_t`.
const OWNER_KIND: u64 = 1024 + 16;
/// glibc's `PTHREAD_MUTEX_ELISION_NP`.
const ELISION: u32 = 256;

#[test]
fn an_owner_lock_whose_type_word_was_overwritten_is_refused_with_a_clear_error() {
    let t = TestDomain::new("scribbled-kind");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().send(b"kept").unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.file("q"))
        .unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, OWNER_KIND).unwrap();
    let kind = u32::from_ne_bytes(b);
    f.write_all_at(&(kind | ELISION).to_ne_bytes(), OWNER_KIND)
        .unwrap();
    match q.receiver() {
        Err(OwnError::Corrupt {
            reason: LockDamage::KindChanged { found, expected },
            ..
        }) => assert_eq!((found, expected), (kind | ELISION, kind)),
        other => panic!("expected KindChanged, got {other:?}"),
    }
    // Put back, the queue works again, with its message.
    f.write_all_at(&kind.to_ne_bytes(), OWNER_KIND).unwrap();
    assert_eq!(q.receiver().unwrap().recv().unwrap().payload(), b"kept");
}
