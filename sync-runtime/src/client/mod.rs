//! A Rust client for a sync hub, over a WebSocket (`ws://…/_sync/ws`) or SSE (`http://…/_sync/sse`, the
//! event stream plus a `POST` per message): for tests, native apps and load generators.
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
//!
//! The same client over SSE, for networks that block WebSockets: only the URL changes.
//!
//! ```no_run
//! # use sync_runtime::client::{ConnectOptions, SyncClient};
//! # async fn run() -> Result<(), sync_runtime::client::ClientError> {
//! let client = SyncClient::connect(
//!     "http://127.0.0.1:3000/_sync/sse",
//!     ConnectOptions::new().token("alice").path("/dashboard"),
//! )
//! .await?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite;

use crate::{ErrorCode, Outcome};

mod options;
mod pump;
mod sse;
mod ws;

pub use options::ConnectOptions;

use pump::Pump;

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
    /// The position of its trigger in the path's history (`<epoch>:<offset>`); `None` for what is in no
    /// history (the admin page's snapshots).
    #[serde(default)]
    pub cursor: Option<String>,
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

/// What [`SyncClient::next_event`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A reaction.
    Reaction(ReceivedReaction),
    /// An error frame that answers no pending request.
    Error(ErrorReply),
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
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The upgrade failed (refused with a status, or the socket could not be opened).
    #[error("connect failed: {0}")]
    Connect(#[source] Box<tungstenite::Error>),
    /// An SSE request was answered with this status (`401`, `403`, `404` for a connection that is gone…).
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The response body: the server's reason.
        message: String,
    },
    /// The SSE transport could not reach the server (or was given a URL or header it cannot send).
    #[error("connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The server answered the request with an error code.
    #[error("refused: {}: {}", .0.code, .0.message)]
    Refused(ErrorReply),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

impl ClientError {
    /// The HTTP status of a refused upgrade or stream (401, 403, …).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Connect(e) => match &**e {
                tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
                _ => None,
            },
            ClientError::Http { status, .. } => Some(*status),
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

enum Command {
    Raw(Outgoing),
    Nav(String, oneshot::Sender<Located>),
    Req(u64, String, oneshot::Sender<Result<Outcome, ErrorReply>>),
    /// A `ping`, answered once its `pong` arrives.
    Ping(oneshot::Sender<()>),
    /// Close the connection; answered (or dropped) once the server has let go of it.
    Close(oneshot::Sender<()>),
}

/// One connection to a sync hub.
pub struct SyncClient {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    reactions: mpsc::Receiver<ReceivedReaction>,
    errors: mpsc::Receiver<ErrorReply>,
    close: Arc<Mutex<Option<(u16, String)>>>,
    connection: String,
    next_id: u64,
}

impl fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncClient")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// What a client has been through, for waiting on with [`SyncClient::status_until`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Sockets reopened after the first.
    pub reconnects: u64,
    /// `resync` frames received: the server could not replay what this client missed.
    pub resyncs: u64,
    /// `located` frames received.
    pub located: u64,
    /// The resume key of the current connection.
    pub resume_key: Option<String>,
    /// The users on the current path as the server last listed them (with a presence mapping on the
    /// server), after every `presence` and `presence_diff` frame.
    pub presence: Option<PresenceList>,
    /// `refreshed` frames received: refreshes the server took.
    pub refreshed: u64,
    /// Milliseconds until the credential expires, as of the last `hello` or `refreshed` (`None`: never).
    pub expires_in: Option<u64>,
}

/// The users on a path as a client holds them: the first `users.len()` of `count`, in the order they
/// came, each with the view the app lets others see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceList {
    /// The path.
    pub path: String,
    /// All users on it.
    pub count: usize,
    /// The listed ones: user key and view.
    pub users: Vec<(String, serde_json::Value)>,
}

impl PresenceList {
    /// The listed user keys.
    pub fn user_keys(&self) -> Vec<&str> {
        self.users.iter().map(|(u, _)| u.as_str()).collect()
    }
}

/// How long reactions may wait for an acknowledgement once they stop coming.
const ACK_DELAY: Duration = Duration::from_millis(20);

/// How long [`SyncClient::close`] waits for the server to let go of the connection. Over loopback it
/// takes a round trip; a server that does not answer in time keeps the connection for its grace window.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Frames a client buffers before it stops reading the socket (TCP backpressure then reaches the server).
const INBOX: usize = 65_536;

impl SyncClient {
    /// Connect to `url`: `ws://host:port/_sync/ws` for a WebSocket, `http://host:port/_sync/sse` for SSE.
    /// Returns after the server's `hello`, and after it has placed the connection when
    /// [`ConnectOptions::path`] is set.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<SyncClient, ClientError> {
        let socket = open(
            url,
            &options,
            options.path.as_deref(),
            None,
            options.cursor.as_deref(),
        )
        .await?;
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
        let (status_tx, status) = watch::channel(Status::default());
        let cursor = options.path.clone().zip(options.cursor.clone());
        let state = Pump {
            url: url.to_owned(),
            options,
            commands: command_rx,
            reactions: reaction_tx,
            errors: error_tx,
            navs,
            pings: VecDeque::new(),
            close: close.clone(),
            status: status_tx,
            sockets: 0,
            resume: None,
            last_seq: 0,
            window: 0,
            acked: 0,
            location: None,
            cursor,
            held: None,
        };
        tokio::spawn(state.run(socket, hello_tx));
        let connection = hello_rx.await.map_err(|_| ClientError::Closed)?;
        if let Some(rx) = initial_nav {
            rx.await.map_err(|_| ClientError::Closed)?;
        }
        Ok(SyncClient {
            commands,
            status,
            reactions,
            errors,
            close,
            connection,
            next_id: 1,
        })
    }

    /// How many times the server said this client missed too much and must reload its data (`resync`).
    pub fn resyncs(&self) -> u64 {
        self.status.borrow().resyncs
    }

    /// How many times the client reconnected after its socket dropped.
    pub fn reconnects(&self) -> u64 {
        self.status.borrow().reconnects
    }

    /// The current connection's resume key.
    pub fn resume_key(&self) -> Option<String> {
        self.status.borrow().resume_key.clone()
    }

    /// A receiver of the client's [`Status`], to watch from another task.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Wait until the client's [`Status`] satisfies `ready`; `None` if the client stopped first.
    pub async fn status_until(&mut self, ready: impl FnMut(&Status) -> bool) -> Option<Status> {
        self.status.wait_for(ready).await.ok().map(|s| s.clone())
    }

    /// The users on the current path as the server last listed them.
    pub fn presence(&self) -> Option<PresenceList> {
        self.status.borrow().presence.clone()
    }

    /// Hand the server a fresh credential for this connection (`refresh`), before the old one expires.
    /// The answer is a `refreshed` ([`Status::refreshed`]) or an error `refresh_refused`
    /// ([`next_error`](Self::next_error)).
    pub async fn refresh(&self, token: &str) -> Result<(), ClientError> {
        let frame = serde_json::json!({ "t": "refresh", "token": token }).to_string();
        self.send_raw(frame).await
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
    pub async fn request(
        &mut self,
        name: &str,
        data: impl serde::Serialize,
    ) -> Result<Outcome, ClientError> {
        self.request_with(name, data, true).await
    }

    /// Like [`request`](Self::request); `echo: false` leaves this connection out of the recipients.
    pub async fn request_with(
        &mut self,
        name: &str,
        data: impl serde::Serialize,
        echo: bool,
    ) -> Result<Outcome, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame =
            serde_json::json!({ "t": "req", "id": id, "name": name, "data": data, "echo": echo });
        let (tx, rx) = oneshot::channel();
        self.command(Command::Req(id, frame.to_string(), tx))
            .await?;
        match rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(reply)) => Err(ClientError::Refused(reply)),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// A round trip: send a `ping` and return once its `pong` is in. The server answers a connection's
    /// messages in order, through the same queue as its reactions, so every frame it queued for this
    /// connection before it read the `ping` has been received by then: reactions wait in
    /// [`next_reaction`](Self::next_reaction), errors in [`next_error`](Self::next_error), and
    /// [`status`](Self::watch_status) is up to date. What a test uses to know that nothing else is on
    /// its way (after the trigger's outcome says the fan-out is done).
    ///
    /// ```no_run
    /// # use sync_runtime::client::{ConnectOptions, SyncClient};
    /// # async fn run(mut client: SyncClient) -> Result<(), sync_runtime::client::ClientError> {
    /// client.ping().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ping(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Ping(tx)).await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Send a text frame as is (for testing how the server treats bad input).
    pub async fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.command(Command::Raw(Outgoing::Text(text.into())))
            .await
    }

    /// Send a binary frame (over SSE, a `POST` of `application/octet-stream`).
    pub async fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.command(Command::Raw(Outgoing::Binary(bytes))).await
    }

    /// The next reaction; `None` once the connection is closed and every received one was taken.
    pub async fn next_reaction(&mut self) -> Option<ReceivedReaction> {
        self.reactions.recv().await
    }

    /// The next error frame that answers no pending request (e.g. a malformed frame).
    pub async fn next_error(&mut self) -> Option<ErrorReply> {
        self.errors.recv().await
    }

    /// The next reaction or unanswered error, whichever comes first; `None` once closed.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        tokio::select! {
            Some(r) = self.reactions.recv() => Some(ClientEvent::Reaction(r)),
            Some(e) = self.errors.recv() => Some(ClientEvent::Error(e)),
            else => None,
        }
    }

    /// Wait until the connection closes; the close code and reason, if the server sent them.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        while self.reactions.recv().await.is_some() {}
        self.close
            .lock()
            .expect("close lock is never poisoned")
            .clone()
    }

    /// Close the connection, after what was already sent: returns once the server has let go of it (a
    /// WebSocket close frame answered, or over SSE a `bye` answered and the stream ended), so it is off
    /// every route at once instead of being kept for a resume. Waits for the server at most 2 seconds.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            // Answered, or dropped by a pump that ended: either way there is nothing left to wait for.
            let _ = closed.await;
        }
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)
    }
}

/// The query of a connect request: `existing` (the URL's own) plus `path`, `ack=1`, when resuming
/// `resume` and `last_seq`, and the position in `path`'s history the client has had, form-encoded.
fn connect_query(
    existing: &str,
    path: Option<&str>,
    resume: Option<(&str, u64)>,
    cursor: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(existing.to_owned());
    if let Some(path) = path {
        query.append_pair("path", path);
    }
    // Acknowledged delivery: the server keeps what is in flight until we say we have it.
    query.append_pair("ack", "1");
    if let Some((key, last_seq)) = resume {
        query.append_pair("resume", key);
        query.append_pair("last_seq", &last_seq.to_string());
    }
    if let Some(cursor) = cursor.filter(|_| path.is_some()) {
        query.append_pair("cursor", cursor);
    }
    query.finish()
}

/// The `Authorization` value for `token`.
fn bearer(token: &str) -> String {
    let mut value = String::with_capacity(7 + token.len());
    value.push_str("Bearer ");
    value.push_str(token);
    value
}

/// The frames this client builds itself (requests and navigations carry the caller's data as JSON).
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum ClientFrame {
    /// Every reaction up to `seq` was processed.
    Ack { seq: u64 },
    /// Leaving on purpose: forget the connection now (what an SSE client has instead of a close frame).
    Bye,
    /// Answer with a `pong`, after everything queued before it.
    Ping,
}

/// A message for the server.
enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

/// What the transport brought in.
enum Incoming {
    Text(String),
    /// The server closed the connection, with its code and reason if it gave them.
    Close(Option<(u16, String)>),
    /// The transport died without a close.
    Dropped,
}

/// One transport's connection: a WebSocket, or an SSE stream with its `POST`s.
enum Link {
    Ws(Box<ws::WsLink>),
    Sse(Box<sse::SseLink>),
}

impl Link {
    async fn send(&mut self, message: Outgoing) -> Result<(), ClientError> {
        match self {
            Link::Ws(link) => link.send(message).await,
            Link::Sse(link) => link.send(message).await,
        }
    }

    /// The next message. Cancel-safe, for `select!`.
    async fn next(&mut self) -> Incoming {
        match self {
            Link::Ws(link) => link.next().await,
            Link::Sse(link) => link.next().await,
        }
    }

    /// Close, and wait (at most [`CLOSE_WAIT`]) for the server to let go of the connection: a dropped
    /// transport would be kept for a resume for the server's grace window.
    async fn close(&mut self) {
        let close = async {
            match self {
                Link::Ws(link) => link.close().await,
                Link::Sse(link) => link.close().await,
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, close).await.is_err() {
            tracing::debug!(target: "sync_runtime::client", "the server did not answer the close in time");
        }
    }
}

/// Open a transport: credentials and headers from `options`, the location, and a resume key if resuming.
async fn open(
    url: &str,
    options: &ConnectOptions,
    path: Option<&str>,
    resume: Option<(&str, u64)>,
    cursor: Option<&str>,
) -> Result<Link, ClientError> {
    if url.starts_with("http://") {
        let link = sse::SseLink::open(url, options, path, resume, cursor).await?;
        return Ok(Link::Sse(Box::new(link)));
    }
    let link = ws::WsLink::open(url, options, path, resume, cursor).await?;
    Ok(Link::Ws(Box::new(link)))
}

#[cfg(test)]
mod tests;
