//! The SSE transport, for clients that cannot open a WebSocket: `GET <prefix>/sse` is an event stream of
//! the same server frames, `POST <prefix>/sse?key=<resume key>` carries the same client messages.
//!
//! Each frame is one event (`data: <json>`); reactions (and `hello`) carry `id: <resume key>.<seq>`, so a
//! reconnecting `EventSource` resumes through `Last-Event-ID` with no code. Admission, limits, windows,
//! replay and parking are the WebSocket's (`connection`); only the framing differs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::connection::{ReadEnd, Sink, admit, attach, authenticate, receive, reject, run};
use crate::hub::{Conn, RateLimit, SyncHub};
use crate::protocol::ErrorCode;
use crate::ws::ConnectQuery;

/// Connections with a stream attached now, by resume key.
pub(crate) type Links = Mutex<HashMap<Arc<str>, Arc<Link>>>;

/// What a `POST` needs of its connection: the connection and its message budget (held while a message is
/// handled, so one connection's messages are handled one at a time, in order, as over a WebSocket).
pub(crate) struct Link {
    conn: Arc<Conn>,
    limit: tokio::sync::Mutex<RateLimit>,
}

/// Frames waiting for the HTTP response body: a couple of writes, so a client that stops reading
/// backs up into the connection's bounded queue, exactly like a stalled socket.
const BODY_QUEUE: usize = 2;

/// The writing end of one event stream.
pub(crate) struct SseSink {
    tx: mpsc::Sender<Bytes>,
    buf: bytes::BytesMut,
    key: Arc<str>,
}

impl SseSink {
    /// Add one frame as an event. Frames are compact JSON: they hold no line break.
    pub(crate) fn feed(&mut self, seq: Option<u64>, text: &str) {
        use std::fmt::Write;
        if let Some(seq) = seq {
            let _ = writeln!(self.buf, "id: {}.{seq}", self.key);
        }
        self.buf.extend_from_slice(b"data: ");
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.extend_from_slice(b"\n\n");
    }

    /// Hand what was fed to the response body; an error when the client is gone.
    pub(crate) async fn flush(&mut self) -> Result<(), ()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.tx.send(self.buf.split().freeze()).await.map_err(drop)
    }

    /// The stream's last event: a `close` frame with the code a WebSocket would have closed with.
    pub(crate) async fn close(&mut self, code: u16, reason: &'static str) {
        #[derive(serde::Serialize)]
        struct Close {
            t: &'static str,
            code: u16,
            reason: &'static str,
        }
        let frame = serde_json::to_string(&Close {
            t: "close",
            code,
            reason,
        })
        .expect("close has only strings and integers");
        self.feed(None, &frame);
        let _ = self.flush().await;
    }
}

/// `<resume key>.<seq>`, as sent in `id:` and returned in `Last-Event-ID`.
fn last_event_id(headers: &HeaderMap) -> Option<(String, u64)> {
    let value = headers.get("last-event-id")?.to_str().ok()?;
    let (key, seq) = value.trim().rsplit_once('.')?;
    Some((key.to_owned(), seq.parse().ok()?))
}

/// `GET <prefix>/sse`: the same checks as a WebSocket upgrade, then an endless `text/event-stream`.
pub(crate) async fn stream(
    State(hub): State<SyncHub>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ConnectQuery>,
) -> Response {
    let inner = hub.inner.clone();
    // `Last-Event-ID` (an `EventSource` reconnecting by itself) wins over the query of the first request.
    let resume = last_event_id(&headers).or_else(|| {
        query
            .resume
            .clone()
            .map(|key| (key, query.last_seq.unwrap_or(0)))
    });
    let admitted = match admit(&inner, headers, uri, query.token, query.path.as_deref()).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let resume = resume.as_ref().map(|(key, seq)| (key.as_str(), *seq));
    let (conn, start) = attach(&inner, &admitted, resume).await;
    let link = Arc::new(Link {
        conn: conn.clone(),
        limit: tokio::sync::Mutex::new(RateLimit::new(
            inner.config.rate_per_sec,
            inner.config.rate_burst,
        )),
    });
    let key = conn.resume_key.clone();
    inner
        .sse_links
        .lock()
        .expect("links lock is never poisoned")
        .insert(key.clone(), link.clone());

    let (tx, rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    // The body is dropped when the client goes away: that is the stream's only way to end from the client
    // side, so it counts as a drop and the connection waits out its grace window for a resume.
    let gone = tx.clone();
    let reader = async move {
        gone.closed().await;
        ReadEnd::Dropped
    };
    let sink = Sink::Sse(SseSink {
        tx,
        buf: bytes::BytesMut::new(),
        key: key.clone(),
    });
    let acks = query.ack == Some(1);
    let task_hub = inner.clone();
    tokio::spawn(async move {
        run(
            task_hub.clone(),
            conn,
            sink,
            reader,
            admitted.initial,
            start,
            acks,
        )
        .await;
        let mut links = task_hub
            .sse_links
            .lock()
            .expect("links lock is never poisoned");
        // A resume may already have put a new stream's link under the same key.
        if links.get(&key).is_some_and(|l| Arc::ptr_eq(l, &link)) {
            links.remove(&key);
        }
    });

    let keepalive = inner.config.sse_keepalive;
    let body = futures_util::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(frames)) => Some((Ok::<_, Infallible>(frames), rx)),
            Ok(None) => None,
            Err(_idle) => Some((Ok(Bytes::from_static(b": keepalive\n\n")), rx)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Proxies that buffer responses (nginx) must pass events through at once.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct PostQuery {
    /// The connection's resume key, from its `hello`.
    key: Option<String>,
    token: Option<String>,
}

/// `POST <prefix>/sse?key=<resume key>`: one client message for the connection whose stream is open.
///
/// The sender is checked like a new connection (`Origin`, then the authenticator) and must be the
/// connection's user. `202` means the message reached the connection; what it leads to (`located`,
/// `result`, `error`, …) arrives on the stream, as over a WebSocket.
pub(crate) async fn post(
    State(hub): State<SyncHub>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PostQuery>,
    body: Bytes,
) -> Response {
    let inner = &hub.inner;
    let key = query.key.as_deref().unwrap_or_default();
    let link = inner
        .sse_links
        .lock()
        .expect("links lock is never poisoned")
        .get(key)
        .cloned();
    // Without an open stream only `bye` means something: a page that leaves sends it while its stream is
    // being torn down, so it may find the connection parked for a resume, to be forgotten at once instead.
    let bye = || {
        matches!(
            std::str::from_utf8(&body).map(crate::protocol::parse_client_frame),
            Ok(Ok(crate::protocol::ClientFrame::Bye))
        )
    };
    let conn = match &link {
        Some(link) => link.conn.clone(),
        None => match inner.by_resume_key(key).filter(|_| bye()) {
            Some(conn) => conn,
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    "no open event stream for this key: reconnect the stream",
                )
                    .into_response();
            }
        },
    };
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let user = match authenticate(inner, headers, uri, query.token).await {
        Ok((user, _, _)) => user,
        Err(refusal) => return refusal,
    };
    if user != conn.user {
        return (
            StatusCode::FORBIDDEN,
            "this connection belongs to another user",
        )
            .into_response();
    }
    let Some(link) = link else {
        inner.close(&conn, 1000, "closed");
        return StatusCode::ACCEPTED.into_response();
    };
    let mut limit = link.limit.lock().await;
    match std::str::from_utf8(&body) {
        _ if binary => reject(
            inner,
            &conn,
            None,
            ErrorCode::BinaryUnsupported,
            "binary messages are not part of the protocol",
        ),
        Ok(text) => receive(inner, &conn, &mut limit, text).await,
        Err(_) => reject(
            inner,
            &conn,
            None,
            ErrorCode::Malformed,
            "the message is not UTF-8",
        ),
    }
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_the_resume_key_and_the_seq() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", "abc123.42".parse().expect("a header"));
        assert_eq!(last_event_id(&headers), Some(("abc123".to_owned(), 42)));
        headers.insert("last-event-id", "no-seq".parse().expect("a header"));
        assert_eq!(last_event_id(&headers), None);
    }
}
