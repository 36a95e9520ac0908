//! The hub: one cloneable handle ([`SyncHub`]) over the index of who is where and the broadcast, put
//! together from the pieces below it (registry, presence, connection table, fan-out, broker).

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::admin_log::Admin;
use crate::auth::{AuthFn, OriginPolicy};
use crate::broker::{Backplane, BackplaneStatus, Broker, SessionCodec};
use crate::conn::{Bound, Budget, ConnLimits};
use crate::conns::{ConnTable, TableConfig};
use crate::error::SyncError;
use crate::fanout::{FanOut, FanOutSettings, HistoryAt};
use crate::handler::AnyArc;
use crate::history::Cursor;
use crate::observe::{Observer, Observers};
use crate::presence::Presence;
use crate::protocol::{ErrorCode, close_code};
use crate::registry::SyncTable;
use crate::roster::{Membership, Present, Roster};
use crate::routes::normalize;
use crate::stats::{Counters, Stats};

pub(crate) mod admin;
mod builder;
mod config;
mod extract;
#[cfg(test)]
mod history_tests;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(test)]
mod observe_tests;
#[cfg(test)]
mod presence_tests;
mod problem;
#[cfg(test)]
mod staged_tests;
#[cfg(test)]
mod tests;

pub(crate) use builder::PresenceMap;
pub use builder::SyncHubBuilder;
pub(crate) use config::HubConfig;
pub use extract::Functions;
pub use problem::{BuildError, BuildProblem};

/// Everything a hub is made of.
pub(crate) struct HubInner {
    pub config: HubConfig,
    pub table: SyncTable,
    pub auth: AuthFn,
    pub origins: OriginPolicy,
    pub functions: AnyArc,
    pub presence: Arc<Presence>,
    pub conns: Arc<ConnTable>,
    pub fanout: Arc<FanOut>,
    pub counters: Arc<Counters>,
    /// Set by [`SyncHub::shutdown`]: new connections are refused.
    pub shutting_down: AtomicBool,
    /// Notified whenever a transport lets go of a connection, for `shutdown` to wait on.
    pub transport_closed: Notify,
    /// Set when the hub shares triggers with other nodes.
    pub broker: Option<Arc<dyn Broker>>,
    pub session_codec: Option<SessionCodec>,
    /// Users per path, on every node.
    pub roster: Arc<Roster>,
    /// The app's presence mapping; browsers get presence frames only with one.
    pub presence_map: Option<PresenceMap>,
    /// The authenticator's session type, which `update_session` must be given.
    pub session_type: TypeId,
    /// What this node knows of the other nodes' parts of the roster.
    pub membership: Membership,
    /// This node's triggers published and waiting for their position, by their number here.
    pub waiting: std::sync::Mutex<std::collections::HashMap<u64, crate::trigger::Waiting>>,
    /// The number of this node's next trigger (its id's second half, and its number when published).
    pub next_publish: std::sync::atomic::AtomicU64,
    /// This node's id: the backplane's, or a random one without a backplane.
    pub node: u64,
    /// Who watches this hub (metrics, the admin page).
    pub observers: Arc<Observers>,
    /// The admin page, when the app enabled it.
    pub admin: Option<Admin>,
    /// Its Prometheus series, when the builder asked for them.
    #[cfg(feature = "metrics")]
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// What `build` hands to `assemble`.
pub(crate) struct Parts {
    pub config: HubConfig,
    pub table: SyncTable,
    pub auth: AuthFn,
    pub origins: OriginPolicy,
    pub functions: AnyArc,
    pub backplane: Option<(Backplane, SessionCodec)>,
    pub presence: Option<PresenceMap>,
    pub session_type: TypeId,
    pub admin: Option<Admin>,
}

/// Put a hub together from a checked configuration.
fn assemble(parts: Parts) -> SyncHub {
    let Parts {
        config,
        table,
        auth,
        origins,
        functions,
        backplane,
        presence: presence_map,
        session_type,
        admin,
    } = parts;
    let counters = Arc::new(Counters::default());
    let observers = Arc::new(Observers::default());
    let mut observers_list: Vec<Arc<dyn Observer>> = Vec::new();
    if let Some(admin) = &admin {
        observers_list.push(admin.recent.clone());
    }
    #[cfg(feature = "metrics")]
    let metrics = metrics::build(&config.metrics, &table);
    #[cfg(feature = "metrics")]
    observers_list.extend(metrics.as_ref().map(|m| m.observer()));
    // Set once, and only with someone to tell (the crate's own tests give a hub built without any an
    // observer of theirs).
    if !observers_list.is_empty() {
        observers.set(observers_list);
    }
    let roster = Arc::new(Roster::new(config.presence_limit, backplane.is_some()));
    let presence = Arc::new(Presence::new(roster.clone()));
    if let Some(admin) = &admin {
        // Who watches the admin page is nobody's business: its connections join no list.
        presence.hide(admin.path.clone());
    }
    let limits = Arc::new(ConnLimits {
        live: Bound {
            frames: config.outbound_queue,
            bytes: config.outbound_queue_bytes,
        },
        parked: Bound {
            frames: config.parked_frames,
            bytes: config.parked_bytes,
        },
        keep: config.replay_frames,
        parked_budget: Budget::new(config.max_parked_bytes),
        rate: (config.rate_per_sec, config.rate_burst),
    });
    let conns = Arc::new(ConnTable::new(
        TableConfig {
            max_per_user: config.max_connections_per_user,
            max_parked: config.max_parked,
            max_parked_per_user: config.max_parked_per_user,
            grace: config.resume_grace,
            user_rate: (config.user_rate_per_sec, config.user_rate_burst),
        },
        limits,
        presence.clone(),
        counters.clone(),
    ));
    let fanout = Arc::new(FanOut::new(
        presence.clone(),
        conns.clone(),
        counters.clone(),
        functions.clone(),
        FanOutSettings {
            deadline: config.filter_deadline,
            filter_concurrency: config.filter_concurrency,
            lane_queue: config.lane_queue,
            lane_idle: config.lane_idle,
            history: match backplane {
                Some(_) => HistoryAt::Broker,
                None => HistoryAt::Here(config.history),
            },
            history_size: config.history.size,
            observers: observers.clone(),
        },
    ));
    let (broker, session_codec) = match &backplane {
        Some((backplane, codec)) => (Some(backplane.start(config.history)), Some(*codec)),
        None => (None, None),
    };
    if let Some(broker) = &broker {
        let broker = broker.clone();
        presence.set_watch(Box::new(move |path, used| broker.follow(path, used)));
    }
    let node = broker
        .as_ref()
        .map_or_else(crate::broker::node_id, |b| b.node());
    let inner = Arc::new(HubInner {
        config,
        table,
        auth,
        origins,
        functions,
        presence,
        conns,
        fanout,
        counters,
        shutting_down: AtomicBool::new(false),
        transport_closed: Notify::new(),
        broker,
        session_codec,
        roster,
        presence_map,
        session_type,
        membership: Membership::default(),
        waiting: std::sync::Mutex::new(std::collections::HashMap::new()),
        next_publish: std::sync::atomic::AtomicU64::new(1),
        node,
        observers,
        admin,
        #[cfg(feature = "metrics")]
        metrics,
    });
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &inner.metrics {
        let gauges: std::sync::Weak<dyn crate::metrics::Gauges> = Arc::downgrade(&inner) as _;
        metrics.watch(gauges);
    }
    // Only now that the hub exists: a subscriber started earlier could find no hub and stop for good.
    if let Some(broker) = &inner.broker {
        let recall: std::sync::Weak<dyn crate::fanout::Recall> = Arc::downgrade(&inner) as _;
        inner.fanout.share_history(recall);
        let inbox: std::sync::Weak<dyn crate::broker::Inbox> = Arc::downgrade(&inner) as _;
        broker.start(inbox);
        // With a backplane there is a runtime already; without one, the first connection starts it.
        inner.keep_lists();
    }
    SyncHub { inner }
}

/// The sync runtime: one cloneable handle to mount, trigger and observe.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use sync_runtime::SyncHub;
///
/// # async fn run() {
/// let hub = SyncHub::builder().guests().build().expect("handlers match the hub");
/// let app = hub.attach(Router::new().route("/", get(|| async { "home" })));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct SyncHub {
    pub(crate) inner: Arc<HubInner>,
}

impl fmt::Debug for SyncHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncHub")
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    static CURRENT: SyncHub;
}

static GLOBAL: RwLock<Option<SyncHub>> = RwLock::new(None);

impl SyncHub {
    /// Run `fut` with this hub as the one `sync_request!` uses.
    pub fn scope<Fut: Future>(&self, fut: Fut) -> impl Future<Output = Fut::Output> {
        CURRENT.scope(self.clone(), fut)
    }

    /// Make this hub the one `sync_request!` uses outside any [`scope`](Self::scope) (background tasks,
    /// `main`). Replaces a previously installed hub.
    pub fn install_global(&self) {
        *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(self.clone());
    }

    /// The hub `sync_request!` would use here: the scoped one, else the global one.
    pub fn current() -> Option<SyncHub> {
        CURRENT
            .try_with(SyncHub::clone)
            .ok()
            .or_else(|| GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Counters since the hub was built.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The number of connections currently on `path` (parked ones included: they still get what is sent
    /// there, for their resume).
    pub fn present(&self, path: &str) -> usize {
        normalize(path).map_or(0, |path| self.inner.presence.count(&path))
    }

    /// The users on the concrete `path` (`/boards/7`), on every node, each once however many tabs they
    /// have open there, in the order they came, with their presence view (see
    /// [`SyncHubBuilder::presence`]). Parked connections (waiting for a resume) still count; a user
    /// leaves when their last connection navigates away, says goodbye or is forgotten.
    ///
    /// ```no_run
    /// # fn f(hub: sync_runtime::SyncHub) {
    /// let here: Vec<String> = hub.presence("/boards/7").iter().map(|u| u.user().to_owned()).collect();
    /// # }
    /// ```
    pub fn presence(&self, path: &str) -> Vec<Present> {
        normalize(path).map_or_else(Vec::new, |path| self.inner.roster.users(&path))
    }

    /// The current position of `path`'s history (SPEC 10), for a page rendered on the server to embed
    /// ([`Cursor::meta`]): the browser client connects from it and gets every trigger accepted after it,
    /// so an update between the render and the connect is not lost. On several nodes the position is
    /// read from the backplane: `unavailable` when it cannot be reached.
    ///
    /// ```no_run
    /// # async fn f(hub: sync_runtime::SyncHub) -> Result<(), sync_runtime::SyncError> {
    /// let cursor = hub.cursor("/boards/7").await?;
    /// let head = format!("<head>{}<script type=module src=/app.js></script></head>", cursor.meta());
    /// # Ok(()) }
    /// ```
    pub async fn cursor(&self, path: &str) -> Result<Cursor, SyncError> {
        let path = normalize(path).ok_or_else(|| {
            SyncError::new(
                ErrorCode::BadPath,
                format!("`{path}` is not an absolute path"),
            )
        })?;
        self.inner.fanout.top(&path).await.ok_or_else(|| {
            SyncError::new(ErrorCode::Unavailable, "the backplane cannot be reached")
        })
    }

    /// The backplane's connections and counters, or `None` when the hub has no backplane.
    pub fn backplane_status(&self) -> Option<BackplaneStatus> {
        self.inner.broker.as_ref().map(|b| b.status())
    }

    /// Close every connection with "going away" (1001) so that clients reconnect elsewhere or later,
    /// refuse new ones (503), and wait until the transports have let go, at most `deadline`. Fan-outs
    /// already queued still run; their reactions go to whoever is still connected. Returns the
    /// connections still open at the deadline (0 when all closed in time).
    ///
    /// ```no_run
    /// # async fn f(hub: sync_runtime::SyncHub) {
    /// let open = hub.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert_eq!(open, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> u64 {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        for conn in inner.conns.all() {
            inner
                .conns
                .close(&conn, close_code::GOING_AWAY, "server shutting down");
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let closed = inner.transport_closed.notified();
            let open = inner.counters.connections.load(Ordering::Acquire);
            if open == 0 || tokio::time::timeout_at(until, closed).await.is_err() {
                return inner.counters.connections.load(Ordering::Acquire);
            }
        }
    }

    /// Close every connection of `user`, live or parked (e.g. after revoking their token), with code
    /// [`REVOKED`](close_code::REVOKED). Returns how many were closed.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let conns = &self.inner.conns;
        let mut closed = 0;
        for conn in conns.of_user(user) {
            if conns.close(&conn, close_code::REVOKED, "disconnected by the server") {
                closed += 1;
            }
        }
        closed
    }
}
