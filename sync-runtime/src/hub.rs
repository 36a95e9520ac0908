//! The hub: registered syncs, who is where, and the fan-out.

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};

use serde_json::value::RawValue;

use crate::backplane::{
    Backplane, BackplaneHandle, BackplaneStatus, SessionCodec, WireSender, WireTrigger,
};
use crate::handler::{
    AnyArc, BoxFuture, ConnectionId, ErasedPeer, ErasedSync, FilterFailure, Location,
};
use crate::protocol::{ErrorCode, Outcome, ResultFrame, close_code, error_frame};
use crate::routes::{PatternSet, normalize};
use crate::{Reaction, Refusal};

/// One sync as generated code registers it (through `inventory`). Not for direct use.
#[doc(hidden)]
pub struct Registration {
    /// The route pattern, e.g. `/posts/[id]`.
    pub route: &'static str,
    /// The sync name.
    pub name: &'static str,
    /// The client file, relative to the crate.
    pub client_file: &'static str,
    /// The server file, if any.
    pub server_file: Option<&'static str>,
    /// Builds the handler.
    pub build: fn() -> ErasedSync,
    /// How the data turns back into JSON to cross nodes, if its type is `Serialize`.
    pub data_json: fn() -> Option<DataToJson>,
}

/// Serializes a sync's (type-erased) data. Not for direct use.
#[doc(hidden)]
pub type DataToJson = fn(&(dyn std::any::Any + Send + Sync)) -> Option<String>;

inventory::collect!(Registration);

/// Limits and timings of a hub. Every field has a safe default; set them through [`SyncHubBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub prefix: String,
    pub filter_deadline: Duration,
    pub outbound_queue: usize,
    pub lane_queue: usize,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub allowed_origins: Vec<String>,
    pub lane_idle: Duration,
    pub resume_grace: Duration,
    pub replay_frames: usize,
    pub max_connections_per_user: usize,
    pub socket_read_buffer: usize,
    pub socket_write_buffer: usize,
    pub user_rate_per_sec: u32,
    pub user_rate_burst: u32,
    pub sse_keepalive: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            prefix: "/_sync".to_owned(),
            filter_deadline: Duration::from_secs(2),
            outbound_queue: 4096,
            lane_queue: 4096,
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 1024 * 1024,
            rate_per_sec: 200,
            rate_burst: 2000,
            allowed_origins: Vec::new(),
            lane_idle: Duration::from_secs(10),
            resume_grace: Duration::from_secs(120),
            replay_frames: 64,
            max_connections_per_user: 64,
            socket_read_buffer: 1024,
            socket_write_buffer: 16 * 1024,
            user_rate_per_sec: 500,
            user_rate_burst: 5000,
            sse_keepalive: Duration::from_secs(30),
        }
    }
}

/// What an authenticator sees of an upgrade request.
///
/// The token is taken from `Authorization: Bearer <token>`, else from the `token` query parameter (browsers
/// cannot set headers on a WebSocket; cookies work as usual through [`AuthRequest::cookie`]).
#[derive(Clone)]
pub struct AuthRequest {
    pub(crate) headers: HeaderMap,
    pub(crate) uri: Uri,
    pub(crate) token: Option<String>,
}

impl fmt::Debug for AuthRequest {
    // Credentials never reach a log through `Debug`: the token, the query (which may carry `token=`),
    // and the `Authorization` and `Cookie` headers are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let redact =
                    k == axum::http::header::AUTHORIZATION || k == axum::http::header::COOKIE;
                (
                    k.as_str(),
                    if redact {
                        "<redacted>"
                    } else {
                        v.to_str().unwrap_or("<binary>")
                    },
                )
            })
            .collect();
        f.debug_struct("AuthRequest")
            .field("path", &self.uri.path())
            .field("headers", &headers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AuthRequest {
    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The presented token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The value of cookie `name`, if the request carries it.
    ///
    /// ```
    /// # use sync_runtime::AuthRequest;
    /// # fn f(req: &AuthRequest) -> Option<&str> {
    /// req.cookie("session")
    /// # }
    /// ```
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Who a connection belongs to: a stable user key and the app's session value.
#[derive(Debug, Clone)]
pub struct Identity<S> {
    user: String,
    session: S,
}

impl<S> Identity<S> {
    /// `user` groups connections (two tabs of one user); `session` is what handlers see.
    pub fn new(user: impl Into<String>, session: S) -> Self {
        Identity {
            user: user.into(),
            session,
        }
    }
}

type AuthFn =
    Arc<dyn Fn(AuthRequest) -> BoxFuture<Result<(Arc<str>, AnyArc), Refusal>> + Send + Sync>;

/// Why [`SyncHubBuilder::build`] failed.
#[derive(Debug)]
pub struct BuildError {
    problems: Vec<String>,
}

impl Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the sync hub cannot be built:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// Configures a [`SyncHub`]. `S` is the app's session type, `F` its backend helpers ("functions").
///
/// ```
/// use sync_runtime::{Identity, Refusal, SyncHub};
///
/// #[derive(Clone)]
/// struct User { name: String }
/// struct Functions { greeting: &'static str }
///
/// let hub = SyncHub::builder()
///     .authenticate(|req| async move {
///         match req.token() {
///             Some(name) => Ok(Identity::new(name, User { name: name.to_owned() })),
///             None => Err(Refusal::new("log in first")),
///         }
///     })
///     .functions(Functions { greeting: "hi" })
///     .build()
///     .expect("handler types match");
/// ```
pub struct SyncHubBuilder<S = (), F = ()> {
    auth: Option<AuthFn>,
    functions: Arc<F>,
    config: HubConfig,
    backplane: Option<(Backplane, SessionCodec)>,
    _session: std::marker::PhantomData<fn() -> S>,
}

impl SyncHub {
    /// Start configuring a hub.
    pub fn builder() -> SyncHubBuilder<(), ()> {
        SyncHubBuilder {
            auth: None,
            functions: Arc::new(()),
            config: HubConfig::default(),
            backplane: None,
            _session: std::marker::PhantomData,
        }
    }
}

impl<S, F> SyncHubBuilder<S, F>
where
    S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    /// Share triggers with the other server processes on one Redis (SPEC 8): a trigger on any node reaches
    /// every user on the route on every node, and each node runs filters only for its own connections.
    /// Without it (the default) the hub is in-memory and needs nothing else.
    ///
    /// Call it after [`authenticate`](Self::authenticate): the session type crosses nodes (as JSON) so that
    /// filters elsewhere see the sender's session, which is why it must be `Serialize + Deserialize`. Every
    /// sync's `Data` must be `Serialize` too, which [`build`](Self::build) checks. `build` must run inside a
    /// Tokio runtime, where the backplane starts its two connections.
    ///
    /// ```no_run
    /// use sync_runtime::{Backplane, SyncHub};
    ///
    /// # async fn f() {
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    /// let hub = SyncHub::builder()
    ///     .guests()
    ///     .backplane(Backplane::redis(url).key_prefix("prod"))
    ///     .build()
    ///     .expect("handlers match");
    /// # }
    /// ```
    pub fn backplane(mut self, backplane: Backplane) -> Self {
        self.backplane = Some((backplane, SessionCodec::of::<S>()));
        self
    }
}

impl<S: Send + Sync + 'static, F: Send + Sync + 'static> SyncHubBuilder<S, F> {
    /// How a WebSocket upgrade becomes a session. Returning `Err` refuses the upgrade with `401` before it
    /// happens. Required, unless [`guests`](Self::guests) is used.
    pub fn authenticate<S2, Fut>(
        self,
        auth: impl Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    ) -> SyncHubBuilder<S2, F>
    where
        S2: Send + Sync + 'static,
        Fut: Future<Output = Result<Identity<S2>, Refusal>> + Send + 'static,
    {
        let auth: AuthFn = Arc::new(move |req| {
            let fut = auth(req);
            Box::pin(async move {
                let id = fut.await?;
                Ok((Arc::from(id.user), Arc::new(id.session) as AnyArc))
            })
        });
        SyncHubBuilder {
            auth: Some(auth),
            functions: self.functions,
            config: self.config,
            backplane: self.backplane,
            _session: std::marker::PhantomData,
        }
    }

    /// Admit everyone, each connection as its own anonymous user with session `()`.
    pub fn guests(self) -> SyncHubBuilder<(), F> {
        let next = AtomicU64::new(1);
        self.authenticate(move |_| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(Identity::new(format!("guest-{n}"), ())))
        })
    }

    /// The app's backend helpers handed to every filter and gate (database pool and the like).
    /// Default: `()`.
    pub fn functions<F2: Send + Sync + 'static>(self, functions: F2) -> SyncHubBuilder<S, F2> {
        SyncHubBuilder {
            auth: self.auth,
            functions: Arc::new(functions),
            config: self.config,
            backplane: self.backplane,
            _session: std::marker::PhantomData,
        }
    }

    /// Where the endpoints are mounted. Default: `/_sync` (WebSocket at `/_sync/ws`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into().trim_end_matches('/').to_owned();
        self
    }

    /// How long one filter may take before its recipient is skipped. Default: 2 s.
    pub fn filter_deadline(mut self, deadline: Duration) -> Self {
        self.config.filter_deadline = deadline;
        self
    }

    /// Frames queued per connection before it is closed as a slow consumer (code 4008). Default: 4096.
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.config.outbound_queue = frames.max(1);
        self
    }

    /// Triggers queued per path before `sync_request!` gets `overloaded`. Default: 4096.
    pub fn lane_queue(mut self, triggers: usize) -> Self {
        self.config.lane_queue = triggers.max(1);
        self
    }

    /// Largest client message answered normally; larger ones get `too_large`. Default: 64 KiB.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.config.max_message_bytes = bytes;
        self
    }

    /// Hard cap on a WebSocket frame; larger ones close the connection (code 1009). Default: 1 MiB.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame_bytes = bytes;
        self
    }

    /// Messages per second per connection (token bucket) and the burst allowed. Default: 200/s, burst 2000.
    pub fn rate_limit(mut self, per_sec: u32, burst: u32) -> Self {
        self.config.rate_per_sec = per_sec.max(1);
        self.config.rate_burst = burst.max(1);
        self
    }

    /// Connections one user may hold at once (tabs, devices, parked ones included); more get `429`
    /// before the upgrade. Default: 64.
    pub fn max_connections_per_user(mut self, connections: usize) -> Self {
        self.config.max_connections_per_user = connections.max(1);
        self
    }

    /// The socket buffers of each connection: the read buffer is allocated for every connection, so it is
    /// the main per-connection memory cost; writes are batched up to the write size before a flush forces
    /// them out. Default: 1 KiB read (larger messages arrive in several reads), 16 KiB write.
    pub fn socket_buffers(mut self, read: usize, write: usize) -> Self {
        self.config.socket_read_buffer = read.max(256);
        self.config.socket_write_buffer = write;
        self
    }

    /// How often an idle SSE stream gets a keepalive comment, so that proxies keep it open and a dead
    /// client is noticed. Default: 30 seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let hub = sync_runtime::SyncHub::builder()
    ///     .guests()
    ///     .sse_keepalive(Duration::from_secs(15))
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn sse_keepalive(mut self, every: Duration) -> Self {
        self.config.sse_keepalive = every.max(Duration::from_millis(10));
        self
    }

    /// Messages per second shared by all connections of one user, and the burst. Default: 500/s, burst 5000.
    pub fn user_rate_limit(mut self, per_sec: u32, burst: u32) -> Self {
        self.config.user_rate_per_sec = per_sec.max(1);
        self.config.user_rate_burst = burst.max(1);
        self
    }

    /// Browser origins allowed besides the server's own (`https://app.example.com`). Default: none; requests
    /// without an `Origin` header (non-browser clients) are always allowed.
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// How long a connection whose socket dropped stays on its routes, buffering, so that a client
    /// reconnecting within it gets every reaction it missed. `Duration::ZERO` turns resume off.
    /// Default: 2 minutes.
    pub fn resume_grace(mut self, grace: Duration) -> Self {
        self.config.resume_grace = grace;
        self
    }

    /// Reactions kept per connection after sending, to replay those lost in flight when a socket drops.
    /// A client that missed more than this (or more than the outbound queue while away) gets `resync`.
    /// Each kept frame costs its size (shared between recipients when there is no server file).
    /// Default: 64.
    pub fn replay_frames(mut self, frames: usize) -> Self {
        self.config.replay_frames = frames;
        self
    }

    /// Collect every registered sync and check that its handlers use this hub's session and functions types.
    pub fn build(self) -> Result<SyncHub, BuildError> {
        let mut problems = Vec::new();
        let auth = self.auth.unwrap_or_else(|| {
            problems.push(
                "no authenticator: call `.authenticate(..)` to map requests to sessions, or `.guests()` to admit everyone"
                    .to_owned(),
            );
            Arc::new(|_| Box::pin(std::future::ready(Err(Refusal::new("no authenticator")))))
        });
        let session = std::any::TypeId::of::<S>();
        let functions = std::any::TypeId::of::<F>();
        let mut table = SyncTable::default();
        for reg in inventory::iter::<Registration> {
            let erased = (reg.build)();
            if let Some((s, f)) = erased.0.server_types() {
                let file = reg.server_file.unwrap_or(reg.client_file);
                if s.id != session {
                    problems.push(format!(
                        "{file}: `filter` takes session type `{}`, but the hub's authenticator produces `{}`",
                        s.name,
                        std::any::type_name::<S>()
                    ));
                }
                if f.id != functions {
                    problems.push(format!(
                        "{file}: `filter` takes functions type `{}`, but the hub was given `{}`",
                        f.name,
                        std::any::type_name::<F>()
                    ));
                }
            }
            if let Err(p) = table.insert(reg, erased) {
                problems.push(p);
            }
        }
        if let Some((backplane, codec)) = &self.backplane {
            if let Some(e) = &backplane.url_error {
                problems.push(e.clone());
            }
            if codec.session != session {
                problems.push(
                    "`.backplane(..)` was called before `.authenticate(..)`: call it after, so that the session type it carries between nodes is the one the authenticator produces"
                        .to_owned(),
                );
            }
            for entry in table.entries() {
                if entry.data_json.is_none() {
                    problems.push(format!(
                        "{}: `Data` must implement `Serialize` to cross nodes on the backplane: add `#[derive(serde::Serialize)]`",
                        entry.client_file
                    ));
                }
            }
            if tokio::runtime::Handle::try_current().is_err() {
                problems.push(
                    "the backplane starts its Redis connections when the hub is built: call `build()` inside a Tokio runtime"
                        .to_owned(),
                );
            }
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let backplane = self.backplane;
        let (backplane_handle, session_codec) = match &backplane {
            Some((config, codec)) => (Some(BackplaneHandle::start(config)), Some(*codec)),
            None => (None, None),
        };
        let inner = Arc::new(HubInner {
            config: self.config,
            table,
            auth,
            functions: self.functions,
            presence: RwLock::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            resumable: Mutex::new(HashMap::new()),
            sse_links: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            socket_closed: Notify::new(),
            next_conn: AtomicU64::new(1),
            stats: Counters::default(),
            backplane: backplane_handle,
            session_codec,
        });
        // Only now that the hub exists: a subscriber started earlier could find no hub and stop for good.
        if let (Some(handle), Some((config, _))) = (&inner.backplane, &backplane) {
            handle.subscribe(config, Arc::downgrade(&inner));
        }
        Ok(SyncHub { inner })
    }
}

pub(crate) struct SyncEntry {
    pub route: &'static str,
    pub name: &'static str,
    pub sync: ErasedSync,
    pub client_file: &'static str,
    pub data_json: Option<DataToJson>,
}

#[derive(Default)]
pub(crate) struct SyncTable {
    pub patterns: PatternSet,
    by_route: HashMap<&'static str, HashMap<&'static str, Arc<SyncEntry>>>,
    routes_of_name: HashMap<&'static str, Vec<&'static str>>,
}

impl SyncTable {
    fn insert(&mut self, reg: &'static Registration, sync: ErasedSync) -> Result<(), String> {
        let syncs = self.by_route.entry(reg.route).or_default();
        if syncs.contains_key(reg.name) {
            return Err(format!(
                "`{}` on `{}` is registered twice ({}); is the route tree included by two crates?",
                reg.name, reg.route, reg.client_file
            ));
        }
        syncs.insert(
            reg.name,
            Arc::new(SyncEntry {
                route: reg.route,
                name: reg.name,
                sync,
                client_file: reg.client_file,
                data_json: (reg.data_json)(),
            }),
        );
        self.patterns.insert(reg.route);
        self.routes_of_name
            .entry(reg.name)
            .or_default()
            .push(reg.route);
        Ok(())
    }

    /// Every registered sync.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<SyncEntry>> {
        self.by_route.values().flat_map(|syncs| syncs.values())
    }

    pub fn get(&self, route: &str, name: &str) -> Option<&Arc<SyncEntry>> {
        self.by_route.get(route)?.get(name)
    }

    /// The sync `name` on `route`, or the stable error a client gets for asking.
    pub fn resolve(
        &self,
        route: Option<&str>,
        name: &str,
    ) -> Result<&Arc<SyncEntry>, (ErrorCode, String)> {
        if let Some(entry) = route.and_then(|r| self.get(r, name)) {
            return Ok(entry);
        }
        match self.routes_of_name.get(name) {
            None => Err((
                ErrorCode::UnknownName,
                format!("no route defines a sync named `{name}`"),
            )),
            Some(routes) => Err((
                ErrorCode::NotOnRoute,
                format!(
                    "`{name}` is defined on {} but this connection is on {}",
                    routes.join(", "),
                    route.unwrap_or("a path without syncs")
                ),
            )),
        }
    }
}

/// Counters a hub keeps; read them with [`SyncHub::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub connections: u64,
    /// Fan-outs run.
    pub fanouts: u64,
    /// Reactions handed to connection queues.
    pub delivered: u64,
    /// Filters that returned an error.
    pub filter_errors: u64,
    /// Filters (or reactions) that panicked.
    pub filter_panics: u64,
    /// Filters that overran the deadline.
    pub filter_timeouts: u64,
    /// Connections closed because their queue overflowed.
    pub slow_consumers: u64,
    /// Client messages answered with an error code.
    pub rejected_messages: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub fanouts: AtomicU64,
    pub delivered: AtomicU64,
    pub filter_errors: AtomicU64,
    pub filter_panics: AtomicU64,
    pub filter_timeouts: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub rejected_messages: AtomicU64,
}

/// A frame waiting in a connection's queue.
pub(crate) enum Outbound {
    /// A reaction: the writer prefixes `{"t":"reaction","seq":N` to this shared tail.
    Reaction(Arc<str>),
    /// A complete control frame.
    Control(String),
}

/// A token bucket: `rate` messages per second, up to `burst` at once.
pub(crate) struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: std::time::Instant,
}

impl RateLimit {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimit {
            tokens: f64::from(burst),
            rate: f64::from(per_sec),
            burst: f64::from(burst),
            last: std::time::Instant::now(),
        }
    }

    pub fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One live connection as the hub sees it.
pub(crate) struct Conn {
    pub id: ConnectionId,
    pub user: Arc<str>,
    pub session: AnyArc,
    pub token: Option<Arc<str>>,
    pub location: Mutex<Option<Location>>,
    /// The token bucket all connections of this user share.
    pub user_limit: Arc<Mutex<RateLimit>>,
    /// Frames waiting for the transport, at most `outbound_queue`. A plain deque rather than a channel:
    /// an idle connection's is empty and holds no memory, and the writer's wake-up is the same
    /// `attention` waker it already waits on.
    queue: Mutex<std::collections::VecDeque<Outbound>>,
    /// Set while a transport's writer serves this connection (at most one at a time).
    pub writing: AtomicBool,
    /// Reactions recently handed to a socket, for replay after a resume.
    pub replay: Mutex<Replay>,
    /// The secret a reconnecting client presents to resume this connection.
    pub resume_key: Arc<str>,
    /// True while no socket is attached and the connection waits out its grace window.
    pub parked: AtomicBool,
    park_generation: AtomicU64,
    /// Set when reactions were dropped while parked: the client must resync.
    pub overflowed: AtomicBool,
    /// Reactions the attached socket may have unacknowledged; 0 when its client does not acknowledge.
    pub window: AtomicU64,
    /// The last `seq` the client acknowledged.
    acked: AtomicU64,
    /// Wakes a writer waiting for room in the window.
    pub acked_signal: Notify,
    /// Set to ask the transport attached now to let go, because the client resumed on a new one.
    pub detach: AtomicBool,
    /// Wakes resumers waiting for the old socket to let go.
    parked_signal: Notify,
    /// Wakes the task serving this connection when it is killed, detached or its transport dropped: one
    /// waiter, so an `AtomicWaker` (a couple of atomics per poll) rather than a `Notify` (a mutex).
    pub attention: futures_util::task::AtomicWaker,
    dead: AtomicBool,
    forgotten: AtomicBool,
    pub close: Mutex<Option<(u16, &'static str)>>,
}

/// Sequence numbers and the last reactions sent, kept across sockets of one connection.
#[derive(Default)]
pub(crate) struct Replay {
    pub last_seq: u64,
    pub sent: std::collections::VecDeque<(u64, Arc<str>)>,
}

impl Replay {
    /// Number the next reaction and remember it (bounded by `keep`).
    pub fn record(&mut self, tail: Arc<str>, keep: usize) -> u64 {
        self.last_seq += 1;
        if keep > 0 {
            if self.sent.len() >= keep {
                self.sent.pop_front();
            }
            self.sent.push_back((self.last_seq, tail));
        }
        self.last_seq
    }

    /// What a client that last saw `seen` missed, or `None` when some of it is no longer kept.
    pub fn since(&self, seen: u64) -> Option<Vec<(u64, Arc<str>)>> {
        if seen >= self.last_seq {
            return Some(Vec::new());
        }
        let first_kept = self.sent.front().map_or(self.last_seq + 1, |(seq, _)| *seq);
        if seen + 1 < first_kept {
            return None;
        }
        Some(
            self.sent
                .iter()
                .filter(|(seq, _)| *seq > seen)
                .cloned()
                .collect(),
        )
    }
}

impl Conn {
    /// Queue a frame without waiting. A full queue closes the connection as a slow consumer.
    pub fn push(&self, hub: &HubInner, out: Outbound) -> bool {
        if self.is_dead() {
            return false;
        }
        let mut queue = self.queue.lock().expect("queue lock is never poisoned");
        if queue.len() < hub.config.outbound_queue {
            let was_empty = queue.is_empty();
            queue.push_back(out);
            drop(queue);
            // A writer with frames left drains them before it waits again: only the first one wakes it.
            if was_empty {
                self.attention.wake();
            }
            return true;
        }
        drop(queue);
        if self.parked.load(Ordering::Acquire) {
            // Nobody is reading while parked: drop, and have the client resync when it returns.
            self.overflowed.store(true, Ordering::Release);
        } else if self.kill(close_code::SLOW_CONSUMER, "slow consumer") {
            hub.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "sync_runtime::fanout", conn = %self.id, "outbound queue full; closing as slow consumer");
        }
        false
    }

    /// Move up to `max` queued frames into `batch`; how many.
    pub fn take(&self, batch: &mut Vec<Outbound>, max: usize) -> usize {
        let mut queue = self.queue.lock().expect("queue lock is never poisoned");
        let n = queue.len().min(max);
        batch.extend(queue.drain(..n));
        // A burst's worth of room goes back once the connection is idle again.
        if queue.is_empty() && queue.capacity() > 64 {
            *queue = std::collections::VecDeque::new();
        }
        n
    }

    /// Whether frames are waiting.
    pub fn has_queued(&self) -> bool {
        !self
            .queue
            .lock()
            .expect("queue lock is never poisoned")
            .is_empty()
    }

    /// The client has processed every reaction up to `seq`: they need no replay any more. False when
    /// `seq` acknowledges nothing new or reactions that were never sent.
    pub fn ack(&self, seq: u64) -> bool {
        let mut replay = self.replay.lock().expect("replay lock is never poisoned");
        if seq > replay.last_seq || seq <= self.acked.load(Ordering::Acquire) {
            return false;
        }
        self.acked.store(seq, Ordering::Release);
        while replay.sent.front().is_some_and(|(s, _)| *s <= seq) {
            replay.sent.pop_front();
        }
        drop(replay);
        self.acked_signal.notify_one();
        true
    }

    /// The `seq` of the last reaction handed to a socket.
    pub fn sent_seq(&self) -> u64 {
        self.replay
            .lock()
            .expect("replay lock is never poisoned")
            .last_seq
    }

    /// Reactions sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent_seq()
            .saturating_sub(self.acked.load(Ordering::Acquire))
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Ask the connection's tasks to close with `code`. True the first time.
    pub fn kill(&self, code: u16, reason: &'static str) -> bool {
        {
            // The close code is in place before anyone can see the connection dead.
            let mut close = self
                .close
                .lock()
                .expect("close lock is never poisoned: no code panics under it");
            if self.dead.load(Ordering::Acquire) {
                return false;
            }
            *close = Some((code, reason));
            self.dead.store(true, Ordering::Release);
        }
        self.attention.wake();
        true
    }

    /// Ask the transport attached now to let go (a resume is waiting for the connection).
    pub fn request_detach(&self) {
        self.detach.store(true, Ordering::Release);
        self.attention.wake();
    }

    pub fn peer(&self, location: Location) -> ErasedPeer {
        ErasedPeer {
            user: self.user.clone(),
            session: self.session.clone(),
            token: self.token.clone(),
            location,
            connection: self.id,
        }
    }

    pub fn current_location(&self) -> Option<Location> {
        self.location
            .lock()
            .expect("location lock is never poisoned")
            .clone()
    }
}

struct UserEntry {
    connections: usize,
    limit: Arc<Mutex<RateLimit>>,
}

/// Everyone on one concrete path.
struct Bucket {
    location: Location,
    conns: HashMap<ConnectionId, Arc<Conn>>,
}

pub(crate) struct HubInner {
    pub config: HubConfig,
    pub table: SyncTable,
    pub auth: AuthFn,
    pub functions: AnyArc,
    presence: RwLock<HashMap<Arc<str>, Bucket>>,
    lanes: Mutex<HashMap<Arc<str>, mpsc::Sender<Job>>>,
    /// Every connection that can be resumed (attached or parked), by resume key.
    resumable: Mutex<HashMap<Arc<str>, Arc<Conn>>>,
    /// Connections with an SSE stream attached now, by resume key, for their `POST`s.
    pub sse_links: crate::sse::Links,
    /// Connections and the shared message budget per user.
    users: Mutex<HashMap<Arc<str>, UserEntry>>,
    /// Set by [`SyncHub::shutdown`]: new upgrades are refused.
    pub shutting_down: AtomicBool,
    /// Notified whenever a socket closes, for `shutdown` to wait on.
    pub socket_closed: Notify,
    next_conn: AtomicU64,
    pub stats: Counters,
    /// Set when the hub shares triggers through Redis.
    backplane: Option<BackplaneHandle>,
    session_codec: Option<SessionCodec>,
}

/// Where a fan-out's outcome goes.
pub(crate) enum Reply {
    None,
    Caller(oneshot::Sender<Result<Outcome, SyncError>>),
    Frame { conn: Arc<Conn>, id: u64 },
}

impl Reply {
    fn send(self, hub: &HubInner, result: Result<Outcome, SyncError>) {
        match self {
            Reply::None => {}
            Reply::Caller(tx) => {
                let _ = tx.send(result);
            }
            Reply::Frame { conn, id } => {
                let frame = match result {
                    Ok(outcome) => serde_json::to_string(&ResultFrame {
                        t: "result",
                        id,
                        outcome,
                    })
                    .expect("a result frame has only integers"),
                    Err(e) => error_frame(Some(id), e.code, &e.message),
                };
                conn.push(hub, Outbound::Control(frame));
            }
        }
    }
}

pub(crate) struct Sender {
    /// The sending connection when it is on this node; `None` for a sender on another node.
    pub conn: Option<Arc<Conn>>,
    pub peer: ErasedPeer,
    pub echo: bool,
}

pub(crate) struct Job {
    pub entry: Arc<SyncEntry>,
    pub location: Location,
    pub data: AnyArc,
    pub sender: Option<Sender>,
    pub reply: Reply,
}

/// A request's failure: a stable [`ErrorCode`] and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl SyncError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SyncError {
            code,
            message: message.into(),
        }
    }
}

impl Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SyncError {}

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
    fn failed(error: SyncError) -> Self {
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
        let c = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections: get(&c.connections),
            fanouts: get(&c.fanouts),
            delivered: get(&c.delivered),
            filter_errors: get(&c.filter_errors),
            filter_panics: get(&c.filter_panics),
            filter_timeouts: get(&c.filter_timeouts),
            slow_consumers: get(&c.slow_consumers),
            rejected_messages: get(&c.rejected_messages),
        }
    }

    /// The number of connections currently on `path`.
    pub fn present(&self, path: &str) -> usize {
        let Some(path) = normalize(path) else {
            return 0;
        };
        self.inner
            .presence
            .read()
            .expect("presence lock is never poisoned")
            .get(&path)
            .map_or(0, |b| b.conns.len())
    }

    /// The backplane's connections and counters, or `None` when the hub has no backplane.
    pub fn backplane_status(&self) -> Option<BackplaneStatus> {
        self.inner.backplane.as_ref().map(BackplaneHandle::status)
    }

    /// Trigger sync `name` on a concrete `path` (`/posts/7`) from Rust code: background jobs, tests. The
    /// data is checked against the sync's `Data` type first. No origin gate runs: server code is trusted.
    pub fn request(&self, path: &str, name: &str, data: impl serde::Serialize) -> Pending {
        let Some(path) = normalize(path) else {
            return Pending::failed(SyncError::new(
                ErrorCode::BadPath,
                format!("`{path}` is not an absolute path"),
            ));
        };
        let location = self.inner.locate(path);
        let entry = match self.inner.table.resolve(location.route(), name) {
            Ok(entry) => entry.clone(),
            Err((code, message)) => return Pending::failed(SyncError::new(code, message)),
        };
        let json = match serde_json::to_string(&data) {
            Ok(json) => json,
            Err(e) => return Pending::failed(SyncError::new(ErrorCode::BadData, e.to_string())),
        };
        match entry.sync.0.parse(&json) {
            Ok(data) => self.inner.submit(entry, location, data),
            Err(e) => Pending::failed(SyncError::new(ErrorCode::BadData, e)),
        }
    }

    /// Close every connection with "going away" (1001) so that clients reconnect elsewhere or later,
    /// refuse new ones (503), and wait until the sockets have closed, at most `deadline`. Fan-outs already
    /// queued still run; their reactions go to whoever is still connected. Returns the sockets still open
    /// at the deadline (0 when all closed in time).
    ///
    /// ```no_run
    /// # async fn f(hub: sync_runtime::SyncHub) {
    /// let open = hub.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert_eq!(open, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> u64 {
        self.inner.shutting_down.store(true, Ordering::Release);
        let conns: Vec<Arc<Conn>> = self
            .inner
            .resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .values()
            .cloned()
            .chain(
                self.inner
                    .presence
                    .read()
                    .expect("presence lock is never poisoned")
                    .values()
                    .flat_map(|b| b.conns.values().cloned()),
            )
            .collect();
        for conn in &conns {
            conn.kill(close_code::GOING_AWAY, "server shutting down");
            if conn.parked.load(Ordering::Acquire) {
                self.inner.forget(conn);
            }
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let closed = self.inner.socket_closed.notified();
            let open = self.inner.stats.connections.load(Ordering::Acquire);
            if open == 0 || tokio::time::timeout_at(until, closed).await.is_err() {
                return self.inner.stats.connections.load(Ordering::Acquire);
            }
        }
    }

    /// Close every connection of `user` (e.g. after revoking their token). Returns how many were closed.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let conns: Vec<Arc<Conn>> = {
            let presence = self
                .inner
                .presence
                .read()
                .expect("presence lock is never poisoned");
            presence
                .values()
                .flat_map(|b| b.conns.values())
                .filter(|c| &*c.user == user)
                .cloned()
                .collect()
        };
        let mut closed = 0;
        for conn in conns {
            closed += usize::from(self.inner.close(
                &conn,
                close_code::REVOKED,
                "disconnected by the server",
            ));
        }
        closed
    }
}

impl HubInner {
    pub fn new_conn_id(&self) -> ConnectionId {
        ConnectionId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Count a new connection for `user`, unless they are at the limit. Undone by `forget`.
    pub fn admit_user(&self, user: &str) -> bool {
        let users = self.users.lock().expect("users lock is never poisoned");
        users
            .get(user)
            .is_none_or(|u| u.connections < self.config.max_connections_per_user)
    }

    pub fn new_conn(&self, user: Arc<str>, session: AnyArc, token: Option<Arc<str>>) -> Arc<Conn> {
        let id = self.new_conn_id();
        let user_limit = {
            let mut users = self.users.lock().expect("users lock is never poisoned");
            let entry = users.entry(user.clone()).or_insert_with(|| UserEntry {
                connections: 0,
                limit: Arc::new(Mutex::new(RateLimit::new(
                    self.config.user_rate_per_sec,
                    self.config.user_rate_burst,
                ))),
            });
            entry.connections += 1;
            entry.limit.clone()
        };
        let conn = Arc::new(Conn {
            id,
            user_limit,
            user,
            session,
            token,
            location: Mutex::new(None),
            queue: Mutex::new(std::collections::VecDeque::new()),
            writing: AtomicBool::new(false),
            replay: Mutex::new(Replay::default()),
            resume_key: secret(id.0),
            parked: AtomicBool::new(false),
            park_generation: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            window: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_signal: Notify::new(),
            detach: AtomicBool::new(false),
            parked_signal: Notify::new(),
            attention: futures_util::task::AtomicWaker::new(),
            dead: AtomicBool::new(false),
            forgotten: AtomicBool::new(false),
            close: Mutex::new(None),
        });
        if !self.config.resume_grace.is_zero() {
            self.resumable
                .lock()
                .expect("resumable lock is never poisoned")
                .insert(conn.resume_key.clone(), conn.clone());
        }
        conn
    }

    /// Keep a connection whose socket dropped on its routes for the grace window, buffering for it.
    pub fn park(self: &Arc<Self>, conn: &Arc<Conn>) {
        let grace = self.config.resume_grace;
        if grace.is_zero() || conn.is_dead() {
            return self.forget(conn);
        }
        let generation = {
            let _resumable = self
                .resumable
                .lock()
                .expect("resumable lock is never poisoned");
            conn.parked.store(true, Ordering::Release);
            conn.park_generation.fetch_add(1, Ordering::AcqRel) + 1
        };
        conn.parked_signal.notify_waiters();
        let hub = self.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let expired = {
                let mut resumable = hub
                    .resumable
                    .lock()
                    .expect("resumable lock is never poisoned");
                let still = conn.parked.load(Ordering::Acquire)
                    && conn.park_generation.load(Ordering::Acquire) == generation;
                if still {
                    resumable.remove(&conn.resume_key);
                }
                still
            };
            if expired {
                tracing::debug!(target: "sync_runtime::ws", conn = %conn.id, "grace window over; connection forgotten");
                hub.forget(&conn);
            }
        });
    }

    /// Take a connection back for a new socket of the same user. If its old socket is still attached
    /// (the server has not noticed it died, as is usual after a network change), ask it to let go first.
    pub async fn resume(&self, key: &str, user: &str) -> Option<Arc<Conn>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let (conn, generation) = {
                let resumable = self
                    .resumable
                    .lock()
                    .expect("resumable lock is never poisoned");
                let conn = resumable
                    .get(key)
                    .filter(|c| &*c.user == user && !c.is_dead())?
                    .clone();
                // Claim it under the lock, so the grace timer and other resumers see it taken.
                if conn
                    .parked
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Some(conn);
                }
                let generation = conn.park_generation.load(Ordering::Acquire);
                (conn, generation)
            };
            // Ask the attached socket to let go until it has parked (a new generation), re-asking in case
            // it had not started listening yet.
            loop {
                let parked = conn.parked_signal.notified();
                if conn.park_generation.load(Ordering::Acquire) != generation || conn.is_dead() {
                    break;
                }
                conn.request_detach();
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), parked).await;
            }
        }
    }

    /// Close `conn` with `code`: an attached transport sends the close and forgets the connection; a parked
    /// one has no task to do that, so it is forgotten here. True the first time.
    pub fn close(&self, conn: &Arc<Conn>, code: u16, reason: &'static str) -> bool {
        let first = conn.kill(code, reason);
        if conn.parked.load(Ordering::Acquire) {
            self.forget(conn);
        }
        first
    }

    /// The connection a resume key names, attached or parked.
    pub fn by_resume_key(&self, key: &str) -> Option<Arc<Conn>> {
        self.resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .get(key)
            .cloned()
    }

    /// Remove a connection for good: off every route, out of the parked set.
    pub fn forget(&self, conn: &Arc<Conn>) {
        if conn.forgotten.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut users = self.users.lock().expect("users lock is never poisoned");
            if let Some(entry) = users.get_mut(&conn.user) {
                entry.connections -= 1;
                if entry.connections == 0 {
                    users.remove(&conn.user);
                }
            }
        }
        conn.kill(1000, "closed");
        conn.parked.store(false, Ordering::Release);
        self.resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .remove(&conn.resume_key);
        self.move_conn(conn, None);
    }

    /// The location for a normalized path: which route it matches, and its params.
    pub fn locate(&self, path: Arc<str>) -> Location {
        match self.table.patterns.lookup(&path) {
            Some((route, params)) => Location::new(path, Some(route), params),
            None => Location::new(path, None, Vec::new()),
        }
    }

    /// Move `conn` to `path` (or nowhere) in one step, so a fan-out sees it in exactly one place.
    pub fn move_conn(&self, conn: &Arc<Conn>, path: Option<Arc<str>>) -> Option<Location> {
        let mut presence = self
            .presence
            .write()
            .expect("presence lock is never poisoned");
        let mut current = conn
            .location
            .lock()
            .expect("location lock is never poisoned");
        if let Some(old) = current.take()
            && let Some(bucket) = presence.get_mut(old.path_arc())
        {
            bucket.conns.remove(&conn.id);
            if bucket.conns.is_empty() {
                presence.remove(old.path_arc());
            }
        }
        let path = path?;
        let bucket = presence.entry(path.clone()).or_insert_with(|| Bucket {
            location: self.locate(path),
            conns: HashMap::new(),
        });
        bucket.conns.insert(conn.id, conn.clone());
        *current = Some(bucket.location.clone());
        current.clone()
    }

    fn recipients(&self, path: &str) -> Vec<Arc<Conn>> {
        self.presence
            .read()
            .expect("presence lock is never poisoned")
            .get(path)
            // A connection closed by the server (revoked, slow) gets nothing more, even before its
            // socket task has taken it off the route.
            .map(|b| b.conns.values().filter(|c| !c.is_dead()).cloned().collect())
            .unwrap_or_default()
    }

    /// Queue a job on its path's lane without waiting (for `sync_request!`, which returns at once).
    pub fn submit(
        self: &Arc<Self>,
        entry: Arc<SyncEntry>,
        location: Location,
        data: AnyArc,
    ) -> Pending {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            entry,
            location,
            data,
            sender: None,
            reply: Reply::Caller(tx),
        };
        self.publish(&job);
        match self.try_enqueue(job) {
            true => Pending {
                state: PendingState::Waiting(rx),
            },
            false => Pending::failed(SyncError::new(
                ErrorCode::Overloaded,
                "this path's trigger queue is full",
            )),
        }
    }

    /// Queue a job on its lane without waiting; false when the lane's queue is full.
    fn try_enqueue(self: &Arc<Self>, job: Job) -> bool {
        let mut lanes = self.lanes.lock().expect("lanes lock is never poisoned");
        let path = job.location.path_arc().clone();
        let job = match lanes.get(&path) {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => return false,
                Err(mpsc::error::TrySendError::Closed(job)) => job,
            },
            None => job,
        };
        let tx = self.spawn_lane(path.clone());
        let sent = tx.try_send(job).is_ok();
        lanes.insert(path, tx);
        sent
    }

    /// Queue a job, waiting for room (for client requests: backpressure reaches the sending socket).
    pub async fn enqueue(self: &Arc<Self>, job: Job) {
        self.publish(&job);
        self.enqueue_here(job).await;
    }

    /// Hand a trigger accepted on this node to the other nodes.
    fn publish(&self, job: &Job) {
        let Some(backplane) = &self.backplane else {
            return;
        };
        let data = job
            .entry
            .data_json
            .and_then(|to_json| to_json(&*job.data))
            .and_then(|json| RawValue::from_string(json).ok());
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
            })
        });
        backplane.publish(WireTrigger {
            path: job.location.path().to_owned(),
            name: job.entry.name.to_owned(),
            data,
            sender,
        });
    }

    /// Fan out a trigger another node accepted, to this node's connections.
    pub async fn receive_remote(self: &Arc<Self>, trigger: WireTrigger) {
        let Some(path) = normalize(&trigger.path) else {
            return;
        };
        let location = self.locate(path);
        let Ok(entry) = self.table.resolve(location.route(), &trigger.name) else {
            // Another version of the app is deployed on that node.
            tracing::warn!(target: "sync_runtime::backplane", path = trigger.path, name = trigger.name, "a trigger from another node names a sync this node does not have; ignored");
            return;
        };
        let entry = entry.clone();
        let data = match entry.sync.0.parse(trigger.data.get()) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(target: "sync_runtime::backplane", path = trigger.path, name = trigger.name, error = e, "a trigger from another node has data this node cannot read; ignored");
                return;
            }
        };
        let sender = trigger.sender.and_then(|s| {
            let session = (self.session_codec?.decode)(s.session.get())?;
            let location = match s.path.and_then(|p| normalize(&p)) {
                Some(path) => self.locate(path),
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
                },
                echo: true,
            })
        });
        self.enqueue_here(Job {
            entry,
            location,
            data,
            sender,
            reply: Reply::None,
        })
        .await;
    }

    /// Tell every connection of this node that it may have missed reactions.
    pub fn resync_all(&self) {
        let conns: Vec<Arc<Conn>> = self
            .resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .values()
            .cloned()
            .collect();
        for conn in conns {
            conn.push(self, Outbound::Control(r#"{"t":"resync"}"#.to_owned()));
        }
    }

    /// Queue a job on this node, waiting for room.
    async fn enqueue_here(self: &Arc<Self>, mut job: Job) {
        loop {
            let tx = {
                let mut lanes = self.lanes.lock().expect("lanes lock is never poisoned");
                let path = job.location.path_arc().clone();
                match lanes.get(&path) {
                    Some(tx) if !tx.is_closed() => tx.clone(),
                    _ => {
                        let tx = self.spawn_lane(path.clone());
                        lanes.insert(path, tx.clone());
                        tx
                    }
                }
            };
            match tx.send(job).await {
                Ok(()) => return,
                // The lane went idle and exited between the lookup and the send: make a new one.
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
    }

    fn spawn_lane(self: &Arc<Self>, path: Arc<str>) -> mpsc::Sender<Job> {
        let (tx, mut rx) = mpsc::channel::<Job>(self.config.lane_queue);
        let hub = self.clone();
        let own = tx.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(hub.config.lane_idle, rx.recv()).await {
                    Ok(Some(job)) => hub.fan_out(job).await,
                    Ok(None) => break,
                    Err(_idle) => {
                        let mut lanes = hub.lanes.lock().expect("lanes lock is never poisoned");
                        // Senders only send while holding this lock (try_enqueue) or re-check for a
                        // closed lane (enqueue), so an empty queue here stays empty once we close it.
                        if rx.is_empty() {
                            if lanes.get(&path).is_some_and(|tx| tx.same_channel(&own)) {
                                lanes.remove(&path);
                            }
                            rx.close();
                            break;
                        }
                    }
                }
            }
            // Anything that raced in before `close` still runs, in order.
            while let Ok(job) = rx.try_recv() {
                hub.fan_out(job).await;
            }
        });
        tx
    }

    /// Run one trigger: every recipient on the path, filters concurrently, in this lane's order.
    async fn fan_out(&self, job: Job) {
        let Job {
            entry,
            location,
            data,
            sender,
            reply,
        } = job;
        self.stats.fanouts.fetch_add(1, Ordering::Relaxed);
        let skip = sender
            .as_ref()
            .filter(|s| !s.echo)
            .and_then(|s| s.conn.as_ref())
            .map(|c| c.id);
        let recipients: Vec<Arc<Conn>> = self
            .recipients(location.path())
            .into_iter()
            .filter(|c| Some(c.id) != skip)
            .collect();
        let mut outcome = Outcome {
            matched: count(recipients.len()),
            ..Outcome::default()
        };
        if recipients.is_empty() {
            reply.send(self, Ok(outcome));
            return;
        }
        let route = entry.route;
        if entry.sync.0.server_types().is_none() {
            // Same reaction for everyone: computed and serialized once.
            let reaction = catch(|| entry.sync.0.react_shared(&data));
            let Some(reaction) = reaction.flatten() else {
                self.stats.filter_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "sync_runtime::fanout", route, name = entry.name, "client reaction panicked");
                outcome.failed = outcome.matched;
                reply.send(self, Ok(outcome));
                return;
            };
            let tail = frame_tail(&location, entry.name, &reaction);
            outcome.passed = outcome.matched;
            for conn in &recipients {
                if conn.push(self, Outbound::Reaction(tail.clone())) {
                    outcome.delivered += 1;
                }
            }
        } else if entry.sync.0.filters_inline() {
            // A synchronous filter runs in place: no future, box or task per recipient. It cannot overrun
            // a deadline that nothing could enforce anyway; a panic still skips only its recipient.
            let sender_peer = sender.as_ref().map(|s| &s.peer);
            let mut last = None;
            for (i, conn) in recipients.iter().enumerate() {
                let peer = conn.peer(location.clone());
                let verdict = catch(|| {
                    entry
                        .sync
                        .0
                        .filter_react_inline(&data, &peer, sender_peer, &self.functions)
                })
                .map(|inline| inline.expect("filters_inline said it answers"));
                let verdict = match verdict {
                    Some(result) => Verdict::from(result),
                    None => Verdict::Panicked,
                };
                self.record(&mut outcome, &entry, &location, conn, verdict, &mut last);
                // Let other lanes run during a long fan-out.
                if i % 1024 == 1023 {
                    tokio::task::yield_now().await;
                }
            }
        } else {
            let sender_peer = sender.as_ref().map(|s| &s.peer);
            let deadline = self.config.filter_deadline;
            let mut running: FuturesUnordered<_> = recipients
                .iter()
                .map(|conn| {
                    let peer = conn.peer(location.clone());
                    let work =
                        entry
                            .sync
                            .0
                            .filter_react(&data, &peer, sender_peer, &self.functions);
                    async move {
                        let result =
                            tokio::time::timeout(deadline, AssertUnwindSafe(work).catch_unwind())
                                .await;
                        (conn, result)
                    }
                })
                .collect();
            let mut last = None;
            while let Some((conn, result)) = running.next().await {
                let verdict = match result {
                    Ok(Ok(result)) => Verdict::from(result),
                    Ok(Err(_panic)) => Verdict::Panicked,
                    Err(_elapsed) => Verdict::Overran(deadline),
                };
                self.record(&mut outcome, &entry, &location, conn, verdict, &mut last);
            }
        }
        self.stats
            .delivered
            .fetch_add(u64::from(outcome.delivered), Ordering::Relaxed);
        reply.send(self, Ok(outcome));
    }
}

/// What became of one recipient of a filtered fan-out.
enum Verdict {
    Deliver(Reaction),
    Skip,
    Failed(FilterFailure),
    Panicked,
    Overran(Duration),
}

impl From<Result<Option<Reaction>, FilterFailure>> for Verdict {
    fn from(result: Result<Option<Reaction>, FilterFailure>) -> Self {
        match result {
            Ok(Some(reaction)) => Verdict::Deliver(reaction),
            Ok(None) => Verdict::Skip,
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

impl HubInner {
    /// Queue a recipient's reaction, or count and log why it got none.
    ///
    /// `last` remembers the previous recipient's reaction and its serialized frame: recipients whose
    /// filters deliver the same (a team's list, `()`) share one frame, and comparing costs less than
    /// serializing.
    fn record(
        &self,
        outcome: &mut Outcome,
        entry: &SyncEntry,
        location: &Location,
        conn: &Conn,
        verdict: Verdict,
        last: &mut Option<(Reaction, Arc<str>)>,
    ) {
        let (route, name) = (entry.route, entry.name);
        match verdict {
            Verdict::Deliver(reaction) => {
                outcome.passed += 1;
                let tail = match last {
                    Some((previous, tail)) if *previous == reaction => tail.clone(),
                    _ => {
                        let tail = frame_tail(location, name, &reaction);
                        *last = Some((reaction, tail.clone()));
                        tail
                    }
                };
                if conn.push(self, Outbound::Reaction(tail)) {
                    outcome.delivered += 1;
                }
            }
            Verdict::Skip => {}
            Verdict::Failed(FilterFailure::Error(e)) => {
                outcome.failed += 1;
                self.stats.filter_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, error = %e, "filter failed; recipient skipped");
            }
            Verdict::Failed(FilterFailure::Internal(e)) => {
                outcome.failed += 1;
                self.stats.filter_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "sync_runtime::fanout", route, name, error = e, "internal error; recipient skipped");
            }
            Verdict::Panicked => {
                outcome.failed += 1;
                self.stats.filter_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "sync_runtime::fanout", route, name, conn = %conn.id, "filter panicked; recipient skipped");
            }
            Verdict::Overran(deadline) => {
                outcome.failed += 1;
                self.stats.filter_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, ?deadline, "filter overran its deadline; recipient skipped");
            }
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

/// Everything of a reaction frame after its per-connection sequence number.
fn frame_tail(location: &Location, name: &str, reaction: &Reaction) -> Arc<str> {
    #[derive(serde::Serialize)]
    struct Tail<'a> {
        path: &'a str,
        route: Option<&'a str>,
        name: &'a str,
        reaction: &'a Reaction,
    }
    let mut tail = serde_json::to_string(&Tail {
        path: location.path(),
        route: location.route(),
        name,
        reaction,
    })
    .unwrap_or_else(|e| {
        tracing::error!(target: "sync_runtime::fanout", error = %e, "reaction failed to serialize");
        r#"{"reaction":{"kind":"batch","items":[]}}"#.to_owned()
    });
    // `{"path":..}` becomes `,"path":..}` so that the writer can put `{"t":"reaction","seq":N` before it.
    tail.replace_range(..1, ",");
    Arc::from(tail)
}

/// Generated code's entry point behind `sync_request!`.
pub(crate) fn request_typed<D: Send + Sync + 'static>(
    route: &'static str,
    name: &'static str,
    params: &[(&str, &dyn Display)],
    data: D,
) -> Pending {
    let Some(hub) = SyncHub::current() else {
        tracing::warn!(target: "sync_runtime::trigger", route, name, "sync_request! outside any hub: use `hub.attach(router)`, `hub.scope(..)` or `hub.install_global()`");
        return Pending::failed(SyncError::new(ErrorCode::NoHub, "no hub in scope"));
    };
    let Some(entry) = hub.inner.table.get(route, name).cloned() else {
        return Pending::failed(SyncError::new(
            ErrorCode::UnknownName,
            format!("`{name}` on `{route}` is not registered with this hub"),
        ));
    };
    let path = match hub.inner.table.patterns.get(route).map(|p| p.fill(params)) {
        Some(Ok(path)) => path,
        Some(Err(e)) => return Pending::failed(SyncError::new(ErrorCode::BadParams, e)),
        None => {
            return Pending::failed(SyncError::new(
                ErrorCode::UnknownName,
                format!("no route `{route}`"),
            ));
        }
    };
    let location = hub.inner.locate(Arc::from(path));
    hub.inner.submit(entry, location, Arc::new(data))
}

/// An unguessable resume key: 128 bits from two independently seeded SipHash instances.
fn secret(salt: u64) -> Arc<str> {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = std::collections::hash_map::RandomState::new().hash_one((salt, nanos));
    let b = std::collections::hash_map::RandomState::new().hash_one((nanos, salt));
    Arc::from(format!("{a:016x}{b:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(n: u64) -> Arc<str> {
        Arc::from(n.to_string())
    }

    #[test]
    fn replay_returns_what_was_missed_or_none_when_evicted() {
        let mut replay = Replay::default();
        for n in 1..=10 {
            assert_eq!(replay.record(tail(n), 4), n);
        }
        assert_eq!(replay.since(10), Some(vec![]));
        let missed: Vec<u64> = replay
            .since(7)
            .expect("kept")
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(missed, vec![8, 9, 10]);
        assert_eq!(replay.since(6).expect("kept").len(), 4);
        assert_eq!(replay.since(5), None, "seq 6 was evicted");
    }

    #[test]
    fn resume_keys_differ() {
        assert_ne!(secret(1), secret(1));
        assert_eq!(secret(1).len(), 32);
    }
}
