//! The engine between nodes (SPEC 8, 10): several server processes act as one hub.
//!
//! A trigger accepted on a node is handed to the [`Broker`], which appends it to its path's history and
//! publishes it on its path's channel in one atomic step (a Lua script on Redis; one lock on the
//! [`MemoryBus`]): that step gives it its offset, so every node sees a path's triggers in one order, the
//! order of their offsets. Every node that has users on the path, the publishing one included, gets it
//! back from its subscription and fans it out to *its* connections, running filters only for them. Only
//! triggers cross (route path, sync name, data, sender), never reactions: one message per trigger and
//! per node that follows its path, whatever the number of recipients.
//!
//! # Per-path channels
//!
//! A node follows (subscribes to) a path's channel while it has connections there: from the first
//! connection placed until the last leaves. It reads the path's position just before subscribing and
//! hands it to the hub with the confirmation, so whatever was published in between is fetched from the
//! history; nothing is lost between the first user's arrival and the subscription. A node therefore
//! receives the triggers of its own paths, not everyone's.
//!
//! # Delivery: nothing lost silently
//!
//! A trigger is accepted only once the broker has given it an offset; one the broker cannot take (its
//! queue is full, the transport is down, the script failed) is refused to its sender (`overloaded`,
//! `unavailable`) and reaches nobody. A trigger with an offset is in the history: a node that misses it
//! (its subscription dropped, a lane was full) sees the next offset skip, or catches up when its
//! subscription is back, and replays what its connections missed from the history; past the history,
//! they get `resync`. Positions do not depend on which node published, so a node started during an
//! outage, or never heard of before, cannot hide a loss.
//!
//! Besides triggers, nodes share notes (presence, sessions) and heartbeats on one channel of the
//! deployment (`<prefix>:sync:v2`). The subscription hears every node's heartbeats, its own included:
//! one that hears nothing for five heartbeats is taken for dead and re-established. Both connections
//! reconnect by themselves with backoff (100 ms doubling to 2 s), and each outage is logged once when it
//! starts and once when it ends.

mod engine;
mod envelope;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_scripts;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::handler::AnyArc;
use crate::history::{Cursor, HistoryLimits, Recalled};

pub use memory::MemoryBus;

pub(crate) use engine::*;
pub(crate) use envelope::*;

/// Where a hub shares its triggers with the other nodes, and the settings of that sharing.
///
/// Built with `Backplane::redis` or `Backplane::redis_cluster` (feature `redis`) for separate processes, or [`Backplane::memory`] for
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
    #[cfg(feature = "redis")]
    RedisCluster(redis_cluster::RedisClusterConfig),
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

    /// A Redis Cluster (feature `redis`), reached through `nodes`: one or more of its nodes' URLs, in the
    /// form [`redis`](Self::redis) takes (`redis://` or `rediss://` for all of them, the same user and
    /// password for all, no database index: a cluster has only database 0); the client learns the rest
    /// of the cluster from them. A path's history and channel live on the master of the
    /// path's slot, so paths spread over the masters and a node receives only its own paths' triggers
    /// (sharded pub/sub); heartbeats and notes use one channel, on the master of its slot.
    ///
    /// A failover or a resharding that moves a slot ends this node's subscription: it subscribes again
    /// on a fresh view of the cluster and catches up every path it follows from its history. A master
    /// that comes back without its data starts its paths' histories over, in new epochs: their clients
    /// get `resync`. Replication is asynchronous: a failover whose new master lacks the old one's last
    /// triggers gives their offsets again, in the same epoch, to new triggers. A node that finds a path
    /// behind what it had when it subscribes again resyncs its clients there; but if new triggers
    /// already took those offsets, clients that had the old ones skip them (a manual `CLUSTER FAILOVER`
    /// loses nothing).
    /// [`tls_root_certificates`](Self::tls_root_certificates) applies to every node. URLs
    /// that do not parse, or disagree (TLS or not, passwords), are reported by
    /// [`SyncHubBuilder::build`](crate::SyncHubBuilder::build).
    ///
    /// ```no_run
    /// use sync_runtime::{Backplane, SyncHub};
    ///
    /// # async fn f() {
    /// let seeds = ["redis://app:s3cret@10.0.0.5:7000", "redis://app:s3cret@10.0.0.6:7000"];
    /// let hub = SyncHub::builder()
    ///     .guests()
    ///     .backplane(Backplane::redis_cluster(seeds).key_prefix("staging"))
    ///     .build()
    ///     .expect("handlers match");
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis_cluster(nodes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let urls = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        Self::new(Kind::RedisCluster(redis_cluster::RedisClusterConfig::new(
            urls,
        )))
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
    /// connections, and the other nodes see a gap and resync. On a [`MemoryBus`] and a Redis Cluster it
    /// also bounds what waits for this node's subscriber; a subscriber that far behind is dropped and
    /// resubscribes (its connections catch up from the history), as Redis drops a subscriber past its
    /// output buffer limit.
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
    /// the URL (on a cluster, every node's certificate must name the host the cluster announces for it).
    /// Ignored by a memory backplane.
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
        match &mut self.kind {
            Kind::Redis(config) => config.roots = Some(pem.into()),
            Kind::RedisCluster(config) => config.roots = Some(pem.into()),
            Kind::Memory(_) => {}
        }
        self
    }

    /// What makes this configuration unusable (an invalid URL), for the hub's `build` to report.
    pub(crate) fn problem(&self) -> Option<String> {
        match &self.kind {
            Kind::Memory(_) => None,
            #[cfg(feature = "redis")]
            Kind::Redis(config) => config.client().err(),
            #[cfg(feature = "redis")]
            Kind::RedisCluster(config) => config.problem(),
        }
    }

    /// Start this node's broker: its publisher runs from now on; [`Broker::start`] adds the subscriber
    /// once the hub exists. Must be called inside a Tokio runtime.
    pub(crate) fn start(&self, history: HistoryLimits) -> Arc<dyn Broker> {
        let settings = Settings {
            queue: self.queue,
            heartbeat: self.heartbeat,
        };
        match &self.kind {
            Kind::Memory(bus) => Engine::start(
                memory::MemoryTransport::new(bus.clone(), &self.prefix, self.queue, history),
                settings,
            ),
            #[cfg(feature = "redis")]
            Kind::Redis(config) => Engine::start(
                redis::RedisTransport::new(config, &self.prefix, history),
                settings,
            ),
            #[cfg(feature = "redis")]
            Kind::RedisCluster(config) => Engine::start(
                redis_cluster::RedisClusterTransport::new(
                    config,
                    &self.prefix,
                    history,
                    self.queue,
                ),
                settings,
            ),
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

/// One trigger as it travels between nodes and rests in a path's history.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireTrigger {
    pub path: String,
    pub name: String,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<WireSender>,
    /// The node that published it and its number there, so that the node finds its own trigger (and
    /// whoever waits for its outcome) when it comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Which node published a trigger, and its number for it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Origin {
    pub node: u64,
    pub id: u64,
    /// When it was accepted, in milliseconds since the Unix epoch by the origin's clock (0 from a node
    /// that predates it): each receiver's lag.
    #[serde(default)]
    pub at: u64,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackplaneStatus {
    /// The publishing connection is up.
    pub publishing: bool,
    /// The subscription is up and confirmed.
    pub subscribed: bool,
    /// Triggers published.
    pub published: u64,
    /// Triggers received on the channels of the paths this node follows (its own included).
    pub received: u64,
    /// Triggers that could not be published (transport down, queue full, publish failed or refused);
    /// each was refused to its sender and reached nobody.
    pub dropped: u64,
    /// Paths whose channel this node follows now (it has connections there).
    pub following: u64,
}

/// Where a broker delivers: this node's hub. Implemented by the hub; the broker only knows this trait.
/// Every method returns at once: the hub queues what it gets or counts it lost; it never waits, so one
/// slow route can never stall the delivery of other routes' triggers.
pub(crate) trait Inbox: Send + Sync + 'static {
    /// A trigger on a path this node follows, at its position in the path's history. A path's triggers
    /// come in the order of their offsets.
    fn trigger(&self, trigger: WireTrigger, at: Cursor);

    /// What became of this node's publish number `id`: its position, or why the broker could not take it.
    fn published(&self, id: u64, result: Result<Cursor, String>);

    /// The subscription to `path`'s channel is confirmed (again); `before` is the path's position read
    /// just before subscribing (`None`: it could not be read).
    fn followed(&self, path: Arc<str>, before: Option<Cursor>);

    /// A note from `node`.
    fn note(&self, node: u64, note: WireNote);

    /// `node` is alive, and its roster is at change `presence` (from every envelope it sends, after the
    /// note it may carry).
    fn heard(&self, node: u64, presence: u64);
}

/// The engine between nodes (SPEC 8.2): publish a trigger into its path's history, follow paths, read
/// the history, share notes.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Queue a trigger (numbered `id` by this node) for its path's history and channel, without waiting;
    /// false when the queue is full (it is not accepted). The outcome comes back through
    /// [`Inbox::published`].
    fn publish(&self, id: u64, trigger: WireTrigger) -> bool;

    /// The same, waiting for room in the queue (a client's requests: backpressure reaches it); false when
    /// the broker is gone.
    fn publish_wait(&self, id: u64, trigger: WireTrigger) -> BoxFuture<'_, bool>;

    /// Hand a note to the other nodes, without waiting (a full queue drops it; a presence change
    /// dropped still counts in this node's `pv`, so the others ask for a snapshot).
    fn share(&self, note: WireNote);

    /// Receive the triggers of `path` from now on (`true`, confirmed through [`Inbox::followed`]), or no
    /// more (`false`). Never waits; changes are applied in order, the last one for a path winning.
    fn follow(&self, path: &Arc<str>, on: bool);

    /// Whether this node's subscription to `path` is confirmed.
    fn follows(&self, path: &str) -> bool;

    /// The triggers of `path` after `after` up to `upto`, if `epoch` is still its history; `None` when
    /// the history cannot be read now.
    fn since(
        &self,
        path: Arc<str>,
        epoch: Arc<str>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'static, Option<Recalled<WireTrigger>>>;

    /// The position of `path` (starting its history if it has none); `None` when it cannot be read now.
    fn top(&self, path: Arc<str>) -> BoxFuture<'static, Option<Cursor>>;

    /// This node's id, as the others hear it.
    fn node(&self) -> u64;

    /// How often this node sends a heartbeat.
    fn heartbeat(&self) -> Duration;

    /// Start delivering to `inbox` (called once, after the hub exists; the broker's tasks end when the
    /// Weak is dead or the broker is dropped).
    fn start(&self, inbox: Weak<dyn Inbox>);

    /// Connections and counters.
    fn status(&self) -> BackplaneStatus;
}
#[cfg(test)]
pub(crate) mod tests;
