//! A queue's POSIX shared-memory segment: naming, creation, validation, layout.
//!
//! # Memory layout
//!
//! | offset            | what                                                            |
//! |-------------------|-----------------------------------------------------------------|
//! | 0                 | [`Identity`]: magic, format, ABI tag, attributes, lane offsets, name, domain; written once, before the segment gets its name |
//! | 1024              | [`Shared`]: owner lock block, receiver event, counters (atomics) |
//! | 4096              | lane 0: [`LaneControl`], stamps (`8 * cells`), data (`64 * cells`) |
//! | next page         | lanes 1, 2, 3 likewise, each starting on a page boundary         |
//!
//! # Creation and opening
//!
//! A segment is built under a temporary name (`O_CREAT | O_EXCL`, `fchmod` to the exact mode,
//! `posix_fallocate` so that a full `/dev/shm` fails now rather than SIGBUS later), initialised,
//! and only then `link`ed to its real name: nobody can ever open a half-made queue. If the link
//! finds the name taken, someone else created the queue at the same moment and we open theirs.
//!
//! Opening never trusts the file: `O_NOFOLLOW`, then `fstat` (regular file, our uid, big enough),
//! then the identity is copied out of shared memory once and checked (magic and byte order,
//! format, ABI tag, attributes in range, layout recomputed and compared, size, mode). Only that
//! private copy is used afterwards.

mod attributes;
pub(crate) mod events;
mod file;
pub(crate) mod group;
mod layout;
pub(crate) mod membership;

pub use attributes::Attributes;
pub use layout::PRIORITIES;
pub(crate) use layout::{Shared, SENDER_SLOTS};

use crate::error::{AttributeError, Denial, Incompatibility, OpenError, SegmentDamage};
use crate::name::{check_group_name, check_queue_name, Domain};
use crate::sys::futex::Futex;

/// While a consumer looks for messages (see [`Shared::lookout`]), senders wake no other
/// consumer unless more than this share of a lane's cells wait untaken: it is not keeping up.
/// Waking a helper sooner (at 8 cells) cost more than it gave: with no work per message, 4
/// consumers on 2 CPUs took half as many messages a second, waking each other for every
/// burst a sender made while the one looking was off its CPU.
pub(crate) const LOOKOUT_KEEPS_UP_SHARE: u64 = 4;
use crate::sys::shm::{self, Temporary, SHM_DIR};
use attributes::NO_RETENTION;
use baton_ring::lane::{Lane, LaneControl, LaneGeometry, CELL};
use baton_ring::reply::{ReplyBox, ReplyBoxControl};
use baton_ring::DataCell;
use layout::{
    init_locks, layout, AbiTag, Identity, LaneLayout, ReplyLayout, FLAG_PROCESS_GROUP, FLAG_SHARED,
    FORMAT, HEADER_SIZE, MAGIC, NAME_FIELD, SHARED_OFFSET,
};
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A mapped, validated queue segment.
pub(crate) struct Segment {
    map: MmapRaw,
    file: File,
    path: PathBuf,
    attrs: Attributes,
    lanes: [LaneLayout; 4],
    replies: ReplyLayout,
    total: u64,
    domain: String,
    name: String,
    created_unix_ns: u64,
    /// Per lane, this process's last view of the lane's `head` (see `Lane::try_claim`).
    head_seen: [AtomicU64; 4],
    /// Per lane, its size and tag width, checked once at open (views are made per message).
    geometry: [LaneGeometry; 4],
    /// This mapping's `create` made the queue (rather than finding it).
    pub(crate) made_here: bool,
    /// A process group's log, not a queue ([`FLAG_PROCESS_GROUP`]).
    process_group: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("attrs", &self.attrs)
            .finish()
    }
}

impl Segment {
    /// Creates the queue, or opens it if it exists with the same attributes.
    pub(crate) fn create(
        domain: &Domain,
        name: &str,
        attrs: &Attributes,
    ) -> Result<Segment, OpenError> {
        check_queue_name(name)?;
        Segment::create_as(domain, name, attrs, false)
    }

    /// Creates process group `group`'s log, or opens it if it exists with the same attributes
    /// (see `queue::process_group`). Its file is `baton.<domain>~.pgroup.<group>`: a name no
    /// queue has.
    pub(crate) fn create_process_group(
        domain: &Domain,
        group: &str,
        attrs: &Attributes,
    ) -> Result<Segment, OpenError> {
        check_group_name(group)?;
        Segment::create_as(domain, &process_group_file(group), attrs, true)
    }

    /// Opens process group `group`'s log.
    pub(crate) fn open_process_group(domain: &Domain, group: &str) -> Result<Segment, OpenError> {
        check_group_name(group)?;
        Segment::open_as(domain, &process_group_file(group), false, true)
    }

    fn create_as(
        domain: &Domain,
        name: &str,
        attrs: &Attributes,
        process_group: bool,
    ) -> Result<Segment, OpenError> {
        let attrs = attrs.normalized()?;
        let (lanes, replies, total) =
            layout(&attrs).ok_or(OpenError::InvalidAttributes(AttributeError::NoLayout))?;
        let path = Path::new(SHM_DIR).join(shm::file_name(domain, name));
        // Two rounds: if someone else links the name between our look and our link, open theirs.
        for _ in 0..2 {
            match Segment::open_as(domain, name, false, process_group) {
                Ok(seg) => {
                    return match seg.attributes_in_force().difference(&attrs) {
                        None => Ok(seg),
                        Some(difference) => Err(OpenError::Exists {
                            name: name.to_string(),
                            difference,
                        }),
                    };
                }
                Err(OpenError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let temp = Temporary::create(&path, total)?;
            let fd = temp.file().as_raw_fd();
            fchmod(fd, Mode::from_bits_truncate(attrs.mode)).map_err(|e| shm::io("fchmod", e))?;
            match nix::fcntl::posix_fallocate(fd, 0, total as i64) {
                Ok(()) => {}
                Err(Errno::ENOSPC | Errno::EFBIG) => {
                    return Err(OpenError::NoSpace {
                        path: path.clone(),
                        needed: total,
                    })
                }
                Err(e) => return Err(shm::io(format!("posix_fallocate {total} bytes"), e)),
            }
            let map = MmapOptions::new()
                .len(total as usize)
                .map_raw(temp.file())
                .map_err(|e| shm::io("mmap", e))?;
            let mut identity = Identity::new(domain, name, &attrs, lanes, total);
            if process_group {
                identity.flags |= FLAG_PROCESS_GROUP;
            }
            // SAFETY: the mapping is `total >= HEADER_SIZE` bytes, page aligned, and private to us
            // until it is linked under its name below; `Identity` is plain data.
            unsafe { std::ptr::write_volatile(map.as_mut_ptr() as *mut Identity, identity) };
            // SAFETY: as above; `Shared` lies inside the header page (const-asserted).
            unsafe { init_locks(map.as_mut_ptr().add(SHARED_OFFSET) as *mut Shared)? };
            // SAFETY: as above.
            let shared = unsafe { &*(map.as_ptr().add(SHARED_OFFSET) as *const Shared) };
            shared
                .owner
                .retention_ns
                .store(identity.retention_ns, Ordering::Relaxed);
            // Each reply box starts at a random claim number, so that a reply token of another
            // queue, or of an earlier queue of this name, is refused here (review).
            let mut seed = random_seed(identity.created_unix_ns);
            for i in 0..u64::from(replies.count) {
                // SAFETY: `layout` placed each box's control line inside the mapping, 64-byte
                // aligned; nobody else sees the segment yet.
                let ctl = unsafe {
                    &*(map
                        .as_ptr()
                        .add((replies.offset + replies.stride * i) as usize)
                        as *const ReplyBoxControl)
                };
                seed = splitmix64(seed);
                ReplyBox::new(ctl, &[]).set_first_seq(seed);
            }

            // link(2), not rename: it fails with EEXIST instead of replacing a queue.
            match temp.link_as(&path) {
                Ok(()) => {
                    let file = temp.keep();
                    return Ok(Segment {
                        map,
                        file,
                        path,
                        attrs,
                        lanes,
                        replies,
                        total,
                        domain: domain.to_string(),
                        name: name.to_string(),
                        created_unix_ns: identity.created_unix_ns,
                        head_seen: Default::default(),
                        geometry: geometry(&lanes, attrs.tag_bits),
                        made_here: true,
                        process_group,
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(Errno::ENOSPC) => {
                    return Err(OpenError::NoSpace {
                        path,
                        needed: total,
                    })
                }
                Err(e) => return Err(shm::io(format!("link {}", path.display()), e)),
            }
        }
        Err(shm::io(
            format!("create {}", path.display()),
            std::io::Error::other("name keeps changing"),
        ))
    }

    /// Opens an existing queue, checking everything about the file before using it.
    pub(crate) fn open(domain: &Domain, name: &str) -> Result<Segment, OpenError> {
        Segment::open_checked(domain, name, false)
    }

    /// As [`Segment::open`]; with `accept_mode`, a file mode other than the one recorded at
    /// creation (say, group or other write bits added by `chmod`) is accepted.
    pub(crate) fn open_checked(
        domain: &Domain,
        name: &str,
        accept_mode: bool,
    ) -> Result<Segment, OpenError> {
        check_queue_name(name)?;
        Segment::open_as(domain, name, accept_mode, false)
    }

    /// Opens segment `name` of `domain`, which must be a queue (or with `process_group`, a
    /// process group's log).
    fn open_as(
        domain: &Domain,
        name: &str,
        accept_mode: bool,
        process_group: bool,
    ) -> Result<Segment, OpenError> {
        let path = Path::new(SHM_DIR).join(shm::file_name(domain, name));
        let seg = Segment::open_path_checked(&path, accept_mode).map_err(|e| match e {
            OpenError::NotFound { .. } => OpenError::NotFound {
                domain: domain.to_string(),
                name: name.to_string(),
            },
            e => e,
        })?;
        if seg.name != name || seg.domain != domain.as_str() || seg.process_group != process_group {
            return Err(OpenError::Corrupt {
                path,
                reason: SegmentDamage::OtherQueue {
                    name: seg.name.clone(),
                    domain: seg.domain.clone(),
                },
            });
        }
        Ok(seg)
    }

    /// Opens and validates the segment at `path`.
    pub(crate) fn open_path(path: &Path) -> Result<Segment, OpenError> {
        Segment::open_path_checked(path, false)
    }

    fn open_path_checked(path: &Path, accept_mode: bool) -> Result<Segment, OpenError> {
        let denied = |reason: Denial| OpenError::PermissionDenied {
            path: path.to_path_buf(),
            reason,
        };
        let corrupt = |reason: SegmentDamage| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let incompatible = |reason: Incompatibility| OpenError::Incompatible {
            path: path.to_path_buf(),
            reason,
        };
        let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                return Err(OpenError::NotFound {
                    domain: String::new(),
                    name: path.display().to_string(),
                })
            }
            Err(Errno::ELOOP) => return Err(denied(Denial::SymbolicLink)),
            Err(Errno::EACCES | Errno::EPERM) => return Err(denied(Denial::NoAccess)),
            Err(e) => return Err(shm::io(format!("open {}", path.display()), e)),
        };
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let st = fstat(file.as_raw_fd()).map_err(|e| shm::io("fstat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(denied(Denial::NotRegularFile));
        }
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(denied(Denial::OtherUser {
                owner: st.st_uid,
                user: me,
            }));
        }
        let size = st.st_size as u64;
        if size < HEADER_SIZE as u64 {
            return Err(corrupt(SegmentDamage::SmallerThanHeader {
                size,
                header: HEADER_SIZE,
            }));
        }
        let map = MmapOptions::new()
            .len(HEADER_SIZE)
            .map_raw(&file)
            .map_err(|e| shm::io("mmap", e))?;
        // SAFETY: the mapping holds HEADER_SIZE bytes; `Identity` is plain data valid for any
        // bits; a volatile copy takes one snapshot that a peer cannot change under us.
        let id = unsafe { std::ptr::read_volatile(map.as_ptr() as *const Identity) };
        drop(map);
        if id.magic != MAGIC {
            return Err(if id.magic.swap_bytes() == MAGIC {
                incompatible(Incompatibility::ByteOrder)
            } else {
                corrupt(SegmentDamage::BadMagic(id.magic))
            });
        }
        if id.format != FORMAT {
            return Err(incompatible(Incompatibility::Format {
                found: id.format,
                supported: FORMAT,
            }));
        }
        if id.abi != AbiTag::current() {
            return Err(incompatible(Incompatibility::Abi {
                found: format!("{:?}", id.abi),
                ours: format!("{:?}", AbiTag::current()),
            }));
        }
        if id.header_size as usize != HEADER_SIZE {
            return Err(corrupt(SegmentDamage::HeaderSize(id.header_size)));
        }
        let stored = Attributes {
            capacity: id.capacity,
            max_message: id.max_message,
            mode: id.mode,
            retention: (id.retention_ns != NO_RETENTION)
                .then(|| std::time::Duration::from_nanos(id.retention_ns)),
            tag_bits: id.tag_bits,
            shared: id.flags & FLAG_SHARED != 0,
            reply_boxes: id.reply_boxes,
        };
        if id.flags & !(FLAG_SHARED | FLAG_PROCESS_GROUP) != 0 {
            return Err(corrupt(SegmentDamage::Flags(id.flags)));
        }
        let attrs = match stored.normalized() {
            Ok(a) if a == stored => a,
            Ok(_) => return Err(corrupt(SegmentDamage::CapacityNotCells)),
            Err(OpenError::InvalidAttributes(e)) => {
                return Err(corrupt(SegmentDamage::Attributes(e)))
            }
            Err(e) => return Err(e),
        };
        let (lanes, replies, total) =
            layout(&attrs).ok_or_else(|| corrupt(SegmentDamage::NoLayout))?;
        if id.total_size != total
            || lanes
                .iter()
                .zip(id.lane_offset)
                .any(|(l, o)| l.control != o)
        {
            return Err(corrupt(SegmentDamage::LayoutMismatch));
        }
        if size != total {
            return Err(corrupt(SegmentDamage::Truncated {
                size,
                needed: total,
            }));
        }
        if st.st_mode & 0o777 != attrs.mode && !accept_mode {
            return Err(denied(Denial::ModeChanged {
                mode: st.st_mode & 0o777,
                created: attrs.mode,
            }));
        }
        let text = |bytes: &[u8; NAME_FIELD], len: u32| -> Result<String, OpenError> {
            let len = len as usize;
            let s = bytes.get(..len).and_then(|b| std::str::from_utf8(b).ok());
            s.map(str::to_string)
                .ok_or_else(|| corrupt(SegmentDamage::BadName))
        };
        let name = text(&id.name, id.name_len)?;
        let domain = text(&id.domain, id.domain_len)?;
        let map = MmapOptions::new()
            .len(total as usize)
            .map_raw(&file)
            .map_err(|e| shm::io("mmap", e))?;
        Ok(Segment {
            map,
            file,
            path: path.to_path_buf(),
            attrs,
            lanes,
            replies,
            total,
            domain,
            name,
            created_unix_ns: id.created_unix_ns,
            head_seen: Default::default(),
            geometry: geometry(&lanes, attrs.tag_bits),
            made_here: false,
            process_group: id.flags & FLAG_PROCESS_GROUP != 0,
        })
    }

    /// The queue's attributes as it was created (a private copy: touches nothing shared).
    pub(crate) fn attributes(&self) -> Attributes {
        self.attrs
    }

    /// The queue's attributes with the retention in force (`Queue::set_retention`), or as
    /// created if a peer shrank the file (the retention's word is past its end: review).
    pub(crate) fn attributes_in_force(&self) -> Attributes {
        if self.check_size().is_err() {
            return self.attrs;
        }
        Attributes {
            retention: self.retention(),
            ..self.attrs
        }
    }

    /// The retention in force (`None` for a shared queue, whatever its word says).
    pub(crate) fn retention(&self) -> Option<std::time::Duration> {
        // Relaxed: a retention is read when a queue may go; one set a moment ago and not yet
        // seen is the same as one set a moment later.
        let ns = self.shared().owner.retention_ns.load(Ordering::Relaxed);
        (ns != NO_RETENTION && !self.attrs.shared).then(|| std::time::Duration::from_nanos(ns))
    }

    /// Stores the retention in force (checked by the caller: in range, not a shared queue).
    pub(crate) fn set_retention(&self, retention: Option<std::time::Duration>) {
        let ns = retention.map_or(NO_RETENTION, |d| d.as_nanos() as u64);
        self.shared()
            .owner
            .retention_ns
            .store(ns, Ordering::Relaxed);
    }

    /// The backing file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The queue's name and domain, as stored in the segment.
    pub(crate) fn names(&self) -> (&str, &str) {
        (&self.name, &self.domain)
    }

    /// When the queue was created, in nanoseconds since the Unix epoch.
    pub(crate) fn created_unix_ns(&self) -> u64 {
        self.created_unix_ns
    }

    /// The segment's size and the size of its file now (they differ if a peer truncated it).
    pub(crate) fn sizes(&self) -> (u64, Option<u64>) {
        (
            self.total,
            fstat(self.file.as_raw_fd())
                .ok()
                .map(|st| st.st_size as u64),
        )
    }

    /// Marks the segment removed, then unlinks its name if the name still refers to this segment
    /// (someone may have removed it and created a new queue under the same name meanwhile).
    pub(crate) fn remove(&self) -> Result<(), OpenError> {
        self.remove_for(true)
    }

    /// Marks the queue removed and unlinks its name (if it still names this segment), and
    /// says so in the domain's event log (`expired`: for its retention, not by a call).
    fn remove_for(&self, expired: bool) -> Result<(), OpenError> {
        let removed = self.unlink_name();
        if removed.is_ok() {
            self.emit(events::kind::QUEUE_REMOVED, 0, u64::from(expired));
        }
        removed
    }

    /// Removes a process group's log: marked removed (members and senders say so), then its
    /// name unlinked.
    pub(crate) fn remove_process_group(&self) -> Result<(), OpenError> {
        self.unlink_name()
    }

    fn unlink_name(&self) -> Result<(), OpenError> {
        self.shared()
            .stats
            .removed
            .store(1, std::sync::atomic::Ordering::SeqCst);
        // Sleepers wake only for a reason now (no tick): this is one.
        self.wake_sleepers();
        let mine = fstat(self.file.as_raw_fd()).map_err(|e| shm::io("fstat", e))?;
        match nix::sys::stat::stat(&self.path) {
            Ok(st) if st.st_ino == mine.st_ino && st.st_dev == mine.st_dev => {
                shm::unlink(&self.path, &self.domain, &self.name)
            }
            // Gone already, or a new queue under the name: nothing of ours to unlink.
            _ => Ok(()),
        }
    }

    /// Checks that the file still has the segment's size. A peer that shrinks it makes every
    /// access past the new end a SIGBUS; blocking calls check this before they sleep and each
    /// time they wake, so a waiting process reports the damage instead of dying of it.
    pub(crate) fn check_size(&self) -> Result<(), crate::error::Damage> {
        match fstat(self.file.as_raw_fd()) {
            Ok(st) if (st.st_size as u64) < self.total => Err(crate::error::Damage::Truncated {
                file_size: st.st_size as u64,
                size: self.total,
            }),
            _ => Ok(()),
        }
    }

    /// The file's device and inode: the same in every mapping of it in this process.
    pub(crate) fn file_key(&self) -> (u64, u64) {
        fstat(self.file.as_raw_fd()).map_or((0, 0), |st| (st.st_dev, st.st_ino))
    }

    /// Whether the segment is a process group's log rather than a queue.
    pub(crate) fn is_process_group(&self) -> bool {
        self.process_group
    }

    /// Whether the segment has been marked removed.
    pub(crate) fn is_removed(&self) -> bool {
        self.shared()
            .stats
            .removed
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
    }

    /// Wakes the receivers of a new (or given back) message in `lane` (`None`: any lane): the
    /// owner, or in a shared queue every selective consumer (each looks whether the message
    /// is for it) and one plain consumer, unless one already looks for messages (see
    /// [`baton_ring::lookout`]) and keeps up with them.
    #[inline]
    pub(crate) fn announce_message(&self, lane: Option<&Lane<'_>>) {
        let shared = self.shared();
        if self.attrs.shared {
            shared.data_event.notify_one_if(&Futex, || {
                // A message in `lane` (`None`: in any lane): wake one unless somebody looks and
                // keeps up. Over several lanes, the one furthest behind decides: one piling
                // up, else one with anything waiting.
                let behind = |l: &Lane<'_>| {
                    (
                        l.unread_cells(),
                        l.capacity_cells() / LOOKOUT_KEEPS_UP_SHARE,
                    )
                };
                let (untaken, keeps_up) = match lane {
                    Some(l) => behind(l),
                    None => (0..PRIORITIES)
                        .map(|p| behind(&self.lane(p)))
                        .max_by_key(|&(u, k)| (u > k, u > 0))
                        .unwrap_or((0, 0)),
                };
                shared
                    .lookout
                    .should_wake(crate::sys::clock::monotonic_ns(), untaken, keeps_up)
            });
            shared.select_event.notify(&Futex);
        } else {
            shared.data_event.notify(&Futex);
        }
    }

    /// Wakes every sleeping receiver and consumer, to look again: the queue was removed, or a
    /// process took a sender slot that they should watch (see `recovery::DeathWatch`).
    pub(crate) fn wake_sleepers(&self) {
        let shared = self.shared();
        shared.data_event.notify(&Futex);
        if self.attrs.shared {
            shared.select_event.notify(&Futex);
        }
    }

    /// The shared header words.
    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: the mapping is `total > HEADER_SIZE` bytes long and page aligned; `Shared` is
        // at an offset aligned for it (const-asserted) and consists of atomics and a mutex that
        // are valid for any bit pattern; it lives as long as `self.map`.
        unsafe { &*(self.map.as_ptr().add(SHARED_OFFSET) as *const Shared) }
    }

    /// The lane of priority `p` (0..4).
    #[inline]
    pub(crate) fn lane(&self, p: usize) -> Lane<'_> {
        let l = &self.lanes[p];
        let base = self.map.as_ptr();
        // SAFETY: `layout` placed every part inside `total` bytes (checked against the file size
        // at open), aligned for its type: control on a page, stamps on 64 bytes, data on 128.
        // Atomics and data cells are valid for any bit pattern, and live as long as the mapping.
        unsafe {
            Lane::with_geometry(
                &*(base.add(l.control as usize) as *const LaneControl),
                std::slice::from_raw_parts(
                    base.add(l.stamps as usize) as *const AtomicU64,
                    l.cells as usize,
                ),
                std::slice::from_raw_parts(
                    base.add(l.data as usize) as *const DataCell,
                    l.cells as usize,
                ),
                &self.head_seen[p],
                self.geometry[p],
            )
        }
    }
}

impl Segment {
    /// Tells a crossing of lane `p`'s capacity thresholds, if there is one now: above
    /// `reached` bytes in use (`rising`: after a send), or back to `available` or below
    /// (after cells were freed). Each crossing is told once: the `above` flag changes by
    /// compare-and-swap, and only the process whose swap succeeds writes the event; between
    /// the two levels nothing changes, so a lane that hovers around one of them raises no
    /// storm of events.
    #[inline]
    pub(crate) fn check_threshold(&self, p: usize, rising: bool) {
        let t = &self.shared().thresholds[p];
        // Relaxed: thresholds are a report; a crossing seen a step late is still told once.
        let reached = t.reached.load(Ordering::Relaxed);
        if reached == 0 {
            return;
        }
        let above = t.above.load(Ordering::Relaxed);
        if rising == (above == 1) {
            return; // nothing this side can cross
        }
        let used = self.lane(p).used_cells() * baton_ring::lane::CELL as u64;
        let (from, to, kind) = if rising {
            if used < reached {
                return;
            }
            (0, 1, events::kind::THRESHOLD_REACHED)
        } else {
            if used > t.available.load(Ordering::Relaxed) {
                return;
            }
            (1, 0, events::kind::THRESHOLD_AVAILABLE)
        };
        if t.above
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.emit(kind, p as u64, used);
            // The other side may have moved past the other level meanwhile and found nothing
            // to tell, the flag not yet turned (review: a sender's rising turn after the ack
            // that emptied the lane left an empty lane "above" for good): look once more.
            self.check_threshold(p, !rising);
        }
    }

    /// Sets lane `p`'s capacity thresholds (`reached` 0: none); the lane counts as below them
    /// until a send finds it above.
    pub(crate) fn set_thresholds(&self, p: usize, reached: u64, available: u64) {
        let t = &self.shared().thresholds[p];
        t.reached.store(0, Ordering::Relaxed);
        t.available.store(available, Ordering::Relaxed);
        t.above.store(0, Ordering::Relaxed);
        t.reached.store(reached, Ordering::Relaxed);
    }

    /// Lane `p`'s capacity thresholds, `(reached, available)`, and whether it is above them.
    pub(crate) fn thresholds(&self, p: usize) -> (u64, u64, bool) {
        let t = &self.shared().thresholds[p];
        (
            t.reached.load(Ordering::Relaxed),
            t.available.load(Ordering::Relaxed),
            t.above.load(Ordering::Relaxed) == 1,
        )
    }

    /// After a send into the lane whose identity (`Lane::id`) is `lane_id`: tells a rising
    /// crossing of its thresholds. A queue with no thresholds pays four loads of one
    /// read-mostly line.
    #[inline]
    pub(crate) fn check_threshold_after_send(&self, lane_id: usize) {
        let ts = &self.shared().thresholds;
        if ts.iter().all(|t| t.reached.load(Ordering::Relaxed) == 0) {
            return;
        }
        if let Some(p) = (0..PRIORITIES).find(|&p| self.lane(p).id() == lane_id) {
            self.check_threshold(p, true);
        }
    }

    /// Writes an event about this queue into its domain's log, if the domain has one.
    pub(crate) fn emit(&self, kind: u16, a: u64, b: u64) {
        events::emit(&self.domain, kind, &self.name, a, b);
    }

    /// How many reply boxes the queue has.
    #[inline]
    pub(crate) fn reply_box_count(&self) -> u16 {
        self.replies.count as u16
    }

    /// Reply box `i`, if there is one.
    #[inline]
    pub(crate) fn reply_box(&self, i: u16) -> Option<ReplyBox<'_>> {
        let r = &self.replies;
        if u32::from(i) >= r.count {
            return None;
        }
        let at = r.offset + r.stride * u64::from(i);
        // SAFETY: `layout` placed every box inside `total` bytes (checked against the file size
        // at open), its control on a 64-byte boundary and its cells right after; atomics and
        // data cells are valid for any bit pattern, and live as long as the mapping.
        unsafe {
            let base = self.map.as_ptr().add(at as usize);
            Some(ReplyBox::new(
                &*(base as *const ReplyBoxControl),
                std::slice::from_raw_parts(base.add(CELL) as *const DataCell, r.cells as usize),
            ))
        }
    }
}

/// 64 random bits from the kernel, or (if it has none to give) from the clock and the pid.
/// A random number (from the kernel, or from the clock and pid when it has none to give).
pub(crate) fn random_u64() -> u64 {
    random_seed(crate::sys::clock::monotonic_ns())
}

fn random_seed(now_ns: u64) -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: writing at most 8 bytes into an 8-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, libc::GRND_NONBLOCK) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        splitmix64(now_ns ^ u64::from(std::process::id()) << 32)
    }
}

/// SplitMix64's step: spreads a seed over all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The lanes' geometries, checked once (a layout bug panics here, as `Lane::new` would).
fn geometry(lanes: &[LaneLayout; 4], tag_bits: u32) -> [LaneGeometry; 4] {
    lanes.map(|l| LaneGeometry::new(l.cells as usize, tag_bits))
}

/// Removes a queue's name. Processes that have it open find it marked removed: their next send
/// or receive fails with `Removed`. A segment that cannot be opened (corrupt, foreign) is
/// unlinked all the same.
/// The segment name of process group `group`'s log (a name no queue can have: see
/// `segment::group` for the files after a domain's `~.`).
pub(crate) fn process_group_file(group: &str) -> String {
    format!(".pgroup.{group}")
}

pub(crate) fn remove(domain: &Domain, name: &str) -> Result<(), OpenError> {
    check_queue_name(name)?;
    let path = Path::new(SHM_DIR).join(shm::file_name(domain, name));
    if let Ok(seg) = Segment::open_path(&path) {
        return seg.remove_for(false);
    }
    shm::unlink(&path, domain.as_str(), name)?;
    events::emit(domain.as_str(), events::kind::QUEUE_REMOVED, name, 0, 0);
    Ok(())
}
