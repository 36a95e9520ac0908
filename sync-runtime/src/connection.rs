//! What both transports (WebSocket and SSE) share: admission before a connection exists, the writer that
//! numbers, windows and replays reactions, and the handling of every client message.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;

use crate::handler::AnyArc;
use crate::hub::{AuthRequest, Conn, HubInner, Job, Outbound, RateLimit, Reply, Sender};
use crate::protocol::{
    ClientFrame, ErrorCode, Located, PROTOCOL_VERSION, ServerHello, error_frame, parse_client_frame,
};
use crate::routes::normalize;

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// A browser's `Origin` must be the server's own (`Host`) or explicitly allowed; this stops cross-site
/// WebSocket hijacking (and cross-site posts to the SSE endpoint) with the victim's cookies. Clients that
/// send no `Origin` are not browsers.
pub(crate) fn origin_allowed(hub: &HubInner, headers: &HeaderMap) -> bool {
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

/// Who is asking: the `Origin` check (403), then the app's authenticator (401).
pub(crate) async fn authenticate(
    hub: &HubInner,
    headers: HeaderMap,
    uri: Uri,
    query_token: Option<String>,
) -> Result<(Arc<str>, AnyArc, Option<String>), Response> {
    if !origin_allowed(hub, &headers) {
        tracing::warn!(target: "sync_runtime::ws", origin = ?headers.get(header::ORIGIN), "refused a foreign Origin");
        return Err((StatusCode::FORBIDDEN, "origin not allowed").into_response());
    }
    let token = bearer(&headers).or(query_token);
    let request = AuthRequest {
        headers,
        uri,
        token: token.clone(),
    };
    match (hub.auth)(request).await {
        Ok((user, session)) => Ok((user, session, token)),
        Err(refusal) => {
            tracing::debug!(target: "sync_runtime::ws", reason = %refusal, "refused an unauthenticated connection");
            Err((StatusCode::UNAUTHORIZED, refusal.message().to_owned()).into_response())
        }
    }
}

/// A client allowed in, before it has a connection.
pub(crate) struct Admitted {
    pub user: Arc<str>,
    pub session: AnyArc,
    pub token: Option<String>,
    /// The location it asked to start at.
    pub initial: Option<Arc<str>>,
}

/// Every check before a connection exists, in the order `docs/PROTOCOL.md` lists them: shutting down
/// (503), foreign `Origin` (403), authentication (401), connections per user (429), `path` (400).
pub(crate) async fn admit(
    hub: &HubInner,
    headers: HeaderMap,
    uri: Uri,
    query_token: Option<String>,
    path: Option<&str>,
) -> Result<Admitted, Response> {
    if hub.shutting_down.load(Ordering::Acquire) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response());
    }
    let (user, session, token) = authenticate(hub, headers, uri, query_token).await?;
    if !hub.admit_user(&user) {
        tracing::warn!(target: "sync_runtime::ws", user = %user, "connection limit per user reached");
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this user",
        )
            .into_response());
    }
    let initial = match path.map(normalize) {
        Some(None) => {
            return Err(
                (StatusCode::BAD_REQUEST, "`path` must be an absolute path").into_response()
            );
        }
        Some(Some(path)) => Some(path),
        None => None,
    };
    Ok(Admitted {
        user,
        session,
        token,
        initial,
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

/// The connection for an admitted client: the one it resumes (`key`, the last `seq` it processed), or a
/// new one.
pub(crate) async fn attach(
    hub: &HubInner,
    admitted: &Admitted,
    resume: Option<(&str, u64)>,
) -> (Arc<Conn>, Start) {
    let fresh = || {
        hub.new_conn(
            admitted.user.clone(),
            admitted.session.clone(),
            admitted.token.as_deref().map(Arc::from),
        )
    };
    match resume {
        None => (fresh(), Start::Fresh),
        Some((key, last_seq)) => match hub.resume(key, &admitted.user).await {
            Some(conn) => (conn, Start::Resumed { last_seq }),
            // Unknown, expired or someone else's key: a fresh connection that must reload its data.
            None => (fresh(), Start::Resync),
        },
    }
}

/// Why the reading side of a transport stopped.
pub(crate) enum ReadEnd {
    /// The client said goodbye: it left on purpose.
    Closed,
    /// The transport died without a goodbye: keep the connection for a resume.
    Dropped,
}

/// Where a connection's frames go. `seq` is the reaction's number (or, for `hello`, the last one the
/// client has), for transports that label frames (SSE's `id:`).
pub(crate) enum Sink {
    Ws(futures_util::stream::SplitSink<WebSocket, Message>),
    Sse(crate::sse::SseSink),
}

impl Sink {
    async fn feed(&mut self, seq: Option<u64>, text: Utf8Bytes) -> Result<(), ()> {
        match self {
            Sink::Ws(sink) => sink.feed(Message::Text(text)).await.map_err(drop),
            Sink::Sse(sink) => {
                sink.feed(seq, &text);
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ()> {
        match self {
            Sink::Ws(sink) => sink.flush().await.map_err(drop),
            Sink::Sse(sink) => sink.flush().await,
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        match self {
            Sink::Ws(sink) => {
                let frame = Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                }));
                let _ = sink.send(frame).await;
            }
            Sink::Sse(sink) => sink.close(code, reason).await,
        }
    }
}

/// What a transport's reading side shares with the task that writes: whether it saw the client go.
#[derive(Default)]
struct ReadSide {
    dropped: AtomicBool,
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteEnd {
    /// The connection was killed (its close frame went out, if the client still reads).
    Killed,
    /// A resume took the connection to another transport.
    Detached,
    /// The transport failed: the client is gone without a goodbye.
    Dropped,
}

/// Whatever ends the writer's wait, if anything has happened.
fn interruption(conn: &Conn, side: &ReadSide) -> Option<WriteEnd> {
    if conn.is_dead() {
        Some(WriteEnd::Killed)
    } else if conn.detach.load(Ordering::Acquire) {
        Some(WriteEnd::Detached)
    } else if side.dropped.load(Ordering::Acquire) {
        Some(WriteEnd::Dropped)
    } else {
        None
    }
}

/// Resolves with `ready`'s value once it has one, or with the interruption (which wins) once the
/// connection is killed, detached or its reader saw the client go. The task waits in the connection's
/// `attention` waker: registered, then everything looked at again, so a push or a kill in between is not
/// missed.
fn attend<'a, T>(
    conn: &'a Conn,
    side: &'a ReadSide,
    mut ready: impl FnMut() -> Option<T> + 'a,
) -> impl Future<Output = Result<T, WriteEnd>> + 'a {
    std::future::poll_fn(move |cx| {
        for registered in [false, true] {
            if let Some(end) = interruption(conn, side) {
                return std::task::Poll::Ready(Err(end));
            }
            if let Some(value) = ready() {
                return std::task::Poll::Ready(Ok(value));
            }
            if !registered {
                conn.attention.register(cx.waker());
            }
        }
        std::task::Poll::Pending
    })
}

/// Resolves when the connection is killed, detached or its reader saw the client go.
async fn interrupted(conn: &Conn, side: &ReadSide) -> WriteEnd {
    match attend(conn, side, || None::<std::convert::Infallible>).await {
        Err(end) => end,
        Ok(never) => match never {},
    }
}

/// Serve `conn` over one transport until it ends: `hello` and the replay (or `resync`) first, then the
/// queue, while `reader` (a task of its own, so that frames going out never poll the way in) feeds the
/// client's messages in. A transport that drops parks the connection for a resume; one that closes (or is
/// closed) forgets it.
pub(crate) fn run(
    hub: Arc<HubInner>,
    conn: Arc<Conn>,
    sink: Sink,
    reader: impl Future<Output = ReadEnd> + Send + 'static,
    initial: Option<Arc<str>>,
    start: Start,
    acks: bool,
) -> impl Future<Output = ()> {
    // The span wraps the future from outside, so the arguments are stored once (the `instrument`
    // attribute keeps a second copy in every connection's task).
    let span = tracing::info_span!(target: "sync_runtime::ws", "sync_connection", conn = %conn.id, user = %conn.user);
    tracing::Instrument::instrument(serve(hub, conn, sink, reader, initial, start, acks), span)
}

async fn serve(
    hub: Arc<HubInner>,
    conn: Arc<Conn>,
    mut sink: Sink,
    reader: impl Future<Output = ReadEnd> + Send + 'static,
    initial: Option<Arc<str>>,
    start: Start,
    acks: bool,
) {
    if conn.writing.swap(true, Ordering::AcqRel) {
        // Another transport serves this connection; cannot happen since resume hands it out once.
        tracing::error!(target: "sync_runtime::ws", "connection already served by another transport");
        return;
    }
    // A request to let go that was meant for the transport before this one.
    conn.detach.store(false, Ordering::Release);
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
    let (missed, seen) = match start {
        Start::Fresh => (Some(Vec::new()), 0),
        Start::Resync => (None, 0),
        Start::Resumed { last_seq } => {
            // Resuming after `last_seq` acknowledges it.
            conn.ack(last_seq);
            let replay = conn.replay.lock().expect("replay lock is never poisoned");
            (replay.since(last_seq), last_seq)
        }
    };
    let mut preamble = vec![(Some(seen), hello)];
    let overflowed = conn.overflowed.swap(false, Ordering::AcqRel);
    match missed {
        Some(missed) if !overflowed => preamble.extend(
            missed
                .iter()
                .map(|(seq, tail)| (Some(*seq), reaction_frame(*seq, tail))),
        ),
        _ => preamble.push((None, r#"{"t":"resync"}"#.to_owned())),
    }
    tracing::debug!(target: "sync_runtime::ws", resumed, replayed = preamble.len() - 1, "connected");
    if let Some(path) = initial {
        report_location(&hub, &conn, path);
    }
    let side = Arc::new(ReadSide::default());
    let reading = tokio::spawn({
        let conn = conn.clone();
        let side = side.clone();
        async move {
            match reader.await {
                // The client said goodbye: close (the writer answers with a close frame) and forget.
                ReadEnd::Closed => {
                    conn.kill(1000, "closed");
                }
                ReadEnd::Dropped => {
                    side.dropped.store(true, Ordering::Release);
                    conn.attention.wake();
                }
            }
        }
    });
    let end = write(&hub, &conn, &mut sink, preamble, &side).await;
    reading.abort();
    conn.writing.store(false, Ordering::Release);
    hub.stats.connections.fetch_sub(1, Ordering::AcqRel);
    hub.socket_closed.notify_waiters();
    if end != WriteEnd::Killed && !conn.is_dead() {
        tracing::debug!(target: "sync_runtime::ws", ?end, "transport gone; parked for resume");
        hub.park(&conn);
    } else {
        tracing::debug!(target: "sync_runtime::ws", "disconnected");
        hub.forget(&conn);
    }
}

/// Drain the queue into the transport, numbering reactions, until the connection is killed or detached or
/// the transport fails.
///
/// A kill must win even while a write is blocked on a stalled client, so both the wait for frames and the
/// write itself race against it; the close frame gets a short deadline for the same reason.
///
/// Reactions are numbered and remembered for replay *before* they are written, so that a transport dying
/// mid-batch loses nothing a resume cannot restore.
async fn write(
    hub: &HubInner,
    conn: &Conn,
    sink: &mut Sink,
    preamble: Vec<(Option<u64>, String)>,
    side: &ReadSide,
) -> WriteEnd {
    let keep = hub.config.replay_frames;
    // Both grow to the batches this connection sees: an idle one keeps them tiny (64 slots up front were
    // 3.5 KB per connection).
    let mut batch = Vec::new();
    let mut frames: Vec<(Option<u64>, Utf8Bytes)> = Vec::new();
    // Reaction frames are written into this buffer and handed to the socket as slices of it: once the
    // socket has copied them out, the space is reused, so a busy connection allocates nothing per frame.
    let mut scratch = bytes::BytesMut::new();
    let mut first = Some(preamble);
    let end = loop {
        if let Some(preamble) = first.take() {
            frames.extend(
                preamble
                    .into_iter()
                    .map(|(seq, text)| (seq, Utf8Bytes::from(text))),
            );
        } else {
            // With acknowledged delivery, at most `window` reactions are in flight: the rest wait in the
            // queue, where a dying transport cannot lose them.
            let window = conn.window.load(Ordering::Acquire);
            let room = loop {
                if window == 0 {
                    break Ok(64);
                }
                let in_flight = conn.in_flight();
                if in_flight < window {
                    break Ok((window - in_flight).min(64) as usize);
                }
                tokio::select! {
                    biased;
                    end = interrupted(conn, side) => break Err(end),
                    () = conn.acked_signal.notified() => {}
                }
            };
            let room = match room {
                Ok(room) => room,
                Err(end) => break end,
            };
            // Queued frames, moved into `batch` (at most `room`), or an interruption.
            let taken = attend(conn, side, || {
                let n = conn.take(&mut batch, room);
                (n > 0).then_some(())
            });
            if let Err(end) = taken.await {
                break end;
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
                Outbound::Control(text) => (None, Utf8Bytes::from(text)),
                Outbound::Reaction(tail) => {
                    let seq = replay.record(tail.clone(), keep);
                    (Some(seq), reaction_text(&mut scratch, seq, &tail))
                }
            }));
        }
        let send = async {
            for (seq, text) in frames.drain(..) {
                sink.feed(seq, text).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            end = interrupted(conn, side) => break end,
            sent = send => if sent.is_err() { break WriteEnd::Dropped },
        }
        // An idle connection keeps no more than a small buffer.
        if scratch.capacity() > 4096 && !conn.has_queued() {
            scratch = bytes::BytesMut::new();
        }
    };
    if end == WriteEnd::Killed {
        let close = *conn.close.lock().expect("close lock is never poisoned");
        if let Some((code, reason)) = close {
            // Boxed, like anything rare and large here: the future stays small for idle connections.
            let closing =
                tokio::time::timeout(std::time::Duration::from_secs(1), sink.close(code, reason));
            let _ = Box::pin(closing).await;
        }
    }
    end
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
    let mut text = String::with_capacity(FRAME_HEAD + tail.len());
    let _ = write!(text, r#"{{"t":"reaction","seq":{seq}"#);
    text.push_str(tail);
    text
}

/// One message from the client, whatever carried it: acknowledgements first (free), then the
/// connection's and the user's token buckets, the size limit, and the message itself.
pub(crate) async fn receive(
    hub: &Arc<HubInner>,
    conn: &Arc<Conn>,
    limit: &mut RateLimit,
    text: &str,
) {
    // An acknowledgement that moves the window costs nothing: it is bounded by the reactions sent.
    if text.len() <= 64
        && let Ok(ClientFrame::Ack { seq }) = parse_client_frame(text)
        && conn.ack(seq)
    {
        return;
    }
    let user_allows = conn
        .user_limit
        .lock()
        .expect("rate lock is never poisoned")
        .allow();
    if !limit.allow() || !user_allows {
        return reject(
            hub,
            conn,
            None,
            ErrorCode::RateLimited,
            "too many messages; this one was dropped",
        );
    }
    if text.len() > hub.config.max_message_bytes {
        let message = format!(
            "message of {} bytes exceeds the limit of {}",
            text.len(),
            hub.config.max_message_bytes
        );
        return reject(hub, conn, None, ErrorCode::TooLarge, &message);
    }
    // Boxed: the handling of a message (gate, deadline, trigger queue) is a large future, and a reader
    // that kept it inline would hold that much memory for every idle connection.
    Box::pin(handle(hub, conn, text)).await;
}

pub(crate) fn reject(hub: &HubInner, conn: &Conn, id: Option<u64>, code: ErrorCode, message: &str) {
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
        // One that moved the window was taken by `receive`; a repeated one is harmless.
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
        ClientFrame::Bye => {
            // The writer sends the close (frame or event), and the connection is forgotten, not parked.
            hub.close(conn, 1000, "closed");
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
