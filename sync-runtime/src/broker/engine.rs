//! The engine every broker shares: publisher and subscriber tasks over a [`Transport`], with numbering,
//! heartbeats, gap detection, backoff, outage logging and status. A transport only connects, publishes,
//! subscribes and reads.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::*;

/// How a transport fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// Unreachable, or the connection broke: reconnect.
    #[error("{0}")]
    Broken(String),
    /// It answered but refused (a permission): the connection still works, the publish did not.
    // Only Redis refuses; the memory bus is either up or down.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    #[error("refused: {0}")]
    Refused(String),
}

/// How the engine reaches the other nodes: connect, publish, subscribe, read. Everything else (numbering,
/// heartbeats, gaps, reconnects) is the engine's, the same for every transport.
pub(crate) trait Transport: Send + Sync + 'static {
    /// A connection that publishes.
    type Publisher: Send + 'static;
    /// A confirmed subscription to the deployment's channel.
    type Subscription: Send + 'static;

    /// What the logs call the service ("Redis").
    fn service(&self) -> &'static str;

    /// Where it is, for the logs (no secrets).
    fn place(&self) -> &str;

    /// Open a publishing connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Publisher, TransportError>> + Send;

    /// Publish `payloads`, in order, on the channel.
    fn publish(
        &self,
        publisher: &mut Self::Publisher,
        payloads: &[Bytes],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Subscribe to the channel; `Ok` once the subscription is confirmed.
    fn subscribe(&self) -> impl Future<Output = Result<Self::Subscription, TransportError>> + Send;

    /// The next message; `None` when the subscription ended.
    fn next(
        &self,
        subscription: &mut Self::Subscription,
    ) -> impl Future<Output = Option<Bytes>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) queue: usize,
    pub(crate) heartbeat: Duration,
}

/// Heartbeats of silence after which the subscription is taken for dead.
const SILENT_HEARTBEATS: u32 = 5;
/// Heartbeats of silence after which a node is forgotten.
const FORGET_HEARTBEATS: u32 = 600;
/// Triggers numbered and published in one go.
const BATCH: usize = 256;

/// Shared by the engine, its publisher and its subscriber.
struct Shared {
    node: u64,
    /// Triggers refused by the full queue since the publisher last numbered: it skips as many numbers.
    skipped: AtomicU64,
    publishing: AtomicBool,
    subscribed: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    gaps: AtomicU64,
    /// The last roster change that went out or was given up, repeated in every envelope.
    pv: AtomicU64,
}

/// What waits in the publisher's queue.
pub(crate) enum Outgoing {
    Trigger(WireTrigger),
    Note(WireNote),
}

impl Shared {
    /// A queued item that will never go out: a trigger consumes its number, a presence change still
    /// counts in `pv`.
    fn given_up(&self, item: Outgoing) {
        match item {
            Outgoing::Trigger(_) => {
                self.skipped.fetch_add(1, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Outgoing::Note(note) => {
                if let Some(v) = note.version() {
                    self.pv.fetch_max(v, Ordering::AcqRel);
                }
            }
        }
    }

    fn take_skipped(&self) -> u64 {
        self.skipped.swap(0, Ordering::AcqRel)
    }
}

/// A broker on some transport: the publisher task, and the subscriber task once started.
pub(crate) struct Engine<T: Transport> {
    /// The publisher's queue. The tasks hold no sender, so dropping the engine ends the publisher.
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    transport: Arc<T>,
    settings: Settings,
    /// Handed to the subscriber by `start`; its sender, kept here, is dropped with the engine and so
    /// stops the subscriber.
    stop: Mutex<Option<oneshot::Receiver<()>>>,
    _stop: oneshot::Sender<()>,
}

impl<T: Transport> Engine<T> {
    pub(crate) fn start(transport: T, settings: Settings) -> Arc<dyn Broker> {
        let (tx, rx) = mpsc::channel(settings.queue);
        let shared = Arc::new(Shared {
            node: node_id(),
            skipped: AtomicU64::new(0),
            publishing: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            pv: AtomicU64::new(0),
        });
        let transport = Arc::new(transport);
        tokio::spawn(publish_loop(
            transport.clone(),
            shared.clone(),
            rx,
            settings.heartbeat,
        ));
        let (stop_tx, stop_rx) = oneshot::channel();
        Arc::new(Engine {
            tx,
            shared,
            transport,
            settings,
            stop: Mutex::new(Some(stop_rx)),
            _stop: stop_tx,
        })
    }
}

impl<T: Transport> Broker for Engine<T> {
    fn publish(&self, trigger: WireTrigger) {
        if self.tx.try_send(Outgoing::Trigger(trigger)).is_err() {
            self.shared.skipped.fetch_add(1, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn share(&self, note: WireNote) {
        if let Err(e) = self.tx.try_send(Outgoing::Note(note)) {
            let (mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item)) =
                e;
            self.shared.given_up(item);
        }
    }

    fn node(&self) -> u64 {
        self.shared.node
    }

    fn heartbeat(&self) -> Duration {
        self.settings.heartbeat
    }

    fn start(&self, inbox: Weak<dyn Inbox>) {
        let stop = self
            .stop
            .lock()
            .expect("the stop lock is never poisoned")
            .take();
        let Some(stop) = stop else {
            tracing::error!(target: "sync_runtime::backplane", "the broker was started twice; the second start is ignored");
            return;
        };
        tokio::spawn(subscribe_loop(
            self.transport.clone(),
            self.shared.clone(),
            inbox,
            self.settings.heartbeat,
            stop,
        ));
    }

    fn status(&self) -> BackplaneStatus {
        let s = &self.shared;
        BackplaneStatus {
            publishing: s.publishing.load(Ordering::Acquire),
            subscribed: s.subscribed.load(Ordering::Acquire),
            published: s.published.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
        }
    }
}

/// Reconnect delays: 100 ms doubling to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// Logs an outage once when it starts and once when it ends.
struct Health {
    role: &'static str,
    service: &'static str,
    /// Connected at least once: a failure is then an outage, not a failed start.
    ever_up: bool,
    down: bool,
}

impl Health {
    fn new(role: &'static str, service: &'static str) -> Self {
        Health {
            role,
            service,
            ever_up: false,
            down: false,
        }
    }

    fn failed(&mut self, place: &str, error: &dyn Display) {
        let (role, service) = (self.role, self.service);
        if self.down {
            tracing::debug!(target: "sync_runtime::backplane", place, error = %error, "{role} still cannot reach {service}");
        } else if self.ever_up {
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} lost {service}; local delivery goes on, reconnecting");
        } else {
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} could not connect to {service}; local delivery goes on, retrying");
        }
        self.down = true;
    }

    fn up(&mut self, place: &str) {
        let (role, service) = (self.role, self.service);
        match (self.down, self.ever_up) {
            (true, true) => {
                tracing::warn!(target: "sync_runtime::backplane", place, "{role} reconnected to {service}");
            }
            // At the level of the failures it ends.
            (true, false) => {
                tracing::warn!(target: "sync_runtime::backplane", place, "{role} connected to {service} at last");
            }
            (false, _) => {
                tracing::info!(target: "sync_runtime::backplane", place, "{role} connected to {service}");
            }
        }
        self.down = false;
        self.ever_up = true;
    }
}

async fn publish_loop<T: Transport>(
    transport: Arc<T>,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Outgoing>,
    heartbeat: Duration,
) {
    let mut numbering = Numbering::new(shared.node);
    let mut health = Health::new("publisher", transport.service());
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut publisher = match transport.connect().await {
            Ok(publisher) => publisher,
            Err(e) => {
                health.failed(transport.place(), &e);
                // Whatever waits now would arrive late and out of context: give it up, so that the other
                // nodes see the gap and resync instead.
                while let Ok(item) = rx.try_recv() {
                    shared.given_up(item);
                }
                numbering.give_up(shared.take_skipped());
                if rx.is_closed() && rx.is_empty() {
                    return;
                }
                if !wait_dropping(&mut backoff, &mut rx, &shared, &mut numbering).await {
                    return;
                }
                continue;
            }
        };
        health.up(transport.place());
        backoff = Backoff::new();
        shared.publishing.store(true, Ordering::Release);
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Refusals are logged once per streak: the connection works, each trigger would log again.
        let mut refusing = false;
        let error = loop {
            let mut out = Vec::new();
            let mut count = 0u64;
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        shared.publishing.store(false, Ordering::Release);
                        return;
                    }
                    numbering.give_up(shared.take_skipped());
                    for item in batch.drain(..) {
                        let mut envelope = match item {
                            Outgoing::Trigger(trigger) => {
                                count += 1;
                                numbering.trigger(trigger)
                            }
                            Outgoing::Note(note) => {
                                if let Some(v) = note.version() {
                                    shared.pv.fetch_max(v, Ordering::AcqRel);
                                }
                                let mut envelope = numbering.heartbeat();
                                envelope.note = Some(note);
                                envelope
                            }
                        };
                        envelope.pv = Some(shared.pv.load(Ordering::Acquire));
                        out.push(envelope.encode());
                    }
                }
                _ = beat.tick() => {
                    numbering.give_up(shared.take_skipped());
                    let mut envelope = numbering.heartbeat();
                    envelope.pv = Some(shared.pv.load(Ordering::Acquire));
                    out.push(envelope.encode());
                }
            }
            match transport.publish(&mut publisher, &out).await {
                Ok(()) => {
                    shared.published.fetch_add(count, Ordering::Relaxed);
                    if refusing {
                        tracing::warn!(target: "sync_runtime::backplane", place = transport.place(), "{} accepts publishes again", transport.service());
                        refusing = false;
                    }
                }
                Err(e) => {
                    if count > 0 {
                        numbering.unsent();
                        shared.dropped.fetch_add(count, Ordering::Relaxed);
                    }
                    match e {
                        TransportError::Refused(_) => {
                            if !refusing {
                                tracing::error!(target: "sync_runtime::backplane", place = transport.place(), error = %e, "{} refused a publish; triggers are given up until it accepts", transport.service());
                                refusing = true;
                            }
                        }
                        TransportError::Broken(_) => break e,
                    }
                }
            }
        };
        shared.publishing.store(false, Ordering::Release);
        health.failed(transport.place(), &error);
        if !wait_dropping(&mut backoff, &mut rx, &shared, &mut numbering).await {
            return;
        }
    }
}

/// Wait out a reconnect delay, giving up every trigger that arrives meanwhile (as the failed connect
/// gave up those already queued): published after the outage, it would reach the other nodes late and
/// out of context, whereas a skipped number makes them resync. False when the engine is gone.
async fn wait_dropping(
    backoff: &mut Backoff,
    rx: &mut mpsc::Receiver<Outgoing>,
    shared: &Shared,
    numbering: &mut Numbering,
) -> bool {
    let delay = backoff.wait();
    tokio::pin!(delay);
    loop {
        tokio::select! {
            () = &mut delay => {
                numbering.give_up(shared.take_skipped());
                return true;
            }
            item = rx.recv() => match item {
                Some(item) => shared.given_up(item),
                None => return false,
            },
        }
    }
}

async fn subscribe_loop<T: Transport>(
    transport: Arc<T>,
    shared: Arc<Shared>,
    inbox: Weak<dyn Inbox>,
    heartbeat: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut receiver = Receiver::new(shared.node, heartbeat * FORGET_HEARTBEATS, Instant::now());
    let mut health = Health::new("subscriber", transport.service());
    let mut backoff = Backoff::new();
    // Five missed heartbeats: the subscription is dead even if the connection does not say so.
    let silence = heartbeat * SILENT_HEARTBEATS;
    loop {
        if inbox.strong_count() == 0 {
            return;
        }
        let attempt = tokio::select! {
            attempt = transport.subscribe() => attempt,
            _ = &mut stop => return,
        };
        let mut subscription = match attempt {
            Ok(subscription) => subscription,
            Err(e) => {
                receiver.interrupted();
                health.failed(transport.place(), &e);
                tokio::select! {
                    () = backoff.wait() => continue,
                    _ = &mut stop => return,
                }
            }
        };
        health.up(transport.place());
        backoff = Backoff::new();
        receiver.subscribed(Instant::now());
        shared.subscribed.store(true, Ordering::Release);
        let error = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(silence, transport.next(&mut subscription)) => next,
                _ = &mut stop => {
                    shared.subscribed.store(false, Ordering::Release);
                    return;
                }
            };
            let payload = match next {
                Ok(Some(payload)) => payload,
                Ok(None) => break TransportError::Broken("the subscription ended".to_owned()),
                Err(_) => {
                    break TransportError::Broken(format!(
                        "nothing heard for {silence:?}, not even this node's own heartbeat"
                    ));
                }
            };
            let mut envelope = match serde_json::from_slice::<Envelope>(&payload) {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::warn!(target: "sync_runtime::backplane", error = %e, "unreadable message on the channel; ignored");
                    continue;
                }
            };
            if inbox.strong_count() == 0 {
                shared.subscribed.store(false, Ordering::Release);
                return;
            }
            let (node, note, pv) = (envelope.node, envelope.note.take(), envelope.pv);
            let received = receiver.receive(envelope, Instant::now());
            let from_other = node != shared.node;
            if received.gap.is_none() && received.trigger.is_none() && !from_other {
                continue;
            }
            let Some(inbox) = inbox.upgrade() else {
                shared.subscribed.store(false, Ordering::Release);
                return;
            };
            if from_other {
                if let Some(note) = note {
                    inbox.note(node, note);
                }
                inbox.heard(node, pv.unwrap_or(0));
            }
            if let Some(gap) = received.gap {
                shared.gaps.fetch_add(1, Ordering::Relaxed);
                match gap.missed {
                    Some(missed) => {
                        tracing::warn!(target: "sync_runtime::backplane", node = gap.node, missed, "triggers from another node were lost; connections here resync");
                    }
                    None => {
                        tracing::warn!(target: "sync_runtime::backplane", node = gap.node, "a node heard for the first time may have published triggers this node missed; connections here resync");
                    }
                }
                inbox.lost();
            }
            if let Some(trigger) = received.trigger {
                shared.received.fetch_add(1, Ordering::Relaxed);
                inbox.trigger(trigger);
            }
        };
        shared.subscribed.store(false, Ordering::Release);
        receiver.interrupted();
        health.failed(transport.place(), &error);
        tokio::select! {
            () = backoff.wait() => {}
            _ = &mut stop => return,
        }
    }
}
