//! The engine between nodes (SPEC 8.2): several server processes act as one hub.
//!
//! A trigger accepted on a node fans out to that node's own connections at once and is handed to the
//! [`Broker`], which publishes it once; every other node's broker delivers it to its hub (the [`Inbox`]),
//! which fans it out to *its* connections, running filters only for them. Only triggers cross (route
//! path, sync name, data, sender), never reactions, so the traffic is one message per trigger whatever
//! the number of recipients.
//!
//! Two transports carry the same envelopes through the same engine: Redis pub/sub
//! ([`Backplane::redis`], one channel `<prefix>:sync:v1`) and an in-process bus ([`MemoryBus`]) for
//! tests. A transport only connects, publishes, subscribes and reads; the numbering, heartbeats, gap
//! detection, reconnects and outage logging below are shared, so that a Redis Cluster transport (sharded
//! pub/sub) can be added beside them without touching any of it.
//!
//! # Delivery: at most once, and never silently less
//!
//! Each node (a random 64-bit id per process, from the OS random source) numbers the triggers it hands
//! to its broker, 1, 2, 3… A trigger it *gives up* still consumes its number: the publish queue was full,
//! the transport was down, it arrived while the publisher waited to reconnect, or a publish failed (it
//! may not have reached the wire). Published late, after an outage, it would reach the others out of
//! context; a skipped number makes them resync instead. Every `heartbeat` (default 1 s) each node also
//! publishes its last number, so a loss at the end of a burst shows too.
//!
//! An envelope is `{"node", "seq", "from", "trigger"}`: `seq` is the trigger's number (or, in a
//! heartbeat, which has no `trigger`, the node's last number), and `from` says that every number from
//! `from` up to `seq` went onto the wire, one after the other, while `from - 1` (if any) was given up.
//! A node that never gave anything up sends `from: 1`; a heartbeat right after a loss has
//! `from = seq + 1`.
//!
//! A receiving node keeps the last number it heard from each node. Let `before` be the node's numbers
//! before this envelope's own (`seq - 1` for a trigger, `seq` for a heartbeat). It sees a **gap** (logs
//! it, counts it and makes its hub send `resync` to its connections) when:
//!
//! 1. **A node it knows** skips: `before` is past the last number heard from it.
//! 2. **A node it hears for the first time**, while its own subscription has been up without a break
//!    since its first attempt, had given up the number just before this envelope: `before > 0` and
//!    `from > before`. Numbers that went onto the wire before this node heard of their sender were
//!    published before it subscribed, so before it had connections that cared; but a number given up
//!    may have been given up at any time, and nothing on the wire since says otherwise. This is the rule
//!    that catches a node started during an outage, whose first numbers were all given up.
//! 3. **A node it hears for the first time** after its own subscription failed or dropped at least once
//!    (including a failed first attempt): `before > 0`. That node may have published while this one
//!    was not listening.
//!
//! An envelope without `from` (a node running an older version) counts as `from = seq + 1`, i.e. rule 2
//! becomes rule 3. The rules can resync connections that had nothing to miss (a node that gave up a
//! trigger before this one started and has been idle since), never the opposite. What they cannot see
//! is the startup race: triggers published between a node's hub being built and its first subscription
//! being confirmed, a round trip when the transport is up. A node not heard from for 600 heartbeats while
//! this node's subscription was up is forgotten, which at worst turns a later message from it into a
//! spurious gap.
//!
//! The subscription hears every node's heartbeats, its own included: one that hears nothing for five
//! heartbeats is taken for dead and re-established. Both connections reconnect by themselves with
//! backoff (100 ms doubling to 2 s), and each outage is logged once when it starts and once when it ends.

mod engine;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod sequence;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::handler::AnyArc;

pub use memory::MemoryBus;

pub(crate) use engine::*;
pub(crate) use sequence::*;

/// Where a hub shares its triggers with the other nodes, and the settings of that sharing.
///
/// Built with `Backplane::redis` (feature `redis`) for separate processes, or [`Backplane::memory`] for
/// several hubs in one process; handed to
/// [`SyncHubBuilder::backplane`](crate::SyncHubBuilder::backplane).
///
/// ```
/// use std::time::Duration;
/// use sync_runtime::{Backplane, MemoryBus, SyncHub};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = MemoryBus::new();
/// let node = |bus: &MemoryBus| {
///     SyncHub::builder()
///         .guests()
///         .backplane(Backplane::memory(bus).key_prefix("staging").heartbeat(Duration::from_millis(200)))
///         .build()
///         .expect("handlers match")
/// };
/// let (a, b) = (node(&bus), node(&bus));
/// # drop((a, b));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Backplane {
    kind: Kind,
    prefix: String,
    queue: usize,
    heartbeat: Duration,
}

#[derive(Debug, Clone)]
enum Kind {
    Memory(MemoryBus),
    #[cfg(feature = "redis")]
    Redis(redis::RedisConfig),
}

impl Backplane {
    fn new(kind: Kind) -> Self {
        Backplane {
            kind,
            prefix: "sync".to_owned(),
            queue: 16_384,
            heartbeat: Duration::from_secs(1),
        }
    }

    /// A Redis at `url` (feature `redis`): `redis://[user][:password@]host[:port][/db]`, or `rediss://…`
    /// for TLS (checked against the system's roots, or [`tls_root_certificates`](Self::tls_root_certificates)).
    /// A user and password are sent with `AUTH` (Redis 6 ACL users, or `:password@` alone for
    /// `requirepass`). The database index does not separate deployments (Redis channels are global);
    /// give each deployment sharing one Redis its own [`key_prefix`](Self::key_prefix) (default `sync`).
    /// A URL that does not parse is reported by [`SyncHubBuilder::build`](crate::SyncHubBuilder::build).
    ///
    /// ```no_run
    /// use sync_runtime::{Backplane, SyncHub};
    ///
    /// # async fn f() {
    /// let hub = SyncHub::builder()
    ///     .guests()
    ///     .backplane(Backplane::redis("redis://app:s3cret@10.0.0.5:6379").key_prefix("staging"))
    ///     .build()
    ///     .expect("handlers match");
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(url: impl AsRef<str>) -> Self {
        Self::new(Kind::Redis(redis::RedisConfig::new(url.as_ref())))
    }

    /// Several hubs in this process, one node each, connected by `bus` (always available): for tests of
    /// multi-node behaviour without a Redis. Delivery, numbering, heartbeats and gap detection are the
    /// same as with Redis; [`MemoryBus::set_down`] simulates an outage.
    ///
    /// ```
    /// use sync_runtime::{Backplane, MemoryBus};
    ///
    /// let bus = MemoryBus::new();
    /// let (a, b) = (Backplane::memory(&bus), Backplane::memory(&bus));
    /// # drop((a, b));
    /// ```
    pub fn memory(bus: &MemoryBus) -> Self {
        Self::new(Kind::Memory(bus.clone()))
    }

    /// The prefix of the channel this deployment uses (default `sync`): two deployments sharing a Redis
    /// (or a bus) with different prefixes never see each other's triggers.
    ///
    /// ```
    /// # use sync_runtime::{Backplane, MemoryBus};
    /// let backplane = Backplane::memory(&MemoryBus::new()).key_prefix("prod");
    /// # drop(backplane);
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Triggers waiting to be published (default 16,384). Past it, triggers still reach this node's
    /// connections, and the other nodes see a gap and resync. On a [`MemoryBus`] it also bounds what
    /// waits for this node's subscriber; a subscriber that far behind is dropped and resubscribes (its
    /// connections resync), as Redis drops a subscriber past its output buffer limit.
    ///
    /// ```
    /// # use sync_runtime::{Backplane, MemoryBus};
    /// let backplane = Backplane::memory(&MemoryBus::new()).queue(1024);
    /// # drop(backplane);
    /// ```
    pub fn queue(mut self, triggers: usize) -> Self {
        self.queue = triggers.max(1);
        self
    }

    /// How often each node announces its last number (default 1 s, at least 10 ms): the longest a loss
    /// at the end of a burst stays unnoticed, and how fast a dead subscription is detected (5 heartbeats).
    ///
    /// ```
    /// # use sync_runtime::{Backplane, MemoryBus};
    /// # use std::time::Duration;
    /// let backplane = Backplane::memory(&MemoryBus::new()).heartbeat(Duration::from_millis(250));
    /// # drop(backplane);
    /// ```
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// PEM certificates to trust for a `rediss://` URL instead of the system's roots (feature `redis`):
    /// a private CA, or a self-signed server certificate. The server's certificate must name the host of
    /// the URL. Ignored by a memory backplane.
    ///
    /// ```no_run
    /// use sync_runtime::Backplane;
    ///
    /// let ca = std::fs::read("/etc/redis/ca.pem").expect("the CA certificate");
    /// let backplane = Backplane::redis("rediss://cache.internal:6380").tls_root_certificates(ca);
    /// # drop(backplane);
    /// ```
    #[cfg(feature = "redis")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        if let Kind::Redis(config) = &mut self.kind {
            config.roots = Some(pem.into());
        }
        self
    }

    /// The one channel all nodes of a deployment share.
    fn channel(&self) -> String {
        format!("{}:sync:v1", self.prefix)
    }

    /// What makes this configuration unusable (an invalid URL), for the hub's `build` to report.
    pub(crate) fn problem(&self) -> Option<String> {
        match &self.kind {
            Kind::Memory(_) => None,
            #[cfg(feature = "redis")]
            Kind::Redis(config) => config.client().err(),
        }
    }

    /// Start this node's broker: its publisher runs from now on; [`Broker::start`] adds the subscriber
    /// once the hub exists. Must be called inside a Tokio runtime.
    pub(crate) fn start(&self) -> Arc<dyn Broker> {
        let settings = Settings {
            queue: self.queue,
            heartbeat: self.heartbeat,
        };
        match &self.kind {
            Kind::Memory(bus) => Engine::start(
                memory::MemoryTransport::new(bus.clone(), self.channel(), self.queue),
                settings,
            ),
            #[cfg(feature = "redis")]
            Kind::Redis(config) => {
                Engine::start(redis::RedisTransport::new(config, self.channel()), settings)
            }
        }
    }
}

/// What the session type needs to cross nodes, captured where its type is known.
#[derive(Clone, Copy)]
pub(crate) struct SessionCodec {
    pub session: std::any::TypeId,
    pub encode: fn(&AnyArc) -> Option<Box<RawValue>>,
    pub decode: fn(&str) -> Option<AnyArc>,
}

impl SessionCodec {
    pub fn of<S>() -> Self
    where
        S: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        SessionCodec {
            session: std::any::TypeId::of::<S>(),
            encode: |session| {
                let session = session.downcast_ref::<S>()?;
                serde_json::value::to_raw_value(session).ok()
            },
            decode: |json| {
                serde_json::from_str::<S>(json)
                    .ok()
                    .map(|s| Arc::new(s) as AnyArc)
            },
        }
    }
}

/// One trigger as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireTrigger {
    pub path: String,
    pub name: String,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<WireSender>,
}

/// Who sent a trigger, for the filters on other nodes. The token stays on the sender's node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireSender {
    pub user: String,
    pub session: Box<RawValue>,
    #[serde(default)]
    pub path: Option<String>,
    pub conn: u64,
    /// The sender's presence view, for reactions that name their author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<Box<RawValue>>,
}
/// What nodes tell each other besides triggers: presence and sessions. Not numbered with the triggers
/// (a lost note never makes connections resync): presence changes carry this node's own numbering of
/// its roster changes instead, which every envelope's `pv` repeats, so that a node that missed one asks
/// for a snapshot.
///
/// Externally tagged (`{"presence": {..}}`): an internally tagged enum buffers its content, which a
/// `RawValue` cannot pass through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireNote {
    /// Change `v` of the sender's part of the roster: `user` is on `path` with `view`, or (no view) has
    /// left it.
    Presence {
        v: u64,
        path: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        view: Option<Box<RawValue>>,
    },
    /// The sender's whole part of the roster as of change `v`, replacing what it said before.
    Snapshot {
        v: u64,
        entries: Vec<(String, String, Box<RawValue>)>,
    },
    /// `node` is asked for a snapshot.
    Want { node: u64 },
    /// Every connection of `user` has a new session.
    Session {
        user: String,
        session: Box<RawValue>,
    },
}

impl WireNote {
    /// The roster change this note carries the sender's part up to, if any.
    pub fn version(&self) -> Option<u64> {
        match self {
            WireNote::Presence { v, .. } | WireNote::Snapshot { v, .. } => Some(*v),
            WireNote::Want { .. } | WireNote::Session { .. } => None,
        }
    }
}

/// The backplane's state, for [`SyncHub::backplane_status`](crate::SyncHub::backplane_status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackplaneStatus {
    /// The publishing connection is up.
    pub publishing: bool,
    /// The subscription is up and confirmed.
    pub subscribed: bool,
    /// Triggers published.
    pub published: u64,
    /// Triggers from other nodes fanned out here.
    pub received: u64,
    /// Triggers that could not be published (transport down, queue full, publish failed or refused).
    pub dropped: u64,
    /// Gaps seen in another node's numbering (each sends `resync` to this node's connections).
    pub gaps: u64,
}

/// Where a broker delivers: this node's hub. Implemented by the hub; the broker only knows this trait.
pub(crate) trait Inbox: Send + Sync + 'static {
    /// A trigger another node accepted. Returns at once: the hub queues it or counts it lost; it never
    /// waits, so one slow route can never stall the delivery of other routes' triggers.
    fn trigger(&self, trigger: WireTrigger);

    /// Triggers from other nodes were lost (a gap in a node's numbering): this node's connections must
    /// resync.
    fn lost(&self);

    /// A note from `node`. Returns at once.
    fn note(&self, node: u64, note: WireNote);

    /// `node` is alive, and its roster is at change `presence` (from every envelope it sends, after the
    /// note it may carry).
    fn heard(&self, node: u64, presence: u64);
}

/// The engine between nodes (SPEC 8.2): publish a trigger or a note, deliver the others'. History comes
/// later.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Hand a trigger accepted on this node to the other nodes, without waiting (a full queue counts it
    /// lost, so other nodes see a gap).
    fn publish(&self, trigger: WireTrigger);

    /// Hand a note to the other nodes, without waiting (a full queue drops it; a presence change
    /// dropped still counts in this node's `pv`, so the others ask for a snapshot).
    fn share(&self, note: WireNote);

    /// This node's id, as the others hear it.
    fn node(&self) -> u64;

    /// How often this node sends a heartbeat.
    fn heartbeat(&self) -> Duration;

    /// Start delivering other nodes' triggers to `inbox` (called once, after the hub exists; the
    /// broker's tasks end when the Weak is dead or the broker is dropped).
    fn start(&self, inbox: Weak<dyn Inbox>);

    /// Connections and counters.
    fn status(&self) -> BackplaneStatus;
}
#[cfg(test)]
pub(crate) mod tests;
