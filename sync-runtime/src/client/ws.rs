//! The client's WebSocket transport: one socket carries both directions, through tokio-tungstenite.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};

use super::{ClientError, ConnectOptions, Incoming, Outgoing, connect_query};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket connection.
pub(super) struct WsLink {
    socket: Socket,
}

impl WsLink {
    /// Open `url?path=…&ack=1[&resume=…&last_seq=…][&cursor=…]` with the credentials and headers of `options`.
    pub(super) async fn open(
        url: &str,
        options: &ConnectOptions,
        path: Option<&str>,
        resume: Option<(&str, u64)>,
        cursor: Option<&str>,
    ) -> Result<WsLink, ClientError> {
        let connect_error = |e: tungstenite::Error| ClientError::Connect(Box::new(e));
        let http_error =
            |e: tungstenite::http::Error| connect_error(tungstenite::Error::HttpFormat(e));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let query = connect_query(query, path, resume, cursor);
        let mut url = String::with_capacity(base.len() + 1 + query.len());
        url.push_str(base);
        url.push('?');
        url.push_str(&query);
        let mut request = url.into_client_request().map_err(connect_error)?;
        let headers = request.headers_mut();
        if let Some(token) = &options.token {
            let value =
                HeaderValue::try_from(super::bearer(token)).map_err(|e| http_error(e.into()))?;
            headers.insert(tungstenite::http::header::AUTHORIZATION, value);
        }
        for (name, value) in &options.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| http_error(e.into()))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| http_error(e.into()))?;
            headers.append(name, value);
        }
        // A 16 KiB read buffer instead of tungstenite's 128 KiB: load generators open thousands of these.
        let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .map_err(connect_error)?;
        Ok(WsLink { socket })
    }

    /// Send one message as a frame.
    pub(super) async fn send(&mut self, message: Outgoing) -> Result<(), ClientError> {
        let message = match message {
            Outgoing::Text(text) => Message::text(text),
            Outgoing::Binary(bytes) => Message::binary(bytes),
        };
        self.socket
            .send(message)
            .await
            .map_err(|e| ClientError::Connect(Box::new(e)))
    }

    /// The next message. Cancel-safe, for `select!`.
    pub(super) async fn next(&mut self) -> Incoming {
        loop {
            return match self.socket.next().await {
                Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    Incoming::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Incoming::Dropped,
            };
        }
    }

    /// Send a close frame, then read until the server has answered it and closed the socket: it lets go
    /// of the socket only after forgetting the connection, so the connection is off every route when
    /// this returns. The caller bounds the wait.
    pub(super) async fn close(&mut self) {
        if self.socket.close(None).await.is_err() {
            return;
        }
        // Frames still on their way (reactions, the server's close frame) are dropped: the user is gone.
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}
