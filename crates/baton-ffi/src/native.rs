//! baton's own C API (`baton.h`, generated from this file by cbindgen): queues, sending,
//! owning and receiving, standbys, a pollable fd; for C programs that want baton itself rather
//! than the SA-Forum interface.
//!
//! Handles are numbers, checked on every call: a closed, stale or forged one is
//! `BATON_BAD_HANDLE`, never a crash. Every call returns a `BatonStatus`; on an error,
//! `baton_last_error()` says what went wrong, in words, on the calling thread. A panic is
//! caught at the boundary and becomes `BATON_PANIC`.
//!
//! Delivery is at least once, as in Rust: the message `baton_recv` copies out stays
//! unacknowledged until the next `baton_recv` on the receiver, `baton_ack`, or
//! `baton_receiver_close`; if the receiving process dies before, the next owner gets it
//! again, flagged redelivered.

use crate::handles::Table;
use baton::{
    Attributes, CancelPoint, Canceller, Domain, Message, OpenError, OwnError, Queue, Receiver,
    RecvError, SendError,
};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What a call did.
#[allow(non_camel_case_types)] // C's spelling: the header is C's
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatonStatus {
    /// Done.
    BATON_OK = 0,
    /// A NULL pointer where one is needed, a bad name, a priority over 3, bad attributes.
    BATON_INVALID_ARGUMENT = 1,
    /// A closed, stale or forged handle.
    BATON_BAD_HANDLE = 2,
    /// No such queue.
    BATON_NOT_FOUND = 3,
    /// The queue exists with other attributes (`baton_last_error` names the difference).
    BATON_EXISTS = 4,
    /// The queue has a live owner (`baton_receiver_open` with a zero standby timeout).
    BATON_BUSY = 5,
    /// Nothing within the timeout: no message, no space, no ownership.
    BATON_TIMEOUT = 6,
    /// The message is larger than the queue's largest.
    BATON_TOO_BIG = 7,
    /// The caller's buffer is too small: `*len` is the size needed, and the message stays
    /// for the next `baton_recv`.
    BATON_NO_SPACE = 8,
    /// The queue was removed.
    BATON_REMOVED = 9,
    /// Permission denied, or a queue of another user.
    BATON_PERMISSION = 10,
    /// The queue's shared memory is damaged, or of an incompatible baton.
    BATON_CORRUPT = 11,
    /// Anything else (an I/O error, no memory, no helper thread): see `baton_last_error`.
    BATON_ERROR = 12,
    /// A bug in baton: a panic, caught at the boundary.
    BATON_PANIC = 13,
}

use BatonStatus::*;

/// A queue's attributes, for `baton_queue_create` (start from `baton_attributes_default`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BatonAttributes {
    /// Byte budget of each priority lane, 0 (highest) to 3 (rounded up to 64 bytes).
    pub capacity: [u64; 4],
    /// The largest payload, in bytes.
    pub max_message: u32,
    /// File mode of the segment (e.g. 0600).
    pub mode: u32,
    /// Nanoseconds the queue is kept once it has no owner; negative: until removed.
    pub retention_ns: i64,
    /// Nonzero: a shared queue (competing consumers, taken from Rust); `baton_receiver_open`
    /// refuses it, as it has no owner.
    pub shared: u8,
    /// Requests that may wait for replies at once.
    pub reply_boxes: u32,
}

/// What `baton_recv` tells about the message beside its bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BatonMessageInfo {
    /// 0 (highest) to 3.
    pub priority: u8,
    /// Nonzero if delivered before, to an owner that died or let it go unacknowledged.
    pub redelivered: u8,
    /// The sender's message type.
    pub msg_type: i64,
    /// The sending process, in its pid namespace.
    pub sender_pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds of the send.
    pub sent_ns: u64,
    /// The message's id, the same on redelivery.
    pub id: u64,
}

/// A queue handle.
pub type BatonQueue = u64;
/// A receiver handle: the queue, owned.
pub type BatonReceiver = u64;

/// Wait for ever (a timeout argument).
pub const BATON_FOREVER: i64 = -1;

struct QueueEntry {
    pid: u32,
    queue: Queue,
}

struct ReceiverEntry {
    pid: u32,
    /// Interrupts a receive blocked on another thread when the receiver is closed.
    canceller: Canceller,
    closed: AtomicBool,
    state: Mutex<ReceiverState>,
}

struct ReceiverState {
    rx: Receiver,
    /// The message last copied out, not yet acknowledged.
    current: Option<Message>,
    /// A message too big for the last buffer: the next receive returns it.
    stash: Option<Message>,
}

impl Drop for ReceiverState {
    fn drop(&mut self) {
        if let Some(m) = self.current.take() {
            let _ = m.ack();
        }
        if let Some(m) = self.stash.take() {
            let _ = m.release();
        }
    }
}

static QUEUES: Table<QueueEntry> = Table::new(3);
static RECEIVERS: Table<ReceiverEntry> = Table::new(4);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `what` as the thread's last error and returns `status`.
fn fail(status: BatonStatus, what: impl std::fmt::Display) -> BatonStatus {
    let text = CString::new(what.to_string().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    status
}

/// Runs `f`, turning a panic into `BATON_PANIC`: nothing unwinds into C.
fn guard(f: impl FnOnce() -> BatonStatus) -> BatonStatus {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| fail(BATON_PANIC, "a bug in baton: a panic, caught"))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}

/// # Safety
///
/// `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, BatonStatus> {
    if s.is_null() {
        return Err(fail(BATON_INVALID_ARGUMENT, format!("{what} is NULL")));
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| fail(BATON_INVALID_ARGUMENT, format!("{what} is not UTF-8")))
}

/// # Safety
///
/// As [`text`].
unsafe fn domain_of(d: *const c_char) -> Result<Domain, BatonStatus> {
    if d.is_null() {
        return Domain::from_env().map_err(|e| open_status(&e));
    }
    // SAFETY: the caller's contract.
    Domain::new(unsafe { text(d, "the domain") }?).map_err(|e| open_status(&e))
}

/// A queue's domain and name.
///
/// # Safety
///
/// As [`text`], for both.
unsafe fn where_of<'a>(
    domain: *const c_char,
    name: *const c_char,
) -> Result<(Domain, &'a str), BatonStatus> {
    // SAFETY: the caller's contract.
    unsafe { Ok((domain_of(domain)?, text(name, "the name")?)) }
}

fn timeout_of(ns: i64) -> Option<Duration> {
    (ns >= 0).then(|| Duration::from_nanos(ns as u64))
}

fn open_status(e: &OpenError) -> BatonStatus {
    let status = match e {
        OpenError::InvalidName { .. } | OpenError::InvalidAttributes(_) => BATON_INVALID_ARGUMENT,
        OpenError::NotFound { .. } => BATON_NOT_FOUND,
        OpenError::Exists { .. } => BATON_EXISTS,
        OpenError::PermissionDenied { .. } => BATON_PERMISSION,
        OpenError::Incompatible { .. } | OpenError::Corrupt { .. } => BATON_CORRUPT,
        _ => BATON_ERROR,
    };
    fail(status, e)
}

fn send_status(e: &SendError) -> BatonStatus {
    let status = match e {
        SendError::TooBig { .. } => BATON_TOO_BIG,
        SendError::InvalidPriority(_) => BATON_INVALID_ARGUMENT,
        SendError::Timeout => BATON_TIMEOUT,
        SendError::Removed => BATON_REMOVED,
        SendError::Corrupt(_) => BATON_CORRUPT,
        _ => BATON_ERROR,
    };
    fail(status, e)
}

fn recv_status(e: &RecvError) -> BatonStatus {
    let status = match e {
        RecvError::Empty | RecvError::Timeout => BATON_TIMEOUT,
        RecvError::Removed => BATON_REMOVED,
        RecvError::ForkedCopy | RecvError::OwnershipLost { .. } => BATON_BAD_HANDLE,
        RecvError::Corrupt(_) => BATON_CORRUPT,
        _ => BATON_ERROR,
    };
    fail(status, e)
}

fn own_status(e: &OwnError) -> BatonStatus {
    let status = match e {
        OwnError::Busy { .. } => BATON_BUSY,
        OwnError::Timeout { .. } => BATON_TIMEOUT,
        OwnError::Removed { .. } => BATON_REMOVED,
        OwnError::Corrupt { .. } => BATON_CORRUPT,
        _ => BATON_ERROR,
    };
    fail(status, e)
}

fn queue(h: BatonQueue) -> Result<std::sync::Arc<QueueEntry>, BatonStatus> {
    QUEUES
        .get(h)
        .filter(|q| q.pid == std::process::id())
        .ok_or_else(|| {
            fail(
                BATON_BAD_HANDLE,
                format!("{h:#x} is not an open queue handle"),
            )
        })
}

fn receiver(h: BatonReceiver) -> Result<std::sync::Arc<ReceiverEntry>, BatonStatus> {
    RECEIVERS
        .get(h)
        .filter(|r| r.pid == std::process::id())
        .ok_or_else(|| {
            fail(
                BATON_BAD_HANDLE,
                format!("{h:#x} is not an open receiver handle"),
            )
        })
}

/// The thread's last error, in words: valid until the thread's next baton call. Never NULL
/// (empty when no call has failed on this thread).
#[no_mangle]
pub extern "C" fn baton_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The default attributes: 64 KiB a lane, 4 KiB messages, mode 0600, kept until removed,
/// 16 reply boxes.
///
/// # Safety
///
/// `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn baton_attributes_default(out: *mut BatonAttributes) -> BatonStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let Some(out) = (unsafe { out.as_mut() }) else {
            return fail(BATON_INVALID_ARGUMENT, "out is NULL");
        };
        let a = Attributes::default();
        *out = BatonAttributes {
            capacity: a.capacity,
            max_message: a.max_message,
            mode: a.mode,
            retention_ns: -1,
            shared: 0,
            reply_boxes: a.reply_boxes,
        };
        BATON_OK
    })
}

/// Creates queue `name` in `domain` (NULL: `$BATON_DOMAIN`, or "default"), or opens it if it
/// exists with the same attributes (NULL attributes: the defaults), into `*out`.
///
/// # Safety
///
/// Strings are NULL or NUL-terminated; `attrs` is NULL or valid; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn baton_queue_create(
    domain: *const c_char,
    name: *const c_char,
    attrs: *const BatonAttributes,
    out: *mut BatonQueue,
) -> BatonStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (domain, name) = tri!(unsafe { where_of(domain, name) });
        if out.is_null() {
            return fail(BATON_INVALID_ARGUMENT, "out is NULL");
        }
        // SAFETY: the caller's contract.
        let attributes = match unsafe { attrs.as_ref() } {
            None => Attributes::default(),
            Some(a) => Attributes {
                capacity: a.capacity,
                max_message: a.max_message,
                mode: a.mode,
                retention: timeout_of(a.retention_ns),
                shared: a.shared != 0,
                reply_boxes: a.reply_boxes,
                ..Attributes::default()
            },
        };
        let q = tri!(Queue::create(&domain, name, &attributes).map_err(|e| open_status(&e)));
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { give_queue(q, out) }
    })
}

/// Puts `q` in the table and its handle in `*out`.
///
/// # Safety
///
/// `out` is valid for writes.
unsafe fn give_queue(q: Queue, out: *mut BatonQueue) -> BatonStatus {
    let h = QUEUES.insert(QueueEntry {
        pid: std::process::id(),
        queue: q,
    });
    // SAFETY: the caller's contract.
    unsafe { *out = h };
    BATON_OK
}

/// Opens existing queue `name` in `domain` (NULL: `$BATON_DOMAIN`, or "default") into `*out`.
///
/// # Safety
///
/// As `baton_queue_create`.
#[no_mangle]
pub unsafe extern "C" fn baton_queue_open(
    domain: *const c_char,
    name: *const c_char,
    out: *mut BatonQueue,
) -> BatonStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (domain, name) = tri!(unsafe { where_of(domain, name) });
        if out.is_null() {
            return fail(BATON_INVALID_ARGUMENT, "out is NULL");
        }
        let q = tri!(Queue::open(&domain, name).map_err(|e| open_status(&e)));
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { give_queue(q, out) }
    })
}

/// Closes a queue handle (its receivers stay open).
#[no_mangle]
pub extern "C" fn baton_queue_close(q: BatonQueue) -> BatonStatus {
    guard(|| {
        tri!(queue(q));
        QUEUES.remove(q);
        BATON_OK
    })
}

/// Removes queue `name`, with its messages: every process's handles get `BATON_REMOVED`.
///
/// # Safety
///
/// Strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn baton_queue_remove(
    domain: *const c_char,
    name: *const c_char,
) -> BatonStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (domain, name) = tri!(unsafe { where_of(domain, name) });
        tri!(Queue::remove(&domain, name).map_err(|e| open_status(&e)));
        BATON_OK
    })
}

/// Sends `len` bytes at `data` with priority 0 (highest) to 3 and type `msg_type`, waiting
/// for space at most `timeout_ns` (0: not at all; `BATON_FOREVER`).
///
/// # Safety
///
/// `data` is valid for `len` bytes (or NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn baton_send(
    q: BatonQueue,
    priority: u8,
    msg_type: i64,
    data: *const c_void,
    len: usize,
    timeout_ns: i64,
) -> BatonStatus {
    guard(|| {
        let q = tri!(queue(q));
        if data.is_null() && len != 0 {
            return fail(BATON_INVALID_ARGUMENT, "data is NULL");
        }
        // Before the slice is made: a length past what any queue holds is refused here, and
        // never becomes a slice longer than memory (review).
        if len > Attributes::MAX_MESSAGE_LIMIT as usize {
            return fail(
                BATON_TOO_BIG,
                format!(
                    "{len} bytes: no queue takes messages over {}",
                    Attributes::MAX_MESSAGE_LIMIT
                ),
            );
        }
        let payload = if len == 0 {
            &[][..]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        let tx = tri!(q
            .queue
            .sender()
            .with_priority(priority)
            .map_err(|e| send_status(&e)));
        let tx = tx.with_type(msg_type);
        let sent = match timeout_of(timeout_ns) {
            None => tx.send(payload),
            Some(t) => tx.send_timeout(payload, t),
        };
        tri!(sent.map_err(|e| send_status(&e)));
        BATON_OK
    })
}

/// Takes the queue as its owner into `*out`: at once, or, with a `standby_timeout_ns` other
/// than 0, waiting that long (`BATON_FOREVER`) as a standby that takes the queue over, with
/// its messages, when the owner closes or dies. `BATON_BUSY`: owned, and no wait asked.
///
/// # Safety
///
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn baton_receiver_open(
    q: BatonQueue,
    standby_timeout_ns: i64,
    out: *mut BatonReceiver,
) -> BatonStatus {
    guard(|| {
        let q = tri!(queue(q));
        if out.is_null() {
            return fail(BATON_INVALID_ARGUMENT, "out is NULL");
        }
        let rx = if standby_timeout_ns == 0 {
            q.queue.receiver()
        } else {
            q.queue.standby(timeout_of(standby_timeout_ns))
        };
        let rx = tri!(rx.map_err(|e| own_status(&e)));
        let h = RECEIVERS.insert(ReceiverEntry {
            pid: std::process::id(),
            canceller: rx.canceller(),
            closed: AtomicBool::new(false),
            state: Mutex::new(ReceiverState {
                rx,
                current: None,
                stash: None,
            }),
        });
        // SAFETY: checked non-NULL.
        unsafe { *out = h };
        BATON_OK
    })
}

/// Receives the next message (highest priority first), waiting at most `timeout_ns` (0: not
/// at all; `BATON_FOREVER`), and copies its payload into `buf` (`cap` bytes); `*len` is its
/// length, and `info` (if not NULL) its metadata. The message before it on this receiver is
/// acknowledged first; this one stays unacknowledged until the next receive, `baton_ack` or
/// `baton_receiver_close`. `BATON_NO_SPACE`: `cap` is too small, `*len` is what is needed,
/// and the message is kept for the next call. One call at a time per receiver: a `baton_ack`
/// or `baton_receiver_fd` from another thread waits until a blocked `baton_recv` returns
/// (`baton_receiver_close` does not: it interrupts it).
///
/// # Safety
///
/// `buf` is valid for `cap` bytes (or NULL with `cap` 0); `len` is writable; `info` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn baton_recv(
    r: BatonReceiver,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    info: *mut BatonMessageInfo,
    timeout_ns: i64,
) -> BatonStatus {
    guard(|| {
        let r = tri!(receiver(r));
        // Before the receiver's lock: a close while another call holds it interrupts this one.
        let since = r.canceller.point();
        if len.is_null() || (buf.is_null() && cap != 0) {
            return fail(
                BATON_INVALID_ARGUMENT,
                "len is NULL, or buf is NULL with cap > 0",
            );
        }
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = st.current.take() {
            tri!(m.ack().map_err(|e| fail(BATON_ERROR, e)));
        }
        let m = match st.stash.take() {
            Some(m) => m,
            None => tri!(receive(&r, &mut st.rx, since, timeout_of(timeout_ns))),
        };
        let n = m.payload().len();
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { *len = n };
        if n > cap {
            st.stash = Some(m);
            return fail(
                BATON_NO_SPACE,
                format!("the message is {n} bytes, the buffer {cap}"),
            );
        }
        if n > 0 {
            // SAFETY: `buf` holds `cap >= n` bytes (the caller's contract); the payload is ours.
            unsafe { std::ptr::copy_nonoverlapping(m.payload().as_ptr(), buf.cast::<u8>(), n) };
        }
        // SAFETY: the caller's contract.
        if let Some(info) = unsafe { info.as_mut() } {
            *info = BatonMessageInfo {
                priority: m.priority(),
                redelivered: u8::from(m.redelivered()),
                msg_type: m.msg_type(),
                sender_pid: m.sender_pid(),
                sent_ns: m.sent_ns(),
                id: m.id(),
            };
        }
        st.current = Some(m);
        BATON_OK
    })
}

/// Receives within `timeout` (`None`: for ever), interrupted by a close since `since`, even
/// one made before the receive began (no polling for it: `Receiver::recv_timeout_since`).
fn receive(
    r: &ReceiverEntry,
    rx: &mut Receiver,
    since: CancelPoint,
    timeout: Option<Duration>,
) -> Result<Message, BatonStatus> {
    let closed = || fail(BATON_BAD_HANDLE, "the receiver was closed while it waited");
    if r.closed.load(Ordering::Acquire) {
        return Err(closed());
    }
    let got = match timeout {
        Some(Duration::ZERO) => rx.try_recv(),
        Some(t) => rx.recv_timeout_since(since, t),
        None => rx.recv_timeout_since(since, Duration::MAX),
    };
    match got {
        Err(RecvError::Interrupted) => Err(closed()), // only a close cancels
        got => got.map_err(|e| recv_status(&e)),
    }
}

/// Acknowledges the message the last `baton_recv` returned (nothing to do if there is none).
#[no_mangle]
pub extern "C" fn baton_ack(r: BatonReceiver) -> BatonStatus {
    guard(|| {
        let r = tri!(receiver(r));
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = st.current.take() {
            tri!(m.ack().map_err(|e| fail(BATON_ERROR, e)));
        }
        BATON_OK
    })
}

/// A file descriptor readable while a message waits for this receiver, for `poll`/`epoll`:
/// readable until a `baton_recv` with timeout 0 finds nothing (then `BATON_TIMEOUT`). Owned
/// by the receiver: do not close it. `*fd` is set on success.
///
/// # Safety
///
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn baton_receiver_fd(r: BatonReceiver, fd: *mut i32) -> BatonStatus {
    guard(|| {
        let r = tri!(receiver(r));
        if fd.is_null() {
            return fail(BATON_INVALID_ARGUMENT, "fd is NULL");
        }
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        let raw = tri!(st.rx.ready_fd().map_err(|e| recv_status(&e))).as_raw_fd();
        // SAFETY: checked non-NULL.
        unsafe { *fd = raw };
        BATON_OK
    })
}

/// Lets the queue go (a standby takes it over): the message the last `baton_recv` returned
/// is acknowledged, one kept by `BATON_NO_SPACE` stays in the queue. A `baton_recv` blocked
/// on another thread (or about to block) returns `BATON_BAD_HANDLE` at once; the queue goes
/// when it has.
#[no_mangle]
pub extern "C" fn baton_receiver_close(r: BatonReceiver) -> BatonStatus {
    guard(|| {
        tri!(receiver(r));
        let Some(entry) = RECEIVERS.remove(r) else {
            return fail(
                BATON_BAD_HANDLE,
                format!("{r:#x} is not an open receiver handle"),
            );
        };
        entry.closed.store(true, Ordering::Release);
        entry.canceller.cancel();
        BATON_OK
    })
}
