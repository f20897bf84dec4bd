//! # baton-tokio
//!
//! [baton](https://docs.rs/baton) queues in tokio programs: `recv().await` for an owner or a
//! consumer, `send().await` that waits for space, `request().await` that waits for the reply.
//! Each waits on one of baton's ready descriptors (`Receiver::ready_fd`,
//! `Consumer::ready_fd`, `Sender::space_fd`, `PendingRequest::ready_fd`) registered with
//! tokio's reactor: no thread of the runtime ever blocks, and a task that waits costs no CPU.
//!
//! **Cancel safety.** Every future here is cancel safe: dropping one (a `tokio::select!` that
//! took another branch, a `timeout`) never loses or duplicates a message.
//! - [`AsyncReceiver::recv`] and [`AsyncConsumer::recv`] take a message only in the poll that
//!   returns it: a future dropped before has taken nothing.
//! - [`AsyncSender::send`] sends in the poll that returns `Ok`: a future dropped before has
//!   sent nothing.
//! - [`AsyncSender::request`]: a future dropped after its request was sent gives the reply
//!   box back; the request stays sent (it may be received, and its reply is refused to its
//!   replier and counted, as for a request that timed out).
//!
//! ```no_run
//! use baton::{Attributes, Domain, Queue};
//! use baton_tokio::AsyncReceiver;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let domain = Domain::new("example")?;
//! let q = Queue::create(&domain, "jobs", &Attributes::default())?;
//! let mut rx = AsyncReceiver::new(q.receiver()?)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! loop {
//!     tokio::select! {
//!         m = rx.recv() => println!("job {:?}", m?.payload()),
//!         conn = listener.accept() => println!("connection from {}", conn?.1),
//!     }
//! }
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use baton::{
    Consumer, Message, PendingRequest, Queue, RecvError, Reply, RequestError, SendError, Sender,
    SpaceFd, TrySendError,
};
use std::os::fd::{BorrowedFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// Registers a copy of a baton handle's ready descriptor with tokio's reactor (a copy: the
/// registration then owns what it watches, whatever the handle does with its own).
/// Outside a tokio runtime, or in one built without I/O: `Unsupported`, not tokio's panic.
fn register(fd: BorrowedFd<'_>) -> std::io::Result<AsyncFd<OwnedFd>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(std::io::ErrorKind::Unsupported.into());
    }
    let owned = fd.try_clone_to_owned()?;
    // tokio has no question for "is I/O enabled?": it panics in `register` (review). That
    // panic is caught here, on this thread, before anything was registered.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `owned` is a descriptor of our own, open (and the same) until the `AsyncFd`
        // that takes it is dropped.
        unsafe { AsyncFd::register(owned) }.map_err(|e| e.into_parts().1)
    }))
    .unwrap_or_else(|_| Err(std::io::ErrorKind::Unsupported.into()))
}

fn io_kind(e: std::io::Error) -> std::io::ErrorKind {
    e.kind()
}

/// Receives with `try_recv` until it finds nothing, then waits for `fd` (a receiver's or a
/// consumer's ready descriptor, which that empty receive re-armed), and again. A message is
/// taken only in the poll that returns it: cancel safe.
async fn recv_on(
    fd: &AsyncFd<OwnedFd>,
    mut try_recv: impl FnMut() -> Result<Message, RecvError>,
) -> Result<Message, RecvError> {
    loop {
        match try_recv() {
            Err(RecvError::Empty) => {}
            other => return other,
        }
        let mut ready = fd
            .readable()
            .await
            .map_err(|e| RecvError::NoHelper(io_kind(e)))?;
        ready.clear_ready();
    }
}

/// A queue's [`baton::Receiver`] whose receives are awaited.
#[derive(Debug)]
pub struct AsyncReceiver {
    /// A copy of the receiver's ready descriptor, registered with tokio.
    fd: AsyncFd<OwnedFd>,
    rx: baton::Receiver,
}

impl AsyncReceiver {
    /// Wraps `rx`, registering its ready descriptor with the current tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`baton::Receiver::ready_fd`]; [`RecvError::NoHelper`] if tokio cannot register the
    /// descriptor: `Unsupported` outside a tokio runtime (call it from a task, or inside
    /// `Runtime::enter`).
    pub fn new(mut rx: baton::Receiver) -> Result<AsyncReceiver, RecvError> {
        let fd = register(rx.ready_fd()?).map_err(|e| RecvError::NoHelper(io_kind(e)))?;
        Ok(AsyncReceiver { fd, rx })
    }

    /// The next message: at once if one waits, else when one comes. Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`baton::Receiver::try_recv`], but never [`RecvError::Empty`].
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        recv_on(&self.fd, || self.rx.try_recv()).await
    }

    /// The receiver, for its other calls (a receive that finds the queue empty re-arms the
    /// descriptor as it should).
    pub fn get_mut(&mut self) -> &mut baton::Receiver {
        &mut self.rx
    }

    /// The receiver back.
    pub fn into_inner(self) -> baton::Receiver {
        self.rx
    }
}

/// A shared queue's [`Consumer`] whose receives are awaited.
#[derive(Debug)]
pub struct AsyncConsumer {
    fd: AsyncFd<OwnedFd>,
    consumer: Consumer,
}

impl AsyncConsumer {
    /// Wraps `consumer` (give it its filter first), registering its ready descriptor with the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`Consumer::ready_fd`]; [`RecvError::NoHelper`] if tokio cannot register it.
    pub fn new(mut consumer: Consumer) -> Result<AsyncConsumer, RecvError> {
        let fd = register(consumer.ready_fd()?).map_err(|e| RecvError::NoHelper(io_kind(e)))?;
        Ok(AsyncConsumer { fd, consumer })
    }

    /// The next message this consumer takes: at once if one waits, else when one comes.
    /// Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Consumer::try_recv`], but never [`RecvError::Empty`].
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        recv_on(&self.fd, || self.consumer.try_recv()).await
    }

    /// The consumer back.
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }
}

/// A [`Sender`] whose sends wait for space, and requests for replies, without blocking.
#[derive(Debug)]
pub struct AsyncSender {
    /// Made at the first full lane.
    space: Option<(AsyncFd<OwnedFd>, SpaceFd)>,
    tx: Sender,
}

impl AsyncSender {
    /// Wraps `tx` (with its priority, type and version).
    pub fn new(tx: Sender) -> AsyncSender {
        AsyncSender { space: None, tx }
    }

    /// A sender to `q` at priority 3.
    pub fn to(q: &Queue) -> AsyncSender {
        AsyncSender::new(q.sender())
    }

    /// Waits for space to be freed after the last [`SpaceFd::arm`].
    async fn space_freed(&mut self) -> Result<(), SendError> {
        let (fd, _) = self.space.as_ref().expect("armed before");
        let mut ready = fd
            .readable()
            .await
            .map_err(|e| SendError::NoSpaceFd(io_kind(e)))?;
        ready.clear_ready();
        Ok(())
    }

    /// Arms the space descriptor (made the first time, and again in a forked child), after
    /// a full lane and before the try that decides whether to wait.
    fn arm(&mut self) -> Result<(), SendError> {
        loop {
            if self.space.is_none() {
                let space = self.tx.space_fd()?;
                let fd = register(space.fd()).map_err(|e| SendError::NoSpaceFd(io_kind(e)))?;
                self.space = Some((fd, space));
            }
            match self.space.as_ref().expect("just made").1.arm() {
                Err(SendError::ForkedCopy) => self.space = None, // the parent's: a new one
                other => return other,
            }
        }
    }

    /// Sends `payload`, waiting for space while the lane is full. Cancel safe: sent if and
    /// only if it returned `Ok`.
    ///
    /// # Errors
    ///
    /// As [`Sender::try_send`], but never "full".
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), SendError> {
        loop {
            // Try first; arm only after a full lane (an armed descriptor's thread sleeps as a
            // waiting sender, which the receiver would then wake for every head move).
            match self.tx.try_send(payload) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Failed(e)) => return Err(e),
            }
            self.arm()?;
            match self.tx.try_send(payload) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => self.space_freed().await?,
                Err(TrySendError::Failed(e)) => return Err(e),
            }
        }
    }

    /// Sends `payload` as a request, waiting for space while the lane is full, then waits
    /// for its one reply (see [`Sender::request`]; bound the wait with `tokio::time::timeout`).
    /// Dropping the future after the request was sent gives its reply box back: a reply that
    /// comes later is refused to its replier and counted.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_request`] and [`PendingRequest::try_reply`].
    pub async fn request(&mut self, payload: &[u8]) -> Result<Reply, RequestError> {
        let full = |r: &Result<PendingRequest, RequestError>| {
            matches!(r, Err(RequestError::Send(SendError::Timeout)))
        };
        let mut pending = loop {
            // As `send`: try first, arm only after a full lane.
            let first = self.tx.send_request(payload);
            if !full(&first) {
                break first?;
            }
            self.arm().map_err(RequestError::Send)?;
            let second = self.tx.send_request(payload);
            if !full(&second) {
                break second?;
            }
            self.space_freed().await.map_err(RequestError::Send)?;
        };
        wait_reply(&mut pending).await
    }

    /// The sender.
    pub fn get_ref(&self) -> &Sender {
        &self.tx
    }
}

/// Waits for the reply of `pending` on its ready descriptor.
async fn wait_reply(pending: &mut PendingRequest) -> Result<Reply, RequestError> {
    if let Some(r) = pending.try_reply()? {
        return Ok(r);
    }
    let fd = register(pending.ready_fd()?).map_err(|e| RequestError::NoHelper(io_kind(e)))?;
    loop {
        if let Some(r) = pending.try_reply()? {
            return Ok(r);
        }
        let mut ready = fd
            .readable()
            .await
            .map_err(|e| RequestError::NoHelper(io_kind(e)))?;
        ready.clear_ready();
    }
}
