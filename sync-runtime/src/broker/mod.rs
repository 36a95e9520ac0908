//! The engine between nodes (SPEC 8.2): a trigger accepted on one node is published once; every other
//! node receives it and fans it out to its own connections. The hub only knows the [`Broker`] trait and
//! implements [`Inbox`]; a broker never sees the hub.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod redis;

pub use self::redis::{Backplane, BackplaneStatus};

/// Where a broker delivers: this node's hub.
pub(crate) trait Inbox: Send + Sync + 'static {
    /// A trigger another node accepted. Returns at once: the hub queues it or counts it lost; it never
    /// waits, so one slow route can never stall the delivery of other routes' triggers.
    fn trigger(&self, trigger: WireTrigger);
    /// Triggers from other nodes were lost: this node's connections must resync.
    fn lost(&self);
}

/// The engine between nodes: publish a trigger, deliver the others'.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Hand a trigger accepted on this node to the other nodes, without waiting.
    fn publish(&self, trigger: WireTrigger);
    /// Start delivering other nodes' triggers to `inbox` (once, after the hub exists).
    fn start(&self, inbox: std::sync::Weak<dyn Inbox>);
    /// Connections and counters.
    fn status(&self) -> BackplaneStatus;
}

/// One trigger as it travels between nodes.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireTrigger {
    pub path: String,
    pub name: String,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<WireSender>,
}

/// Who sent a trigger, for the filters on other nodes. The token stays on the sender's node.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireSender {
    pub user: String,
    pub session: Box<RawValue>,
    #[serde(default)]
    pub path: Option<String>,
    pub conn: u64,
}
