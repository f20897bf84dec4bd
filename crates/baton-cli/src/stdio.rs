//! The process's edges: standard descriptors closed at start, stop signals, and reading
//! standard input in a way a stop signal can interrupt.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering as Local}; // facade-exempt: process-local flags
use std::time::Duration;

/// Which of the standard descriptors 0, 1 and 2 were closed when the process started (bits),
/// read before Rust's runtime quietly reopens closed ones onto `/dev/null`.
static CLOSED_AT_START: AtomicU32 = AtomicU32::new(0);

extern "C" fn look_at_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Local::Relaxed);
        }
    }
}

/// Runs `look_at_standard_descriptors` before `main`, and so before the runtime's own start-up.
#[used]
#[link_section = ".init_array"]
static LOOK_BEFORE_MAIN: extern "C" fn() = look_at_standard_descriptors;

/// Whether standard output was closed when the process started: then output would go nowhere
/// (the runtime puts `/dev/null` there), and `recv` would acknowledge messages written nowhere.
pub fn stdout_closed_at_start() -> bool {
    CLOSED_AT_START.load(Local::Relaxed) & 0b010 != 0
}

/// The signal that asked the command to stop (0: none yet): SIGINT, SIGTERM or SIGHUP end a
/// command cleanly between steps, as a close, not as a crash (see [`catch_stop_signals`]).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Local::Relaxed);
    if let Some(c) = STOP_CANCEL.get() {
        c.cancel(); // async-signal-safe: an atomic add and a futex wake
    }
}

/// The receives a stop signal interrupts (see [`cancel_on_stop`]).
static STOP_CANCEL: std::sync::OnceLock<baton::Canceller> = std::sync::OnceLock::new();

/// From now on a stop signal also interrupts the receives of `canceller`'s receiver, so
/// that a receive can wait long without looking for the signal. (One per process: a command
/// receives from one queue.)
pub fn cancel_on_stop(canceller: baton::Canceller) {
    let _ = STOP_CANCEL.set(canceller);
}

/// From now on SIGINT, SIGTERM and SIGHUP set the stop flag instead of killing the process,
/// and a broken pipe is an error from `write` instead of a SIGPIPE.
pub fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a handler that only stores to an atomic (async-signal-safe); no SA_RESTART,
        // so a blocking call returns early (EINTR) and the caller looks at the flag.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    // SAFETY: ignoring SIGPIPE and SIGXFSZ: writes to a closed pipe then fail with EPIPE, and
    // writes past the file size limit with EFBIG, so that the message is given back.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // SAFETY: as above: SIGALRM only sets a flag and interrupts (see `write_stdout`).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_alarm as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGALRM, &act, std::ptr::null_mut());
    }
}

/// Set when the grace period of a record being finished after a stop signal ran out.
static ALARM: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    ALARM.store(1, Local::Relaxed);
}

/// How long a record already begun may take to be written and read after a stop signal (see
/// [`Grace`]).
pub const FINISH_GRACE_SECS: u32 = 1;

/// The stop signal received so far, if any.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Local::Relaxed) {
        0 => None,
        sig => Some(sig),
    }
}

/// The conventional exit status of a command ended by `sig`: 128 + its number (130 for
/// SIGINT, 143 for SIGTERM, 129 for SIGHUP).
pub fn signal_status(sig: i32) -> u8 {
    128u8.saturating_add(sig as u8)
}

/// How long a blocking step waits at a time, so that a stop signal is seen promptly even if it
/// arrived just before the step began to wait.
pub const STOP_CHECK: Duration = Duration::from_millis(50);

/// How long a receive waits at a time. A stop signal interrupts it at once (the handler
/// cancels it: [`cancel_on_stop`]); one that comes between the last look at the flag and the
/// start of the wait, or a reader of standard output that leaves, is seen at the end of the
/// slice. An idle `recv` wakes once a slice.
pub const RECV_SLICE: Duration = Duration::from_secs(1);

/// Standard input, read with `read(2)` directly: unlike `std::io::Stdin`, which retries a read
/// interrupted by a signal, it returns [`io::ErrorKind::Interrupted`] when a stop signal came,
/// so that `send` ends promptly while waiting for input.
pub struct RawStdin {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl RawStdin {
    pub fn new() -> RawStdin {
        RawStdin {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Fills the buffer if empty; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            if stop_signal().is_some() {
                return Err(io::ErrorKind::Interrupted.into());
            }
            // SAFETY: reading into our own buffer, within its length.
            let n = unsafe { libc::read(0, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            match n {
                0 => {
                    self.eof = true;
                    return Ok(false);
                }
                n if n > 0 => {
                    (self.start, self.end) = (0, n as usize);
                    return Ok(true);
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The next record up to `delimiter` (which is consumed, not returned), or `None` at end of
    /// input. A last record without a delimiter is returned too; an input that ends with the
    /// delimiter has no empty record after it.
    pub fn next_record(&mut self, delimiter: u8) -> io::Result<Option<Vec<u8>>> {
        let mut record = Vec::new();
        let mut any = false;
        while self.fill()? {
            any = true;
            let chunk = &self.buf[self.start..self.end];
            if let Some(i) = chunk.iter().position(|&b| b == delimiter) {
                record.extend_from_slice(&chunk[..i]);
                self.start += i + 1;
                return Ok(Some(record));
            }
            record.extend_from_slice(chunk);
            self.start = self.end;
        }
        Ok(any.then_some(record))
    }

    /// The next record if the whole of it, delimiter included, is already read; `None`
    /// otherwise (reading nothing): what can be sent now without waiting for input.
    pub fn buffered_record(&mut self, delimiter: u8) -> Option<Vec<u8>> {
        let chunk = &self.buf[self.start..self.end];
        let i = chunk.iter().position(|&b| b == delimiter)?;
        let record = chunk[..i].to_vec();
        self.start += i + 1;
        Some(record)
    }

    /// All of the rest of the input.
    pub fn rest(&mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while self.fill()? {
            all.extend_from_slice(&self.buf[self.start..self.end]);
            self.start = self.end;
        }
        Ok(all)
    }
}

/// What standard output is, for `recv`: where a message counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// A file, terminal or device: a message is delivered once written. (A pseudo-terminal
    /// cannot say what its other side read: `TIOCOUTQ` is always 0 on its slave end.)
    File,
    /// A pipe or FIFO: once its reader has read it out of the pipe.
    Pipe,
    /// A Unix stream socket: once the peer has read it out of its receive queue.
    UnixSocket,
    /// Another stream socket (TCP): once the peer's kernel has acknowledged it (what the peer
    /// application read, the kernel cannot say).
    OtherSocket,
}

/// What standard output is.
pub fn stdout_sink() -> Sink {
    let Ok(st) = nix::sys::stat::fstat(1) else {
        return Sink::File;
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => Sink::Pipe,
        libc::S_IFSOCK => {
            let stream =
                nix::sys::socket::getsockopt(&stdout_fd(), nix::sys::socket::sockopt::SockType)
                    .is_ok_and(|t| t == nix::sys::socket::SockType::Stream);
            let unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(1).is_ok();
            match (stream, unix) {
                (true, true) => Sink::UnixSocket,
                (true, false) => Sink::OtherSocket,
                // Datagrams: each write is one datagram, delivered whole or not at all.
                (false, _) => Sink::File,
            }
        }
        _ => Sink::File,
    }
}

impl Sink {
    /// Whether a message counts as delivered only once the other side has read it (or at least,
    /// for TCP, received it), so that `recv` waits for that.
    pub fn waits_for_reader(self) -> bool {
        self != Sink::File
    }
}

/// Standard output as a borrowed descriptor (for nix calls that want one).
fn stdout_fd() -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: descriptor 1 is open for the life of the process (checked at start).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(1) }
}

/// The grace a record being delivered gets after a stop signal: [`FINISH_GRACE_SECS`], counted
/// from the first stop seen once the record was begun, over its writing and (into a pipe or a
/// socket) the wait for its reader to read it. One per record; dropping it cancels the alarm.
#[derive(Debug, Default)]
pub struct Grace {
    started: bool,
}

impl Grace {
    /// Whether delivery must give up now: a stop signal came, and either nothing of the record
    /// was written yet (`begun` false) or its grace ran out. The first stop seen once the
    /// record was begun starts the grace (an alarm that interrupts a blocked write).
    fn over(&mut self, begun: bool) -> bool {
        if stop_signal().is_none() {
            return false;
        }
        if !begun || ALARM.load(Local::Relaxed) != 0 {
            return true;
        }
        if !self.started {
            self.started = true;
            ALARM.store(0, Local::Relaxed);
            // SAFETY: alarm(2) has no memory effects; SIGALRM's handler only sets a flag.
            unsafe { libc::alarm(FINISH_GRACE_SECS) };
        }
        false
    }
}

impl Drop for Grace {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: cancels the alarm, if still pending.
            unsafe { libc::alarm(0) };
        }
    }
}

/// Writes all of `bytes` (one record) to standard output with `write(2)` itself: unlike
/// `std::io::Stdout`, which retries a write interrupted by a signal, it sees a stop signal
/// even while a write blocks on a reader that does not read. A stop before the first byte
/// gives up at once; a stop in the middle of the record gives the record its [`Grace`] to
/// finish (an alarm interrupts the write after that), so that a reader that reads never sees
/// half a record, and one that does not read cannot hold us.
/// Errors: [`io::ErrorKind::Interrupted`] on a stop, [`io::ErrorKind::BrokenPipe`] when the
/// reader is gone, any other write error.
pub fn write_stdout(bytes: &[u8], grace: &mut Grace) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        if grace.over(done > 0) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let rest = &bytes[done..];
        // SAFETY: writing from a valid slice of `rest.len()` bytes.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        if n >= 0 {
            done += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether the reader at the other end of standard output (a pipe or socket) has gone away.
pub fn reader_gone() -> bool {
    let mut pfd = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout only looks.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Bytes written to standard output that its reader has not read yet: in the pipe
/// (`FIONREAD`), or, for a Unix socket, still charged to our side because the peer has not
/// taken them from its receive queue (`SIOCOUTQ`).
fn unread(sink: Sink) -> io::Result<libc::c_int> {
    let request = match sink {
        Sink::Pipe => libc::FIONREAD,
        _ => libc::TIOCOUTQ, // SIOCOUTQ
    };
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one int to a valid pointer.
    if unsafe { libc::ioctl(1, request, &mut n) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

/// Waits until the reader of standard output (a pipe, or a Unix socket) has read everything
/// written to it. Errors: [`io::ErrorKind::BrokenPipe`] when the reader went away first (what
/// it left unread was not read), [`io::ErrorKind::Interrupted`] on a stop signal whose
/// [`Grace`] ran out: a reader that goes on reading after a stop still gets its record counted
/// as read (no duplicate), one that stopped reading does not hold us past the grace.
///
/// Nothing signals "all read", so this looks: at once, then after yielding, then in `poll`
/// waits that grow to a millisecond (`poll` returns at once when the reader goes away). A
/// pipe keeps what its reader left when it closed (we still hold the other end), so an empty
/// pipe means all was read, even if the reader is gone by now. A socket drops what its peer
/// left when the peer closes, so there a gone peer is looked for first: a peer that read all
/// and closed at once may get its last message again (a duplicate, never a loss).
pub fn wait_until_read(sink: Sink, grace: &mut Grace) -> io::Result<()> {
    let mut wait_us = 0u64;
    loop {
        if sink != Sink::Pipe && reader_gone() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if unread(sink)? == 0 {
            return Ok(());
        }
        if reader_gone() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if grace.over(true) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if wait_us < 50 {
            std::thread::yield_now();
            wait_us += 1;
        } else {
            let mut pfd = libc::pollfd {
                fd: 1,
                events: 0,
                revents: 0,
            };
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: (wait_us.min(1000) * 1000) as i64,
            };
            // SAFETY: one valid pollfd; `ppoll` with a timeout in place of a sleep, woken
            // early when the reader goes away.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            wait_us = (wait_us * 2).min(1000);
        }
    }
}

/// Whether standard input was closed when the process started.
pub fn stdin_closed_at_start() -> bool {
    CLOSED_AT_START.load(Local::Relaxed) & 0b001 != 0
}
