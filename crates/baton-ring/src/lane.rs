//! One priority lane: a bounded, lock-free, multi-producer ring of variable-length records.
//!
//! # Layout
//!
//! A lane of `n` cells is a [`LaneControl`] (cursors and counters), an array of `n` 64-bit
//! *stamps*, and `n` data cells of [`CELL`] bytes. A record is a [`RecordHeader`] followed by its
//! payload, contiguous over `k = ceil((32 + len) / 64)` cells; it never wraps around the end of
//! the ring (see *padding*). Positions (`tail`, `head`, a record's `pos`) count cells since the
//! lane was created: they only grow, and the cell of position `p` is `p % n`.
//!
//! # The algorithm
//!
//! The stamp of a record's first cell says, in one word, who holds which cells:
//! `{tag: low bits of pos, cells: k, sender: slot, state}` (see [`stamp`]). A sender *claims*
//! the record at the current tail `t` by a compare-and-swap of the stamp at `t % n` from whatever
//! it held (a record of an earlier lap) to `{t, k, RESERVED}`. Because the claim and the record's
//! length are one atomic write, a sender that dies before committing still leaves the length
//! behind: the receiver can skip its cells without help (the recovery of a later issue uses that).
//!
//! The `tail` word is only a hint that anyone may advance: a sender that finds the stamp at `tail`
//! already claimed for position `tail` moves `tail` past that record (helping) and tries again.
//! So no sender ever waits for another sender. The budget is checked against `head`: a claim of
//! `k` cells at `t` needs `t + k - head <= n`.
//!
//! # Why a tag of 32 bits is enough for 2^64 positions
//!
//! Positions are 64-bit and never wrap; a stamp holds only the low [`TAG_BITS`] bits of one. Two
//! rules keep that exact for the whole life of a lane, whatever the mix of record sizes:
//!
//! 1. *No comparison by age.* A sender loads `tail` (`t`), then the stamp at `t % n` (Acquire),
//!    then `tail` again. If `tail` still reads `t`, the stamp cannot belong to a position after
//!    `t`: whoever claimed such a position read `tail` at that position before its
//!    compare-and-swap, and our Acquire load of the stamp makes that read happen before our
//!    second load of `tail`, which therefore could not have returned `t`.
//! 2. *Every stamp is fresh.* A stamp is written for every cell every lap, not only for the
//!    first cell of a record: a sender writes `{pos, MIDDLE}` into the stamps of the other cells
//!    it claimed, before it commits or cancels; the owner does the same for padding and
//!    abandoned records (whose writer cannot) before it frees them. So a stamp that a sender or
//!    the receiver compares with a position `p` of the same cell is from `p` itself or from one
//!    of the last few laps (a lane has at most 2^(TAG_BITS - 2) cells), never 2^TAG_BITS
//!    positions old: equal tags mean equal positions. (Before this rule, the middle cells of
//!    fixed-size records kept a stamp of lap 0 forever, and after 2^31 positions it aliased.)
//!
//! A claim is safe from ABA for the same reasons: between the second load of `tail` and the
//! compare-and-swap, the stamp can only change through a claim at `t` (which the
//! compare-and-swap then sees) or at later positions. A sender stalled there for 2^TAG_BITS
//! positions could find an equal stamp again; it finds out right after, because `tail` is then
//! more than a lap past its `t`, and it puts the stamp back before anyone can have acted on it
//! except by reporting a changed stamp ([`LaneSender::try_claim`]). The tag width is a parameter of the
//! lane (stored in the segment) so that tests reach the wrap in seconds with a narrow tag.
//!
//! A record that would cross the end of the ring is preceded by a *padding* record that fills
//! the lane to its end, claimed directly in the `PAD` state; the sender then claims again at the
//! start of the ring. The receiver frees padding as it meets it.
//!
//! Committing is a Release compare-and-swap from `RESERVED` to `COMMITTED`; the receiver loads
//! the stamp with Acquire. The receiver walks the lane with its own cursor ([`LaneOwner::at`]) and
//! records in the shared `read` word what it has handed out, *before* handing it out. A record
//! stays in the lane until it is acknowledged: the owner turns its stamp to `ACKED`, and
//! [`LaneOwner::advance_head`] moves `head` over the acknowledged, abandoned and padding records at
//! the head with one Release store; a sender loads `head` with Acquire before reusing cells.
//! The owner is the only writer of `head`, `read` and committed stamps. A new owner redelivers
//! the unacknowledged records in `head..read`. Competing consumers will add a `TAKEN` state
//! claimed by compare-and-swap; the stamp has the spare states for it.
//!
//! A sender that dies between its claim and its commit leaves a `RESERVED` stamp naming its
//! slot in the queue's sender table. Once that process is known dead and its slot is locked
//! against reuse, [`Lane::abandon_sender`] turns its stamps to `ABANDONED` by compare-and-swap;
//! the receiver steps over them and counts them, and the dead sender's commit could never
//! succeed any more.
//!
//! | SYNC POINT        | Release (writer)                         | Acquire (reader)                      |
//! |-------------------|------------------------------------------|---------------------------------------|
//! | record published  | sender: stamp `RESERVED -> COMMITTED`    | receiver: stamp load in [`LaneOwner::peek`]|
//! | space freed       | receiver: `head` store in `advance_head` | sender: `head` load in `try_claim`    |
//!
//! Everything read from a stamp or a record header is checked before use: a peer that scribbles
//! on the lane produces a [`Corrupt`] error, never an out-of-bounds access.

use crate::sync::{
    append_from_cells, cells_ptr, copy_from_cells, copy_to_cells, fence, mutant, ord,
    racy_read_u64, AtomicU32, AtomicU64, DataCell, Ordering,
};
use crate::wake::{Event, Waiter};
use crossbeam_utils::CachePadded;

mod log;
mod shared;
pub use log::{sweep_log, LogReader};
pub use shared::{sweep, LaneConsumer, Pick, SweepLock, Taken};

/// Bytes in a data cell: the unit of allocation in a lane.
pub const CELL: usize = 64;
/// Bytes of [`RecordHeader`] at the start of every record.
pub const RECORD_HEADER: usize = 32;
/// The most cells one record may span (the stamp's cell field is 20 bits).
pub const MAX_RECORD_CELLS: u64 = (1 << 20) - 1;
/// The most cells a lane may have (1 GiB of data).
pub const MAX_LANE_CELLS: u64 = 1 << 24;
/// Bits of a position kept in a stamp's tag ([`HeapLane::with_tag_bits`] narrows it for tests).
pub const TAG_BITS: u32 = 32;
/// The narrowest tag a lane may use.
pub const MIN_TAG_BITS: u32 = 8;

/// The most cells a lane with `tag_bits`-bit tags may have: stamps compared with a position are
/// at most a few laps old (see the module documentation), so four laps must fit in a tag.
#[inline]
pub fn max_cells_for_tag(tag_bits: u32) -> u64 {
    (1u64 << tag_bits.saturating_sub(2)).min(MAX_LANE_CELLS)
}

/// The packed stamp word of a cell.
///
/// | bits   | field  | meaning                                                  |
/// |--------|--------|----------------------------------------------------------|
/// | 63..32 | tag    | low 32 bits of the position (compared on the lane's [`TAG_BITS`]) |
/// | 31..12 | cells  | how many cells the record spans, 1 ..= 2^20 - 1          |
/// | 11..4  | sender | the sender's slot in the queue's sender table            |
/// | 11..4  |        | (TAKEN: the slot of the consumer that took it)           |
/// | 3..0   | state  | 0 never claimed, 1 RESERVED, 2 COMMITTED, 3 PAD, 4 ACKED, 5 ABANDONED, 6 CANCELLED, 7 MIDDLE, 8 TAKEN, 9 RETURNED |
///
/// The first cell of a record carries the record's stamp; every other cell of it carries
/// `{its own position, 1, 0, MIDDLE}`, so that no cell keeps a stamp of a lap long gone.
pub mod stamp {
    /// Claimed by a sender that is still writing.
    pub const RESERVED: u64 = 1;
    /// Written and published: the receiver may read it.
    pub const COMMITTED: u64 = 2;
    /// Padding up to the end of the ring; carries no message.
    pub const PAD: u64 = 3;
    /// Delivered and acknowledged: freed when `head` reaches it.
    pub const ACKED: u64 = 4;
    /// Claimed by a sender that died before committing: skipped and counted, never delivered.
    pub const ABANDONED: u64 = 5;
    /// Claimed and given back uncommitted by its sender (a dropped loan): skipped.
    pub const CANCELLED: u64 = 6;
    /// Not the first cell of a record: written into the other cells a record or padding covers.
    pub const MIDDLE: u64 = 7;
    /// Taken by one of a shared queue's consumers (the stamp's sender field then names the
    /// consumer's slot), not yet acknowledged (see [`super::LaneConsumer`]).
    pub const TAKEN: u64 = 8;
    /// Committed, delivered once to a consumer that gave it back or died: waiting to be taken
    /// again, flagged redelivered (shared queues only).
    pub const RETURNED: u64 = 9;

    /// Packs a stamp.
    #[inline]
    pub fn pack(pos: u64, cells: u64, sender: u8, state: u64) -> u64 {
        debug_assert!((1..=super::MAX_RECORD_CELLS).contains(&cells));
        debug_assert!(state <= 0xf);
        ((pos as u32 as u64) << 32) | (cells << 12) | ((sender as u64) << 4) | state
    }
    /// Whether the stamp was written for exactly `pos`, comparing the tag's low bits that
    /// `mask` keeps.
    #[inline]
    pub fn is_at(stamp: u64, pos: u64, mask: u32) -> bool {
        ((stamp >> 32) as u32 ^ pos as u32) & mask == 0 && state(stamp) != 0
    }
    /// The stamp of a cell at `pos` inside a record or padding, not its first.
    #[inline]
    pub fn middle(pos: u64) -> u64 {
        pack(pos, 1, 0, MIDDLE)
    }
    /// The record's length in cells.
    #[inline]
    pub fn cells(stamp: u64) -> u64 {
        (stamp >> 12) & 0xf_ffff
    }
    /// The record's state.
    #[inline]
    pub fn state(stamp: u64) -> u64 {
        stamp & 0xf
    }
    /// The slot of the sender that claimed the record.
    #[inline]
    pub fn sender(stamp: u64) -> u8 {
        (stamp >> 4) as u8
    }
    /// The same stamp in another state.
    #[inline]
    pub fn with_state(stamp: u64, state: u64) -> u64 {
        (stamp & !0xf) | state
    }
}

/// A lane's lane-wide words, each side's on its own cache line.
#[derive(Debug, Default)]
#[repr(C)]
pub struct LaneControl {
    producer: CachePadded<Producer>,
    consumer: CachePadded<Consumer>,
    /// Senders waiting for space sleep here; the receiver notifies after freeing cells.
    space: CachePadded<Event>,
}

#[derive(Debug, Default)]
#[repr(C)]
struct Producer {
    /// A hint: the position of the next claim, `head ..= head + n`. Anyone may advance it.
    tail: AtomicU64,
}

#[derive(Debug, Default)]
#[repr(C)]
struct Consumer {
    /// The first position not yet freed. Written only by the owner.
    head: AtomicU64,
    /// Every record before this position has been delivered to an owner (`head <= read`).
    /// Written only by the owner, before it hands a record out; a new owner redelivers the
    /// unacknowledged records in `head..read`.
    read: AtomicU64,
    /// Messages acknowledged and freed since creation.
    received: AtomicU64,
    /// Messages abandoned by senders that died while writing them, since creation.
    abandoned: AtomicU64,
    /// The last head move, written before it is made: `(head, received, abandoned)` after it.
    /// If the owner dies half way through the move, recovery finishes it from here, so the
    /// counters never count a record twice or miss one ([`Lane::replay_journal`]).
    journal_head: AtomicU64,
    journal_received: AtomicU64,
    journal_abandoned: AtomicU64,
    /// Shared queues: records that were made `RETURNED` (given back, or reclaimed from a dead
    /// consumer), less those taken again. Counted up before the stamp changes and down after,
    /// so it is never below the true number; while it is above zero, consumers look behind
    /// `read` for them (see [`LaneConsumer::take`]). A reclaimer that dies half way can leave
    /// it too high: that costs walks, never a message.
    returned: AtomicU64,
    /// 1 when a head move freed cells while senders waited for space, but did not wake them
    /// (the lane was still more than half full): the owner wakes them when it runs out of work
    /// ([`Lane::wake_owed`]). Written only by the owner.
    space_owed: AtomicU32,
}

/// Where a record header keeps `sent_ns` (8-aligned: read alone by [`Lane::census`]).
const SENT_NS_OFFSET: usize = 24;

/// The fixed 32-byte header at the start of a record, before the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// Flags (reserved; 0).
    pub flags: u32,
    /// The user's message type.
    pub msg_type: i64,
    /// The user's message version.
    pub version: u32,
    /// The sending process.
    pub sender_pid: u32,
    /// When it was sent: `CLOCK_MONOTONIC` nanoseconds (one clock for the whole machine).
    pub sent_ns: u64,
}

impl RecordHeader {
    #[inline]
    fn to_bytes(self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..4].copy_from_slice(&self.len.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..16].copy_from_slice(&self.msg_type.to_ne_bytes());
        b[16..20].copy_from_slice(&self.version.to_ne_bytes());
        b[20..24].copy_from_slice(&self.sender_pid.to_ne_bytes());
        b[SENT_NS_OFFSET..SENT_NS_OFFSET + 8].copy_from_slice(&self.sent_ns.to_ne_bytes());
        b
    }

    #[inline]
    fn from_bytes(b: &[u8; RECORD_HEADER]) -> Self {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        RecordHeader {
            len: u32_at(0),
            flags: u32_at(4),
            msg_type: u64_at(8) as i64,
            version: u32_at(16),
            sender_pid: u32_at(20),
            sent_ns: u64_at(SENT_NS_OFFSET),
        }
    }
}

/// What a peer left in a lane that makes no sense: what is damaged, and where (positions are
/// the lane's 64-bit cell positions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corrupt {
    /// A record the owner is about to read lies behind `head`: someone moved `head` over it
    /// (only the owner moves it, and never past a record it has not acknowledged).
    #[error("record at position {pos} lies behind head {head}: the head was moved over it")]
    BehindHead {
        /// The record's position.
        pos: u64,
        /// The head found.
        head: u64,
    },
    /// A claim larger than the whole lane (the lane's size words were changed).
    #[error("a record of {len} bytes cannot fit a lane of {cells} cells")]
    TooBigForLane {
        /// The payload length asked for.
        len: usize,
        /// The lane's cells.
        cells: u64,
    },
    /// The tail did not move in 50 million tries: no sender can make progress.
    #[error("the lane's tail makes no progress")]
    TailStuck,
    /// The tail points into the middle of a record.
    #[error("the tail {0} points inside a record")]
    TailInsideRecord(u64),
    /// The tail is more than a lap ahead of the head.
    #[error("tail {tail} is more than a lap ahead of head {head}")]
    TailPastHead {
        /// The tail.
        tail: u64,
        /// The head.
        head: u64,
    },
    /// A stamp's cell count is 0 or runs past the end of the lane.
    #[error("stamp at position {pos} spans {cells} cells")]
    BadSpan {
        /// Where.
        pos: u64,
        /// The cells it claims.
        cells: u64,
    },
    /// A reserved stamp was changed by someone other than its claimer.
    #[error("stamp at position {pos} changed from {from:#x} to {to:#x} while reserved")]
    ReservedStampChanged {
        /// Where.
        pos: u64,
        /// The stamp the claimer wrote.
        from: u64,
        /// The stamp found.
        to: u64,
    },
    /// Padding that does not reach the end of the lane.
    #[error("padding at position {0} stops short of the end")]
    ShortPadding(u64),
    /// A position that should start a record is inside one.
    #[error("position {0} is inside a record, not at the start of one")]
    InsideRecord(u64),
    /// A record's header claims a length over the queue's maximum.
    #[error("record at position {pos} claims {len} bytes, over the maximum {max}")]
    LengthOverMaximum {
        /// Where.
        pos: u64,
        /// The length in its header.
        len: u32,
        /// The queue's maximum.
        max: u32,
    },
    /// A record's header length does not match the cells its stamp spans.
    #[error("record at position {pos}: {len} bytes do not fill {cells} cells")]
    LengthMismatch {
        /// Where.
        pos: u64,
        /// The length in its header.
        len: u32,
        /// The cells its stamp spans.
        cells: u64,
    },
    /// A stamp with a state no version of baton writes.
    #[error("stamp at position {pos} has state {state}")]
    UnknownState {
        /// Where.
        pos: u64,
        /// The state bits.
        state: u64,
    },
    /// A delivered record was changed while its owner held it.
    #[error("record at position {pos} changed under its owner (stamp {stamp:#x})")]
    ChangedUnderOwner {
        /// Where.
        pos: u64,
        /// The stamp found.
        stamp: u64,
    },
    /// A record acknowledged at the head is not where the head is.
    #[error("record at position {pos} acknowledged at the head, but the head is {head}")]
    NotAtHead {
        /// Where the record is.
        pos: u64,
        /// The head.
        head: u64,
    },
    /// A claim was abandoned while its claimer still wrote it (a test lane's view).
    #[error("abandoned")]
    Abandoned,
}

/// Why a claim did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Not enough free bytes in the lane's budget right now.
    Full,
    /// The lane's words are inconsistent.
    Corrupt(Corrupt),
}

/// Why a commit did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The claim was abandoned: its sender was taken for dead.
    Abandoned,
    /// The stamp holds something else.
    Corrupt(Corrupt),
}

/// Cells a sender holds between [`LaneSender::try_claim`] and [`LaneSender::commit`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a claim must be committed, or the lane stalls at it"]
pub struct Claim {
    pos: u64,
    cells: u64,
    sender: u8,
    /// The lane it was made on (see [`Lane::id`]): a claim is used on no other.
    lane: usize,
}

impl Claim {
    /// The claim's position in the lane.
    #[inline]
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

/// A committed record, found by [`LaneOwner::at`] or [`LaneOwner::peek`]. Only the lane makes
/// one, after checking its stamp and header, and it is used on that lane only; acknowledging or
/// releasing it uses it up, so no copy is left to read cells that were freed.
///
/// ```compile_fail
/// # use baton_ring::lane::RecordRef;
/// fn forge(r: RecordRef) -> RecordRef {
///     RecordRef { cells: 2, ..r } // error: the fields are private
/// }
/// ```
///
/// ```compile_fail
/// # use baton_ring::lane::RecordRef;
/// fn copy(r: &RecordRef) -> RecordRef {
///     r.clone() // error: a record is not copied
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRef {
    pos: u64,
    cells: u64,
    header: RecordHeader,
    /// The lane it was found on (see [`Lane::id`]).
    lane: usize,
}

impl RecordRef {
    /// The record's position.
    #[inline]
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The cells it spans.
    #[inline]
    pub fn cells(&self) -> u64 {
        self.cells
    }

    /// Its header, checked against the lane's limits.
    #[inline]
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }
}

/// What is at a position of the lane, as [`LaneOwner::at`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// Nothing is claimed there (yet): the end of the lane's records.
    End,
    /// Claimed by the sender in table slot `sender`, which has not committed yet.
    InFlight {
        /// The claiming sender's slot.
        sender: u8,
    },
    /// Padding, or an acknowledged or abandoned record: step over `cells`.
    Skip {
        /// Cells to step over.
        cells: u64,
    },
    /// A committed record.
    Record(RecordRef),
}

/// Where [`Lane::advance_head_stopping`] stops (the loom model of an owner dying there).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStop {
    /// Do the whole move.
    Never,
    /// After writing the journal, before anything else.
    AfterJournal,
    /// After the counters, before `read` and `head`.
    AfterCounters,
}

/// What a walk over a lane's records found (see [`Lane::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Bytes from head to tail, in cells.
    pub used: u64,
    /// Committed records not yet delivered.
    pub waiting: u64,
    /// Delivered records not yet acknowledged.
    pub delivered: u64,
    /// Records claimed and not yet committed.
    pub in_flight: u64,
    /// Records abandoned by dead senders and not yet freed.
    pub abandoned: u64,
    /// Send time of the first record waiting to be delivered.
    pub oldest_waiting_sent_ns: Option<u64>,
}

/// What is at the head of the lane.
#[cfg_attr(not(any(test, loom)), allow(dead_code))] // for unit tests and loom models
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// Nothing has been claimed there.
    Empty,
    /// A sender has claimed the head record and is still writing it.
    InFlight,
    /// A committed record, ready to read.
    Record(RecordRef),
}

/// Cells needed by a record with a payload of `len` bytes.
#[inline]
pub fn record_cells(len: usize) -> u64 {
    (RECORD_HEADER as u64 + len as u64).div_ceil(CELL as u64)
}

/// A view of one lane's memory, wherever it lives (shared memory, or the heap in tests).
#[derive(Debug, Clone, Copy)]
pub struct Lane<'a> {
    ctl: &'a LaneControl,
    stamps: &'a [AtomicU64],
    data: &'a [DataCell],
    /// Number of cells, `stamps.len() == data.len()`.
    n: u64,
    /// `n - 1` when `n` is a power of two, else `u64::MAX` (see [`Lane::offset`]).
    n_mask: u64,
    /// This process's last view of `head` (see [`LaneSender::try_claim`]): a process-local word, so
    /// that senders do not pull the receiver's cache line across CPUs on every claim.
    head_seen: &'a AtomicU64,
    /// The low [`TAG_BITS`] (or fewer, in tests) bits set: the part of a stamp's tag compared.
    tag_mask: u32,
}

/// A lane's size and tag width, checked once: views of the lane are then made with
/// [`Lane::with_geometry`], which checks only that the memory has that many cells. (Making a
/// view used to check and derive all of this every time, and the owner makes several per
/// message.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneGeometry {
    /// Number of cells.
    n: u64,
    /// `n - 1` when `n` is a power of two, else `u64::MAX` (see [`Lane::offset`]).
    n_mask: u64,
    /// The low [`TAG_BITS`] (or fewer, in tests) bits set: the part of a stamp's tag compared.
    tag_mask: u32,
}

impl LaneGeometry {
    /// The geometry of a lane of `cells` cells whose stamps are compared on `tag_bits` bits.
    ///
    /// # Panics
    ///
    /// If the lane is empty or has more cells than [`max_cells_for_tag`] allows (layout bugs,
    /// not input: the segment checks its header).
    pub fn new(cells: usize, tag_bits: u32) -> Self {
        assert!(cells != 0, "lane layout: at least one cell");
        assert!(
            (MIN_TAG_BITS..=TAG_BITS).contains(&tag_bits)
                && cells as u64 <= max_cells_for_tag(tag_bits),
            "lane layout: {cells} cells with {tag_bits}-bit tags"
        );
        LaneGeometry {
            n: cells as u64,
            n_mask: if cells.is_power_of_two() {
                cells as u64 - 1
            } else {
                u64::MAX
            },
            tag_mask: (u64::MAX >> (64 - tag_bits)) as u32,
        }
    }

    /// How many cells the lane has.
    #[inline]
    pub fn cells(&self) -> usize {
        self.n as usize
    }
}

impl<'a> Lane<'a> {
    /// A lane over memory the caller provides, with stamps compared on `tag_bits` bits.
    ///
    /// # Panics
    ///
    /// As [`LaneGeometry::new`], and if `stamps` and `data` differ in length.
    #[inline]
    pub fn new(
        ctl: &'a LaneControl,
        stamps: &'a [AtomicU64],
        data: &'a [DataCell],
        head_seen: &'a AtomicU64,
        tag_bits: u32,
    ) -> Self {
        Self::with_geometry(
            ctl,
            stamps,
            data,
            head_seen,
            LaneGeometry::new(data.len(), tag_bits),
        )
    }

    /// A lane over memory the caller provides, of a geometry checked before.
    ///
    /// # Panics
    ///
    /// If `stamps` or `data` does not have the geometry's number of cells.
    #[inline]
    pub fn with_geometry(
        ctl: &'a LaneControl,
        stamps: &'a [AtomicU64],
        data: &'a [DataCell],
        head_seen: &'a AtomicU64,
        geometry: LaneGeometry,
    ) -> Self {
        assert!(
            stamps.len() as u64 == geometry.n && data.len() as u64 == geometry.n,
            "lane layout: one stamp and one data cell per cell of the geometry"
        );
        Lane {
            ctl,
            stamps,
            data,
            n: geometry.n,
            n_mask: geometry.n_mask,
            head_seen,
            tag_mask: geometry.tag_mask,
        }
    }

    /// Where position `pos` falls in the lane: `pos % n`, by a mask when `n` is a power of two
    /// (the usual case: a division costs tens of cycles, and every stamp access needs this).
    #[inline]
    fn offset(&self, pos: u64) -> u64 {
        if self.n_mask != u64::MAX {
            pos & self.n_mask
        } else {
            pos % self.n
        }
    }

    /// Whether stamp `s` was written for exactly position `pos` (of its cell). Exact because
    /// every stamp compared is at most a few laps old (see the module documentation).
    #[inline]
    fn is_at(&self, s: u64, pos: u64) -> bool {
        stamp::is_at(s, pos, self.tag_mask)
    }

    /// Writes the MIDDLE stamps of the cells after the first of a record or padding of `cells`
    /// cells at `pos`. Only whoever holds those cells calls this: the claimer before it
    /// commits or cancels, or the owner before it frees them.
    #[inline]
    fn cover(&self, pos: u64, cells: u64) {
        for p in pos + 1..pos + cells {
            // SYNC POINT: fresh stamps (Release side): a sender whose later Acquire load of
            // `tail` follows this claim's never sees the cell's stamp of an earlier lap.
            // Relaxed: published by what the holder does next, a Release of its own: the claimer's
            // commit or cancel, the owner's store of `head`.
            self.stamps[self.index(p)].store(stamp::middle(p), Ordering::Relaxed);
        }
    }

    /// This lane's identity: the address of its control block, the same in every view of it
    /// in this process. Claims and records carry it, so that one lane's are never used on
    /// another (two lanes of a queue hold the very same stamps at the same positions).
    #[inline]
    pub fn id(&self) -> usize {
        self.ctl as *const LaneControl as usize
    }

    /// Refuses a claim made on another lane.
    #[inline]
    fn check_claim(&self, claim: &Claim) {
        assert_eq!(
            claim.lane,
            self.id(),
            "a claim is used on the lane it was made on"
        );
    }

    /// Refuses a record found on another lane.
    #[inline]
    fn check_record(&self, record: &RecordRef) {
        assert_eq!(
            record.lane,
            self.id(),
            "a record is used on the lane it was found on"
        );
    }

    /// Refuses a record of another lane (a panic: a caller's mistake), or one behind `head`
    /// (an error: its cells may be a sender's again; the owner frees none it has not
    /// acknowledged, so only a peer's write to `head`, or a stale copy, puts one there). Only
    /// the owner moves `head`, so what it reads here stays true while it reads.
    #[inline]
    fn check_live_record(&self, record: &RecordRef) -> Result<(), Corrupt> {
        self.check_record(record);
        let head = self.ctl.consumer.head.load(Ordering::Relaxed);
        if record.pos < head {
            return Err(Corrupt::BehindHead {
                pos: record.pos,
                head,
            });
        }
        Ok(())
    }

    #[inline]
    fn index(&self, pos: u64) -> usize {
        let i = self.offset(pos);
        debug_assert!(i < self.n);
        i as usize
    }

    /// Claims cells for a record of `len` payload bytes at the tail.
    ///
    /// # Errors
    ///
    /// [`ClaimError::Full`] when the budget has no room now; [`ClaimError::Corrupt`] when the
    /// lane's words contradict each other.
    #[inline]
    pub(crate) fn try_claim(&self, len: usize, sender: u8) -> Result<Claim, ClaimError> {
        self.try_claim_run(len, &[], sender).map(|(claim, _)| claim)
    }

    /// Claims cells for a run of records at the tail, one after another: one of `len` payload
    /// bytes, then as many of the records of `rest` (in cells, each) as fit now, contiguous
    /// and without wrapping. Returns the claim (of all the run's cells: its `cells` is their
    /// sum) and how many records it holds. [`Lane::commit_run`] publishes them together.
    ///
    /// # Errors
    ///
    /// As [`Lane::try_claim`], for the first record.
    #[inline]
    pub(crate) fn try_claim_run(
        &self,
        len: usize,
        rest: &[u64],
        sender: u8,
    ) -> Result<(Claim, usize), ClaimError> {
        let need = record_cells(len);
        if need > self.n || need > MAX_RECORD_CELLS {
            return Err(ClaimError::Corrupt(Corrupt::TooBigForLane {
                len,
                cells: self.n,
            }));
        }
        let tail = &self.ctl.producer.tail;
        let mut rounds: u64 = 0;
        loop {
            rounds += 1;
            if rounds > 50_000_000 {
                return Err(ClaimError::Corrupt(Corrupt::TailStuck));
            }
            // SYNC POINT: fresh stamps (Acquire side): bounds the age of the stamp loaded next.
            let t = tail.load(ord!(Acquire));
            #[cfg(test)]
            self.stall("after reading the tail");
            let slot = &self.stamps[self.index(t)];
            // not swept: rule 1. A sender that claims over a later lap without it is also caught by the
            // check of `tail` after its claim, which puts the stamp back: a model sees no wrong result.
            let s = slot.load(ord!(Acquire));
            // Relaxed: what orders this load after the claims that a later-lap stamp implies is the
            // Acquire of the stamp load above (read-read coherence), not this load's own ordering.
            if tail.load(Ordering::Relaxed) != t {
                // `t` was stale (this thread was held up, or another sender moved on): the
                // stamp may belong to a later lap. Never compare tags by age: read again.
                crate::sync::spin_hint();
                continue;
            }
            if self.is_at(s, t) {
                if stamp::state(s) == stamp::MIDDLE {
                    return Err(ClaimError::Corrupt(Corrupt::TailInsideRecord(t)));
                }
                // Claimed already: help move the tail past it, then retry.
                let k = stamp::cells(s);
                if k == 0 || k > self.n - self.offset(t) {
                    return Err(ClaimError::Corrupt(Corrupt::BadSpan { pos: t, cells: k }));
                }
                // not swept: carries the claim it helps past to the next reader of `tail` (rule 2), as the
                // claimer's own compare-and-swap of `tail` does (which a model catches); no model helps.
                let _ = tail.compare_exchange(t, t + k, ord!(AcqRel), Ordering::Relaxed);
                continue;
            }
            // SYNC POINT: space freed (Acquire side): the receiver's reads of these cells are done.
            // The process-local `head_seen` is used first; only when it shows too little room
            // is the shared `head` read (and `head_seen` refreshed, Release, so that a thread
            // that later uses the cached value also happens after the receiver's reads).
            let mut h = self.head_seen.load(ord!(Acquire));
            // What this claim wants here: padding to the end of the ring, or the record and,
            // for a run, as many of the next ones as fit before the end (so that a stale
            // cached `head` does not cut a run short: it is refreshed as for one record).
            let want_here = {
                let off = self.offset(t);
                if off + need > self.n {
                    self.n - off
                } else {
                    let mut want = need;
                    for &c in rest {
                        if c == 0 || off + want + c > self.n || want + c > MAX_RECORD_CELLS {
                            break;
                        }
                        want += c;
                    }
                    want
                }
            };
            let room = |h: u64| h <= t && t - h + want_here <= self.n;
            if !room(h) {
                h = self.ctl.consumer.head.load(ord!(Acquire));
                self.head_seen.fetch_max(h, ord!(AcqRel));
            }
            if h > t {
                crate::sync::spin_hint();
                continue; // our tail is stale; a helper will move it
            }
            let used = t - h;
            if used > self.n {
                return Err(ClaimError::Corrupt(Corrupt::TailPastHead {
                    tail: t,
                    head: h,
                }));
            }
            let off = self.offset(t);
            let (cells, state) = if off + need > self.n {
                let pad = self.n - off;
                if used + pad > self.n {
                    return Err(ClaimError::Full);
                }
                (pad, stamp::PAD)
            } else {
                if used + need > self.n {
                    return Err(ClaimError::Full);
                }
                (need, stamp::RESERVED)
            };
            // A run: as many of the following records as fit now, before the end of the lane.
            let (mut cells, mut records) = (cells, 1);
            if state == stamp::RESERVED {
                for &c in rest {
                    let more = cells + c;
                    if c == 0
                        || off + more > self.n
                        || used + more > self.n
                        || more > MAX_RECORD_CELLS
                    {
                        break;
                    }
                    (cells, records) = (more, records + 1);
                }
            }
            let claimed = stamp::pack(t, cells, sender, state);
            #[cfg(test)]
            self.stall("before the claim");
            if slot
                // not swept: its Release is the other half of rule 1 (see the stamp load above).
                .compare_exchange(s, claimed, ord!(AcqRel), Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            if let Err(now) = tail.compare_exchange(t, t + cells, ord!(AcqRel), Ordering::Relaxed) {
                if now < t || now - t > self.n {
                    // Only a sender stalled for 2^TAG_BITS positions between its second load
                    // of `tail` and the compare-and-swap gets here: the stamp it replaced was
                    // a live record's with the same tag. Put it back and start again.
                    // Relaxed: a read-modify-write continues the release sequence of the commit whose value it
                    // puts back, so a reader of the restored stamp still synchronises with that commit.
                    let _ = slot.compare_exchange(claimed, s, Ordering::Relaxed, Ordering::Relaxed);
                    continue;
                }
            }
            if state == stamp::PAD {
                // Padding's other cells are covered by the owner when it frees them: the
                // padding is free to go at once, so its claimer no longer holds them.
                continue;
            }
            self.cover(t, cells);
            // The writer's half of `census`'s seqlock read: the stamps just written are seen
            // before anything this claim's holder writes into the cells. (Not swept: no model
            // reads cells the way `census` does; on x86 it is only a compiler fence.)
            fence(Ordering::Release);
            return Ok((
                Claim {
                    pos: t,
                    cells,
                    sender,
                    lane: self.id(),
                },
                records,
            ));
        }
    }

    /// Writes the header and payload of a claimed record in place.
    #[cfg_attr(not(any(test, loom)), allow(dead_code))] // for unit tests and loom models
    #[inline]
    pub(crate) fn write(&self, claim: &Claim, header: &RecordHeader, payload: &[u8]) {
        debug_assert_eq!(header.len as usize, payload.len());
        self.write_payload(claim, payload);
        self.write_header(claim, header);
    }

    /// Writes the payload of a claimed record in place.
    #[inline]
    pub(crate) fn write_payload(&self, claim: &Claim, payload: &[u8]) {
        self.check_claim(claim);
        assert!(
            record_cells(payload.len()) <= claim.cells,
            "a payload fits the cells claimed for it"
        );
        self.copy_in(self.index(claim.pos), RECORD_HEADER, payload);
    }

    /// Writes the header of a claimed record.
    #[inline]
    pub(crate) fn write_header(&self, claim: &Claim, header: &RecordHeader) {
        self.check_claim(claim);
        assert_eq!(
            record_cells(header.len as usize),
            claim.cells,
            "a header gives the length claimed"
        );
        self.copy_in(self.index(claim.pos), 0, &header.to_bytes());
    }

    /// The payload bytes of a claimed record, to write in place.
    ///
    /// # Safety
    ///
    /// The caller must not keep the slice past the commit or cancellation of `claim`, nor make
    /// a second one for the same claim: the claim is what makes the access exclusive.
    #[inline]
    pub(crate) unsafe fn claimed_payload(&self, claim: &Claim, len: usize) -> &'a mut [u8] {
        self.check_claim(claim);
        assert_eq!(record_cells(len), claim.cells, "payload fits its claim");
        let first = self.index(claim.pos);
        assert!(
            first + claim.cells as usize <= self.data.len(),
            "claim within the lane"
        );
        let base = cells_ptr(self.data);
        // SAFETY: the bytes lie inside `data` (asserted), inside `UnsafeCell`s; exclusivity is
        // the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(base.add(first * CELL + RECORD_HEADER), len) }
    }

    /// The payload of a committed record, in place.
    ///
    /// # Safety
    ///
    /// The caller must not keep the slice past the acknowledgement of the record: until then
    /// its cells cannot be claimed again, so no sender writes them.
    #[inline]
    pub(crate) unsafe fn record_payload(&self, record: &RecordRef) -> Result<&'a [u8], Corrupt> {
        self.check_live_record(record)?;
        let first = self.index(record.pos);
        assert!(
            first + record.cells as usize <= self.data.len(),
            "record within the lane"
        );
        let base = cells_ptr(self.data);
        // SAFETY: the bytes lie inside `data` (asserted; `at` checked the length against the
        // record's cells); committed and not yet freed, so no sender writes them.
        Ok(unsafe {
            std::slice::from_raw_parts(
                base.add(first * CELL + RECORD_HEADER),
                record.header.len as usize,
            )
        })
    }

    /// Gives a claim back uncommitted: the receiver steps over it.
    #[inline]
    pub(crate) fn cancel(&self, claim: Claim) {
        self.check_claim(&claim);
        let slot = &self.stamps[self.index(claim.pos)];
        let reserved = stamp::pack(claim.pos, claim.cells, claim.sender, stamp::RESERVED);
        // Fails only if the claim was abandoned meanwhile; then it is skipped anyway.
        let _ = slot.compare_exchange(
            reserved,
            stamp::with_state(reserved, stamp::CANCELLED),
            ord!(Release),
            Ordering::Relaxed,
        );
    }

    /// Publishes a claimed, written record to the receiver: [`Lane::commit_run`] of a run of
    /// one record.
    ///
    /// # Errors
    ///
    /// [`CommitError::Abandoned`] if the claim was abandoned (this sender was taken for dead);
    /// [`CommitError::Corrupt`] if the stamp shows anything else.
    #[inline]
    pub(crate) fn commit(&self, claim: Claim) -> Result<(), CommitError> {
        let cells = claim.cells;
        self.commit_run(claim, &[cells])
    }

    /// Writes the header and payload of the record `at` cells into a run claim (see
    /// [`Lane::try_claim_run`]).
    #[inline]
    pub(crate) fn write_in_run(
        &self,
        claim: &Claim,
        at: u64,
        header: &RecordHeader,
        payload: &[u8],
    ) {
        self.check_claim(claim);
        assert_eq!(
            header.len as usize,
            payload.len(),
            "a header gives its payload's length"
        );
        assert!(
            at + record_cells(payload.len()) <= claim.cells,
            "a record of a run lies inside its claim"
        );
        // A run does not wrap (see `try_claim_run`): its cells follow each other in memory.
        let first = self.index(claim.pos) + at as usize;
        self.copy_in(first, RECORD_HEADER, payload);
        self.copy_in(first, 0, &header.to_bytes());
    }

    /// Publishes a run claim's written records, of `cells` cells each (in order; they add up
    /// to the claim's), together: each later record's stamp is stored COMMITTED, then the
    /// first one's stamp goes from the run's RESERVED to its own COMMITTED by one
    /// compare-and-swap, whose Release publishes the others. Until then a reader sees one
    /// reservation of the run's cells; if it is abandoned, it is skipped whole.
    ///
    /// # Errors
    ///
    /// [`CommitError::Abandoned`] if the claim was abandoned (this sender was taken for dead);
    /// [`CommitError::Corrupt`] if the stamp shows anything else.
    #[inline]
    pub(crate) fn commit_run(&self, claim: Claim, cells: &[u64]) -> Result<(), CommitError> {
        self.check_claim(&claim);
        assert!(
            !cells.is_empty() && cells.iter().sum::<u64>() == claim.cells,
            "a run's records fill its claim"
        );
        let later = || {
            let mut p = claim.pos + cells[0];
            for &c in &cells[1..] {
                // Relaxed: published by the Release of the first record's commit below. Like the
                // payload, written by the claim's holder only: a live holder's claims are never
                // abandoned (the sender-slot rules), so these never land in freed cells.
                self.stamps[self.index(p)].store(
                    stamp::pack(p, c, claim.sender, stamp::COMMITTED),
                    Ordering::Relaxed,
                );
                p += c;
            }
        };
        if !mutant("run_stamps_late") {
            later();
        }
        let slot = &self.stamps[self.index(claim.pos)];
        let reserved = stamp::pack(claim.pos, claim.cells, claim.sender, stamp::RESERVED);
        let committed = stamp::pack(claim.pos, cells[0], claim.sender, stamp::COMMITTED);
        // SYNC POINT: record published (Release side).
        if mutant("commit_store") {
            // MUTANT: publish without checking that the claim is still ours.
            slot.store(committed, Ordering::Release);
            return Ok(());
        }
        let publish = if mutant("commit_relaxed") {
            Ordering::Relaxed // MUTANT: no Release
        } else {
            ord!(Release)
        };
        let result = slot
            .compare_exchange(reserved, committed, publish, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|now| {
                if now == stamp::with_state(reserved, stamp::ABANDONED) {
                    CommitError::Abandoned
                } else {
                    CommitError::Corrupt(Corrupt::ReservedStampChanged {
                        pos: claim.pos,
                        from: reserved,
                        to: now,
                    })
                }
            });
        if mutant("run_stamps_late") {
            later(); // MUTANT: the later records' stamps after the first one's commit
        }
        result
    }

    /// What is at position `pos`: the receiver walks the lane with its own cursor this way.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if the stamp or record header there is out of bounds.
    #[inline]
    pub(crate) fn at(&self, pos: u64, max_message: u32) -> Result<Slot, Corrupt> {
        // SYNC POINT: record published (Acquire side).
        let s = self.stamps[self.index(pos)].load(ord!(Acquire));
        if !self.is_at(s, pos) {
            // The usual answer for a lane with nothing new (the owner looks at every lane of
            // higher priority before the one with the message): decided here, inline.
            return Ok(Slot::End);
        }
        self.at_stamp(pos, s, max_message)
    }

    /// [`Lane::at`] once the stamp `s` at `pos` is found to be of `pos`.
    fn at_stamp(&self, pos: u64, s: u64, max_message: u32) -> Result<Slot, Corrupt> {
        let k = stamp::cells(s);
        let off = self.offset(pos);
        if k == 0 || k > self.n - off {
            return Err(Corrupt::BadSpan { pos, cells: k });
        }
        match stamp::state(s) {
            stamp::RESERVED => Ok(Slot::InFlight {
                sender: stamp::sender(s),
            }),
            stamp::PAD if off + k != self.n => Err(Corrupt::ShortPadding(pos)),
            stamp::PAD | stamp::ACKED | stamp::ABANDONED | stamp::CANCELLED => {
                Ok(Slot::Skip { cells: k })
            }
            stamp::MIDDLE => Err(Corrupt::InsideRecord(pos)),
            stamp::COMMITTED => {
                let header = self.read_header(off as usize);
                if header.len > max_message {
                    return Err(Corrupt::LengthOverMaximum {
                        pos,
                        len: header.len,
                        max: max_message,
                    });
                }
                if record_cells(header.len as usize) != k {
                    return Err(Corrupt::LengthMismatch {
                        pos,
                        len: header.len,
                        cells: k,
                    });
                }
                Ok(Slot::Record(RecordRef {
                    pos,
                    cells: k,
                    header,
                    lane: self.id(),
                }))
            }
            other => Err(Corrupt::UnknownState { pos, state: other }),
        }
    }

    /// Looks at the head of the lane, freeing any padding, acknowledged or abandoned records
    /// found there. (The single-cursor path: tests and loom models.)
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if the head stamp or record header is out of bounds.
    #[cfg_attr(not(any(test, loom)), allow(dead_code))] // for unit tests and loom models
    #[inline]
    pub(crate) fn peek<W: Waiter>(&self, max_message: u32, waiter: &W) -> Result<Peek, Corrupt> {
        loop {
            self.advance_head(waiter)?;
            match self.at(self.head(), max_message)? {
                Slot::End => return Ok(Peek::Empty),
                Slot::InFlight { .. } => return Ok(Peek::InFlight),
                // Padding claimed, or a claim abandoned, since the head moved: move again.
                Slot::Skip { .. } => continue,
                Slot::Record(r) => return Ok(Peek::Record(r)),
            }
        }
    }

    /// Appends the payload of a record found by [`LaneOwner::at`] to `out`.
    #[inline]
    pub(crate) fn copy_payload(
        &self,
        record: &RecordRef,
        out: &mut Vec<u8>,
    ) -> Result<(), Corrupt> {
        self.check_live_record(record)?;
        self.append_out(self.index(record.pos), record.header.len as usize, out);
        Ok(())
    }

    /// Acknowledges a record and frees what can be freed: [`LaneOwner::ack`], then
    /// [`LaneOwner::advance_head`].
    ///
    /// # Errors
    ///
    /// [`Corrupt`] as [`LaneOwner::advance_head`].
    #[cfg_attr(not(any(test, loom)), allow(dead_code))] // for unit tests and loom models
    #[inline]
    pub(crate) fn release<W: Waiter>(&self, record: RecordRef, waiter: &W) -> Result<(), Corrupt> {
        let at_head = self.ack(&record)?;
        self.advance_head_over(at_head.then_some(&record), waiter)
            .map(|_| ())
    }

    /// Marks a delivered record acknowledged. Only the owner calls this; nobody else writes a
    /// committed record's stamp. A record at the head is not marked: the head move that
    /// follows ([`Lane::advance_head_over`] with it) frees it directly, which saves writing a
    /// cache line that the next sender is about to claim. Returns whether it was at the head.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if the stamp no longer shows the committed record.
    #[inline]
    pub(crate) fn ack(&self, record: &RecordRef) -> Result<bool, Corrupt> {
        self.check_record(record);
        let slot = &self.stamps[self.index(record.pos)];
        let s = slot.load(Ordering::Relaxed);
        if !self.is_at(s, record.pos)
            || stamp::state(s) != stamp::COMMITTED
            || stamp::cells(s) != record.cells
        {
            return Err(Corrupt::ChangedUnderOwner {
                pos: record.pos,
                stamp: s,
            });
        }
        if record.pos == self.ctl.consumer.head.load(Ordering::Relaxed) {
            return Ok(true);
        }
        // Relaxed: only owners read an ACKED stamp (to free it), and acknowledgements from other
        //  threads of the owning process go through the receiver's process-local mutex; cells are
        //  handed to senders by the Release store of `head`.
        slot.store(stamp::with_state(s, stamp::ACKED), Ordering::Relaxed);
        Ok(false)
    }

    /// Moves `head` over the padding, acknowledged and abandoned records at the head of the
    /// lane, counts them, and wakes senders waiting for space. Only the owner calls this.
    /// Returns how many cells were freed.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if a stamp on the way is out of bounds.
    #[inline]
    pub(crate) fn advance_head<W: Waiter>(&self, waiter: &W) -> Result<u64, Corrupt> {
        self.advance_head_over(None, waiter)
    }

    /// As [`LaneOwner::advance_head`], with `acked_at_head`: a record at the head that was just
    /// acknowledged without marking its stamp (see [`LaneOwner::ack`]).
    ///
    /// # Errors
    ///
    /// As [`LaneOwner::advance_head`].
    #[inline]
    pub(crate) fn advance_head_over<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        waiter: &W,
    ) -> Result<u64, Corrupt> {
        self.advance_head_until(acked_at_head, u64::MAX, waiter)
    }

    /// As [`Lane::advance_head_over`], looking no further than `limit`: the owner passes its
    /// cursor, since nothing it has not reached yet can be finished, and so it does not read
    /// the stamp a sender is about to claim.
    ///
    /// # Errors
    ///
    /// As [`LaneOwner::advance_head`].
    #[inline]
    pub(crate) fn advance_head_until<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        limit: u64,
        waiter: &W,
    ) -> Result<u64, Corrupt> {
        self.advance_head_stopping(acked_at_head, limit, waiter, MoveStop::Never)
    }

    /// [`Lane::advance_head_until`] that stops half way, as an owner that dies there would:
    /// for the loom model of recovery. Not for use otherwise.
    #[doc(hidden)]
    #[inline]
    pub(crate) fn advance_head_stopping<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        limit: u64,
        waiter: &W,
        stop: MoveStop,
    ) -> Result<u64, Corrupt> {
        let start = self.ctl.consumer.head.load(Ordering::Relaxed);
        let mut h = start;
        let (mut acked, mut abandoned) = (0, 0);
        if let Some(r) = acked_at_head {
            self.check_record(r);
            if r.pos != start {
                return Err(Corrupt::NotAtHead {
                    pos: r.pos,
                    head: start,
                });
            }
            // No second look at its stamp: a record is made only by `at` from a checked stamp,
            // cannot be copied, and once freed lies behind `head` for ever (positions never
            // repeat), so one at `head` is still that record. (Its stamp's line is the one the
            // next senders write: a second load here cost a cross-core miss per message.)
            h += r.cells;
            acked += 1;
        }
        while h - start < self.n && h < limit {
            let s = self.stamps[self.index(h)].load(ord!(Acquire));
            if !self.is_at(s, h) {
                break;
            }
            let k = stamp::cells(s);
            if k == 0 || k > self.n - self.offset(h) {
                return Err(Corrupt::BadSpan { pos: h, cells: k });
            }
            match stamp::state(s) {
                stamp::CANCELLED => {}
                // Their claimers wrote no MIDDLE stamps (padding is freed at once; an
                // abandoned claimer died): the owner, who holds the cells until `head` moves,
                // writes them, so that no cell keeps a stamp of an old lap.
                stamp::PAD => self.cover(h, k),
                stamp::ABANDONED => {
                    self.cover(h, k);
                    abandoned += 1;
                }
                stamp::ACKED => acked += 1,
                _ => break,
            }
            h += k;
        }
        if h == start {
            return Ok(0);
        }
        let c = &self.ctl.consumer;
        let received = c.received.load(Ordering::Relaxed) + acked;
        let abandoned = c.abandoned.load(Ordering::Relaxed) + abandoned;
        c.journal_received.store(received, Ordering::Relaxed);
        c.journal_abandoned.store(abandoned, Ordering::Relaxed);
        // Relaxed: only the next owner reads the journal, after the owner lock's hand-over.
        c.journal_head.store(h, Ordering::Relaxed);
        if stop == MoveStop::AfterJournal {
            return Ok(0);
        }
        self.finish_move(h, received, abandoned, stop);
        self.notify_space(h, waiter);
        Ok(h - start)
    }

    /// After a head move to `head`: wakes the senders waiting for space once the lane has
    /// drained to half, and otherwise notes that a wake-up is owed. Waking every waiter for
    /// every freed cell made throughput collapse with many sender processes on few CPUs (each
    /// freed cell set them all running to find room for one); now they sleep while the owner
    /// drains half the lane, and then fill it in one burst.
    #[inline]
    fn notify_space<W: Waiter>(&self, head: u64, waiter: &W) {
        let space = &self.ctl.space;
        if !space.notify_if(waiter, || {
            let tail = self.ctl.producer.tail.load(Ordering::Relaxed);
            tail.saturating_sub(head) <= self.n / 2
        }) && space.waiters() != 0
            && !mutant("space_not_owed")
        {
            self.ctl.consumer.space_owed.store(1, Ordering::Relaxed);
        }
    }

    /// Wakes the senders a head move left waiting (see `notify_space`): the owner calls this
    /// when it finds nothing more to receive, so a sender never waits on an owner that frees
    /// no more cells. No syscall, and no fence, when nothing is owed.
    #[inline]
    pub(crate) fn wake_owed<W: Waiter>(&self, waiter: &W) {
        let owed = &self.ctl.consumer.space_owed;
        if owed.load(Ordering::Relaxed) != 0 {
            owed.store(0, Ordering::Relaxed);
            self.ctl.space.notify(waiter);
        }
    }

    /// Makes a journaled head move: absolute stores, so doing it twice is doing it once.
    fn finish_move(&self, h: u64, received: u64, abandoned: u64, stop: MoveStop) {
        let c = &self.ctl.consumer;
        c.received.store(received, Ordering::Relaxed);
        c.abandoned.store(abandoned, Ordering::Relaxed);
        if stop == MoveStop::AfterCounters {
            return;
        }
        #[cfg(all(feature = "failpoints", not(loom)))]
        crate::failpoint::failpoint("ack.counted");
        if c.read.load(Ordering::Relaxed) < h {
            // Relaxed: as in `set_read_cursor`, only owners read `read`, after the owner lock's
            // hand-over. An atomic maximum, not a store: in a shared queue consumers move
            // `read` too, by compare-and-swap (see `LaneConsumer::take`).
            c.read.fetch_max(h, Ordering::Relaxed);
        }
        // SYNC POINT: space freed (Release side).
        let release = if mutant("head_relaxed") {
            Ordering::Relaxed // MUTANT: no Release
        } else {
            ord!(Release)
        };
        c.head.store(h, release);
    }

    /// Recovery: finishes a head move that a dead owner journaled but did not complete.
    /// Returns whether there was one. A journal more than a lap ahead is a peer's scribble and
    /// is ignored.
    pub(crate) fn replay_journal<W: Waiter>(&self, waiter: &W) -> bool {
        let c = &self.ctl.consumer;
        // Relaxed: the journal is replayed by the next owner, after the owner lock's hand-over.
        let h = c.journal_head.load(Ordering::Relaxed);
        let head = c.head.load(Ordering::Relaxed);
        if h <= head || h - head > self.n || mutant("no_journal_replay") {
            return false;
        }
        self.finish_move(
            h,
            c.journal_received.load(Ordering::Relaxed),
            c.journal_abandoned.load(Ordering::Relaxed),
            MoveStop::Never,
        );
        self.ctl.space.notify(waiter);
        true
    }

    /// Cells in use now, from `tail` (a hint that may lag the claims by a step) and `head`: a
    /// snapshot, for thresholds and reports.
    #[inline]
    pub fn used_cells(&self) -> u64 {
        // Relaxed: a snapshot; nothing is read on the strength of it.
        let tail = self.ctl.producer.tail.load(Ordering::Relaxed);
        let head = self.ctl.consumer.head.load(Ordering::Relaxed);
        tail.saturating_sub(head).min(self.n)
    }

    /// How many cells the lane has.
    #[inline]
    pub fn capacity_cells(&self) -> u64 {
        self.n
    }

    /// The first position not yet freed.
    #[inline]
    pub fn head(&self) -> u64 {
        // Relaxed: the owner reads its own word; a walk that starts from an old `head` finds stamps of
        //  a later lap and starts again; senders load `head` with Acquire in `try_claim`.
        self.ctl.consumer.head.load(Ordering::Relaxed)
    }

    /// The delivered-up-to cursor (the owner's `read` word), clamped to `head` if a peer left it behind.
    #[inline]
    pub fn read_cursor(&self) -> u64 {
        self.ctl
            .consumer
            .read
            .load(Ordering::Relaxed)
            .max(self.head())
    }

    /// Records that everything before `pos` has been delivered. Only the owner calls this, and
    /// before it hands the record out, so that a successor knows to flag it redelivered.
    #[inline]
    pub(crate) fn set_read_cursor(&self, pos: u64) {
        if mutant("no_read_mark") {
            return; // MUTANT: hand messages out without marking them delivered
        }
        if self.ctl.consumer.read.load(Ordering::Relaxed) < pos {
            // Relaxed: the next owner reads `read` after taking the owner lock, which orders this store
            //  before it (unlock or death, then lock); status reports read a snapshot.
            self.ctl.consumer.read.store(pos, Ordering::Relaxed);
        }
    }

    /// Recovery: checks that `read` lies on a record boundary in `head..=end of records`. If a
    /// peer left it anywhere else, moves it forward to the next boundary (or back to the end of
    /// the records, if it pointed past them): nothing is skipped, and everything that may have
    /// been delivered is flagged when it is delivered again. Returns whether it had to.
    pub(crate) fn repair_read_cursor(&self, max_message: u32) -> bool {
        // Relaxed: `read` is the owners' word, and owners follow one another through the owner lock.
        let read = self.ctl.consumer.read.load(Ordering::Relaxed);
        let mut pos = self.head();
        while pos < read {
            let step = match self.at(pos, max_message) {
                Ok(Slot::Skip { cells }) => cells,
                Ok(Slot::Record(r)) => r.cells,
                _ => break,
            };
            pos += step;
        }
        if pos == read {
            return false;
        }
        self.set_read_cursor_back(pos);
        true
    }

    /// Sets the delivered-up-to cursor, forward or back (recovery only, when a peer left it off
    /// a record boundary).
    pub(crate) fn set_read_cursor_back(&self, pos: u64) {
        // Relaxed: recovery runs under the owner lock, whose hand-over orders it for the next owner.
        self.ctl.consumer.read.store(pos, Ordering::Relaxed);
    }

    /// Turns every record that sender slot `sender` has claimed and not committed into an
    /// abandoned one; returns how many. The caller must make sure the slot's process is dead and
    /// that nobody can take the slot meanwhile (see `recovery`): then every such record is the
    /// dead sender's, and its commit can never succeed afterwards, so a live-but-slow writer can
    /// never scribble over cells that were freed under it.
    ///
    /// # Safety
    ///
    /// The caller holds slot `sender`'s liveness lock, taken from a process that died or let
    /// the queue go (so no claim under that slot can still be written), until this returns.
    pub unsafe fn abandon_sender(&self, sender: u8) -> u64 {
        let mut count = 0;
        let mut restarts = 0;
        'walk: loop {
            let mut p = self.head();
            let first = p;
            loop {
                // Relaxed: the walk only steps over records; the compare-and-swap below is what decides.
                let s = self.stamps[self.index(p)].load(Ordering::Relaxed);
                if !self.is_at(s, p) {
                    // The end of the claimed records, or cells already reused because `head`
                    // passed `p` meanwhile: then walk again from the new head.
                    if self.head() > p && restarts < 1000 {
                        restarts += 1;
                        continue 'walk;
                    }
                    break 'walk;
                }
                let k = stamp::cells(s);
                if k == 0 || k > self.n - self.offset(p) || p + k - first > self.n {
                    break 'walk; // corrupt: the receiver reports it
                }
                if stamp::state(s) == stamp::RESERVED
                    && stamp::sender(s) == sender
                    && self.stamps[self.index(p)]
                        .compare_exchange(
                            s,
                            stamp::with_state(s, stamp::ABANDONED),
                            ord!(AcqRel),
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    count += 1;
                }
                p += k;
            }
        }
        count
    }

    /// The event senders sleep on while the lane is full.
    pub fn space_event(&self) -> &'a Event {
        &self.ctl.space
    }

    /// Walks the claimed records (a snapshot, not a synchronised view: for status reports).
    pub fn census(&self) -> Census {
        let head = self.head();
        let read = self.read_cursor();
        let tail = self.ctl.producer.tail.load(Ordering::Relaxed);
        let mut c = Census {
            used: tail.saturating_sub(head).min(self.n) * CELL as u64,
            ..Census::default()
        };
        // Only stamps (atomics) are read, never a record's cells, which the owner may free and
        // a sender write meanwhile: except one word, the oldest waiting record's send time,
        // read as a seqlock reader reads (see `sent_ns_if_unchanged`).
        let mut p = head;
        while p - head < self.n {
            let s = self.stamps[self.index(p)].load(Ordering::Acquire);
            let k = stamp::cells(s);
            if !self.is_at(s, p) || k == 0 || k > self.n - self.offset(p) {
                break;
            }
            match stamp::state(s) {
                stamp::RESERVED => c.in_flight += 1,
                stamp::ABANDONED => c.abandoned += 1,
                stamp::PAD | stamp::ACKED | stamp::CANCELLED => {}
                stamp::COMMITTED if p < read => c.delivered += 1,
                stamp::TAKEN => c.delivered += 1,
                stamp::COMMITTED | stamp::RETURNED => {
                    c.waiting += 1;
                    if c.waiting == 1 {
                        c.oldest_waiting_sent_ns = self.sent_ns_if_unchanged(p, s);
                    }
                }
                _ => break,
            }
            // A scribbled head near the end of positions: stop rather than wrap.
            let Some(next) = p.checked_add(k) else { break };
            p = next;
        }
        c
    }

    /// The send time in the header of the committed record at `pos` whose stamp was `s`, read
    /// by someone who does not own the lane: the owner may free the record meanwhile and a
    /// sender write its cells. The word is read as a seqlock reader reads it (a volatile read,
    /// then an Acquire fence, then the stamp again) and kept only if the stamp is still `s`: a
    /// sender claims the cells, changing the stamp, before it writes them, so an unchanged
    /// stamp means the word read was the record's. (Formally the read may race with a write, as
    /// every seqlock reader's may; what it returns is never used unless validated.)
    fn sent_ns_if_unchanged(&self, pos: u64, s: u64) -> Option<u64> {
        let cell = self.index(pos);
        let word = racy_read_u64(&self.data[cell..cell + 1], SENT_NS_OFFSET);
        fence(Ordering::Acquire);
        (self.stamps[cell].load(Ordering::Relaxed) == s).then_some(word)
    }

    /// `(messages acknowledged, abandoned)` since creation. (Messages sent are these plus what
    /// is in the lane: see [`Lane::census`]; a sender keeps no counter, so it pays nothing
    /// for one and cannot leave one wrong by dying.)
    pub fn counters(&self) -> (u64, u64) {
        (
            self.ctl.consumer.received.load(Ordering::Relaxed),
            self.ctl.consumer.abandoned.load(Ordering::Relaxed),
        )
    }

    #[inline]
    fn read_header(&self, cell: usize) -> RecordHeader {
        let mut b = [0u8; RECORD_HEADER];
        self.copy_out(cell, 0, &mut b);
        RecordHeader::from_bytes(&b)
    }

    /// Copies `src` into the lane, `offset` bytes after the start of cell `first`.
    #[inline]
    fn copy_in(&self, first: usize, offset: usize, src: &[u8]) {
        let end_cell = first + (offset + src.len()).div_ceil(CELL);
        assert!(end_cell <= self.data.len(), "copy within the lane");
        // SAFETY: the destination lies inside `data` (asserted above); the claim gives this
        // sender the only access to these cells until commit, so nothing reads or writes them
        // concurrently.
        unsafe { copy_to_cells(&self.data[first..end_cell], offset, src) };
    }

    /// Copies bytes out of the lane into `dst`, starting `offset` bytes after cell `first`.
    #[inline]
    /// Appends the `len` payload bytes of the record at cell `first` to `out` (no zero-fill
    /// first: a 4 KiB receive spent a tenth of its time in `memset`).
    pub(crate) fn append_out(&self, first: usize, len: usize, out: &mut Vec<u8>) {
        let end_cell = first + (RECORD_HEADER + len).div_ceil(CELL);
        assert!(end_cell <= self.data.len(), "copy within the lane");
        // SAFETY: the source lies inside `data` (asserted above); the record is committed and
        // not yet freed, so no sender writes these cells while we read them.
        unsafe { append_from_cells(&self.data[first..end_cell], RECORD_HEADER, len, out) };
    }

    fn copy_out(&self, first: usize, offset: usize, dst: &mut [u8]) {
        let end_cell = first + (offset + dst.len()).div_ceil(CELL);
        assert!(end_cell <= self.data.len(), "copy within the lane");
        // SAFETY: the source lies inside `data` (asserted above); the record is committed and
        // not yet freed, so no sender writes these cells while we read them.
        unsafe { copy_from_cells(&self.data[first..end_cell], offset, dst) };
    }
}

/// # Roles
///
/// A [`Lane`] is what any process may do with a lane: look at its cursors and counters
/// ([`Lane::head`], [`Lane::census`], ...). Sending and receiving are done through views of the
/// two roles, each made by an `unsafe` call whose contract is the proof of the role:
///
/// | view          | made by                     | proof (the caller's contract)                 | may                                                   |
/// |---------------|-----------------------------|-----------------------------------------------|-------------------------------------------------------|
/// | [`LaneSender`]| [`Lane::sender`]`(slot)`    | this process holds sender slot `slot`         | claim, write, commit, cancel                          |
/// | [`LaneOwner`] | [`Lane::owner`]             | this process owns the queue (the owner lock)  | take, acknowledge, release, move the head, recover    |
///
/// The `baton` crate makes these views only from its guards (a held slot, the owner guard),
/// so outside those two places the compiler checks who calls what. A shared queue has no
/// owner: its consumers take records through a third view, [`LaneConsumer`] (made by
/// [`Lane::consumer`] with proof of the consumer's slot), and whoever holds the queue's sweep
/// lock moves the head ([`sweep`]).
impl<'a> Lane<'a> {
    /// The sender's view of this lane, for claims made under sender slot `slot`.
    ///
    /// # Safety
    ///
    /// The calling process holds sender slot `slot` (its liveness lock) for as long as it
    /// writes through claims made with the view: a slot whose lock is free is taken for dead,
    /// and its claims abandoned and their cells reused ([`Lane::abandon_sender`]).
    #[inline]
    pub unsafe fn sender(self, slot: u8) -> LaneSender<'a> {
        LaneSender { lane: self, slot }
    }

    /// The owner's view of this lane.
    ///
    /// # Safety
    ///
    /// The calling process owns the lane's queue, and no other view of the owner exists
    /// outside this process, for as long as the view is used: two owners would free each
    /// other's records while they are read in place. Within the process, the owner's views are
    /// used by one thread at a time, except that a record found and not yet acknowledged or
    /// released may be read ([`LaneOwner::copy_payload`], [`LaneOwner::record_payload`]) on
    /// another thread meanwhile: nothing else frees it.
    #[inline]
    pub unsafe fn owner(self) -> LaneOwner<'a> {
        LaneOwner { lane: self }
    }
}

/// What a sender may do with a lane: claim cells, write a record into them, commit or cancel
/// it. Made by [`Lane::sender`], with proof of the sender slot it claims under.
#[derive(Debug, Clone, Copy)]
pub struct LaneSender<'a> {
    lane: Lane<'a>,
    slot: u8,
}

/// What anyone may do with the lane (its cursors and counters) a role may do too.
impl<'a> std::ops::Deref for LaneSender<'a> {
    type Target = Lane<'a>;

    #[inline]
    fn deref(&self) -> &Lane<'a> {
        &self.lane
    }
}

impl<'a> LaneSender<'a> {
    /// Claims cells for a record of `len` payload bytes at the tail (see [`Lane`]'s module
    /// documentation for the algorithm).
    ///
    /// # Errors
    ///
    /// [`ClaimError::Full`] when the budget has no room now; [`ClaimError::Corrupt`] when the
    /// lane's words contradict each other.
    #[inline]
    pub fn try_claim(&self, len: usize) -> Result<Claim, ClaimError> {
        self.lane.try_claim(len, self.slot)
    }

    /// Writes the header and payload of a claimed record.
    #[inline]
    pub fn write(&self, claim: &Claim, header: &RecordHeader, payload: &[u8]) {
        self.lane.write(claim, header, payload)
    }

    /// Writes the payload of a claimed record.
    #[inline]
    pub fn write_payload(&self, claim: &Claim, payload: &[u8]) {
        self.lane.write_payload(claim, payload)
    }

    /// Writes the header of a claimed record.
    #[inline]
    pub fn write_header(&self, claim: &Claim, header: &RecordHeader) {
        self.lane.write_header(claim, header)
    }

    /// The payload bytes of a claimed record, to write in place.
    ///
    /// # Safety
    ///
    /// The caller must not keep the slice past the commit or cancellation of `claim`, nor make
    /// a second one for the same claim: the claim is what makes the access exclusive.
    #[inline]
    pub unsafe fn claimed_payload(&self, claim: &Claim, len: usize) -> &'a mut [u8] {
        // SAFETY: the caller's contract is this one.
        unsafe { self.lane.claimed_payload(claim, len) }
    }

    /// Gives a claim back uncommitted: the receiver steps over it.
    #[inline]
    pub fn cancel(&self, claim: Claim) {
        self.lane.cancel(claim)
    }

    /// Publishes a claimed, written record to the receiver.
    ///
    /// # Errors
    ///
    /// [`CommitError::Abandoned`] if the claim was abandoned (this sender was taken for dead);
    /// [`CommitError::Corrupt`] if the stamp shows anything else.
    #[inline]
    pub fn commit(&self, claim: Claim) -> Result<(), CommitError> {
        self.lane.commit(claim)
    }

    /// Claims cells for a run of records: one of `len` payload bytes, then as many of `rest`
    /// (each in cells, see [`record_cells`]) as fit now without wrapping. Returns the claim and
    /// how many records it holds.
    ///
    /// # Errors
    ///
    /// As [`LaneSender::try_claim`], for the first record.
    #[inline]
    pub fn try_claim_run(&self, len: usize, rest: &[u64]) -> Result<(Claim, usize), ClaimError> {
        self.lane.try_claim_run(len, rest, self.slot)
    }

    /// Writes the header and payload of the record `at` cells into a run claim.
    #[inline]
    pub fn write_in_run(&self, claim: &Claim, at: u64, header: &RecordHeader, payload: &[u8]) {
        self.lane.write_in_run(claim, at, header, payload)
    }

    /// Publishes the records of a run claim, of `cells` cells each, together.
    ///
    /// # Errors
    ///
    /// As [`LaneSender::commit`].
    #[inline]
    pub fn commit_run(&self, claim: Claim, cells: &[u64]) -> Result<(), CommitError> {
        self.lane.commit_run(claim, cells)
    }
}

/// What the owner of a lane may do: take records, acknowledge or release them, move the head,
/// and recover what a dead owner left. Made by [`Lane::owner`], with proof of ownership.
#[derive(Debug, Clone, Copy)]
pub struct LaneOwner<'a> {
    lane: Lane<'a>,
}

/// What anyone may do with the lane (its cursors and counters) a role may do too.
impl<'a> std::ops::Deref for LaneOwner<'a> {
    type Target = Lane<'a>;

    #[inline]
    fn deref(&self) -> &Lane<'a> {
        &self.lane
    }
}

impl<'a> LaneOwner<'a> {
    /// What is at position `pos` (see [`Slot`]); everything read is checked.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when the stamp or the header contradicts the lane.
    #[inline]
    pub fn at(&self, pos: u64, max_message: u32) -> Result<Slot, Corrupt> {
        self.lane.at(pos, max_message)
    }

    /// The record at the head, freeing padding and abandoned records on the way.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] as for [`LaneOwner::at`].
    #[inline]
    pub fn peek<W: Waiter>(&self, max_message: u32, waiter: &W) -> Result<Peek, Corrupt> {
        self.lane.peek(max_message, waiter)
    }

    /// Copies a committed record's payload into `out`.
    ///
    /// # Errors
    ///
    /// [`Corrupt::BehindHead`] if the record lies behind `head` (freed).
    #[inline]
    pub fn copy_payload(&self, record: &RecordRef, out: &mut Vec<u8>) -> Result<(), Corrupt> {
        self.lane.copy_payload(record, out)
    }

    /// The payload of a committed record, in place.
    ///
    /// # Safety
    ///
    /// The caller must not keep the slice past the acknowledgement of the record: until then
    /// its cells cannot be claimed again, so no sender writes them.
    ///
    /// # Errors
    ///
    /// [`Corrupt::BehindHead`] if the record lies behind `head` (freed).
    #[inline]
    pub unsafe fn record_payload(&self, record: &RecordRef) -> Result<&'a [u8], Corrupt> {
        // SAFETY: the caller's contract is this one.
        unsafe { self.lane.record_payload(record) }
    }

    /// Acknowledges the record at the head and frees it (and what follows it that is free).
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when the lane changed under its owner.
    #[inline]
    pub fn release<W: Waiter>(&self, record: RecordRef, waiter: &W) -> Result<(), Corrupt> {
        self.lane.release(record, waiter)
    }

    /// Marks a delivered record acknowledged; returns whether it is at the head (then
    /// [`LaneOwner::advance_head_until`] frees it).
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when the record's stamp changed under its owner.
    #[inline]
    pub fn ack(&self, record: &RecordRef) -> Result<bool, Corrupt> {
        self.lane.ack(record)
    }

    /// Moves `head` over the acknowledged, abandoned and padding records at the head; returns
    /// the new head.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] as for [`LaneOwner::at`].
    #[inline]
    pub fn advance_head<W: Waiter>(&self, waiter: &W) -> Result<u64, Corrupt> {
        self.lane.advance_head(waiter)
    }

    /// As [`LaneOwner::advance_head`], first over `acked_at_head`.
    ///
    /// # Errors
    ///
    /// As [`LaneOwner::advance_head`].
    #[inline]
    pub fn advance_head_over<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        waiter: &W,
    ) -> Result<u64, Corrupt> {
        self.lane.advance_head_over(acked_at_head, waiter)
    }

    /// As [`LaneOwner::advance_head_over`], not past `limit`.
    ///
    /// # Errors
    ///
    /// As [`LaneOwner::advance_head`].
    #[inline]
    pub fn advance_head_until<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        limit: u64,
        waiter: &W,
    ) -> Result<u64, Corrupt> {
        self.lane.advance_head_until(acked_at_head, limit, waiter)
    }

    /// [`LaneOwner::advance_head_until`] that stops half way, as an owner that dies there
    /// would: for the loom model of recovery. Not for use otherwise.
    ///
    /// # Errors
    ///
    /// As [`LaneOwner::advance_head`].
    #[doc(hidden)]
    #[inline]
    pub fn advance_head_stopping<W: Waiter>(
        &self,
        acked_at_head: Option<&RecordRef>,
        limit: u64,
        waiter: &W,
        stop: MoveStop,
    ) -> Result<u64, Corrupt> {
        self.lane
            .advance_head_stopping(acked_at_head, limit, waiter, stop)
    }

    /// Wakes the senders that head moves skipped waking (see `Lane::wake_owed`).
    #[inline]
    pub fn wake_owed<W: Waiter>(&self, waiter: &W) {
        self.lane.wake_owed(waiter)
    }

    /// Recovery: finishes a head move a dead owner left half done; returns whether it had to.
    #[inline]
    pub fn replay_journal<W: Waiter>(&self, waiter: &W) -> bool {
        self.lane.replay_journal(waiter)
    }

    /// Records that everything before `pos` has been handed out.
    #[inline]
    pub fn set_read_cursor(&self, pos: u64) {
        self.lane.set_read_cursor(pos)
    }

    /// Recovery: puts `read` back on a record boundary; returns whether it had to.
    #[inline]
    pub fn repair_read_cursor(&self, max_message: u32) -> bool {
        self.lane.repair_read_cursor(max_message)
    }
}

/// What a stalled sender's world does meanwhile: the step of `try_claim` it stalls at, and
/// the function that plays the rest of the world.
#[cfg(test)]
type Stall = Option<(&'static str, fn(&Lane<'_>))>;

#[cfg(test)]
thread_local! {
    /// A unit test's stalled sender: at the named step of `try_claim`, the function runs once
    /// (and plays what the rest of the world did meanwhile).
    static STALL: std::cell::Cell<Stall> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
impl Lane<'_> {
    fn stall(&self, step: &str) {
        if let Some((at, world)) = STALL.with(|h| h.take()) {
            if at == step {
                world(self);
            } else {
                STALL.with(|h| h.set(Some((at, world))));
            }
        }
    }
}

/// A lane that owns its memory on the heap: for unit tests and loom models.
#[derive(Debug)]
pub struct HeapLane {
    ctl: LaneControl,
    stamps: Box<[AtomicU64]>,
    data: Box<[DataCell]>,
    head_seen: AtomicU64,
    tag_bits: u32,
}

impl HeapLane {
    /// A lane of `cells` cells, as a freshly created segment holds it (all zero).
    pub fn new(cells: usize) -> Self {
        Self::with_tag_bits(cells, TAG_BITS)
    }

    /// A lane whose stamps keep only `tag_bits` bits of a position, so that a test reaches
    /// the tag's wrap after 2^tag_bits positions instead of 2^32.
    pub fn with_tag_bits(cells: usize, tag_bits: u32) -> Self {
        HeapLane {
            ctl: LaneControl::default(),
            stamps: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            data: (0..cells).map(|_| DataCell::new()).collect(),
            head_seen: AtomicU64::new(0),
            tag_bits,
        }
    }

    /// A lane as it would be after `pos` positions of traffic, empty (head, tail, read and
    /// this process's view of head all at `pos`), with the given stamps: for loom models that
    /// start right before the tag wraps, since loom cannot run 2^tag_bits positions.
    pub fn after(tag_bits: u32, pos: u64, stamps: &[u64]) -> Self {
        let heap = Self::with_tag_bits(stamps.len(), tag_bits);
        for (cell, &s) in heap.stamps.iter().zip(stamps) {
            cell.store(s, Ordering::Relaxed);
        }
        let c = &heap.ctl.consumer;
        for word in [&c.head, &c.read, &heap.ctl.producer.tail, &heap.head_seen] {
            word.store(pos, Ordering::Relaxed);
        }
        heap
    }

    /// The sender's view, for claims under slot `slot`.
    ///
    /// # Safety
    ///
    /// As [`Lane::sender`]: in a model, the thread that plays the sender of slot `slot`.
    pub unsafe fn sender(&self, slot: u8) -> LaneSender<'_> {
        // SAFETY: the caller's contract is this one.
        unsafe { self.lane().sender(slot) }
    }

    /// The owner's view.
    ///
    /// # Safety
    ///
    /// As [`Lane::owner`]: in a model, the one thread that plays the owner at a time.
    pub unsafe fn owner(&self) -> LaneOwner<'_> {
        // SAFETY: the caller's contract is this one.
        unsafe { self.lane().owner() }
    }

    /// The lane view.
    pub fn lane(&self) -> Lane<'_> {
        Lane::new(
            &self.ctl,
            &self.stamps,
            &self.data,
            &self.head_seen,
            self.tag_bits,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::Yield;

    fn send(lane: &Lane<'_>, payload: &[u8]) -> Result<(), ClaimError> {
        let claim = lane.try_claim(payload.len(), 0)?;
        let header = RecordHeader {
            len: payload.len() as u32,
            msg_type: 7,
            ..Default::default()
        };
        lane.write(&claim, &header, payload);
        lane.commit(claim).map_err(|e| match e {
            CommitError::Corrupt(c) => ClaimError::Corrupt(c),
            CommitError::Abandoned => ClaimError::Corrupt(Corrupt::Abandoned),
        })
    }

    fn recv(lane: &Lane<'_>) -> Option<Vec<u8>> {
        match lane.peek(1 << 20, &Yield).unwrap() {
            Peek::Record(r) => {
                let mut out = Vec::new();
                lane.copy_payload(&r, &mut out).unwrap();
                lane.release(r, &Yield).unwrap();
                Some(out)
            }
            Peek::Empty | Peek::InFlight => None,
        }
    }

    #[test]
    fn records_come_out_in_claim_order_with_their_bytes() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        for i in 0..5u8 {
            send(&lane, &vec![i; i as usize * 10]).unwrap();
        }
        for i in 0..5u8 {
            assert_eq!(recv(&lane).unwrap(), vec![i; i as usize * 10]);
        }
        assert_eq!(recv(&lane), None);
    }

    #[test]
    fn a_view_made_from_a_geometry_is_the_view_made_with_checks() {
        for (cells, tag_bits) in [(16usize, TAG_BITS), (5, TAG_BITS), (12, 8)] {
            let heap = HeapLane::with_tag_bits(cells, tag_bits);
            let checked = heap.lane();
            let from_geometry = Lane::with_geometry(
                &heap.ctl,
                &heap.stamps,
                &heap.data,
                &heap.head_seen,
                LaneGeometry::new(cells, tag_bits),
            );
            assert_eq!(
                (checked.n, checked.n_mask, checked.tag_mask),
                (
                    from_geometry.n,
                    from_geometry.n_mask,
                    from_geometry.tag_mask
                )
            );
            // And it works as a lane: across several laps (the mask or the remainder).
            for i in 0..(3 * cells) {
                send(&from_geometry, &[i as u8; 20]).unwrap();
                assert_eq!(recv(&checked).unwrap(), vec![i as u8; 20]);
            }
        }
    }

    #[test]
    #[should_panic(expected = "one stamp and one data cell per cell of the geometry")]
    fn a_view_refuses_memory_of_another_size_than_its_geometry() {
        let heap = HeapLane::new(8);
        let _ = Lane::with_geometry(
            &heap.ctl,
            &heap.stamps,
            &heap.data,
            &heap.head_seen,
            LaneGeometry::new(16, TAG_BITS),
        );
    }

    #[test]
    #[should_panic(expected = "lane layout")]
    fn a_geometry_refuses_more_cells_than_its_tags_can_tell_apart() {
        let _ = LaneGeometry::new(1 << 7, 8); // 8-bit tags: at most 2^6 cells
    }

    #[test]
    fn budget_is_enforced_in_cells() {
        let heap = HeapLane::new(4);
        let lane = heap.lane();
        send(&lane, &[1; 96]).unwrap(); // 32 + 96 = 2 cells
        send(&lane, &[2; 96]).unwrap();
        assert_eq!(send(&lane, &[3; 1]), Err(ClaimError::Full));
        let c = lane.census();
        assert_eq!((c.used, c.waiting), (4 * CELL as u64, 2));
        recv(&lane).unwrap();
        send(&lane, &[3; 1]).unwrap();
    }

    #[test]
    fn a_record_that_would_wrap_is_preceded_by_padding_and_stays_contiguous() {
        let heap = HeapLane::new(5);
        let lane = heap.lane();
        for round in 0..50u8 {
            // 2-cell records in a 5-cell ring: every other lap needs padding at the end.
            let msg: Vec<u8> = (0..90).map(|i| i as u8 ^ round).collect();
            send(&lane, &msg).unwrap();
            send(&lane, &[round; 3]).unwrap();
            assert_eq!(recv(&lane).unwrap(), msg);
            assert_eq!(recv(&lane).unwrap(), vec![round; 3]);
        }
    }

    #[test]
    fn a_reserved_record_blocks_delivery_until_committed() {
        let heap = HeapLane::new(8);
        let lane = heap.lane();
        let claim = lane.try_claim(4, 0).unwrap();
        send(&lane, b"later").unwrap();
        assert_eq!(lane.peek(64, &Yield).unwrap(), Peek::InFlight);
        lane.write(
            &claim,
            &RecordHeader {
                len: 4,
                ..Default::default()
            },
            b"1st!",
        );
        lane.commit(claim).unwrap();
        assert_eq!(recv(&lane).unwrap(), b"1st!");
        assert_eq!(recv(&lane).unwrap(), b"later");
    }

    #[test]
    fn a_stamp_spanning_past_the_end_is_corrupt_not_a_crash() {
        let heap = HeapLane::new(4);
        heap.stamps[0].store(stamp::pack(0, 9, 0, stamp::COMMITTED), Ordering::Relaxed);
        let err = heap.lane().peek(64, &Yield).unwrap_err();
        assert_eq!(err, Corrupt::BadSpan { pos: 0, cells: 9 });
        assert_eq!(err.to_string(), "stamp at position 0 spans 9 cells");
        assert!(matches!(
            heap.lane().try_claim(1, 0),
            Err(ClaimError::Corrupt(_))
        ));
    }

    #[test]
    fn a_header_length_that_does_not_match_its_cells_is_corrupt() {
        let heap = HeapLane::new(4);
        let lane = heap.lane();
        send(&lane, b"abc").unwrap();
        lane.copy_in(0, 0, &1000u32.to_ne_bytes());
        let err = lane.peek(4096, &Yield).unwrap_err();
        assert_eq!(
            err,
            Corrupt::LengthMismatch {
                pos: 0,
                len: 1000,
                cells: 1
            }
        );
        assert_eq!(
            lane.peek(100, &Yield).unwrap_err(),
            Corrupt::LengthOverMaximum {
                pos: 0,
                len: 1000,
                max: 100
            }
        );
    }

    #[test]
    fn an_unknown_state_is_corrupt() {
        let heap = HeapLane::new(4);
        heap.stamps[0].store(stamp::pack(0, 1, 0, 9), Ordering::Relaxed);
        assert_eq!(
            heap.lane().peek(64, &Yield).unwrap_err(),
            Corrupt::UnknownState { pos: 0, state: 9 }
        );
    }

    #[test]
    fn many_threads_send_concurrently_without_loss_or_duplicates() {
        let heap = HeapLane::new(64);
        let lane = heap.lane();
        const PER: u32 = 20_000;
        std::thread::scope(|s| {
            for t in 0..3u32 {
                s.spawn(move || {
                    for i in 0..PER {
                        let msg = [t.to_ne_bytes(), i.to_ne_bytes()].concat();
                        while let Err(e) = send(&lane, &msg) {
                            assert_eq!(e, ClaimError::Full);
                            std::thread::yield_now();
                        }
                    }
                });
            }
            let mut next = [0u32; 3];
            let mut got = 0;
            while got < 3 * PER {
                if let Some(m) = recv(&lane) {
                    let t = u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize;
                    let i = u32::from_ne_bytes(m[4..8].try_into().unwrap());
                    assert_eq!(i, next[t], "sender {t} out of order");
                    next[t] += 1;
                    got += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        assert_eq!(recv(&lane), None);
    }

    #[test]
    fn a_dead_senders_claims_are_abandoned_skipped_and_counted_and_its_commit_fails() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        send(&lane, b"before").unwrap();
        let dead = lane.try_claim(10, 7).unwrap();
        let live = lane.try_claim(10, 8).unwrap();
        send(&lane, b"after").unwrap();
        assert_eq!(recv(&lane).unwrap(), b"before");
        assert_eq!(lane.peek(64, &Yield).unwrap(), Peek::InFlight);
        // SAFETY: slot 7 plays a dead sender: nothing writes through its claim any more.
        assert_eq!(unsafe { lane.abandon_sender(7) }, 1);
        // SAFETY: as above.
        assert_eq!(unsafe { lane.abandon_sender(7) }, 0, "idempotent");
        assert_eq!(lane.commit(dead), Err(CommitError::Abandoned));
        assert_eq!(
            lane.peek(64, &Yield).unwrap(),
            Peek::InFlight,
            "the live sender's claim still holds the lane"
        );
        lane.write(
            &live,
            &RecordHeader {
                len: 10,
                ..Default::default()
            },
            &[1; 10],
        );
        lane.commit(live).unwrap();
        assert_eq!(recv(&lane).unwrap(), vec![1; 10]);
        assert_eq!(recv(&lane).unwrap(), b"after");
        assert_eq!(lane.counters(), (3, 1));
    }

    /// Sends `payloads` as runs (as many per claim as fit); returns the records of each run.
    fn send_runs(lane: &Lane<'_>, payloads: &[&[u8]]) -> Result<Vec<usize>, ClaimError> {
        let cells: Vec<u64> = payloads.iter().map(|p| record_cells(p.len())).collect();
        let mut runs = Vec::new();
        let mut i = 0;
        while i < payloads.len() {
            let (claim, n) = lane.try_claim_run(payloads[i].len(), &cells[i + 1..], 0)?;
            let mut at = 0;
            for p in &payloads[i..i + n] {
                let header = RecordHeader {
                    len: p.len() as u32,
                    ..Default::default()
                };
                lane.write_in_run(&claim, at, &header, p);
                at += record_cells(p.len());
            }
            lane.commit_run(claim, &cells[i..i + n]).unwrap();
            runs.push(n);
            i += n;
        }
        Ok(runs)
    }

    #[test]
    fn a_run_is_claimed_once_and_read_record_by_record_across_the_wrap() {
        let heap = HeapLane::new(8);
        let lane = heap.lane();
        send(&lane, &[9; 40]).unwrap(); // two cells
        assert_eq!(recv(&lane).unwrap(), vec![9; 40]);
        // Six cells left before the end: a run of three two-cell records, then padding is
        // not needed (it fits exactly); the fourth goes in a second run at the start.
        let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 40]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        assert_eq!(send_runs(&lane, &refs).unwrap(), vec![3, 1]);
        for m in &msgs {
            assert_eq!(recv(&lane).as_ref(), Some(m));
        }
        assert_eq!(recv(&lane), None);
        assert_eq!(lane.counters(), (5, 0));
        // A run that would cross the end: padding first, then the run from the start.
        send(&lane, &[1; 40]).unwrap();
        assert_eq!(recv(&lane).unwrap(), vec![1; 40]); // tail at 12: 4 cells to the end
        let small: Vec<Vec<u8>> = (0..2u8).map(|i| vec![i; 100]).collect(); // 3 cells each
        let refs: Vec<&[u8]> = small.iter().map(|m| &m[..]).collect();
        assert_eq!(send_runs(&lane, &refs).unwrap(), vec![1, 1]);
        for m in &small {
            assert_eq!(recv(&lane).as_ref(), Some(m));
        }
    }

    #[test]
    fn a_run_claims_only_what_fits_and_a_full_lane_refuses_it() {
        let heap = HeapLane::new(8);
        let lane = heap.lane();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 40]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let cells = [2u64; 6];
        let (claim, n) = lane.try_claim_run(40, &cells[1..], 0).unwrap();
        assert_eq!(
            (n, claim.cells),
            (4, 8),
            "four two-cell records fill eight cells"
        );
        assert_eq!(
            lane.try_claim_run(40, &cells[1..], 0).unwrap_err(),
            ClaimError::Full
        );
        let mut at = 0;
        for p in &refs[..4] {
            lane.write_in_run(&claim, at, &header_of(p), p);
            at += 2;
        }
        lane.commit_run(claim, &cells[..4]).unwrap();
        for m in &msgs[..4] {
            assert_eq!(recv(&lane).as_ref(), Some(m));
        }
    }

    fn header_of(p: &[u8]) -> RecordHeader {
        RecordHeader {
            len: p.len() as u32,
            ..Default::default()
        }
    }

    #[test]
    fn a_dead_senders_run_is_skipped_whole_and_counted_once() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        let cells = [1u64, 1, 1];
        let (dead, n) = lane.try_claim_run(10, &cells[1..], 7).unwrap();
        assert_eq!(n, 3);
        // Two of its three records written, the later stamps even stored: then it dies.
        lane.write_in_run(&dead, 0, &header_of(&[1; 10]), &[1; 10]);
        lane.write_in_run(&dead, 1, &header_of(&[2; 10]), &[2; 10]);
        send(&lane, b"after").unwrap();
        assert_eq!(lane.peek(64, &Yield).unwrap(), Peek::InFlight);
        // SAFETY: slot 7 plays a dead sender: nothing writes through its claim any more.
        assert_eq!(unsafe { lane.abandon_sender(7) }, 1);
        assert_eq!(lane.commit_run(dead, &cells), Err(CommitError::Abandoned));
        assert_eq!(recv(&lane).unwrap(), b"after");
        assert_eq!(recv(&lane), None);
        assert_eq!(lane.counters(), (1, 1));
    }

    /// A peer scribbled `read` off a record boundary: the records it may have covered are
    /// redelivered flagged (the cursor moves to the next boundary), never handed out as new.
    #[test]
    fn a_read_cursor_off_a_boundary_moves_forward_to_the_next_one() {
        let heap = HeapLane::new(16);
        let lane = heap.lane();
        for m in [&[1u8; 40][..], &[2; 100], &[3; 10]] {
            send(&lane, m).unwrap(); // cells 0..2, 2..5, 5..6
        }
        lane.set_read_cursor_back(3); // inside the second record
        assert!(lane.repair_read_cursor(4096));
        assert_eq!(
            lane.read_cursor(),
            5,
            "both records it may have covered count as delivered"
        );
        assert!(!lane.repair_read_cursor(4096), "a boundary is left alone");
        lane.set_read_cursor_back(1000); // past the records
        assert!(lane.repair_read_cursor(4096));
        assert_eq!(lane.read_cursor(), 6, "the end of the committed records");
    }

    #[test]
    fn acknowledgements_out_of_order_free_only_a_prefix() {
        let heap = HeapLane::new(3);
        let lane = heap.lane();
        for m in [b"a", b"b", b"c"] {
            send(&lane, m).unwrap();
        }
        let records: Vec<RecordRef> = (0..3)
            .map(|i| match lane.at(i, 64).unwrap() {
                Slot::Record(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        lane.set_read_cursor(3);
        lane.ack(&records[2]).unwrap();
        lane.ack(&records[1]).unwrap();
        assert_eq!(lane.advance_head(&Yield).unwrap(), 0);
        assert_eq!(lane.census().delivered, 1);
        assert!(
            lane.ack(&records[0]).unwrap(),
            "at the head: freed by the head move"
        );
        assert_eq!(
            lane.advance_head_over(Some(&records[0]), &Yield).unwrap(),
            3
        );
        assert_eq!(lane.census(), Census::default());
        assert!(
            lane.ack(&records[1]).is_err(),
            "a record is acknowledged once"
        );
    }

    #[test]
    fn a_stamp_compares_equal_only_for_its_own_position_on_the_lanes_tag_bits() {
        let s = stamp::pack(5, 1, 1, stamp::COMMITTED);
        assert!(stamp::is_at(s, 5, u32::MAX));
        assert!(!stamp::is_at(s, 6, u32::MAX));
        assert!(!stamp::is_at(0, 0, u32::MAX), "never claimed");
        assert!(
            stamp::is_at(s, 5 + (1 << 32), u32::MAX),
            "32-bit tags alias at 2^32"
        );
        assert!(
            stamp::is_at(s, 5 + (1 << 10), 0x3ff),
            "10-bit tags alias at 2^10"
        );
        assert!(!stamp::is_at(s, 5 + (1 << 10), u32::MAX));
    }

    /// Fixed-size traffic leaves the cells in the middle of records uncovered by record
    /// starts. Their stamps must still be fresh when the tag wraps. The issue's sequence (one
    /// 1-cell record, `k` 2-cell records, one 1-cell record, then 2-cell records again), for
    /// every `k` that takes an 8- or 10-bit tag past its wrap: with 32 bits it is 2^30 + 4.
    #[test]
    fn fixed_size_traffic_after_a_tag_wrap_delivers_exactly_what_was_sent() {
        for bits in [8u32, 10] {
            for k in 0..(1u32 << (bits - 1)) + 8 {
                let heap = HeapLane::with_tag_bits(4, bits);
                let lane = heap.lane();
                let check = |msg: Vec<u8>, what: &str| {
                    send(&lane, &msg)
                        .unwrap_or_else(|e| panic!("{bits} bits, k {k}, {what}: {e:?}"));
                    assert_eq!(recv(&lane), Some(msg), "{bits} bits, k {k}, {what}");
                    assert_eq!(recv(&lane), None, "{bits} bits, k {k}, after {what}");
                };
                check(vec![0xee; 8], "first short");
                for i in 0..k {
                    check((0..64).map(|j| (i as u8) ^ j).collect(), "long");
                }
                check(vec![0xdd; 8], "second short");
                for i in 0..8u8 {
                    check(vec![i; 64], "long after the shift");
                }
            }
        }
    }

    /// Runs of mixed sizes, on lanes of a power of two and of not, with 8-bit tags, for
    /// hundreds of tag wraps, received one by one between runs or after several: every
    /// message once, in order, whole.
    #[test]
    fn runs_of_mixed_sizes_across_hundreds_of_tag_wraps_deliver_exactly_what_was_sent() {
        for cells in [64usize, 60] {
            let heap = HeapLane::with_tag_bits(cells, 8);
            let lane = heap.lane();
            let mut next_sent = 0u32;
            let mut next_got = 0u32;
            let mut seed = 7u64;
            let mut random = |n: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n
            };
            while lane.head() < 256 * 300 {
                // A run of 1 to 8 messages of 8 to 200 bytes, each carrying its number.
                let msgs: Vec<Vec<u8>> = (0..1 + random(8))
                    .map(|i| {
                        let mut m = vec![0u8; 8 + random(193) as usize];
                        m[..4].copy_from_slice(&(next_sent + i as u32).to_le_bytes());
                        m
                    })
                    .collect();
                // As many runs as fit now (a full lane stops it part way).
                let sizes: Vec<u64> = msgs.iter().map(|m| record_cells(m.len())).collect();
                let mut i = 0;
                while i < msgs.len() {
                    let (claim, n) = match lane.try_claim_run(msgs[i].len(), &sizes[i + 1..], 0) {
                        Ok(run) => run,
                        Err(ClaimError::Full) => break,
                        Err(e) => panic!("{cells} cells: {e:?}"),
                    };
                    let mut at = 0;
                    for m in &msgs[i..i + n] {
                        lane.write_in_run(&claim, at, &header_of(m), m);
                        at += record_cells(m.len());
                    }
                    lane.commit_run(claim, &sizes[i..i + n]).unwrap();
                    i += n;
                }
                // Those not sent are numbered again in the next batch.
                next_sent += i as u32;
                // Take some, or all when the lane is full.
                let take = if random(3) == 0 { u64::MAX } else { random(6) };
                for _ in 0..take {
                    let Some(m) = recv(&lane) else { break };
                    let n = u32::from_le_bytes(m[..4].try_into().unwrap());
                    assert_eq!(n, next_got, "{cells} cells: out of order or lost");
                    next_got += 1;
                }
            }
            while let Some(m) = recv(&lane) {
                assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), next_got);
                next_got += 1;
            }
            assert_eq!(next_got, next_sent, "{cells} cells");
            assert_eq!(lane.counters(), (u64::from(next_sent), 0));
        }
    }

    #[test]
    fn a_claim_writes_middle_stamps_and_the_owner_covers_padding() {
        let heap = HeapLane::new(5);
        let lane = heap.lane();
        send(&lane, &[1; 100]).unwrap(); // 3 cells at 0
        for p in 1..3 {
            assert_eq!(
                heap.stamps[p].load(Ordering::Relaxed),
                stamp::middle(p as u64)
            );
        }
        assert_eq!(recv(&lane).unwrap(), vec![1; 100]);
        send(&lane, &[2; 100]).unwrap(); // padding 3..5, then 3 cells at 5
        assert_eq!(recv(&lane).unwrap(), vec![2; 100]);
        assert_eq!(
            heap.stamps[4].load(Ordering::Relaxed),
            stamp::middle(4),
            "the padding's second cell"
        );
        assert!(
            lane.at(6, 4096).unwrap_err() == Corrupt::InsideRecord(6),
            "a cursor that lands inside a record is told so"
        );
    }

    /// A sender that stalls for exactly 2^32 positions between its checks and its
    /// compare-and-swap finds a live record's stamp equal, bit for bit, to the one it read: it
    /// must notice and put it back instead of claiming over that record.
    #[test]
    fn a_sender_stalled_for_a_whole_tag_wrap_puts_back_the_stamp_it_took() {
        let heap = HeapLane::new(4);
        let lane = heap.lane();
        for i in 0..4u8 {
            send(&lane, &[i]).unwrap();
            assert_eq!(recv(&lane).unwrap(), vec![i]);
        }
        let old = heap.stamps[0].load(Ordering::Relaxed);
        assert!(lane.is_at(old, 0));
        fn the_world_moves_on(lane: &Lane<'_>) {
            // 2^32 positions later: the other cells hold the last lap's records, cell 0 a live
            // record at 2^32 by the same sender, whose stamp is bit for bit the one the stalled
            // sender read for position 0 (as is its header); the tail is past it.
            for c in 1..4u64 {
                let p = (1 << 32) - 4 + c;
                lane.stamps[c as usize]
                    .store(stamp::pack(p, 1, 0, stamp::ACKED), Ordering::Relaxed);
            }
            let c = &lane.ctl.consumer;
            c.head.store(1 << 32, Ordering::Relaxed);
            c.read.store(1 << 32, Ordering::Relaxed);
            lane.ctl
                .producer
                .tail
                .store((1 << 32) + 1, Ordering::Relaxed);
        }
        STALL.with(|h| h.set(Some(("before the claim", the_world_moves_on))));
        let claim = lane.try_claim(1, 0).unwrap();
        assert_eq!(claim.pos, (1 << 32) + 1, "claimed at the real tail");
        assert_eq!(
            heap.stamps[0].load(Ordering::Relaxed),
            old,
            "the live record's stamp is back"
        );
        assert!(matches!(lane.at(1 << 32, 64), Ok(Slot::Record(_))));
    }

    #[test]
    fn a_sender_with_a_stale_tail_does_not_claim_over_a_later_lap() {
        let heap = HeapLane::new(4);
        let lane = heap.lane();
        send(&lane, &[0]).unwrap();
        assert_eq!(recv(&lane).unwrap(), vec![0]);
        fn others_fill_the_next_lap(lane: &Lane<'_>) {
            // Held up after reading tail = 1: meanwhile others send 1..8 and the receiver
            // takes 1..4, so the cell of position 1 holds position 5, a live record.
            for i in 1..8u8 {
                send(lane, &[i]).unwrap();
                if i < 4 {
                    assert_eq!(recv(lane).unwrap(), vec![i]);
                }
            }
        }
        STALL.with(|h| h.set(Some(("after reading the tail", others_fill_the_next_lap))));
        heap.head_seen.store(0, Ordering::Relaxed); // and its view of head is old too
        assert_eq!(
            lane.try_claim(1, 2),
            Err(ClaimError::Full),
            "the lane is full, not overwritable"
        );
        for i in 4..8u8 {
            assert_eq!(recv(&lane).unwrap(), vec![i], "live records intact");
        }
    }
}
