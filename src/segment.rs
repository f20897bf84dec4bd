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

use crate::error::OpenError;
use crate::lane::{self, Lane, LaneControl, CELL, MAX_LANE_CELLS, MAX_RECORD_CELLS, RECORD_HEADER};
use crate::name::{check_queue_name, Domain};
use crate::recovery::SlotHolder;
use crate::robust::RobustMutex;
use crate::sync::{AtomicU32, AtomicU64, DataCell};
use crate::wait::Event;
use crossbeam_utils::CachePadded;
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// Where POSIX shared memory lives on Linux.
pub const SHM_DIR: &str = "/dev/shm";
/// Every baton file name starts with this.
pub const FILE_PREFIX: &str = "baton.";
/// `"BATONQ\0\x01"`: the first word of every segment; byte-swapped it reveals an endian mismatch.
pub const MAGIC: u64 = 0x4241_544F_4E51_0001;
/// Version of the layout described here.
pub const FORMAT: u32 = 3;
/// Bytes before the first lane.
pub const HEADER_SIZE: usize = 16384;
const SHARED_OFFSET: usize = 1024;
const PAGE: u64 = 4096;
const NAME_FIELD: usize = 256;

/// A queue's attributes, fixed at creation (SA-Forum MSG style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Attributes {
    /// Byte budget of each priority lane, 0 (highest) to 3. Rounded up to a multiple of 64; each
    /// message uses `32 + len` bytes rounded up to 64.
    pub capacity: [u64; 4],
    /// The largest payload a message may have, in bytes.
    pub max_message: u32,
    /// File mode of the segment (`0o600` by default), applied exactly, whatever the umask.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// `None` (the default): the queue lives until it is removed. `Some(d)`: it is deleted, with
    /// its messages, once it has had no owner for `d`; `Some(ZERO)` deletes it as soon as its
    /// owner closes or dies with no standby waiting (SA-Forum's non-persistent queue).
    #[serde(serialize_with = "seconds")]
    pub retention: Option<std::time::Duration>,
    /// Bits of a position kept in the lanes' stamps: 32 (the default) in production. Tests set
    /// fewer so that a lane passes the tag's wrap after 2^bits positions, in seconds instead
    /// of hours; then each lane may hold at most 2^(bits - 2) cells.
    #[doc(hidden)]
    #[serde(skip)]
    pub tag_bits: u32,
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

fn seconds<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// How a retention is stored: nanoseconds, `u64::MAX` for none.
const NO_RETENTION: u64 = u64::MAX;

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            capacity: [64 * 1024; 4],
            max_message: 4096,
            mode: 0o600,
            retention: None,
            tag_bits: lane::TAG_BITS,
        }
    }
}

impl Attributes {
    /// The most a payload may be: what 2^20 - 1 cells hold.
    pub const MAX_MESSAGE_LIMIT: u32 = (MAX_RECORD_CELLS as usize * CELL - RECORD_HEADER) as u32;

    /// Checks ranges and returns the attributes as stored (capacities rounded up to 64 bytes).
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidAttributes`] naming the first attribute out of range.
    pub fn normalized(&self) -> Result<Attributes, OpenError> {
        let bad = |m: String| Err(OpenError::InvalidAttributes(m));
        if self.max_message == 0 || self.max_message > Self::MAX_MESSAGE_LIMIT {
            return bad(format!(
                "max message {} is out of range 1..={}",
                self.max_message,
                Self::MAX_MESSAGE_LIMIT
            ));
        }
        if self.mode & !0o777 != 0 {
            return bad(format!("mode {:o} has bits outside 0777", self.mode));
        }
        if self.mode & 0o600 != 0o600 {
            return bad(format!(
                "mode {:03o} must let the owner read and write (0600)",
                self.mode
            ));
        }
        if !(lane::MIN_TAG_BITS..=lane::TAG_BITS).contains(&self.tag_bits) {
            return bad(format!(
                "tag bits {} are out of range {}..={}",
                self.tag_bits,
                lane::MIN_TAG_BITS,
                lane::TAG_BITS
            ));
        }
        let min = lane::record_cells(self.max_message as usize) * CELL as u64;
        let mut capacity = self.capacity;
        for (p, c) in capacity.iter_mut().enumerate() {
            let rounded = c.div_ceil(CELL as u64).saturating_mul(CELL as u64);
            if rounded < min {
                return bad(format!(
                    "capacity {c} of priority {p} cannot hold one message of the maximum size \
                     {} (needs at least {min} bytes)",
                    self.max_message
                ));
            }
            if rounded > MAX_LANE_CELLS * CELL as u64 {
                return bad(format!(
                    "capacity {c} of priority {p} is over the 1 GiB limit"
                ));
            }
            if rounded / CELL as u64 > lane::max_cells_for_tag(self.tag_bits) {
                return bad(format!(
                    "capacity {c} of priority {p} is over what {}-bit tags allow",
                    self.tag_bits
                ));
            }
            *c = rounded;
        }
        if self
            .retention
            .is_some_and(|d| d.as_nanos() >= NO_RETENTION as u128)
        {
            return bad("retention is over 584 years".into());
        }
        Ok(Attributes { capacity, ..*self })
    }

    /// Says how `self` differs from `other`, or `None` when they are equal.
    pub(crate) fn difference(&self, asked: &Attributes) -> Option<String> {
        let mut diffs = Vec::new();
        for p in 0..4 {
            if self.capacity[p] != asked.capacity[p] {
                diffs.push(format!(
                    "capacity of priority {p} is {} (asked {})",
                    self.capacity[p], asked.capacity[p]
                ));
            }
        }
        if self.max_message != asked.max_message {
            diffs.push(format!(
                "max message is {} (asked {})",
                self.max_message, asked.max_message
            ));
        }
        if self.mode != asked.mode {
            diffs.push(format!(
                "mode is {:03o} (asked {:03o})",
                self.mode, asked.mode
            ));
        }
        if self.tag_bits != asked.tag_bits {
            diffs.push(format!(
                "tag bits are {} (asked {})",
                self.tag_bits, asked.tag_bits
            ));
        }
        if self.retention != asked.retention {
            let show = |r: Option<std::time::Duration>| match r {
                None => "none".to_string(),
                Some(d) => format!("{} s", d.as_secs_f64()),
            };
            diffs.push(format!(
                "retention is {} (asked {})",
                show(self.retention),
                show(asked.retention)
            ));
        }
        (!diffs.is_empty()).then(|| diffs.join(", "))
    }
}

/// What a segment was built by; a mismatch in any field makes the segment [`OpenError::Incompatible`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct AbiTag {
    pointer_width: u32,
    /// 1 glibc, 2 musl, 0 other: `pthread_mutex_t` differs between them.
    libc: u32,
    mutex_size: u32,
    cell: u32,
    record_header: u32,
    lane_control: u32,
    shared: u32,
    reserved: u32,
}

impl AbiTag {
    fn current() -> AbiTag {
        AbiTag {
            pointer_width: usize::BITS,
            libc: if cfg!(target_env = "gnu") {
                1
            } else if cfg!(target_env = "musl") {
                2
            } else {
                0
            },
            mutex_size: std::mem::size_of::<libc::pthread_mutex_t>() as u32,
            cell: CELL as u32,
            record_header: RECORD_HEADER as u32,
            lane_control: std::mem::size_of::<LaneControl>() as u32,
            shared: std::mem::size_of::<Shared>() as u32,
            reserved: 0,
        }
    }
}

/// The immutable first part of the header. Plain data: read once by a volatile copy.
#[derive(Clone, Copy)]
#[repr(C)]
struct Identity {
    magic: u64,
    format: u32,
    header_size: u32,
    abi: AbiTag,
    total_size: u64,
    created_unix_ns: u64,
    retention_ns: u64,
    capacity: [u64; 4],
    lane_offset: [u64; 4],
    max_message: u32,
    mode: u32,
    creator_pid: u32,
    name_len: u32,
    domain_len: u32,
    /// Bits of a position the lanes' stamps keep ([`Attributes::tag_bits`]).
    tag_bits: u32,
    name: [u8; NAME_FIELD],
    domain: [u8; NAME_FIELD],
}

/// Slots in the sender table; slot 0 is never handed out.
pub(crate) const SENDER_SLOTS: usize = 256;

/// The shared, mutable part of the header.
#[repr(C)]
pub(crate) struct Shared {
    pub(crate) owner: CachePadded<OwnerBlock>,
    /// The receiver sleeps here; senders notify after committing.
    pub(crate) data_event: CachePadded<Event>,
    pub(crate) stats: CachePadded<Stats>,
    /// The sender table: a slot per process that sends to the queue or waits to own it. The
    /// stamp of every claim names its sender's slot; a slot's lock says whether its holder
    /// lives (see `recovery`).
    pub(crate) slots: [ProcessSlot; SENDER_SLOTS],
}

/// One slot of the sender table.
#[repr(C)]
pub(crate) struct ProcessSlot {
    /// Held by a keeper thread of the process that has the slot, for as long as it maps the
    /// queue: the kernel releases it, marked owner-died, when that process dies or execs.
    pub(crate) lock: RobustMutex,
    /// Pid of the holder in its own pid namespace (0 when free): for display only.
    pub(crate) pid: AtomicU32,
    /// How many of the holder's threads wait to own the queue (standbys).
    pub(crate) standbys: AtomicU32,
}

/// The owner lock and what the owner publishes about itself.
#[repr(C)]
pub(crate) struct OwnerBlock {
    /// Robust, process-shared, NORMAL, non-PI. Only the keeper thread locks and unlocks it.
    pub(crate) mutex: RobustMutex,
    /// Pid of the owner while it owns the queue, 0 otherwise.
    pub(crate) pid: AtomicU32,
    /// Bumped each time a process takes ownership.
    pub(crate) epoch: AtomicU64,
    /// How many times the lock was acquired from a dead holder (an owner, or a recovering
    /// standby that died during recovery).
    pub(crate) takeovers: AtomicU64,
    /// `CLOCK_MONOTONIC` ns of when the current owner took the queue.
    pub(crate) owned_since_ns: AtomicU64,
    /// `CLOCK_MONOTONIC` ns since when the queue has had no owner (its last owner's close, or
    /// the moment its death was found); 0 while it has never had one.
    pub(crate) unowned_since_ns: AtomicU64,
}

/// Queue-wide counters.
#[repr(C)]
pub(crate) struct Stats {
    /// `try_send` calls (and blocking sends that gave up) refused because a lane was full.
    pub(crate) rejected_full: AtomicU64,
    /// Messages delivered again after their owner died or released them unacknowledged.
    pub(crate) redelivered: AtomicU64,
    /// Set (to 1) before the queue's name is removed: every later send or receive on this
    /// segment fails with `Removed` instead of disappearing into a queue nobody can open.
    pub(crate) removed: AtomicU32,
}

const _: () = assert!(SHARED_OFFSET >= std::mem::size_of::<Identity>());
const _: () = assert!(SHARED_OFFSET + std::mem::size_of::<Shared>() <= HEADER_SIZE);
const _: () = assert!(SHARED_OFFSET % std::mem::align_of::<Shared>() == 0);

/// Where one lane's parts are in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LaneLayout {
    control: u64,
    stamps: u64,
    data: u64,
    cells: u64,
}

/// Computes the lanes' places and the segment's size from the capacities in bytes.
fn layout(capacity: &[u64; 4]) -> Option<([LaneLayout; 4], u64)> {
    let round = |x: u64, to: u64| x.checked_add(to - 1).map(|v| v / to * to);
    let mut off = HEADER_SIZE as u64;
    let mut lanes = [LaneLayout {
        control: 0,
        stamps: 0,
        data: 0,
        cells: 0,
    }; 4];
    for (lane, &bytes) in lanes.iter_mut().zip(capacity) {
        let cells = bytes / CELL as u64;
        if cells == 0 || cells > MAX_LANE_CELLS || bytes % CELL as u64 != 0 {
            return None;
        }
        let control = off;
        let stamps = round(
            control + std::mem::size_of::<LaneControl>() as u64,
            CELL as u64,
        )?;
        let data = round(stamps.checked_add(cells * 8)?, 128)?;
        let end = data.checked_add(cells * CELL as u64)?;
        *lane = LaneLayout {
            control,
            stamps,
            data,
            cells,
        };
        off = round(end, PAGE)?;
    }
    Some((lanes, off))
}

/// The file name of a queue in `/dev/shm`. Names that would make it longer than 255 bytes are
/// replaced by a stable hash; the real name is kept in the segment and checked on open.
pub(crate) fn file_name(domain: &Domain, name: &str) -> String {
    let plain = format!("{FILE_PREFIX}{domain}~{name}");
    if plain.len() <= 255 {
        return plain;
    }
    // FNV-1a, 64 bits: stable across builds (unlike std's hasher).
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{FILE_PREFIX}{domain}~#{hash:016x}")
}

/// The prefix of every file of `domain` (queues and temporaries).
pub(crate) fn domain_prefix(domain: &Domain) -> String {
    format!("{FILE_PREFIX}{domain}~")
}

fn io(context: impl Into<String>, e: impl Into<std::io::Error>) -> OpenError {
    OpenError::Io {
        context: context.into(),
        source: e.into(),
    }
}

/// A mapped, validated queue segment.
pub(crate) struct Segment {
    map: MmapRaw,
    file: File,
    path: PathBuf,
    attrs: Attributes,
    lanes: [LaneLayout; 4],
    total: u64,
    domain: String,
    name: String,
    created_unix_ns: u64,
    /// This process's slot in the sender table, taken at the first send.
    pub(crate) slot: SlotHolder,
    /// Per lane, this process's last view of the lane's `head` (see `Lane::try_claim`).
    head_seen: [AtomicU64; 4],
    /// This mapping's `create` made the queue (rather than finding it).
    pub(crate) made_here: bool,
    /// This process's standby marks and waits on this mapping (see `recovery::StandbyState`).
    pub(crate) standby: crate::recovery::StandbyState,
}

impl Drop for Segment {
    fn drop(&mut self) {
        crate::recovery::release_sender_slot(self);
    }
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
        let attrs = attrs.normalized()?;
        let (lanes, total) = layout(&attrs.capacity).ok_or_else(|| {
            OpenError::InvalidAttributes("capacities give no valid layout".into())
        })?;
        let path = Path::new(SHM_DIR).join(file_name(domain, name));
        // Two rounds: if someone else links the name between our look and our link, open theirs.
        for _ in 0..2 {
            match Segment::open(domain, name) {
                Ok(seg) => {
                    return match seg.attrs.difference(&attrs) {
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
            fchmod(fd, Mode::from_bits_truncate(attrs.mode)).map_err(|e| io("fchmod", e))?;
            match nix::fcntl::posix_fallocate(fd, 0, total as i64) {
                Ok(()) => {}
                Err(Errno::ENOSPC | Errno::EFBIG) => {
                    return Err(OpenError::NoSpace {
                        path: path.clone(),
                        needed: total,
                    })
                }
                Err(e) => return Err(io(format!("posix_fallocate {total} bytes"), e)),
            }
            let map = MmapOptions::new()
                .len(total as usize)
                .map_raw(temp.file())
                .map_err(|e| io("mmap", e))?;
            let identity = Identity::new(domain, name, &attrs, lanes, total);
            // SAFETY: the mapping is `total >= HEADER_SIZE` bytes, page aligned, and private to us
            // until it is linked under its name below; `Identity` is plain data.
            unsafe { std::ptr::write_volatile(map.as_mut_ptr() as *mut Identity, identity) };
            // SAFETY: as above; `Shared` lies inside the header page (const-asserted).
            unsafe { init_locks(map.as_mut_ptr().add(SHARED_OFFSET) as *mut Shared)? };

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
                        total,
                        domain: domain.to_string(),
                        name: name.to_string(),
                        created_unix_ns: identity.created_unix_ns,
                        slot: SlotHolder::default(),
                        head_seen: Default::default(),
                        made_here: true,
                        standby: Default::default(),
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(Errno::ENOSPC) => {
                    return Err(OpenError::NoSpace {
                        path,
                        needed: total,
                    })
                }
                Err(e) => return Err(io(format!("link {}", path.display()), e)),
            }
        }
        Err(io(
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
        let path = Path::new(SHM_DIR).join(file_name(domain, name));
        let seg = Segment::open_path_checked(&path, accept_mode).map_err(|e| match e {
            OpenError::NotFound { .. } => OpenError::NotFound {
                domain: domain.to_string(),
                name: name.to_string(),
            },
            e => e,
        })?;
        if seg.name != name || seg.domain != domain.as_str() {
            return Err(OpenError::Corrupt {
                path,
                reason: format!("it holds queue {:?} of domain {:?}", seg.name, seg.domain),
            });
        }
        Ok(seg)
    }

    /// Opens and validates the segment at `path`.
    pub(crate) fn open_path(path: &Path) -> Result<Segment, OpenError> {
        Segment::open_path_checked(path, false)
    }

    fn open_path_checked(path: &Path, accept_mode: bool) -> Result<Segment, OpenError> {
        let denied = |reason: String| OpenError::PermissionDenied {
            path: path.to_path_buf(),
            reason,
        };
        let corrupt = |reason: String| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let incompatible = |reason: String| OpenError::Incompatible {
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
            Err(Errno::ELOOP) => return Err(denied("it is a symbolic link".into())),
            Err(Errno::EACCES | Errno::EPERM) => return Err(denied("no read/write access".into())),
            Err(e) => return Err(io(format!("open {}", path.display()), e)),
        };
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let st = fstat(file.as_raw_fd()).map_err(|e| io("fstat", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(denied("it is not a regular file".into()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(denied(format!(
                "it belongs to uid {}, not to this user (uid {me})",
                st.st_uid
            )));
        }
        let size = st.st_size as u64;
        if size < HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "it is {size} bytes, smaller than a header ({HEADER_SIZE})"
            )));
        }
        let map = MmapOptions::new()
            .len(HEADER_SIZE)
            .map_raw(&file)
            .map_err(|e| io("mmap", e))?;
        // SAFETY: the mapping holds HEADER_SIZE bytes; `Identity` is plain data valid for any
        // bits; a volatile copy takes one snapshot that a peer cannot change under us.
        let id = unsafe { std::ptr::read_volatile(map.as_ptr() as *const Identity) };
        drop(map);
        if id.magic != MAGIC {
            return Err(if id.magic.swap_bytes() == MAGIC {
                incompatible("it was made on a machine of the other byte order".into())
            } else {
                corrupt(format!("bad magic {:#018x}", id.magic))
            });
        }
        if id.format != FORMAT {
            return Err(incompatible(format!(
                "format version {} (this baton reads {FORMAT})",
                id.format
            )));
        }
        if id.abi != AbiTag::current() {
            return Err(incompatible(format!(
                "ABI tag {:?} does not match this build's {:?}",
                id.abi,
                AbiTag::current()
            )));
        }
        if id.header_size as usize != HEADER_SIZE {
            return Err(corrupt(format!("header size {}", id.header_size)));
        }
        let stored = Attributes {
            capacity: id.capacity,
            max_message: id.max_message,
            mode: id.mode,
            retention: (id.retention_ns != NO_RETENTION)
                .then(|| std::time::Duration::from_nanos(id.retention_ns)),
            tag_bits: id.tag_bits,
        };
        let attrs = match stored.normalized() {
            Ok(a) if a == stored => a,
            Ok(_) => return Err(corrupt("capacities are not multiples of 64".into())),
            Err(e) => return Err(corrupt(format!("attributes out of range: {e}"))),
        };
        let (lanes, total) =
            layout(&attrs.capacity).ok_or_else(|| corrupt("no valid layout".into()))?;
        if id.total_size != total
            || lanes
                .iter()
                .zip(id.lane_offset)
                .any(|(l, o)| l.control != o)
        {
            return Err(corrupt(
                "stored layout does not match its attributes".into(),
            ));
        }
        if size != total {
            return Err(corrupt(format!(
                "it is {size} bytes but its layout needs {total} (truncated?)"
            )));
        }
        if st.st_mode & 0o777 != attrs.mode && !accept_mode {
            return Err(denied(format!(
                "its mode is {:03o}, but it was created with {:03o}",
                st.st_mode & 0o777,
                attrs.mode
            )));
        }
        let text = |bytes: &[u8; NAME_FIELD], len: u32| -> Result<String, OpenError> {
            let len = len as usize;
            let s = bytes.get(..len).and_then(|b| std::str::from_utf8(b).ok());
            s.map(str::to_string)
                .ok_or_else(|| corrupt("stored name is not valid".into()))
        };
        let name = text(&id.name, id.name_len)?;
        let domain = text(&id.domain, id.domain_len)?;
        let map = MmapOptions::new()
            .len(total as usize)
            .map_raw(&file)
            .map_err(|e| io("mmap", e))?;
        Ok(Segment {
            map,
            file,
            path: path.to_path_buf(),
            attrs,
            lanes,
            total,
            domain,
            name,
            created_unix_ns: id.created_unix_ns,
            slot: SlotHolder::default(),
            head_seen: Default::default(),
            made_here: false,
            standby: Default::default(),
        })
    }

    /// The queue's attributes.
    pub(crate) fn attributes(&self) -> Attributes {
        self.attrs
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
        self.shared()
            .stats
            .removed
            .store(1, crate::sync::Ordering::SeqCst);
        let mine = fstat(self.file.as_raw_fd()).map_err(|e| io("fstat", e))?;
        match nix::sys::stat::stat(&self.path) {
            Ok(st) if st.st_ino == mine.st_ino && st.st_dev == mine.st_dev => {
                unlink(&self.path, &self.domain, &self.name)
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

    /// Whether the segment has been marked removed.
    pub(crate) fn is_removed(&self) -> bool {
        self.shared()
            .stats
            .removed
            .load(crate::sync::Ordering::Relaxed)
            != 0
    }

    /// The shared header words.
    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: the mapping is `total > HEADER_SIZE` bytes long and page aligned; `Shared` is
        // at an offset aligned for it (const-asserted) and consists of atomics and a mutex that
        // are valid for any bit pattern; it lives as long as `self.map`.
        unsafe { &*(self.map.as_ptr().add(SHARED_OFFSET) as *const Shared) }
    }

    /// The lane of priority `p` (0..4).
    pub(crate) fn lane(&self, p: usize) -> Lane<'_> {
        let l = &self.lanes[p];
        let base = self.map.as_ptr();
        // SAFETY: `layout` placed every part inside `total` bytes (checked against the file size
        // at open), aligned for its type: control on a page, stamps on 64 bytes, data on 128.
        // Atomics and data cells are valid for any bit pattern, and live as long as the mapping.
        unsafe {
            Lane::new(
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
                self.attrs.tag_bits,
            )
        }
    }
}

impl Identity {
    fn new(
        domain: &Domain,
        name: &str,
        attrs: &Attributes,
        lanes: [LaneLayout; 4],
        total: u64,
    ) -> Identity {
        let field = |s: &str| {
            let mut f = [0u8; NAME_FIELD];
            f[..s.len()].copy_from_slice(s.as_bytes());
            f
        };
        Identity {
            magic: MAGIC,
            format: FORMAT,
            header_size: HEADER_SIZE as u32,
            abi: AbiTag::current(),
            total_size: total,
            created_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            retention_ns: attrs
                .retention
                .map_or(NO_RETENTION, |d| d.as_nanos() as u64),
            capacity: attrs.capacity,
            lane_offset: lanes.map(|l| l.control),
            max_message: attrs.max_message,
            mode: attrs.mode,
            creator_pid: std::process::id(),
            name_len: name.len() as u32,
            domain_len: domain.as_str().len() as u32,
            tag_bits: attrs.tag_bits,
            name: field(name),
            domain: field(domain.as_str()),
        }
    }
}

/// Initialises the owner lock and every slot lock of a new segment.
///
/// # Safety
///
/// `shared` must point to zero-filled, writable memory for a `Shared` that no other process can
/// see yet.
unsafe fn init_locks(shared: *mut Shared) -> Result<(), OpenError> {
    let fail = |e: std::io::Error| io("pthread_mutex_init", e);
    // SAFETY: per the contract the memory is valid, unseen, and (zero-filled) a valid `Shared`:
    // atomics, and mutexes not yet initialised, whose bytes sit in `UnsafeCell`s, so writing
    // them through these pointers is allowed. Each mutex is initialised once.
    unsafe {
        let shared: &Shared = &*shared;
        let locks =
            std::iter::once(&shared.owner.mutex).chain(shared.slots.iter().map(|s| &s.lock));
        for lock in locks {
            RobustMutex::init(lock as *const RobustMutex as *mut RobustMutex).map_err(fail)?;
        }
    }
    Ok(())
}

/// A new segment's file before it has a name: opened with `O_TMPFILE`, so nobody can see it
/// (nor `gc` take it for a dead creator's) until it is linked under the queue's name, and a
/// creator that dies before that leaves nothing behind.
struct Temporary {
    file: File,
}

impl Temporary {
    fn create(final_path: &Path, size: u64) -> Result<Temporary, OpenError> {
        let flags = OFlag::O_RDWR | OFlag::O_TMPFILE | OFlag::O_CLOEXEC;
        let fd = match open(Path::new(SHM_DIR), flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => fd,
            // No inode left (or no byte): the same for the caller.
            Err(Errno::ENOSPC) => {
                return Err(OpenError::NoSpace {
                    path: final_path.to_path_buf(),
                    needed: size,
                })
            }
            Err(e) => return Err(io(format!("create an unnamed file in {SHM_DIR}"), e)),
        };
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Temporary { file })
    }

    fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file its name: `link(2)` semantics, `EEXIST` if the name is taken. (Through
    /// `/proc/self/fd`, which needs no privilege, unlike `linkat` with `AT_EMPTY_PATH`.)
    fn link_as(&self, path: &Path) -> Result<(), Errno> {
        let me = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        nix::unistd::linkat(
            None,
            Path::new(&me),
            None,
            path,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
    }

    fn keep(self) -> File {
        self.file
    }
}

/// Removes a queue's name. Processes that have it open find it marked removed: their next send
/// or receive fails with `Removed`. A segment that cannot be opened (corrupt, foreign) is
/// unlinked all the same.
pub(crate) fn remove(domain: &Domain, name: &str) -> Result<(), OpenError> {
    check_queue_name(name)?;
    let path = Path::new(SHM_DIR).join(file_name(domain, name));
    if let Ok(seg) = Segment::open_path(&path) {
        return seg.remove();
    }
    unlink(&path, domain.as_str(), name)
}

/// Unlinks a queue's file; `domain` and `name` only name it in the error.
fn unlink(path: &Path, domain: &str, name: &str) -> Result<(), OpenError> {
    let path = path.to_path_buf();
    match nix::unistd::unlink(&path) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(OpenError::NotFound {
            domain: domain.to_string(),
            name: name.to_string(),
        }),
        Err(Errno::EACCES | Errno::EPERM) => Err(OpenError::PermissionDenied {
            path,
            reason: "not allowed to remove it".into(),
        }),
        Err(e) => Err(io(format!("unlink {}", path.display()), e)),
    }
}

/// Removes temporary files of `domain` whose creating process is dead; returns them.
pub(crate) fn remove_dead_temporaries(domain: &Domain) -> Result<Vec<PathBuf>, OpenError> {
    Ok(dead_temporaries(domain)?
        .into_iter()
        .filter(|(path, _)| nix::unistd::unlink(path).is_ok())
        .map(|(path, _)| path)
        .collect())
}

/// Temporary files of `domain` that are ours and whose creating process is gone, with the pid
/// in their name. baton itself no longer names a segment before it is made (see `Temporary`);
/// these are left by earlier versions, whose creators died half way through `create`, or made
/// by another tool, which may hold an `flock` on the file while it works on it.
pub(crate) fn dead_temporaries(domain: &Domain) -> Result<Vec<(PathBuf, u32)>, OpenError> {
    let prefix = format!("{}.tmp.", domain_prefix(domain));
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io(format!("read {SHM_DIR}"), e))?;
    let mut dead = Vec::new();
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Only our own files: root could unlink anyone's, and must not.
        let ours = nix::sys::stat::lstat(&entry.path())
            .is_ok_and(|st| st.st_uid == nix::unistd::geteuid().as_raw());
        if ours && !creator_alive(&entry.path()) {
            dead.push((entry.path(), pid));
        }
    }
    dead.sort();
    Ok(dead)
}

/// Whether a process holds a lock on a temporary file (its creator, at work). A file that
/// cannot be opened is left alone. The pid in the name is never asked: it may belong to
/// another pid namespace, or to another process by now.
fn creator_alive(path: &Path) -> bool {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let Ok(fd) = open(path, flags, Mode::empty()) else {
        return true;
    };
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: flock on a descriptor we own; closing `file` drops the lock if we got it.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc != 0
}

/// The backing files of the queues in `domain`, or in every domain (temporaries excluded),
/// sorted.
pub(crate) fn list_paths(domain: Option<&Domain>) -> Result<Vec<PathBuf>, OpenError> {
    let prefix = domain.map_or(FILE_PREFIX.to_string(), domain_prefix);
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io(format!("read {SHM_DIR}"), e))?;
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix(&prefix).is_some_and(|rest| {
                // A domain's temporaries are `<prefix><domain>~.<...>`.
                !rest.starts_with('.') && !rest.contains("~.")
            })
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_lanes_on_pages_inside_the_segment() {
        let (lanes, total) = layout(&[64 * 1024, 128, 4096, 1 << 20]).unwrap();
        for l in lanes {
            assert_eq!(l.control % PAGE, 0);
            assert!(l.stamps >= l.control + std::mem::size_of::<LaneControl>() as u64);
            assert!(l.data >= l.stamps + 8 * l.cells);
            assert!(l.data + l.cells * CELL as u64 <= total);
        }
        assert_eq!(total % PAGE, 0);
    }

    #[test]
    fn layout_refuses_sizes_that_are_not_cells() {
        assert!(layout(&[100, 64, 64, 64]).is_none());
        assert!(layout(&[0, 64, 64, 64]).is_none());
        assert!(layout(&[(MAX_LANE_CELLS + 1) * 64, 64, 64, 64]).is_none());
    }

    #[test]
    fn long_names_get_a_hashed_file_name_that_fits() {
        let d = Domain::new(&"d".repeat(200)).unwrap();
        let f = file_name(&d, &"n".repeat(200));
        assert!(f.len() <= 255 && f.contains("~#"), "{f}");
        assert_ne!(f, file_name(&d, &format!("{}m", "n".repeat(199))));
    }

    #[test]
    fn attributes_are_rounded_and_checked() {
        let a = Attributes {
            capacity: [100_000, 4160, 65536, 65536],
            ..Default::default()
        };
        assert_eq!(a.normalized().unwrap().capacity[0], 100_032);
        let small = Attributes {
            capacity: [4096, 65536, 65536, 65536],
            ..Default::default()
        };
        assert!(small
            .normalized()
            .unwrap_err()
            .to_string()
            .contains("priority 0"));
        let mode = Attributes {
            mode: 0o400,
            ..Default::default()
        };
        assert!(mode.normalized().is_err());
    }
}

#[cfg(test)]
mod layout_doc {
    use super::*;

    /// docs/design.md gives these numbers; if this fails, update the document with the layout.
    #[test]
    fn documented_sizes_and_offsets_hold() {
        assert_eq!(std::mem::size_of::<Identity>(), 672);
        assert_eq!(std::mem::offset_of!(Identity, retention_ns), 64);
        assert_eq!(std::mem::offset_of!(Identity, capacity), 72);
        assert_eq!(std::mem::offset_of!(Identity, max_message), 136);
        assert_eq!(std::mem::offset_of!(Identity, name), 160);
        assert_eq!(std::mem::offset_of!(Identity, domain), 416);
        assert_eq!(std::mem::size_of::<Shared>(), 12672);
        assert_eq!(std::mem::offset_of!(OwnerBlock, pid), 40);
        assert_eq!(std::mem::offset_of!(OwnerBlock, owned_since_ns), 64);
        assert_eq!(std::mem::offset_of!(OwnerBlock, unowned_since_ns), 72);
        assert_eq!(std::mem::offset_of!(Shared, data_event), 128);
        assert_eq!(std::mem::offset_of!(Shared, stats), 256);
        assert_eq!(std::mem::offset_of!(Stats, removed), 16);
        assert_eq!(std::mem::offset_of!(Shared, slots), 384);
        assert_eq!(std::mem::size_of::<ProcessSlot>(), 48);
        assert_eq!(std::mem::offset_of!(ProcessSlot, pid), 40);
        assert_eq!(std::mem::size_of::<LaneControl>(), 384);
        let (lanes, total) = layout(&[65536; 4]).unwrap();
        assert_eq!(
            (lanes[0].control, lanes[0].stamps, lanes[0].data),
            (16384, 16768, 24960)
        );
        assert_eq!(lanes[1].control, 94208);
        assert_eq!(total, 327680);
    }
}
