//! The in-process transport: several hubs in one process, connected by a [`MemoryBus`].
//!
//! It keeps each path's history and carries the same messages as Redis, through the same engine
//! (heartbeats, following, reconnects), so tests of multi-node behaviour exercise the real thing without
//! a server.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Message, Transport, TransportError, path_message};
use crate::history::{Cursor, HistoryLimits, Log, Recalled};

/// An in-process stand-in for Redis: each hub built with [`Backplane::memory(&bus)`](crate::Backplane::memory)
/// is one node, and the nodes on one bus share triggers and their history as separate processes on one
/// Redis do. Cloning it gives another handle to the same bus.
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
    generation: u64,
    subscribers: Vec<Subscriber>,
    /// Each deployment's (prefix's) history, made with the limits of its first node.
    logs: HashMap<String, Arc<Log<Bytes>>>,
}

struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<Message>,
    paths: Arc<Mutex<HashSet<Arc<str>>>>,
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
    /// subscription is dropped and its publisher cannot connect, so triggers are refused to their
    /// senders; once it is up again, the nodes reconnect by themselves with their usual backoff (up to
    /// 2 s) and catch their connections up from the history, exactly as after a Redis outage. The
    /// history itself survives, as Redis's does when it restarts with its data.
    ///
    /// ```
    /// let bus = sync_runtime::MemoryBus::new();
    /// bus.set_down(true);
    /// bus.set_down(false);
    /// ```
    pub fn set_down(&self, down: bool) {
        let mut bus = self.lock();
        if down && !bus.down {
            bus.generation += 1;
            // Dropping the senders ends the subscriptions.
            bus.subscribers.clear();
        }
        bus.down = down;
    }

    /// Forget every path's history, as a Redis that restarts empty (or is flushed) does: positions start
    /// over in new epochs, so clients holding older cursors get `resync`.
    ///
    /// ```
    /// let bus = sync_runtime::MemoryBus::new();
    /// bus.flush();
    /// ```
    pub fn flush(&self) {
        self.lock().logs.clear();
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
    prefix: String,
    /// What may wait for this node's subscriber.
    bound: usize,
    history: HistoryLimits,
}

/// A node's subscription: what it receives, and the paths it follows (shared with the bus).
pub(crate) struct MemorySubscription {
    rx: mpsc::Receiver<Message>,
    paths: Arc<Mutex<HashSet<Arc<str>>>>,
}

impl MemoryTransport {
    pub fn new(bus: MemoryBus, prefix: &str, bound: usize, history: HistoryLimits) -> Self {
        MemoryTransport {
            bus,
            prefix: prefix.to_owned(),
            bound,
            history,
        }
    }

    fn down() -> TransportError {
        TransportError::Broken("the memory bus is down".to_owned())
    }

    /// The bus, if it is up and (for a publisher) still in `generation`.
    fn up(
        &self,
        generation: Option<u64>,
    ) -> Result<std::sync::MutexGuard<'_, Bus>, TransportError> {
        let bus = self.bus.lock();
        if bus.down || generation.is_some_and(|g| g != bus.generation) {
            return Err(Self::down());
        }
        Ok(bus)
    }

    fn log(&self, bus: &mut Bus) -> Arc<Log<Bytes>> {
        bus.logs
            .entry(self.prefix.clone())
            .or_insert_with(|| Arc::new(Log::new(self.history)))
            .clone()
    }

    /// Deliver `message` to every subscriber of this deployment that `wants` it. A subscriber too far
    /// behind is dropped, as Redis drops one past its output buffer limit: it resubscribes and catches
    /// up from the history.
    fn deliver(&self, bus: &mut Bus, message: &Bytes, path: Option<&str>) {
        bus.subscribers.retain(|subscriber| {
            if subscriber.prefix != self.prefix {
                return true;
            }
            let message = match path {
                None => Message::Node(message.clone()),
                Some(path) => {
                    if !subscriber.paths.lock().expect("paths lock").contains(path) {
                        return true;
                    }
                    Message::Path(message.clone())
                }
            };
            subscriber.tx.try_send(message).is_ok()
        });
    }
}

impl Transport for MemoryTransport {
    /// The generation it connected in.
    type Publisher = u64;
    type Subscription = MemorySubscription;

    fn service(&self) -> &'static str {
        "the memory bus"
    }

    fn place(&self) -> &str {
        &self.prefix
    }

    async fn connect(&self) -> Result<u64, TransportError> {
        Ok(self.up(None)?.generation)
    }

    async fn publish(&self, publisher: &mut u64, payloads: &[Bytes]) -> Result<(), TransportError> {
        let mut bus = self.up(Some(*publisher))?;
        for payload in payloads {
            self.deliver(&mut bus, payload, None);
        }
        Ok(())
    }

    async fn append(
        &self,
        publisher: &mut u64,
        triggers: &[(Arc<str>, Bytes)],
    ) -> Result<Vec<Result<Cursor, String>>, TransportError> {
        let mut bus = self.up(Some(*publisher))?;
        let log = self.log(&mut bus);
        Ok(triggers
            .iter()
            .map(|(path, trigger)| {
                // The position and the delivery under one lock: every node sees one order.
                let at = log.append(path, trigger.clone(), trigger.len());
                self.deliver(&mut bus, &path_message(&at, trigger), Some(path));
                Ok(at)
            })
            .collect())
    }

    async fn since(
        &self,
        path: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Recalled<Bytes>, TransportError> {
        let mut bus = self.up(None)?;
        Ok(self.log(&mut bus).since(path, epoch, after, upto))
    }

    async fn top(&self, path: &str) -> Result<Cursor, TransportError> {
        let mut bus = self.up(None)?;
        Ok(self.log(&mut bus).top(&Arc::from(path)))
    }

    async fn subscribe(&self) -> Result<MemorySubscription, TransportError> {
        let mut bus = self.up(None)?;
        let (tx, rx) = mpsc::channel(self.bound);
        let paths = Arc::new(Mutex::new(HashSet::new()));
        bus.subscribers.push(Subscriber {
            prefix: self.prefix.clone(),
            tx,
            paths: paths.clone(),
        });
        Ok(MemorySubscription { rx, paths })
    }

    async fn follow(
        &self,
        subscription: &mut MemorySubscription,
        paths: &[Arc<str>],
        on: bool,
    ) -> Result<(), TransportError> {
        // Under the bus lock, as a confirmed SUBSCRIBE: nothing published after it is missed.
        let _bus = self.up(None)?;
        let mut followed = subscription.paths.lock().expect("paths lock");
        for path in paths {
            if on {
                followed.insert(path.clone());
            } else {
                followed.remove(path);
            }
        }
        Ok(())
    }

    async fn next(&self, subscription: &mut MemorySubscription) -> Option<Message> {
        subscription.rx.recv().await
    }
}
