//! The `saMsg*` functions.

use crate::handles::Table;
use crate::names::{baton_name, sa_name, BadName};
use crate::types::*;
use baton::{
    Attributes, Canceller, Domain, Group, GroupError, GroupPolicy, GroupTracker, MemberChange,
    Message, OpenError, OwnError, Queue, Receiver, ReceiverOptions, RecvError, ReplyError, ReplyTo,
    RequestError, SendError, TrySendError,
};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The library handles.
static LIBS: Table<Lib> = Table::new(1);
/// The queue handles (of every library handle).
static QUEUES: Table<QueueEntry> = Table::new(2);

/// The epoll event data of a library's own eventfd (queue handles are never this).
const WAKE: u64 = u64::MAX;

/// The epoll event data of a group tracker is its id shifted past the low 32 bits, which are
/// 0; a queue handle's never are (`handles`), nor are `WAKE`'s.
const TRACKER_SHIFT: u32 = 32;

struct Lib {
    /// The process that made it: in a forked child the handle is the parent's (its epoll
    /// instance is shared with the parent) and refused.
    pid: u32,
    callbacks: SaMsgCallbacksT,
    domain: Domain,
    /// The selection object: readable when `saMsgDispatch` has something to do.
    epoll: OwnedFd,
    /// Made readable when a callback is queued, or at finalize.
    wake: OwnedFd,
    pending: Mutex<VecDeque<Pending>>,
    finalized: AtomicBool,
    /// The queue each request taken by `saMsgMessageGet` came from, by its sender id.
    requests: Mutex<HashMap<u64, Queue>>,
    /// Destinations sent to, by name.
    destinations: Mutex<HashMap<String, Queue>>,
    /// Groups tracked with `SA_TRACK_CHANGES` or `SA_TRACK_CHANGES_ONLY`, by name.
    trackers: Mutex<HashMap<String, Tracking>>,
    /// The last tracker id given (ids start at 1).
    last_tracker: std::sync::atomic::AtomicU32,
}

/// A group tracked for its changes: its tracker's ready fd is in the library's epoll,
/// level-triggered, under `id << TRACKER_SHIFT`.
struct Tracking {
    id: u32,
    tracker: GroupTracker,
    changes_only: bool,
}

impl Lib {
    /// Stops tracking `group`'s changes; whether it was tracked.
    fn untrack(&self, group: &str) -> bool {
        let gone = self
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        let Some(mut t) = gone else { return false };
        self.unregister(&mut t);
        true
    }

    /// Takes a tracker's fd out of the selection object (before the tracker goes).
    fn unregister(&self, t: &mut Tracking) {
        if let Ok(fd) = t.tracker.ready_fd() {
            // SAFETY: removes a descriptor we registered from our epoll.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd.as_raw_fd(),
                    std::ptr::null_mut(),
                )
            };
        }
    }
}

/// A callback waiting for `saMsgDispatch`.
enum Pending {
    Opened {
        invocation: SaInvocationT,
        handle: SaMsgQueueHandleT,
        error: SaAisErrorT,
    },
    Delivered {
        invocation: SaInvocationT,
        error: SaAisErrorT,
    },
    /// A group's members for its track callback: `(queue, change)` items, the number of
    /// members now, the policy, and the callback's error (`SA_AIS_OK` or the items are none).
    Tracked {
        group: String,
        items: Vec<(String, u32)>,
        members: u32,
        policy: SaMsgQueueGroupPolicyT,
        error: SaAisErrorT,
    },
}

struct QueueEntry {
    lib: SaMsgHandleT,
    /// As `Lib::pid`.
    pid: u32,
    queue: Queue,
    /// Cancelled by `saMsgMessageCancel` and close: a get takes a point of it before it waits
    /// for the queue's state, so that a cancel while it waited (or before its receive began)
    /// interrupts it (`Receiver::recv_timeout_since`).
    canceller: Canceller,
    closed: AtomicBool,
    /// The receiver's ready fd, registered with the library's epoll (received callbacks).
    ready: Option<RawFd>,
    /// Opened with `BATON_MSG_QUEUE_AT_LEAST_ONCE`: gets leave their messages in hand.
    at_least_once: bool,
    state: Mutex<QueueState>,
}

struct QueueState {
    rx: Receiver,
    /// A message taken for a received callback, or left by a get whose buffer was too small:
    /// the next get returns it.
    stash: Option<Message>,
    /// With `BATON_MSG_QUEUE_AT_LEAST_ONCE`, per getting thread, the message its last get
    /// returned: acknowledged by that thread's next get or the close, so that one in hand when
    /// the process dies goes to the next opener (at least once, as in baton). Per thread
    /// (review: one thread's get acknowledged the message another still worked on).
    in_hand: HashMap<std::thread::ThreadId, Message>,
}

impl Drop for QueueEntry {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (_, m) in st.in_hand.drain() {
            let _ = m.ack(); // got, and the queue closed: done with
        }
        if let Some(m) = st.stash.take() {
            let _ = m.release(); // not got: it stays in the queue
        }
    }
}

/// Runs `f`, turning a panic into `SA_AIS_ERR_LIBRARY`: nothing unwinds into C.
fn guard(f: impl FnOnce() -> SaAisErrorT) -> SaAisErrorT {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(SA_AIS_ERR_LIBRARY)
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

fn lib(h: SaMsgHandleT) -> Result<std::sync::Arc<Lib>, SaAisErrorT> {
    LIBS.get(h)
        .filter(|l| !l.finalized.load(Ordering::Acquire) && l.pid == std::process::id())
        .ok_or(SA_AIS_ERR_BAD_HANDLE)
}

fn queue_entry(h: SaMsgQueueHandleT) -> Result<std::sync::Arc<QueueEntry>, SaAisErrorT> {
    QUEUES
        .get(h)
        .filter(|q| q.pid == std::process::id() && !q.closed.load(Ordering::Acquire))
        .ok_or(SA_AIS_ERR_BAD_HANDLE)
}

/// # Safety
///
/// As [`baton_name`].
unsafe fn name_of(n: *const SaNameT) -> Result<String, SaAisErrorT> {
    // SAFETY: the caller's contract.
    unsafe { baton_name(n) }.map_err(|e| match e {
        BadName::Null | BadName::Length => SA_AIS_ERR_INVALID_PARAM,
        BadName::TooLong => SA_AIS_ERR_NAME_TOO_LONG,
    })
}

fn timeout_of(t: SaTimeT) -> Result<Duration, SaAisErrorT> {
    match t {
        t if t < 0 => Err(SA_AIS_ERR_INVALID_PARAM),
        SA_TIME_END => Ok(Duration::MAX),
        t => Ok(Duration::from_nanos(t as u64)),
    }
}

/// `CLOCK_MONOTONIC` nanoseconds (baton's send times) as `CLOCK_REALTIME` (the
/// specification's absolute `SaTimeT`).
fn realtime_of(mono_ns: u64) -> SaTimeT {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock and out-pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    let (real, mono) = (now(libc::CLOCK_REALTIME), now(libc::CLOCK_MONOTONIC));
    real - (mono - mono_ns as i64)
}

fn open_error(e: &OpenError) -> SaAisErrorT {
    match e {
        OpenError::NotFound { .. } => SA_AIS_ERR_NOT_EXIST,
        OpenError::Exists { .. } | OpenError::Incompatible { .. } => SA_AIS_ERR_EXIST,
        OpenError::InvalidName { .. } | OpenError::InvalidAttributes(_) => SA_AIS_ERR_INVALID_PARAM,
        OpenError::PermissionDenied { .. } => SA_AIS_ERR_ACCESS,
        OpenError::NoSpace { .. } => SA_AIS_ERR_NO_RESOURCES,
        _ => SA_AIS_ERR_LIBRARY,
    }
}

fn send_error(e: &SendError) -> SaAisErrorT {
    match e {
        SendError::TooBig { .. } => SA_AIS_ERR_TOO_BIG,
        SendError::InvalidPriority(_) => SA_AIS_ERR_INVALID_PARAM,
        SendError::Timeout => SA_AIS_ERR_QUEUE_FULL,
        SendError::Removed => SA_AIS_ERR_NOT_EXIST,
        SendError::NoSenderSlot(_) => SA_AIS_ERR_NO_RESOURCES,
        _ => SA_AIS_ERR_LIBRARY,
    }
}

fn recv_error(e: &RecvError) -> SaAisErrorT {
    match e {
        RecvError::Empty | RecvError::Timeout => SA_AIS_ERR_TIMEOUT,
        RecvError::Interrupted => SA_AIS_ERR_INTERRUPT,
        RecvError::Removed => SA_AIS_ERR_NOT_EXIST,
        RecvError::OwnershipLost { .. } | RecvError::ForkedCopy => SA_AIS_ERR_BAD_HANDLE,
        _ => SA_AIS_ERR_LIBRARY,
    }
}

fn request_error(e: &RequestError) -> SaAisErrorT {
    match e {
        RequestError::Timeout => SA_AIS_ERR_TIMEOUT,
        RequestError::TooBig { .. } => SA_AIS_ERR_TOO_BIG,
        RequestError::NoReplyBoxes => SA_AIS_ERR_BAD_OPERATION,
        RequestError::AllBoxesBusy { .. } => SA_AIS_ERR_NO_RESOURCES,
        RequestError::Removed => SA_AIS_ERR_NOT_EXIST,
        RequestError::Send(s) => send_error(s),
        _ => SA_AIS_ERR_LIBRARY,
    }
}

fn group_error(e: &GroupError) -> SaAisErrorT {
    match e {
        GroupError::NotFound { .. } | GroupError::NotMember { .. } => SA_AIS_ERR_NOT_EXIST,
        GroupError::Exists { .. } | GroupError::AlreadyMember { .. } => SA_AIS_ERR_EXIST,
        GroupError::NotAvailable { .. } | GroupError::Undelivered { .. } => {
            SA_AIS_ERR_QUEUE_NOT_AVAILABLE
        }
        GroupError::Full { .. } => SA_AIS_ERR_NO_RESOURCES,
        GroupError::Removed { .. } => SA_AIS_ERR_NOT_EXIST,
        GroupError::Busy { .. } => SA_AIS_ERR_TRY_AGAIN,
        GroupError::Open(o) => open_error(o),
        GroupError::Send { error, .. } => send_error(error),
        GroupError::Request { error, .. } => request_error(error),
        GroupError::RequestToBroadcast { .. } => SA_AIS_ERR_BAD_OPERATION,
        GroupError::NoHelper(_) => SA_AIS_ERR_NO_RESOURCES,
        _ => SA_AIS_ERR_LIBRARY,
    }
}

fn eventfd() -> Result<OwnedFd, SaAisErrorT> {
    // SAFETY: eventfd with valid flags; checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(SA_AIS_ERR_NO_RESOURCES);
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn epoll_add(epoll: RawFd, fd: RawFd, data: u64, oneshot: bool) -> Result<(), SaAisErrorT> {
    epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, data, oneshot)
}

/// A queue's ready fd is registered one-shot: once it has given its callback, it is quiet
/// until the message is got (or it turns out there was none), then enabled again here.
fn epoll_enable(epoll: RawFd, fd: RawFd, data: u64) {
    let _ = epoll_ctl(epoll, libc::EPOLL_CTL_MOD, fd, data, true);
}

fn epoll_ctl(
    epoll: RawFd,
    op: i32,
    fd: RawFd,
    data: u64,
    oneshot: bool,
) -> Result<(), SaAisErrorT> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32
            | if oneshot {
                libc::EPOLLONESHOT as u32
            } else {
                0
            },
        u64: data,
    };
    // SAFETY: our epoll descriptor and a live descriptor; `ev` is read during the call.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) } != 0 {
        return Err(SA_AIS_ERR_NO_RESOURCES);
    }
    Ok(())
}

impl Lib {
    fn queue_callback(&self, p: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(p);
        self.poke();
    }

    /// Whether an async call asks for its delivered callback (`ackFlags` checked).
    fn ack_flag(&self, flags: SaMsgAckFlagsT) -> Result<bool, SaAisErrorT> {
        if flags & !SA_MSG_MESSAGE_DELIVERED_ACK != 0 {
            return Err(SA_AIS_ERR_BAD_FLAGS);
        }
        let ack = flags & SA_MSG_MESSAGE_DELIVERED_ACK != 0;
        if ack && self.callbacks.saMsgMessageDeliveredCallback.is_none() {
            return Err(SA_AIS_ERR_INIT);
        }
        Ok(ack)
    }

    /// An async call's outcome: returned as is without a delivered acknowledgement; with one,
    /// told by its callback from `saMsgDispatch` (and the call returns OK).
    fn acknowledge(&self, invocation: SaInvocationT, ack: bool, error: SaAisErrorT) -> SaAisErrorT {
        if !ack {
            return error;
        }
        self.queue_callback(Pending::Delivered { invocation, error });
        SA_AIS_OK
    }

    fn poke(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8 bytes from a live buffer into our non-blocking eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn clear_wake(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: at most 8 bytes into a live buffer, from our non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    /// The queue called `name` (kept open between sends), or the group.
    fn destination(&self, name: &str) -> Result<Destination, SaAisErrorT> {
        let mut cache = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = cache.get(name) {
            return Ok(Destination::Queue(q.clone()));
        }
        match Queue::open(&self.domain, name) {
            Ok(q) => {
                cache.insert(name.to_string(), q.clone());
                Ok(Destination::Queue(q))
            }
            Err(OpenError::NotFound { .. }) => match Group::open(&self.domain, name) {
                Ok(g) => Ok(Destination::Group(g)),
                Err(GroupError::NotFound { .. }) => Err(SA_AIS_ERR_NOT_EXIST),
                Err(e) => Err(group_error(&e)),
            },
            Err(e) => Err(open_error(&e)),
        }
    }
}

impl Lib {
    /// Sends to `name`; a cached queue found removed is looked up again once (a queue made
    /// again under the name, or a group).
    fn send(
        &self,
        name: &str,
        m: &SaMsgMessageT,
        payload: &[u8],
        timeout: Duration,
    ) -> SaAisErrorT {
        let dest = tri!(self.destination(name));
        let r = send_to(&dest, m, payload, timeout);
        if r != SA_AIS_ERR_NOT_EXIST || !matches!(dest, Destination::Queue(_)) {
            return r;
        }
        self.destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let dest = tri!(self.destination(name));
        send_to(&dest, m, payload, timeout)
    }
}

enum Destination {
    Queue(Queue),
    Group(Group),
}

/// The payload a message points to.
///
/// # Safety
///
/// `m.data` points to `m.size` readable bytes, or is NULL with size 0.
unsafe fn payload_of(m: &SaMsgMessageT) -> Result<&[u8], SaAisErrorT> {
    if m.priority > 3 {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    if m.data.is_null() {
        return if m.size == 0 {
            Ok(&[])
        } else {
            Err(SA_AIS_ERR_INVALID_PARAM)
        };
    }
    let len = usize::try_from(m.size).map_err(|_| SA_AIS_ERR_TOO_BIG)?;
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(m.data as *const u8, len) })
}

/// Copies `bytes` into the caller's message: into its buffer, or one the library allocates
/// (`data` NULL; freed with `saMsgMessageDataFree`). `Err(NO_SPACE)`: the buffer is too small;
/// `size` then says how big it must be.
///
/// # Safety
///
/// `m.data` is NULL or points to `m.size` writable bytes.
unsafe fn fill(m: &mut SaMsgMessageT, bytes: &[u8]) -> Result<(), SaAisErrorT> {
    if m.data.is_null() {
        // SAFETY: malloc of at least one byte; checked.
        let p = unsafe { libc::malloc(bytes.len().max(1)) };
        if p.is_null() {
            return Err(SA_AIS_ERR_NO_MEMORY);
        }
        m.data = p;
    } else if (m.size as usize) < bytes.len() {
        m.size = bytes.len() as u64;
        return Err(SA_AIS_ERR_NO_SPACE);
    }
    // SAFETY: `m.data` holds at least `bytes.len()` bytes (allocated, or checked above).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.data as *mut u8, bytes.len()) };
    m.size = bytes.len() as u64;
    if !m.senderName.is_null() {
        // SAFETY: a caller-provided SaNameT; baton messages carry no sender name.
        unsafe { (*m.senderName).length = 0 };
    }
    Ok(())
}

/// `saMsgInitialize`.
///
/// # Safety
///
/// Pointers are NULL or valid, as the specification requires.
#[no_mangle]
pub unsafe extern "C" fn saMsgInitialize(
    msgHandle: *mut SaMsgHandleT,
    msgCallbacks: *const SaMsgCallbacksT,
    version: *mut SaVersionT,
) -> SaAisErrorT {
    guard(|| {
        if msgHandle.is_null() || version.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // SAFETY: checked non-NULL; the caller's contract.
        let v = unsafe { &mut *version };
        let supported = v.releaseCode == b'B' && v.majorVersion >= 1 && v.majorVersion <= 3;
        v.releaseCode = b'B';
        v.majorVersion = 3;
        v.minorVersion = 1;
        if !supported {
            return SA_AIS_ERR_VERSION;
        }
        // SAFETY: NULL or a valid struct, per the contract.
        let callbacks = unsafe { msgCallbacks.as_ref() }
            .copied()
            .unwrap_or_default();
        let domain = match Domain::from_env() {
            Ok(d) => d,
            Err(_) => return SA_AIS_ERR_INVALID_PARAM,
        };
        // SAFETY: epoll_create1 with a valid flag; checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return SA_AIS_ERR_NO_RESOURCES;
        }
        // SAFETY: a new descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let wake = tri!(eventfd());
        tri!(epoll_add(epoll.as_raw_fd(), wake.as_raw_fd(), WAKE, false));
        let h = LIBS.insert(Lib {
            pid: std::process::id(),
            callbacks,
            domain,
            epoll,
            wake,
            pending: Mutex::new(VecDeque::new()),
            finalized: AtomicBool::new(false),
            requests: Mutex::new(HashMap::new()),
            destinations: Mutex::new(HashMap::new()),
            trackers: Mutex::new(HashMap::new()),
            last_tracker: std::sync::atomic::AtomicU32::new(0),
        });
        // SAFETY: checked non-NULL.
        unsafe { *msgHandle = h };
        SA_AIS_OK
    })
}

/// `saMsgSelectionObjectGet`: an epoll descriptor, readable when `saMsgDispatch` has work.
///
/// # Safety
///
/// `selectionObject` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgSelectionObjectGet(
    msgHandle: SaMsgHandleT,
    selectionObject: *mut SaSelectionObjectT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        if selectionObject.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // SAFETY: checked non-NULL.
        unsafe { *selectionObject = l.epoll.as_raw_fd() as u64 };
        SA_AIS_OK
    })
}

/// `saMsgDispatch`.
#[no_mangle]
pub extern "C" fn saMsgDispatch(
    msgHandle: SaMsgHandleT,
    dispatchFlags: SaDispatchFlagsT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        if !(SA_DISPATCH_ONE..=SA_DISPATCH_BLOCKING).contains(&dispatchFlags) {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        let one = dispatchFlags == SA_DISPATCH_ONE;
        let blocking = dispatchFlags == SA_DISPATCH_BLOCKING;
        loop {
            let mut did = 0;
            l.clear_wake();
            loop {
                let p = l
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                let Some(p) = p else { break };
                invoke(&l, p);
                did += 1;
                if one {
                    return SA_AIS_OK;
                }
            }
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
            let wait_ms = if blocking && did == 0 { -1 } else { 0 };
            // One event for ONE: the queues' events are one-shot, and an event taken and not
            // handled would leave its queue without callbacks (review).
            let max = if one { 1 } else { 16 };
            // SAFETY: our epoll descriptor and a buffer of 16 events.
            let n =
                unsafe { libc::epoll_wait(l.epoll.as_raw_fd(), events.as_mut_ptr(), max, wait_ms) };
            if l.finalized.load(Ordering::Acquire) {
                return SA_AIS_OK;
            }
            for ev in events.iter().take(n.max(0) as usize) {
                let data = ev.u64;
                let handled = match data {
                    WAKE => false,
                    d if d & u64::from(u32::MAX) == 0 => tracked(&l, (d >> TRACKER_SHIFT) as u32),
                    d => received(&l, d),
                };
                if handled {
                    did += 1;
                    if one {
                        return SA_AIS_OK;
                    }
                }
            }
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return SA_AIS_ERR_LIBRARY;
            }
            if !blocking && (n <= 0 || did == 0) {
                return SA_AIS_OK;
            }
        }
    })
}

fn invoke(l: &Lib, p: Pending) {
    match p {
        Pending::Opened {
            invocation,
            handle,
            error,
        } => {
            if let Some(cb) = l.callbacks.saMsgQueueOpenCallback {
                // SAFETY: the application's callback, with the specification's arguments.
                unsafe { cb(invocation, handle, error) };
            }
        }
        Pending::Delivered { invocation, error } => {
            if let Some(cb) = l.callbacks.saMsgMessageDeliveredCallback {
                // SAFETY: as above.
                unsafe { cb(invocation, error) };
            }
        }
        Pending::Tracked {
            group,
            items,
            members,
            policy,
            error,
        } => {
            let Some(cb) = l.callbacks.saMsgQueueGroupTrackCallback else {
                return;
            };
            let mut notes: Vec<SaMsgQueueGroupNotificationT> = items
                .iter()
                .map(|(queue, change)| SaMsgQueueGroupNotificationT {
                    member: sa_name(queue),
                    change: *change,
                })
                .collect();
            let buffer = SaMsgQueueGroupNotificationBufferT {
                numberOfItems: notes.len() as u32,
                notification: if notes.is_empty() {
                    std::ptr::null_mut()
                } else {
                    notes.as_mut_ptr()
                },
                queueGroupPolicy: policy,
            };
            let name = sa_name(&group);
            // SAFETY: the application's callback; the name and the buffer live until it
            // returns (the specification: the buffer is the library's, valid in the callback).
            unsafe { cb(&name, &buffer, members, error) };
        }
    }
}

fn sa_policy(p: GroupPolicy) -> SaMsgQueueGroupPolicyT {
    match p {
        GroupPolicy::RoundRobin => 1,
        GroupPolicy::LocalRoundRobin => 2,
        GroupPolicy::LocalBestQueue => 3,
        GroupPolicy::Broadcast => 4,
    }
}

/// A track callback for tracker `id` (its fd is readable), if a change is there: the members
/// with their changes (or only those changed). A group removed is told as every member
/// removed, and damage as `SA_AIS_ERR_LIBRARY`; either ends the tracking. Nothing there: the
/// tracker re-arms its fd.
fn tracked(l: &Lib, id: u32) -> bool {
    let outcome = {
        let mut trackers = l.trackers.lock().unwrap_or_else(|e| e.into_inner());
        let Some((group, t)) = trackers.iter_mut().find(|(_, t)| t.id == id) else {
            return false; // stopped meanwhile
        };
        let policy = sa_policy(t.tracker.group().policy());
        match t.tracker.next_change(Some(Duration::ZERO)) {
            Ok(None) => return false,
            Ok(Some(change)) => {
                let members = change
                    .members
                    .iter()
                    .filter(|m| m.change != MemberChange::Removed)
                    .count() as u32;
                let items = change
                    .members
                    .iter()
                    .filter(|m| !t.changes_only || m.change != MemberChange::NoChange)
                    .map(|m| (m.member.queue.clone(), change_of(m.change)))
                    .collect();
                Ok((group.clone(), items, members, policy))
            }
            Err(GroupError::Removed { .. }) => {
                let items = t
                    .tracker
                    .current()
                    .iter()
                    .map(|m| (m.queue.clone(), SA_MSG_QUEUE_GROUP_REMOVED))
                    .collect();
                Err((group.clone(), items, policy, SA_AIS_OK))
            }
            Err(_) => Err((group.clone(), Vec::new(), policy, SA_AIS_ERR_LIBRARY)),
        }
    };
    let pending = match outcome {
        Ok((group, items, members, policy)) => Pending::Tracked {
            group,
            items,
            members,
            policy,
            error: SA_AIS_OK,
        },
        Err((group, items, policy, error)) => {
            l.untrack(&group);
            Pending::Tracked {
                group,
                items,
                members: 0,
                policy,
                error,
            }
        }
    };
    invoke(l, pending);
    true
}

fn change_of(c: MemberChange) -> u32 {
    match c {
        MemberChange::NoChange => SA_MSG_QUEUE_GROUP_NO_CHANGE,
        MemberChange::Added => SA_MSG_QUEUE_GROUP_ADDED,
        MemberChange::Removed => SA_MSG_QUEUE_GROUP_REMOVED,
    }
}

/// A received callback for queue `qh` (its ready fd fired, one-shot), if a message is there
/// for it: taken into the queue's stash, where the next get finds it. The fd is enabled again
/// once the message is got (here, if the callback got it; else by that get), or at once if
/// there was none: one callback per message.
fn received(l: &Lib, qh: SaMsgQueueHandleT) -> bool {
    let Ok(q) = queue_entry(qh) else { return false };
    let Some(fd) = q.ready else { return false };
    let enable = || epoll_enable(l.epoll.as_raw_fd(), fd, qh);
    {
        // A get under way on another thread takes the message, and enables the fd when it
        // ends: never wait for it here (review: a dispatch stalled behind a blocking get).
        let Ok(mut st) = q.state.try_lock() else {
            return false;
        };
        if st.stash.is_some() {
            return false; // told already; its get enables the fd again
        }
        match st.rx.try_recv() {
            Ok(m) => st.stash = Some(m),
            Err(RecvError::Empty) => {
                enable(); // nothing (the try re-armed the fd): quiet until the next message
                return false;
            }
            // Removed, lost, damaged: the fd would be readable for ever; it stays off (review:
            // a blocking dispatch spun on an unlinked queue). The next get says what happened.
            Err(_) => return false,
        }
    }
    if let Some(cb) = l.callbacks.saMsgMessageReceivedCallback {
        // SAFETY: the application's callback.
        unsafe { cb(qh) };
    }
    if q.state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stash
        .is_none()
    {
        enable(); // got in the callback: the next message gets its callback
    }
    true
}

/// `saMsgFinalize`: closes the handle's queues; a blocking dispatch returns.
#[no_mangle]
pub extern "C" fn saMsgFinalize(msgHandle: SaMsgHandleT) -> SaAisErrorT {
    guard(|| {
        let Some(l) = LIBS.remove(msgHandle) else {
            return SA_AIS_ERR_BAD_HANDLE;
        };
        l.finalized.store(true, Ordering::Release);
        l.poke();
        for qh in QUEUES.handles_where(|q| q.lib == msgHandle) {
            close(qh);
        }
        let groups: Vec<String> = l
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for g in groups {
            l.untrack(&g);
        }
        SA_AIS_OK
    })
}

fn attributes_of(a: &SaMsgQueueCreationAttributesT) -> Result<Attributes, SaAisErrorT> {
    if a.creationFlags & !SA_MSG_QUEUE_PERSISTENT != 0 {
        return Err(SA_AIS_ERR_BAD_FLAGS);
    }
    let mut attrs = Attributes::default();
    for (c, s) in attrs.capacity.iter_mut().zip(a.size) {
        // baton's lanes are made of 64-byte cells: rounded up.
        *c = s.max(64).div_ceil(64) * 64;
    }
    let largest = attrs.capacity.iter().copied().max().unwrap_or(4096);
    attrs.max_message = attrs
        .max_message
        .min(largest.saturating_sub(64).max(64) as u32);
    attrs.retention = if a.creationFlags & SA_MSG_QUEUE_PERSISTENT != 0 {
        None
    } else {
        Some(Duration::from_nanos(a.retentionTime.max(0) as u64))
    };
    Ok(attrs)
}

/// Opens (and with `SA_MSG_QUEUE_CREATE`, makes) a queue and takes it: the queue handle.
///
/// # Safety
///
/// `attrs` is NULL or valid.
unsafe fn open_queue(
    h: SaMsgHandleT,
    l: &Lib,
    name: String,
    attrs: *const SaMsgQueueCreationAttributesT,
    flags: SaMsgQueueOpenFlagsT,
    timeout: Duration,
) -> Result<SaMsgQueueHandleT, SaAisErrorT> {
    if flags
        & !(SA_MSG_QUEUE_CREATE
            | SA_MSG_QUEUE_RECEIVE_CALLBACK
            | SA_MSG_QUEUE_EMPTY
            | BATON_MSG_QUEUE_AT_LEAST_ONCE)
        != 0
    {
        return Err(SA_AIS_ERR_BAD_FLAGS);
    }
    if flags & SA_MSG_QUEUE_RECEIVE_CALLBACK != 0
        && l.callbacks.saMsgMessageReceivedCallback.is_none()
    {
        return Err(SA_AIS_ERR_INIT);
    }
    // SAFETY: the caller's contract.
    let attrs = unsafe { attrs.as_ref() };
    let q = if flags & SA_MSG_QUEUE_CREATE != 0 {
        let a = attributes_of(attrs.ok_or(SA_AIS_ERR_INVALID_PARAM)?)?;
        Queue::create(&l.domain, &name, &a).map_err(|e| open_error(&e))?
    } else {
        if attrs.is_some() {
            return Err(SA_AIS_ERR_INVALID_PARAM);
        }
        Queue::open(&l.domain, &name).map_err(|e| open_error(&e))?
    };
    let options = ReceiverOptions {
        standby: !timeout.is_zero(),
        timeout: Some(timeout),
        empty: flags & SA_MSG_QUEUE_EMPTY != 0,
    };
    let mut rx = q.receiver_with(options).map_err(|e| match e {
        OwnError::Busy { .. } => SA_AIS_ERR_BUSY,
        OwnError::Timeout { .. } => SA_AIS_ERR_TIMEOUT,
        OwnError::Removed { .. } => SA_AIS_ERR_NOT_EXIST,
        _ => SA_AIS_ERR_LIBRARY,
    })?;
    let ready = if flags & SA_MSG_QUEUE_RECEIVE_CALLBACK != 0 {
        Some(
            rx.ready_fd()
                .map_err(|_| SA_AIS_ERR_NO_RESOURCES)?
                .as_raw_fd(),
        )
    } else {
        None
    };
    let canceller = rx.canceller();
    let qh = QUEUES.insert(QueueEntry {
        lib: h,
        pid: std::process::id(),
        queue: q,
        canceller,
        closed: AtomicBool::new(false),
        ready,
        at_least_once: flags & BATON_MSG_QUEUE_AT_LEAST_ONCE != 0,
        state: Mutex::new(QueueState {
            rx,
            stash: None,
            in_hand: HashMap::new(),
        }),
    });
    if let Some(fd) = ready {
        if let Err(e) = epoll_add(l.epoll.as_raw_fd(), fd, qh, true) {
            QUEUES.remove(qh);
            return Err(e);
        }
    }
    if lib(h).is_err() {
        // Finalized while the open waited (review: the queue stayed owned through a handle
        // that no longer existed).
        close(qh);
        return Err(SA_AIS_ERR_BAD_HANDLE);
    }
    Ok(qh)
}

/// `saMsgQueueOpen`: a queue of the domain (`BATON_DOMAIN`), owned through the handle. A
/// queue another process has open: `SA_AIS_ERR_BUSY` with a timeout of 0; with a longer one,
/// the call waits (as a standby) for the owner to close or die.
///
/// # Safety
///
/// Pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueOpen(
    msgHandle: SaMsgHandleT,
    queueName: *const SaNameT,
    creationAttributes: *const SaMsgQueueCreationAttributesT,
    openFlags: SaMsgQueueOpenFlagsT,
    timeout: SaTimeT,
    queueHandle: *mut SaMsgQueueHandleT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        if queueHandle.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueName) });
        let timeout = tri!(timeout_of(timeout));
        // SAFETY: the caller's contract.
        let qh = tri!(unsafe {
            open_queue(msgHandle, &l, name, creationAttributes, openFlags, timeout)
        });
        // SAFETY: checked non-NULL.
        unsafe { *queueHandle = qh };
        SA_AIS_OK
    })
}

/// `saMsgQueueOpenAsync`: the open is done now; its callback comes from `saMsgDispatch`.
///
/// # Safety
///
/// Pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueOpenAsync(
    msgHandle: SaMsgHandleT,
    invocation: SaInvocationT,
    queueName: *const SaNameT,
    creationAttributes: *const SaMsgQueueCreationAttributesT,
    openFlags: SaMsgQueueOpenFlagsT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        if l.callbacks.saMsgQueueOpenCallback.is_none() {
            return SA_AIS_ERR_INIT;
        }
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueName) });
        // SAFETY: the caller's contract.
        let r = unsafe {
            open_queue(
                msgHandle,
                &l,
                name,
                creationAttributes,
                openFlags,
                Duration::ZERO,
            )
        };
        let (handle, error) = match r {
            Ok(qh) => (qh, SA_AIS_OK),
            Err(e) if e == SA_AIS_ERR_BAD_FLAGS || e == SA_AIS_ERR_INIT => return e,
            Err(e) => (0, e),
        };
        l.queue_callback(Pending::Opened {
            invocation,
            handle,
            error,
        });
        SA_AIS_OK
    })
}

fn close(qh: SaMsgQueueHandleT) -> SaAisErrorT {
    if queue_entry(qh).is_err() {
        return SA_AIS_ERR_BAD_HANDLE; // not ours (a forked child's copy), or gone
    }
    let Some(q) = QUEUES.remove(qh) else {
        return SA_AIS_ERR_BAD_HANDLE;
    };
    q.closed.store(true, Ordering::Release);
    q.canceller.cancel(); // a get blocked on it returns; one waiting for it sees `closed`
    if let (Some(fd), Some(l)) = (q.ready, LIBS.get(q.lib)) {
        // SAFETY: removes a descriptor we registered from our epoll.
        unsafe {
            libc::epoll_ctl(
                l.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }
    // The receiver goes when the last user of the entry lets it go.
    SA_AIS_OK
}

/// `saMsgQueueClose`: the queue is no longer owned; its messages stay (and a message taken
/// for a received callback and not got is given back).
#[no_mangle]
pub extern "C" fn saMsgQueueClose(queueHandle: SaMsgQueueHandleT) -> SaAisErrorT {
    guard(|| close(queueHandle))
}

/// `saMsgQueueStatusGet`.
///
/// # Safety
///
/// Pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueStatusGet(
    msgHandle: SaMsgHandleT,
    queueName: *const SaNameT,
    queueStatus: *mut SaMsgQueueStatusT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueName) });
        // SAFETY: the caller's contract.
        let Some(out) = (unsafe { queueStatus.as_mut() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        let st = tri!(Queue::inspect(&l.domain, &name).map_err(|e| open_error(&e)));
        out.creationFlags = if st.attributes.retention.is_none() {
            SA_MSG_QUEUE_PERSISTENT
        } else {
            0
        };
        out.retentionTime = st
            .attributes
            .retention
            .map_or(0, |r| r.as_nanos().min(i64::MAX as u128) as i64);
        out.closeTime = 0;
        for (u, lane) in out.saMsgQueueUsage.iter_mut().zip(st.lanes.iter()) {
            u.queueSize = lane.capacity.min(u64::from(u32::MAX)) as u32;
            u.queueUsed = lane.used;
            u.numberOfMessages = lane.messages.min(u64::from(u32::MAX)) as u32;
        }
        SA_AIS_OK
    })
}

/// `saMsgQueueRetentionTimeSet`: the queue's new retention, in force at once for every
/// process; a persistent queue has none to set (`SA_AIS_ERR_BAD_OPERATION`).
///
/// # Safety
///
/// `retentionTime` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueRetentionTimeSet(
    queueHandle: SaMsgQueueHandleT,
    retentionTime: *mut SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let q = tri!(queue_entry(queueHandle));
        // SAFETY: the caller's contract.
        let Some(&t) = (unsafe { retentionTime.as_ref() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        if t < 0 {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        if q.queue.attributes().retention.is_none() {
            return SA_AIS_ERR_BAD_OPERATION;
        }
        match q.queue.set_retention(Some(Duration::from_nanos(t as u64))) {
            Ok(()) => SA_AIS_OK,
            Err(_) => SA_AIS_ERR_INVALID_PARAM,
        }
    })
}

/// `saMsgQueueUnlink`: the queue's name goes at once; its holders get errors.
///
/// # Safety
///
/// `queueName` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueUnlink(
    msgHandle: SaMsgHandleT,
    queueName: *const SaNameT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueName) });
        l.destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        match Queue::remove(&l.domain, &name) {
            Ok(()) => SA_AIS_OK,
            Err(e) => open_error(&e),
        }
    })
}

/// Sends `payload` with `m`'s metadata to `dest`, waiting at most `timeout` for space.
fn send_to(
    dest: &Destination,
    m: &SaMsgMessageT,
    payload: &[u8],
    timeout: Duration,
) -> SaAisErrorT {
    match dest {
        Destination::Queue(q) => {
            let tx = match q.sender().with_priority(m.priority) {
                Ok(tx) => tx.with_type(i64::from(m.type_)).with_version(m.version),
                Err(e) => return send_error(&e),
            };
            let r = if timeout.is_zero() {
                tx.try_send(payload).map_err(|e| match e {
                    TrySendError::Full(_) => SendError::Timeout,
                    TrySendError::Failed(e) => e,
                })
            } else {
                tx.send_timeout(payload, timeout)
            };
            match r {
                Ok(()) => SA_AIS_OK,
                Err(e) => send_error(&e),
            }
        }
        Destination::Group(g) => {
            let tx = match g.sender().with_priority(m.priority) {
                Ok(tx) => tx.with_type(i64::from(m.type_)),
                Err(e) => return send_error(&e),
            };
            match tx.send_timeout(payload, timeout) {
                Ok(_) => SA_AIS_OK,
                Err(e) => group_error(&e),
            }
        }
    }
}

/// `saMsgMessageSend` (to a queue or a queue group).
///
/// # Safety
///
/// Pointers are NULL or valid; `message->data` holds `message->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageSend(
    msgHandle: SaMsgHandleT,
    destination: *const SaNameT,
    message: *const SaMsgMessageT,
    timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(destination) });
        // SAFETY: the caller's contract.
        let Some(m) = (unsafe { message.as_ref() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        // SAFETY: the caller's contract.
        let payload = tri!(unsafe { payload_of(m) });
        let timeout = tri!(timeout_of(timeout));
        l.send(&name, m, payload, timeout)
    })
}

/// `saMsgMessageSendAsync`: sent now without waiting for space; with
/// `SA_MSG_MESSAGE_DELIVERED_ACK`, the delivered callback (the message is in the queue, or
/// why not) comes from `saMsgDispatch`.
///
/// # Safety
///
/// As [`saMsgMessageSend`].
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageSendAsync(
    msgHandle: SaMsgHandleT,
    invocation: SaInvocationT,
    destination: *const SaNameT,
    message: *const SaMsgMessageT,
    ackFlags: SaMsgAckFlagsT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        let ack = tri!(l.ack_flag(ackFlags));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(destination) });
        // SAFETY: the caller's contract.
        let Some(m) = (unsafe { message.as_ref() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        // SAFETY: the caller's contract.
        let payload = tri!(unsafe { payload_of(m) });
        let error = l.send(&name, m, payload, Duration::ZERO);
        l.acknowledge(invocation, ack, error)
    })
}

/// `saMsgMessageGet`: the next message, into the caller's buffer or one the library allocates.
/// A buffer too small: `SA_AIS_ERR_NO_SPACE`, `size` set to what is needed, the message left
/// for the next get. A message got is gone from the queue (as the specification has it).
///
/// # Safety
///
/// Pointers are NULL or valid; `message->data` is NULL or holds `message->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageGet(
    queueHandle: SaMsgQueueHandleT,
    message: *mut SaMsgMessageT,
    sendTime: *mut SaTimeT,
    senderId: *mut SaMsgSenderIdT,
    timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let q = tri!(queue_entry(queueHandle));
        // SAFETY: the caller's contract.
        let Some(out) = (unsafe { message.as_mut() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        let timeout = tri!(timeout_of(timeout));
        // Sampled before waiting for the queue's state: a cancel or close while another get
        // holds it, or before this one's receive begins, interrupts this one too (review: a
        // second get blocked for ever after a cancel or close).
        let point = q.canceller.point();
        let interrupted = || {
            if q.closed.load(Ordering::Acquire) {
                Some(SA_AIS_ERR_BAD_HANDLE)
            } else if q.canceller.cancelled_since(point) {
                Some(SA_AIS_ERR_INTERRUPT)
            } else {
                None
            }
        };
        let mut st = q.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = st.in_hand.remove(&std::thread::current().id()) {
            // An ack refused (the queue removed, damaged, or taken over) leaves nothing to do
            // here: the receive below says what happened.
            let _ = m.ack();
        }
        let enable = || {
            if let (Some(fd), Some(l)) = (q.ready, LIBS.get(q.lib)) {
                // A dispatch that found this get under way left the fd off: on again.
                epoll_enable(l.epoll.as_raw_fd(), fd, queueHandle);
            }
        };
        let m = match st.stash.take() {
            Some(m) => {
                enable(); // the callback's message is got: the next one gets its callback
                m
            }
            None => {
                if let Some(code) = interrupted() {
                    enable(); // a dispatch that found this get under way left the fd off
                    return code;
                }
                // Interrupted by any cancel or close since `point`, even one made between the
                // look above and the receive's start (no slices: review, a blocked get woke
                // 20 times a second to look).
                let r = if timeout.is_zero() {
                    st.rx.try_recv()
                } else {
                    st.rx.recv_timeout_since(point, timeout)
                };
                enable();
                match r {
                    Ok(m) => m,
                    Err(RecvError::Interrupted) => {
                        return interrupted().unwrap_or(SA_AIS_ERR_INTERRUPT)
                    }
                    Err(e) => return recv_error(&e),
                }
            }
        };
        // SAFETY: the caller's contract.
        if let Err(e) = unsafe { fill(out, m.payload()) } {
            st.stash = Some(m); // too small a buffer: it stays for the next get
            return e;
        }
        let meta = *m.meta();
        out.type_ = meta.msg_type as u32;
        out.version = meta.version;
        out.priority = meta.priority;
        if !sendTime.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *sendTime = realtime_of(meta.sent_ns) };
        }
        let id = meta.reply_to.map_or(0, ReplyTo::to_u64);
        if id != 0 {
            if let Some(l) = LIBS.get(q.lib) {
                l.requests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, q.queue.clone());
            }
        }
        if !senderId.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *senderId = id };
        }
        if q.at_least_once {
            st.in_hand.insert(std::thread::current().id(), m); // until its next get, or the close
            return SA_AIS_OK;
        }
        match m.ack() {
            Ok(()) => SA_AIS_OK,
            Err(_) => SA_AIS_ERR_LIBRARY,
        }
    })
}

/// `saMsgMessageDataFree`: frees a buffer the library allocated for a get.
///
/// # Safety
///
/// `data` is NULL or a buffer this library allocated and did not free.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageDataFree(
    msgHandle: SaMsgHandleT,
    data: *mut c_void,
) -> SaAisErrorT {
    guard(|| {
        tri!(lib(msgHandle));
        if data.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // SAFETY: the caller's contract: ours, from malloc.
        unsafe { libc::free(data) };
        SA_AIS_OK
    })
}

/// `saMsgMessageCancel`: every get blocked on the queue handle returns `SA_AIS_ERR_INTERRUPT`.
#[no_mangle]
pub extern "C" fn saMsgMessageCancel(queueHandle: SaMsgQueueHandleT) -> SaAisErrorT {
    guard(|| {
        let q = tri!(queue_entry(queueHandle));
        q.canceller.cancel();
        SA_AIS_OK
    })
}

/// `saMsgMessageSendReceive`: a request and its one reply (see `Sender::request`).
///
/// # Safety
///
/// Pointers are NULL or valid, as for a send and a get.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageSendReceive(
    msgHandle: SaMsgHandleT,
    destination: *const SaNameT,
    sendMessage: *const SaMsgMessageT,
    receiveMessage: *mut SaMsgMessageT,
    replySendTime: *mut SaTimeT,
    timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(destination) });
        // SAFETY: the caller's contract.
        let (Some(m), Some(out)) = (unsafe { sendMessage.as_ref() }, unsafe {
            receiveMessage.as_mut()
        }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        // SAFETY: the caller's contract.
        let payload = tri!(unsafe { payload_of(m) });
        let timeout = tri!(timeout_of(timeout));
        let reply = match tri!(l.destination(&name)) {
            Destination::Queue(q) => {
                let tx = match q.sender().with_priority(m.priority) {
                    Ok(tx) => tx.with_type(i64::from(m.type_)).with_version(m.version),
                    Err(e) => return send_error(&e),
                };
                tri!(tx.request(payload, timeout).map_err(|e| request_error(&e)))
            }
            Destination::Group(g) => {
                let tx = match g.sender().with_priority(m.priority) {
                    Ok(tx) => tx.with_type(i64::from(m.type_)),
                    Err(e) => return send_error(&e),
                };
                tri!(tx.request(payload, timeout).map_err(|e| group_error(&e))).1
            }
        };
        // SAFETY: the caller's contract.
        tri!(unsafe { fill(out, reply.payload()) });
        out.type_ = reply.msg_type() as u32;
        if !replySendTime.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *replySendTime = realtime_of(reply.sent_ns()) };
        }
        SA_AIS_OK
    })
}

/// `saMsgMessageReply`: the one reply to a request got by this library handle.
///
/// # Safety
///
/// Pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageReply(
    msgHandle: SaMsgHandleT,
    replyMessage: *const SaMsgMessageT,
    senderId: *const SaMsgSenderIdT,
    _timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let (Some(m), Some(&id)) = (unsafe { replyMessage.as_ref() }, unsafe {
            senderId.as_ref()
        }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        // SAFETY: the caller's contract.
        let payload = tri!(unsafe { payload_of(m) });
        let q = l
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let Some(q) = q else {
            return SA_AIS_ERR_NOT_EXIST;
        };
        match q.reply_with(
            ReplyTo::from_u64(id),
            i64::from(m.type_),
            m.version,
            payload,
        ) {
            Ok(()) => SA_AIS_OK,
            Err(ReplyError::TooBig { .. }) => SA_AIS_ERR_TOO_BIG,
            Err(_) => SA_AIS_ERR_NOT_EXIST,
        }
    })
}

/// `saMsgMessageReplyAsync`: the reply is written into the requester's box at once (a reply
/// never waits); with `SA_MSG_MESSAGE_DELIVERED_ACK` its delivered callback comes from
/// `saMsgDispatch`.
///
/// # Safety
///
/// Pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgMessageReplyAsync(
    msgHandle: SaMsgHandleT,
    invocation: SaInvocationT,
    replyMessage: *const SaMsgMessageT,
    senderId: *const SaMsgSenderIdT,
    ackFlags: SaMsgAckFlagsT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        let ack = tri!(l.ack_flag(ackFlags));
        // SAFETY: the caller's contract.
        let error = unsafe { saMsgMessageReply(msgHandle, replyMessage, senderId, 0) };
        if error == SA_AIS_ERR_INVALID_PARAM {
            return error; // the call's own mistake: said now, not in a callback
        }
        l.acknowledge(invocation, ack, error)
    })
}

/// `saMsgMetadataSizeGet`: what a message costs in a queue beyond its payload (its record
/// header, in 64-byte cells: 32 bytes, rounded up with the payload).
///
/// # Safety
///
/// `metadataSize` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgMetadataSizeGet(
    msgHandle: SaMsgHandleT,
    metadataSize: *mut u32,
) -> SaAisErrorT {
    guard(|| {
        tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let Some(out) = (unsafe { metadataSize.as_mut() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        *out = 32;
        SA_AIS_OK
    })
}

/// `SaLimitValueT`.
#[repr(C)]
pub union SaLimitValueT {
    pub int64Value: i64,
    pub uint64Value: u64,
    pub timeValue: SaTimeT,
    pub floatValue: f32,
    pub doubleValue: f64,
}

/// `saMsgLimitGet`: baton's limits (`SA_MSG_MAX_NUM_QUEUES_ID` and `_GROUPS_ID` have none but
/// memory: `SA_AIS_ERR_NOT_SUPPORTED`).
///
/// # Safety
///
/// `limitValue` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgLimitGet(
    msgHandle: SaMsgHandleT,
    limitId: u32,
    limitValue: *mut SaLimitValueT,
) -> SaAisErrorT {
    guard(|| {
        tri!(lib(msgHandle));
        if limitValue.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // A lane holds at most 2^24 cells of 64 bytes (baton-ring's MAX_LANE_CELLS).
        const LANE_BYTES: u64 = (1 << 24) * 64;
        let v: u64 = match limitId {
            1 => LANE_BYTES,
            2 => 4 * LANE_BYTES,
            5 => 64, // a group's members
            6 | 7 => u64::from(Attributes::MAX_MESSAGE_LIMIT),
            3 | 4 => return SA_AIS_ERR_NOT_SUPPORTED, // no limit but memory
            _ => return SA_AIS_ERR_INVALID_PARAM,
        };
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { (*limitValue).uint64Value = v };
        SA_AIS_OK
    })
}

/// `saMsgQueueCapacityThresholdsSet`.
///
/// # Safety
///
/// `thresholds` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueCapacityThresholdsSet(
    queueHandle: SaMsgQueueHandleT,
    thresholds: *const SaMsgQueueThresholdsT,
) -> SaAisErrorT {
    guard(|| {
        let q = tri!(queue_entry(queueHandle));
        // SAFETY: the caller's contract.
        let Some(t) = (unsafe { thresholds.as_ref() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        // All four or none: a bad priority's thresholds leave the others as they were.
        let before: Vec<(u64, u64)> = (0..4u8)
            .map(|p| q.queue.capacity_thresholds(p).unwrap_or((0, 0)))
            .collect();
        for p in 0..4 {
            if q.queue
                .set_capacity_thresholds(p as u8, t.capacityReached[p], t.capacityAvailable[p])
                .is_err()
            {
                for (earlier, &(r, a)) in before.iter().enumerate().take(p) {
                    let _ = q.queue.set_capacity_thresholds(earlier as u8, r, a);
                }
                return SA_AIS_ERR_INVALID_PARAM;
            }
        }
        SA_AIS_OK
    })
}

/// `saMsgQueueCapacityThresholdsGet`.
///
/// # Safety
///
/// `thresholds` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueCapacityThresholdsGet(
    queueHandle: SaMsgQueueHandleT,
    thresholds: *mut SaMsgQueueThresholdsT,
) -> SaAisErrorT {
    guard(|| {
        let q = tri!(queue_entry(queueHandle));
        // SAFETY: the caller's contract.
        let Some(t) = (unsafe { thresholds.as_mut() }) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        for p in 0..4 {
            let (r, a) = q.queue.capacity_thresholds(p as u8).unwrap_or((0, 0));
            t.capacityReached[p] = r;
            t.capacityAvailable[p] = a;
        }
        SA_AIS_OK
    })
}

fn policy_of(p: SaMsgQueueGroupPolicyT) -> Option<GroupPolicy> {
    Some(match p {
        1 => GroupPolicy::RoundRobin,
        2 => GroupPolicy::LocalRoundRobin,
        3 => GroupPolicy::LocalBestQueue,
        4 => GroupPolicy::Broadcast,
        _ => return None,
    })
}

/// `saMsgQueueGroupCreate`.
///
/// # Safety
///
/// `queueGroupName` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupCreate(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
    queueGroupPolicy: SaMsgQueueGroupPolicyT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueGroupName) });
        let Some(policy) = policy_of(queueGroupPolicy) else {
            return SA_AIS_ERR_INVALID_PARAM;
        };
        match Group::create(&l.domain, &name, policy) {
            Ok(_) => SA_AIS_OK,
            Err(e) => group_error(&e),
        }
    })
}

/// `saMsgQueueGroupDelete`.
///
/// # Safety
///
/// `queueGroupName` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupDelete(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueGroupName) });
        match Group::remove(&l.domain, &name) {
            Ok(()) => SA_AIS_OK,
            Err(e) => group_error(&e),
        }
    })
}

/// # Safety
///
/// The names are NULL or valid.
unsafe fn member_change(
    msgHandle: SaMsgHandleT,
    group: *const SaNameT,
    queue: *const SaNameT,
    add: bool,
) -> SaAisErrorT {
    let l = tri!(lib(msgHandle));
    // SAFETY: the caller's contract.
    let (g, q) = (
        tri!(unsafe { name_of(group) }),
        tri!(unsafe { name_of(queue) }),
    );
    let r =
        Group::open(&l.domain, &g).and_then(|g| if add { g.add(&q) } else { g.remove_member(&q) });
    match r {
        Ok(()) => SA_AIS_OK,
        Err(e) => group_error(&e),
    }
}

/// `saMsgQueueGroupInsert`.
///
/// # Safety
///
/// The names are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupInsert(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
    queueName: *const SaNameT,
) -> SaAisErrorT {
    // SAFETY: the caller's contract.
    guard(|| unsafe { member_change(msgHandle, queueGroupName, queueName, true) })
}

/// `saMsgQueueGroupRemove`.
///
/// # Safety
///
/// The names are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupRemove(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
    queueName: *const SaNameT,
) -> SaAisErrorT {
    // SAFETY: the caller's contract.
    guard(|| unsafe { member_change(msgHandle, queueGroupName, queueName, false) })
}

/// `saMsgQueueGroupTrack`: with `SA_TRACK_CURRENT`, the members now, into the caller's
/// buffer (or one allocated for it: `saMsgQueueGroupNotificationFree`), or with a NULL buffer
/// through the track callback; with `SA_TRACK_CHANGES` (every member, each with its change)
/// or `SA_TRACK_CHANGES_ONLY` (only those changed), a track callback at each change, from
/// `saMsgDispatch`, until `saMsgQueueGroupTrackStop` or the group's removal (told as every
/// member removed). Tracking a group tracked already changes its flags.
///
/// # Safety
///
/// Pointers are NULL or valid; a caller's notification array holds `numberOfItems` entries.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupTrack(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
    trackFlags: u8,
    notificationBuffer: *mut SaMsgQueueGroupNotificationBufferT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueGroupName) });
        let changes = trackFlags & (SA_TRACK_CHANGES | SA_TRACK_CHANGES_ONLY);
        if trackFlags & !(SA_TRACK_CURRENT | SA_TRACK_CHANGES | SA_TRACK_CHANGES_ONLY) != 0
            || trackFlags == 0
            || changes == SA_TRACK_CHANGES | SA_TRACK_CHANGES_ONLY
        {
            return SA_AIS_ERR_BAD_FLAGS;
        }
        let current = trackFlags & SA_TRACK_CURRENT != 0;
        let to_callback = current && notificationBuffer.is_null();
        if (changes != 0 || to_callback) && l.callbacks.saMsgQueueGroupTrackCallback.is_none() {
            return SA_AIS_ERR_INIT;
        }
        if !current && !notificationBuffer.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        let g = tri!(Group::open(&l.domain, &name).map_err(|e| group_error(&e)));
        let mut tracker = tri!(g.track().map_err(|e| group_error(&e)));
        let members: Vec<String> = tracker.current().iter().map(|m| m.queue.clone()).collect();
        let policy = sa_policy(g.policy());
        if current && !to_callback {
            // SAFETY: the caller's contract (non-NULL: checked above).
            let buf = unsafe { &mut *notificationBuffer };
            // SAFETY: the caller's contract on the array.
            tri!(unsafe { fill_current(buf, &members, policy) });
        }
        if changes != 0 {
            let changes_only = changes == SA_TRACK_CHANGES_ONLY;
            let mut trackers = l.trackers.lock().unwrap_or_else(|e| e.into_inner());
            match trackers.get_mut(&name) {
                // Tracked already, the same group, and no new snapshot given: new flags, the
                // same changes to come.
                Some(t) if !current && !t.tracker.group().is_removed() => {
                    t.changes_only = changes_only;
                }
                _ => {
                    // A new baseline: the snapshot just given, or a group made again under the
                    // name (review: the old group's tracker was kept, and the new one's changes
                    // never came).
                    if let Some(mut old) = trackers.remove(&name) {
                        l.unregister(&mut old);
                    }
                    let id = l
                        .last_tracker
                        .fetch_add(1, Ordering::Relaxed)
                        .wrapping_add(1);
                    let fd = tri!(tracker.ready_fd().map_err(|e| group_error(&e))).as_raw_fd();
                    tri!(epoll_add(
                        l.epoll.as_raw_fd(),
                        fd,
                        u64::from(id) << TRACKER_SHIFT,
                        false
                    ));
                    trackers.insert(
                        name.clone(),
                        Tracking {
                            id,
                            tracker,
                            changes_only,
                        },
                    );
                }
            }
        }
        if to_callback {
            l.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(Pending::Tracked {
                    group: name,
                    members: members.len() as u32,
                    items: members
                        .into_iter()
                        .map(|m| (m, SA_MSG_QUEUE_GROUP_NO_CHANGE))
                        .collect(),
                    policy,
                    error: SA_AIS_OK,
                });
            l.poke();
        }
        SA_AIS_OK
    })
}

/// Writes `members` into the caller's notification buffer, or into one allocated for it.
///
/// # Safety
///
/// A non-NULL `buf.notification` holds `buf.numberOfItems` entries.
unsafe fn fill_current(
    buf: &mut SaMsgQueueGroupNotificationBufferT,
    members: &[String],
    policy: SaMsgQueueGroupPolicyT,
) -> Result<(), SaAisErrorT> {
    let n = members.len();
    if buf.notification.is_null() {
        let bytes = n.max(1) * std::mem::size_of::<SaMsgQueueGroupNotificationT>();
        // SAFETY: malloc; checked.
        let p = unsafe { libc::malloc(bytes) } as *mut SaMsgQueueGroupNotificationT;
        if p.is_null() {
            return Err(SA_AIS_ERR_NO_MEMORY);
        }
        buf.notification = p;
    } else if (buf.numberOfItems as usize) < n {
        buf.numberOfItems = n as u32;
        return Err(SA_AIS_ERR_NO_SPACE);
    }
    for (i, m) in members.iter().enumerate() {
        // SAFETY: the array holds at least `n` entries (allocated, or checked above).
        unsafe {
            buf.notification.add(i).write(SaMsgQueueGroupNotificationT {
                member: sa_name(m),
                change: SA_MSG_QUEUE_GROUP_NO_CHANGE,
            })
        };
    }
    buf.numberOfItems = n as u32;
    buf.queueGroupPolicy = policy;
    Ok(())
}

/// `saMsgQueueGroupTrackStop`: no more track callbacks for the group (those queued already
/// may still come); `SA_AIS_ERR_NOT_EXIST` if its changes were not tracked.
///
/// # Safety
///
/// `queueGroupName` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupTrackStop(
    msgHandle: SaMsgHandleT,
    queueGroupName: *const SaNameT,
) -> SaAisErrorT {
    guard(|| {
        let l = tri!(lib(msgHandle));
        // SAFETY: the caller's contract.
        let name = tri!(unsafe { name_of(queueGroupName) });
        if l.untrack(&name) {
            SA_AIS_OK
        } else {
            SA_AIS_ERR_NOT_EXIST
        }
    })
}

/// `saMsgQueueGroupNotificationFree`.
///
/// # Safety
///
/// `notification` is NULL or an array this library allocated and did not free.
#[no_mangle]
pub unsafe extern "C" fn saMsgQueueGroupNotificationFree(
    msgHandle: SaMsgHandleT,
    notification: *mut SaMsgQueueGroupNotificationT,
) -> SaAisErrorT {
    guard(|| {
        tri!(lib(msgHandle));
        if notification.is_null() {
            return SA_AIS_ERR_INVALID_PARAM;
        }
        // SAFETY: the caller's contract: ours, from malloc.
        unsafe { libc::free(notification.cast()) };
        SA_AIS_OK
    })
}
