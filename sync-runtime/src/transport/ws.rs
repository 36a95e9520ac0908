//! The WebSocket transport: refusal before the upgrade, then one reader task and the shared writer.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};

use super::inbound::{Inbound, receive};
use super::{ConnectQuery, ReadEnd, Transport, admit, attach, serve};
use crate::SyncHub;
use crate::conn::Conn;
use crate::conn::writer::Sink;
use crate::hub::HubInner;
use crate::protocol::close_code;

/// The writing half of a WebSocket.
struct WsSink(futures_util::stream::SplitSink<WebSocket, Message>);

impl Sink for WsSink {
    async fn feed(&mut self, _seq: Option<u64>, text: Utf8Bytes) -> Result<(), ()> {
        self.0.feed(Message::Text(text)).await.map_err(drop)
    }

    async fn flush(&mut self) -> Result<(), ()> {
        self.0.flush().await.map_err(drop)
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = self.0.send(frame).await;
    }
}

pub(super) async fn upgrade(
    State(hub): State<SyncHub>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Query(query): axum::extract::Query<ConnectQuery>,
) -> Response {
    let inner = hub.inner.clone();
    let resume = query
        .resume
        .clone()
        .map(|key| (key, query.last_seq.unwrap_or(0)));
    let admitted = match admit(
        &inner,
        headers,
        uri,
        &query,
        resume,
        query.cursor.as_deref(),
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let max_frame = inner.config.max_frame_bytes;
    let acks = query.ack == Some(1);
    ws.max_message_size(max_frame)
        .max_frame_size(max_frame)
        // tungstenite reads into a buffer allocated up front, 128 KiB by default: per idle connection that
        // dwarfs everything else. Frames larger than the buffer still arrive, in several reads.
        .read_buffer_size(inner.config.socket_read_buffer)
        .write_buffer_size(inner.config.socket_write_buffer)
        .on_upgrade(move |mut socket| async move {
            let Some(attached) = attach(&inner, admitted).await else {
                let close = Message::Close(Some(CloseFrame {
                    code: close_code::TRY_AGAIN_LATER,
                    reason: Utf8Bytes::from_static("too many connections for this user"),
                }));
                let _ = socket.send(close).await;
                return;
            };
            let (sink, stream) = socket.split();
            let (hub, conn) = (inner.clone(), attached.conn.clone());
            let reader = move || read(hub, conn, stream);
            // A task of its own, and this one (axum's) ends: it would otherwise keep, for the connection's
            // whole life, the room of everything it held before (the socket, the admission, axum's
            // configuration): about 700 bytes per connection.
            tokio::spawn(serve(
                inner,
                Transport::WebSocket,
                attached,
                WsSink(sink),
                reader,
                acks,
            ));
        })
}

async fn read(
    hub: Arc<HubInner>,
    conn: Arc<Conn>,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) -> ReadEnd {
    loop {
        let message = match stream.next().await {
            Some(Ok(message)) => message,
            None => return ReadEnd::Dropped,
            Some(Err(e)) => {
                tracing::debug!(target: "sync_runtime::transport", error = %e, "read failed");
                // Only a failing transport may be resumed: a client that broke the protocol is closed
                // with the matching code and forgotten.
                let Some((code, reason)) = violation(e) else {
                    return ReadEnd::Dropped;
                };
                hub.conns.close(&conn, code, reason);
                return ReadEnd::Closed;
            }
        };
        match message {
            Message::Text(text) => receive(&hub, &conn, Inbound::Text(text.as_str())).await,
            // Counted against the rate limits like any other message, then refused.
            Message::Binary(_) => receive(&hub, &conn, Inbound::Binary).await,
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return ReadEnd::Closed,
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
