//! The WebSocket endpoint: refusal before the upgrade, then one reader and one writer per connection
//! (the writer and the message handling are shared with SSE, in `connection`).

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;

use crate::connection::{ReadEnd, Sink, admit, attach, receive, reject, run};
use crate::hub::{Conn, HubInner, RateLimit, SyncHub};
use crate::protocol::{ErrorCode, close_code};

impl SyncHub {
    /// The sync endpoints (`<prefix>/ws`, `<prefix>/sse`, `<prefix>/client.js`), to merge into the app's
    /// router.
    pub fn router(&self) -> Router {
        let prefix = &self.inner.config.prefix;
        Router::new()
            .route(&format!("{prefix}/ws"), get(upgrade))
            .route(
                &format!("{prefix}/sse"),
                get(crate::sse::stream)
                    .post(crate::sse::post)
                    // A larger message is refused with 413, like a WebSocket frame over the cap.
                    .layer(axum::extract::DefaultBodyLimit::max(
                        self.inner.config.max_frame_bytes,
                    )),
            )
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
}

async fn upgrade(
    State(hub): State<SyncHub>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Query(query): axum::extract::Query<ConnectQuery>,
) -> Response {
    let inner = hub.inner.clone();
    let admitted = match admit(&inner, headers, uri, query.token, query.path.as_deref()).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let max_frame = inner.config.max_frame_bytes;
    ws.max_message_size(max_frame)
        .max_frame_size(max_frame)
        // tungstenite reads into a buffer allocated up front, 128 KiB by default: per idle connection that
        // dwarfs everything else. Frames larger than the buffer still arrive, in several reads.
        .read_buffer_size(inner.config.socket_read_buffer)
        .write_buffer_size(inner.config.socket_write_buffer)
        .on_upgrade(move |socket| async move {
            let resume = query
                .resume
                .as_deref()
                .map(|key| (key, query.last_seq.unwrap_or(0)));
            let (conn, start) = attach(&inner, &admitted, resume).await;
            let acks = query.ack == Some(1);
            let (sink, stream) = socket.split();
            let reader = read(inner.clone(), conn.clone(), stream);
            run(
                inner,
                conn,
                Sink::Ws(sink),
                reader,
                admitted.initial,
                start,
                acks,
            )
            .await;
        })
}

async fn read(
    hub: Arc<HubInner>,
    conn: Arc<Conn>,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) -> ReadEnd {
    let mut limit = RateLimit::new(hub.config.rate_per_sec, hub.config.rate_burst);
    loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                reject(
                    &hub,
                    &conn,
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
        receive(&hub, &conn, &mut limit, text.as_str()).await;
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
