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
}

/// The engine between nodes (SPEC 8.2): publish a trigger, deliver the others'. History and presence
/// come later.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Hand a trigger accepted on this node to the other nodes, without waiting (a full queue counts it
    /// lost, so other nodes see a gap).
    fn publish(&self, trigger: WireTrigger);

    /// Start delivering other nodes' triggers to `inbox` (called once, after the hub exists; the
    /// broker's tasks end when the Weak is dead or the broker is dropped).
    fn start(&self, inbox: Weak<dyn Inbox>);

    /// Connections and counters.
    fn status(&self) -> BackplaneStatus;
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::time::Instant;

    pub(crate) fn trigger(n: u64) -> WireTrigger {
        WireTrigger {
            path: "/dashboard".to_owned(),
            name: "counter".to_owned(),
            data: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("JSON"),
            sender: None,
        }
    }

    /// The number a delivered test trigger carries.
    pub(crate) fn n_of(trigger: &WireTrigger) -> u64 {
        serde_json::from_str::<serde_json::Value>(trigger.data.get()).expect("JSON")["n"]
            .as_u64()
            .expect("a number")
    }

    /// Through the wire format and back, as every envelope travels.
    fn wire(envelope: Envelope) -> Envelope {
        serde_json::from_slice(&envelope.encode()).expect("decodes")
    }

    fn receiver() -> Receiver {
        Receiver::new(1, Duration::from_secs(600), Instant::now())
    }

    fn hear(receiver: &mut Receiver, envelope: Envelope) -> (Option<Gap>, Option<u64>) {
        let received = receiver.receive(wire(envelope), Instant::now());
        (received.gap, received.trigger.as_ref().map(n_of))
    }

    #[test]
    fn numbers_are_consecutive_and_a_trigger_given_up_consumes_one() {
        let mut numbering = Numbering::new(7);
        let first = numbering.trigger(trigger(1));
        assert_eq!((first.node, first.seq, first.from), (7, 1, Some(1)));
        assert_eq!(numbering.trigger(trigger(2)).seq, 2);
        assert_eq!(numbering.heartbeat().seq, 2);
        numbering.give_up(3);
        let heartbeat = numbering.heartbeat();
        assert_eq!(
            (heartbeat.seq, heartbeat.from),
            (5, Some(6)),
            "a loss shows in the heartbeat"
        );
        let next = numbering.trigger(trigger(6));
        assert_eq!(
            (next.seq, next.from),
            (6, Some(6)),
            "a new run starts after the loss"
        );
        assert_eq!(numbering.trigger(trigger(7)).from, Some(6));
        numbering.give_up(0);
        assert_eq!(
            numbering.heartbeat().from,
            Some(6),
            "giving up nothing breaks no run"
        );
        numbering.unsent();
        let heartbeat = numbering.heartbeat();
        assert_eq!(
            (heartbeat.seq, heartbeat.from),
            (7, Some(8)),
            "an unsent publish is a loss"
        );
    }

    #[test]
    fn the_wire_format_is_stable_and_reads_older_nodes() {
        let mut numbering = Numbering::new(42);
        assert_eq!(
            &numbering.heartbeat().encode()[..],
            br#"{"node":42,"seq":0,"from":1}"#
        );
        assert_eq!(
            &numbering.trigger(trigger(5)).encode()[..],
            br#"{"node":42,"seq":1,"from":1,"trigger":{"path":"/dashboard","name":"counter","data":{"n":5}}}"#
        );
        // A node of the previous version: no `from`.
        let old: Envelope = serde_json::from_str(r#"{"node":9,"seq":3}"#).expect("reads");
        assert_eq!((old.node, old.seq, old.from), (9, 3, None));
        assert!(old.trigger.is_none());
    }

    #[test]
    fn a_known_node_that_skips_a_number_is_a_gap() {
        let mut r = receiver();
        let mut b = Numbering::new(2);
        assert_eq!(hear(&mut r, b.heartbeat()), (None, None));
        assert_eq!(hear(&mut r, b.trigger(trigger(1))), (None, Some(1)));
        assert_eq!(hear(&mut r, b.trigger(trigger(2))), (None, Some(2)));
        b.give_up(2);
        let (gap, n) = hear(&mut r, b.trigger(trigger(5)));
        assert_eq!(
            gap,
            Some(Gap {
                node: 2,
                missed: Some(2)
            })
        );
        assert_eq!(n, Some(5), "the trigger after the gap is delivered");
        // A loss at the end of a burst shows with the next heartbeat.
        b.give_up(1);
        let (gap, _) = hear(&mut r, b.heartbeat());
        assert_eq!(
            gap,
            Some(Gap {
                node: 2,
                missed: Some(1)
            })
        );
        assert_eq!(hear(&mut r, b.heartbeat()), (None, None), "reported once");
        let again = b.trigger(trigger(7));
        let copy = Envelope {
            node: again.node,
            seq: again.seq,
            from: again.from,
            trigger: Some(trigger(7)),
        };
        assert_eq!(hear(&mut r, again), (None, Some(7)));
        assert_eq!(
            hear(&mut r, copy),
            (None, None),
            "a trigger heard twice is delivered once"
        );
    }

    #[test]
    fn this_nodes_own_envelopes_are_ignored() {
        let mut r = receiver();
        let mut own = Numbering::new(1);
        own.give_up(5);
        assert_eq!(hear(&mut r, own.trigger(trigger(1))), (None, None));
        assert!(!r.knows(1));
    }

    #[test]
    fn a_node_heard_first_with_a_clean_history_joined_before_this_one_listened() {
        let mut r = receiver();
        let mut b = Numbering::new(2);
        for n in 1..=10 {
            b.trigger(trigger(n));
        }
        assert_eq!(hear(&mut r, b.heartbeat()), (None, None));
        // An old loss, followed by triggers on the wire: all before this node listened.
        let mut c = Numbering::new(3);
        c.trigger(trigger(1));
        c.give_up(4);
        c.trigger(trigger(6));
        assert_eq!(hear(&mut r, c.trigger(trigger(7))), (None, Some(7)));
        // A node that has just started: nothing before.
        let mut d = Numbering::new(4);
        assert_eq!(hear(&mut r, d.trigger(trigger(1))), (None, Some(1)));
    }

    /// Defect 3: a node started during an outage gave up its first triggers; heard for the first time,
    /// it is not taken for a fresh start.
    #[test]
    fn a_node_started_during_an_outage_is_not_taken_for_a_fresh_start() {
        // Through the outage, without ever breaking: rule 2.
        let mut r = receiver();
        let mut b = Numbering::new(2);
        b.give_up(3);
        let (gap, n) = hear(&mut r, b.trigger(trigger(4)));
        assert_eq!(
            gap,
            Some(Gap {
                node: 2,
                missed: None
            })
        );
        assert_eq!(n, Some(4));
        // Heard first through a heartbeat.
        let mut r = receiver();
        let mut b = Numbering::new(2);
        b.give_up(3);
        assert_eq!(
            hear(&mut r, b.heartbeat()).0,
            Some(Gap {
                node: 2,
                missed: None
            })
        );
        assert_eq!(hear(&mut r, b.trigger(trigger(4))), (None, Some(4)), "once");
        // This node's subscription broke in the outage too: rule 3.
        let mut r = receiver();
        r.interrupted();
        let mut b = Numbering::new(2);
        b.give_up(1);
        assert_eq!(
            hear(&mut r, b.heartbeat()).0,
            Some(Gap {
                node: 2,
                missed: None
            })
        );
    }

    #[test]
    fn after_an_interruption_a_new_node_that_published_before_is_a_gap() {
        let mut r = receiver();
        r.interrupted();
        r.subscribed(Instant::now());
        let mut b = Numbering::new(2);
        for n in 1..=3 {
            b.trigger(trigger(n));
        }
        // Published, never given up; but perhaps while this node was not listening.
        assert_eq!(
            hear(&mut r, b.trigger(trigger(4))).0,
            Some(Gap {
                node: 2,
                missed: None
            })
        );
        // A node that has just started published nothing before.
        let mut c = Numbering::new(3);
        assert_eq!(hear(&mut r, c.heartbeat()), (None, None));
        assert_eq!(hear(&mut r, c.trigger(trigger(1))), (None, Some(1)));
    }

    #[test]
    fn an_older_node_without_from_heard_first_is_a_gap_if_it_published_before() {
        let mut r = receiver();
        let legacy = |seq, t: Option<u64>| Envelope {
            node: 5,
            seq,
            from: None,
            trigger: t.map(trigger),
        };
        assert_eq!(
            hear(&mut r, legacy(3, Some(3))).0,
            Some(Gap {
                node: 5,
                missed: None
            })
        );
        assert_eq!(hear(&mut r, legacy(4, Some(4))), (None, Some(4)));
        let mut r = receiver();
        assert_eq!(hear(&mut r, legacy(0, None)), (None, None));
    }

    #[test]
    fn silent_nodes_are_forgotten_but_only_while_listening() {
        let start = Instant::now();
        let mut r = Receiver::new(1, Duration::from_secs(60), start);
        let mut b = Numbering::new(2);
        r.receive(b.trigger(trigger(1)), start);
        let c = Numbering::new(3);
        let mut at = start;
        // An outage of this node's subscription longer than the silence: nobody is forgotten for it.
        r.interrupted();
        at += Duration::from_secs(120);
        r.subscribed(at);
        r.receive(c.heartbeat(), at + Duration::from_secs(10));
        assert!(r.knows(2));
        // Node 2 stays silent while this node listens: forgotten.
        at += Duration::from_secs(61);
        r.receive(c.heartbeat(), at);
        assert!(!r.knows(2));
        assert!(r.knows(3));
    }

    #[test]
    fn node_ids_come_from_the_os_and_differ() {
        let ids: std::collections::HashSet<u64> = (0..64).map(|_| node_id()).collect();
        assert_eq!(ids.len(), 64);
    }

    /// What a node does in the model below.
    #[derive(Debug, Clone)]
    enum Step {
        /// The publisher numbers a trigger; it reaches the receiver if it listens.
        Publish,
        /// The publisher gives `n` triggers up.
        GiveUp(u64),
        /// The publisher's heartbeat; it reaches the receiver if it listens.
        Heartbeat,
        /// The receiver's subscription drops.
        Drop,
        /// The receiver's subscription comes back.
        Resubscribe,
        /// The receiver starts (it exists from here on; what came before does not concern it).
        Born { first_attempt_fails: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Publish),
            1 => (1u64..4).prop_map(Step::GiveUp),
            2 => Just(Step::Heartbeat),
            1 => Just(Step::Drop),
            1 => Just(Step::Resubscribe),
            1 => any::<bool>().prop_map(|first_attempt_fails| Step::Born { first_attempt_fails }),
        ]
    }

    proptest! {
        /// Any trigger a receiver missed while it existed is followed by a gap by the time it has heard
        /// the publisher's next heartbeat; and without losses or breaks there is no gap.
        #[test]
        fn losses_are_never_silent(steps in proptest::collection::vec(step(), 1..60)) {
            let mut publisher = Numbering::new(2);
            let mut receiver: Option<Receiver> = None;
            let mut listening = false;
            // Triggers numbered while the receiver existed and that it did not get.
            let mut missed = 0u64;
            let mut gaps = 0u64;
            let mut broken = false;
            let mut gave_up = false;
            let now = Instant::now();
            let deliver = |receiver: &mut Option<Receiver>, listening: bool, envelope: Envelope, gaps: &mut u64| -> bool {
                match receiver {
                    Some(r) if listening => {
                        let got = r.receive(wire(envelope), now);
                        *gaps += u64::from(got.gap.is_some());
                        got.trigger.is_some()
                    }
                    _ => false,
                }
            };
            for step in steps {
                match step {
                    Step::Publish => {
                        let envelope = publisher.trigger(trigger(0));
                        let exists = receiver.is_some();
                        if !deliver(&mut receiver, listening, envelope, &mut gaps) && exists {
                            missed += 1;
                        }
                    }
                    Step::GiveUp(n) => {
                        publisher.give_up(n);
                        gave_up = true;
                        if receiver.is_some() {
                            missed += n;
                        }
                    }
                    Step::Heartbeat => {
                        deliver(&mut receiver, listening, publisher.heartbeat(), &mut gaps);
                    }
                    Step::Drop => {
                        if let Some(r) = &mut receiver {
                            if listening {
                                r.interrupted();
                                broken = true;
                            }
                            listening = false;
                        }
                    }
                    Step::Resubscribe => {
                        if let Some(r) = &mut receiver {
                            r.subscribed(now);
                            listening = true;
                        }
                    }
                    Step::Born { first_attempt_fails } => {
                        if receiver.is_none() {
                            let mut r = Receiver::new(1, Duration::from_secs(600), now);
                            if first_attempt_fails {
                                r.interrupted();
                                broken = true;
                            } else {
                                r.subscribed(now);
                                listening = true;
                            }
                            receiver = Some(r);
                        }
                    }
                }
            }
            if let Some(r) = &mut receiver {
                r.subscribed(now);
                listening = true;
            }
            deliver(&mut receiver, listening, publisher.heartbeat(), &mut gaps);
            if missed > 0 {
                prop_assert!(gaps > 0, "{missed} missed without a gap");
            }
            if !broken && !gave_up {
                prop_assert_eq!(gaps, 0);
            }
        }
    }
}
