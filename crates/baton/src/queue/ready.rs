//! A pollable file descriptor for a handle that otherwise sleeps on a futex in shared memory:
//! an `eventfd` that a helper thread makes readable when the handle has something for its user
//! (a message to receive), so that it can sit in `poll`, `epoll`, `select`, or tokio's reactor
//! with sockets and timers.
//!
//! The protocol, for one handle and its user:
//! - **Armed**: the helper thread sleeps on the queue's event, as a blocking receive would
//!   (the same wake-ups, the death watch included), until the handle is ready; then it makes
//!   the fd readable and is **signaled**.
//! - The user receives without blocking (`try_recv`) until a receive finds nothing: that
//!   receive clears the fd and arms the thread again. So the fd is readable from the moment
//!   something is ready until a receive finds nothing: level-triggered for `poll`, and one
//!   edge per "nothing, then something" for `EPOLLET` (drain until empty, as with a socket).
//! - While messages keep coming and the user keeps finding them, nobody sleeps and no
//!   syscall is made: not by senders (no sleeper announced), not by the user, not by the
//!   thread. Only a receive that finds nothing costs a `read` of the fd and a wake of the
//!   thread.
//!
//! A readable fd can be a false alarm (the message was taken by a receive that did not find
//! the queue empty after it, or the helper woke for a dead sender's claim that was abandoned):
//! the receive then finds nothing and re-arms. A message is never left waiting with the fd
//! not readable: an armed thread looks before it sleeps, and the sleep is woken by every send
//! after that look.

use crate::recovery::{Attachment, DeathWatch};
use crate::sys::liveness::fork_generation;
use baton_ring::wake::Event as WakeEvent;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Which event of a queue the thread sleeps on.
pub(crate) type EventOf = Arc<dyn for<'a> Fn(&'a Attachment) -> &'a WakeEvent + Send + Sync>;

/// What a helper thread watches: an event in shared memory that a peer may take away by
/// shrinking the file (a queue's segment, a group's file).
pub(crate) trait Watched: Send + Sync + 'static {
    /// Whether the memory is all there; nothing else is touched once it says no.
    fn intact(&self) -> bool;
    /// The event the thread sleeps on (touched only while [`Watched::intact`]).
    fn event(&self) -> &WakeEvent;
    /// Sleeps on the event until `ready()`, `deadline`, or the memory is found gone (`None`).
    fn sleep(&self, deadline: std::time::Instant, ready: &mut dyn FnMut() -> bool) -> Option<bool>;
}

/// An event of a queue, slept on with the queue's death watch (a sender that dies in a claim
/// wakes the sleeper, as it would a blocking receive).
struct OnQueue {
    seg: Arc<Attachment>,
    event: EventOf,
}

impl Watched for OnQueue {
    fn intact(&self) -> bool {
        self.seg.check_size().is_ok()
    }

    fn event(&self) -> &WakeEvent {
        (self.event)(&self.seg)
    }

    fn sleep(&self, deadline: std::time::Instant, ready: &mut dyn FnMut() -> bool) -> Option<bool> {
        self.event().wait_until_mapped(
            &DeathWatch(&self.seg),
            Some(deadline),
            || self.intact(),
            ready,
        )
    }
}

/// The longest the thread sleeps before it looks at the segment's size again.
const SLICE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The thread looks and sleeps until the handle is ready.
    Armed,
    /// The fd is readable; the thread waits to be armed.
    Signaled,
    /// The handle is going: the thread ends.
    Stop,
}

struct Control {
    state: Mutex<State>,
    cv: Condvar,
    /// Set with `State::Stop`, read by the thread's sleep on the queue's event.
    stop: AtomicBool,
}

/// An fd made readable by a helper thread when a predicate on a queue holds (see the module).
pub(crate) struct ReadyFd {
    fd: OwnedFd,
    ctl: Arc<Control>,
    watched: Arc<dyn Watched>,
    thread: Option<JoinHandle<()>>,
    generation: u64,
}

impl std::fmt::Debug for ReadyFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyFd")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl ReadyFd {
    /// Starts the helper thread, armed: it sleeps on `event(seg)` until `ready()` says the
    /// handle has something (or the segment is found damaged: also readable).
    pub(crate) fn start(
        seg: Arc<Attachment>,
        event: EventOf,
        ready: impl FnMut() -> bool + Send + 'static,
    ) -> std::io::Result<ReadyFd> {
        ReadyFd::watch(Arc::new(OnQueue { seg, event }), ready)
    }

    /// Starts the helper thread, armed: it sleeps on `watched`'s event until `ready()` says the
    /// handle has something (or the memory is found gone: also readable).
    pub(crate) fn watch(
        watched: Arc<dyn Watched>,
        mut ready: impl FnMut() -> bool + Send + 'static,
    ) -> std::io::Result<ReadyFd> {
        // SAFETY: eventfd with valid flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `eventfd` just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ctl = Arc::new(Control {
            state: Mutex::new(State::Armed),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let (ctl, watched) = (ctl.clone(), watched.clone());
            let writer = fd.try_clone()?;
            std::thread::Builder::new()
                .name("baton-ready".into())
                .stack_size(128 * 1024)
                .spawn(move || {
                    let stopped = || ctl.stop.load(Ordering::Acquire);
                    loop {
                        {
                            let mut st = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
                            while *st == State::Signaled {
                                st = ctl.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                            }
                            if *st == State::Stop {
                                return;
                            }
                        }
                        // Armed: look, and sleep until something is there (or the segment
                        // is found damaged: the user's receive says how).
                        loop {
                            if stopped() {
                                return;
                            }
                            if !watched.intact() || ready() {
                                break;
                            }
                            // In slices: memory truncated while the thread sleeps cannot be
                            // poked awake, so it looks now and then.
                            let slice = std::time::Instant::now() + SLICE;
                            let woke = watched.sleep(slice, &mut || stopped() || ready());
                            if woke.is_none() {
                                break;
                            }
                        }
                        if stopped() {
                            return;
                        }
                        let mut st = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
                        if *st == State::Stop {
                            return;
                        }
                        let one = 1u64.to_ne_bytes();
                        // SAFETY: writes 8 bytes from a live buffer to our eventfd; it cannot
                        // block (EFD_NONBLOCK) and cannot overflow from 0 or 1.
                        unsafe { libc::write(writer.as_raw_fd(), one.as_ptr().cast(), 8) };
                        *st = State::Signaled;
                    }
                })?
        };
        Ok(ReadyFd {
            fd,
            ctl,
            watched,
            thread: Some(thread),
            generation: fork_generation(),
        })
    }

    /// Whether this is a forked child's copy (the thread is the parent's).
    pub(crate) fn forked(&self) -> bool {
        self.generation != fork_generation()
    }

    /// The descriptor: readable while the handle is ready (see the module).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Called by a receive that found nothing: clears the fd and arms the thread, unless it
    /// is armed already. (A `read` and a wake-up, only after the fd was made readable.)
    pub(crate) fn rearm(&self) {
        if self.generation != fork_generation() {
            return; // a forked child's copy: the thread is the parent's
        }
        let mut st = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
        if *st != State::Signaled {
            return;
        }
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        *st = State::Armed;
        self.ctl.cv.notify_one();
    }
}

impl Drop for ReadyFd {
    fn drop(&mut self) {
        if self.generation != fork_generation() {
            // A forked child's copy: the thread is the parent's, and not in this process.
            std::mem::forget(self.thread.take());
            return;
        }
        *self.ctl.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Stop;
        self.ctl.stop.store(true, Ordering::Release);
        self.ctl.cv.notify_one();
        if !self.watched.intact() {
            // Truncated: no poke can reach its sleep; it ends at its slice's end, on its own,
            // detached (dropping the handle detaches it, and its stack is freed when it ends;
            // review: a forgotten handle kept the stack for good).
            drop(self.thread.take());
            return;
        }
        // Wakes the thread if it sleeps on the queue's event (and, harmlessly, any other
        // sleeper there, who looks and sleeps again).
        self.watched.event().poke(&crate::sys::futex::Futex);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A file descriptor that becomes readable when space is freed in the lane a
/// [`Sender`](crate::Sender) sends to, for senders that wait in `poll`, `epoll` or an async
/// runtime instead of blocking in [`Sender::send`](crate::Sender::send). Made by
/// [`Sender::space_fd`](crate::Sender::space_fd).
///
/// The loop: [`Sender::try_send`](crate::Sender::try_send); if the lane is full,
/// [`SpaceFd::arm`], try again, and if it is still full, wait for the fd to be readable; and
/// again. `arm` notes where the lane's space stands; the fd is readable once space is freed
/// after that (or the queue is removed or truncated: the next send says so). Space freed
/// before the try is seen by the try; after it, by the fd. Each wait needs space to be freed
/// anew, so a lane that stays full costs no CPU. Arm only after a full lane: an armed fd's
/// thread sleeps as a waiting sender, and the receiver then wakes it (a syscall) when it frees
/// space. Like a blocking send, it is woken when the receiver frees cells (at the latest when
/// the lane is half empty or the receiver goes idle).
pub struct SpaceFd {
    ready: ReadyFd,
    /// The fork generation of the process that made it: a forked child's copy shares the
    /// parent's eventfd, and the parent's thread, which is not in the child.
    generation: u64,
    mark: Arc<std::sync::atomic::AtomicU64>,
    seg: Arc<Attachment>,
    priority: usize,
}

impl std::fmt::Debug for SpaceFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceFd")
            .field("priority", &self.priority)
            .field("fd", &self.ready.fd.as_raw_fd())
            .finish()
    }
}

impl SpaceFd {
    pub(crate) fn start(seg: Arc<Attachment>, priority: usize) -> std::io::Result<SpaceFd> {
        let mark = Arc::new(std::sync::atomic::AtomicU64::new(seg.lane(priority).head()));
        let ready = {
            let (seg, mark) = (seg.clone(), mark.clone());
            ReadyFd::start(
                seg.clone(),
                Arc::new(move |seg: &Attachment| seg.lane(priority).space_event()),
                move || {
                    seg.is_removed() || seg.lane(priority).head() != mark.load(Ordering::Acquire)
                },
            )?
        };
        Ok(SpaceFd {
            ready,
            generation: fork_generation(),
            mark,
            seg,
            priority,
        })
    }

    /// Notes where the lane's space stands, before a try: the fd is readable once space is
    /// freed after this.
    ///
    /// # Errors
    ///
    /// [`SendError::ForkedCopy`](crate::SendError::ForkedCopy) in a forked child: the fd is the
    /// parent's (its thread is not in the child); make a new one there.
    pub fn arm(&self) -> Result<(), crate::error::SendError> {
        if self.generation != fork_generation() {
            return Err(crate::error::SendError::ForkedCopy);
        }
        if self.seg.check_size().is_ok() {
            self.mark
                .store(self.seg.lane(self.priority).head(), Ordering::Release);
        } // else the next send says what happened
        self.ready.rearm();
        Ok(())
    }

    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ready.fd()
    }
}
