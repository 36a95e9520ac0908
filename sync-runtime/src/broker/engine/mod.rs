//! The engine every broker shares: the publisher and subscriber tasks over a [`Transport`], with
//! heartbeats, following paths, backoff, outage logging and status. A transport only connects, appends,
//! publishes, subscribes, follows and reads.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::*;

mod health;
mod publish;
mod subscribe;

use health::{Backoff, Health};
use publish::publish_loop;
use subscribe::subscribe_loop;

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
