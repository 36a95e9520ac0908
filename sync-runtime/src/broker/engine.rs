//! The engine every broker shares: the publisher and subscriber tasks over a [`Transport`], with
//! heartbeats, following paths, backoff, outage logging and status. A transport only connects, appends,
//! publishes, subscribes, follows and reads.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::*;

/// How a transport fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// Unreachable, or the connection broke: reconnect.
    #[error("{0}")]
    Broken(String),
    /// It answered but refused (a permission): the connection still works, the command did not.
    // Only Redis refuses; the memory bus is either up or down.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    #[error("refused: {0}")]
    Refused(String),
}

/// A message a subscription delivers.
pub(crate) enum Message {
    /// On the deployment's channel: an [`Envelope`].
    Node(Bytes),
    /// On a path's channel: a trigger and its position ([`read_path_message`]).
    Path(Bytes),
}

/// How the engine reaches the other nodes. Everything else (heartbeats, following, reconnects) is the
/// engine's, the same for every transport.
pub(crate) trait Transport: Send + Sync + 'static {
    /// A connection that publishes.
    type Publisher: Send + 'static;
    /// A confirmed subscription to the deployment's channel, and to the paths followed on it.
    type Subscription: Send + 'static;

    /// What the logs call the service ("Redis").
    fn service(&self) -> &'static str;

    /// Where it is, for the logs (no secrets).
    fn place(&self) -> &str;

    /// Open a publishing connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Publisher, TransportError>> + Send;

    /// Publish `payloads`, in order, on the deployment's channel.
    fn publish(
        &self,
        publisher: &mut Self::Publisher,
        payloads: &[Bytes],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Append each `(path, trigger JSON)` to its path's history and publish it on the path's channel,
    /// in one atomic step each, in order: each one's position, or why it was not taken.
    fn append(
        &self,
        publisher: &mut Self::Publisher,
        triggers: &[(Arc<str>, Bytes)],
    ) -> impl Future<Output = Result<Vec<Result<Cursor, String>>, TransportError>> + Send;

    /// The triggers of `path` after `after` up to `upto` in history `epoch` (a connection of its own).
    fn since(
        &self,
        path: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> impl Future<Output = Result<Recalled<Bytes>, TransportError>> + Send;

    /// The position of `path`, starting its history if it has none (a connection of its own).
    fn top(&self, path: &str) -> impl Future<Output = Result<Cursor, TransportError>> + Send;

    /// Subscribe to the deployment's channel; `Ok` once confirmed.
    fn subscribe(&self) -> impl Future<Output = Result<Self::Subscription, TransportError>> + Send;

    /// Subscribe to (`on`) or leave the channels of `paths`; `Ok` once confirmed.
    fn follow(
        &self,
        subscription: &mut Self::Subscription,
        paths: &[Arc<str>],
        on: bool,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The next message; `None` when the subscription ended. Cancel-safe: dropped before it is ready,
    /// it loses nothing.
    fn next(
        &self,
        subscription: &mut Self::Subscription,
    ) -> impl Future<Output = Option<Message>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) queue: usize,
    pub(crate) heartbeat: Duration,
}

/// Heartbeats of silence after which the subscription is taken for dead.
const SILENT_HEARTBEATS: u32 = 5;
/// Items published in one go.
const BATCH: usize = 256;

/// Shared by the engine, its publisher and its subscriber.
struct Shared {
    node: u64,
    publishing: AtomicBool,
    subscribed: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    /// The last roster change that went out or was given up, repeated in every envelope.
    pv: AtomicU64,
    /// Where published triggers' outcomes go; set by `start`.
    inbox: OnceLock<Weak<dyn Inbox>>,
    /// Paths whose following changed since the subscriber last looked: the last word for each.
    wanted: Mutex<HashMap<Arc<str>, bool>>,
    /// Wakes the subscriber when `wanted` changed.
    changed: Notify,
    /// Paths whose subscription is confirmed.
    following: Mutex<HashSet<Arc<str>>>,
}

/// What waits in the publisher's queue.
pub(crate) enum Outgoing {
    Trigger { id: u64, trigger: WireTrigger },
    Note(WireNote),
}

impl Shared {
    fn inbox(&self) -> Option<Arc<dyn Inbox>> {
        self.inbox.get().and_then(Weak::upgrade)
    }

    /// A queued item that will never go out: a trigger is refused to its sender, a presence change still
    /// counts in `pv`.
    fn given_up(&self, item: Outgoing, why: &str) {
        match item {
            Outgoing::Trigger { id, .. } => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(inbox) = self.inbox() {
                    inbox.published(id, Err(why.to_owned()));
                }
            }
            Outgoing::Note(note) => {
                if let Some(v) = note.version() {
                    self.pv.fetch_max(v, Ordering::AcqRel);
                }
            }
        }
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
            publishing: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pv: AtomicU64::new(0),
            inbox: OnceLock::new(),
            wanted: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            following: Mutex::new(HashSet::new()),
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

/// A trigger as the publisher hands it to the transport.
fn encode(trigger: &WireTrigger) -> Bytes {
    Bytes::from(serde_json::to_vec(trigger).expect("a trigger is plain JSON"))
}

impl<T: Transport> Broker for Engine<T> {
    fn publish(&self, id: u64, trigger: WireTrigger) -> bool {
        let accepted = self.tx.try_send(Outgoing::Trigger { id, trigger }).is_ok();
        if !accepted {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }

    fn publish_wait(&self, id: u64, trigger: WireTrigger) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.tx
                .send(Outgoing::Trigger { id, trigger })
                .await
                .is_ok()
        })
    }

    fn share(&self, note: WireNote) {
        if let Err(e) = self.tx.try_send(Outgoing::Note(note)) {
            let (mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item)) =
                e;
            self.shared.given_up(item, "the publish queue is full");
        }
    }

    fn follow(&self, path: &Arc<str>, on: bool) {
        self.shared
            .wanted
            .lock()
            .expect("wanted lock is never poisoned")
            .insert(path.clone(), on);
        self.shared.changed.notify_one();
    }

    fn follows(&self, path: &str) -> bool {
        self.shared
            .following
            .lock()
            .expect("following lock is never poisoned")
            .contains(path)
    }

    fn since(
        &self,
        path: Arc<str>,
        epoch: Arc<str>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'static, Option<Recalled<WireTrigger>>> {
        let transport = self.transport.clone();
        Box::pin(async move {
            let recalled = match transport.since(&path, &epoch, after, upto).await {
                Ok(recalled) => recalled,
                Err(e) => {
                    tracing::warn!(target: "sync_runtime::backplane", path = %path, error = %e, "could not read a path's history");
                    return None;
                }
            };
            Some(match recalled {
                Recalled::Lost => Recalled::Lost,
                Recalled::Entries { first, entries } => Recalled::Entries {
                    first,
                    entries: entries
                        .into_iter()
                        .filter_map(|(offset, json)| {
                            match serde_json::from_slice::<WireTrigger>(&json) {
                                Ok(trigger) => Some((offset, trigger)),
                                Err(e) => {
                                    tracing::warn!(target: "sync_runtime::backplane", path = %path, offset, error = %e, "unreadable trigger in a path's history; skipped");
                                    None
                                }
                            }
                        })
                        .collect(),
                },
            })
        })
    }

    fn top(&self, path: Arc<str>) -> BoxFuture<'static, Option<Cursor>> {
        let transport = self.transport.clone();
        Box::pin(async move {
            match transport.top(&path).await {
                Ok(top) => Some(top),
                Err(e) => {
                    tracing::warn!(target: "sync_runtime::backplane", path = %path, error = %e, "could not read a path's position");
                    None
                }
            }
        })
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
        let _ = self.shared.inbox.set(inbox);
        tokio::spawn(subscribe_loop(
            self.transport.clone(),
            self.shared.clone(),
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
            following: s
                .following
                .lock()
                .expect("following lock is never poisoned")
                .len() as u64,
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
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} lost {service}; triggers are refused until it is back, reconnecting");
        } else {
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} could not connect to {service}; triggers are refused until it is reached, retrying");
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
    let mut health = Health::new("publisher", transport.service());
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut publisher = match transport.connect().await {
            Ok(publisher) => publisher,
            Err(e) => {
                health.failed(transport.place(), &e);
                // Whatever waits now would be taken late: refuse it, so that its sender knows.
                while let Ok(item) = rx.try_recv() {
                    shared.given_up(item, "the backplane cannot be reached");
                }
                if (rx.is_closed() && rx.is_empty())
                    || !wait_refusing(&mut backoff, &mut rx, &shared).await
                {
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
            let mut notes = Vec::new();
            let mut triggers = Vec::new();
            let mut ids = Vec::new();
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        shared.publishing.store(false, Ordering::Release);
                        return;
                    }
                    for item in batch.drain(..) {
                        match item {
                            Outgoing::Trigger { id, trigger } => {
                                triggers.push((Arc::from(trigger.path.as_str()), encode(&trigger)));
                                ids.push(id);
                            }
                            Outgoing::Note(note) => {
                                if let Some(v) = note.version() {
                                    shared.pv.fetch_max(v, Ordering::AcqRel);
                                }
                                notes.push(Envelope {
                                    node: shared.node,
                                    note: Some(note),
                                    pv: Some(shared.pv.load(Ordering::Acquire)),
                                }.encode());
                            }
                        }
                    }
                }
                _ = beat.tick() => {
                    notes.push(Envelope {
                        node: shared.node,
                        note: None,
                        pv: Some(shared.pv.load(Ordering::Acquire)),
                    }.encode());
                }
            }
            let mut broke = None;
            if !triggers.is_empty() {
                match transport.append(&mut publisher, &triggers).await {
                    Ok(results) => {
                        let inbox = shared.inbox();
                        for (id, result) in ids.iter().zip(results) {
                            match &result {
                                Ok(_) => shared.published.fetch_add(1, Ordering::Relaxed),
                                Err(_) => shared.dropped.fetch_add(1, Ordering::Relaxed),
                            };
                            if let Some(inbox) = &inbox {
                                inbox.published(*id, result);
                            }
                        }
                    }
                    Err(e) => {
                        shared
                            .dropped
                            .fetch_add(ids.len() as u64, Ordering::Relaxed);
                        if let Some(inbox) = shared.inbox() {
                            for id in &ids {
                                inbox.published(*id, Err(e.to_string()));
                            }
                        }
                        broke = Some(e);
                    }
                }
            }
            if broke.is_none() && !notes.is_empty() {
                broke = transport.publish(&mut publisher, &notes).await.err();
            }
            match broke {
                None => {
                    if refusing {
                        tracing::warn!(target: "sync_runtime::backplane", place = transport.place(), "{} accepts publishes again", transport.service());
                        refusing = false;
                    }
                }
                Some(e @ TransportError::Refused(_)) => {
                    if !refusing {
                        tracing::error!(target: "sync_runtime::backplane", place = transport.place(), error = %e, "{} refused a publish; triggers are refused until it accepts", transport.service());
                        refusing = true;
                    }
                }
                Some(e @ TransportError::Broken(_)) => break e,
            }
        };
        shared.publishing.store(false, Ordering::Release);
        health.failed(transport.place(), &error);
        if !wait_refusing(&mut backoff, &mut rx, &shared).await {
            return;
        }
    }
}

/// Wait out a reconnect delay, refusing every trigger that arrives meanwhile (as the failed connect
/// refused those already queued). False when the engine is gone.
async fn wait_refusing(
    backoff: &mut Backoff,
    rx: &mut mpsc::Receiver<Outgoing>,
    shared: &Shared,
) -> bool {
    let delay = backoff.wait();
    tokio::pin!(delay);
    loop {
        tokio::select! {
            () = &mut delay => return true,
            item = rx.recv() => match item {
                Some(item) => shared.given_up(item, "the backplane cannot be reached"),
                None => return false,
            },
        }
    }
}

/// Follow (or leave) `paths` on `subscription`: for each path followed, its position is read first and
/// handed to the hub with the confirmation, so that what was published in between is caught up.
async fn apply<T: Transport>(
    transport: &T,
    shared: &Shared,
    subscription: &mut T::Subscription,
    paths: Vec<Arc<str>>,
    on: bool,
) -> Result<(), TransportError> {
    if paths.is_empty() {
        return Ok(());
    }
    if !on {
        transport.follow(subscription, &paths, false).await?;
        let mut following = shared.following.lock().expect("following lock");
        for path in &paths {
            following.remove(path);
        }
        return Ok(());
    }
    let mut before = Vec::with_capacity(paths.len());
    for path in &paths {
        before.push(transport.top(path).await.ok());
    }
    transport.follow(subscription, &paths, true).await?;
    shared
        .following
        .lock()
        .expect("following lock")
        .extend(paths.iter().cloned());
    if let Some(inbox) = shared.inbox() {
        for (path, before) in paths.into_iter().zip(before) {
            inbox.followed(path, before);
        }
    }
    Ok(())
}

/// The changes to following asked for since the last call, against what is followed now: paths to
/// follow, paths to leave.
fn changes(shared: &Shared, followed: &HashSet<Arc<str>>) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let wanted = std::mem::take(&mut *shared.wanted.lock().expect("wanted lock"));
    let (mut join, mut leave) = (Vec::new(), Vec::new());
    for (path, on) in wanted {
        match (on, followed.contains(&path)) {
            (true, false) => join.push(path),
            (false, true) => leave.push(path),
            _ => {}
        }
    }
    (join, leave)
}

async fn subscribe_loop<T: Transport>(
    transport: Arc<T>,
    shared: Arc<Shared>,
    heartbeat: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut health = Health::new("subscriber", transport.service());
    let mut backoff = Backoff::new();
    // Five missed heartbeats: the subscription is dead even if the connection does not say so.
    let silence = heartbeat * SILENT_HEARTBEATS;
    // What this subscriber follows (or is to follow again after a reconnect).
    let mut followed: HashSet<Arc<str>> = HashSet::new();
    loop {
        if shared.inbox().is_none() {
            return;
        }
        let attempt = tokio::select! {
            attempt = transport.subscribe() => attempt,
            _ = &mut stop => return,
        };
        let mut subscription = match attempt {
            Ok(subscription) => subscription,
            Err(e) => {
                health.failed(transport.place(), &e);
                tokio::select! {
                    () = backoff.wait() => continue,
                    _ = &mut stop => return,
                }
            }
        };
        // Everything followed before is followed again, caught up from its position.
        let (join, leave) = changes(&shared, &followed);
        for path in leave {
            followed.remove(&path);
        }
        followed.extend(join);
        let again: Vec<Arc<str>> = followed.iter().cloned().collect();
        if let Err(e) = apply(&*transport, &shared, &mut subscription, again, true).await {
            health.failed(transport.place(), &e);
            tokio::select! {
                () = backoff.wait() => continue,
                _ = &mut stop => return,
            }
        }
        health.up(transport.place());
        backoff = Backoff::new();
        shared.subscribed.store(true, Ordering::Release);
        let error = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(silence, transport.next(&mut subscription)) => next,
                () = shared.changed.notified() => {
                    let (join, leave) = changes(&shared, &followed);
                    for path in &leave {
                        followed.remove(path);
                    }
                    followed.extend(join.iter().cloned());
                    let applied = match apply(&*transport, &shared, &mut subscription, leave, false).await {
                        Ok(()) => apply(&*transport, &shared, &mut subscription, join, true).await,
                        Err(e) => Err(e),
                    };
                    match applied {
                        Ok(()) => continue,
                        Err(e) => break e,
                    }
                }
                _ = &mut stop => {
                    shared.subscribed.store(false, Ordering::Release);
                    return;
                }
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => break TransportError::Broken("the subscription ended".to_owned()),
                Err(_) => {
                    break TransportError::Broken(format!(
                        "nothing heard for {silence:?}, not even this node's own heartbeat"
                    ));
                }
            };
            let Some(inbox) = shared.inbox() else {
                shared.subscribed.store(false, Ordering::Release);
                return;
            };
            match message {
                Message::Path(payload) => match read_path_message(&payload) {
                    Some((at, trigger)) => {
                        shared.received.fetch_add(1, Ordering::Relaxed);
                        inbox.trigger(trigger, at);
                    }
                    None => {
                        tracing::warn!(target: "sync_runtime::backplane", "unreadable trigger on a path's channel; ignored");
                    }
                },
                Message::Node(payload) => match serde_json::from_slice::<Envelope>(&payload) {
                    Ok(envelope) if envelope.node != shared.node => {
                        if let Some(note) = envelope.note {
                            inbox.note(envelope.node, note);
                        }
                        inbox.heard(envelope.node, envelope.pv.unwrap_or(0));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target: "sync_runtime::backplane", error = %e, "unreadable message on the deployment's channel; ignored");
                    }
                },
            }
        };
        shared.subscribed.store(false, Ordering::Release);
        shared.following.lock().expect("following lock").clear();
        health.failed(transport.place(), &error);
        tokio::select! {
            () = backoff.wait() => {}
            _ = &mut stop => return,
        }
    }
}
