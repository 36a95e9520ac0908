//! How a client connects: its credentials, first location and position, extra headers, and whether it
//! reconnects.

/// How to connect: credentials, initial location, extra headers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub(super) token: Option<String>,
    pub(super) path: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) reconnect: bool,
    pub(super) cursor: Option<String>,
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

    /// The position in [`path`](Self::path)'s history this client has had everything up to (a
    /// [`Cursor`](crate::Cursor) as a string, from a page's render): the server sends every reaction
    /// after it, or `resync` when its history no longer covers it.
    pub fn cursor(mut self, cursor: impl ToString) -> Self {
        self.cursor = Some(cursor.to_string());
        self
    }

    /// When the socket drops (or the server goes away), reconnect with backoff and resume: the server
    /// replays what was missed, on the node it reaches (from the last reaction's cursor), or sends
    /// `resync` (counted by [`SyncClient::resyncs`](super::SyncClient::resyncs)).
    pub fn reconnect(mut self) -> Self {
        self.reconnect = true;
        self
    }

    /// Add a request header (e.g. `Origin` or `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
