//! The in-process transport: several hubs in one process, connected by a [`MemoryBus`].
//!
//! It carries the same JSON envelopes as Redis, through the same engine (numbering, heartbeats, gap
//! detection, reconnects), so tests of multi-node behaviour exercise the real thing without a server.

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Transport, TransportError};

/// An in-process stand-in for Redis: each hub built with [`Backplane::memory(&bus)`](crate::Backplane::memory)
/// is one node, and the nodes on one bus share triggers as separate processes on one Redis do.
/// Cloning it gives another handle to the same bus.
///
/// ```
/// use sync_runtime::{Backplane, MemoryBus, SyncHub};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = MemoryBus::new();
/// let a = SyncHub::builder().guests().backplane(Backplane::memory(&bus)).build().expect("a hub");
/// let b = SyncHub::builder().guests().backplane(Backplane::memory(&bus)).build().expect("a hub");
/// // A trigger accepted by `a` reaches the users on `b` too.
/// # drop((a, b));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Mutex<Bus>>,
}

#[derive(Default)]
struct Bus {
    down: bool,
    /// Bumped by each outage: a publishing connection opened before it is broken.
    epoch: u64,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    channel: String,
    tx: mpsc::Sender<Bytes>,
}

impl MemoryBus {
    /// A bus with no nodes yet.
    ///
    /// ```
    /// let bus = sync_runtime::MemoryBus::new();
    /// # drop(bus);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulate an outage (`true`) and its end (`false`). While the bus is down, every node's
    /// subscription is dropped and its publisher cannot connect, so triggers are given up (each node
    /// still delivers to its own connections); once it is up again, the nodes reconnect by themselves
    /// with their usual backoff (up to 2 s) and the connections of nodes that missed triggers get
    /// `resync`, exactly as after a Redis outage.
    ///
    /// ```
    /// let bus = sync_runtime::MemoryBus::new();
    /// bus.set_down(true);
    /// bus.set_down(false);
    /// ```
    pub fn set_down(&self, down: bool) {
        let mut bus = self.lock();
        if down && !bus.down {
            bus.epoch += 1;
            // Dropping the senders ends the subscriptions.
            bus.subscribers.clear();
        }
        bus.down = down;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bus> {
        // The lock is held for list operations only: a panic cannot leave the list half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscriptions whose subscriber is still there.
    #[cfg(test)]
    pub(crate) fn live_subscribers(&self) -> usize {
        let mut bus = self.lock();
        bus.subscribers.retain(|s| !s.tx.is_closed());
        bus.subscribers.len()
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bus = self.lock();
        f.debug_struct("MemoryBus")
            .field("down", &bus.down)
            .field("subscriptions", &bus.subscribers.len())
            .finish()
    }
}

/// One node's view of the bus.
pub(crate) struct MemoryTransport {
    bus: MemoryBus,
    channel: String,
    /// What may wait for this node's subscriber.
    bound: usize,
}

impl MemoryTransport {
    pub fn new(bus: MemoryBus, channel: String, bound: usize) -> Self {
        MemoryTransport {
            bus,
            channel,
            bound,
        }
    }

    fn publish_now(&self, epoch: u64, payloads: &[Bytes]) -> Result<(), TransportError> {
        let mut bus = self.bus.lock();
        if bus.down || bus.epoch != epoch {
            return Err(TransportError::Broken(
                "the memory bus went down".to_owned(),
            ));
        }
        bus.subscribers.retain(|subscriber| {
            if subscriber.channel != self.channel {
                return true;
            }
            // A subscriber too far behind is dropped, as Redis drops one past its output buffer limit:
            // it resubscribes, and the numbering shows what it missed.
            payloads
                .iter()
                .all(|payload| subscriber.tx.try_send(payload.clone()).is_ok())
        });
        Ok(())
    }
}

impl Transport for MemoryTransport {
    /// The epoch it connected in.
    type Publisher = u64;
    type Subscription = mpsc::Receiver<Bytes>;

    fn service(&self) -> &'static str {
        "the memory bus"
    }

    fn place(&self) -> &str {
        &self.channel
    }

    fn connect(&self) -> impl std::future::Future<Output = Result<u64, TransportError>> + Send {
        let bus = self.bus.lock();
        std::future::ready(if bus.down {
            Err(TransportError::Broken("the memory bus is down".to_owned()))
        } else {
            Ok(bus.epoch)
        })
    }

    fn publish(
        &self,
        publisher: &mut u64,
        payloads: &[Bytes],
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send {
        std::future::ready(self.publish_now(*publisher, payloads))
    }

    fn subscribe(
        &self,
    ) -> impl std::future::Future<Output = Result<mpsc::Receiver<Bytes>, TransportError>> + Send
    {
        let mut bus = self.bus.lock();
        std::future::ready(if bus.down {
            Err(TransportError::Broken("the memory bus is down".to_owned()))
        } else {
            let (tx, rx) = mpsc::channel(self.bound);
            bus.subscribers.push(Subscriber {
                channel: self.channel.clone(),
                tx,
            });
            Ok(rx)
        })
    }

    fn next(
        &self,
        subscription: &mut mpsc::Receiver<Bytes>,
    ) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        subscription.recv()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;
    use std::time::Duration;

    use super::super::tests::{n_of, trigger};
    use super::super::{Backplane, BackplaneStatus, Broker, Inbox, WireNote, WireTrigger};
    use super::*;

    /// A hub stand-in that records what it got.
    #[derive(Default)]
    struct Recorder {
        triggers: Mutex<Vec<u64>>,
        lost: Mutex<usize>,
        notes: Mutex<Vec<(u64, WireNote)>>,
        heard: Mutex<Vec<(u64, u64)>>,
    }

    impl Inbox for Recorder {
        fn trigger(&self, trigger: WireTrigger) {
            self.triggers.lock().expect("lock").push(n_of(&trigger));
        }

        fn lost(&self) {
            *self.lost.lock().expect("lock") += 1;
        }

        fn note(&self, node: u64, note: WireNote) {
            self.notes.lock().expect("lock").push((node, note));
        }

        fn heard(&self, node: u64, presence: u64) {
            self.heard.lock().expect("lock").push((node, presence));
        }
    }

    impl Recorder {
        fn triggers(&self) -> Vec<u64> {
            self.triggers.lock().expect("lock").clone()
        }

        fn lost(&self) -> usize {
            *self.lost.lock().expect("lock")
        }
    }

    const BEAT: Duration = Duration::from_millis(50);

    /// A node on `bus`: its broker and its recording inbox.
    fn node(bus: &MemoryBus) -> (Arc<dyn Broker>, Arc<Recorder>) {
        let broker = Backplane::memory(bus).heartbeat(BEAT).start();
        let inbox = Arc::new(Recorder::default());
        broker.start(Arc::downgrade(&inbox) as Weak<dyn Inbox>);
        (broker, inbox)
    }

    /// Wait (in the test's paused time) until `done`.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    async fn connected(broker: &Arc<dyn Broker>) {
        until("connected", || {
            let s = broker.status();
            s.publishing && s.subscribed
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_reach_the_other_nodes_in_order_and_not_their_own() {
        let bus = MemoryBus::new();
        let (a, a_in) = node(&bus);
        let (b, b_in) = node(&bus);
        let (c, c_in) = node(&bus);
        for broker in [&a, &b, &c] {
            connected(broker).await;
        }
        for n in 1..=100 {
            a.publish(trigger(n));
        }
        b.publish(trigger(1000));
        until("delivery", || {
            b_in.triggers().len() == 100 && c_in.triggers().len() == 101
        })
        .await;
        assert_eq!(b_in.triggers(), (1..=100).collect::<Vec<_>>());
        let from_a: Vec<u64> = c_in.triggers().into_iter().filter(|n| *n < 1000).collect();
        assert_eq!(from_a, (1..=100).collect::<Vec<_>>());
        assert_eq!(a_in.triggers(), [1000], "a node does not hear its own");
        tokio::time::sleep(BEAT * 3).await;
        for (broker, inbox) in [(&a, &a_in), (&b, &b_in), (&c, &c_in)] {
            assert_eq!(inbox.lost(), 0);
            assert_eq!(broker.status().gaps, 0);
        }
        let s = a.status();
        assert_eq!((s.published, s.dropped), (100, 0), "{s:?}");
        assert_eq!(c.status().received, 101);
    }

    #[tokio::test(start_paused = true)]
    async fn different_prefixes_never_cross_talk() {
        let bus = MemoryBus::new();
        let one = Backplane::memory(&bus)
            .key_prefix("one")
            .heartbeat(BEAT)
            .start();
        let (two, two_in) = {
            let broker = Backplane::memory(&bus)
                .key_prefix("two")
                .heartbeat(BEAT)
                .start();
            let inbox = Arc::new(Recorder::default());
            broker.start(Arc::downgrade(&inbox) as Weak<dyn Inbox>);
            (broker, inbox)
        };
        connected(&two).await;
        until("one publishing", || one.status().publishing).await;
        one.publish(trigger(1));
        tokio::time::sleep(BEAT * 3).await;
        assert!(two_in.triggers().is_empty());
        assert_eq!(one.status().published, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_gives_triggers_up_and_the_other_nodes_resync() {
        let bus = MemoryBus::new();
        let (a, _a_in) = node(&bus);
        let (b, b_in) = node(&bus);
        connected(&a).await;
        connected(&b).await;
        a.publish(trigger(1));
        until("the first trigger", || b_in.triggers() == [1]).await;

        bus.set_down(true);
        until("both down", || {
            let (sa, sb) = (a.status(), b.status());
            !sa.subscribed && !sb.subscribed
        })
        .await;
        a.publish(trigger(2));
        until("trigger 2 given up", || a.status().dropped == 1).await;

        bus.set_down(false);
        connected(&a).await;
        connected(&b).await;
        until("b resyncs", || b_in.lost() >= 1).await;
        a.publish(trigger(3));
        until("the trigger after the outage", || b_in.triggers() == [1, 3]).await;
        assert!(b.status().gaps >= 1);
    }

    /// Defect 3 in process: node B starts while the bus is down and gives up its first triggers; node A,
    /// hearing B for the first time afterwards, must not take B's numbering for a fresh start.
    #[tokio::test(start_paused = true)]
    async fn a_node_started_during_an_outage_is_not_taken_for_a_fresh_start() {
        let bus = MemoryBus::new();
        let (a, a_in) = node(&bus);
        connected(&a).await;
        bus.set_down(true);
        let (b, _b_in) = node(&bus);
        for n in 1..=3 {
            b.publish(trigger(n));
        }
        until("B gives its triggers up", || b.status().dropped == 3).await;
        bus.set_down(false);
        connected(&a).await;
        connected(&b).await;
        for n in 4..=6 {
            b.publish(trigger(n));
        }
        until("the later triggers", || a_in.triggers() == [4, 5, 6]).await;
        assert!(a_in.lost() >= 1, "A's connections resync");
        assert!(a.status().gaps >= 1);
    }

    /// The same when the outage was B's alone (its publisher could not connect while A's subscription
    /// stayed up): rule 2. B's envelopes after giving up two numbers are published by hand.
    #[tokio::test(start_paused = true)]
    async fn a_node_whose_first_numbers_were_given_up_is_a_gap_even_to_a_node_that_never_broke() {
        let bus = MemoryBus::new();
        let (a, a_in) = node(&bus);
        connected(&a).await;
        let mut numbering = super::super::Numbering::new(99);
        numbering.give_up(2);
        let transport = MemoryTransport::new(bus.clone(), "sync:sync:v1".to_owned(), 16);
        let mut publisher = transport.connect().await.expect("up");
        let payloads = [numbering.trigger(trigger(3)).encode()];
        transport
            .publish(&mut publisher, &payloads)
            .await
            .expect("published");
        until("delivery", || a_in.triggers() == [3]).await;
        assert_eq!(a_in.lost(), 1);
        assert_eq!(a.status().gaps, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_publish_queue_counts_triggers_lost_and_the_others_see_the_gap() {
        let bus = MemoryBus::new();
        let a = Backplane::memory(&bus).heartbeat(BEAT).queue(4).start();
        let (b, b_in) = node(&bus);
        connected(&b).await;
        until("a publishing", || a.status().publishing).await;
        // Ten at once, with no chance for the publisher to run: six do not fit.
        for n in 1..=10 {
            a.publish(trigger(n));
        }
        assert_eq!(a.status().dropped, 6);
        until("delivery", || {
            b_in.triggers().len() == 4 && b_in.lost() >= 1
        })
        .await;
        assert_eq!(b_in.triggers(), [1, 2, 3, 4]);
        a.publish(trigger(11));
        until("the next", || b_in.triggers().len() == 5).await;
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_is_dropped() {
        let bus = MemoryBus::new();
        let transport = MemoryTransport::new(bus.clone(), "c".to_owned(), 2);
        let mut subscription = transport.subscribe().await.expect("up");
        let mut publisher = transport.connect().await.expect("up");
        let payloads: Vec<Bytes> = (0..3).map(|n| Bytes::from(vec![n])).collect();
        transport
            .publish(&mut publisher, &payloads)
            .await
            .expect("published");
        assert_eq!(
            transport.next(&mut subscription).await.as_deref(),
            Some(&[0][..])
        );
        assert_eq!(
            transport.next(&mut subscription).await.as_deref(),
            Some(&[1][..])
        );
        assert_eq!(transport.next(&mut subscription).await, None, "dropped");
        assert_eq!(bus.live_subscribers(), 0);
    }

    #[tokio::test]
    async fn a_publisher_connected_before_an_outage_stays_broken() {
        let bus = MemoryBus::new();
        let transport = MemoryTransport::new(bus.clone(), "c".to_owned(), 2);
        let mut publisher = transport.connect().await.expect("up");
        bus.set_down(true);
        bus.set_down(false);
        assert!(matches!(
            transport.publish(&mut publisher, &[Bytes::new()]).await,
            Err(TransportError::Broken(_))
        ));
        assert!(transport.connect().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_tasks_end_with_the_broker_or_the_inbox() {
        let bus = MemoryBus::new();
        let (a, a_in) = node(&bus);
        connected(&a).await;
        assert_eq!(bus.live_subscribers(), 1);
        drop(a);
        until("a's subscriber gone", || bus.live_subscribers() == 0).await;
        drop(a_in);

        let (b, b_in) = node(&bus);
        connected(&b).await;
        drop(b_in);
        // The subscriber notices the dead inbox with the next message, its own heartbeat at the latest.
        until("b's subscriber gone", || bus.live_subscribers() == 0).await;
        assert!(!b.status().subscribed);
    }

    #[tokio::test(start_paused = true)]
    async fn starting_twice_is_ignored() {
        let bus = MemoryBus::new();
        let (a, a_in) = node(&bus);
        a.start(Arc::downgrade(&a_in) as Weak<dyn Inbox>);
        connected(&a).await;
        assert_eq!(bus.live_subscribers(), 1);
        assert_eq!(
            a.status(),
            BackplaneStatus {
                publishing: true,
                subscribed: true,
                ..BackplaneStatus::default()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_note_crosses_and_every_envelope_after_it_repeats_its_presence_version() {
        let bus = MemoryBus::new();
        let (a, _a_inbox) = node(&bus);
        let (b, b_inbox) = node(&bus);
        connected(&a).await;
        connected(&b).await;
        a.share(WireNote::Presence {
            v: 1,
            path: "/p".into(),
            user: "alice".into(),
            view: None,
        });
        until("the note and a heartbeat after it", || {
            let notes = b_inbox.notes.lock().expect("lock");
            let heard = b_inbox.heard.lock().expect("lock");
            notes
                .iter()
                .any(|(n, note)| *n == a.node() && note.version() == Some(1))
                && heard
                    .iter()
                    .filter(|(n, pv)| *n == a.node() && *pv == 1)
                    .count()
                    >= 2
        })
        .await;
        assert!(
            b_inbox
                .heard
                .lock()
                .expect("lock")
                .iter()
                .all(|(n, _)| *n == a.node()),
            "a node never hears itself"
        );
    }
}
