//! The bridge: queues across nodes. One [`Bridge`] per node (`baton bridge --config FILE`)
//! joins a process group of bridges and forwards what this node's senders address to a queue
//! on another node (`node/queue`, see `baton::RemoteAddress`) into that queue.
//!
//! - A sender puts the message, in an envelope naming `node/queue`, into this node's *outbox*
//!   queue (`baton::DEFAULT_OUTBOX`, made by whichever comes first).
//! - The bridge owns the outbox. It multicasts each message to the bridges' group as a
//!   *forward* with an id (this node, the outbox's creation, the message's id in the outbox:
//!   the same on a redelivery) and its stream's *mark* (the lowest id of that priority to that
//!   node it has not had confirmed), and keeps the message, unacknowledged, until the
//!   destination's bridge says *done*; it forwards it again every `retransmit_ms`, and at once
//!   when that bridge (re)joins. Only messages to nodes whose bridge is there count against
//!   the 4,096 in flight and are forwarded again: a node that is down holds up no other.
//! - The destination's bridge sends the message into its queue (same priority and type), then
//!   records the id as delivered (in a file that outlives the bridge, not the node) and
//!   multicasts *done*; a forward it has recorded, or below its stream's mark, is only
//!   answered *done* again. A full queue is not answered (the forward comes again), and the
//!   stream's later forwards wait behind it. A queue it cannot send to (none of that name, a
//!   message too big) is answered *refused*, with why; so is a message too big for the group.
//! - On *done* the source bridge acknowledges the outbox message (a sender that used
//!   `send_tracked` learns `Acknowledged`: it is in the remote queue), or replies to it if it
//!   was a request (`ok`, or `refused: why`). A refused plain message goes to the dead-letter
//!   queue `<outbox>.failed`, the reason before it, and is acknowledged once written there (it
//!   is kept until then).
//! - Two bridges with one node name: the second to be seen exits with an error.
//!
//! End to end: at least once, in order per sender and destination queue except around a
//! destination bridge's restart. Lost only with the source node (the outbox is in its shared
//! memory) before the destination confirmed the message. Duplicated only if a destination
//! bridge dies between its send into the queue and its record of the id (microseconds), or if
//! the record file was lost (the node rebooted) while the source still had the message. An
//! adversarial review found seven ways these did not hold (a message too big for the group
//! lost, dead letters lost, order broken by a full queue, one absent node stopping all
//! traffic, two bridges of one name both delivering, a queue made again refused, a late
//! retransmit after 65,536 other deliveries delivered twice); each has its test in
//! `crates/baton-cli/tests/bridge_review.rs`.

use crate::{Backend, ClusterError, Delivery, Member, ProcessGroup, Reason};
use baton::{Attributes, Domain, Message, OpenError, Queue, Receiver, RecvError, RemoteAddress};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

/// The bridges' process group, by default.
pub const DEFAULT_GROUP: &str = "baton-bridge";

/// A bridge's configuration (`baton bridge --config FILE`, TOML).
///
/// ```toml
/// node = "node1"            # this node's name: others address its queues as node1/QUEUE
/// domain = "default"        # the baton domain of this node's queues (default: BATON_DOMAIN)
/// group = "baton-bridge"    # the bridges' process group
/// outbox = "bridge.out"     # the queue this node's senders put remote messages in
/// retransmit_ms = 1000      # how often an unconfirmed forward is sent again
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// This node's name (a queue name's characters, at most 64 bytes).
    pub node: String,
    /// The baton domain of this node's queues.
    #[serde(default)]
    pub domain: Option<String>,
    /// The bridges' process group.
    #[serde(default = "default_group")]
    pub group: String,
    /// The outbox queue.
    #[serde(default = "default_outbox")]
    pub outbox: String,
    /// Milliseconds between forwards of a message not yet confirmed.
    #[serde(default = "default_retransmit")]
    pub retransmit_ms: u64,
}

fn default_group() -> String {
    DEFAULT_GROUP.to_string()
}

fn default_outbox() -> String {
    baton::DEFAULT_OUTBOX.to_string()
}

fn default_retransmit() -> u64 {
    1000
}

impl BridgeConfig {
    /// Parses a configuration file's text; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] naming the file, the line and the problem.
    pub fn parse(file: &str, text: &str) -> Result<BridgeConfig, ClusterError> {
        let c: BridgeConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(", line {line}")
                })
                .unwrap_or_default();
            ClusterError::Config(format!("{file}{at}: {}", e.message()))
        })?;
        baton::check_node_name(&c.node)
            .map_err(|e| ClusterError::Config(format!("{file}: node: {e}")))?;
        baton::check_queue_name(&c.outbox)
            .map_err(|e| ClusterError::Config(format!("{file}: outbox: {e}")))?;
        if let Some(d) = &c.domain {
            Domain::new(d).map_err(|e| ClusterError::Config(format!("{file}: domain: {e}")))?;
        }
        if c.retransmit_ms == 0 {
            return Err(ClusterError::Config(format!(
                "{file}: retransmit_ms: must be at least 1"
            )));
        }
        Ok(c)
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    ///
    /// As [`BridgeConfig::parse`], and an unreadable file.
    pub fn load(path: &std::path::Path) -> Result<BridgeConfig, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
        BridgeConfig::parse(&path.display().to_string(), &text)
    }

    /// The domain of this node's queues.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] for a bad `BATON_DOMAIN`.
    pub fn domain(&self) -> Result<Domain, ClusterError> {
        match &self.domain {
            Some(d) => Domain::new(d),
            None => Domain::from_env(),
        }
        .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// The outbox of `domain` (made if it does not exist): see `baton::outbox`.
///
/// # Errors
///
/// The queue's errors.
pub fn outbox(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
    baton::outbox(domain, name)
}

/// What the bridges say to each other.
mod wire {
    pub const HELLO: u8 = b'H';
    pub const FORWARD: u8 = b'F';
    pub const DONE: u8 = b'D';
    pub const OK: u8 = 0;
    pub const REFUSED: u8 = 1;
}

/// A forwarded message's id: its source node (a hash of the name), the outbox's creation, and
/// its id in the outbox.
type Id = [u64; 3];

fn node_hash(name: &str) -> u64 {
    // FNV-1a: stable across builds and processes.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn put_id(out: &mut Vec<u8>, id: &Id) {
    for w in id {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

fn get_id(b: &[u8]) -> Option<(Id, &[u8])> {
    let w =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?)) };
    Some(([w(0)?, w(8)?, w(16)?], b.get(24..)?))
}

fn get_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let n = *b.first()? as usize;
    Some((std::str::from_utf8(b.get(1..1 + n)?).ok()?, b.get(1 + n..)?))
}

/// A message taken from the outbox and not yet confirmed.
struct Pending {
    message: Message,
    forward: Vec<u8>,
    node: String,
    sent: Instant,
}

/// The forwards this node's bridge has delivered, by stream (source node, outbox creation,
/// priority), kept in a file that outlives the bridge (not the node). Each forward carries its
/// source's *mark*: the lowest id of that stream it has not had confirmed (ids of a lane only
/// grow, and a source takes them in order). Every id below the mark was delivered here or
/// refused, and is answered again without a second delivery; only the ids from the mark on are
/// remembered, so the memory is the source's window of unconfirmed messages, whatever came
/// meanwhile. (It was a ring of the last 65,536 ids of all sources: a source back after that
/// many other deliveries had its message delivered twice; found in review.)
struct Seen {
    path: std::path::PathBuf,
    file: std::fs::File,
    streams: HashMap<(u64, u64, u8), Stream>,
    /// Records in the file, to know when to write it anew.
    records: usize,
}

#[derive(Default)]
struct Stream {
    mark: u64,
    ids: std::collections::BTreeSet<u64>,
}

/// How long a starting bridge waits for corosync.
const COROSYNC_WAIT: Duration = Duration::from_secs(30);

/// The end of a refusal for a queue removed while the bridge held it.
const REMOVED: &str = ": the queue was removed";

/// A record of the file: kind (0 a delivered id, 1 a mark), source, epoch, the id or mark.
const SEEN_RECORD: usize = 25;

impl Seen {
    fn open(path: &std::path::Path) -> std::io::Result<Seen> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut seen = Seen {
            path: path.to_path_buf(),
            file,
            streams: HashMap::new(),
            records: 0,
        };
        // Whatever a peer wrote there is only ids: a record that makes no sense is skipped.
        for r in bytes.chunks_exact(SEEN_RECORD) {
            let w = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
            let (src, epoch, v) = (w(1), w(9), w(17));
            match r[0] {
                0 => seen.remember(src, epoch, v),
                1 => {
                    seen.raise_mark(src, epoch, v);
                }
                _ => {}
            }
            seen.records += 1;
        }
        Ok(seen)
    }

    fn stream(&mut self, src: u64, epoch: u64, v: u64) -> &mut Stream {
        // A newer outbox of a source: its older ones' streams are done with.
        let newer = self.streams.keys().any(|&(s, e, _)| s == src && e > epoch);
        if !newer {
            self.streams.retain(|&(s, e, _), _| s != src || e >= epoch);
        }
        self.streams.entry((src, epoch, (v & 3) as u8)).or_default()
    }

    fn remember(&mut self, src: u64, epoch: u64, id: u64) {
        let s = self.stream(src, epoch, id);
        if id >= s.mark {
            s.ids.insert(id);
        }
    }

    fn raise_mark(&mut self, src: u64, epoch: u64, mark: u64) -> bool {
        let s = self.stream(src, epoch, mark);
        if mark <= s.mark {
            return false;
        }
        s.mark = mark;
        s.ids = s.ids.split_off(&mark);
        true
    }

    /// Whether the forward `id` was delivered here (or is below its source's mark).
    fn delivered(&self, id: &Id) -> bool {
        self.streams
            .get(&(id[0], id[1], (id[2] & 3) as u8))
            .is_some_and(|s| id[2] < s.mark || s.ids.contains(&id[2]))
    }

    /// A forward's mark: what is below it is forgotten.
    fn mark(&mut self, id: &Id, mark: u64) -> std::io::Result<()> {
        if (mark & 3) != (id[2] & 3) || !self.raise_mark(id[0], id[1], mark) {
            return Ok(());
        }
        self.append(1, id[0], id[1], mark)
    }

    /// Records a delivery.
    fn record(&mut self, id: Id) -> std::io::Result<()> {
        self.remember(id[0], id[1], id[2]);
        self.append(0, id[0], id[1], id[2])
    }

    fn append(&mut self, kind: u8, src: u64, epoch: u64, v: u64) -> std::io::Result<()> {
        let mut r = Vec::with_capacity(SEEN_RECORD);
        r.push(kind);
        for w in [src, epoch, v] {
            r.extend_from_slice(&w.to_le_bytes());
        }
        std::io::Write::write_all(&mut self.file, &r)?;
        self.records += 1;
        let live: usize = self.streams.values().map(|s| s.ids.len() + 1).sum();
        if self.records > 4 * live + 4096 {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the file anew with what is remembered (into a temporary file, then renamed).
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut n = 0;
        for (&(src, epoch, _), s) in &self.streams {
            for (kind, v) in std::iter::once((1u8, s.mark)).chain(s.ids.iter().map(|&i| (0, i))) {
                out.push(kind);
                for w in [src, epoch, v] {
                    out.extend_from_slice(&w.to_le_bytes());
                }
                n += 1;
            }
        }
        let temp = self.path.with_extension("new");
        std::fs::write(&temp, &out)?;
        std::fs::rename(&temp, &self.path)?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.records = n;
        Ok(())
    }
}

/// A running bridge (see the module documentation).
pub struct Bridge {
    config: BridgeConfig,
    domain: Domain,
    rx: Receiver,
    group: ProcessGroup,
    /// The bridges known, by member.
    names: HashMap<Member, String>,
    pending: BTreeMap<Id, Pending>,
    seen: Seen,
    queues: HashMap<String, Queue>,
    /// Refused messages whose dead letter could not be written yet (kept, not lost).
    undead: Vec<(Message, String)>,
    /// Per (source, outbox epoch, priority, queue): the first forward a full queue could not
    /// take; later ones of that stream wait behind it (order per sender and queue).
    blocked: HashMap<(u64, u64, u8, String), u64>,
    epoch: u64,
    me: u64,
    log: Box<dyn FnMut(&str) + Send>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.config.node)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// What the bridge holds goes back to the outbox, unacknowledged (dropping a `Message`
/// acknowledges it: without this, only the field order, the receiver dropped first, kept a
/// stopped bridge's unconfirmed messages).
impl Drop for Bridge {
    fn drop(&mut self) {
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.message.release();
        }
        for (m, _) in std::mem::take(&mut self.undead) {
            let _ = m.release();
        }
    }
}

impl Bridge {
    /// Starts a bridge: takes this node's outbox (a second bridge of the node is refused;
    /// one that died is taken over, its unconfirmed messages forwarded again), joins the
    /// bridges' group on `backend` and says hello. `log` gets a line per event worth telling.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] (bad domain, the outbox owned by a live bridge), the group's
    /// and the queue's errors (as [`ClusterError::Config`] with the reason).
    pub fn start(
        config: BridgeConfig,
        backend: Backend,
        log: Box<dyn FnMut(&str) + Send>,
    ) -> Result<Bridge, ClusterError> {
        let domain = config.domain()?;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ClusterError::Config(format!("bridge of node {}: {what}: {e}", config.node))
        };
        let outbox = outbox(&domain, &config.outbox).map_err(|e| fail("outbox", &e))?;
        let rx = outbox.receiver().map_err(|e| fail("outbox", &e))?;
        let seen_path = std::path::Path::new(baton::SHM_DIR)
            .join(format!("baton.{domain}~.bridge-delivered.{}", config.node));
        let seen =
            Seen::open(&seen_path).map_err(|e| fail(&seen_path.display().to_string(), &e))?;
        // A bridge may start before corosync is up (at boot): it waits for it a while.
        let started = Instant::now();
        let group = loop {
            match ProcessGroup::join(backend.clone(), &config.group) {
                Err(ClusterError::Corosync(e)) if started.elapsed() < COROSYNC_WAIT => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        let epoch = outbox.status().created_unix_ns;
        let me = node_hash(&config.node);
        let mut b = Bridge {
            config,
            domain,
            rx,
            group,
            names: HashMap::new(),
            pending: BTreeMap::new(),
            seen,
            queues: HashMap::new(),
            undead: Vec::new(),
            blocked: HashMap::new(),
            epoch,
            me,
            log,
        };
        b.hello()?;
        Ok(b)
    }

    /// This bridge's node name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// Messages taken from the outbox and not yet confirmed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn hello(&mut self) -> Result<(), ClusterError> {
        let mut m = vec![wire::HELLO];
        m.extend_from_slice(self.config.node.as_bytes());
        self.multicast(&m)
    }

    fn multicast(&mut self, m: &[u8]) -> Result<(), ClusterError> {
        self.group.send_timeout(m, Duration::from_secs(10))
    }

    /// Runs until `stop()` says so (looked at least every 100 ms).
    ///
    /// # Errors
    ///
    /// The group's errors (corosync gone), the outbox's (removed, damaged).
    pub fn run(&mut self, stop: impl Fn() -> bool) -> Result<(), ClusterError> {
        let group_fd = self.group.fd()?;
        while !stop() {
            self.step(Duration::from_millis(100), group_fd)?;
        }
        Ok(())
    }

    /// One round: takes what the outbox has, handles what the group delivered, forwards again
    /// what waited too long; sleeps up to `wait` when there is nothing.
    fn step(&mut self, wait: Duration, group_fd: i32) -> Result<(), ClusterError> {
        let mut busy = false;
        // The outbox: at most a bounded number in flight to bridges that are there (what
        // waits for a node without a bridge holds only outbox room, and must not stop the
        // traffic to the others).
        let up: HashSet<&String> = self.names.values().collect();
        let mut in_flight = self
            .pending
            .values()
            .filter(|p| up.contains(&p.node))
            .count();
        drop(up);
        while in_flight + self.undead.len() < 4096 {
            match self.rx.try_recv() {
                Ok(m) => {
                    busy = true;
                    let before = self.pending.len();
                    self.take(m)?;
                    if self.pending.len() > before {
                        in_flight += 1;
                    }
                }
                Err(RecvError::Empty) => break,
                Err(e) => return Err(ClusterError::Config(format!("outbox: {e}"))),
            }
        }
        while let Some(d) = self.group.recv(Some(Duration::ZERO))? {
            busy = true;
            self.deliver(d)?;
        }
        let every = Duration::from_millis(self.config.retransmit_ms);
        let up: HashSet<&String> = self.names.values().collect();
        let due: Vec<Id> = self
            .pending
            .iter()
            // A node without a bridge gets its messages when its bridge says hello.
            .filter(|(_, p)| p.sent.elapsed() >= every && up.contains(&p.node))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.resend(&id)?;
        }
        for (m, why) in std::mem::take(&mut self.undead) {
            self.dead_letter(m, &why, false);
        }
        if !busy {
            let rx_fd = {
                use std::os::fd::AsRawFd;
                self.rx
                    .ready_fd()
                    .map_err(|e| ClusterError::Config(format!("outbox: {e}")))?
                    .as_raw_fd()
            };
            let mut fds = [
                libc::pollfd {
                    fd: rx_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: group_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32) };
        }
        Ok(())
    }

    /// A message from the outbox: forward it (or refuse one that is no envelope).
    fn take(&mut self, m: Message) -> Result<(), ClusterError> {
        let Some((to, payload)) = RemoteAddress::open_envelope(m.payload()) else {
            self.refused(
                m,
                "not an envelope for node/queue (send with baton::RemoteAddress)",
            );
            return Ok(());
        };
        let id: Id = [self.me, self.epoch, m.id()];
        // The stream's mark: its lowest id not yet confirmed, this one's or a pending one's.
        let mark = self
            .pending
            .iter()
            .filter(|(k, p)| p.node == to.node && (k[2] & 3) == (id[2] & 3))
            .map(|(k, _)| k[2])
            .fold(id[2], u64::min);
        let mut f = vec![wire::FORWARD];
        put_id(&mut f, &id);
        f.extend_from_slice(&mark.to_le_bytes());
        f.push(to.node.len() as u8);
        f.extend_from_slice(to.node.as_bytes());
        f.push(to.queue.len() as u8);
        f.extend_from_slice(to.queue.as_bytes());
        f.push(m.priority());
        f.extend_from_slice(&m.msg_type().to_le_bytes());
        f.extend_from_slice(payload);
        match self.multicast(&f) {
            Ok(()) => {}
            Err(ClusterError::TooBig { len, max }) => {
                self.refused(
                    m,
                    &format!(
                        "{to}: a forward of {len} bytes is over the bridges' group's largest message ({max})"
                    ),
                );
                return Ok(());
            }
            Err(e) => {
                // Given back (dropping it would acknowledge it): the next bridge forwards it.
                let _ = m.release();
                return Err(e);
            }
        }
        self.pending.insert(
            id,
            Pending {
                message: m,
                forward: f,
                node: to.node,
                sent: Instant::now(),
            },
        );
        Ok(())
    }

    fn resend(&mut self, id: &Id) -> Result<(), ClusterError> {
        let Some(p) = self.pending.get_mut(id) else {
            return Ok(());
        };
        p.sent = Instant::now();
        let f = p.forward.clone();
        self.multicast(&f)
    }

    /// An outbox message that cannot be delivered: its requester is told, or it goes to the
    /// dead letters, and it is acknowledged.
    fn refused(&mut self, m: Message, why: &str) {
        (self.log)(&format!("refused: {why}"));
        if m.meta().is_request() {
            let _ = m.reply(format!("refused: {why}").as_bytes());
            let _ = m.ack();
        } else {
            self.dead_letter(m, why, true);
        }
    }

    /// Writes a refused message to the dead letters and acknowledges it; kept (and tried again
    /// each round) while that fails.
    fn dead_letter(&mut self, m: Message, why: &str, first: bool) {
        let dead = format!("{}.failed", self.config.outbox);
        let letter = [format!("{why}\n").as_bytes(), m.payload()].concat();
        let sent = match Queue::open(&self.domain, &dead) {
            Err(OpenError::NotFound { .. }) => Queue::create(
                &self.domain,
                &dead,
                &Attributes {
                    // The whole envelope and a reason.
                    max_message: (m.payload().len() + 1024).max(4096 + 256 + 1024) as u32,
                    ..Attributes::default()
                },
            ),
            other => other,
        }
        .map_err(|e| e.to_string())
        .and_then(|q| q.sender().try_send(letter).map_err(|e| e.to_string()));
        match sent {
            Ok(()) => {
                let _ = m.ack();
            }
            Err(e) => {
                if first {
                    (self.log)(&format!(
                        "dead letter to {dead} not written (kept, tried again each round): {e}"
                    ));
                }
                self.undead.push((m, why.to_string()));
            }
        }
    }

    fn deliver(&mut self, d: Delivery) -> Result<(), ClusterError> {
        match d {
            Delivery::Membership { member, reason, .. } => {
                match reason {
                    Reason::Join | Reason::NodeUp => {
                        // A newcomer learns who is who from everyone's hello.
                        self.hello()?;
                    }
                    _ => {
                        if let Some(n) = self.names.remove(&member) {
                            (self.log)(&format!("bridge of {n} gone ({reason:?})"));
                        }
                    }
                }
                Ok(())
            }
            Delivery::Message { from, payload } => match payload.first() {
                Some(&wire::HELLO) => {
                    let name = String::from_utf8_lossy(&payload[1..]).into_owned();
                    if name == self.config.node {
                        let me = self.group.me()?;
                        if from != me {
                            // Two bridges of one node name would both deliver its forwards:
                            // one of them (the greater member, the same choice on both) stops.
                            (self.log)(&format!("bridge of {name} is {from} too"));
                            if me > from {
                                return Err(ClusterError::Config(format!(
                                    "node {name}: another bridge ({from}) has this name"
                                )));
                            }
                        }
                    }
                    if self.names.insert(from, name.clone()).as_ref() != Some(&name) {
                        (self.log)(&format!("bridge of {name} is {from}"));
                        // What waits for that node goes now.
                        let ids: Vec<Id> = self
                            .pending
                            .iter()
                            .filter(|(_, p)| p.node == name)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in ids {
                            self.resend(&id)?;
                        }
                    }
                    Ok(())
                }
                Some(&wire::FORWARD) => self.forwarded(&payload[1..]),
                Some(&wire::DONE) => {
                    self.done(&payload[1..]);
                    Ok(())
                }
                _ => Ok(()), // not a bridge's: ignored
            },
        }
    }

    /// A forward: ours to deliver if it names this node.
    fn forwarded(&mut self, b: &[u8]) -> Result<(), ClusterError> {
        let Some((id, rest)) = get_id(b) else {
            return Ok(());
        };
        let (Some(mark), Some(rest)) = (
            rest.get(..8)
                .map(|m| u64::from_le_bytes(m.try_into().unwrap_or_default())),
            rest.get(8..),
        ) else {
            return Ok(());
        };
        let Some((node, rest)) = get_str(rest) else {
            return Ok(());
        };
        if node != self.config.node {
            return Ok(());
        }
        let Some((queue, rest)) = get_str(rest) else {
            return Ok(());
        };
        let (Some(&priority), Some(t)) = (rest.first(), rest.get(1..9)) else {
            return Ok(());
        };
        let msg_type = i64::from_le_bytes(t.try_into().unwrap_or_default());
        let payload = &rest[9..];
        let stream = (id[0], id[1], priority, queue.to_string());
        if mark <= id[2] {
            if let Err(e) = self.seen.mark(&id, mark) {
                (self.log)(&format!("cannot record a mark: {e}"));
            }
        }
        let outcome = if self.seen.delivered(&id) {
            if self.blocked.get(&stream) == Some(&id[2]) {
                self.blocked.remove(&stream);
            }
            Ok(()) // delivered before: only confirmed again
        } else {
            if self.blocked.get(&stream).is_some_and(|&b| b < id[2]) {
                // An earlier one of this stream waits for room: this one goes after it.
                return Ok(());
            }
            let queue = queue.to_string();
            let sent = self.send_local(&queue, priority, msg_type, payload);
            match sent {
                Ok(()) => {
                    if let Err(e) = self.seen.record(id) {
                        (self.log)(&format!("cannot record a delivery: {e}"));
                    }
                    if self.blocked.get(&stream) == Some(&id[2]) {
                        self.blocked.remove(&stream);
                    }
                    Ok(())
                }
                Err(Some(why)) => {
                    if self.blocked.get(&stream) == Some(&id[2]) {
                        self.blocked.remove(&stream);
                    }
                    Err(why)
                }
                Err(None) => {
                    // Full for now: the next forward tries again, and later ones wait.
                    let b = self.blocked.entry(stream).or_insert(id[2]);
                    *b = (*b).min(id[2]);
                    return Ok(());
                }
            }
        };
        let mut d = vec![wire::DONE];
        put_id(&mut d, &id);
        match outcome {
            Ok(()) => d.push(wire::OK),
            Err(why) => {
                d.push(wire::REFUSED);
                d.extend_from_slice(why.as_bytes());
            }
        }
        self.multicast(&d)
    }

    /// Sends into a local queue: `Err(None)` while it is full (try again later), `Err(why)`
    /// when it cannot take the message at all.
    fn send_local(
        &mut self,
        queue: &str,
        priority: u8,
        msg_type: i64,
        payload: &[u8],
    ) -> Result<(), Option<String>> {
        // A cached handle of a queue removed since (and perhaps made again): looked up afresh.
        if self.queues.get(queue).is_some_and(Queue::is_removed) {
            self.queues.remove(queue);
        }
        match self.send_local_once(queue, priority, msg_type, payload) {
            // Removed while this send wrote into it: the message, written, went with the
            // queue, as what `rm` removes does (and may have been received before: sending it
            // again into a queue made anew under the name delivered it twice, seen under
            // load). Counted delivered.
            Err(Some(why)) if why.ends_with(REMOVED) => Ok(()),
            other => other,
        }
    }

    fn send_local_once(
        &mut self,
        queue: &str,
        priority: u8,
        msg_type: i64,
        payload: &[u8],
    ) -> Result<(), Option<String>> {
        let q = match self.queues.get(queue) {
            Some(q) => q.clone(),
            None => {
                let q = Queue::open(&self.domain, queue)
                    .map_err(|e| Some(format!("{}/{queue}: {e}", self.config.node)))?;
                self.queues.insert(queue.to_string(), q.clone());
                q
            }
        };
        let tx = q
            .sender()
            .with_priority(priority.min(3))
            .map_err(|e| Some(e.to_string()))?
            .with_type(msg_type);
        match tx.send_timeout(payload, Duration::from_millis(100)) {
            Ok(()) => Ok(()),
            Err(baton::SendError::Timeout) => Err(None),
            Err(baton::SendError::Removed) => {
                self.queues.remove(queue);
                Err(Some(format!("{}/{queue}{REMOVED}", self.config.node)))
            }
            Err(e) => Err(Some(format!("{}/{queue}: {e}", self.config.node))),
        }
    }

    /// A confirmation: ours if its id is one of our pending messages.
    fn done(&mut self, b: &[u8]) {
        let Some((id, rest)) = get_id(b) else { return };
        if id[0] != self.me || id[1] != self.epoch {
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return; // confirmed already (a forward sent twice is confirmed twice)
        };
        match rest.first() {
            Some(&wire::OK) => {
                if p.message.meta().is_request() {
                    let _ = p.message.reply(b"ok");
                }
                let _ = p.message.ack();
            }
            _ => {
                let why = String::from_utf8_lossy(rest.get(1..).unwrap_or_default()).into_owned();
                self.refused(p.message, &why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_checked_and_errors_name_the_file_and_line() {
        let c = BridgeConfig::parse("b.toml", "node = \"n1\"\n").unwrap();
        assert_eq!(c.group, DEFAULT_GROUP);
        assert_eq!(c.outbox, baton::DEFAULT_OUTBOX);
        assert_eq!(c.retransmit_ms, 1000);
        let e = BridgeConfig::parse("b.toml", "node = \"n1\"\nnodes = 3\n").unwrap_err();
        assert!(e.to_string().contains("b.toml, line 2"), "{e}");
        let e = BridgeConfig::parse("b.toml", "node = \"a/b\"\n").unwrap_err();
        assert!(e.to_string().contains("node"), "{e}");
        let e = BridgeConfig::parse("b.toml", "retransmit_ms = 5\n").unwrap_err();
        assert!(e.to_string().contains("node"), "{e}");
        let e = BridgeConfig::parse("b.toml", "node = \"n\"\nretransmit_ms = 0\n").unwrap_err();
        assert!(e.to_string().contains("retransmit_ms"), "{e}");
    }

    #[test]
    fn deliveries_and_marks_survive_a_reopen_and_the_marks_bound_the_memory() {
        let path = std::env::temp_dir().join(format!("baton-seen-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let id = |pos: u64| -> Id { [1, 2, pos << 2 | 3] };
        let mut s = Seen::open(&path).unwrap();
        for pos in 1..=3 {
            s.record(id(pos)).unwrap();
        }
        s.mark(&id(3), id(2)[2]).unwrap();
        drop(s);
        let mut s = Seen::open(&path).unwrap();
        assert!(
            s.delivered(&id(1)),
            "below the mark: answered, not delivered again"
        );
        assert!(s.delivered(&id(3)) && !s.delivered(&id(4)));
        assert!(
            !s.delivered(&[1, 2, 4 << 2]),
            "another priority is another stream"
        );
        // Many deliveries behind a moving mark: the memory stays the window.
        for pos in 4..20_000 {
            s.record(id(pos)).unwrap();
            s.mark(&id(pos), id(pos - 1)[2]).unwrap();
        }
        assert!(s.streams.values().map(|st| st.ids.len()).sum::<usize>() < 4);
        assert!(
            std::fs::metadata(&path).unwrap().len() < 400_000,
            "rewritten"
        );
        drop(s);
        let s = Seen::open(&path).unwrap();
        assert!(s.delivered(&id(19_999)) && !s.delivered(&id(20_000)));
        // A file a peer wrote garbage into: read without a panic.
        std::fs::write(&path, [0xffu8; 1000]).unwrap();
        assert!(!Seen::open(&path).unwrap().delivered(&id(1)));
        let _ = std::fs::remove_file(&path);
    }
}
