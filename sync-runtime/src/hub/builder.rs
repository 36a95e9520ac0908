//! Configuring a hub: every limit with its default, the app's authenticator and functions, and
//! `build`, which checks that every registered handler fits them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{BuildError, BuildProblem, HubConfig};
use crate::auth::{AuthFn, AuthRequest, Identity, Origin, OriginPolicy};
use crate::broker::{Backplane, SessionCodec};
use crate::handler::AnyArc;
use crate::registry::{Registration, SyncTable};
use crate::{Refusal, SyncHub};

/// Session -> what others may see of it (`None`: the session was of another type).
pub(crate) type ViewFn = Arc<dyn Fn(&AnyArc) -> Option<crate::roster::View> + Send + Sync>;

/// The app's presence mapping, its session type erased.
#[derive(Clone)]
pub(crate) struct PresenceMap {
    pub session: std::any::TypeId,
    pub view: ViewFn,
}

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
    functions: AnyArc,
    pub(super) config: HubConfig,
    backplane: Option<(Backplane, SessionCodec)>,
    presence: Option<PresenceMap>,
    /// The app's check that guards the admin page, when enabled ([`admin`](Self::admin)).
    pub(super) admin: Option<super::admin::AdminGuard>,
    _session: std::marker::PhantomData<fn() -> (S, F)>,
}

impl SyncHub {
    /// Start configuring a hub.
    pub fn builder() -> SyncHubBuilder<(), ()> {
        SyncHubBuilder {
            auth: None,
            functions: Arc::new(()),
            config: HubConfig::default(),
            backplane: None,
            presence: None,
            admin: None,
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
    /// Between processes, `Backplane::redis(url)` (feature `redis`); within one process (tests), a
    /// [`MemoryBus`](crate::MemoryBus):
    ///
    /// ```
    /// use sync_runtime::{Backplane, MemoryBus, SyncHub};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let bus = MemoryBus::new();
    /// let node = |bus: &MemoryBus| {
    ///     SyncHub::builder()
    ///         .guests()
    ///         .backplane(Backplane::memory(bus).key_prefix("test"))
    ///         .build()
    ///         .expect("handlers match")
    /// };
    /// let (a, b) = (node(&bus), node(&bus));
    /// # drop((a, b));
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
        SyncHubBuilder {
            auth: Some(crate::auth::erase(auth)),
            functions: self.functions,
            config: self.config,
            backplane: self.backplane,
            presence: self.presence,
            admin: self.admin,
            _session: std::marker::PhantomData,
        }
    }

    /// Admit everyone, each connection as its own anonymous user ([`Identity::guest`]) with session
    /// `()`. A guest resumes with its resume key and sends over SSE like any other connection.
    pub fn guests(self) -> SyncHubBuilder<(), F> {
        self.authenticate(|_| std::future::ready(Ok(Identity::guest(()))))
    }

    /// The app's backend helpers handed to every filter and gate (database pool and the like).
    /// Default: `()`.
    pub fn functions<F2: Send + Sync + 'static>(self, functions: F2) -> SyncHubBuilder<S, F2> {
        SyncHubBuilder {
            auth: self.auth,
            functions: Arc::new(functions),
            config: self.config,
            backplane: self.backplane,
            presence: self.presence,
            admin: self.admin,
            _session: std::marker::PhantomData,
        }
    }

    /// What others on a page may see of a user (SPEC 9): `view` maps a session to a serializable public
    /// view (a name, an avatar; never the token). Users are then listed once per path however many tabs
    /// and nodes they are on: [`SyncHub::presence`] and filters (`cx.here`) read the list, and browsers
    /// receive it (`presence` / `presence_diff` frames; `presence()`, `onPresence` and
    /// `data-sync-presence` in the browser client). Without it the server still lists users, with a
    /// `null` view, and browsers get no presence frames: user keys are not shown to other users unless
    /// the app asks for it. Call it after [`authenticate`](Self::authenticate).
    ///
    /// The user key is part of every listed entry: key users by an opaque id, not an email address.
    ///
    /// ```
    /// use sync_runtime::{Identity, SyncHub};
    ///
    /// struct User { id: u64, name: String, token_hash: String }
    ///
    /// let hub = SyncHub::builder()
    ///     .authenticate(|_req| async {
    ///         let user = User { id: 7, name: "Ada".into(), token_hash: "…".into() };
    ///         Ok(Identity::new(user.id.to_string(), user))
    ///     })
    ///     .presence(|user: &User| serde_json::json!({ "name": user.name }))
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn presence<V: serde::Serialize>(
        mut self,
        view: impl Fn(&S) -> V + Send + Sync + 'static,
    ) -> Self {
        self.presence = Some(PresenceMap {
            session: std::any::TypeId::of::<S>(),
            view: Arc::new(move |session: &AnyArc| {
                let session = session.downcast_ref::<S>()?;
                serde_json::value::to_raw_value(&view(session))
                    .ok()
                    .map(crate::roster::View::from)
            }),
        });
        self
    }

    /// Users listed to a browser per path, at most (the first ones to come); the count is always
    /// exact. Default: 100.
    pub fn presence_limit(mut self, users: usize) -> Self {
        self.config.presence_limit = users;
        self
    }

    /// How long changes to a path's user list gather before its browsers hear of them, in one
    /// `presence_diff` (a user who comes and goes within it is never sent). A change to the count alone
    /// (a user past the listed ones) goes out at most once per ten windows: in a big room every diff is
    /// one frame per member. Also how often this node tells the others of its changes. Default: 100 ms,
    /// at least 10 ms.
    pub fn presence_window(mut self, window: Duration) -> Self {
        self.config.presence_window = window.max(Duration::from_millis(10));
        self
    }

    /// Where the endpoints are mounted. Default: `/_sync` (WebSocket at `/_sync/ws`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into().trim_end_matches('/').to_owned();
        self
    }

    /// How long one filter call may take before its recipient (or its class) is skipped, and how long a
    /// server file's `prepare` may take before every recipient of the trigger is. Default: 2 s.
    pub fn filter_deadline(mut self, deadline: Duration) -> Self {
        self.config.filter_deadline = deadline;
        self
    }

    /// How many async filter calls of one fan-out may be waiting at once (on a database, say); the next
    /// recipient's call starts when one finishes. A call that completes without waiting does not count,
    /// and costs no task nor timer. Each path runs its fan-outs one at a time, so a hub waits on at most
    /// this many calls per busy path: size it with the database pool. Default: 64.
    ///
    /// ```
    /// # use sync_runtime::SyncHub;
    /// let builder = SyncHub::builder().filter_concurrency(16); // a pool of 16 connections
    /// ```
    pub fn filter_concurrency(mut self, calls: usize) -> Self {
        self.config.filter_concurrency = calls.max(1);
        self
    }

    /// Frames queued per connection before it is closed as a slow consumer (code 4008). Default: 4096.
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.config.outbound_queue = frames.max(1);
        self
    }

    /// Bytes queued per connection (frames and their text) before it is closed as a slow consumer.
    /// Default: 4 MiB.
    pub fn outbound_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.outbound_queue_bytes = bytes.max(1024);
        self
    }

    /// What one parked connection (its transport dropped, waiting for a resume) may hold, its queue and
    /// the reactions kept for replay together. Past either bound it is forgotten at once, and its client
    /// gets `resync` when it comes back. Default: 1024 frames, 256 KiB.
    pub fn parked_queue(mut self, frames: usize, bytes: usize) -> Self {
        self.config.parked_frames = frames.max(1);
        self.config.parked_bytes = bytes.max(1024);
        self
    }

    /// Bounds on parked connections: how many in total, how many per user, and the bytes all of them may
    /// hold together. Past the counts the oldest parked connection is forgotten; a connection whose queue
    /// would pass the byte budget is forgotten. Either way its client gets `resync` when it comes back.
    /// Default: 10,000 in total, 16 per user, 64 MiB.
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder()
    ///     .guests()
    ///     .max_parked(1_000, 4, 16 << 20)
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn max_parked(mut self, total: usize, per_user: usize, bytes: usize) -> Self {
        self.config.max_parked = total;
        self.config.max_parked_per_user = per_user;
        self.config.max_parked_bytes = bytes;
        self
    }

    /// Triggers queued per path before `sync_request!` gets `overloaded`. Default: 4096.
    pub fn lane_queue(mut self, triggers: usize) -> Self {
        self.config.lane_queue = triggers.max(1);
        self
    }

    /// How long a path's lane waits for another trigger before its task ends (a new one starts with the
    /// next trigger). Order holds whatever the value; shorter saves idle tasks, longer saves spawns.
    /// Default: 10 s.
    pub fn lane_idle(mut self, idle: Duration) -> Self {
        self.config.lane_idle = idle;
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
    /// them out. Default: 512 bytes read (a client's messages are small; larger ones arrive in several
    /// reads), 16 KiB write.
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

    /// Browser origins allowed besides the server's own (`https://app.example.com`): scheme, host and
    /// port must all match. The server's own origin is its `Host` with the scheme the request came in on
    /// (`X-Forwarded-Proto` from a proxy that terminates TLS, else `http`); a server that terminates TLS
    /// itself lists its `https://` origin here. Default: none; requests without an `Origin` header
    /// (non-browser clients) are always allowed. An entry that is not an origin fails [`build`](Self::build).
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

    /// Reactions kept per connection after sending, to replay those lost in flight when a socket drops;
    /// with acknowledged delivery, also how many may be unacknowledged at once. A client that missed more
    /// than this (or more than a parked connection may hold while away) gets `resync`.
    /// Default: 64.
    pub fn replay_frames(mut self, frames: usize) -> Self {
        self.config.replay_frames = frames;
        self
    }

    /// Triggers kept per path for clients that come back with a cursor (a page's render, an earlier
    /// connection on any node): a client whose position is older gets `resync`. `0` keeps none; offsets
    /// still count, so a client that missed anything still learns it. Default: 100.
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder().guests().history_size(500).build().expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn history_size(mut self, triggers: usize) -> Self {
        self.config.history.size = triggers;
        self
    }

    /// How long a trigger stays in its path's history. Default: 5 minutes (longer than
    /// [`resume_grace`](Self::resume_grace), so that a client back within the grace window is covered).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let hub = sync_runtime::SyncHub::builder()
    ///     .guests()
    ///     .history_age(Duration::from_secs(600))
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn history_age(mut self, age: Duration) -> Self {
        self.config.history.age = age;
        self
    }

    /// Bytes of history per path and in all (in this process; a Redis backplane keeps history in Redis,
    /// bounded per path by [`history_size`](Self::history_size)). Past the total, the history of the
    /// paths used least recently is dropped first. Default: 256 KiB per path, 64 MiB in all.
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder()
    ///     .guests()
    ///     .history_memory(64 << 10, 16 << 20)
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn history_memory(mut self, per_path: usize, total: usize) -> Self {
        self.config.history.path_bytes = per_path;
        self.config.history.total_bytes = total;
        self
    }

    /// Collect every registered sync and check that its handlers use this hub's session and functions types.
    ///
    /// With no sync registered while the crate being run (`cargo run`, `cargo test`: cargo says which,
    /// in `CARGO_MANIFEST_DIR`) has handler files under `src/`, the route tree was not included, and
    /// every request would get `unknown_name`: [`BuildProblem::RoutesNotIncluded`].
    pub fn build(self) -> Result<SyncHub, BuildError> {
        let mut table = SyncTable::default();
        let mut problems = Vec::new();
        for reg in inventory::iter::<Registration> {
            self.check(reg, &mut table, &mut problems);
        }
        if table.entries().next().is_none()
            && let Some(crate_dir) = std::env::var_os("CARGO_MANIFEST_DIR")
        {
            let files = super::problem::handler_files(std::path::Path::new(&crate_dir));
            if !files.is_empty() {
                problems.push(BuildProblem::RoutesNotIncluded { files });
            }
        }
        self.finish(table, problems)
    }

    /// Build with exactly these registrations (for the crate's own tests, which have no generated tree).
    #[cfg(test)]
    pub(crate) fn build_with(self, regs: &[&'static Registration]) -> Result<SyncHub, BuildError> {
        let mut table = SyncTable::default();
        let mut problems = Vec::new();
        for reg in regs {
            self.check(reg, &mut table, &mut problems);
        }
        self.finish(table, problems)
    }

    fn check(
        &self,
        reg: &'static Registration,
        table: &mut SyncTable,
        problems: &mut Vec<BuildProblem>,
    ) {
        let erased = (reg.build)();
        if let Some((s, f)) = erased.0.server_types {
            let file = reg.server_file.unwrap_or(reg.client_file);
            if s.id != std::any::TypeId::of::<S>() {
                problems.push(BuildProblem::SessionType {
                    file,
                    expected: s.name,
                    actual: std::any::type_name::<S>(),
                });
            }
            if f.id != std::any::TypeId::of::<F>() {
                problems.push(BuildProblem::FunctionsType {
                    file,
                    expected: f.name,
                    actual: std::any::type_name::<F>(),
                });
            }
        }
        if !table.insert(reg, erased) {
            problems.push(BuildProblem::Duplicate {
                route: reg.route,
                name: reg.name,
                file: reg.client_file,
            });
        }
    }

    fn finish(
        self,
        mut table: SyncTable,
        mut problems: Vec<BuildProblem>,
    ) -> Result<SyncHub, BuildError> {
        let admin = super::admin::register::<S, F>(
            self.admin.clone(),
            &self.config.prefix,
            &mut table,
            &mut problems,
        );
        if self.auth.is_none() {
            problems.insert(0, BuildProblem::NoAuthenticator);
        }
        let mut origins = OriginPolicy::default();
        for entry in &self.config.allowed_origins {
            match Origin::parse(entry) {
                Some(origin) => origins.allowed.push(origin),
                None => problems.push(BuildProblem::BadOrigin(entry.clone())),
            }
        }
        if let Some((backplane, codec)) = &self.backplane {
            if let Some(problem) = backplane.problem() {
                problems.push(BuildProblem::Backplane(problem));
            }
            if codec.session != std::any::TypeId::of::<S>() {
                problems.push(BuildProblem::BackplaneBeforeAuthenticate);
            }
            for entry in table.entries() {
                if entry.data_json.is_none() {
                    problems.push(BuildProblem::DataNotSerialize {
                        file: entry.client_file,
                    });
                }
            }
            if tokio::runtime::Handle::try_current().is_err() {
                problems.push(BuildProblem::NoRuntime);
            }
        }
        if let Some(map) = &self.presence
            && map.session != std::any::TypeId::of::<S>()
        {
            problems.push(BuildProblem::PresenceBeforeAuthenticate);
        }
        let Some(auth) = self.auth.filter(|_| problems.is_empty()) else {
            return Err(BuildError { problems });
        };
        Ok(super::assemble(super::Parts {
            config: self.config,
            table,
            auth,
            origins,
            functions: self.functions,
            backplane: self.backplane,
            presence: self.presence,
            session_type: std::any::TypeId::of::<S>(),
            admin,
        }))
    }
}
