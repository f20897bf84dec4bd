//! # baton-cluster: process groups with Corosync CPG semantics
//!
//! A process group is a set of member processes that all see the same messages and the same
//! membership changes, in the same total order (Corosync's closed process groups; see
//! `docs/groups.md`). [`ProcessGroup::join`] makes this process a member; the member
//! [`send`](ProcessGroup::send)s to every member, itself included, and
//! [`recv`](ProcessGroup::recv)s one stream of [`Delivery`]: messages and membership changes
//! (a member joined, left, died, or went with its node).
//!
//! **Status (issue 17, in progress).** The backend over a real Corosync ([`Backend::Corosync`],
//! libcpg opened at run time) is built and tested against corosync in private network
//! namespaces. The node-local backend in shared memory, the bridge between nodes' queues, the
//! CLI and the benchmark are not built yet.
//!
//! ```no_run
//! use baton_cluster::{Backend, Delivery, ProcessGroup};
//! use std::time::Duration;
//! let mut member = ProcessGroup::join(Backend::Corosync, "replicas")?;
//! member.send(b"set x = 1")?;
//! while let Some(d) = member.recv(Some(Duration::from_secs(1)))? {
//!     match d {
//!         Delivery::Message { from, payload } => println!("{from}: {payload:?}"),
//!         Delivery::Membership { member, reason, members } => {
//!             println!("{member} {reason:?}; now {} members", members.len())
//!         }
//!     }
//! }
//! # Ok::<(), baton_cluster::ClusterError>(())
//! ```

mod cpg;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Where a group lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Corosync's CPG service on this node (libcpg): the group spans every node of the
    /// corosync cluster.
    Corosync,
}

/// A member: a process on a node (node ids are corosync's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    /// The node's id.
    pub node: u32,
    /// The process's id on its node.
    pub pid: u32,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.pid)
    }
}

/// Why a membership changed (CPG's `cpg_reason_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The member joined.
    Join,
    /// The member left (`ProcessGroup::leave`, or its handle dropped).
    Leave,
    /// The member's process died without leaving.
    ProcessDown,
    /// The member went with its node (the node left the cluster or died).
    NodeDown,
    /// The member came with its node (the node joined the cluster again).
    NodeUp,
}

/// What a member receives, in the group's one total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message a member sent (this member's own included).
    Message {
        /// Its sender.
        from: Member,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// A member came or went.
    Membership {
        /// Who.
        member: Member,
        /// Why.
        reason: Reason,
        /// The members after the change this event belongs to (one configuration change can
        /// bring several joins and leaves, told one by one, leaves first).
        members: Vec<Member>,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// libcpg cannot be loaded.
    #[error("the corosync backend needs libcpg: {0}")]
    NoCorosync(String),
    /// Corosync refused or failed a call.
    #[error("corosync: {0}")]
    Corosync(String),
    /// Flow control: the group cannot take the message now; try again (or use
    /// [`ProcessGroup::send_timeout`]).
    #[error("the group is full for now (flow control): try again")]
    TryAgain,
    /// No room within the timeout of [`ProcessGroup::send_timeout`].
    #[error("the group stayed full (flow control) for the whole timeout")]
    Timeout,
    /// A message over the group's largest.
    #[error("message of {len} bytes: a group takes at most {max}")]
    TooBig {
        /// Its length.
        len: usize,
        /// The largest.
        max: usize,
    },
    /// A group name over the protocol's limit.
    #[error("a group name has at most {max} bytes")]
    NameTooLong {
        /// The limit.
        max: usize,
    },
    /// An empty group name.
    #[error("a group name cannot be empty")]
    EmptyName,
}

/// This process's membership of one process group. A forked child's copy is the parent's
/// membership: every call with it fails, and dropping it leaves the parent's alone.
pub struct ProcessGroup {
    name: String,
    conn: cpg::Connection,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("name", &self.name)
            .finish()
    }
}

impl ProcessGroup {
    /// The largest message a group takes (corosync fragments what is over its atomic size).
    pub const MAX_MESSAGE: usize = 1 << 20;

    /// Joins group `name` (at most 128 bytes). The first delivery this member receives is its
    /// own join; it then receives every message sent after that, and none before.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoCorosync`], [`ClusterError::Corosync`] (not running, access denied),
    /// [`ClusterError::NameTooLong`], [`ClusterError::EmptyName`].
    pub fn join(backend: Backend, name: &str) -> Result<ProcessGroup, ClusterError> {
        if name.is_empty() {
            return Err(ClusterError::EmptyName);
        }
        match backend {
            Backend::Corosync => Ok(ProcessGroup {
                name: name.to_string(),
                conn: cpg::Connection::join(name)?,
            }),
        }
    }

    /// The members of group `name` now, asked without joining it (so nobody is told a join).
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::join`].
    pub fn members_of(backend: Backend, name: &str) -> Result<Vec<Member>, ClusterError> {
        if name.is_empty() {
            return Err(ClusterError::EmptyName);
        }
        match backend {
            Backend::Corosync => cpg::Connection::connect(name)?.members(),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Multicasts `payload` to every member, this one included, in the group's total order.
    /// Never dropped silently: refused with [`ClusterError::TryAgain`] while the group is full
    /// (flow control). A message over corosync's atomic size (1,047,552 bytes here) is sent in
    /// fragments by libcpg, which itself waits up to about a second for room between them.
    ///
    /// # Errors
    ///
    /// [`ClusterError::TryAgain`], [`ClusterError::TooBig`], [`ClusterError::Corosync`].
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClusterError> {
        if payload.len() > Self::MAX_MESSAGE {
            return Err(ClusterError::TooBig {
                len: payload.len(),
                max: Self::MAX_MESSAGE,
            });
        }
        self.conn.try_send(payload)
    }

    /// As [`ProcessGroup::send`], waiting up to `timeout` while the group is full.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`], and as [`ProcessGroup::send`].
    pub fn send_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match self.send(payload) {
                Err(ClusterError::TryAgain) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(ClusterError::Timeout);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    /// The next delivery, waiting at most `timeout` (`None`: as long as it takes);
    /// `Ok(None)`: nothing came.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`] (corosync stopped).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<Delivery>, ClusterError> {
        self.conn.next(timeout)
    }

    /// The members now.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn members(&mut self) -> Result<Vec<Member>, ClusterError> {
        self.conn.members()
    }

    /// This member.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn me(&self) -> Result<Member, ClusterError> {
        Ok(Member {
            node: self.conn.local_node()?,
            pid: std::process::id(),
        })
    }

    /// A descriptor (an epoll set of the member's own) readable while something may be there
    /// for [`ProcessGroup::recv`] with a zero timeout, for `poll`/`epoll`: deliveries already
    /// taken from corosync and not yet received keep it readable.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// Leaves the group: the other members get a [`Reason::Leave`] for this one. (Dropping the
    /// handle leaves too.)
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn leave(mut self) -> Result<(), ClusterError> {
        self.conn.leave()
    }
}
