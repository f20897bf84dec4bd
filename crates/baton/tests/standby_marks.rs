//! Standby marks (`Queue::standby_mark`): a forked child's copy counts for nothing and does
//! not end its parent's, a wait begun under a mark stays counted after the mark goes, a mark
//! held by the owner itself does not keep a retention-0 queue, and a handle counts once.

mod common;
use baton::{Attributes, Queue};
use common::{eventually, TestDomain};
use nix::unistd::{fork, ForkResult, Pid};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(10);

fn retention0(t: &TestDomain) -> Queue {
    let attrs = Attributes {
        retention: Some(Duration::ZERO),
        ..Default::default()
    };
    Queue::create(&t.domain, "q", &attrs).unwrap()
}

/// Whether a thread waits for the owner lock of queue `q` (glibc's `FUTEX_WAITERS` bit in the
/// robust mutex's lock word, the first word of the shared header at offset 1024; a waiter
/// sets it before it goes to sleep in the kernel).
fn someone_waits_to_own(t: &TestDomain) -> bool {
    use std::os::unix::fs::FileExt;
    let mut word = [0u8; 4];
    std::fs::File::open(t.file("q"))
        .and_then(|f| f.read_exact_at(&mut word, 1024))
        .is_ok_and(|()| u32::from_ne_bytes(word) & 0x8000_0000 != 0)
}

/// Waits for a forked child, at most `LONG` (then kills it by pid); its exit code.
fn reap(child: Pid) -> Option<i32> {
    common::reap(child, LONG)
}

/// A forked child inherits a copy of its parent's `StandbyMark`. Dropping that copy runs
/// `unregister_standby` on the PARENT's slot (shared memory), so the parent's live mark no
/// longer counts, and the parent's retention-0 queue is removed, with its message, when its
/// owner closes while the parent is still (marked) coming to take it.
#[test]
fn a_forked_childs_copy_of_a_mark_does_not_unregister_the_parents_mark() {
    let t = TestDomain::new("r11-forkmark");
    let q = retention0(&t);
    q.sender().send(b"kept for the parent").unwrap();
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let mark = q.standby_mark().unwrap();
    assert_eq!(q.status().standbys, 1);
    // SAFETY: the child only drops its copy of the mark and `_exit`s.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(mark); // the child's copy (e.g. a forked worker leaving the scope that held it)
                        // SAFETY: ends the child without running the parent's other destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(reap(child), Some(0));
    assert_eq!(
        q.status().standbys,
        1,
        "the parent's mark lives: it must still count (the child's copy unregistered it)"
    );
    drop(rx); // a clean close of a retention-0 queue, with the parent's mark alive
    assert!(
        !q.status().removed,
        "the queue (and its message) must be kept for the parent's marked standby"
    );
    let mut rx = q.standby(Some(LONG)).unwrap();
    assert_eq!(rx.try_recv().unwrap().payload(), b"kept for the parent");
    drop(mark);
}

/// A forked child inherits the parent's process-local `standby_marks` count. Its own standby
/// waits then skip registration (`owner::acquire` sees `standby_marks > 0`), although the child
/// holds no mark and no slot: it waits uncounted. Once the parent's mark goes, the owner's close
/// removes the retention-0 queue under the waiting child, which gets `Removed`.
#[test]
fn a_forked_childs_standby_is_counted_even_if_its_parent_held_a_mark_at_fork() {
    let t = TestDomain::new("r11-forkwait");
    let q = retention0(&t);
    q.sender().send(b"for the child").unwrap();
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let mark = q.standby_mark().unwrap();
    // SAFETY: the child only uses baton's API and `_exit`s.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = match q.standby(Some(LONG)) {
                Ok(mut rx) => match rx.try_recv() {
                    Ok(m) if m.payload() == b"for the child" => 0,
                    Ok(_) => 4,
                    Err(_) => 3,
                },
                Err(baton::OwnError::Removed { .. }) => 2,
                Err(_) => 1,
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    let counted = eventually(LONG, || q.status().standbys == 2);
    drop(mark);
    drop(rx); // the child waits: the queue must be kept for it
    let code = reap(child);
    assert!(
        counted,
        "the child's standby wait was never counted (standbys stayed 1)"
    );
    assert_eq!(
        code,
        Some(0),
        "the child must own the kept queue and get its message (2: it was removed under it)"
    );
}

/// The mark suppresses the registration of a wait that STARTS while the mark lives, but the
/// wait may outlive the mark: another thread drops it (or a thread that got ownership under
/// the mark drops it, as `baton recv --standby` does when `own()` returns). The waiting thread
/// is then counted by nobody, and a retention-0 close removes the queue under it.
#[test]
fn a_standby_wait_started_under_a_mark_stays_counted_after_the_mark_goes() {
    let t = TestDomain::new("r11-markrace");
    let q = retention0(&t);
    q.sender().send(b"for the waiter").unwrap();
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let mark = q.standby_mark().unwrap();
    assert!(!someone_waits_to_own(&t));
    let q2 = q.clone();
    let waiter = std::thread::spawn(move || {
        q2.standby(Some(LONG))
            .map(|mut rx| rx.try_recv().map(|m| m.payload().to_vec()))
    });
    // The waiter's keeper has passed its registration decision and blocks in
    // pthread_mutex_timedlock (nothing baton counts shows it: that is the bug).
    assert!(eventually(LONG, || someone_waits_to_own(&t)));
    drop(mark);
    assert_eq!(
        q.status().standbys,
        1,
        "a thread of this process still waits to own the queue: it must count"
    );
    drop(rx);
    let got = waiter.join().unwrap();
    assert!(
        matches!(&got, Ok(Ok(p)) if p == b"for the waiter"),
        "the waiter must own the kept queue, got {got:?}"
    );
}

/// A mark that outlives the receiver it helped take (the natural scoping: `let _m = mark; let rx
/// = standby(..)?;` drops `rx` first) is counted by the close of that very receiver: the
/// retention-0 queue is not removed at its owner's clean close, and is left behind unowned (only
/// a later gc/open removes it). The process is the owner, not a standby coming to take it.
#[test]
fn a_mark_held_by_the_owner_itself_does_not_keep_a_retention_zero_queue_at_close() {
    let t = TestDomain::new("r11-ownmark");
    let q = retention0(&t);
    {
        let _mark = q.standby_mark().unwrap();
        let rx = q.standby(Some(LONG)).unwrap(); // unowned: taken at once
        drop(rx); // clean close by the owner; its own mark is the only "standby"
    }
    assert!(
        q.status().removed,
        "retention 0: removed as its owner closes (left: {:?}, expired: {})",
        t.leftovers(),
        Queue::inspect(&t.domain, "q")
            .map(|s| s.expired)
            .unwrap_or(false)
    );
}

/// A handle (one mapping of the queue) counts once, however many marks and waits go through
/// it; two handles of one queue in one process are two mappings, each with its own sender
/// slot, and count once each (documented on `Queue::standby_mark`).
#[test]
fn marks_and_waits_through_one_handle_count_once() {
    let t = TestDomain::new("r11-onehandle");
    let q = retention0(&t);
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let first = q.standby_mark().unwrap();
    let second = q.standby_mark().unwrap();
    assert!(!someone_waits_to_own(&t));
    let q2 = q.clone();
    let waiter = std::thread::spawn(move || q2.standby(Some(Duration::from_secs(2))).is_ok());
    assert!(eventually(LONG, || someone_waits_to_own(&t))); // the wait has started
    let st = q.status();
    drop(first);
    drop(second);
    assert_eq!(q.status().standbys, 1, "the wait still counts");
    drop(rx);
    assert!(
        waiter.join().unwrap(),
        "the waiting thread took the queue over"
    );
    assert_eq!(
        st.standbys, 1,
        "two marks and a wait, one handle: {:?}",
        st.attached
    );
    // (The new owner closed the retention-0 queue when the thread ended: it is gone.)
    let r = Queue::create(&t.domain, "r", &Attributes::default()).unwrap();
    let other = Queue::open(&t.domain, "r").unwrap();
    let _m1 = r.standby_mark().unwrap();
    let _m2 = other.standby_mark().unwrap();
    assert_eq!(r.status().standbys, 2, "two handles, two mappings");
}

/// A forked child that makes its own mark and then drops its copy of the parent's keeps its
/// own counted, and the queue is kept for it.
#[test]
fn a_forked_childs_own_mark_survives_dropping_the_inherited_copy() {
    let t = TestDomain::new("r12-forkmark2");
    let attrs = Attributes {
        retention: Some(Duration::ZERO),
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    q.sender().send(b"for the child").unwrap();
    let owner_handle = Queue::open(&t.domain, "q").unwrap();
    let rx = owner_handle.receiver().unwrap();
    let inherited = q.standby_mark().unwrap();
    let (mut ready, mut go) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain pipe(2) calls on valid arrays.
    unsafe {
        assert_eq!(libc::pipe(ready.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(go.as_mut_ptr()), 0);
    }
    // SAFETY: the child uses baton's API, pipes, and `_exit`s.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let own = q.standby_mark().unwrap(); // the child's own mark: registers its slot
            drop(inherited); // the parent's copy: must end nothing
            let me = std::process::id();
            let counted = q
                .status()
                .attached
                .iter()
                .any(|a| a.pid == me && a.standbys == 1);
            // SAFETY: valid fds and buffers.
            unsafe {
                libc::write(ready[1], [counted as u8].as_ptr().cast(), 1);
                let mut b = 0u8;
                libc::read(go[0], (&mut b as *mut u8).cast(), 1); // hold `own` until told
            }
            drop(own);
            // SAFETY: ends the child without the parent's other destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let mut counted = 0u8;
    // SAFETY: valid fd and buffer.
    let n = unsafe { libc::read(ready[0], (&mut counted as *mut u8).cast(), 1) };
    assert_eq!(n, 1);
    drop(inherited); // the parent's own mark goes: only the child's mark keeps the queue now
    drop(rx); // clean close of a retention-0 queue while the child's mark lives
    let removed = q.status().removed;
    // SAFETY: valid fd and buffer.
    unsafe { libc::write(go[1], [1u8].as_ptr().cast(), 1) };
    assert_eq!(common::reap(child, LONG), Some(0));
    assert_eq!(
        counted, 1,
        "the child's own mark must stay counted after it drops the inherited copy"
    );
    assert!(!removed, "the queue must be kept for the child's live mark");
}
