//! Every way a trigger comes in (Rust code through `sync_request!`, the runtime API, a client's `req`, a
//! trigger another node accepted) goes through one path: resolve the sync, parse its data, locate the
//! concrete path, then publish it to the other nodes and submit it to the path's lane.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::broker::{Broker, Inbox, Origin, WireNote, WireSender, WireTrigger};
use crate::conn::{Conn, Outbound};
use crate::error::SyncError;
use crate::fanout::{Job, Recall, Record, Reply, Sender, Work};
use crate::handler::{AnyArc, ConnectionId, ErasedPeer, Location};
use crate::history::{Cursor, Recalled};
use crate::hub::{HubInner, SyncHub};
use crate::observe::{Trace, TriggerId, unix_millis};
use crate::protocol::server::RESYNC;
use crate::protocol::{ErrorCode, Outcome};
use crate::registry::SyncEntry;
use crate::roster::{View, null_view};
use crate::routes::normalize;
use crate::stats::Counters;
use serde_json::value::RawValue;

/// Where a trigger is headed, as its way in names it.
pub(crate) enum Target<'a> {
    /// A route pattern and the values of its params (`sync_request!`).
    Route {
        pattern: &'static str,
        params: &'a [(&'a str, &'a dyn Display)],
    },
    /// A concrete path, not yet normalized (the runtime API, another node).
    Path(&'a str),
    /// The sending connection's current location (a client's `req`).
    Location(Location),
}

/// What a trigger carries, as its way in has it.
pub(crate) enum Payload<'a> {
    /// Already the sync's `Data` (Rust code; the type was checked at compile time).
    Typed(AnyArc),
    /// JSON, to be checked against the sync's `Data`.
    Json(&'a str),
}

/// A trigger that passed every check: its sync, its concrete location and its data.
pub(crate) struct Accepted {
    pub entry: Arc<SyncEntry>,
    pub location: Location,
    pub data: AnyArc,
}

impl HubInner {
    /// Resolve -> parse -> locate, the same for every way in.
    pub fn accept(
        &self,
        target: Target<'_>,
        name: &str,
        payload: Payload<'_>,
    ) -> Result<Accepted, SyncError> {
        let (entry, location) = match target {
            Target::Route { pattern, params } => {
                let entry = self.table.get(pattern, name).ok_or_else(|| {
                    SyncError::new(
                        ErrorCode::UnknownName,
                        format!("`{name}` on `{pattern}` is not registered with this hub"),
                    )
                })?;
                let pattern = self.table.patterns.get(pattern).ok_or_else(|| {
                    SyncError::new(ErrorCode::UnknownName, format!("no route `{pattern}`"))
                })?;
                // Param values are already what the page router decodes a segment to: the filled path
                // is in normalized form as it is, and decoding it again would turn a literal `%31` into `1`.
                let path = pattern
                    .fill(params)
                    .map_err(|e| SyncError::new(ErrorCode::BadParams, e))?;
                (entry.clone(), self.table.locate(Arc::from(path)))
            }
            Target::Path(path) => {
                let normalized = normalize(path).ok_or_else(|| {
                    SyncError::new(
                        ErrorCode::BadPath,
                        format!("`{path}` is not an absolute path"),
                    )
                })?;
                let location = self.table.locate(normalized);
                (self.resolve(&location, name)?, location)
            }
            Target::Location(location) => (self.resolve(&location, name)?, location),
        };
        let data = match payload {
            Payload::Typed(data) => data,
            Payload::Json(json) => (entry.sync.0.parse)(json).map_err(|e| {
                SyncError::new(
                    ErrorCode::BadData,
                    format!("`data` does not match `{}`: {e}", entry.name),
                )
            })?,
        };
        Ok(Accepted {
            entry,
            location,
            data,
        })
    }

    fn resolve(&self, location: &Location, name: &str) -> Result<Arc<SyncEntry>, SyncError> {
        self.table
            .resolve(location.route(), name)
            .cloned()
            .map_err(|(code, message)| SyncError::new(code, message))
    }

    /// Hand an accepted trigger on without waiting (Rust code and the runtime API, which return at once):
    /// to its lane, or, with a backplane, to the broker, which gives it its position.
    pub fn submit(&self, accepted: Accepted) -> Pending {
        let (tx, rx) = oneshot::channel();
        let job = self.job(accepted, None, Reply::Caller(tx));
        match &self.broker {
            None => {
                if let Err(Work::Trigger(job)) = self.fanout.try_submit(Work::Trigger(job)) {
                    job.reply.send(&self.conns, Err(overloaded()));
                }
            }
            Some(broker) => {
                if let Some((id, wire)) = self.hold(broker, job)
                    && !broker.publish(id, wire)
                {
                    self.refuse(id, ErrorCode::Overloaded, "the backplane's queue is full");
                }
            }
        }
        Pending {
            state: PendingState::Waiting(rx),
        }
    }

    /// Hand a client's accepted trigger on, waiting for room in its lane (or the broker's queue):
    /// backpressure reaches the sending connection.
    pub async fn submit_from(&self, accepted: Accepted, sender: Sender, reply: Reply) {
        let job = self.job(accepted, Some(sender), reply);
        match &self.broker {
            None => self.fanout.submit(Work::Trigger(job)).await,
            Some(broker) => {
                if let Some((id, wire)) = self.hold(broker, job)
                    && !broker.publish_wait(id, wire).await
                {
                    self.refuse(id, ErrorCode::Unavailable, "the backplane is gone");
                }
            }
        }
    }

    /// A job for an accepted trigger, with its id: this node's, and its next number here (the number it
    /// is published under, with a backplane).
    fn job(&self, accepted: Accepted, sender: Option<Sender>, reply: Reply) -> Job {
        let id = TriggerId {
            node: self.node,
            seq: self.next_publish.fetch_add(1, Ordering::Relaxed),
        };
        let (entry, location) = (&accepted.entry, &accepted.location);
        let trace = Trace::new(id, self.node, entry.route, entry.name, location.path());
        Job {
            entry: accepted.entry,
            location: accepted.location,
            data: accepted.data,
            sender,
            reply,
            at: None,
            trace: Some(trace),
        }
    }

    /// Keep `job` until the broker has given it its position: its number here, and the trigger as it
    /// crosses. `None` (its sender told why) when it cannot cross.
    fn hold(&self, broker: &Arc<dyn Broker>, job: Job) -> Option<(u64, WireTrigger)> {
        let Some(mut wire) = self.wire(&job) else {
            // `build` checked that every `Data` serializes; a type whose `Serialize` fails lands here.
            tracing::error!(target: "sync_runtime::backplane", route = job.entry.route, name = job.entry.name, "data failed to serialize; the trigger was refused");
            let error = SyncError::new(ErrorCode::BadData, "the data does not serialize");
            job.reply.send(&self.conns, Err(error));
            return None;
        };
        let id = job.trace.as_ref().map_or(0, |t| t.id.seq);
        wire.origin = Some(Origin {
            node: broker.node(),
            id,
            at: unix_millis(),
        });
        let mut waiting = self.waiting.lock().expect("waiting lock is never poisoned");
        if waiting.len() >= MAX_WAITING {
            drop(waiting);
            let error = SyncError::new(
                ErrorCode::Overloaded,
                "too many triggers wait for the backplane",
            );
            job.reply.send(&self.conns, Err(error));
            return None;
        }
        // Followed now, confirmed: the subscription is older than the publish, so the trigger will come
        // back on it.
        let echoed = broker.follows(job.location.path());
        if let Some(trace) = &job.trace {
            trace
                .span
                .in_scope(|| tracing::debug!(target: "sync_runtime::trigger", "published"));
        }
        waiting.insert(
            id,
            Waiting {
                job,
                echoed,
                since: Instant::now(),
            },
        );
        Some((id, wire))
    }

    /// The trigger numbered `id` here was not taken: its sender learns why.
    fn refuse(&self, id: u64, code: ErrorCode, message: &str) {
        let waiting = self
            .waiting
            .lock()
            .expect("waiting lock is never poisoned")
            .remove(&id);
        if let Some(waiting) = waiting {
            waiting
                .job
                .reply
                .send(&self.conns, Err(SyncError::new(code, message)));
        }
    }

    /// Answer the senders of triggers published long ago whose outcome never came back (their path's
    /// subscription dropped meanwhile; the history caught their recipients up).
    pub fn sweep_waiting(&self) {
        let old: Vec<Waiting> = {
            let mut waiting = self.waiting.lock().expect("waiting lock is never poisoned");
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, w)| w.since.elapsed() > OUTCOME_WAIT)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for waiting in old {
            let error = SyncError::new(
                ErrorCode::Unavailable,
                "the trigger was published, but its outcome was lost with the backplane's connection",
            );
            waiting.job.reply.send(&self.conns, Err(error));
        }
    }

    /// A trigger as it crosses nodes: its data as JSON, and its sender.
    fn wire(&self, job: &Job) -> Option<WireTrigger> {
        let data = job
            .entry
            .data_json
            .and_then(|to_json| to_json(&*job.data))
            .and_then(|json| serde_json::value::RawValue::from_string(json).ok())?;
        let sender = job.sender.as_ref().and_then(|s| {
            let encode = self.session_codec?.encode;
            Some(WireSender {
                user: s.peer.user.to_string(),
                session: encode(&s.peer.session)?,
                path: Some(s.peer.location.path().to_owned()),
                conn: s.peer.connection.0,
                view: RawValue::from_string(s.peer.view.get().to_owned()).ok(),
            })
        });
        Some(WireTrigger {
            path: job.location.path().to_owned(),
            name: job.entry.name.to_owned(),
            data,
            sender,
            origin: None,
        })
    }

    /// A trigger from the broker (another node's, or this node's own from its history), ready to run
    /// here; `None` when this node cannot run it (another version of the app).
    fn record(&self, trigger: WireTrigger) -> Option<Record> {
        let accepted = match self.accept(
            Target::Path(&trigger.path),
            &trigger.name,
            Payload::Json(trigger.data.get()),
        ) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(target: "sync_runtime::backplane", path = trigger.path, name = trigger.name, error = %e, "a trigger from another node cannot run here; ignored");
                return None;
            }
        };
        let sender = trigger.sender.and_then(|s| {
            let session = (self.session_codec?.decode)(s.session.get())?;
            let location = match s.path.and_then(|p| normalize(&p)) {
                Some(path) => self.table.locate(path),
                None => Location::new(Arc::from("/"), None, Vec::new()),
            };
            Some(ErasedPeer {
                user: Arc::from(s.user),
                session,
                token: None,
                location,
                connection: ConnectionId(s.conn),
                view: s.view.map_or_else(null_view, View::from),
            })
        });
        Some(Record {
            entry: accepted.entry,
            location: accepted.location,
            data: accepted.data,
            sender,
            skip: None,
        })
    }

    /// Another node's trigger as a job here: it keeps the id it was given where it was accepted, and
    /// how long it took to arrive is told to the observers.
    fn remote_job(&self, record: Record, origin: Option<Origin>) -> Job {
        let mut job = record.into_job();
        let Some(origin) = origin else {
            return job;
        };
        if origin.at > 0 {
            let lag = unix_millis().saturating_sub(origin.at);
            self.observers.received(Duration::from_millis(lag));
        }
        let id = TriggerId {
            node: origin.node,
            seq: origin.id,
        };
        let (route, name) = (job.entry.route, job.entry.name);
        job.trace = Some(Trace::new(id, self.node, route, name, job.location.path()));
        job
    }

    /// Queue a trigger that has its position on its lane; when the lane is full it is dropped here, and
    /// the path's connections resync.
    fn run_at(&self, job: Job) {
        if let Err(Work::Trigger(job)) = self.fanout.try_submit(Work::Trigger(job)) {
            Counters::bump(&self.counters.remote_dropped);
            tracing::warn!(target: "sync_runtime::backplane", path = job.location.path(), "a path's trigger queue is full; a trigger was dropped here and its connections resync");
            self.resync(self.presence.recipients(job.location.path()));
            job.reply.send(&self.conns, Err(overloaded()));
        }
    }

    /// Tell `conns` they may have missed reactions.
    fn resync(&self, conns: impl IntoIterator<Item = Arc<Conn>>) {
        for conn in conns {
            self.conns.push(&conn, Outbound::control(RESYNC));
        }
    }
}

/// This node's triggers that may wait for the backplane at once (published, their position not back yet).
const MAX_WAITING: usize = 65_536;

/// How long a published trigger's sender waits for its outcome at most.
const OUTCOME_WAIT: Duration = Duration::from_secs(10);

fn overloaded() -> SyncError {
    SyncError::new(ErrorCode::Overloaded, "this path's trigger queue is full")
}

/// A trigger of this node's, published, waiting to come back with its position.
pub(crate) struct Waiting {
    job: Job,
    /// Its path's subscription was confirmed before it was published: it comes back on it.
    echoed: bool,
    since: Instant,
}

impl Inbox for HubInner {
    /// A trigger on a path this node follows: this node's own (its sender and whoever waits for its
    /// outcome are still here), or another node's. Never waits.
    fn trigger(&self, trigger: WireTrigger, at: Cursor) {
        let origin = trigger.origin;
        let own = origin.filter(|o| o.node == self.node).and_then(|o| {
            self.waiting
                .lock()
                .expect("waiting lock is never poisoned")
                .remove(&o.id)
        });
        let mut job = match own {
            Some(waiting) => waiting.job,
            None => {
                let Some(record) = self.record(trigger) else {
                    return;
                };
                self.remote_job(record, origin)
            }
        };
        job.at = Some(at);
        self.run_at(job);
    }

    fn published(&self, id: u64, result: Result<Cursor, String>) {
        let at = match result {
            Ok(at) => at,
            Err(why) => {
                tracing::warn!(target: "sync_runtime::backplane", error = why, "the backplane did not take a trigger; refused to its sender");
                return self.refuse(id, ErrorCode::Unavailable, &why);
            }
        };
        let (lag, job) = {
            let mut waiting = self.waiting.lock().expect("waiting lock is never poisoned");
            match waiting.get(&id) {
                // Back already (its lag unknown here).
                None => return,
                // Coming back on its path's subscription.
                Some(w) if w.echoed => (w.since.elapsed(), None),
                Some(w) => (w.since.elapsed(), waiting.remove(&id).map(|w| w.job)),
            }
        };
        self.observers.published(lag);
        if let Some(mut job) = job {
            // This node did not follow its path when it was published (nobody here, or a subscription
            // still being confirmed, which would not bring it back): run it now. Should it come back all
            // the same, its position says it ran.
            job.at = Some(at);
            self.run_at(job);
        }
    }

    fn followed(&self, path: Arc<str>, before: Option<Cursor>) {
        if self
            .fanout
            .try_submit(Work::Follow {
                path: path.clone(),
                before,
            })
            .is_err()
        {
            self.resync(self.presence.recipients(&path));
        }
    }

    fn note(&self, node: u64, note: WireNote) {
        self.on_note(node, note);
    }

    fn heard(&self, node: u64, presence: u64) {
        self.on_heard(node, presence);
    }
}

impl Recall for HubInner {
    fn since(
        &self,
        path: Arc<str>,
        epoch: Arc<str>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'_, Recalled<Record>> {
        Box::pin(async move {
            let Some(broker) = &self.broker else {
                return Recalled::Lost;
            };
            match broker.since(path, epoch, after, upto).await {
                None | Some(Recalled::Lost) => Recalled::Lost,
                Some(Recalled::Entries { first, entries }) => Recalled::Entries {
                    first,
                    entries: entries
                        .into_iter()
                        .filter_map(|(offset, trigger)| Some((offset, self.record(trigger)?)))
                        .collect(),
                },
            }
        })
    }

    fn top(&self, path: Arc<str>) -> BoxFuture<'_, Option<Cursor>> {
        Box::pin(async move { self.broker.as_ref()?.top(path).await })
    }
}

impl SyncHub {
    /// Trigger sync `name` on a concrete `path` (`/posts/7`) from Rust code: background jobs, tests. The
    /// data is checked against the sync's `Data` type first. No origin gate runs: server code is trusted.
    ///
    /// ```no_run
    /// # async fn f(hub: sync_runtime::SyncHub) {
    /// let outcome = hub.request("/posts/7", "newComment", serde_json::json!({ "text": "hi" })).await;
    /// # }
    /// ```
    pub fn request(&self, path: &str, name: &str, data: impl serde::Serialize) -> Pending {
        let json = match serde_json::to_string(&data) {
            Ok(json) => json,
            Err(e) => return Pending::failed(SyncError::new(ErrorCode::BadData, e.to_string())),
        };
        match self
            .inner
            .accept(Target::Path(path), name, Payload::Json(&json))
        {
            Ok(accepted) => self.inner.submit(accepted),
            Err(e) => Pending::failed(e),
        }
    }
}

/// Generated code's entry point behind `sync_request!`.
pub(crate) fn request_typed<D: Send + Sync + 'static>(
    pattern: &'static str,
    name: &'static str,
    params: &[(&str, &dyn Display)],
    data: D,
) -> Pending {
    let Some(hub) = SyncHub::current() else {
        tracing::warn!(target: "sync_runtime::trigger", route = pattern, name, "sync_request! outside any hub: use `hub.attach(router)`, `hub.scope(..)` or `hub.install_global()`");
        return Pending::failed(SyncError::new(ErrorCode::NoHub, "no hub in scope"));
    };
    let target = Target::Route { pattern, params };
    match hub
        .inner
        .accept(target, name, Payload::Typed(Arc::new(data)))
    {
        Ok(accepted) => hub.inner.submit(accepted),
        Err(e) => Pending::failed(e),
    }
}

/// A request on its way. Awaiting it is optional: it yields the fan-out's [`Outcome`] or its error.
///
/// ```no_run
/// # async fn f(hub: sync_runtime::SyncHub) {
/// let outcome = hub.request("/dashboard", "refreshData", serde_json::json!({})).await;
/// if let Ok(o) = outcome {
///     println!("{} of {} users passed the filter", o.passed, o.matched);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Pending {
    state: PendingState,
}

#[derive(Debug)]
enum PendingState {
    Waiting(oneshot::Receiver<Result<Outcome, SyncError>>),
    Ready(Option<Result<Outcome, SyncError>>),
}

impl Pending {
    pub(crate) fn failed(error: SyncError) -> Self {
        Pending {
            state: PendingState::Ready(Some(Err(error))),
        }
    }
}

impl Future for Pending {
    type Output = Result<Outcome, SyncError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            PendingState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(SyncError::new(
                    ErrorCode::Overloaded,
                    "polled after completion",
                ))
            })),
            PendingState::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| {
                    Err(SyncError::new(
                        ErrorCode::Overloaded,
                        "the hub shut down before the fan-out ran",
                    ))
                })
            }),
        }
    }
}
