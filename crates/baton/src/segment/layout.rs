//! The segment's memory layout: the `repr(C)` header that describes the segment, the shared
//! words, the sender table, and where each lane's parts lie. See `docs/design.md` for the
//! table of offsets (a test below pins it).

use super::attributes::{Attributes, NO_RETENTION};
use crate::error::OpenError;
use crate::name::Domain;
use crate::sys::robust::RobustMutex;
use crate::sys::shm::io;
use baton_ring::lane::{LaneControl, CELL, MAX_LANE_CELLS, RECORD_HEADER};
use baton_ring::lookout::Lookout;
use baton_ring::reply::ReplyBoxControl;
use baton_ring::wake::Event;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Number of priority lanes; priority 0 is the highest.
pub const PRIORITIES: usize = 4;
/// `"BATONQ\0\x01"`: the first word of every segment; byte-swapped it reveals an endian mismatch.
pub(crate) const MAGIC: u64 = 0x4241_544F_4E51_0001;
/// Version of the layout described here.
pub(crate) const FORMAT: u32 = 9;
/// Bytes before the first lane.
pub(crate) const HEADER_SIZE: usize = 32768;
pub(crate) const SHARED_OFFSET: usize = 1024;
pub(crate) const PAGE: u64 = 4096;
pub(crate) const NAME_FIELD: usize = 256;

/// What a segment was built by; a mismatch in any field makes the segment [`OpenError::Incompatible`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct AbiTag {
    pub(crate) pointer_width: u32,
    /// 1 glibc, 2 musl, 0 other: `pthread_mutex_t` differs between them.
    pub(crate) libc: u32,
    pub(crate) mutex_size: u32,
    pub(crate) cell: u32,
    pub(crate) record_header: u32,
    pub(crate) lane_control: u32,
    pub(crate) shared: u32,
    pub(crate) reply_control: u32,
}

impl AbiTag {
    pub(crate) fn current() -> AbiTag {
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
            reply_control: std::mem::size_of::<ReplyBoxControl>() as u32,
        }
    }
}

/// The immutable first part of the header. Plain data: read once by a volatile copy.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Identity {
    pub(crate) magic: u64,
    pub(crate) format: u32,
    pub(crate) header_size: u32,
    pub(crate) abi: AbiTag,
    pub(crate) total_size: u64,
    pub(crate) created_unix_ns: u64,
    pub(crate) retention_ns: u64,
    pub(crate) capacity: [u64; 4],
    pub(crate) lane_offset: [u64; 4],
    pub(crate) max_message: u32,
    pub(crate) mode: u32,
    pub(crate) creator_pid: u32,
    pub(crate) name_len: u32,
    pub(crate) domain_len: u32,
    /// Bits of a position the lanes' stamps keep ([`Attributes::tag_bits`]).
    pub(crate) tag_bits: u32,
    pub(crate) name: [u8; NAME_FIELD],
    pub(crate) domain: [u8; NAME_FIELD],
    /// [`FLAG_SHARED`], or 0.
    pub(crate) flags: u32,
    /// [`Attributes::reply_boxes`]: the boxes lie after the lanes (see [`layout`]).
    pub(crate) reply_boxes: u32,
}

/// [`Identity::flags`]: the queue is shared by competing consumers ([`Attributes::shared`]).
pub(crate) const FLAG_SHARED: u32 = 1;
/// [`Identity::flags`]: the segment is a process group's log (`queue::process_group`), not a
/// queue.
pub(crate) const FLAG_PROCESS_GROUP: u32 = 2;

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
    /// Shared queues: the selective consumers sleep here, woken all at once by each message
    /// (plain consumers sleep on `data_event`, woken one per message).
    pub(crate) select_event: CachePadded<Event>,
    /// Shared queues: per sender slot, how many consumers its process has open.
    pub(crate) consumers: [AtomicU32; SENDER_SLOTS],
    /// Shared queues: which consumer looks for messages (polls, or was woken and is on its
    /// way), so that senders wake no other (see `baton_ring::lookout`).
    pub(crate) lookout: Lookout,
    /// Requesters waiting for a free reply box sleep here; a box freed notifies.
    pub(crate) reply_free: CachePadded<Event>,
    /// Per priority, the capacity thresholds (SA-Forum's `saMsgQueueCapacityThresholdSet`) and
    /// which side of them the lane is on.
    pub(crate) thresholds: CachePadded<[Threshold; PRIORITIES]>,
    /// Process groups: per sender slot, the member whose process holds the slot (see
    /// `queue::process_group`).
    pub(crate) members: [MemberEntry; SENDER_SLOTS],
    /// Process groups: the membership change under way, for whoever takes the group lock
    /// after its writer died.
    pub(crate) membership: CachePadded<MembershipJournal>,
}

/// A process group's member of one sender slot, on a cache line of its own: each member
/// stores its cursor after every record it reads (three members' cursors on one line made
/// every read a cache miss at the other two).
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct MemberEntry {
    /// The first log position the member has not read: nothing from here on is freed.
    pub(crate) cursor: AtomicU64,
    /// `nonce << 32 | pid` of the member (a nonce tells one membership of the slot from the
    /// next), or 0 when the slot has none.
    pub(crate) state: AtomicU64,
}

/// The membership change the holder of a process group's lock is making (see
/// `queue::process_group`): written before its record is claimed, cleared once it is applied.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct MembershipJournal {
    /// The record's type (join, leave, process down), 0 when no change is under way.
    pub(crate) kind: AtomicU64,
    /// The member's slot.
    pub(crate) slot: AtomicU64,
    /// The member's `nonce << 32 | pid`.
    pub(crate) member: AtomicU64,
    /// `position + 1` of the record once claimed, 0 before.
    pub(crate) claimed: AtomicU64,
    /// One past the highest slot a member ever joined from (slots are taken lowest first):
    /// the member table is scanned up to here. Only grows, under the group lock.
    pub(crate) high: AtomicU64,
    /// 1 when a PROCDOWN could not be written for lack of room: the next sweep writes it.
    pub(crate) owed: AtomicU64,
}

/// A lane's capacity thresholds: crossing above `reached` bytes in use, and then back to
/// `available` or below, are each told once (an event); `above` says which was last.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Threshold {
    /// Bytes; 0: no thresholds.
    pub(crate) reached: AtomicU64,
    /// Bytes, at most `reached`.
    pub(crate) available: AtomicU64,
    /// 1 once `reached` was crossed and `available` not yet.
    pub(crate) above: AtomicU32,
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
    /// The retention in force, in nanoseconds (`u64::MAX`: none): the identity's at creation,
    /// then whatever `Queue::set_retention` stored (SA-Forum's `saMsgQueueRetentionTimeSet`).
    /// Any value is a retention, so a peer's scribble can change when the queue goes, as
    /// `rm` could, but breaks nothing.
    pub(crate) retention_ns: AtomicU64,
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
    /// Replies that reached no requester: late (it gave up), to a requester that died, or a
    /// second reply to one request.
    pub(crate) replies_dropped: AtomicU64,
}

const _: () = assert!(SHARED_OFFSET >= std::mem::size_of::<Identity>());
const _: () = assert!(SHARED_OFFSET + std::mem::size_of::<Shared>() <= HEADER_SIZE);
const _: () = assert!(SHARED_OFFSET % std::mem::align_of::<Shared>() == 0);

/// Where one lane's parts are in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneLayout {
    pub(crate) control: u64,
    pub(crate) stamps: u64,
    pub(crate) data: u64,
    pub(crate) cells: u64,
}

/// Where the reply boxes are: `count` boxes of one control line and `cells` data cells each,
/// `stride` bytes apart from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyLayout {
    pub(crate) offset: u64,
    pub(crate) stride: u64,
    pub(crate) count: u32,
    pub(crate) cells: u64,
}

/// Computes the lanes' places, the reply boxes' and the segment's size from the attributes.
pub(crate) fn layout(attrs: &Attributes) -> Option<([LaneLayout; 4], ReplyLayout, u64)> {
    let round = |x: u64, to: u64| x.checked_add(to - 1).map(|v| v / to * to);
    let mut off = HEADER_SIZE as u64;
    let mut lanes = [LaneLayout {
        control: 0,
        stamps: 0,
        data: 0,
        cells: 0,
    }; 4];
    for (lane, &bytes) in lanes.iter_mut().zip(&attrs.capacity) {
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
    let cells = (attrs.max_message as u64).div_ceil(CELL as u64).max(1);
    let stride = round(std::mem::size_of::<ReplyBoxControl>() as u64, CELL as u64)?
        .checked_add(cells * CELL as u64)?;
    let replies = ReplyLayout {
        offset: off,
        stride,
        count: attrs.reply_boxes,
        cells,
    };
    let total = round(
        off.checked_add(stride.checked_mul(attrs.reply_boxes as u64)?)?,
        PAGE,
    )?;
    Some((lanes, replies, total))
}

impl Identity {
    pub(crate) fn new(
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
            flags: if attrs.shared { FLAG_SHARED } else { 0 },
            reply_boxes: attrs.reply_boxes,
        }
    }
}

/// Initialises the owner lock and every slot lock of a new segment.
///
/// # Safety
///
/// `shared` must point to zero-filled, writable memory for a `Shared` that no other process can
/// see yet.
pub(crate) unsafe fn init_locks(shared: *mut Shared) -> Result<(), OpenError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_lanes_on_pages_inside_the_segment() {
        let attrs = Attributes {
            capacity: [64 * 1024, 128, 4096, 1 << 20],
            max_message: 100,
            ..Attributes::default()
        };
        let (lanes, replies, total) = layout(&attrs).unwrap();
        for l in lanes {
            assert_eq!(l.control % PAGE, 0);
            assert!(l.stamps >= l.control + std::mem::size_of::<LaneControl>() as u64);
            assert!(l.data >= l.stamps + 8 * l.cells);
            assert!(l.data + l.cells * CELL as u64 <= replies.offset);
        }
        assert_eq!((replies.cells, replies.stride, replies.count), (2, 192, 16));
        assert!(replies.offset + 16 * 192 <= total);
        assert_eq!(total % PAGE, 0);
    }

    #[test]
    fn layout_refuses_sizes_that_are_not_cells() {
        let with = |capacity| Attributes {
            capacity,
            ..Attributes::default()
        };
        assert!(layout(&with([100, 64, 64, 64])).is_none());
        assert!(layout(&with([0, 64, 64, 64])).is_none());
        assert!(layout(&with([(MAX_LANE_CELLS + 1) * 64, 64, 64, 64])).is_none());
    }
}

#[cfg(test)]
mod layout_doc {
    use super::*;

    /// docs/design.md gives these numbers; if this fails, update the document with the layout.
    #[test]
    fn documented_sizes_and_offsets_hold() {
        assert_eq!(std::mem::size_of::<Identity>(), 680);
        assert_eq!(std::mem::offset_of!(Identity, flags), 672);
        assert_eq!(std::mem::offset_of!(Identity, retention_ns), 64);
        assert_eq!(std::mem::offset_of!(Identity, capacity), 72);
        assert_eq!(std::mem::offset_of!(Identity, max_message), 136);
        assert_eq!(std::mem::offset_of!(Identity, name), 160);
        assert_eq!(std::mem::offset_of!(Identity, domain), 416);
        assert_eq!(std::mem::size_of::<Shared>(), 30720);
        assert_eq!(std::mem::offset_of!(Shared, members), 14208);
        assert_eq!(std::mem::size_of::<MemberEntry>(), 64);
        assert_eq!(std::mem::offset_of!(Shared, membership), 30592);
        assert_eq!(std::mem::offset_of!(Shared, thresholds), 14080);
        assert_eq!(std::mem::offset_of!(Shared, lookout), 13824);
        assert_eq!(std::mem::offset_of!(Shared, select_event), 12672);
        assert_eq!(std::mem::offset_of!(Shared, consumers), 12800);
        assert_eq!(std::mem::offset_of!(OwnerBlock, pid), 40);
        assert_eq!(std::mem::offset_of!(OwnerBlock, owned_since_ns), 64);
        assert_eq!(std::mem::offset_of!(OwnerBlock, unowned_since_ns), 72);
        assert_eq!(std::mem::offset_of!(OwnerBlock, retention_ns), 80);
        assert_eq!(std::mem::offset_of!(Shared, data_event), 128);
        assert_eq!(std::mem::offset_of!(Shared, stats), 256);
        assert_eq!(std::mem::offset_of!(Stats, removed), 16);
        assert_eq!(std::mem::offset_of!(Shared, slots), 384);
        assert_eq!(std::mem::size_of::<ProcessSlot>(), 48);
        assert_eq!(std::mem::offset_of!(ProcessSlot, pid), 40);
        assert_eq!(std::mem::size_of::<LaneControl>(), 384);
        assert_eq!(std::mem::offset_of!(Identity, reply_boxes), 676);
        assert_eq!(std::mem::offset_of!(Stats, replies_dropped), 24);
        assert_eq!(std::mem::offset_of!(Shared, reply_free), 13952);
        assert_eq!(std::mem::size_of::<ReplyBoxControl>(), 64);
        let (lanes, replies, total) = layout(&Attributes::default()).unwrap();
        assert_eq!(
            (lanes[0].control, lanes[0].stamps, lanes[0].data),
            (32768, 33152, 41344)
        );
        assert_eq!(lanes[1].control, 110592);
        assert_eq!((replies.offset, replies.stride), (344064, 4160));
        assert_eq!(total, 413696);
    }
}
