//! The corosync backend: Corosync's closed process groups through libcpg, opened at run time.
//!
//! Corosync gives the semantics (agreed total order of messages and membership changes across
//! every member of every node, self-delivery, PROCDOWN and NODEDOWN); this module only carries
//! them: a connection per member, its callbacks queued in order into the member's inbox, and
//! `cpg_dispatch` run when the member receives.

use crate::{ClusterError, Delivery, Member, Reason};
use libloading::Library;
use std::collections::VecDeque;
use std::ffi::{c_int, c_uint, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

type Handle = u64;
type CsError = c_uint;
const CS_OK: CsError = 1;
const CS_ERR_TRY_AGAIN: CsError = 6;
const CS_ERR_ACCESS: CsError = 11;
const CS_ERR_NAME_TOO_LONG: CsError = 13;
const CS_ERR_EXIST: CsError = 14;
const CS_ERR_TOO_BIG: CsError = 26;
const CS_DISPATCH_ALL: c_uint = 2;
const CPG_MODEL_V1: c_uint = 1;
const CPG_TYPE_AGREED: c_uint = 2;
/// What the protocol allows in a group name.
pub(crate) const MAX_NAME: usize = 128;
const MAX_MEMBERS: usize = 128;

#[repr(C)]
struct CpgName {
    length: u32,
    value: [u8; MAX_NAME],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CpgAddress {
    nodeid: u32,
    pid: u32,
    reason: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RingId {
    nodeid: u32,
    seq: u64,
}

type DeliverFn = unsafe extern "C" fn(Handle, *const CpgName, u32, u32, *mut c_void, usize);
type ConfchgFn = unsafe extern "C" fn(
    Handle,
    *const CpgName,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
);
type TotemConfchgFn = unsafe extern "C" fn(Handle, RingId, u32, *const u32);

#[repr(C)]
struct ModelV1 {
    model: c_uint,
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
    totem_confchg: Option<TotemConfchgFn>,
    flags: c_uint,
}

/// libcpg's functions, looked up once.
struct Cpg {
    model_initialize:
        unsafe extern "C" fn(*mut Handle, c_uint, *mut ModelV1, *mut c_void) -> CsError,
    finalize: unsafe extern "C" fn(Handle) -> CsError,
    fd_get: unsafe extern "C" fn(Handle, *mut c_int) -> CsError,
    context_get: unsafe extern "C" fn(Handle, *mut *mut c_void) -> CsError,
    dispatch: unsafe extern "C" fn(Handle, c_uint) -> CsError,
    join: unsafe extern "C" fn(Handle, *const CpgName) -> CsError,
    leave: unsafe extern "C" fn(Handle, *const CpgName) -> CsError,
    mcast_joined: unsafe extern "C" fn(Handle, c_uint, *const libc::iovec, c_uint) -> CsError,
    membership_get:
        unsafe extern "C" fn(Handle, *mut CpgName, *mut CpgAddress, *mut c_int) -> CsError,
    local_get: unsafe extern "C" fn(Handle, *mut c_uint) -> CsError,
    /// Kept loaded for the life of the process: the functions above point into it.
    _library: Library,
}

/// libcpg, or why it cannot be had.
fn cpg() -> Result<&'static Cpg, ClusterError> {
    static CPG: OnceLock<Result<Cpg, String>> = OnceLock::new();
    CPG.get_or_init(|| {
        // SAFETY: loading libcpg runs its initialisers, which have no preconditions.
        let library = unsafe { Library::new("libcpg.so.4") }.map_err(|e| {
            format!("{e} (install corosync's client library: Debian's libcpg4, with corosync)")
        })?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is libcpg's function of that name, whose C signature
                // (corosync/cpg.h) the field's type repeats.
                *unsafe { library.get($name) }.map_err(|e| e.to_string())?
            };
        }
        Ok(Cpg {
            model_initialize: sym!(b"cpg_model_initialize\0"),
            finalize: sym!(b"cpg_finalize\0"),
            fd_get: sym!(b"cpg_fd_get\0"),
            context_get: sym!(b"cpg_context_get\0"),
            dispatch: sym!(b"cpg_dispatch\0"),
            join: sym!(b"cpg_join\0"),
            leave: sym!(b"cpg_leave\0"),
            mcast_joined: sym!(b"cpg_mcast_joined\0"),
            membership_get: sym!(b"cpg_membership_get\0"),
            local_get: sym!(b"cpg_local_get\0"),
            _library: library,
        })
    })
    .as_ref()
    .map_err(|e| ClusterError::NoCorosync(e.clone()))
}

/// Where a connection's callbacks put what they are given, in order.
#[derive(Default)]
struct Inbox {
    deliveries: VecDeque<Delivery>,
}

fn member(a: &CpgAddress) -> Member {
    Member {
        node: a.nodeid,
        pid: a.pid,
    }
}

fn reason(r: u32) -> Reason {
    match r {
        1 => Reason::Join,
        3 => Reason::NodeDown,
        4 => Reason::NodeUp,
        5 => Reason::ProcessDown,
        _ => Reason::Leave,
    }
}

/// The inbox of connection `handle` (its context).
///
/// # Safety
///
/// Called from a callback of `handle`, whose context is its connection's live `Inbox`.
unsafe fn inbox<'a>(handle: Handle) -> Option<&'a mut Inbox> {
    let cpg = cpg().ok()?;
    let mut ctx = std::ptr::null_mut();
    // SAFETY: a live handle (we are in its dispatch) and an out pointer.
    if unsafe { (cpg.context_get)(handle, &mut ctx) } != CS_OK || ctx.is_null() {
        return None;
    }
    // SAFETY: the context is the connection's boxed inbox, which outlives its dispatches, and
    // only the dispatching thread (the connection's user, `&mut`) touches it meanwhile.
    Some(unsafe { &mut *ctx.cast::<Inbox>() })
}

/// # Safety
///
/// `ptr` is NULL with `n` 0, or points to `n` addresses.
unsafe fn addresses<'a>(ptr: *const CpgAddress, n: usize) -> &'a [CpgAddress] {
    if ptr.is_null() || n == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(ptr, n) }
}

unsafe extern "C" fn on_deliver(
    handle: Handle,
    _group: *const CpgName,
    nodeid: u32,
    pid: u32,
    msg: *mut c_void,
    len: usize,
) {
    // Nothing may unwind into libcpg.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a callback of `handle`.
        let Some(inbox) = (unsafe { inbox(handle) }) else {
            return;
        };
        let payload = if msg.is_null() || len == 0 {
            Vec::new()
        } else {
            // SAFETY: libcpg gives `len` bytes at `msg` for the callback's length.
            unsafe { std::slice::from_raw_parts(msg as *const u8, len) }.to_vec()
        };
        inbox.deliveries.push_back(Delivery::Message {
            from: Member { node: nodeid, pid },
            payload,
        });
    });
}

#[allow(clippy::too_many_arguments)] // libcpg's signature
unsafe extern "C" fn on_confchg(
    handle: Handle,
    _group: *const CpgName,
    members: *const CpgAddress,
    n_members: usize,
    left: *const CpgAddress,
    n_left: usize,
    joined: *const CpgAddress,
    n_joined: usize,
) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a callback of `handle`.
        let Some(inbox) = (unsafe { inbox(handle) }) else {
            return;
        };
        // SAFETY: libcpg's lists, for the callback's length.
        let (members, left, joined) = unsafe {
            (
                addresses(members, n_members),
                addresses(left, n_left),
                addresses(joined, n_joined),
            )
        };
        // One event per member, those that left first; each carries the members after the
        // change corosync reported (several joins and leaves can be one change).
        let now: Vec<Member> = members.iter().map(member).collect();
        for (m, why) in left
            .iter()
            .chain(joined)
            .map(|a| (member(a), reason(a.reason)))
        {
            inbox.deliveries.push_back(Delivery::Membership {
                member: m,
                reason: why,
                members: now.clone(),
            });
        }
    });
}

/// A member of a corosync process group: one libcpg connection.
pub(crate) struct Connection {
    handle: Handle,
    name: CpgName,
    /// The connection's context: `Box::into_raw`ed, so its address stays put and every access
    /// (ours and the callbacks') goes through this one raw pointer; freed after `cpg_finalize`.
    inbox: NonNull<Inbox>,
    fd: RawFd,
    joined: bool,
    /// The process that connected: a forked child's copy of the handle must neither use nor
    /// finalize the parent's connection (libqb's rings and socket are shared with it).
    owner: u32,
    /// Readable while the inbox holds deliveries (an eventfd), and whether it is now.
    ready: OwnedFd,
    signalled: bool,
    /// What `fd()` gives: an epoll set of corosync's descriptor and `ready`.
    epoll: OwnedFd,
}

// SAFETY: the connection is used by one thread at a time (`&mut self` for everything that
// dispatches), and libcpg's handles may move between threads.
unsafe impl Send for Connection {}

fn cs(e: CsError, what: &str) -> ClusterError {
    match e {
        CS_ERR_TRY_AGAIN => ClusterError::TryAgain,
        CS_ERR_ACCESS => ClusterError::Corosync(format!(
            "{what}: access denied (corosync lets root, or users its uidgid directive names)"
        )),
        CS_ERR_NAME_TOO_LONG => ClusterError::NameTooLong { max: MAX_NAME },
        CS_ERR_EXIST => ClusterError::Corosync(format!(
            "{what}: this process is a member of that group already (corosync knows members by \
             node and pid: one membership per process and group)"
        )),
        CS_ERR_TOO_BIG => ClusterError::Corosync(format!("{what}: message too big for corosync")),
        e => ClusterError::Corosync(format!(
            "{what} failed with corosync error {e} (is corosync running, in this network namespace?)"
        )),
    }
}

/// Runs `call` until it says something other than `CS_ERR_TRY_AGAIN` (corosync busy, or still
/// starting), for at most `RETRY_FOR`.
fn retrying(mut call: impl FnMut() -> CsError) -> CsError {
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match call() {
            CS_ERR_TRY_AGAIN if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            rc => return rc,
        }
    }
}

/// `left` as `poll`'s timeout: whole milliseconds rounded up (a wait never ends early), at
/// most `c_int::MAX` (review: a fraction of a millisecond over that overflowed to a negative
/// timeout, a wait for ever).
fn poll_ms(left: Duration) -> c_int {
    left.as_nanos().div_ceil(1_000_000).min(c_int::MAX as u128) as c_int
}

/// How long a connection, join or leave is retried while corosync says "try again".
const RETRY_FOR: Duration = Duration::from_secs(10);

impl Connection {
    /// Connects to the local corosync and joins group `name`.
    pub(crate) fn join(name: &str) -> Result<Connection, ClusterError> {
        let mut conn = Connection::connect(name)?;
        let cpg = cpg()?;
        // SAFETY: a live handle and a valid name.
        let rc = retrying(|| unsafe { (cpg.join)(conn.handle, &conn.name) });
        if rc != CS_OK {
            return Err(cs(rc, "cpg_join"));
        }
        conn.joined = true;
        Ok(conn)
    }

    /// Connects to the local corosync, for group `name`, without joining it.
    pub(crate) fn connect(name: &str) -> Result<Connection, ClusterError> {
        let cpg = cpg()?;
        if name.len() > MAX_NAME {
            return Err(ClusterError::NameTooLong { max: MAX_NAME });
        }
        let mut value = [0u8; MAX_NAME];
        value[..name.len()].copy_from_slice(name.as_bytes());
        let cpg_name = CpgName {
            length: name.len() as u32,
            value,
        };
        let os = |what: &str| {
            ClusterError::Corosync(format!("{what}: {}", std::io::Error::last_os_error()))
        };
        // SAFETY: a plain syscall.
        let ready = match unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } {
            -1 => return Err(os("eventfd")),
            // SAFETY: a fresh descriptor, ours alone.
            fd => unsafe { OwnedFd::from_raw_fd(fd) },
        };
        // SAFETY: a plain syscall.
        let epoll = match unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } {
            -1 => return Err(os("epoll_create1")),
            // SAFETY: a fresh descriptor, ours alone.
            fd => unsafe { OwnedFd::from_raw_fd(fd) },
        };
        let inbox = NonNull::from(Box::leak(Box::<Inbox>::default()));
        let mut model = ModelV1 {
            model: CPG_MODEL_V1,
            deliver: Some(on_deliver),
            confchg: Some(on_confchg),
            totem_confchg: None,
            flags: 0,
        };
        let mut handle = 0;
        let ctx = inbox.as_ptr() as *mut c_void;
        // SAFETY: out pointer, the V1 model data (copied by libcpg), our inbox as context.
        let rc = retrying(|| unsafe {
            (cpg.model_initialize)(&mut handle, CPG_MODEL_V1, &mut model, ctx)
        });
        if rc != CS_OK {
            // SAFETY: leaked above, never given to libcpg (no handle).
            drop(unsafe { Box::from_raw(inbox.as_ptr()) });
            return Err(cs(rc, "connecting to corosync (cpg_model_initialize)"));
        }
        let mut conn = Connection {
            handle,
            name: cpg_name,
            inbox,
            fd: -1,
            joined: false,
            owner: std::process::id(),
            ready,
            signalled: false,
            epoll,
        };
        let mut fd: c_int = -1;
        // SAFETY: a live handle and an out pointer.
        let rc = retrying(|| unsafe { (cpg.fd_get)(handle, &mut fd) });
        if rc != CS_OK {
            return Err(cs(rc, "cpg_fd_get"));
        }
        conn.fd = fd;
        for watched in [fd, conn.ready.as_raw_fd()] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: watched as u64,
            };
            let epfd = conn.epoll.as_raw_fd();
            // SAFETY: our epoll set, a live descriptor, one event.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, watched, &mut ev) } < 0 {
                return Err(os("epoll_ctl"));
            }
        }
        Ok(conn)
    }

    /// Multicasts `payload` to the group, in agreed order; `TryAgain` while corosync's flow
    /// control holds this connection back.
    pub(crate) fn try_send(&mut self, payload: &[u8]) -> Result<(), ClusterError> {
        self.mine()?;
        let cpg = cpg()?;
        let iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut c_void,
            iov_len: payload.len(),
        };
        // SAFETY: a live handle and one iovec over a live buffer (libcpg only reads it).
        match unsafe { (cpg.mcast_joined)(self.handle, CPG_TYPE_AGREED, &iov, 1) } {
            CS_OK => Ok(()),
            rc => Err(cs(rc, "cpg_mcast_joined")),
        }
    }

    /// Runs the callbacks of everything corosync has for this member, waiting at most
    /// `timeout` for the first (`None`: as long as it takes) when none is queued.
    pub(crate) fn next(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Delivery>, ClusterError> {
        self.mine()?;
        let got = self.next_inner(timeout);
        // `fd()` stays readable while deliveries are queued.
        // SAFETY: our inbox; no dispatch runs now.
        let want = !unsafe { self.inbox.as_ref() }.deliveries.is_empty();
        if want != self.signalled {
            let mut one = 1u64;
            // SAFETY: 8 bytes to or from our eventfd.
            unsafe {
                if want {
                    libc::write(
                        self.ready.as_raw_fd(),
                        &one as *const u64 as *const c_void,
                        8,
                    );
                } else {
                    libc::read(
                        self.ready.as_raw_fd(),
                        &mut one as *mut u64 as *mut c_void,
                        8,
                    );
                }
            }
            self.signalled = want;
        }
        got
    }

    fn next_inner(&mut self, timeout: Option<Duration>) -> Result<Option<Delivery>, ClusterError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // SAFETY: our inbox; no dispatch runs now (`&mut self`).
            if let Some(d) = unsafe { self.inbox.as_mut() }.deliveries.pop_front() {
                return Ok(Some(d));
            }
            let wait_ms: c_int = match deadline {
                None => -1,
                Some(d) => poll_ms(d.saturating_duration_since(Instant::now())),
            };
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ClusterError::Corosync(format!(
                    "poll on corosync's fd: {e}"
                )));
            }
            if n > 0 {
                if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0
                    && pfd.revents & libc::POLLIN == 0
                {
                    return Err(ClusterError::Corosync(
                        "corosync closed the connection (it stopped?)".into(),
                    ));
                }
                self.dispatch()?;
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    fn dispatch(&mut self) -> Result<(), ClusterError> {
        let cpg = cpg()?;
        // SAFETY: a live handle; the callbacks reach our inbox through the context, and
        // `&mut self` keeps every other user of it away.
        match unsafe { (cpg.dispatch)(self.handle, CS_DISPATCH_ALL) } {
            CS_OK | CS_ERR_TRY_AGAIN => Ok(()),
            rc => Err(cs(rc, "cpg_dispatch")),
        }
    }

    /// The group's members now, as corosync has them.
    pub(crate) fn members(&mut self) -> Result<Vec<Member>, ClusterError> {
        self.mine()?;
        let cpg = cpg()?;
        let mut list = [CpgAddress::default(); MAX_MEMBERS];
        let mut n: c_int = MAX_MEMBERS as c_int;
        // SAFETY: a live handle, our name, a list of MAX_MEMBERS entries and its length.
        let rc =
            unsafe { (cpg.membership_get)(self.handle, &mut self.name, list.as_mut_ptr(), &mut n) };
        if rc != CS_OK {
            return Err(cs(rc, "cpg_membership_get"));
        }
        Ok(list[..(n.max(0) as usize).min(MAX_MEMBERS)]
            .iter()
            .map(member)
            .collect())
    }

    /// This node's id.
    pub(crate) fn local_node(&self) -> Result<u32, ClusterError> {
        self.mine()?;
        let cpg = cpg()?;
        let mut node: c_uint = 0;
        // SAFETY: a live handle and an out pointer.
        match unsafe { (cpg.local_get)(self.handle, &mut node) } {
            CS_OK => Ok(node),
            rc => Err(cs(rc, "cpg_local_get")),
        }
    }

    /// An epoll descriptor: readable while deliveries wait in the inbox or corosync has
    /// something for this member.
    pub(crate) fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Refuses a forked child's use of its parent's connection.
    fn mine(&self) -> Result<(), ClusterError> {
        if std::process::id() == self.owner {
            Ok(())
        } else {
            Err(ClusterError::Corosync(format!(
                "this member is process {}'s: a forked child cannot use its connection",
                self.owner
            )))
        }
    }

    /// Leaves the group (the others get a LEAVE for this member).
    pub(crate) fn leave(&mut self) -> Result<(), ClusterError> {
        if !self.joined {
            return Ok(());
        }
        self.mine()?;
        let cpg = cpg()?;
        // SAFETY: a live handle and our name.
        let rc = retrying(|| unsafe { (cpg.leave)(self.handle, &self.name) });
        if rc != CS_OK {
            return Err(cs(rc, "cpg_leave"));
        }
        self.joined = false;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            // A forked child's copy: finalizing would end the parent's membership. Leak the
            // inbox too (libcpg's copy in this process still points at it).
            return;
        }
        if let Ok(cpg) = cpg() {
            // Finalizing leaves the group too; the inbox goes after libcpg lets the handle go.
            // SAFETY: a live handle, finalized once.
            unsafe { (cpg.finalize)(self.handle) };
        }
        // SAFETY: from Box::leak in `join`; libcpg has let the handle (and its context) go.
        drop(unsafe { Box::from_raw(self.inbox.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_round_up_and_stay_positive() {
        assert_eq!(poll_ms(Duration::ZERO), 0);
        assert_eq!(poll_ms(Duration::from_nanos(1)), 1);
        assert_eq!(poll_ms(Duration::from_micros(1500)), 2);
        assert_eq!(poll_ms(Duration::from_millis(7)), 7);
        let huge = Duration::from_millis(c_int::MAX as u64 + 60_000) + Duration::from_micros(500);
        assert_eq!(poll_ms(huge), c_int::MAX);
        assert_eq!(
            poll_ms(Duration::from_millis(c_int::MAX as u64)),
            c_int::MAX
        );
        assert_eq!(poll_ms(Duration::MAX), c_int::MAX);
    }
}
