//! Queue groups (SA-Forum message queue groups): a named set of queues that a message is sent
//! to as one, by a policy: round robin, local round robin, local best queue, or broadcast;
//! members that come and go at run time; tracking of those changes.

use super::ready::{ReadyFd, Watched};
use super::{Queue, Reply};
use crate::error::{GroupError, OpenError, SendError};
use crate::name::{check_queue_name, Domain};
use crate::segment::events::{self as log, kind};
use crate::segment::group::{self as file, Change, GroupFile, StoredMember, MAX_MEMBERS};
use crate::segment::PRIORITIES;
use crate::sys::futex::Futex;
use baton_ring::wake::Event as WakeEvent;
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a message sent to a group picks its queue (SA-Forum `SaMsgQueueGroupPolicyT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum GroupPolicy {
    /// Each message to the next member in turn, over all members (one turn shared by every
    /// sender of every process).
    RoundRobin,
    /// Each message to the next member in turn, over the members on this node only.
    LocalRoundRobin,
    /// Each message to the member on this node with the most free space at the message's
    /// priority (ties: in turn).
    LocalBestQueue,
    /// Each message to every member.
    Broadcast,
}

impl GroupPolicy {
    /// Every policy, in the order of their numbers.
    pub const ALL: [GroupPolicy; 4] = [
        GroupPolicy::RoundRobin,
        GroupPolicy::LocalRoundRobin,
        GroupPolicy::LocalBestQueue,
        GroupPolicy::Broadcast,
    ];

    /// Its name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            GroupPolicy::RoundRobin => "round-robin",
            GroupPolicy::LocalRoundRobin => "local-round-robin",
            GroupPolicy::LocalBestQueue => "local-best-queue",
            GroupPolicy::Broadcast => "broadcast",
        }
    }

    /// The policy of this name ([`GroupPolicy::name`]).
    pub fn from_name(name: &str) -> Option<GroupPolicy> {
        GroupPolicy::ALL.into_iter().find(|p| p.name() == name)
    }

    fn number(self) -> u64 {
        match self {
            GroupPolicy::RoundRobin => 1,
            GroupPolicy::LocalRoundRobin => 2,
            GroupPolicy::LocalBestQueue => 3,
            GroupPolicy::Broadcast => 4,
        }
    }

    pub(crate) fn from_number(n: u64) -> Option<GroupPolicy> {
        GroupPolicy::ALL.into_iter().find(|p| p.number() == n)
    }

    fn local(self) -> bool {
        matches!(
            self,
            GroupPolicy::LocalRoundRobin | GroupPolicy::LocalBestQueue
        )
    }
}

impl std::fmt::Display for GroupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The node of a member queue on this node.
pub const THIS_NODE: u32 = 0;
/// The node of a member queue on another node: its name is then `NODE/QUEUE`, and a message
/// to it goes through this node's bridge outbox (`baton::RemoteAddress`, `baton bridge`).
pub const OTHER_NODE: u32 = 1;

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupMember {
    /// The queue's name (in the group's domain), or `NODE/QUEUE` for one on another node.
    pub queue: String,
    /// The node it is on: [`THIS_NODE`], or [`OTHER_NODE`].
    pub node: u32,
}

impl From<StoredMember> for GroupMember {
    fn from(m: StoredMember) -> Self {
        GroupMember {
            queue: m.queue,
            node: m.node,
        }
    }
}

/// Where a message sent to a group went.
#[derive(Debug)]
pub struct GroupSent {
    /// The member queues that took it (one, except for a broadcast).
    pub delivered: Vec<String>,
    /// Members a broadcast did not reach, and why.
    pub failed: Vec<(String, GroupError)>,
}

/// A queue group in shared memory, by name, in a domain, like a queue: created once, opened
/// by anyone (of the same user), changed by anyone, removed once. A process dying in the
/// middle of a change leaves the members as they were before it, or as they are after.
///
/// Membership is by name: a member whose queue does not exist (removed, or not yet made) stays
/// a member, and sends pass it by until a queue of that name exists again.
///
/// # Examples
///
/// ```
/// use baton::{Attributes, Domain, Group, GroupPolicy, Queue};
/// let domain = Domain::new(&format!("doc-group-{}", std::process::id()))?;
/// let a = Queue::create(&domain, "worker-a", &Attributes::default())?;
/// let b = Queue::create(&domain, "worker-b", &Attributes::default())?;
/// let workers = Group::create(&domain, "workers", GroupPolicy::RoundRobin)?;
/// workers.add("worker-a")?;
/// workers.add("worker-b")?;
/// let tx = workers.sender();
/// let first = tx.send(b"job 1")?.delivered;
/// let second = tx.send(b"job 2")?.delivered;
/// assert_ne!(first, second); // one each, in turn
/// assert_eq!(a.status().lanes[3].messages + b.status().lanes[3].messages, 2);
/// # Group::remove(&domain, "workers")?;
/// # Queue::remove(&domain, "worker-a")?; Queue::remove(&domain, "worker-b")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Group {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: GroupFile,
    domain: Domain,
    name: String,
    policy: GroupPolicy,
    /// The members as last read, by generation, and the member queues opened so far.
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    generation: Option<u64>,
    members: Vec<GroupMember>,
    queues: HashMap<String, Queue>,
}

impl Group {
    /// Creates group `name` in `domain` with `policy`, and no members (mode 0600).
    ///
    /// # Errors
    ///
    /// [`GroupError::Exists`]; [`OpenError::InvalidName`] and the errors of making a file
    /// (as [`Queue::create`]).
    pub fn create(domain: &Domain, name: &str, policy: GroupPolicy) -> Result<Group, GroupError> {
        check_queue_name(name)?;
        match GroupFile::create(domain, name, policy.number(), 0o600)? {
            Some(file) => {
                log::emit(
                    domain.as_str(),
                    kind::GROUP_CREATED,
                    name,
                    policy.number(),
                    0,
                );
                Group::from_file(domain, name, file)
            }
            None => Err(GroupError::Exists {
                domain: domain.to_string(),
                group: name.to_string(),
            }),
        }
    }

    /// Opens group `name` of `domain`.
    ///
    /// # Errors
    ///
    /// [`GroupError::NotFound`]; [`GroupError::Corrupt`]; the errors of opening a file (as
    /// [`Queue::open`]).
    pub fn open(domain: &Domain, name: &str) -> Result<Group, GroupError> {
        check_queue_name(name)?;
        match GroupFile::open(domain, name)? {
            Some(file) => Group::from_file(domain, name, file),
            None => Err(GroupError::NotFound {
                domain: domain.to_string(),
                group: name.to_string(),
            }),
        }
    }

    fn from_file(domain: &Domain, name: &str, file: GroupFile) -> Result<Group, GroupError> {
        let policy =
            GroupPolicy::from_number(file.policy()).ok_or_else(|| GroupError::Corrupt {
                group: name.to_string(),
                why: format!("unknown policy number {}", file.policy()),
            })?;
        Ok(Group {
            inner: Arc::new(Inner {
                file,
                domain: domain.clone(),
                name: name.to_string(),
                policy,
                cache: Mutex::new(Cache::default()),
            }),
        })
    }

    /// Removes group `name` of `domain` (its queues stay). Handles open on it get
    /// [`GroupError::Removed`]; its trackers are told.
    ///
    /// # Errors
    ///
    /// [`GroupError::NotFound`], and the errors of opening it.
    pub fn remove(domain: &Domain, name: &str) -> Result<(), GroupError> {
        let g = match Group::open(domain, name) {
            Ok(g) => g,
            // A file that is not a whole group of ours (shrunk, scribbled): its name goes all
            // the same, or nothing could make the group again (review).
            Err(GroupError::Corrupt { .. } | GroupError::Open(OpenError::Corrupt { .. })) => {
                nix::unistd::unlink(&file::path(domain, name))
                    .map_err(|e| crate::sys::shm::io("unlink the group", e))?;
                log::emit(domain.as_str(), kind::GROUP_REMOVED, name, 0, 0);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if !g.inner.file.remove() {
            return Err(GroupError::NotFound {
                domain: domain.to_string(),
                group: name.to_string(),
            });
        }
        log::emit(domain.as_str(), kind::GROUP_REMOVED, name, 0, 0);
        Ok(())
    }

    /// The names of `domain`'s groups, sorted (a group whose file cannot be read is left
    /// out: [`Group::open`] says why).
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if `/dev/shm` cannot be read.
    pub fn list(domain: &Domain) -> Result<Vec<String>, OpenError> {
        let mut names: Vec<String> = file::list_paths(domain)?
            .iter()
            .filter_map(|p| GroupFile::open_path(p).ok().flatten())
            .filter_map(|f| f.name())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its domain.
    pub fn domain(&self) -> &Domain {
        &self.inner.domain
    }

    /// Its policy (fixed when it was created).
    pub fn policy(&self) -> GroupPolicy {
        self.inner.policy
    }

    /// Whether the group is still there: not removed, and (unless `sending`) its file whole.
    /// A send looks at the size only when it reads the table again (the generation moved):
    /// the words a send with an unchanged table touches lie in the first page, and an `fstat`
    /// per message would cost more than the send (queues trust their peers the same way).
    /// Whether the group was removed (`Group::remove`, `baton group rm`): a group made again
    /// under its name is another group, which this handle does not see.
    pub fn is_removed(&self) -> bool {
        self.inner.file.intact() && self.inner.file.removed()
    }

    fn check(&self) -> Result<(), GroupError> {
        if !self.inner.file.intact() {
            return Err(self.corrupt("its file was shrunk by a peer".to_string()));
        }
        self.check_removed()
    }

    fn check_removed(&self) -> Result<(), GroupError> {
        if self.inner.file.removed() {
            return Err(GroupError::Removed {
                group: self.inner.name.clone(),
            });
        }
        Ok(())
    }

    fn corrupt(&self, why: String) -> GroupError {
        GroupError::Corrupt {
            group: self.inner.name.clone(),
            why,
        }
    }

    /// The members now (SA-Forum `saMsgQueueGroupTrack` with `SA_TRACK_CURRENT`).
    ///
    /// # Errors
    ///
    /// [`GroupError::Removed`], [`GroupError::Corrupt`].
    pub fn members(&self) -> Result<Vec<GroupMember>, GroupError> {
        self.check()?;
        Ok(self.read()?.1)
    }

    fn read(&self) -> Result<(u64, Vec<GroupMember>), GroupError> {
        let (gen, members) = self
            .inner
            .file
            .members()
            .map_err(|why| self.corrupt(why.to_string()))?;
        Ok((gen, members.into_iter().map(GroupMember::from).collect()))
    }

    /// Adds queue `queue` of the group's domain (it must exist), or `NODE/QUEUE`, a queue on
    /// another node (reached through the bridge: messages the policy sends it go into this
    /// node's outbox; the "local" policies pass it by).
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] (no such queue here), [`OpenError::InvalidName`] (a bad
    /// `NODE/QUEUE`, or one over 200 characters), [`GroupError::AlreadyMember`],
    /// [`GroupError::Full`], [`GroupError::Removed`], [`GroupError::Busy`],
    /// [`GroupError::Corrupt`].
    pub fn add(&self, queue: &str) -> Result<(), GroupError> {
        let node = match super::RemoteAddress::parse(queue)? {
            Some(_) if queue.len() > crate::name::MAX_NAME => {
                return Err(OpenError::InvalidName {
                    what: "remote member",
                    name: queue.to_string(),
                    reason: "NODE/QUEUE is longer than 200 characters",
                }
                .into())
            }
            Some(_) => OTHER_NODE,
            None => {
                Queue::open(&self.inner.domain, queue)?;
                THIS_NODE
            }
        };
        self.change(|members| {
            if members.iter().any(|m| m.queue == queue) {
                Err(GroupError::AlreadyMember {
                    group: self.inner.name.clone(),
                    queue: queue.to_string(),
                })
            } else if members.len() >= MAX_MEMBERS {
                Err(GroupError::Full {
                    group: self.inner.name.clone(),
                    max: MAX_MEMBERS,
                })
            } else {
                members.push(StoredMember {
                    node,
                    queue: queue.to_string(),
                });
                Ok(())
            }
        })?;
        self.emit_member(kind::MEMBER_ADDED, queue);
        Ok(())
    }

    /// Removes queue `queue` from the group (the queue stays).
    ///
    /// # Errors
    ///
    /// [`GroupError::NotMember`], [`GroupError::Removed`], [`GroupError::Busy`],
    /// [`GroupError::Corrupt`].
    pub fn remove_member(&self, queue: &str) -> Result<(), GroupError> {
        self.change(
            |members| match members.iter().position(|m| m.queue == queue) {
                Some(i) => {
                    members.remove(i);
                    Ok(())
                }
                None => Err(GroupError::NotMember {
                    group: self.inner.name.clone(),
                    queue: queue.to_string(),
                }),
            },
        )?;
        self.emit_member(kind::MEMBER_REMOVED, queue);
        Ok(())
    }

    fn emit_member(&self, k: u16, queue: &str) {
        log::emit(
            self.inner.domain.as_str(),
            k,
            &format!("{}/{queue}", self.inner.name),
            0,
            0,
        );
    }

    fn change(
        &self,
        f: impl FnOnce(&mut Vec<StoredMember>) -> Result<(), GroupError>,
    ) -> Result<(), GroupError> {
        self.check()?;
        match self.inner.file.change(f) {
            Ok(Change::Done(r)) => r,
            Ok(Change::Busy) => Err(GroupError::Busy {
                group: self.inner.name.clone(),
            }),
            Ok(Change::Broken(rc)) => Err(self.corrupt(format!(
                "its lock cannot be taken: {}",
                std::io::Error::from_raw_os_error(rc)
            ))),
            Err(why) => Err(self.corrupt(why.to_string())),
        }
    }

    /// A sender to the group, at priority 3, type 0.
    pub fn sender(&self) -> GroupSender {
        GroupSender {
            group: self.clone(),
            priority: 3,
            msg_type: 0,
        }
    }

    /// A tracker of the group's members: [`GroupTracker::current`] now, then each change.
    ///
    /// # Errors
    ///
    /// [`GroupError::Removed`], [`GroupError::Corrupt`].
    pub fn track(&self) -> Result<GroupTracker, GroupError> {
        self.check()?;
        let (generation, members) = self.read()?;
        Ok(GroupTracker {
            group: self.clone(),
            generation,
            members,
            ready: None,
            seen: Arc::new(AtomicU64::new(generation)),
        })
    }

    /// The members now (re-read only when they changed) and a queue handle for each that
    /// exists, in member order; `Err` members' queues do not exist.
    fn targets(&self) -> Result<Vec<(GroupMember, Option<Queue>)>, GroupError> {
        self.check_removed()?;
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.inner.file.roster().generation();
        if cache.generation != Some(now) {
            self.check()?;
            let (gen, members) = self.read()?;
            cache.generation = Some(gen);
            cache
                .queues
                .retain(|q, _| members.iter().any(|m| m.queue == *q));
            cache.members = members;
        }
        let Cache {
            members, queues, ..
        } = &mut *cache;
        let mut out = Vec::with_capacity(members.len());
        for m in members.iter() {
            let q = if m.node != THIS_NODE {
                // Another node's queue: through this node's bridge outbox.
                Some(super::remote::outbox(
                    &self.inner.domain,
                    super::DEFAULT_OUTBOX,
                )?)
            } else {
                // A handle on a queue removed since (or never made) is looked up again.
                if queues.get(&m.queue).is_some_and(|q| q.seg.is_removed()) {
                    queues.remove(&m.queue);
                }
                if !queues.contains_key(&m.queue) {
                    match Queue::open(&self.inner.domain, &m.queue) {
                        Ok(q) => {
                            queues.insert(m.queue.clone(), q);
                        }
                        Err(OpenError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                queues.get(&m.queue).cloned()
            };
            out.push((m.clone(), q));
        }
        Ok(out)
    }
}

/// Sends to a group. `Clone`; made by [`Group::sender`].
#[derive(Debug, Clone)]
pub struct GroupSender {
    group: Group,
    priority: u8,
    msg_type: i64,
}

impl GroupSender {
    /// This sender, at priority `p` (0 highest, 3 lowest).
    ///
    /// # Errors
    ///
    /// [`SendError::InvalidPriority`] above 3.
    pub fn with_priority(mut self, p: u8) -> Result<GroupSender, SendError> {
        if p as usize >= PRIORITIES {
            return Err(SendError::InvalidPriority(p));
        }
        self.priority = p;
        Ok(self)
    }

    /// The group's policy.
    pub fn policy(&self) -> GroupPolicy {
        self.group.policy()
    }

    /// The group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// This sender, with message type `t`.
    pub fn with_type(mut self, t: i64) -> GroupSender {
        self.msg_type = t;
        self
    }

    /// Sends `payload` by the group's policy, waiting for space as long as it takes.
    ///
    /// # Errors
    ///
    /// [`GroupError::NotAvailable`] (no member to send to); [`GroupError::Send`] from the
    /// member chosen; for a broadcast, [`GroupError::Undelivered`] if no member took it.
    pub fn send(&self, payload: &[u8]) -> Result<GroupSent, GroupError> {
        self.send_until(payload, None)
    }

    /// Sends `payload`, waiting at most `timeout` for space (for a broadcast, for all the
    /// members together).
    ///
    /// # Errors
    ///
    /// As [`GroupSender::send`]; [`SendError::Timeout`] inside [`GroupError::Send`].
    pub fn send_timeout(&self, payload: &[u8], timeout: Duration) -> Result<GroupSent, GroupError> {
        self.send_until(payload, Instant::now().checked_add(timeout))
    }

    fn send_until(
        &self,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> Result<GroupSent, GroupError> {
        let send = |name: &str, q: &Queue| {
            let tx = q
                .sender()
                .with_priority(self.priority)
                .expect("checked")
                .with_type(self.msg_type);
            // A member on another node (`NODE/QUEUE`): its envelope, into the outbox.
            let enveloped = super::RemoteAddress::parse(name)
                .ok()
                .flatten()
                .map(|to| to.envelope(payload));
            let payload = enveloped.as_deref().unwrap_or(payload);
            let r = match deadline {
                None => tx.send(payload),
                Some(d) => tx.send_timeout(payload, d.saturating_duration_since(Instant::now())),
            };
            r.map_err(|error| GroupError::Send {
                queue: name.to_string(),
                error,
            })
        };
        if self.group.policy() == GroupPolicy::Broadcast {
            let mut sent = GroupSent {
                delivered: Vec::new(),
                failed: Vec::new(),
            };
            let targets = self.group.targets()?;
            if targets.is_empty() {
                return Err(self.not_available("it has no members"));
            }
            for (m, q) in targets {
                match q {
                    None => sent.failed.push((m.queue.clone(), self.missing(&m))),
                    Some(q) => match send(&m.queue, &q) {
                        Ok(()) => sent.delivered.push(m.queue),
                        Err(e) => sent.failed.push((m.queue, e)),
                    },
                }
            }
            if sent.delivered.is_empty() {
                return Err(GroupError::Undelivered {
                    group: self.group.name().to_string(),
                    failed: sent.failed,
                });
            }
            return Ok(sent);
        }
        // A member's queue removed during the send gives `SendError::Removed`, not a try at
        // the next member: the message may have been stored before the removal (and taken),
        // and a second queue would then get it too.
        let (name, q) = self.choose()?;
        send(&name, &q)?;
        Ok(GroupSent {
            delivered: vec![name],
            failed: Vec::new(),
        })
    }

    /// Sends `payload` as a request to the member the policy picks, and waits at most
    /// `timeout` for its reply (see [`crate::Sender::request`]).
    ///
    /// # Errors
    ///
    /// [`GroupError::RequestToBroadcast`]; [`GroupError::NotAvailable`];
    /// [`GroupError::Request`] from the member chosen.
    pub fn request(
        &self,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(String, Reply), GroupError> {
        if self.group.policy() == GroupPolicy::Broadcast {
            return Err(GroupError::RequestToBroadcast {
                group: self.group.name().to_string(),
            });
        }
        let (name, q) = self.choose()?;
        if name.contains('/') {
            return Err(self.not_available(
                "the member picked is on another node, and a request's reply does not cross the bridge",
            ));
        }
        let tx = q
            .sender()
            .with_priority(self.priority)
            .expect("checked")
            .with_type(self.msg_type);
        match tx.request(payload, timeout) {
            Ok(reply) => Ok((name, reply)),
            Err(error) => Err(GroupError::Request { queue: name, error }),
        }
    }

    /// The member the (one-queue) policy picks now.
    fn choose(&self) -> Result<(String, Queue), GroupError> {
        let policy = self.group.policy();
        let targets = self.group.targets()?;
        if targets.is_empty() {
            return Err(self.not_available("it has no members"));
        }
        let candidates: Vec<(GroupMember, Option<Queue>)> = targets
            .into_iter()
            .filter(|(m, _)| !policy.local() || m.node == THIS_NODE)
            .collect();
        if candidates.is_empty() {
            return Err(self.not_available("none of its members is on this node"));
        }
        let n = candidates.len() as u64;
        // The cursor is kept below the member count, so the turn never wraps (review: a
        // `fetch_add` counter gave a member two turns in a row where it wrapped, and a peer's
        // word near 2^64 overflowed the index). Relaxed: a turn counter; nothing is published
        // through it.
        let turn = self
            .group
            .inner
            .file
            .cursor(policy.local())
            .fetch_update(
                baton_ring::Ordering::Relaxed,
                baton_ring::Ordering::Relaxed,
                |c| Some((c % n + 1) % n),
            )
            .unwrap_or_else(|c| c)
            % n;
        let in_turn = (0..n).map(|k| &candidates[((turn + k) % n) as usize]);
        let picked = if policy == GroupPolicy::LocalBestQueue {
            // The most free bytes at this priority; the first in turn among equals.
            let p = self.priority as usize;
            in_turn
                .filter_map(|(m, q)| q.as_ref().map(|q| (m, q)))
                .map(|(m, q)| {
                    let lane = q.seg.lane(p);
                    let free = lane.capacity_cells().saturating_sub(lane.used_cells());
                    (free, m, q)
                })
                .fold(
                    None,
                    |best: Option<(u64, &GroupMember, &Queue)>, c| match best {
                        Some(b) if b.0 >= c.0 => Some(b),
                        _ => Some(c),
                    },
                )
                .map(|(_, m, q)| (m.queue.clone(), q.clone()))
        } else {
            in_turn
                .filter_map(|(m, q)| q.as_ref().map(|q| (m.queue.clone(), q.clone())))
                .next()
        };
        picked.ok_or_else(|| self.not_available("none of its members' queues exists"))
    }

    fn not_available(&self, why: &'static str) -> GroupError {
        GroupError::NotAvailable {
            group: self.group.name().to_string(),
            why,
        }
    }

    fn missing(&self, m: &GroupMember) -> GroupError {
        if m.node != THIS_NODE {
            return self.not_available(
                "the member is on another node, and this node has no bridge outbox",
            );
        }
        GroupError::Open(OpenError::NotFound {
            domain: self.group.domain().to_string(),
            name: m.queue.clone(),
        })
    }
}

/// What happened to a member since the tracker last looked (SA-Forum
/// `SaMsgQueueGroupChangesT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum MemberChange {
    /// A member then and now.
    NoChange,
    /// A member now, not then.
    Added,
    /// A member then, not now.
    Removed,
}

/// One member in a [`GroupChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedMember {
    /// The member.
    pub member: GroupMember,
    /// Its change.
    pub change: MemberChange,
}

/// The members after a change (SA-Forum's notification buffer with `SA_TRACK_CHANGES`):
/// every member now, and those removed, each with its change since the last one told.
/// Changes that come faster than the tracker looks are told as their net effect (a queue
/// added and removed in between is not mentioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// The members' generation now: one more for each change made.
    pub generation: u64,
    /// Members now, then those removed.
    pub members: Vec<TrackedMember>,
}

impl GroupChange {
    /// Only the members added or removed (`SA_TRACK_CHANGES_ONLY`).
    pub fn changes_only(&self) -> impl Iterator<Item = &TrackedMember> {
        self.members
            .iter()
            .filter(|m| m.change != MemberChange::NoChange)
    }
}

/// Follows a group's members (SA-Forum `saMsgQueueGroupTrack`): made by [`Group::track`].
#[derive(Debug)]
pub struct GroupTracker {
    group: Group,
    generation: u64,
    members: Vec<GroupMember>,
    /// The fd of [`GroupTracker::ready_fd`], once asked for.
    ready: Option<ReadyFd>,
    /// `generation`, for the fd's thread.
    seen: Arc<AtomicU64>,
}

/// A group's file, for a ready fd's thread: it sleeps on the roster's event, which every
/// change of the members (and the group's removal) notifies.
struct OnGroup(Group);

impl Watched for OnGroup {
    fn intact(&self) -> bool {
        self.0.inner.file.intact()
    }

    fn event(&self) -> &WakeEvent {
        self.0.inner.file.roster().changed()
    }

    fn sleep(&self, deadline: Instant, ready: &mut dyn FnMut() -> bool) -> Option<bool> {
        self.event()
            .wait_until_mapped(&Futex, Some(deadline), || self.intact(), ready)
    }
}

impl GroupTracker {
    /// The group tracked.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// A file descriptor that is readable while a change is waiting to be told (or the group
    /// is removed or damaged: [`GroupTracker::next_change`] then says so), for `poll`, `epoll`
    /// or an async runtime, like [`Receiver::ready_fd`](crate::Receiver::ready_fd): it stays
    /// readable until a `next_change` finds no change (call it with a zero timeout until it
    /// returns `Ok(None)`, as one drains a socket). A helper thread of the tracker makes it
    /// readable; the first call starts it (and, in a forked child, starts the child's own).
    ///
    /// # Errors
    ///
    /// [`GroupError::NoHelper`] if the eventfd or the thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::{Attributes, Domain, Group, GroupPolicy, Queue};
    /// use std::os::fd::AsRawFd;
    /// # let domain = Domain::new(&format!("doc-track-fd-{}", std::process::id()))?;
    /// let group = Group::create(&domain, "workers", GroupPolicy::RoundRobin)?;
    /// let mut tracker = group.track()?;
    /// let fd = tracker.ready_fd()?.as_raw_fd();
    /// Queue::create(&domain, "w1", &Attributes::default())?;
    /// group.add("w1")?;
    /// let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
    /// let change = tracker.next_change(Some(std::time::Duration::ZERO))?.unwrap();
    /// assert_eq!(change.changes_only().count(), 1);
    /// assert!(tracker.next_change(Some(std::time::Duration::ZERO))?.is_none()); // re-arms
    /// # Group::remove(&domain, "workers")?;
    /// # Queue::remove(&domain, "w1")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready_fd(&mut self) -> Result<BorrowedFd<'_>, GroupError> {
        if self.ready.as_ref().is_none_or(|r| r.forked()) {
            // A forked child's copy is forgotten by its drop: the thread is the parent's.
            self.ready = None;
            let file = self.group.clone();
            let seen = self.seen.clone();
            let ready = ReadyFd::watch(Arc::new(OnGroup(self.group.clone())), move || {
                let f = &file.inner.file;
                !f.intact()
                    || f.removed()
                    || f.roster().generation() != seen.load(Ordering::Acquire)
            })
            .map_err(|e| GroupError::NoHelper(e.kind()))?;
            self.ready = Some(ready);
        }
        Ok(self.ready.as_ref().map(|r| r.fd()).expect("made above"))
    }

    /// The members as of the last change told (or of the tracker's making).
    pub fn current(&self) -> &[GroupMember] {
        &self.members
    }

    /// The next change of the members, waiting at most `timeout` (`None`: as long as it
    /// takes); `Ok(None)`: none came.
    ///
    /// # Errors
    ///
    /// [`GroupError::Removed`] once the group is removed; [`GroupError::Corrupt`].
    pub fn next_change(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<GroupChange>, GroupError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let file = &self.group.inner.file;
        loop {
            self.group.check()?;
            let (generation, now) = self.group.read()?;
            if generation != self.generation {
                let mut members: Vec<TrackedMember> = now
                    .iter()
                    .map(|m| TrackedMember {
                        member: m.clone(),
                        change: if self.members.contains(m) {
                            MemberChange::NoChange
                        } else {
                            MemberChange::Added
                        },
                    })
                    .collect();
                members.extend(self.members.iter().filter(|m| !now.contains(m)).map(|m| {
                    TrackedMember {
                        member: m.clone(),
                        change: MemberChange::Removed,
                    }
                }));
                self.generation = generation;
                self.seen.store(generation, Ordering::Release);
                self.members = now;
                return Ok(Some(GroupChange {
                    generation,
                    members,
                }));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if let Some(r) = &self.ready {
                    r.rearm(); // found nothing: the fd is readable again at the next change
                }
                return Ok(None);
            }
            // The file's size is looked at after each sleep before the mapping is touched
            // again: a peer that shrinks the file while the tracker sleeps would make that
            // touch a SIGBUS (review). `check` then says what happened.
            let seen = self.generation;
            file.roster().changed().wait_until_mapped(
                &Futex,
                deadline,
                || file.intact(),
                || file.roster().generation() != seen || file.removed(),
            );
        }
    }
}
