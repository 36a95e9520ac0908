//! Every way a trigger comes in (Rust code through `sync_request!`, the runtime API, a client's `req`, a
//! trigger another node accepted) goes through one path: resolve the sync, parse its data, locate the
//! concrete path, then publish it to the other nodes and submit it to the path's lane.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::broker::{Inbox, WireNote, WireSender, WireTrigger};
use crate::conn::{Conn, Outbound};
use crate::error::SyncError;
use crate::fanout::{Job, Reply, Sender, Work};
use crate::handler::{AnyArc, ConnectionId, ErasedPeer, Location};
use crate::hub::{HubInner, SyncHub};
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

    /// Hand an accepted trigger to the other nodes and to its lane without waiting (Rust code and the
    /// runtime API, which return at once).
    pub fn submit(&self, accepted: Accepted) -> Pending {
        let (tx, rx) = oneshot::channel();
        let job = self.job(accepted, None, Reply::Caller(tx));
        self.publish(&job);
        match self.fanout.try_submit(Work::Trigger(job)) {
            Ok(()) => Pending {
                state: PendingState::Waiting(rx),
            },
            Err(_) => Pending::failed(SyncError::new(
                ErrorCode::Overloaded,
                "this path's trigger queue is full",
            )),
        }
    }

    /// Hand a client's accepted trigger on, waiting for room in its lane: backpressure reaches the
    /// sending connection.
    pub async fn submit_from(&self, accepted: Accepted, sender: Sender, reply: Reply) {
        let job = self.job(accepted, Some(sender), reply);
        self.publish(&job);
        self.fanout.submit(Work::Trigger(job)).await;
    }

    fn job(&self, accepted: Accepted, sender: Option<Sender>, reply: Reply) -> Job {
        Job {
            entry: accepted.entry,
            location: accepted.location,
            data: accepted.data,
            sender,
            reply,
            at: None,
        }
    }

    /// Hand a trigger accepted on this node to the other nodes.
    fn publish(&self, job: &Job) {
        let Some(broker) = &self.broker else {
            return;
        };
        let data = job
            .entry
            .data_json
            .and_then(|to_json| to_json(&*job.data))
            .and_then(|json| serde_json::value::RawValue::from_string(json).ok());
        let Some(data) = data else {
            // `build` checked that every `Data` serializes; a type whose `Serialize` fails lands here.
            tracing::error!(target: "sync_runtime::backplane", route = job.entry.route, name = job.entry.name, "data failed to serialize; delivered on this node only");
            return;
        };
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
        broker.publish(WireTrigger {
            path: job.location.path().to_owned(),
            name: job.entry.name.to_owned(),
            data,
            sender,
        });
    }

    /// Tell `conns` they may have missed reactions.
    fn resync(&self, conns: impl IntoIterator<Item = Arc<Conn>>) {
        for conn in conns {
            self.conns.push(&conn, Outbound::control(RESYNC));
        }
    }
}

impl Inbox for HubInner {
    /// A trigger another node accepted, fanned out to this node's connections. Never waits: when the
    /// path's lane is full, the trigger is dropped and that path's connections resync.
    fn trigger(&self, trigger: WireTrigger) {
        let accepted = match self.accept(
            Target::Path(&trigger.path),
            &trigger.name,
            Payload::Json(trigger.data.get()),
        ) {
            Ok(accepted) => accepted,
            Err(e) => {
                // Another version of the app is deployed on that node.
                tracing::warn!(target: "sync_runtime::backplane", path = trigger.path, name = trigger.name, error = %e, "a trigger from another node cannot run here; ignored");
                return;
            }
        };
        let sender = trigger.sender.and_then(|s| {
            let session = (self.session_codec?.decode)(s.session.get())?;
            let location = match s.path.and_then(|p| normalize(&p)) {
                Some(path) => self.table.locate(path),
                None => Location::new(Arc::from("/"), None, Vec::new()),
            };
            Some(Sender {
                conn: None,
                peer: ErasedPeer {
                    user: Arc::from(s.user),
                    session,
                    token: None,
                    location,
                    connection: ConnectionId(s.conn),
                    view: s.view.map_or_else(null_view, View::from),
                },
                echo: true,
            })
        });
        let job = self.job(accepted, sender, Reply::None);
        if let Err(job) = self.fanout.try_submit(Work::Trigger(job)) {
            Counters::bump(&self.counters.remote_dropped);
            tracing::warn!(target: "sync_runtime::backplane", path = %job.path(), "a path's trigger queue is full; a trigger from another node was dropped and its connections resync");
            self.resync(self.presence.recipients(job.path()));
        }
    }

    fn lost(&self) {
        self.resync(self.conns.all());
    }

    fn note(&self, node: u64, note: WireNote) {
        self.on_note(node, note);
    }

    fn heard(&self, node: u64, presence: u64) {
        self.on_heard(node, presence);
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
