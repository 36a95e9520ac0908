//! The SSE transport, for clients that cannot open a WebSocket: `GET <prefix>/sse` is an event stream of
//! the same server frames, `POST <prefix>/sse?key=<resume key>` carries the same client messages.
//!
//! Each frame is one event (`data: <json>`); reactions (and `hello`) carry `id: <resume key>.<seq>`, so a
//! reconnecting `EventSource` resumes through `Last-Event-ID` with no code. Admission, limits, windows,
//! replay and parking are the WebSocket's (`transport`, `conn`); only the framing differs.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::Utf8Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::inbound::{Inbound, receive};
use super::{ConnectQuery, ReadEnd, Transport, admit, attach, authenticate, serve};
use crate::SyncHub;
use crate::conn::Phase;
use crate::conn::writer::Sink;
use crate::conns::may_act_for;
use crate::protocol::client::{ClientFrame, parse_client_frame};
use crate::protocol::close_code;
use crate::protocol::server::CloseEvent;

/// Frames waiting for the HTTP response body: a couple of writes, so a client that stops reading
/// backs up into the connection's bounded queue, exactly like a stalled socket.
const BODY_QUEUE: usize = 2;

/// The writing end of one event stream.
struct SseSink {
    tx: mpsc::Sender<Bytes>,
    buf: bytes::BytesMut,
    key: Arc<str>,
}

impl SseSink {
    /// Add one frame as an event. Frames are compact JSON: they hold no line break.
    fn event(&mut self, seq: Option<u64>, text: &str) {
        use std::fmt::Write;
        if let Some(seq) = seq {
            match cursor_of(text) {
                Some(cursor) => {
                    let _ = writeln!(self.buf, "id: {}.{seq}.{cursor}", self.key);
                }
                None => {
                    let _ = writeln!(self.buf, "id: {}.{seq}", self.key);
                }
            }
        }
        self.buf.extend_from_slice(b"data: ");
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.extend_from_slice(b"\n\n");
    }
}

impl Sink for SseSink {
    async fn feed(&mut self, seq: Option<u64>, text: Utf8Bytes) -> Result<(), ()> {
        self.event(seq, &text);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.tx.send(self.buf.split().freeze()).await.map_err(drop)
    }

    /// The stream's last event: a `close` frame with the code a WebSocket would have closed with.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = serde_json::to_string(&CloseEvent {
            t: "close",
            code,
            reason,
        })
        .expect("close has only strings and integers");
        self.event(None, &frame);
        let _ = self.flush().await;
    }
}

/// `<resume key>.<seq>[.<cursor>]`, as sent in `id:` and returned in `Last-Event-ID`: what to resume,
/// and the position in the path's history of the last reaction.
fn last_event_id(headers: &HeaderMap) -> Option<((String, u64), Option<String>)> {
    let value = headers.get("last-event-id")?.to_str().ok()?;
    let mut parts = value.trim().splitn(3, '.');
    let (key, seq) = (parts.next()?, parts.next()?);
    Some((
        (key.to_owned(), seq.parse().ok()?),
        parts.next().map(str::to_owned),
    ))
}

/// The cursor a reaction frame carries (`{"t":"reaction","seq":N,"cursor":"…"`), for its event's id.
fn cursor_of(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix(r#"{"t":"reaction","seq":"#)?;
    let rest = &rest[rest.find(r#","cursor":""#)? + 11..];
    Some(&rest[..rest.find('"')?])
}

/// `GET <prefix>/sse`: the same checks as a WebSocket upgrade, then an endless `text/event-stream`.
pub(super) async fn stream(
    State(hub): State<SyncHub>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ConnectQuery>,
) -> Response {
    let inner = hub.inner.clone();
    // `Last-Event-ID` (an `EventSource` reconnecting by itself) wins over the query of the first request.
    let (resume, cursor) = match last_event_id(&headers) {
        Some((resume, cursor)) => (Some(resume), cursor.or_else(|| query.cursor.clone())),
        None => (
            query
                .resume
                .clone()
                .map(|key| (key, query.last_seq.unwrap_or(0))),
            query.cursor.clone(),
        ),
    };
    let admitted = match admit(&inner, headers, uri, &query, resume, cursor.as_deref()).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(attached) = attach(&inner, admitted).await else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this user",
        )
            .into_response();
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    // The body is dropped when the client goes away: that is the stream's only way to end from the client
    // side, so it counts as a drop and the connection waits out its grace window for a resume.
    let gone = tx.clone();
    let reader = move || async move {
        gone.closed().await;
        ReadEnd::Dropped
    };
    let sink = SseSink {
        tx,
        buf: bytes::BytesMut::new(),
        key: attached.conn.resume_key.clone(),
    };
    let acks = query.ack == Some(1);
    tokio::spawn(serve(
        inner.clone(),
        Transport::Sse,
        attached,
        sink,
        reader,
        acks,
    ));

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
pub(super) struct PostQuery {
    /// The connection's resume key, from its `hello`.
    key: Option<String>,
    token: Option<String>,
}

/// `POST <prefix>/sse?key=<resume key>`: one client message for the connection whose stream is open.
///
/// The sender is checked like a new connection (`Origin`, then the authenticator) and must be the
/// connection's own user (a guest's connection: any guest, as its key is all it has). `202` means the
/// message reached the connection; what it leads to (`located`, `result`, `error`, …) arrives on the
/// stream, as over a WebSocket.
pub(super) async fn post(
    State(hub): State<SyncHub>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PostQuery>,
    body: Bytes,
) -> Response {
    let inner = &hub.inner;
    let key = query.key.as_deref().unwrap_or_default();
    let Some(conn) = inner.conns.by_key(key).filter(|c| !c.is_closed()) else {
        return not_found();
    };
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let who = match authenticate(inner, headers, uri, query.token).await {
        Ok((who, _)) => who,
        Err(refusal) => return refusal.into_response(),
    };
    if !may_act_for(&who, &conn.who) {
        return (
            StatusCode::FORBIDDEN,
            "this connection belongs to another user",
        )
            .into_response();
    }
    if conn.phase() != Phase::Live {
        // Without an open stream only `bye` means something: a page that leaves sends it while its stream
        // is being torn down, so it may find the connection parked for a resume, to be forgotten at once.
        let bye = matches!(
            std::str::from_utf8(&body).map(parse_client_frame),
            Ok(Ok(ClientFrame::Bye))
        );
        if !bye {
            return not_found();
        }
        inner.conns.close(&conn, close_code::NORMAL, "closed");
        return StatusCode::ACCEPTED.into_response();
    }
    let message = match std::str::from_utf8(&body) {
        _ if binary => Inbound::Binary,
        Ok(text) => Inbound::Text(text),
        Err(_) => Inbound::NotUtf8,
    };
    receive(inner, &conn, message).await;
    StatusCode::ACCEPTED.into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no open event stream for this key: reconnect the stream",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_the_resume_key_and_the_seq() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", "abc123.42".parse().expect("a header"));
        assert_eq!(
            last_event_id(&headers),
            Some((("abc123".to_owned(), 42), None))
        );
        headers.insert(
            "last-event-id",
            "abc123.42.9f86:7".parse().expect("a header"),
        );
        assert_eq!(
            last_event_id(&headers),
            Some((("abc123".to_owned(), 42), Some("9f86:7".to_owned())))
        );
        let frame = r#"{"t":"reaction","seq":3,"cursor":"9f86:7","path":"/a"}"#;
        assert_eq!(cursor_of(frame), Some("9f86:7"));
        assert_eq!(cursor_of(r#"{"t":"hello"}"#), None);
        headers.insert("last-event-id", "no-seq".parse().expect("a header"));
        assert_eq!(last_event_id(&headers), None);
    }
}
