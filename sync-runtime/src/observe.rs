//! What a hub tells those who watch it (metrics, the admin page, tracing): every trigger's id and span,
//! its outcome when its fan-out finishes, and the lags between nodes.
//!
//! A trigger gets its id where it is accepted: the accepting node's id and a number of that node's, so
//! that the same trigger has the same id on every node that runs it (the id crosses with it). Without
//! observers a trigger costs its id and a span that no subscriber may want; each observer is told on the
//! lane that ran the fan-out, so it must not block.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::Outcome;

/// One trigger, the same on every node: the node that accepted it and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TriggerId {
    pub node: u64,
    pub seq: u64,
}

impl fmt::Display for TriggerId {
    /// `<node as 16 hex digits>-<seq>`, as the spans' `trigger` field and the admin page show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.node, self.seq)
    }
}

/// A trigger as it is followed: its id, when this node took it, and its span.
pub(crate) struct Trace {
    pub id: TriggerId,
    /// When this node accepted it (its own) or received it (another node's).
    pub since: Instant,
    /// `sync.trigger`: entered while this node publishes it and while its fan-out runs here.
    pub span: tracing::Span,
    /// Accepted on another node.
    pub remote: bool,
}

impl Trace {
    /// The trace of trigger `id` on node `here` (its accepting node's, or another's: `remote`).
    pub fn new(id: TriggerId, here: u64, route: &str, name: &str, path: &str) -> Self {
        let remote = id.node != here;
        let span = tracing::info_span!(
            target: "sync_runtime::trigger",
            "sync.trigger",
            trigger = %id,
            route,
            name,
            path,
            remote,
            node = %format_args!("{here:016x}"),
        );
        Trace {
            id,
            since: Instant::now(),
            span,
            remote,
        }
    }
}

/// A trigger whose fan-out finished here.
pub(crate) struct Finished<'a> {
    pub id: TriggerId,
    pub route: &'static str,
    pub name: &'static str,
    pub path: &'a str,
    /// This node's part of the outcome.
    pub outcome: Outcome,
    /// From when this node took it to its last recipient's reaction queued.
    pub took: Duration,
    pub remote: bool,
}

/// One who watches a hub. Every method has a default that ignores what it is told.
pub(crate) trait Observer: Send + Sync + 'static {
    /// A trigger's fan-out finished here.
    fn finished(&self, _finished: &Finished<'_>) {}

    /// The backplane took one of this node's triggers this long after it was published.
    fn published(&self, _lag: Duration) {}

    /// A trigger another node accepted arrived here this long after (by the two nodes' clocks).
    fn received(&self, _lag: Duration) {}
}

/// A hub's observers, set once when it is built.
#[derive(Default)]
pub(crate) struct Observers {
    list: OnceLock<Box<[Arc<dyn Observer>]>>,
}

impl Observers {
    pub fn set(&self, list: Vec<Arc<dyn Observer>>) {
        let _ = self.list.set(list.into_boxed_slice());
    }

    /// How many observers were set (none when the hub was built without any).
    #[cfg(all(test, feature = "metrics"))]
    pub fn count(&self) -> usize {
        self.list.get().map_or(0, |list| list.len())
    }

    fn each(&self, f: impl Fn(&dyn Observer)) {
        for observer in self.list.get().into_iter().flatten() {
            f(&**observer);
        }
    }

    pub fn finished(&self, finished: &Finished<'_>) {
        tracing::debug!(
            target: "sync_runtime::trigger",
            matched = finished.outcome.matched,
            passed = finished.outcome.passed,
            delivered = finished.outcome.delivered,
            failed = finished.outcome.failed,
            took_us = finished.took.as_micros() as u64,
            "fan-out finished",
        );
        self.each(|o| o.finished(finished));
    }

    pub fn published(&self, lag: Duration) {
        self.each(|o| o.published(lag));
    }

    pub fn received(&self, lag: Duration) {
        self.each(|o| o.received(lag));
    }
}

/// Now as milliseconds since the Unix epoch, the clock a trigger's accept time crosses nodes in.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_id_reads_as_its_node_in_hex_and_its_number() {
        let id = TriggerId {
            node: 0xab,
            seq: 42,
        };
        assert_eq!(id.to_string(), "00000000000000ab-42");
    }
}
