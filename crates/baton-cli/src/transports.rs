//! The transport comparison behind `baton bench` and `benches/transports.rs`: baton and the
//! transports people would otherwise use, measured the same way, across two processes.
//!
//! Every message carries a sequence number in its first 8 bytes, checked on arrival. Every
//! transport copies the payload in and out, except baton's zero-copy mode, which writes the
//! payload into a loan and reads every byte of it in place (folding it into a checksum). The measuring process runs on
//! CPU 0, the peer (a `baton bench-serve` process) on CPU 1.
//!
//! Not part of baton's API: it is public only so that the CLI and the benchmarks share it. The
//! peer processes are whatever executable [`Session::start`] is given, run with the arguments
//! of [`Peer`]: the `baton` command, or a benchmark that hands its arguments to
//! [`Peer::run_if_asked`].
#![allow(missing_docs)]

use baton::{Attributes, Domain, Queue, Receiver, Sender};
use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32 as LocalU32, AtomicU64 as LocalU64, Ordering as Local}; // facade-exempt: benchmark-only mailboxes
use std::time::{Duration, Instant};

/// The transports compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// baton, receiver polling `try_recv`.
    BatonPolled,
    /// baton, the default blocking `recv` (spin, then futex).
    BatonBlocking,
    /// baton, a blocking `recv` that sleeps at once (`set_spin(0)`): against the futex floor.
    BatonSleep,
    /// baton, the receiver waiting in `poll` on its ready descriptor (`Receiver::ready_fd`),
    /// then `try_recv` until the queue is empty: the event-loop path.
    BatonFd,
    /// baton, `loan` and `recv_in_place` (blocking).
    BatonZeroCopy,
    /// baton's batch calls: the sender `send_batch`es runs of up to 64 messages (one claim and
    /// one commit each); the receiver polls `try_recv_batch` (up to 64 messages in place, one
    /// acknowledgement for them all). A round trip is one message each way.
    BatonBatch,
    /// baton's request/reply: the client `request`s, the server `recv`s (the default blocking
    /// receive) and `reply`s. A round trip is one request and its reply.
    BatonRequest,
    /// Two named pipes.
    Pipe,
    /// Unix domain datagram sockets.
    UnixSocket,
    /// POSIX message queues.
    PosixMq,
    /// System V message queues.
    SysvMq,
    /// A bare shared-memory mailbox, both sides spinning: the physical floor.
    ShmSpin,
    /// A bare shared-memory mailbox, both sides sleeping on a futex: the blocking floor.
    ShmFutex,
    /// A bare single-sender, single-receiver ring of fixed-size slots in shared memory, both
    /// sides spinning, each keeping its view of the other's index: the throughput floor.
    ShmRing,
    /// `shm-ring` doing the least a lane of baton must do per message: a 32-byte record
    /// header with the send time (a clock read), a length checked by the reader, the
    /// "delivered" mark stored before the message is handed out, and the acknowledgement
    /// (the head moved) after. Not a transport anyone should use (it has no recovery, no
    /// priorities, one sender): a measure of what a ring per sender could reach.
    ShmRingAcked,
    /// iceoryx2 publish-subscribe, polled.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2Polled,
    /// iceoryx2 publish-subscribe with its event service to wake the reader.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2Event,
}

impl Transport {
    /// Every transport this build has.
    pub fn all() -> Vec<Transport> {
        #[allow(unused_mut)] // extended with the iceoryx2 feature
        let mut v = vec![
            Transport::BatonPolled,
            Transport::BatonBlocking,
            Transport::BatonSleep,
            Transport::BatonFd,
            Transport::BatonZeroCopy,
            Transport::BatonBatch,
            Transport::BatonRequest,
            Transport::ShmSpin,
            Transport::ShmFutex,
            Transport::ShmRing,
            Transport::ShmRingAcked,
            Transport::Pipe,
            Transport::UnixSocket,
            Transport::PosixMq,
            Transport::SysvMq,
        ];
        #[cfg(feature = "iceoryx2")]
        v.extend([Transport::Iceoryx2Polled, Transport::Iceoryx2Event]);
        v
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::BatonPolled => "baton-polled",
            Transport::BatonBlocking => "baton-blocking",
            Transport::BatonSleep => "baton-sleep",
            Transport::BatonFd => "baton-fd",
            Transport::BatonZeroCopy => "baton-zero-copy",
            Transport::BatonBatch => "baton-batch",
            Transport::BatonRequest => "baton-request",
            Transport::Pipe => "pipe",
            Transport::UnixSocket => "unix-socket",
            Transport::PosixMq => "posix-mq",
            Transport::SysvMq => "sysv-mq",
            Transport::ShmSpin => "shm-spin",
            Transport::ShmFutex => "shm-futex",
            Transport::ShmRing => "shm-ring",
            Transport::ShmRingAcked => "shm-ring-acked",
            #[cfg(feature = "iceoryx2")]
            Transport::Iceoryx2Polled => "iceoryx2-polled",
            #[cfg(feature = "iceoryx2")]
            Transport::Iceoryx2Event => "iceoryx2-event",
        }
    }

    /// The transport of a name.
    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::all().into_iter().find(|t| t.name() == name)
    }

    /// Whether the receiver spins (polled) or sleeps (blocking).
    pub fn mode(self) -> &'static str {
        match self {
            Transport::BatonPolled
            | Transport::ShmSpin
            | Transport::ShmRing
            | Transport::ShmRingAcked => "polled",
            #[cfg(feature = "iceoryx2")]
            Transport::Iceoryx2Polled => "polled",
            Transport::BatonZeroCopy => "zero-copy",
            Transport::BatonBatch => "batch",
            Transport::BatonRequest => "request",
            _ => "blocking",
        }
    }

    /// Whether the one-way throughput run applies. iceoryx2's event path lost messages in
    /// the sequence check of this harness under backpressure (not resolved; its polled path
    /// passes), so its throughput is not reported rather than reported wrong.
    pub fn measures_throughput(self) -> bool {
        if self == Transport::BatonRequest {
            return false; // a request waits for its reply: there is no one-way stream
        }
        #[cfg(feature = "iceoryx2")]
        if self == Transport::Iceoryx2Event {
            return false;
        }
        true
    }

    /// Whether several senders may share one receiving end.
    pub fn many_senders(self) -> bool {
        !matches!(
            self,
            Transport::ShmSpin
                | Transport::ShmFutex
                | Transport::ShmRing
                | Transport::ShmRingAcked
                | Transport::BatonRequest
        ) && !self.is_iceoryx2()
    }

    fn is_iceoryx2(self) -> bool {
        #[cfg(feature = "iceoryx2")]
        if matches!(self, Transport::Iceoryx2Polled | Transport::Iceoryx2Event) {
            return true;
        }
        false
    }
}

/// One direction of a transport: sends fixed-size messages, or receives them.
pub trait Link {
    /// Sends one message (`msg.len()` is the size the link was made for).
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives one message and returns its sequence number (its first 8 bytes). Copies the
    /// payload into `buf`, except in baton's zero-copy mode, which reads it in place.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64>;
    /// Sends `msgs` in order. One at a time, unless the transport sends in batches.
    fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()> {
        msgs.iter().try_for_each(|m| self.send(m))
    }
    /// Receives at least one message and at most `max`, passing each one's sequence number to
    /// `seq`; returns how many. One at a time, unless the transport takes them in batches.
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        seq: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> io::Result<usize> {
        let _ = max;
        seq(self.recv(buf)?)?;
        Ok(1)
    }
}

fn seq_of(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Names of one benchmark run's objects: unique per measuring process and case.
#[derive(Debug, Clone)]
pub struct Names {
    /// A short unique id, `<pid>-<case>`.
    pub id: String,
}

impl Names {
    fn path(&self, what: &str) -> PathBuf {
        std::env::temp_dir().join(format!("baton-bench-{}-{what}", self.id))
    }
    fn shm(&self, what: &str) -> PathBuf {
        PathBuf::from(format!("{}/baton-bench-{}-{what}", baton::SHM_DIR, self.id))
    }
    fn domain(&self) -> Domain {
        Domain::new(&format!("bench-{}", self.id)).expect("a valid bench domain")
    }
}

/// Which side of a pair of links: the measuring client or the serving peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Creates the shared objects of a transport (the server does this, before it says ready).
pub fn setup(t: Transport, n: &Names, size: usize) -> io::Result<()> {
    match t {
        Transport::BatonPolled
        | Transport::BatonBlocking
        | Transport::BatonSleep
        | Transport::BatonFd
        | Transport::BatonZeroCopy
        | Transport::BatonBatch
        | Transport::BatonRequest => {
            let attrs = Attributes {
                capacity: [(64 * 1024).max(4 * (size as u64 + 128)); 4],
                // A request carries an 8-byte reply token in front of its payload.
                max_message: (size + 8 * usize::from(t == Transport::BatonRequest)).max(64) as u32,
                ..Default::default()
            };
            for q in ["c2s", "s2c"] {
                Queue::create(&n.domain(), q, &attrs).map_err(err)?;
            }
        }
        Transport::Pipe => {
            for p in ["c2s", "s2c"] {
                nix::unistd::mkfifo(&n.path(p), nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(err)?;
            }
        }
        Transport::ShmSpin | Transport::ShmFutex => {
            let f = std::fs::File::create(n.shm("mailbox"))?;
            f.set_len(2 * mailbox_bytes(size) as u64)?;
        }
        Transport::ShmRing | Transport::ShmRingAcked => {
            let f = std::fs::File::create(n.shm("ring"))?;
            f.set_len(2 * ring_bytes(size, t == Transport::ShmRingAcked) as u64)?;
        }
        _ => {}
    }
    Ok(())
}

/// Removes what [`setup`] and the links created.
pub fn teardown(t: Transport, n: &Names) {
    match t {
        Transport::BatonPolled
        | Transport::BatonBlocking
        | Transport::BatonSleep
        | Transport::BatonFd
        | Transport::BatonZeroCopy
        | Transport::BatonBatch
        | Transport::BatonRequest => {
            for q in ["c2s", "s2c"] {
                let _ = Queue::remove(&n.domain(), q);
            }
        }
        Transport::Pipe => {
            for p in ["c2s", "s2c"] {
                let _ = std::fs::remove_file(n.path(p));
            }
        }
        Transport::UnixSocket => {
            for p in ["server.sock", "client.sock"] {
                let _ = std::fs::remove_file(n.path(p));
            }
        }
        Transport::PosixMq => {
            for q in ["c2s", "s2c"] {
                let _ = nix::mqueue::mq_unlink(format!("/baton-bench-{}-{q}", n.id).as_str());
            }
        }
        Transport::SysvMq => {
            for q in [0, 1] {
                let id = sysv_id(n, q, false);
                if id >= 0 {
                    // SAFETY: removing a message queue by id; no memory is passed.
                    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                }
            }
        }
        Transport::ShmSpin | Transport::ShmFutex => {
            let _ = std::fs::remove_file(n.shm("mailbox"));
        }
        Transport::ShmRing | Transport::ShmRingAcked => {
            let _ = std::fs::remove_file(n.shm("ring"));
        }
        #[cfg(feature = "iceoryx2")]
        _ => {}
    }
}

/// The sending and receiving links of `side`: the client sends on c2s and receives on s2c.
pub fn open(
    t: Transport,
    n: &Names,
    side: Side,
    size: usize,
) -> io::Result<(Box<dyn Link>, Box<dyn Link>)> {
    let (out, inn) = match side {
        Side::Client => ("c2s", "s2c"),
        Side::Server => ("s2c", "c2s"),
    };
    Ok(match t {
        Transport::BatonRequest => {
            let q = Queue::open(&n.domain(), "c2s").map_err(err)?;
            match side {
                Side::Client => {
                    let reply = Rc::new(RefCell::new(None));
                    (
                        Box::new(Requester {
                            tx: q.sender(),
                            reply: reply.clone(),
                        }),
                        Box::new(ReplyInbox { reply }),
                    )
                }
                Side::Server => {
                    let pending = Rc::new(RefCell::new(None));
                    (
                        Box::new(Replier {
                            pending: pending.clone(),
                        }),
                        Box::new(RequestInbox {
                            rx: q.receiver().map_err(err)?,
                            pending,
                        }),
                    )
                }
            }
        }
        Transport::BatonPolled
        | Transport::BatonBlocking
        | Transport::BatonSleep
        | Transport::BatonFd
        | Transport::BatonZeroCopy
        | Transport::BatonBatch => {
            let tx = Queue::open(&n.domain(), out).map_err(err)?.sender();
            let mut rx = Queue::open(&n.domain(), inn)
                .map_err(err)?
                .receiver()
                .map_err(err)?;
            if t == Transport::BatonSleep {
                rx.set_spin(Duration::ZERO);
            }
            let fd = if t == Transport::BatonFd {
                Some(std::os::fd::AsRawFd::as_raw_fd(
                    &rx.ready_fd().map_err(err)?,
                ))
            } else {
                None
            };
            (Box::new(BatonTx { tx, t }), Box::new(BatonRx { rx, t, fd }))
        }
        Transport::Pipe => {
            // Open in the same order on both sides, or both block.
            let (first, second) = match side {
                Side::Client => (
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(n.path("c2s"))?,
                    std::fs::File::open(n.path("s2c"))?,
                ),
                Side::Server => (
                    std::fs::File::open(n.path("c2s"))?,
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(n.path("s2c"))?,
                ),
            };
            match side {
                Side::Client => (Box::new(Stream(first)), Box::new(Stream(second))),
                Side::Server => (Box::new(Stream(second)), Box::new(Stream(first))),
            }
        }
        Transport::UnixSocket => {
            let (me, peer) = match side {
                Side::Client => ("client.sock", "server.sock"),
                Side::Server => ("server.sock", "client.sock"),
            };
            let _ = std::fs::remove_file(n.path(me));
            let sock = std::os::unix::net::UnixDatagram::bind(n.path(me))?;
            let big = (size * 64).max(1 << 20);
            let fd = std::os::fd::AsFd::as_fd(&sock);
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &big);
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &big);
            let tx = sock.try_clone()?;
            (
                Box::new(Dgram {
                    sock: tx,
                    peer: n.path(peer),
                }),
                Box::new(Dgram {
                    sock,
                    peer: n.path(peer),
                }),
            )
        }
        Transport::PosixMq => (
            Box::new(PosixMq::open(n, out, size)?),
            Box::new(PosixMq::open(n, inn, size)?),
        ),
        Transport::SysvMq => {
            let (o, i) = match side {
                Side::Client => (0, 1),
                Side::Server => (1, 0),
            };
            (
                Box::new(SysvMq::open(n, o, size)?),
                Box::new(SysvMq::open(n, i, size)?),
            )
        }
        Transport::ShmSpin | Transport::ShmFutex => {
            let map = std::sync::Arc::new(Mailboxes::open(n, size)?);
            let (o, i) = match side {
                Side::Client => (0, 1),
                Side::Server => (1, 0),
            };
            let futex = t == Transport::ShmFutex;
            (
                Box::new(MailboxLink {
                    map: map.clone(),
                    which: o,
                    futex,
                }),
                Box::new(MailboxLink {
                    map,
                    which: i,
                    futex,
                }),
            )
        }
        Transport::ShmRing | Transport::ShmRingAcked => {
            let map = std::sync::Arc::new(Rings::open(n, size, t == Transport::ShmRingAcked)?);
            let (o, i) = match side {
                Side::Client => (0, 1),
                Side::Server => (1, 0),
            };
            (
                Box::new(RingLink::new(map.clone(), o, true)),
                Box::new(RingLink::new(map, i, false)),
            )
        }
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2Polled | Transport::Iceoryx2Event => {
            ice::open(n, out, inn, size, t == Transport::Iceoryx2Event)?
        }
    })
}

struct BatonTx {
    tx: Sender,
    t: Transport,
}

impl Link for BatonTx {
    fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()> {
        if self.t == Transport::BatonBatch {
            return self.tx.send_batch(msgs).map_err(err);
        }
        msgs.iter().try_for_each(|m| self.send(m))
    }
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self.t {
            Transport::BatonZeroCopy => {
                let mut loan = self.tx.loan(msg.len(), 3).map_err(err)?;
                loan.copy_from_slice(msg); // the producer writes its bytes in place
                loan.commit().map_err(err)
            }
            _ => self.tx.send(msg).map_err(err),
        }
    }
    fn recv(&mut self, _: &mut [u8]) -> io::Result<u64> {
        Err(err("a send link"))
    }
}

struct BatonRx {
    rx: Receiver,
    t: Transport,
    /// `baton-fd`: the receiver's ready descriptor.
    fd: Option<std::os::fd::RawFd>,
}

/// `baton-request`, the client: each send is a request; its reply waits for the next recv.
struct Requester {
    tx: baton::Sender,
    reply: Rc<RefCell<Option<Vec<u8>>>>,
}

impl Link for Requester {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if seq_of(msg) == STOP {
            return self.tx.send(msg).map_err(err); // the end: nobody replies to it
        }
        let reply = self.tx.request(msg, Duration::from_secs(10)).map_err(err)?;
        *self.reply.borrow_mut() = Some(reply.into_payload());
        Ok(())
    }
    fn recv(&mut self, _: &mut [u8]) -> io::Result<u64> {
        Err(err("a send link"))
    }
}

/// `baton-request`, the client's receiving side: the reply its request got.
struct ReplyInbox {
    reply: Rc<RefCell<Option<Vec<u8>>>>,
}

impl Link for ReplyInbox {
    fn send(&mut self, _: &[u8]) -> io::Result<()> {
        Err(err("a receive link"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let reply = self
            .reply
            .borrow_mut()
            .take()
            .ok_or_else(|| err("no reply"))?;
        buf[..reply.len()].copy_from_slice(&reply);
        Ok(seq_of(&reply))
    }
}

/// `baton-request`, the server: receives each request (the default blocking receive)...
struct RequestInbox {
    rx: Receiver,
    pending: Rc<RefCell<Option<baton::Message>>>,
}

impl Link for RequestInbox {
    fn send(&mut self, _: &[u8]) -> io::Result<()> {
        Err(err("a receive link"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let m = self.rx.recv().map_err(err)?;
        buf[..m.len()].copy_from_slice(m.payload());
        *self.pending.borrow_mut() = Some(m);
        Ok(seq_of(buf))
    }
}

/// ...and replies to it (then acknowledges it).
struct Replier {
    pending: Rc<RefCell<Option<baton::Message>>>,
}

impl Link for Replier {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let m = self
            .pending
            .borrow_mut()
            .take()
            .ok_or_else(|| err("no request to reply to"))?;
        m.reply(msg).map_err(err)?;
        m.ack().map_err(err)
    }
    fn recv(&mut self, _: &mut [u8]) -> io::Result<u64> {
        Err(err("a send link"))
    }
}

impl Link for BatonRx {
    fn send(&mut self, _: &[u8]) -> io::Result<()> {
        Err(err("a receive link"))
    }
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        seq: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> io::Result<usize> {
        if self.t == Transport::BatonBatch {
            return self.batch(buf, max, seq);
        }
        seq(self.recv(buf)?)?;
        Ok(1)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        match self.t {
            Transport::BatonBatch => loop {
                let mut seq = 0;
                match self.rx.try_recv_batch(1, |p, _| {
                    buf[..p.len()].copy_from_slice(p);
                    seq = seq_of(buf);
                }) {
                    Ok(0) => std::hint::spin_loop(),
                    Ok(_) => return Ok(seq),
                    Err(e) => return Err(err(e)),
                }
            },
            Transport::BatonPolled => loop {
                match self.rx.try_recv() {
                    Ok(m) => {
                        buf[..m.len()].copy_from_slice(m.payload());
                        return Ok(seq_of(buf));
                    }
                    Err(baton::RecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => return Err(err(e)),
                }
            },
            Transport::BatonFd => loop {
                match self.rx.try_recv() {
                    Ok(m) => {
                        buf[..m.len()].copy_from_slice(m.payload());
                        return Ok(seq_of(buf));
                    }
                    Err(baton::RecvError::Empty) => {
                        let mut p = libc::pollfd {
                            fd: self.fd.expect("baton-fd has its fd"),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; waits without a time limit.
                        if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
                            let e = io::Error::last_os_error();
                            if e.kind() != io::ErrorKind::Interrupted {
                                return Err(e);
                            }
                        }
                    }
                    Err(e) => return Err(err(e)),
                }
            },
            Transport::BatonZeroCopy => {
                let m = self.rx.recv_in_place().map_err(err)?;
                // Read every byte in place, as a consumer would (the others copy them out).
                let mut folded = 0u64;
                for c in m.payload().chunks_exact(8) {
                    folded ^= u64::from_ne_bytes(c.try_into().expect("8 bytes"));
                }
                std::hint::black_box(folded);
                Ok(seq_of(m.payload()))
            }
            _ => {
                let m = self.rx.recv().map_err(err)?;
                buf[..m.len()].copy_from_slice(m.payload());
                Ok(seq_of(buf))
            }
        }
    }
}

impl BatonRx {
    fn batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        seq: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> io::Result<usize> {
        loop {
            let mut checked = Ok(());
            let n = self
                .rx
                .try_recv_batch(max, |p, _| {
                    buf[..p.len()].copy_from_slice(p);
                    if checked.is_ok() {
                        checked = seq(seq_of(buf));
                    }
                })
                .map_err(err)?;
            checked?;
            if n > 0 {
                return Ok(n);
            }
            std::hint::spin_loop();
        }
    }
}

struct Stream<F>(F);

impl<F: Read + Write> Link for Stream<F> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.0.write_all(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        self.0.read_exact(buf)?;
        Ok(seq_of(buf))
    }
}

struct Dgram {
    sock: std::os::unix::net::UnixDatagram,
    peer: PathBuf,
}

impl Link for Dgram {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        loop {
            match self.sock.send_to(msg, &self.peer) {
                Ok(_) => return Ok(()),
                // The peer's buffer is full (or it has not bound yet): wait a little.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::ConnectionRefused =>
                {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(e) => return Err(e),
            }
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let n = self.sock.recv(buf)?;
        if n != buf.len() {
            return Err(err(format!(
                "datagram of {n} bytes, expected {}",
                buf.len()
            )));
        }
        Ok(seq_of(buf))
    }
}

struct PosixMq {
    mq: Option<nix::mqueue::MqdT>,
}

impl Drop for PosixMq {
    fn drop(&mut self) {
        // nix's `MqdT` does not close itself; an unclosed queue outlives its unlink and counts
        // against the user's RLIMIT_MSGQUEUE.
        if let Some(mq) = self.mq.take() {
            let _ = nix::mqueue::mq_close(mq);
        }
    }
}

impl PosixMq {
    fn open(n: &Names, which: &str, size: usize) -> io::Result<PosixMq> {
        use nix::mqueue::{mq_open, MQ_OFlag, MqAttr};
        let name = format!("/baton-bench-{}-{which}", n.id);
        let attr = MqAttr::new(0, 10, size as _, 0);
        let mq = mq_open(
            name.as_str(),
            MQ_OFlag::O_CREAT | MQ_OFlag::O_RDWR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            Some(&attr),
        )
        .map_err(|e| err(format!("mq_open {name} for {size}-byte messages: {e}")))?;
        Ok(PosixMq { mq: Some(mq) })
    }

    fn mq(&self) -> &nix::mqueue::MqdT {
        self.mq.as_ref().expect("open until dropped")
    }
}

impl Link for PosixMq {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        nix::mqueue::mq_send(self.mq(), msg, 0).map_err(err)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let mut prio = 0;
        nix::mqueue::mq_receive(self.mq(), buf, &mut prio).map_err(err)?;
        Ok(seq_of(buf))
    }
}

fn sysv_id(n: &Names, which: i32, create: bool) -> i32 {
    let key = (n.id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    }) & 0x3fff_fff0) as i32
        + which;
    let flags = if create {
        libc::IPC_CREAT | 0o600
    } else {
        0o600
    };
    // SAFETY: msgget takes plain integers.
    unsafe { libc::msgget(key, flags) }
}

struct SysvMq {
    id: i32,
    buf: Vec<u8>,
}

impl SysvMq {
    fn open(n: &Names, which: i32, size: usize) -> io::Result<SysvMq> {
        let id = sysv_id(n, which, true);
        if id < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SysvMq {
            id,
            buf: vec![0; size + 8],
        })
    }
}

impl Link for SysvMq {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.buf[..8].copy_from_slice(&1i64.to_ne_bytes()); // mtype
        self.buf[8..8 + msg.len()].copy_from_slice(msg);
        // SAFETY: `buf` holds an mtype and `msg.len()` bytes of text.
        let rc = unsafe { libc::msgsnd(self.id, self.buf.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(err(format!("msgsnd of {} bytes: {e}", msg.len())));
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        // SAFETY: `self.buf` has room for an mtype and `buf.len()` bytes of text.
        let n = unsafe { libc::msgrcv(self.id, self.buf.as_mut_ptr().cast(), buf.len(), 0, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.copy_from_slice(&self.buf[8..8 + buf.len()]);
        Ok(seq_of(buf))
    }
}

/// Maps the first `len` bytes of the shared file `what` (made by [`setup`]) read-write.
fn map_shared(n: &Names, what: &str, len: usize) -> io::Result<memmap2::MmapRaw> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(n.shm(what))?;
    memmap2::MmapOptions::new().len(len).map_raw(&f)
}

/// Bytes of one mailbox: a state word on its own line, then the payload.
fn mailbox_bytes(size: usize) -> usize {
    128 + size.div_ceil(128) * 128
}

/// Two single-slot mailboxes in a shared file: the simplest shared-memory transport there is.
struct Mailboxes {
    map: memmap2::MmapRaw,
    size: usize,
}

impl Mailboxes {
    fn open(n: &Names, size: usize) -> io::Result<Mailboxes> {
        let map = map_shared(n, "mailbox", 2 * mailbox_bytes(size))?;
        Ok(Mailboxes { map, size })
    }
    fn state(&self, which: usize) -> &LocalU32 {
        // SAFETY: the offset lies inside the mapping, aligned; an atomic is valid for any bits.
        unsafe { &*(self.map.as_ptr().add(which * mailbox_bytes(self.size)) as *const LocalU32) }
    }
    fn data(&self, which: usize) -> *mut u8 {
        // SAFETY: inside the mapping (`mailbox_bytes` leaves room for `size` after the state).
        unsafe {
            self.map
                .as_mut_ptr()
                .add(which * mailbox_bytes(self.size) + 128)
        }
    }
}

struct MailboxLink {
    map: std::sync::Arc<Mailboxes>,
    which: usize,
    futex: bool,
}

impl MailboxLink {
    /// Waits until the state word is `want`.
    fn wait_for(&self, want: u32) {
        let state = self.map.state(self.which);
        loop {
            let now = state.load(Local::Acquire);
            if now == want {
                return;
            }
            if self.futex {
                // SAFETY: a shared futex wait on a word inside the mapping.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        state.as_ptr(),
                        libc::FUTEX_WAIT,
                        now,
                        std::ptr::null::<libc::timespec>(),
                    )
                };
            } else {
                std::hint::spin_loop();
            }
        }
    }
    fn set(&self, v: u32) {
        let state = self.map.state(self.which);
        state.store(v, Local::Release);
        if self.futex {
            // SAFETY: a shared futex wake on a word inside the mapping.
            unsafe { libc::syscall(libc::SYS_futex, state.as_ptr(), libc::FUTEX_WAKE, 1) };
        }
    }
}

impl Link for MailboxLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.wait_for(0);
        // SAFETY: the mailbox is empty, so the reader does not touch its bytes until `set(1)`.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.map.data(self.which), msg.len())
        };
        self.set(1);
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        self.wait_for(1);
        // SAFETY: the mailbox is full, so the writer does not touch its bytes until `set(0)`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.data(self.which), buf.as_mut_ptr(), buf.len())
        };
        self.set(0);
        Ok(seq_of(buf))
    }
}

/// Bytes of the record header of `shm-ring-acked`, as in a lane of baton.
const RING_HEADER: usize = 32;

/// Bytes of one slot of a ring: the message (after its header, if `acked`), rounded up to
/// whole cache lines.
fn ring_slot_bytes(size: usize, acked: bool) -> usize {
    (size + if acked { RING_HEADER } else { 0 })
        .max(1)
        .div_ceil(64)
        * 64
}

/// Slots of a ring: the byte budget baton's lanes get in this harness (see [`setup`]).
fn ring_slots(size: usize, acked: bool) -> usize {
    ((64 * 1024).max(4 * (size + 128)) / ring_slot_bytes(size, acked)).max(4)
}

/// Bytes of one ring: the receiver's line (its index, and with `acked` its delivered mark)
/// and the sender's index, each on its own line, then the slots.
fn ring_bytes(size: usize, acked: bool) -> usize {
    128 + ring_slots(size, acked) * ring_slot_bytes(size, acked)
}

/// Two single-sender, single-receiver rings in a shared file (one per direction).
struct Rings {
    map: memmap2::MmapRaw,
    size: usize,
    /// `shm-ring-acked`: records with a header, a delivered mark and an acknowledgement.
    acked: bool,
}

impl Rings {
    fn open(n: &Names, size: usize, acked: bool) -> io::Result<Rings> {
        let map = map_shared(n, "ring", 2 * ring_bytes(size, acked))?;
        Ok(Rings { map, size, acked })
    }
    /// Word `word` of line `line` of ring `which`: line 0 is the receiver's (its index
    /// `head`, then its delivered mark), line 1 the sender's (`tail`).
    fn word(&self, which: usize, line: usize, word: usize) -> &LocalU64 {
        // SAFETY: the offset lies inside the mapping, aligned; an atomic is valid for any bits.
        unsafe {
            &*(self
                .map
                .as_ptr()
                .add(which * ring_bytes(self.size, self.acked) + line * 64 + word * 8)
                as *const LocalU64)
        }
    }
    /// The receiver's index (`head`, line 0) or the sender's (`tail`, line 1) of ring `which`.
    fn index(&self, which: usize, line: usize) -> &LocalU64 {
        self.word(which, line, 0)
    }
    fn slot(&self, which: usize, pos: u64) -> *mut u8 {
        let i = (pos % ring_slots(self.size, self.acked) as u64) as usize;
        // SAFETY: inside the mapping: slot `i` of ring `which`, `i < ring_slots`.
        unsafe {
            self.map.as_mut_ptr().add(
                which * ring_bytes(self.size, self.acked)
                    + 128
                    + i * ring_slot_bytes(self.size, self.acked),
            )
        }
    }
}

/// One end of a ring: the sender's (`pos` is its tail, `seen` its view of the head) or the
/// receiver's (`pos` its head, `seen` its view of the tail). Each side writes only its own
/// index, once per message, and reads the other's only when its view says full or empty.
struct RingLink {
    map: std::sync::Arc<Rings>,
    which: usize,
    pos: u64,
    seen: u64,
    slots: u64,
}

impl RingLink {
    fn new(map: std::sync::Arc<Rings>, which: usize, sending: bool) -> RingLink {
        let (mine, other) = if sending { (1, 0) } else { (0, 1) };
        let pos = map.index(which, mine).load(Local::Acquire);
        let seen = map.index(which, other).load(Local::Acquire);
        let slots = ring_slots(map.size, map.acked) as u64;
        RingLink {
            map,
            which,
            pos,
            seen,
            slots,
        }
    }
}

impl Link for RingLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        while self.pos - self.seen == self.slots {
            self.seen = self.map.index(self.which, 0).load(Local::Acquire);
            std::hint::spin_loop();
        }
        let slot = self.map.slot(self.which, self.pos);
        let at = if self.map.acked {
            // The header a lane writes: length, flags, type, version, pid, send time.
            let mut header = [0u8; RING_HEADER];
            header[..4].copy_from_slice(&(msg.len() as u32).to_ne_bytes());
            header[24..].copy_from_slice(&baton::monotonic_ns().to_ne_bytes());
            // SAFETY: as for the payload below; the header fits the slot.
            unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), slot, RING_HEADER) };
            RING_HEADER
        } else {
            0
        };
        // SAFETY: the slot is free (the receiver's head is past it), so the receiver does not
        // read it until the tail passes it.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(at), msg.len()) };
        self.pos += 1;
        self.map
            .index(self.which, 1)
            .store(self.pos, Local::Release);
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        while self.pos == self.seen {
            self.seen = self.map.index(self.which, 1).load(Local::Acquire);
            std::hint::spin_loop();
        }
        let slot = self.map.slot(self.which, self.pos);
        let at = if self.map.acked {
            let mut len = [0u8; 4];
            // SAFETY: the slot is filled (the tail is past it).
            unsafe { std::ptr::copy_nonoverlapping(slot, len.as_mut_ptr(), 4) };
            if u32::from_ne_bytes(len) as usize != buf.len() {
                return Err(io::Error::other("a record of the wrong length"));
            }
            // Delivered, before it is handed out (what a successor redelivers, flagged).
            self.map
                .word(self.which, 0, 1)
                .store(self.pos + 1, Local::Relaxed);
            RING_HEADER
        } else {
            0
        };
        // SAFETY: the slot is filled (the tail is past it), and the sender does not write it
        // again until the head passes it.
        unsafe { std::ptr::copy_nonoverlapping(slot.add(at), buf.as_mut_ptr(), buf.len()) };
        self.pos += 1;
        // The acknowledgement (or, for the bare ring, the slot given back).
        self.map
            .index(self.which, 0)
            .store(self.pos, Local::Release);
        Ok(seq_of(buf))
    }
}

#[cfg(feature = "iceoryx2")]
mod ice {
    use super::{err, seq_of, Link, Names};
    use iceoryx2::prelude::*;
    use std::io;

    type Pub = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
    type Sub = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

    struct IceTx {
        publisher: Pub,
        notifier: Option<iceoryx2::port::notifier::Notifier<ipc::Service>>,
        _node: Node<ipc::Service>,
    }
    struct IceRx {
        subscriber: Sub,
        listener: Option<iceoryx2::port::listener::Listener<ipc::Service>>,
        _node: Node<ipc::Service>,
    }

    pub(super) fn open(
        n: &Names,
        out: &str,
        inn: &str,
        size: usize,
        event: bool,
    ) -> io::Result<(Box<dyn Link>, Box<dyn Link>)> {
        let node = || NodeBuilder::new().create::<ipc::Service>().map_err(err);
        let name = |d: &str| -> io::Result<ServiceName> {
            format!("baton-bench/{}/{d}", n.id)
                .as_str()
                .try_into()
                .map_err(err)
        };
        let pubsub = |node: &Node<ipc::Service>, d: &str| {
            // Lossless like the others: no overflow; a full subscriber holds the publisher back.
            node.service_builder(&name(d)?)
                .publish_subscribe::<[u8]>()
                .subscriber_max_buffer_size(16)
                .enable_safe_overflow(false)
                .max_publishers(4)
                .open_or_create()
                .map_err(err)
        };
        let events = |node: &Node<ipc::Service>, d: &str| {
            node.service_builder(&name(&format!("{d}-event"))?)
                .event()
                .open_or_create()
                .map_err(err)
        };
        let tx_node = node()?;
        let publisher = pubsub(&tx_node, out)?
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err)?;
        let notifier = if event {
            Some(
                events(&tx_node, out)?
                    .notifier_builder()
                    .create()
                    .map_err(err)?,
            )
        } else {
            None
        };
        let rx_node = node()?;
        let subscriber = pubsub(&rx_node, inn)?
            .subscriber_builder()
            .create()
            .map_err(err)?;
        let listener = if event {
            Some(
                events(&rx_node, inn)?
                    .listener_builder()
                    .create()
                    .map_err(err)?,
            )
        } else {
            None
        };
        Ok((
            Box::new(IceTx {
                publisher,
                notifier,
                _node: tx_node,
            }),
            Box::new(IceRx {
                subscriber,
                listener,
                _node: rx_node,
            }),
        ))
    }

    impl Link for IceTx {
        fn send(&mut self, msg: &[u8]) -> io::Result<()> {
            let sample = self.publisher.loan_slice_uninit(msg.len()).map_err(err)?;
            let sample = sample.write_from_slice(msg);
            sample.send().map_err(err)?;
            if let Some(n) = &self.notifier {
                n.notify().map_err(err)?;
            }
            Ok(())
        }
        fn recv(&mut self, _: &mut [u8]) -> io::Result<u64> {
            Err(err("a send link"))
        }
    }

    impl Link for IceRx {
        fn send(&mut self, _: &[u8]) -> io::Result<()> {
            Err(err("a receive link"))
        }
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
            loop {
                if let Some(sample) = self.subscriber.receive().map_err(err)? {
                    buf.copy_from_slice(sample.payload());
                    return Ok(seq_of(buf));
                }
                match &self.listener {
                    Some(l) => {
                        l.blocking_wait(|_| {}).map_err(err)?;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
    }
}

/// The sequence number that ends a serve loop.
pub const STOP: u64 = u64::MAX;

/// What a `bench-serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Echo every message back until [`STOP`].
    Echo,
    /// Receive `count` messages from each of `senders` senders, checking each sender's order,
    /// then print `done`.
    Sink { senders: u32, count: u64 },
}

/// Pins the calling thread to `cpu` (best effort: a machine with one CPU runs both on it).
pub fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// The most messages a throughput sink takes in one batch (transports that batch).
const SINK_BATCH: usize = 64;

/// The peer's main loop (in the `bench-serve` process): says `ready` on standard output once
/// its links are open, then serves.
pub fn serve(t: Transport, n: &Names, size: usize, role: Role) -> io::Result<()> {
    pin(1);
    let (mut tx, mut rx) = open(t, n, Side::Server, size)?;
    let stdout = io::stdout();
    writeln!(stdout.lock(), "ready")?;
    let mut buf = vec![0u8; size];
    match role {
        Role::Echo => {
            let mut expect = 0u64;
            loop {
                let seq = rx.recv(&mut buf)?;
                if seq == STOP {
                    return Ok(());
                }
                if seq != expect {
                    return Err(err(format!("{}: got #{seq}, expected #{expect}", t.name())));
                }
                expect += 1;
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                tx.send(&buf)?;
            }
        }
        Role::Sink { senders, count } => {
            let mut next = vec![0u64; senders as usize];
            let total = count * senders as u64;
            let mut received = 0;
            while received < total {
                let max = (total - received).min(SINK_BATCH as u64) as usize;
                received += rx.recv_batch(&mut buf, max, &mut |seq| {
                    let (s, i) = ((seq >> 48) as usize, seq & ((1 << 48) - 1));
                    if next.get(s) != Some(&i) {
                        return Err(err(format!(
                            "{}: sender {s} #{i} out of order (expected #{:?}; all: {next:?})",
                            t.name(),
                            next.get(s)
                        )));
                    }
                    next[s] += 1;
                    Ok(())
                })? as u64;
            }
            writeln!(stdout.lock(), "done")?;
            Ok(())
        }
    }
}

/// A started peer and the client's links to it.
pub struct Session {
    pub t: Transport,
    pub names: Names,
    pub size: usize,
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    tx: Option<Box<dyn Link>>,
    rx: Option<Box<dyn Link>>,
    buf: Vec<u8>,
    seq: u64,
}

static CASE: LocalU64 = LocalU64::new(0);

impl Session {
    /// Sets up `t` for `size`-byte messages and starts its peer: `baton_exe bench-serve ...`.
    pub fn start(
        baton_exe: &std::path::Path,
        t: Transport,
        size: usize,
        role: Role,
    ) -> io::Result<Session> {
        let names = Names {
            id: format!(
                "{}-{}",
                std::process::id(),
                CASE.fetch_add(1, Local::Relaxed)
            ),
        };
        teardown(t, &names);
        setup(t, &names, size)?;
        let mut cmd = Command::new(baton_exe);
        cmd.args(["bench-serve", t.name(), &names.id, &size.to_string()]);
        if let Role::Sink { senders, count } = role {
            cmd.args([
                "--senders",
                &senders.to_string(),
                "--count",
                &count.to_string(),
            ]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn()?;
        let out = BufReader::new(child.stdout.take().ok_or_else(|| err("no stdout"))?);
        pin(0);
        let mut s = Session {
            t,
            names,
            size,
            child,
            out,
            tx: None,
            rx: None,
            buf: vec![0; size],
            seq: 0,
        };
        // The server opens its ends first for the transports whose open blocks (pipes); the
        // others do not mind the order.
        let (tx, rx) = open(t, &s.names, Side::Client, size)?;
        s.read_line("ready")?;
        s.tx = Some(tx);
        s.rx = Some(rx);
        Ok(s)
    }

    fn read_line(&mut self, want: &str) -> io::Result<()> {
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        if line.trim() != want {
            let _ = self.child.kill();
            let status = self.child.wait()?;
            return Err(err(format!(
                "{} peer said {:?} instead of {want} ({status})",
                self.t.name(),
                line.trim()
            )));
        }
        Ok(())
    }

    /// One round trip: send the next sequence number, wait for it to come back.
    pub fn round_trip(&mut self) -> io::Result<Duration> {
        let seq = self.seq;
        self.seq += 1;
        let start = Instant::now();
        self.buf[..8].copy_from_slice(&seq.to_le_bytes());
        let (tx, rx) = (
            self.tx.as_mut().expect("open"),
            self.rx.as_mut().expect("open"),
        );
        tx.send(&self.buf)?;
        let back = rx.recv(&mut self.buf)?;
        let took = start.elapsed();
        if back != seq {
            return Err(err(format!(
                "{}: sent #{seq}, got #{back} back",
                self.t.name()
            )));
        }
        Ok(took)
    }

    /// Ends the peer and removes the transport's objects.
    pub fn finish(mut self) -> io::Result<()> {
        let result = match self.tx.as_mut() {
            Some(tx) if self.seq != STOP => {
                self.buf[..8].copy_from_slice(&STOP.to_le_bytes());
                tx.send(&self.buf)
            }
            _ => Ok(()),
        };
        drop(self.tx.take());
        drop(self.rx.take());
        let status = wait_or_kill(&mut self.child, Duration::from_secs(5))?;
        teardown(self.t, &self.names);
        result?;
        if !status.success() {
            return Err(err(format!("{} peer failed: {status}", self.t.name())));
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        teardown(self.t, &self.names);
    }
}

fn wait_or_kill(child: &mut Child, limit: Duration) -> io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Round-trip times of `n` round trips after `warmup` unmeasured ones, sorted.
pub fn round_trips(
    baton_exe: &std::path::Path,
    t: Transport,
    size: usize,
    warmup: usize,
    n: usize,
    budget: Duration,
) -> io::Result<Vec<Duration>> {
    let mut s = Session::start(baton_exe, t, size, Role::Echo)?;
    for _ in 0..warmup {
        s.round_trip()?;
    }
    let deadline = Instant::now() + budget;
    let mut v = Vec::with_capacity(n);
    while v.len() < n && (v.len() < 100 || Instant::now() < deadline) {
        v.push(s.round_trip()?);
    }
    s.finish()?;
    v.sort_unstable();
    Ok(v)
}

/// One-way throughput: `senders` threads of this process (on CPU 0) send `count` messages
/// each; the peer (on CPU 1) receives and checks them. Returns messages per second.
pub fn throughput(
    baton_exe: &std::path::Path,
    t: Transport,
    size: usize,
    senders: u32,
    count: u64,
) -> io::Result<f64> {
    // The session's own links stay open until the end: a pipe's reader sees end-of-file once
    // no writer has it open.
    let mut s = Session::start(baton_exe, t, size, Role::Sink { senders, count })?;
    let start = Instant::now();
    std::thread::scope(|scope| -> io::Result<()> {
        let handles: Vec<_> = (0..senders)
            .map(|id| {
                let names = s.names.clone();
                scope.spawn(move || -> io::Result<()> {
                    pin(0);
                    let (mut tx, _rx) = open_sender(t, &names, size)?;
                    // Messages go in chunks of SINK_BATCH, which transports that batch send
                    // at once and the others one by one, as before.
                    let mut chunk = vec![vec![0u8; size]; SINK_BATCH];
                    let mut i = 0;
                    while i < count {
                        let n = (count - i).min(SINK_BATCH as u64) as usize;
                        for (j, buf) in chunk[..n].iter_mut().enumerate() {
                            let seq = ((id as u64) << 48) | (i + j as u64);
                            buf[..8].copy_from_slice(&seq.to_le_bytes());
                        }
                        tx.send_batch(&chunk[..n])?;
                        i += n as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| err("a sender thread panicked"))??;
        }
        Ok(())
    })?;
    s.read_line("done")?;
    let secs = start.elapsed().as_secs_f64();
    s.seq = STOP; // the sink ends by itself
    s.finish()?;
    Ok((count * senders as u64) as f64 / secs)
}

/// A sending link for a throughput sender (the receiving end of the client is not used).
fn open_sender(t: Transport, n: &Names, size: usize) -> io::Result<(Box<dyn Link>, ())> {
    Ok(match t {
        Transport::BatonPolled
        | Transport::BatonBlocking
        | Transport::BatonSleep
        | Transport::BatonFd
        | Transport::BatonZeroCopy
        | Transport::BatonBatch => (
            Box::new(BatonTx {
                tx: Queue::open(&n.domain(), "c2s").map_err(err)?.sender(),
                t,
            }),
            (),
        ),
        Transport::Pipe => (
            Box::new(Stream(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(n.path("c2s"))?,
            )),
            (),
        ),
        Transport::UnixSocket => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            let big = (size * 64).max(1 << 20);
            let fd = std::os::fd::AsFd::as_fd(&sock);
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &big);
            (
                Box::new(Dgram {
                    sock,
                    peer: n.path("server.sock"),
                }),
                (),
            )
        }
        Transport::PosixMq => (Box::new(PosixMq::open(n, "c2s", size)?), ()),
        Transport::SysvMq => (Box::new(SysvMq::open(n, 0, size)?), ()),
        _ => open(t, n, Side::Client, size).map(|(tx, _)| (tx, ()))?,
    })
}

/// Percentile `q` (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The sending processes of [`fan_in`]: `baton bench-send` runs this. Opens a sending link,
/// says `ready`, waits for a line on standard input, then sends `count` messages numbered
/// `sender << 48 | i`.
pub fn send_fan_in(
    t: Transport,
    n: &Names,
    size: usize,
    sender: u32,
    count: u64,
) -> io::Result<()> {
    let (mut tx, ()) = open_sender(t, n, size)?;
    let stdout = io::stdout();
    writeln!(stdout.lock(), "ready")?;
    let mut go = String::new();
    io::stdin().read_line(&mut go)?;
    let mut buf = vec![0u8; size];
    for i in 0..count {
        let seq = ((sender as u64) << 48) | i;
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        tx.send(&buf)?;
    }
    Ok(())
}

/// Fan-in throughput: `procs` sender *processes* (not pinned: more of them than CPUs is the
/// point) each send `count` messages into one receiver (on CPU 1), which checks every sender's
/// order. They are all started and ready before the clock starts. Returns messages per second.
pub fn fan_in(
    baton_exe: &std::path::Path,
    t: Transport,
    size: usize,
    procs: u32,
    count: u64,
) -> io::Result<f64> {
    let mut s = Session::start(
        baton_exe,
        t,
        size,
        Role::Sink {
            senders: procs,
            count,
        },
    )?;
    struct Senders(Vec<Child>);
    impl Drop for Senders {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut senders = Senders(Vec::new());
    for id in 0..procs {
        senders.0.push(
            Command::new(baton_exe)
                .args(["bench-send", t.name(), &s.names.id, &size.to_string()])
                .args(["--sender", &id.to_string(), "--count", &count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    for c in &mut senders.0 {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().ok_or_else(|| err("no stdout"))?).read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(err(format!("{} sender said {:?}", t.name(), line.trim())));
        }
    }
    let start = Instant::now();
    for c in &mut senders.0 {
        let mut stdin = c.stdin.take().ok_or_else(|| err("no stdin"))?;
        stdin.write_all(b"go\n")?;
    }
    s.read_line("done")?;
    let secs = start.elapsed().as_secs_f64();
    for c in &mut senders.0 {
        let status = wait_or_kill(c, Duration::from_secs(5))?;
        if !status.success() {
            return Err(err(format!("{} sender failed: {status}", t.name())));
        }
    }
    s.seq = STOP; // the sink ends by itself
    s.finish()?;
    Ok((count * procs as u64) as f64 / secs)
}

/// The transports with competing consumers that `baton bench --consumers` compares: baton's
/// shared queue, and N readers on one POSIX or System V message queue.
pub fn many_consumers(t: Transport) -> bool {
    matches!(
        t,
        Transport::BatonBlocking | Transport::PosixMq | Transport::SysvMq
    )
}

/// The one queue of a consumer pool, to send on or take from.
fn open_pool(t: Transport, n: &Names, size: usize) -> io::Result<Box<dyn Link>> {
    Ok(match t {
        Transport::BatonBlocking => {
            let q = Queue::open(&n.domain(), "pool").map_err(err)?;
            Box::new(BatonPool {
                tx: q.sender(),
                consumer: None,
                q,
            })
        }
        Transport::PosixMq => Box::new(PosixMq::open(n, "pool", size)?),
        Transport::SysvMq => Box::new(SysvMq::open(n, 2, size)?),
        _ => return Err(err(format!("{} has no competing consumers", t.name()))),
    })
}

/// A shared baton queue: sends, or takes as one of its consumers.
struct BatonPool {
    q: Queue,
    tx: Sender,
    consumer: Option<baton::Consumer>,
}

impl Link for BatonPool {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.send(msg).map_err(err)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        if self.consumer.is_none() {
            let mut c = self.q.consumer().map_err(err)?;
            if std::env::var_os("BATON_BENCH_NOSPIN").is_some() {
                c.set_spin(Duration::ZERO);
            }
            self.consumer = Some(c);
        }
        let c = self.consumer.as_mut().expect("made above");
        let m = c.recv().map_err(err)?;
        buf[..m.len()].copy_from_slice(m.payload());
        Ok(seq_of(buf))
    }
}

/// The sequence number that tells a consumer of the pool benchmark to stop.
const POOL_STOP: u64 = u64::MAX;

/// A consumer process of [`pool_throughput`]: `baton bench-consume` runs this. Says `ready`,
/// waits for a line on standard input, takes messages (sleeping `work_us` after each, its
/// "work") until a stop message, and prints how many it took.
pub fn consume_pool(t: Transport, n: &Names, size: usize, work_us: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments: a 1 ns timer slack, so that a 20 µs sleep is one.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    let mut link = open_pool(t, n, size)?;
    let stdout = io::stdout();
    writeln!(stdout.lock(), "ready")?;
    let mut go = String::new();
    io::stdin().read_line(&mut go)?;
    let mut buf = vec![0u8; size];
    let mut taken = 0u64;
    loop {
        if link.recv(&mut buf)? == POOL_STOP {
            break;
        }
        taken += 1;
        if work_us > 0 {
            std::thread::sleep(Duration::from_micros(work_us));
        }
    }
    writeln!(stdout.lock(), "{taken}")?;
    Ok(())
}

/// Consumer-pool throughput: `consumers` processes (not pinned) take `count` messages of
/// `size` bytes from one queue, each sleeping `work_us` per message; this process sends them
/// (and then one stop message per consumer) as fast as the queue takes them. All consumers
/// are ready before the clock starts; it stops when the last has taken its stop message.
/// Returns messages per second.
pub fn pool_throughput(
    baton_exe: &std::path::Path,
    t: Transport,
    size: usize,
    consumers: u32,
    count: u64,
    work_us: u64,
) -> io::Result<f64> {
    static CASE: LocalU32 = LocalU32::new(0);
    let n = Names {
        id: format!(
            "{}-pool{}",
            std::process::id(),
            CASE.fetch_add(1, Local::Relaxed)
        ),
    };
    struct Cleanup(Transport, Names, Vec<Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &mut self.2 {
                let _ = c.kill();
                let _ = c.wait();
            }
            match self.0 {
                Transport::BatonBlocking => {
                    let _ = Queue::remove(&self.1.domain(), "pool");
                }
                Transport::PosixMq => {
                    let _ =
                        nix::mqueue::mq_unlink(format!("/baton-bench-{}-pool", self.1.id).as_str());
                }
                Transport::SysvMq => {
                    let id = sysv_id(&self.1, 2, false);
                    if id >= 0 {
                        // SAFETY: removing a message queue by id; no memory is passed.
                        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                    }
                }
                _ => {}
            }
        }
    }
    if t == Transport::BatonBlocking {
        let attrs = Attributes {
            shared: true,
            capacity: [64 * 1024; 4],
            max_message: size.max(64) as u32,
            ..Default::default()
        };
        Queue::create(&n.domain(), "pool", &attrs).map_err(err)?;
    }
    let mut run = Cleanup(t, n.clone(), Vec::new());
    let mut tx = open_pool(t, &n, size)?;
    for _ in 0..consumers {
        run.2.push(
            Command::new(baton_exe)
                .args(["bench-consume", t.name(), &n.id, &size.to_string()])
                .args(["--work-us", &work_us.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let mut outs = Vec::new();
    for c in &mut run.2 {
        let mut out = BufReader::new(c.stdout.take().ok_or_else(|| err("no stdout"))?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(err(format!("{} consumer said {:?}", t.name(), line.trim())));
        }
        outs.push(out);
    }
    let start = Instant::now();
    for c in &mut run.2 {
        let mut stdin = c.stdin.take().ok_or_else(|| err("no stdin"))?;
        stdin.write_all(b"go\n")?;
    }
    let mut buf = vec![0u8; size];
    for i in 0..count {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        tx.send(&buf)?;
    }
    buf[..8].copy_from_slice(&POOL_STOP.to_le_bytes());
    for _ in 0..consumers {
        tx.send(&buf)?;
    }
    let mut taken = 0u64;
    for out in &mut outs {
        let mut line = String::new();
        out.read_line(&mut line)?;
        taken += line
            .trim()
            .parse::<u64>()
            .map_err(|_| err(format!("{} consumer said {:?}", t.name(), line.trim())))?;
    }
    let secs = start.elapsed().as_secs_f64();
    for c in &mut run.2 {
        let status = wait_or_kill(c, Duration::from_secs(5))?;
        if !status.success() {
            return Err(err(format!("{} consumer failed: {status}", t.name())));
        }
    }
    if taken != count {
        return Err(err(format!(
            "{} consumers took {taken} of {count}",
            t.name()
        )));
    }
    Ok(count as f64 / secs)
}

/// The floor of [`pool_throughput`] with work per message: `threads` threads of this process
/// that only sleep `work_us` (with the consumers' 1 ns timer slack) for their share of
/// `count` "messages", with no queue at all. Returns "messages" per second: what the kernel
/// lets that many sleepers do on this machine, which no transport can beat.
pub fn sleep_floor(threads: u32, count: u64, work_us: u64) -> io::Result<f64> {
    let share = count / u64::from(threads.max(1));
    let start = Instant::now();
    let sleepers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                // SAFETY: prctl with integer arguments, as in `consume_pool`.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
                for _ in 0..share {
                    std::thread::sleep(Duration::from_micros(work_us));
                }
            })
        })
        .collect();
    for s in sleepers {
        s.join().map_err(|_| err("a sleeper panicked"))?;
    }
    Ok((share * u64::from(threads.max(1))) as f64 / start.elapsed().as_secs_f64())
}

/// The peer processes of the comparison, as command-line subcommands: `baton bench-serve` and
/// `baton bench-send` (hidden), or the same arguments given to a benchmark executable.
#[derive(Debug, clap::Subcommand)]
pub enum Peer {
    /// A consumer process of `baton bench --consumers` (internal).
    #[command(hide = true)]
    BenchConsume {
        transport: String,
        id: String,
        size: usize,
        #[arg(long, default_value_t = 0)]
        work_us: u64,
    },
    /// A sending process of `baton bench --fan-in` (internal).
    #[command(hide = true)]
    BenchSend {
        transport: String,
        id: String,
        size: usize,
        #[arg(long)]
        sender: u32,
        #[arg(long)]
        count: u64,
    },
    /// The peer process of `baton bench` (internal).
    #[command(hide = true)]
    BenchServe {
        transport: String,
        id: String,
        size: usize,
        #[arg(long)]
        senders: Option<u32>,
        #[arg(long)]
        count: Option<u64>,
    },
}

/// A command line that is only a [`Peer`].
#[derive(clap::Parser)]
struct PeerCommand {
    #[command(subcommand)]
    peer: Peer,
}

impl Peer {
    /// Runs the peer.
    ///
    /// # Errors
    ///
    /// An unknown transport name (`InvalidInput`), or what the transport failed with.
    pub fn run(self) -> io::Result<()> {
        let named = |name: &str| {
            Transport::from_name(name).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown transport {name:?}"),
                )
            })
        };
        match self {
            Peer::BenchSend {
                transport,
                id,
                size,
                sender,
                count,
            } => send_fan_in(named(&transport)?, &Names { id }, size, sender, count),
            Peer::BenchConsume {
                transport,
                id,
                size,
                work_us,
            } => consume_pool(named(&transport)?, &Names { id }, size, work_us),
            Peer::BenchServe {
                transport,
                id,
                size,
                senders,
                count,
            } => {
                let role = match (senders, count) {
                    (Some(senders), Some(count)) => Role::Sink { senders, count },
                    _ => Role::Echo,
                };
                serve(named(&transport)?, &Names { id }, size, role)
            }
        }
    }

    /// For an executable that serves as its own peer (a benchmark): if this process was started
    /// as a peer (its first argument is `bench-serve` or `bench-send`), runs it and exits.
    pub fn run_if_asked() {
        let first = std::env::args_os().nth(1);
        if !first.is_some_and(|a| a == "bench-serve" || a == "bench-send" || a == "bench-consume") {
            return;
        }
        let code = match <PeerCommand as clap::Parser>::try_parse() {
            Ok(c) => match c.peer.run() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("peer: {e}");
                    1
                }
            },
            Err(e) => {
                eprintln!("{e}");
                2
            }
        };
        std::process::exit(code);
    }
}
