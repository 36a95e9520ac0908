//! The WebSocket endpoint: refusal before the upgrade, then one reader and one writer per connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::hub::{AuthRequest, Conn, HubInner, Job, Outbound, RateLimit, Reply, Sender, SyncHub};
use crate::protocol::{
    ClientFrame, ErrorCode, Located, PROTOCOL_VERSION, ServerHello, close_code, error_frame,
    parse_client_frame,
};
use crate::routes::normalize;

impl SyncHub {
    /// The sync endpoints (`<prefix>/ws`), to merge into the app's router.
    pub fn router(&self) -> Router {
        let prefix = &self.inner.config.prefix;
        Router::new()
            .route(&format!("{prefix}/ws"), get(upgrade))
            .route(&format!("{prefix}/client.js"), get(client_js))
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

/// The browser client, embedded in the binary: a plain ES module, no build step.
pub const CLIENT_JS: &str = include_str!("../client/sync-client.js");

async fn client_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct ConnectQuery {
    path: Option<String>,
    token: Option<String>,
    /// The resume key from an earlier `hello`.
    resume: Option<String>,
    /// The last reaction `seq` the client processed.
    last_seq: Option<u64>,
    /// `1`: the client acknowledges reactions (`ack`), and the server keeps at most a window of them
    /// unacknowledged, so that a resume can always replay what a dying socket lost.
    ack: Option<u8>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// A browser's `Origin` must be the server's own (`Host`) or explicitly allowed; this stops cross-site
/// WebSocket hijacking with the victim's cookies. Clients that send no `Origin` are not browsers.
fn origin_allowed(hub: &HubInner, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if hub.config.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

async fn upgrade(
    State(hub): State<SyncHub>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Query(query): axum::extract::Query<ConnectQuery>,
) -> Response {
    let inner = hub.inner.clone();
    if inner.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if !origin_allowed(&inner, &headers) {
        tracing::warn!(target: "sync_runtime::ws", origin = ?headers.get(header::ORIGIN), "refused a foreign Origin");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let token = bearer(&headers).or(query.token);
    let request = AuthRequest {
        headers,
        uri,
        token: token.clone(),
    };
    let (user, session) = match (inner.auth)(request).await {
        Ok(identity) => identity,
        Err(refusal) => {
            tracing::debug!(target: "sync_runtime::ws", reason = %refusal, "refused an unauthenticated upgrade");
            return (StatusCode::UNAUTHORIZED, refusal.message().to_owned()).into_response();
        }
    };
    if !inner.admit_user(&user) {
        tracing::warn!(target: "sync_runtime::ws", user = %user, "connection limit per user reached");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this user",
        )
            .into_response();
    }
    let initial = match query.path.as_deref().map(normalize) {
        Some(None) => {
            return (StatusCode::BAD_REQUEST, "`path` must be an absolute path").into_response();
        }
        Some(Some(path)) => Some(path),
        None => None,
    };
    let max_frame = inner.config.max_frame_bytes;
    ws.max_message_size(max_frame)
        .max_frame_size(max_frame)
        // tungstenite reads into a buffer allocated up front, 128 KiB by default: per idle connection that
        // dwarfs everything else. Frames larger than the buffer still arrive, in several reads.
        .read_buffer_size(inner.config.socket_read_buffer)
        .write_buffer_size(inner.config.socket_write_buffer)
        .on_upgrade(move |socket| async move {
            let resumed = match query.resume.as_deref() {
                Some(key) => Some(inner.resume(key, &user).await),
                None => None,
            };
            let (conn, start) = match resumed {
                Some(Some(conn)) => (
                    conn,
                    Start::Resumed {
                        last_seq: query.last_seq.unwrap_or(0),
                    },
                ),
                // Unknown, expired or someone else's key: a fresh connection that must reload its data.
                Some(None) => (
                    inner.new_conn(user, session, token.map(Arc::from)),
                    Start::Resync,
                ),
                None => (
                    inner.new_conn(user, session, token.map(Arc::from)),
                    Start::Fresh,
                ),
            };
            let acks = query.ack == Some(1);
            run(inner, conn, socket, initial, start, acks).await;
        })
}

/// How a socket begins its life with a connection.
enum Start {
    Fresh,
    /// Asked to resume, but the connection is gone: tell the client to resync.
    Resync,
    Resumed {
        last_seq: u64,
    },
}

/// Why the reader stopped.
enum ReadEnd {
    /// The client sent a close frame: it left on purpose.
    Closed,
    /// The socket died without a close frame: keep the connection for a resume.
    Dropped,
}

#[tracing::instrument(name = "sync_connection", target = "sync_runtime::ws", skip_all, fields(conn = %conn.id, user = %conn.user))]
async fn run(
    hub: Arc<HubInner>,
    conn: Arc<Conn>,
    socket: WebSocket,
    initial: Option<Arc<str>>,
    start: Start,
    acks: bool,
) {
    let Some(mut rx) = conn
        .outbound
        .lock()
        .expect("outbound lock is never poisoned")
        .take()
    else {
        // Another socket holds this connection's queue; cannot happen since unpark hands it out once.
        tracing::error!(target: "sync_runtime::ws", "connection queue already taken");
        return;
    };
    hub.stats.connections.fetch_add(1, Ordering::Relaxed);
    let conn_name = conn.id.to_string();
    let resumed = matches!(start, Start::Resumed { .. });
    let window = if acks { hub.config.replay_frames } else { 0 };
    conn.window.store(window as u64, Ordering::Release);
    let hello = serde_json::to_string(&ServerHello {
        t: "hello",
        v: PROTOCOL_VERSION,
        conn: &conn_name,
        resume: &conn.resume_key,
        resumed,
        window: (window > 0).then_some(window),
    })
    .expect("hello has only strings and integers");
    // What goes out before anything queued: hello, then a resync or the replay of missed reactions.
    let mut preamble = vec![hello];
    let missed = match start {
        Start::Fresh => Some(Vec::new()),
        Start::Resync => None,
        Start::Resumed { last_seq } => {
            // Resuming after `last_seq` acknowledges it.
            conn.ack(last_seq);
            let replay = conn.replay.lock().expect("replay lock is never poisoned");
            replay.since(last_seq)
        }
    };
    let overflowed = conn.overflowed.swap(false, Ordering::AcqRel);
    match missed {
        Some(missed) if !overflowed => {
            preamble.extend(missed.iter().map(|(seq, tail)| reaction_frame(*seq, tail)));
        }
        _ => preamble.push(r#"{"t":"resync"}"#.to_owned()),
    }
    tracing::debug!(target: "sync_runtime::ws", resumed, replayed = preamble.len() - 1, "connected");
    if let Some(path) = initial {
        report_location(&hub, &conn, path);
    }
    // The socket's tasks borrow the queue; they end with this block, and the queue goes back to the conn.
    let dropped = {
        let (sink, stream) = socket.split();
        let writer = write(&hub, &conn, &mut rx, sink, preamble);
        let reader = read(&hub, &conn, stream);
        tokio::pin!(writer, reader);
        tokio::select! {
            // The client resumed on a new socket: this one lets go and parks the connection for it.
            () = conn.detach.notified() => true,
            () = &mut writer => !conn.is_dead(),
            end = &mut reader => match end {
                ReadEnd::Closed => {
                    // Let the writer answer with a close frame.
                    conn.kill(1000, "closed");
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
                    false
                }
                ReadEnd::Dropped => !conn.is_dead(),
            },
        }
    };
    *conn
        .outbound
        .lock()
        .expect("outbound lock is never poisoned") = Some(rx);
    hub.stats.connections.fetch_sub(1, Ordering::AcqRel);
    hub.socket_closed.notify_waiters();
    if dropped {
        tracing::debug!(target: "sync_runtime::ws", "socket dropped; parked for resume");
        hub.park(&conn);
    } else {
        tracing::debug!(target: "sync_runtime::ws", "disconnected");
        hub.forget(&conn);
    }
}

/// Drain the queue into the socket, numbering reactions, until the queue closes or the hub closes us.
///
/// A kill must win even while a write is blocked on a stalled socket, so both the wait for frames and the
/// write itself race against it; the close frame gets a short deadline for the same reason.
///
/// Reactions are numbered and remembered for replay *before* they are written, so that a socket dying
/// mid-batch loses nothing a resume cannot restore.
async fn write(
    hub: &HubInner,
    conn: &Conn,
    rx: &mut mpsc::Receiver<Outbound>,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    preamble: Vec<String>,
) {
    let keep = hub.config.replay_frames;
    // Both grow to the batches this connection sees: an idle one keeps them tiny (64 slots up front were
    // 3.5 KB per connection).
    let mut batch = Vec::new();
    let mut frames: Vec<Utf8Bytes> = Vec::new();
    // Reaction frames are written into this buffer and handed to the socket as slices of it: once the
    // socket has copied them out, the space is reused, so a busy connection allocates nothing per frame.
    let mut scratch = bytes::BytesMut::new();
    let mut first = Some(preamble);
    loop {
        if let Some(preamble) = first.take() {
            frames.extend(preamble.into_iter().map(Utf8Bytes::from));
        } else {
            // With acknowledged delivery, at most `window` reactions are in flight: the rest wait in the
            // queue, where a dying socket cannot lose them.
            let window = conn.window.load(Ordering::Acquire);
            let room = loop {
                if window == 0 {
                    break 64;
                }
                let in_flight = conn.in_flight();
                if in_flight < window {
                    break (window - in_flight).min(64) as usize;
                }
                tokio::select! {
                    biased;
                    () = conn.killed.notified() => break 0,
                    () = conn.acked_signal.notified() => {}
                }
            };
            if room == 0 {
                break;
            }
            let n = tokio::select! {
                biased;
                () = conn.killed.notified() => break,
                n = rx.recv_many(&mut batch, room) => n,
            };
            if n == 0 {
                break;
            }
            // Room for the whole batch at once: one allocation at most, none once the buffer is reused.
            let room_needed: usize = batch
                .iter()
                .map(|out| match out {
                    Outbound::Reaction(tail) => FRAME_HEAD + tail.len(),
                    Outbound::Control(_) => 0,
                })
                .sum();
            scratch.reserve(room_needed);
            let mut replay = conn.replay.lock().expect("replay lock is never poisoned");
            frames.extend(batch.drain(..).map(|out| match out {
                Outbound::Control(text) => Utf8Bytes::from(text),
                Outbound::Reaction(tail) => {
                    let seq = replay.record(tail.clone(), keep);
                    reaction_text(&mut scratch, seq, &tail)
                }
            }));
        }
        let send = async {
            for text in frames.drain(..) {
                sink.feed(Message::Text(text)).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            () = conn.killed.notified() => break,
            sent = send => if sent.is_err() { return },
        }
        // An idle connection keeps no more than a small buffer.
        if scratch.capacity() > 4096 && rx.is_empty() {
            scratch = bytes::BytesMut::new();
        }
    }
    let close = *conn.close.lock().expect("close lock is never poisoned");
    if let Some((code, reason)) = close {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.send(frame)).await;
    }
}

/// The longest `{"t":"reaction","seq":N` can be.
const FRAME_HEAD: usize = 40;

/// A reaction frame in `scratch`'s spare room (see `write`).
fn reaction_text(scratch: &mut bytes::BytesMut, seq: u64, tail: &str) -> Utf8Bytes {
    use std::fmt::Write;
    scratch.reserve(FRAME_HEAD + tail.len());
    let _ = write!(scratch, r#"{{"t":"reaction","seq":{seq}"#);
    scratch.extend_from_slice(tail.as_bytes());
    Utf8Bytes::try_from(scratch.split().freeze()).expect("a frame made of UTF-8 pieces is UTF-8")
}

fn reaction_frame(seq: u64, tail: &str) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(40 + tail.len());
    let _ = write!(text, r#"{{"t":"reaction","seq":{seq}"#);
    text.push_str(tail);
    text
}

async fn read(
    hub: &Arc<HubInner>,
    conn: &Arc<Conn>,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) -> ReadEnd {
    let mut limit = RateLimit::new(hub.config.rate_per_sec, hub.config.rate_burst);
    loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                reject(
                    hub,
                    conn,
                    None,
                    ErrorCode::BinaryUnsupported,
                    "binary frames are not part of the protocol",
                );
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) => return ReadEnd::Closed,
            None => return ReadEnd::Dropped,
            Some(Err(e)) => {
                tracing::debug!(target: "sync_runtime::ws", error = %e, "read failed");
                // Only a failing transport may be resumed: a client that broke the protocol is closed
                // with the matching code and forgotten.
                let Some((code, reason)) = violation(e) else {
                    return ReadEnd::Dropped;
                };
                conn.kill(code, reason);
                return ReadEnd::Closed;
            }
        };
        // An acknowledgement that moves the window costs nothing: it is bounded by the reactions sent.
        if text.len() <= 64
            && let Ok(ClientFrame::Ack { seq }) = parse_client_frame(text.as_str())
            && conn.ack(seq)
        {
            continue;
        }
        let user_allows = conn
            .user_limit
            .lock()
            .expect("rate lock is never poisoned")
            .allow();
        if !limit.allow() || !user_allows {
            reject(
                hub,
                conn,
                None,
                ErrorCode::RateLimited,
                "too many messages; this one was dropped",
            );
            continue;
        }
        if text.len() > hub.config.max_message_bytes {
            let message = format!(
                "message of {} bytes exceeds the limit of {}",
                text.len(),
                hub.config.max_message_bytes
            );
            reject(hub, conn, None, ErrorCode::TooLarge, &message);
            continue;
        }
        handle(hub, conn, text.as_str()).await;
    }
}

fn reject(hub: &HubInner, conn: &Conn, id: Option<u64>, code: ErrorCode, message: &str) {
    hub.stats.rejected_messages.fetch_add(1, Ordering::Relaxed);
    conn.push(hub, Outbound::Control(error_frame(id, code, message)));
}

fn report_location(hub: &HubInner, conn: &Arc<Conn>, path: Arc<str>) {
    let location = hub.move_conn(conn, Some(path));
    if let Some(location) = location {
        let frame = serde_json::to_string(&Located {
            t: "located",
            path: location.path(),
            route: location.route(),
        })
        .expect("located has only strings");
        conn.push(hub, Outbound::Control(frame));
    }
}

async fn handle(hub: &Arc<HubInner>, conn: &Arc<Conn>, text: &str) {
    let frame = match parse_client_frame(text) {
        Ok(frame) => frame,
        Err((code, message)) => return reject(hub, conn, None, code, &message),
    };
    match frame {
        // One that moved the window was taken by the reader; a repeated one is harmless.
        ClientFrame::Ack { seq } => {
            if seq > conn.sent_seq() {
                reject(
                    hub,
                    conn,
                    None,
                    ErrorCode::Malformed,
                    "`ack` acknowledges a reaction that was never sent",
                );
            }
        }
        ClientFrame::Ping => {
            conn.push(hub, Outbound::Control(r#"{"t":"pong"}"#.to_owned()));
        }
        ClientFrame::Nav { path } => match normalize(&path) {
            Some(path) => report_location(hub, conn, path),
            None => reject(
                hub,
                conn,
                None,
                ErrorCode::BadPath,
                "`path` must be an absolute path of at most 2048 bytes",
            ),
        },
        ClientFrame::Req {
            id,
            name,
            data,
            echo,
        } => {
            let Some(location) = conn.current_location() else {
                return reject(
                    hub,
                    conn,
                    id,
                    ErrorCode::NoLocation,
                    "report a location (`nav`) before requesting",
                );
            };
            let entry = match hub.table.resolve(location.route(), &name) {
                Ok(entry) => entry.clone(),
                Err((code, message)) => return reject(hub, conn, id, code, &message),
            };
            let data = match entry.sync.0.parse(data.map_or("null", |d| d.get())) {
                Ok(data) => data,
                Err(e) => {
                    return reject(
                        hub,
                        conn,
                        id,
                        ErrorCode::BadData,
                        &format!("`data` does not match `{}`: {e}", entry.name),
                    );
                }
            };
            let peer = conn.peer(location.clone());
            if entry.sync.0.has_gate() {
                let gate = entry.sync.0.gate(&data, &peer, &hub.functions);
                let verdict = tokio::time::timeout(
                    hub.config.filter_deadline,
                    futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(gate)),
                )
                .await;
                let refusal = match verdict {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(refusal))) => Some(refusal.message().to_owned()),
                    Ok(Err(_panic)) => Some("the origin gate failed".to_owned()),
                    Err(_elapsed) => Some("the origin gate overran its deadline".to_owned()),
                };
                if let Some(message) = refusal {
                    return reject(hub, conn, id, ErrorCode::GateRefused, &message);
                }
            }
            let reply = match id {
                Some(id) => Reply::Frame {
                    conn: conn.clone(),
                    id,
                },
                None => Reply::None,
            };
            hub.enqueue(Job {
                entry,
                location,
                data,
                sender: Some(Sender {
                    conn: Some(conn.clone()),
                    peer,
                    echo,
                }),
                reply,
            })
            .await;
        }
    }
}

/// The close code and reason for a read error that is the peer's fault, or `None` when the transport
/// failed (a reset, a cut, a timeout) and the session may be resumed.
fn violation(error: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{Error, ProtocolError};
    let error = error.into_inner();
    let error = error.downcast_ref::<Error>()?;
    match error {
        Error::Capacity(_) => Some((close_code::TOO_BIG, "frame too large")),
        Error::Utf8(_) => Some((close_code::INVALID_DATA, "invalid UTF-8 in a text frame")),
        Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        ) => None,
        Error::Protocol(_) => Some((close_code::PROTOCOL_ERROR, "WebSocket protocol error")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::{Error, ProtocolError};

    #[test]
    fn a_cut_connection_is_resumable_and_a_broken_protocol_is_not() {
        let cut = axum::Error::new(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake));
        assert_eq!(violation(cut), None);
        let io = axum::Error::new(Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert_eq!(violation(io), None);
        let masked = axum::Error::new(Error::Protocol(ProtocolError::UnmaskedFrameFromClient));
        assert_eq!(
            violation(masked).map(|v| v.0),
            Some(close_code::PROTOCOL_ERROR)
        );
        let utf8 = axum::Error::new(Error::Utf8("bad".into()));
        assert_eq!(violation(utf8).map(|v| v.0), Some(close_code::INVALID_DATA));
    }
}
