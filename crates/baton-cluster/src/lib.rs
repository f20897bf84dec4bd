//! # baton-cluster: process groups with Corosync CPG semantics
//!
//! A process group is a set of member processes that all see the same messages and the same
//! membership changes, in the same total order (Corosync's closed process groups; see
//! `docs/groups.md`). [`ProcessGroup::join`] makes this process a member; the member
//! [`send`](ProcessGroup::send)s to every member, itself included, and
//! [`recv`](ProcessGroup::recv)s one stream of [`Delivery`]: messages and membership changes
//! (a member joined, left, died, or went with its node).
//!
//! Two backends, one API: [`Backend::Local`], a group of this node's processes in shared memory
//! (`baton::LocalMember`), and [`Backend::Corosync`], a group over a real Corosync (libcpg,
//! opened at run time) that spans the cluster. [`Backend::from_env`] picks one from the
//! environment, so a program moves from one node to a cluster without code changes.
//!
//! **Status (issue 17, in progress).** Both backends are built and tested; the bridge between
//! nodes' queues is not built yet.
//!
//! ```no_run
//! use baton_cluster::{Backend, Delivery, ProcessGroup};
//! use std::time::Duration;
//! let mut member = ProcessGroup::join(Backend::from_env()?, "replicas")?;
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

pub mod bridge;
mod cpg;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Where a group lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// This node's processes, in shared memory (`/dev/shm/baton.<domain>~.pgroup.<name>`),
    /// with the log sized by the configuration when the first member makes it. Members are
    /// `Member { node: 0, pid }`.
    Local(baton::Domain, baton::LocalGroupConfig),
    /// Corosync's CPG service on this node (libcpg): the group spans every node of the
    /// corosync cluster.
    Corosync,
}

/// The environment variable that chooses a backend for [`Backend::from_env`].
pub const BACKEND_ENV: &str = "BATON_GROUP_BACKEND";

impl Backend {
    /// The local backend in `domain`, with the default log.
    pub fn local(domain: &baton::Domain) -> Backend {
        Backend::Local(domain.clone(), baton::LocalGroupConfig::default())
    }

    /// The backend that `BATON_GROUP_BACKEND` names: `local` (the default; in the domain of
    /// `BATON_DOMAIN`) or `corosync`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] for another value or a bad domain.
    pub fn from_env() -> Result<Backend, ClusterError> {
        Backend::named(
            std::env::var(BACKEND_ENV)
                .ok()
                .as_deref()
                .unwrap_or("local"),
        )
    }

    /// The backend called `name`: `local` (in the domain of `BATON_DOMAIN`) or `corosync`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] for another name or a bad domain.
    pub fn named(name: &str) -> Result<Backend, ClusterError> {
        match name {
            "local" => baton::Domain::from_env()
                .map(|d| Backend::local(&d))
                .map_err(|e| ClusterError::Config(e.to_string())),
            "corosync" => Ok(Backend::Corosync),
            other => Err(ClusterError::Config(format!(
                "unknown process group backend {other:?}: local or corosync"
            ))),
        }
    }
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
#[non_exhaustive]
pub enum ClusterError {
    /// The local backend failed (its message says how).
    #[error(transparent)]
    Local(baton::ProcessGroupError),
    /// A backend chosen by name or environment that does not exist.
    #[error("{0}")]
    Config(String),
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
    conn: Conn,
}

/// A member's link to its backend.
enum Conn {
    Local(baton::LocalMember),
    Corosync(cpg::Connection),
}

/// A local member's pid as a [`Member`] (node 0: this node).
fn local(pid: u32) -> Member {
    Member { node: 0, pid }
}

impl From<baton::ProcessGroupError> for ClusterError {
    fn from(e: baton::ProcessGroupError) -> Self {
        use baton::{ProcessGroupError as E, SendError};
        match e {
            E::Send(SendError::TooBig { len, max }) => ClusterError::TooBig {
                len,
                max: max as usize,
            },
            E::Send(SendError::Timeout) | E::Timeout => ClusterError::Timeout,
            e => ClusterError::Local(e),
        }
    }
}

fn local_delivery(d: baton::LocalDelivery) -> Delivery {
    match d {
        baton::LocalDelivery::Message { pid, payload } => Delivery::Message {
            from: local(pid),
            payload,
        },
        baton::LocalDelivery::Membership {
            pid,
            change,
            members,
        } => Delivery::Membership {
            member: local(pid),
            reason: match change {
                baton::LocalChange::Join => Reason::Join,
                baton::LocalChange::Leave => Reason::Leave,
                baton::LocalChange::ProcessDown => Reason::ProcessDown,
            },
            members: members.into_iter().map(local).collect(),
        },
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("name", &self.name)
            .finish()
    }
}

impl ProcessGroup {
    /// The largest message a corosync group takes (corosync fragments what is over its atomic
    /// size). A local group's is its configuration's.
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
        let conn = match backend {
            Backend::Local(domain, config) => {
                Conn::Local(baton::LocalMember::join(&domain, name, &config)?)
            }
            Backend::Corosync => Conn::Corosync(cpg::Connection::join(name)?),
        };
        Ok(ProcessGroup {
            name: name.to_string(),
            conn,
        })
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
            Backend::Local(domain, _) => Ok(baton::LocalMember::members_of(&domain, name)?
                .into_iter()
                .map(local)
                .collect()),
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
        match &mut self.conn {
            Conn::Local(m) => match m.try_send(payload)? {
                true => Ok(()),
                false => Err(ClusterError::TryAgain),
            },
            Conn::Corosync(c) => {
                if payload.len() > Self::MAX_MESSAGE {
                    return Err(ClusterError::TooBig {
                        len: payload.len(),
                        max: Self::MAX_MESSAGE,
                    });
                }
                c.try_send(payload)
            }
        }
    }

    /// As [`ProcessGroup::send`], waiting up to `timeout` while the group is full.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`], and as [`ProcessGroup::send`].
    pub fn send_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<(), ClusterError> {
        if let Conn::Local(m) = &mut self.conn {
            // Sleeps until a member's read frees room, rather than polling.
            return Ok(m.send_timeout(payload, timeout)?);
        }
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
        match &mut self.conn {
            Conn::Local(m) => Ok(m.recv(timeout)?.map(local_delivery)),
            Conn::Corosync(c) => c.next(timeout),
        }
    }

    /// The members now.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn members(&mut self) -> Result<Vec<Member>, ClusterError> {
        match &mut self.conn {
            Conn::Local(m) => Ok(m.members().into_iter().map(local).collect()),
            Conn::Corosync(c) => c.members(),
        }
    }

    /// This member.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn me(&self) -> Result<Member, ClusterError> {
        match &self.conn {
            Conn::Local(m) => Ok(local(m.me())),
            Conn::Corosync(c) => Ok(Member {
                node: c.local_node()?,
                pid: std::process::id(),
            }),
        }
    }

    /// A descriptor readable while something may be there for [`ProcessGroup::recv`] with a
    /// zero timeout, for `poll`/`epoll`; it goes quiet once a `recv` finds nothing. Corosync:
    /// an epoll set of the member's own (deliveries already taken from corosync and not yet
    /// received keep it readable). Local: an eventfd a helper thread makes readable (started
    /// by the first call).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Local`] when the local helper cannot be made.
    pub fn fd(&mut self) -> Result<RawFd, ClusterError> {
        use std::os::fd::AsRawFd;
        match &mut self.conn {
            Conn::Local(m) => Ok(m.ready_fd()?.as_raw_fd()),
            Conn::Corosync(c) => Ok(c.fd()),
        }
    }

    /// Leaves the group: the other members get a [`Reason::Leave`] for this one. (Dropping the
    /// handle leaves too.)
    ///
    /// # Errors
    ///
    /// [`ClusterError::Corosync`].
    pub fn leave(self) -> Result<(), ClusterError> {
        match self.conn {
            Conn::Local(m) => Ok(m.leave()?),
            Conn::Corosync(mut c) => c.leave(),
        }
    }
}
