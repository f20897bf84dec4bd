//! Queues on other nodes: `node/queue` addresses, and the envelope a message to one travels in
//! through this node's bridge outbox (the `baton bridge` daemon of `baton-cluster` takes it
//! from there; see `docs/groups.md`, *The bridge*).

use super::Queue;
use crate::error::OpenError;
use crate::name::{check_queue_name, Domain};
use crate::segment::Attributes;

/// The queue a node's bridge forwards from, by default: senders on the node put messages for
/// other nodes' queues in it, each in an envelope naming its destination.
pub const DEFAULT_OUTBOX: &str = "bridge.out";

/// Outbox `name` of `domain`, made if it does not exist (so that senders can send to other
/// nodes before the bridge runs; the bridge makes it the same way): a queue whose messages
/// hold an envelope and a message of the default maximum.
///
/// # Errors
///
/// The queue's errors.
pub fn outbox(domain: &Domain, name: &str) -> Result<Queue, OpenError> {
    match Queue::open(domain, name) {
        Err(OpenError::NotFound { .. }) => Queue::create(
            domain,
            name,
            &Attributes {
                max_message: 4096 + 512,
                ..Attributes::default()
            },
        ),
        other => other,
    }
}

/// The longest node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// `"BTR1"`: the first bytes of an envelope.
const MAGIC: &[u8; 4] = b"BTR1";

/// A queue on another node: `node/queue`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteAddress {
    /// The node, as its bridge names itself (1 to 64 bytes of a queue name's characters).
    pub node: String,
    /// The queue there.
    pub queue: String,
}

impl RemoteAddress {
    /// Parses `node/queue`; `None` for a name without a `/` (a local queue).
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`] for a node or queue name that breaks the rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use baton::RemoteAddress;
    /// let a = RemoteAddress::parse("node2/orders")?.unwrap();
    /// assert_eq!((a.node.as_str(), a.queue.as_str()), ("node2", "orders"));
    /// assert!(RemoteAddress::parse("orders")?.is_none());
    /// assert!(RemoteAddress::parse("a/b/c").is_err());
    /// # Ok::<(), baton::OpenError>(())
    /// ```
    pub fn parse(name: &str) -> Result<Option<RemoteAddress>, OpenError> {
        let Some((node, queue)) = name.split_once('/') else {
            return Ok(None);
        };
        check_node_name(node)?;
        check_queue_name(queue)?;
        Ok(Some(RemoteAddress {
            node: node.to_string(),
            queue: queue.to_string(),
        }))
    }

    /// The envelope of `payload` for this address: what goes into the bridge outbox.
    pub fn envelope(&self, payload: &[u8]) -> Vec<u8> {
        let mut e = Vec::with_capacity(6 + self.node.len() + self.queue.len() + payload.len());
        e.extend_from_slice(MAGIC);
        e.push(self.node.len() as u8);
        e.extend_from_slice(self.node.as_bytes());
        e.push(self.queue.len() as u8);
        e.extend_from_slice(self.queue.as_bytes());
        e.extend_from_slice(payload);
        e
    }

    /// The bytes an envelope adds to a payload for this address.
    pub fn overhead(&self) -> usize {
        6 + self.node.len() + self.queue.len()
    }

    /// The address and payload of an envelope; `None` if it is not one (or names are bad).
    pub fn open_envelope(bytes: &[u8]) -> Option<(RemoteAddress, &[u8])> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (node, rest) = field(rest)?;
        let (queue, rest) = field(rest)?;
        check_node_name(node).ok()?;
        check_queue_name(queue).ok()?;
        Some((
            RemoteAddress {
                node: node.to_string(),
                queue: queue.to_string(),
            },
            rest,
        ))
    }
}

impl std::fmt::Display for RemoteAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.queue)
    }
}

fn field(b: &[u8]) -> Option<(&str, &[u8])> {
    let n = *b.first()? as usize;
    let s = std::str::from_utf8(b.get(1..1 + n)?).ok()?;
    Some((s, &b[1 + n..]))
}

/// Checks a node name: a queue name's rules, at most [`MAX_NODE_NAME`] bytes.
///
/// # Errors
///
/// [`OpenError::InvalidName`] naming the broken rule.
pub fn check_node_name(node: &str) -> Result<(), OpenError> {
    check_queue_name(node).map_err(|e| match e {
        OpenError::InvalidName { name, reason, .. } => OpenError::InvalidName {
            what: "node name",
            name,
            reason,
        },
        e => e,
    })?;
    if node.len() > MAX_NODE_NAME {
        return Err(OpenError::InvalidName {
            what: "node name",
            name: node.to_string(),
            reason: "it is longer than 64 bytes",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_to_what_went_in_and_nothing_else_does() {
        let a = RemoteAddress::parse("n1/q").unwrap().unwrap();
        let e = a.envelope(b"payload");
        assert_eq!(e.len(), a.overhead() + 7);
        assert_eq!(RemoteAddress::open_envelope(&e), Some((a, &b"payload"[..])));
        assert_eq!(RemoteAddress::open_envelope(b"plain message"), None);
        assert_eq!(RemoteAddress::open_envelope(b"BTR1\xff"), None);
        assert_eq!(RemoteAddress::open_envelope(b"BTR1\x01/\x01q"), None);
        assert!(RemoteAddress::parse(&format!("{}/q", "n".repeat(65))).is_err());
        assert!(RemoteAddress::parse("/q").is_err());
        assert!(RemoteAddress::parse("n/").is_err());
    }
}
