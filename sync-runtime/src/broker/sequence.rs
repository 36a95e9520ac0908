//! The numbering a node puts on what it publishes, and the receiver's gap rules (see the module docs of
//! `broker`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::*;

/// What goes on the wire: a trigger or a heartbeat, numbered (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The publishing node (random per process).
    pub node: u64,
    /// A trigger's number; in a heartbeat, the node's last number.
    pub seq: u64,
    /// Every number from `from` to `seq` went onto the wire; `from - 1`, if any, was given up. Missing
    /// from nodes of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// `None`: a heartbeat (which may carry a note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<WireTrigger>,
    /// A note (presence, a session); only in an envelope without a trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<WireNote>,
    /// The publishing node's last roster change that went out or was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv: Option<u64>,
}

impl Envelope {
    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("an envelope is plain JSON"))
    }
}
/// A node's numbering of what it publishes (see the module docs): one per publisher task.
#[derive(Debug)]
pub(crate) struct Numbering {
    node: u64,
    /// The last number consumed, published or given up.
    last: u64,
    /// The first number of the current unbroken run on the wire.
    from: u64,
}

impl Numbering {
    pub fn new(node: u64) -> Self {
        Numbering {
            node,
            last: 0,
            from: 1,
        }
    }

    /// `n` triggers were given up: they consume numbers, so receivers see a gap.
    pub fn give_up(&mut self, n: u64) {
        if n > 0 {
            self.last += n;
            self.from = self.last + 1;
        }
    }

    /// The envelope for the next trigger.
    pub fn trigger(&mut self, trigger: WireTrigger) -> Envelope {
        self.last += 1;
        Envelope {
            node: self.node,
            seq: self.last,
            from: Some(self.from),
            trigger: Some(trigger),
            note: None,
            pv: None,
        }
    }

    /// A heartbeat: the last number, and the current run.
    pub fn heartbeat(&self) -> Envelope {
        Envelope {
            node: self.node,
            seq: self.last,
            from: Some(self.from),
            trigger: None,
            note: None,
            pv: None,
        }
    }

    /// A publish carrying triggers failed: they may not have reached the wire, so they count as given
    /// up and the next run starts after them.
    pub fn unsent(&mut self) {
        self.from = self.last + 1;
    }
}

/// A gap: triggers from `node` that this node's connections may have missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub node: u64,
    /// How many, when known (a node heard before); `None` for a node heard for the first time.
    pub missed: Option<u64>,
}

/// What one envelope means for this node.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Connections here must resync (reported before the trigger it came with).
    pub gap: Option<Gap>,
    /// A trigger to deliver.
    pub trigger: Option<WireTrigger>,
}

/// The subscriber's side of the numbering: the last number heard from each node, and the gap rules of
/// the module docs.
#[derive(Debug)]
pub(crate) struct Receiver {
    own: u64,
    nodes: HashMap<u64, Heard>,
    /// The subscription failed or dropped at least once: rule 3 instead of rule 2.
    interrupted: bool,
    /// Silence after which a node is forgotten.
    forget_after: Duration,
    last_sweep: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    seq: u64,
    at: Instant,
}

impl Receiver {
    pub fn new(own: u64, forget_after: Duration, now: Instant) -> Self {
        Receiver {
            own,
            nodes: HashMap::new(),
            interrupted: false,
            forget_after,
            last_sweep: now,
        }
    }

    /// The subscription is up (again): a node's silence counts from now, not from before the outage.
    pub fn subscribed(&mut self, now: Instant) {
        for heard in self.nodes.values_mut() {
            heard.at = now;
        }
    }

    /// The subscription failed or dropped: from now on a node heard for the first time may have
    /// published while this node was not listening.
    pub fn interrupted(&mut self) {
        self.interrupted = true;
    }

    /// Whether `node` has been heard (and not forgotten).
    #[cfg(test)]
    pub fn knows(&self, node: u64) -> bool {
        self.nodes.contains_key(&node)
    }

    pub fn receive(&mut self, envelope: Envelope, now: Instant) -> Received {
        self.sweep(now);
        if envelope.node == self.own {
            return Received::default();
        }
        let numbered = envelope.trigger.is_some();
        let before = envelope.seq.saturating_sub(u64::from(numbered));
        let gap = match self.nodes.get_mut(&envelope.node) {
            Some(heard) => {
                heard.at = now;
                if envelope.seq <= heard.seq && (numbered || envelope.seq < heard.seq) {
                    // Already heard (or older than what was): nothing new.
                    return Received::default();
                }
                let missed = before.saturating_sub(heard.seq);
                heard.seq = envelope.seq;
                (missed > 0).then_some(Gap {
                    node: envelope.node,
                    missed: Some(missed),
                })
            }
            None => {
                let from = envelope.from.unwrap_or(envelope.seq + 1);
                let lost = before > 0 && (self.interrupted || from > before);
                self.nodes.insert(
                    envelope.node,
                    Heard {
                        seq: envelope.seq,
                        at: now,
                    },
                );
                lost.then_some(Gap {
                    node: envelope.node,
                    missed: None,
                })
            }
        };
        Received {
            gap,
            trigger: envelope.trigger,
        }
    }

    /// Forget nodes silent for `forget_after` (they stopped, or were restarted under a new id), now and
    /// then, so that the map does not grow with every restart.
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < self.forget_after / 8 {
            return;
        }
        self.last_sweep = now;
        let forget_after = self.forget_after;
        self.nodes
            .retain(|_, heard| now.saturating_duration_since(heard.at) < forget_after);
    }
}

/// A random node id from the OS random source: unique across processes and restarts.
pub(crate) fn node_id() -> u64 {
    getrandom::u64().expect("the OS random source is available")
}
