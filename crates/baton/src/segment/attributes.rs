//! A queue's attributes, fixed at creation, and their checks.

use crate::error::{AttributeError, OpenError};
use baton_ring::lane::{self, CELL, MAX_LANE_CELLS, MAX_RECORD_CELLS, RECORD_HEADER};

/// A queue's attributes, fixed at creation (SA-Forum MSG style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Attributes {
    /// Byte budget of each priority lane, 0 (highest) to 3. Rounded up to a multiple of 64; each
    /// message uses `32 + len` bytes rounded up to 64.
    pub capacity: [u64; 4],
    /// The largest payload a message may have, in bytes.
    pub max_message: u32,
    /// File mode of the segment (`0o600` by default), applied exactly, whatever the umask.
    #[cfg_attr(feature = "serde", serde(serialize_with = "octal"))]
    pub mode: u32,
    /// `None` (the default): the queue lives until it is removed. `Some(d)`: it is deleted, with
    /// its messages, once it has had no owner for `d`; `Some(ZERO)` deletes it as soon as its
    /// owner closes or dies with no standby waiting (SA-Forum's non-persistent queue).
    #[cfg_attr(feature = "serde", serde(serialize_with = "seconds"))]
    pub retention: Option<std::time::Duration>,
    /// Bits of a position kept in the lanes' stamps: 32 (the default) in production. Tests set
    /// fewer so that a lane passes the tag's wrap after 2^bits positions, in seconds instead
    /// of hours; then each lane may hold at most 2^(bits - 2) cells.
    #[doc(hidden)]
    #[cfg_attr(feature = "serde", serde(skip))]
    pub tag_bits: u32,
    /// Competing consumers (Tuxedo's MSSQ): any number of processes and threads take from the
    /// queue at once through [`crate::Queue::consumer`], each message going to one of them;
    /// nobody owns it, so [`crate::Queue::receiver`] and standbys are refused. Fixed at
    /// creation. Default: false (one owner at a time receives).
    pub shared: bool,
    /// How many requests ([`crate::Sender::request`]) may wait for their replies at once: each
    /// has a reply box of `max_message` bytes in the segment while it waits (16 by default, at
    /// most [`Attributes::MAX_REPLY_BOXES`]; 0: the queue takes no requests).
    pub reply_boxes: u32,
}

#[cfg(feature = "serde")]
fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

#[cfg(feature = "serde")]
fn seconds<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// How a retention is stored: nanoseconds, `u64::MAX` for none.
pub(crate) const NO_RETENTION: u64 = u64::MAX;

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            capacity: [64 * 1024; 4],
            max_message: 4096,
            mode: 0o600,
            retention: None,
            tag_bits: lane::TAG_BITS,
            shared: false,
            reply_boxes: 16,
        }
    }
}

impl Attributes {
    /// The most a payload may be: what 2^20 - 1 cells hold.
    pub const MAX_MESSAGE_LIMIT: u32 = (MAX_RECORD_CELLS as usize * CELL - RECORD_HEADER) as u32;
    /// The most reply boxes a queue may have.
    pub const MAX_REPLY_BOXES: u32 = 4096;

    /// Checks ranges and returns the attributes as stored (capacities rounded up to 64 bytes).
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidAttributes`] naming the first attribute out of range.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::Attributes;
    /// let a = Attributes { capacity: [100_000, 65536, 65536, 65536], ..Attributes::default() };
    /// assert_eq!(a.normalized()?.capacity[0], 100_032); // rounded up to whole 64-byte cells
    /// let bad = Attributes { max_message: 0, ..Attributes::default() };
    /// assert!(bad.normalized().is_err());
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn normalized(&self) -> Result<Attributes, OpenError> {
        let bad = |e: AttributeError| Err(OpenError::InvalidAttributes(e));
        if self.max_message == 0 || self.max_message > Self::MAX_MESSAGE_LIMIT {
            return bad(AttributeError::MaxMessage {
                value: self.max_message,
                max: Self::MAX_MESSAGE_LIMIT,
            });
        }
        if self.mode & !0o777 != 0 {
            return bad(AttributeError::ModeBits(self.mode));
        }
        if self.mode & 0o600 != 0o600 {
            return bad(AttributeError::ModeOwner(self.mode));
        }
        if !(lane::MIN_TAG_BITS..=lane::TAG_BITS).contains(&self.tag_bits) {
            return bad(AttributeError::TagBits {
                value: self.tag_bits,
                min: lane::MIN_TAG_BITS,
                max: lane::TAG_BITS,
            });
        }
        let min = lane::record_cells(self.max_message as usize) * CELL as u64;
        let mut capacity = self.capacity;
        for (p, c) in capacity.iter_mut().enumerate() {
            let rounded = c.div_ceil(CELL as u64).saturating_mul(CELL as u64);
            if rounded < min {
                return bad(AttributeError::CapacityTooSmall {
                    priority: p,
                    capacity: *c,
                    max_message: self.max_message,
                    needed: min,
                });
            }
            if rounded > MAX_LANE_CELLS * CELL as u64 {
                return bad(AttributeError::CapacityOverLimit {
                    priority: p,
                    capacity: *c,
                });
            }
            if rounded / CELL as u64 > lane::max_cells_for_tag(self.tag_bits) {
                return bad(AttributeError::CapacityOverTags {
                    priority: p,
                    capacity: *c,
                    tag_bits: self.tag_bits,
                });
            }
            *c = rounded;
        }
        if self
            .retention
            .is_some_and(|d| d.as_nanos() >= NO_RETENTION as u128)
        {
            return bad(AttributeError::Retention);
        }
        if self.shared && self.retention.is_some() {
            return bad(AttributeError::RetentionOnShared);
        }
        if self.reply_boxes > Self::MAX_REPLY_BOXES {
            return bad(AttributeError::ReplyBoxes {
                value: self.reply_boxes,
                max: Self::MAX_REPLY_BOXES,
            });
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
        if self.shared != asked.shared {
            let mode = |s: bool| if s { "shared" } else { "exclusive" };
            diffs.push(format!(
                "consumers are {} (asked {})",
                mode(self.shared),
                mode(asked.shared)
            ));
        }
        if self.reply_boxes != asked.reply_boxes {
            diffs.push(format!(
                "reply boxes are {} (asked {})",
                self.reply_boxes, asked.reply_boxes
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

#[cfg(test)]
mod tests {
    use super::*;

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
