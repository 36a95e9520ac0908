//! The transports (WebSocket in `ws`, SSE in `sse`) and what they share: the router, the connect query,
//! admission before a connection exists, attaching to a new or resumed connection, and serving it
//! (`hello`, the replay or `resync`, the writer, the reader) until it parks or is forgotten.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::SyncHub;
use crate::auth::{AuthRequest, Who, bearer};
use crate::conn::writer::{ReadSide, Sink, WriteEnd, write};
use crate::conn::{Conn, Event, Outbound};
use crate::conns::{AdmitError, Reservation};
use crate::declarations;
use crate::fanout::Work;
use crate::history::Cursor;
use crate::hub::HubInner;
use crate::membership::millis_until;
use crate::protocol::server::{Hello, Located, RESYNC, reaction_frame};
use crate::protocol::{PROTOCOL_VERSION, close_code};
use crate::routes::normalize;
use crate::stats::Counters;

mod admin;
mod credential;
pub(crate) mod inbound;
mod sse;
mod ws;

pub(crate) use credential::refresh;
use credential::{renew, watch_expiry};

/// The browser client, embedded in the binary: a plain ES module, no build step.
const CLIENT_JS: &str = include_str!("../../client/sync-client.js");
/// Its query-cache half, which it imports as `./query-cache.js`.
const QUERY_CACHE_JS: &str = include_str!("../../client/query-cache.js");

impl SyncHub {
    /// The sync endpoints (`<prefix>/ws`, `<prefix>/sse`, `<prefix>/client.js` and the module it imports,
    /// `<prefix>/query-cache.js`, and the TypeScript declarations `<prefix>/client.d.ts` and
    /// `<prefix>/types.d.ts`), and the admin page (`<prefix>/admin`) when
    /// [enabled](crate::SyncHubBuilder::admin), to merge into the app's router.
    pub fn router(&self) -> Router {
        let prefix = &self.inner.config.prefix;
        let router = match &self.inner.admin {
            Some(admin) => Router::new().route(&admin.path, get(admin::page)),
            None => Router::new(),
        };
        router
            .route(&format!("{prefix}/ws"), get(ws::upgrade))
            .route(
                &format!("{prefix}/sse"),
                get(sse::stream)
                    .post(sse::post)
                    // A larger message is refused with 413, like a WebSocket frame over the cap.
                    .layer(axum::extract::DefaultBodyLimit::max(
                        self.inner.config.max_frame_bytes,
                    )),
            )
            .route(&format!("{prefix}/client.js"), get(|| script(CLIENT_JS)))
            .route(
                &format!("{prefix}/query-cache.js"),
                get(|| script(QUERY_CACHE_JS)),
            )
            .route(
                &format!("{prefix}/client.d.ts"),
                get(declarations::client_d_ts),
            )
            .route(
                &format!("{prefix}/types.d.ts"),
                get(declarations::types_d_ts),
            )
            .with_state(self.clone())
    }

    /// The app's router with the sync endpoints merged in and this hub in scope for every handler, so
    /// `sync_request!` in page handlers finds it.
    ///
    /// ```no_run
    /// # use axum::{Router, routing::get};
    /// # fn f(hub: sync_runtime::SyncHub) -> Router {
    /// hub.attach(Router::new().route("/dashboard", get(|| async { "dashboard" })))
    /// # }
    /// ```
    pub fn attach(&self, app: Router) -> Router {
        let hub = self.clone();
        app.merge(self.router()).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let hub = hub.clone();
                async move { hub.scope(next.run(req)).await }
            },
        ))
    }
}

async fn script(source: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        source,
    )
        .into_response()
}

/// The query of a connect request (both transports).
#[derive(serde::Deserialize)]
pub(crate) struct ConnectQuery {
    pub path: Option<String>,
    pub token: Option<String>,
    /// The resume key from an earlier `hello`.
    pub resume: Option<String>,
    /// The last reaction `seq` the client processed.
    pub last_seq: Option<u64>,
    /// `1`: the client acknowledges reactions (`ack`), and the server keeps at most a window of them
    /// unacknowledged, so that a resume can always replay what a dying transport lost.
    pub ack: Option<u8>,
    /// The position in `path`'s history the client has had everything up to (`<epoch>:<offset>`).
    pub cursor: Option<String>,
}

/// A request refused before any connection exists: an HTTP status and the reason.
#[derive(Debug)]
pub(crate) struct Refused {
    status: StatusCode,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refused {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

/// Who is asking: the `Origin` check (403), then the app's authenticator (401).
pub(crate) async fn authenticate(
    hub: &HubInner,
    headers: HeaderMap,
    uri: Uri,
    query_token: Option<String>,
) -> Result<(Who, Option<String>), Refused> {
    if !hub.origins.allows(&headers) {
        tracing::warn!(target: "sync_runtime::transport", origin = ?headers.get(header::ORIGIN), "refused a foreign Origin");
        return Err(Refused::new(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let token = bearer(&headers).or(query_token);
    let request = AuthRequest {
        headers,
        uri,
        token: token.clone(),
    };
    match (hub.auth)(request).await {
        Ok(who) => Ok((who, token)),
        Err(refusal) => {
            tracing::debug!(target: "sync_runtime::transport", reason = %refusal, "refused an unauthenticated connection");
            Err(Refused::new(StatusCode::UNAUTHORIZED, refusal.message()))
        }
    }
}

/// How an admitted client gets its connection.
enum Slot {
    /// A new connection, counted against the user's cap already.
    Fresh(Reservation),
    /// It asked to resume a connection that exists (which already counts).
    Resume { key: String, last_seq: u64 },
    /// It asked to resume one that is gone: a new connection, and `resync`.
    Lost(Reservation),
}

/// A client allowed in, before it has a connection.
pub(crate) struct Admitted {
    who: Who,
    token: Option<String>,
    /// The location it asked to start at.
    initial: Option<Arc<str>>,
    /// The position in that location's history it has had everything up to.
    cursor: Option<Cursor>,
    slot: Slot,
}

/// Every check before a connection exists, in the order `docs/PROTOCOL.md` lists them: shutting down
/// (503), foreign `Origin` (403), authentication (401), connections per user (429), `path` (400).
/// The per-user count is taken here, atomically with its check.
pub(crate) async fn admit(
    hub: &HubInner,
    headers: HeaderMap,
    uri: Uri,
    query: &ConnectQuery,
    resume: Option<(String, u64)>,
    cursor: Option<&str>,
) -> Result<Admitted, Refused> {
    if hub.shutting_down.load(Ordering::Acquire) {
        return Err(Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        ));
    }
    let (who, token) = authenticate(hub, headers, uri, query.token.clone()).await?;
    let resumable = resume
        .as_ref()
        .is_some_and(|(key, _)| hub.conns.resumable(key, &who).is_some());
    let slot = match resume {
        Some((key, last_seq)) if resumable => Slot::Resume { key, last_seq },
        resume => {
            let reservation = hub.conns.reserve(&who.user).map_err(|AdmitError::TooMany| {
                tracing::warn!(target: "sync_runtime::transport", user = %who.user, "connection limit per user reached");
                Refused::new(StatusCode::TOO_MANY_REQUESTS, "too many connections for this user")
            })?;
            match resume {
                Some(_) => Slot::Lost(reservation),
                None => Slot::Fresh(reservation),
            }
        }
    };
    let initial = match query.path.as_deref().map(normalize) {
        Some(None) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                "`path` must be an absolute path",
            ));
        }
        Some(Some(path)) => Some(path),
        None => None,
    };
    let cursor = match cursor.map(str::parse::<Cursor>) {
        Some(Err(e)) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                format!("`cursor`: {e}"),
            ));
        }
        // A position means something only on the path it belongs to.
        Some(Ok(cursor)) if initial.is_some() => Some(cursor),
        _ => None,
    };
    Ok(Admitted {
        who,
        token,
        initial,
        cursor,
        slot,
    })
}

/// How a transport begins its life with a connection.
pub(crate) enum Start {
    Fresh,
    /// Asked to resume, but the connection is gone: tell the client to resync.
    Resync,
    Resumed {
        last_seq: u64,
    },
}

/// An admitted client's connection, how it starts, and where.
pub(crate) struct Attached {
    pub conn: Arc<Conn>,
    pub start: Start,
    pub initial: Option<Arc<str>>,
    pub cursor: Option<Cursor>,
}

/// The connection for an admitted client: the one it resumes, or a new one. `None` in the rare race where
/// the connection to resume vanished meanwhile and the user is at the cap: the transport then closes with
/// 1013 (try again later).
pub(crate) async fn attach(hub: &HubInner, admitted: Admitted) -> Option<Attached> {
    let Admitted {
        who,
        token,
        initial,
        cursor,
        slot,
    } = admitted;
    let token: Option<Arc<str>> = token.as_deref().map(Arc::from);
    let view = hub.view_of(&who.session);
    let fresh =
        |reservation: Reservation| reservation.into_conn(who.clone(), view.clone(), token.clone());
    let (conn, start) = match slot {
        Slot::Fresh(reservation) => (fresh(reservation), Start::Fresh),
        Slot::Lost(reservation) => (fresh(reservation), Start::Resync),
        Slot::Resume { key, last_seq } => match hub.conns.resume(&key, &who).await {
            Some(conn) => {
                // The credential just presented is the newest: a guest's is a new guest's, not its own.
                if !who.guest {
                    renew(hub, &conn, &who, view.clone(), token.clone());
                }
                (conn, Start::Resumed { last_seq })
            }
            None => (fresh(hub.conns.reserve(&who.user).ok()?), Start::Resync),
        },
    };
    Some(Attached {
        conn,
        start,
        initial,
        cursor,
    })
}

/// Why the reading side of a transport stopped.
pub(crate) enum ReadEnd {
    /// The client said goodbye (or broke the protocol and was closed): it left on purpose.
    Closed,
    /// The transport died without a goodbye: keep the connection for a resume.
    Dropped,
}

/// Serve `conn` over one transport until it ends: `hello` and the replay (or `resync`) first, then the
/// queue, while the future `reader` makes (a task of its own, so that frames going out never poll the way
/// in) feeds the client's messages in. `reader` makes it only in that task: a future handed in would be
/// stored twice in this one for the connection's whole life (an async fn keeps its arguments' slots), and
/// a third time in the task. A transport that drops parks the connection for a resume; one that closes (or
/// is closed) forgets it.
pub(crate) fn serve<R: Future<Output = ReadEnd> + Send + 'static>(
    hub: Arc<HubInner>,
    transport: Transport,
    attached: Attached,
    sink: impl Sink + 'static,
    reader: impl FnOnce() -> R + Send + 'static,
    acks: bool,
) -> impl Future<Output = ()> + Send {
    // The span wraps the future from outside, so the arguments are stored once (the `instrument`
    // attribute keeps a second copy in every connection's task).
    let conn = &attached.conn;
    let span = tracing::info_span!(
        target: "sync_runtime::conn",
        "sync.conn",
        conn = %conn.id,
        user = %conn.user(),
        transport = transport.name(),
        node = %format_args!("{:016x}", hub.node),
    );
    tracing::Instrument::instrument(run(hub, transport, attached, sink, reader, acks), span)
}

/// Which transport serves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    /// As the `sync.conn` span's `transport` field and the metrics' label name it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }

    /// The gauge of this transport's connections.
    fn gauge(self, counters: &Counters) -> &std::sync::atomic::AtomicU64 {
        match self {
            Transport::WebSocket => &counters.websockets,
            Transport::Sse => &counters.sse_streams,
        }
    }
}

/// The connection's future. A plain function returning an `async move` block rather than an `async fn`:
/// an `async fn` moves each argument into a local of its own, so the future would keep two slots for the
/// sink, the reader and the admission for the connection's whole life.
fn run<R: Future<Output = ReadEnd> + Send + 'static>(
    hub: Arc<HubInner>,
    transport: Transport,
    attached: Attached,
    mut sink: impl Sink,
    reader: impl FnOnce() -> R + Send + 'static,
    acks: bool,
) -> impl Future<Output = ()> + Send {
    let Attached {
        conn,
        start,
        initial,
        cursor,
    } = attached;
    async move {
        if conn.transition(Event::Serve).is_none() {
            // Closed (a shutdown, a revocation) between admission and now.
            hub.conns.forget(&conn);
            return;
        }
        conn.clear_detach();
        transport
            .gauge(&hub.counters)
            .fetch_add(1, Ordering::AcqRel);
        hub.counters.connections.fetch_add(1, Ordering::AcqRel);
        hub.keep_lists();
        watch_expiry(&hub, &conn);
        let Preamble {
            frames: preamble,
            cursor,
            resumed,
        } = preamble(&hub, &conn, start, cursor, acks);
        tracing::debug!(target: "sync_runtime::transport", resumed, replayed = preamble.len() - 1, "connected");
        if resumed && let Some(location) = conn.current_location() {
            // Its client's list may be stale: it gets the whole one again.
            conn.set_listed(None);
            hub.roster.want(location.path_arc());
        }
        if let Some(path) = initial {
            report_location(&hub, &conn, path, cursor).await;
        }
        let side = Arc::new(ReadSide::default());
        let reading = tokio::spawn({
            let (hub, conn, side) = (hub.clone(), conn.clone(), side.clone());
            async move {
                match reader().await {
                    // The client said goodbye: close (the writer answers with a close) and forget.
                    ReadEnd::Closed => {
                        hub.conns.close(&conn, 1000, "closed");
                    }
                    ReadEnd::Dropped => side.dropped(&conn),
                }
            }
        });
        let end = write(&conn, &mut sink, preamble, &side).await;
        reading.abort();
        transport
            .gauge(&hub.counters)
            .fetch_sub(1, Ordering::AcqRel);
        hub.counters.connections.fetch_sub(1, Ordering::AcqRel);
        if end != WriteEnd::Closed && !conn.is_closed() {
            tracing::debug!(target: "sync_runtime::transport", ?end, "transport gone; parked for resume");
            hub.conns.park(&conn);
        } else {
            tracing::debug!(target: "sync_runtime::transport", "disconnected");
            hub.conns.forget(&conn);
        }
        hub.transport_closed.notify_waiters();
    }
}

/// What a connection starts with (see [`preamble`]).
struct Preamble {
    /// `hello`, then a resync or the replay of missed reactions, each with its `seq` if it has one.
    frames: Vec<(Option<u64>, String)>,
    /// The position to catch up from in its path's history, if any.
    cursor: Option<Cursor>,
    resumed: bool,
}

/// What goes out before anything queued: `hello`, then a resync or the replay of missed reactions; with
/// the cursor still to catch up from, and whether the connection resumed. A plain function, so that none
/// of its locals takes room in the connection's future for its whole life.
fn preamble(
    hub: &HubInner,
    conn: &Conn,
    start: Start,
    mut cursor: Option<Cursor>,
    acks: bool,
) -> Preamble {
    let conn_name = conn.id.to_string();
    let resumed = matches!(start, Start::Resumed { .. });
    if resumed {
        Counters::bump(&hub.counters.resumed);
    }
    let window = if acks { conn.keep() } else { 0 };
    conn.window.store(window as u64, Ordering::Release);
    let hello = serde_json::to_string(&Hello {
        t: "hello",
        v: PROTOCOL_VERSION,
        conn: &conn_name,
        resume: &conn.resume_key,
        resumed,
        window: (window > 0).then_some(window),
        expires_in: conn.credentials().expires.map(millis_until),
    })
    .expect("hello has only strings and integers");
    // What goes out before anything queued: hello, then a resync or the replay of missed reactions.
    let (missed, seen) = match start {
        Start::Fresh => (Some(Vec::new()), 0),
        Start::Resync => (None, 0),
        Start::Resumed { last_seq } => {
            // Resuming after `last_seq` acknowledges it.
            conn.ack(last_seq);
            (conn.since(last_seq), last_seq)
        }
    };
    let mut preamble = vec![(Some(seen), hello)];
    let overflowed = conn.take_overflowed();
    // The client's cursor stands in for what this connection cannot replay (it is not this node's, or it
    // overflowed): it gets what came after it from the path's history instead of `resync`. A connection
    // that replays needs none: it would get those reactions twice.
    match missed {
        Some(missed) if !overflowed => {
            if resumed {
                cursor = None;
            }
            preamble.extend(
                missed
                    .iter()
                    .map(|(seq, tail)| (Some(*seq), reaction_frame(*seq, tail))),
            );
        }
        _ if cursor.is_some() => {}
        _ => preamble.push((None, RESYNC.to_owned())),
    }
    Preamble {
        frames: preamble,
        cursor,
        resumed,
    }
}

/// Move `conn` to `path` and tell it where it landed. With a `cursor` (the position in the path's history
/// its client has had everything up to), it then gets what came after, or `resync`.
///
/// Without one, it gets everything after its arrival: on a path this node already follows, what this
/// node runs from now on; on one it does not follow yet (the node subscribes when its first connection
/// arrives), everything after the path's position read now, before it is placed, so that a trigger
/// accepted elsewhere between its `located` and the subscription still reaches it.
pub(crate) async fn report_location(
    hub: &Arc<HubInner>,
    conn: &Arc<Conn>,
    path: Arc<str>,
    cursor: Option<Cursor>,
) {
    let admin = hub.admin.as_ref().filter(|admin| *admin.path == *path);
    if let Some(admin) = admin
        && !admin.allows(&conn.credentials().session)
    {
        // Defence in depth (the page itself is refused with 403): no snapshot would reach it anyway.
        tracing::warn!(target: "sync_runtime::admin", conn = %conn.id, user = %conn.user(), "a connection the admin check refuses went to the admin page; closed");
        hub.presence.remove(conn);
        hub.conns.close(
            conn,
            close_code::FORBIDDEN,
            "the admin page is for admins only",
        );
        return;
    }
    let mut cursor = cursor;
    let moved = !conn.is_on(&path);
    if moved
        && cursor.is_none()
        && admin.is_none()
        && let Some(broker) = &hub.broker
        && !broker.follows(&path)
    {
        cursor = broker.top(path.clone()).await;
    }
    // Its position is set before it appears on the path, so that no trigger there finds it without one.
    if cursor.is_some() || moved {
        conn.set_mark(path.clone(), cursor.clone());
    }
    let location = hub
        .presence
        .place(conn, path.clone(), |path| hub.table.locate(path));
    let frame = serde_json::to_string(&Located {
        t: "located",
        path: location.path(),
        route: location.route(),
    })
    .expect("located has only strings");
    hub.conns.push(conn, Outbound::control(frame));
    if admin.is_some() {
        hub.watch_admin();
    }
    if cursor.is_some() {
        let work = Work::CatchUp {
            path,
            conns: vec![conn.clone()],
        };
        if hub.fanout.try_submit(work).is_err() {
            // The path's queue is full: what it missed cannot be fetched in order now.
            hub.conns.push(conn, Outbound::control(RESYNC));
        }
    }
}
