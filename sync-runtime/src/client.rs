//! A Rust client for the sync WebSocket: for tests, native apps and load generators.
//!
//! ```no_run
//! use sync_runtime::client::{ConnectOptions, SyncClient};
//!
//! # async fn run() -> Result<(), sync_runtime::client::ClientError> {
//! let mut client = SyncClient::connect(
//!     "ws://127.0.0.1:3000/_sync/ws",
//!     ConnectOptions::new().token("alice").path("/dashboard"),
//! )
//! .await?;
//! let outcome = client.request("refreshData", serde_json::json!({ "widget": 3 })).await?;
//! println!("delivered to {}", outcome.delivered);
//! while let Some(r) = client.next_reaction().await {
//!     println!("{} on {}: {}", r.name, r.path, r.reaction);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{ErrorCode, Outcome};

/// How to connect: credentials, initial location, extra headers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    token: Option<String>,
    path: Option<String>,
    headers: Vec<(String, String)>,
}

impl ConnectOptions {
    /// No token, no location, no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Send `Authorization: Bearer <token>`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Report this location on connect (`connect` returns once the server has placed the connection).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Add a request header (e.g. `Origin` or `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A reaction as received.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReceivedReaction {
    /// This connection's sequence number: 1, 2, 3, … with no gaps while connected.
    pub seq: u64,
    /// The concrete path the sync targeted.
    pub path: String,
    /// The route pattern.
    pub route: Option<String>,
    /// The sync name.
    pub name: String,
    /// The [`Reaction`](crate::Reaction) as JSON.
    pub reaction: serde_json::Value,
}

/// An `error` frame from the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorReply {
    /// The request id it answers, if it answers one.
    pub id: Option<u64>,
    /// The stable code.
    pub code: ErrorCode,
    /// A message for people.
    pub message: String,
}

/// Where the server placed the connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Located {
    /// The normalized path.
    pub path: String,
    /// The route pattern it matched, if any route defines syncs there.
    pub route: Option<String>,
}

/// Why a client call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The upgrade failed (refused with a status, or the socket could not be opened).
    Connect(Box<tungstenite::Error>),
    /// The server answered the request with an error code.
    Refused(ErrorReply),
    /// The connection is closed.
    Closed,
}

impl ClientError {
    /// The HTTP status of a refused upgrade (401, 403, …).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Connect(e) => match &**e {
                tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The error code of a refused request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(e) => Some(e.code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect failed: {e}"),
            ClientError::Refused(e) => write!(f, "refused: {}: {}", e.code, e.message),
            ClientError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ClientError {}

enum Command {
    Raw(Message),
    Nav(String, oneshot::Sender<Located>),
    Req(u64, String, oneshot::Sender<Result<Outcome, ErrorReply>>),
    Close,
}

/// One connection to a sync hub.
pub struct SyncClient {
    commands: mpsc::Sender<Command>,
    reactions: mpsc::Receiver<ReceivedReaction>,
    errors: mpsc::Receiver<ErrorReply>,
    close: Arc<Mutex<Option<(u16, String)>>>,
    connection: String,
    next_id: u64,
}

impl fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncClient").field("connection", &self.connection).finish_non_exhaustive()
    }
}

/// Frames a client buffers before it stops reading the socket (TCP backpressure then reaches the server).
const INBOX: usize = 65_536;

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum ServerFrame {
    Hello { conn: String },
    Located(Located),
    Reaction(ReceivedReaction),
    Result {
        id: u64,
        #[serde(flatten)]
        outcome: Outcome,
    },
    Error(ErrorReply),
    Pong,
}

impl SyncClient {
    /// Connect to `url` (`ws://host:port/_sync/ws`). Returns after the server's `hello`, and after it has
    /// placed the connection when [`ConnectOptions::path`] is set.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<SyncClient, ClientError> {
        let mut url = url.to_owned();
        if let Some(path) = &options.path {
            url.push_str(if url.contains('?') { "&path=" } else { "?path=" });
            url.push_str(&encode(path));
        }
        let mut request = url.into_client_request().map_err(|e| ClientError::Connect(Box::new(e)))?;
        let headers = request.headers_mut();
        if let Some(token) = &options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ClientError::Connect(Box::new(tungstenite::Error::HttpFormat(e.into()))))?;
            headers.insert("authorization", value);
        }
        for (name, value) in &options.headers {
            let name: tungstenite::http::HeaderName =
                name.parse().map_err(|e: tungstenite::http::header::InvalidHeaderName| {
                    ClientError::Connect(Box::new(tungstenite::Error::HttpFormat(e.into())))
                })?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ClientError::Connect(Box::new(tungstenite::Error::HttpFormat(e.into()))))?;
            headers.append(name, value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ClientError::Connect(Box::new(e)))?;

        let (commands, command_rx) = mpsc::channel(1024);
        let (reaction_tx, reactions) = mpsc::channel(INBOX);
        let (error_tx, errors) = mpsc::channel(1024);
        let (hello_tx, hello_rx) = oneshot::channel();
        let close = Arc::new(Mutex::new(None));
        let mut navs = VecDeque::new();
        let initial_nav = options.path.as_ref().map(|_| {
            let (tx, rx) = oneshot::channel();
            navs.push_back(tx);
            rx
        });
        tokio::spawn(pump(socket, command_rx, reaction_tx, error_tx, hello_tx, navs, close.clone()));
        let connection = hello_rx.await.map_err(|_| ClientError::Closed)?;
        if let Some(rx) = initial_nav {
            rx.await.map_err(|_| ClientError::Closed)?;
        }
        Ok(SyncClient {
            commands,
            reactions,
            errors,
            close,
            connection,
            next_id: 1,
        })
    }

    /// The connection id the server assigned.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Report a new location; returns once the server has moved the connection there.
    pub async fn navigate(&mut self, path: &str) -> Result<Located, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Nav(path.to_owned(), tx)).await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Request sync `name` on the current route and wait for the outcome.
    pub async fn request(&mut self, name: &str, data: impl serde::Serialize) -> Result<Outcome, ClientError> {
        self.request_with(name, data, true).await
    }

    /// Like [`request`](Self::request); `echo: false` leaves this connection out of the recipients.
    pub async fn request_with(&mut self, name: &str, data: impl serde::Serialize, echo: bool) -> Result<Outcome, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = serde_json::json!({ "t": "req", "id": id, "name": name, "data": data, "echo": echo });
        let (tx, rx) = oneshot::channel();
        self.command(Command::Req(id, frame.to_string(), tx)).await?;
        match rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(reply)) => Err(ClientError::Refused(reply)),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Send a text frame as is (for testing how the server treats bad input).
    pub async fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.command(Command::Raw(Message::text(text.into()))).await
    }

    /// Send a binary frame.
    pub async fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.command(Command::Raw(Message::binary(bytes))).await
    }

    /// The next reaction; `None` once the connection is closed and every received one was taken.
    pub async fn next_reaction(&mut self) -> Option<ReceivedReaction> {
        self.reactions.recv().await
    }

    /// The next error frame that answers no pending request (e.g. a malformed frame).
    pub async fn next_error(&mut self) -> Option<ErrorReply> {
        self.errors.recv().await
    }

    /// Wait until the connection closes; the close code and reason, if the server sent them.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        while self.reactions.recv().await.is_some() {}
        self.close.lock().expect("close lock is never poisoned").clone()
    }

    /// Close the connection.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close).await;
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).await.map_err(|_| ClientError::Closed)
    }
}

fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn pump(
    mut socket: Socket,
    mut commands: mpsc::Receiver<Command>,
    reactions: mpsc::Sender<ReceivedReaction>,
    errors: mpsc::Sender<ErrorReply>,
    hello: oneshot::Sender<String>,
    mut navs: VecDeque<oneshot::Sender<Located>>,
    close: Arc<Mutex<Option<(u16, String)>>>,
) {
    let mut hello = Some(hello);
    let mut requests: HashMap<u64, oneshot::Sender<Result<Outcome, ErrorReply>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => {
                let message = match command {
                    Some(Command::Raw(message)) => message,
                    Some(Command::Nav(path, tx)) => {
                        navs.push_back(tx);
                        Message::text(serde_json::json!({ "t": "nav", "path": path }).to_string())
                    }
                    Some(Command::Req(id, frame, tx)) => {
                        requests.insert(id, tx);
                        Message::text(frame)
                    }
                    Some(Command::Close) | None => {
                        let _ = socket.close(None).await;
                        return;
                    }
                };
                if socket.send(message).await.is_err() {
                    return;
                }
            }
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(frame) = frame {
                            *close.lock().expect("close lock is never poisoned") = Some((u16::from(frame.code), frame.reason.to_string()));
                        }
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                };
                match serde_json::from_str::<ServerFrame>(&text) {
                    Ok(ServerFrame::Hello { conn }) => {
                        if let Some(tx) = hello.take() {
                            let _ = tx.send(conn);
                        }
                    }
                    Ok(ServerFrame::Located(located)) => {
                        if let Some(tx) = navs.pop_front() {
                            let _ = tx.send(located);
                        }
                    }
                    Ok(ServerFrame::Reaction(reaction)) => {
                        if reactions.send(reaction).await.is_err() {
                            return;
                        }
                    }
                    Ok(ServerFrame::Result { id, outcome }) => {
                        if let Some(tx) = requests.remove(&id) {
                            let _ = tx.send(Ok(outcome));
                        }
                    }
                    Ok(ServerFrame::Error(reply)) => {
                        match reply.id.and_then(|id| requests.remove(&id)) {
                            Some(tx) => {
                                let _ = tx.send(Err(reply));
                            }
                            None => {
                                let _ = errors.try_send(reply);
                            }
                        }
                    }
                    Ok(ServerFrame::Pong) => {}
                    Err(e) => {
                        tracing::warn!(target: "sync_runtime::client", error = %e, "unreadable frame from server");
                    }
                }
            }
        }
    }
}
