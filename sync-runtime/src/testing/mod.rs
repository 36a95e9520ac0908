//! What an app's own tests need (feature `testing`): serve the app on a free loopback port, connect users
//! with given sessions at given paths over either transport, trigger, and check what each received and
//! that nothing else arrived. Every wait is bounded, none is a sleep, and a failure says who was waiting,
//! where, for what, and what came instead.
//!
//! ```no_run
//! use serde_json::json;
//! use sync_runtime::testing::TestServer;
//!
//! # async fn test(hub: sync_runtime::SyncHub, router: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! let app = TestServer::start(router).await; // the app's router, with the hub attached
//! let mut alice = app.connect("/dashboard").token("alice").await;
//! let mut carol = app.connect("/dashboard").cookie("sid=c4r0l").sse().await;
//!
//! hub.request("/dashboard", "refreshData", json!({ "team": "red" })).await?;
//! let update = alice.expect("refreshData").await; // the next reaction; anything else fails
//! assert_eq!(update.reaction["selector"], "#tasks");
//! carol.expect_nothing().await; // nothing arrived, and nothing is on its way
//! # Ok(())
//! # }
//! ```
//!
//! # What `expect_nothing` proves
//!
//! [`TestUser::expect_nothing`] sends a `ping` and waits for its `pong`. The server handles a connection's
//! messages in order and queues the `pong` behind every frame already queued for that connection, so
//! once the `pong` is in, everything queued before the `ping` was read has arrived too. A trigger's
//! outcome is known only after its fan-out has queued every recipient's reaction on this node; so after
//! awaiting the outcome (`hub.request(..).await`, [`TestUser::request`], or an HTTP handler that awaits
//! its `sync_request!`), `expect_nothing` fails if any reaction of that trigger was meant for the user.
//!
//! It covers one server process. With a backplane, a trigger accepted on another node reaches this one
//! through the broker, after that node's outcome: its reactions may still be on their way.
//!
//! # Sessions
//!
//! An app's authenticator sees the upgrade request ([`AuthRequest`](crate::AuthRequest)): its headers,
//! its cookies and its token (`Authorization: Bearer`, or the `token` query parameter). [`Connect`] sends
//! each: [`token`](Connect::token), [`cookie`](Connect::cookie) (a `name=value` pair, as a login
//! response's `Set-Cookie` starts: [`TestServer::post_form`] and [`TestResponse::cookie`] get one from a
//! login form), or any [`header`](Connect::header).

use std::future::{Future, IntoFuture};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::client::{ClientError, ConnectOptions, SyncClient};

mod http;
mod user;

pub use http::TestResponse;
pub use user::TestUser;

/// How long an expectation waits unless told otherwise ([`TestServer::timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The app served on `127.0.0.1` at a free port, for as long as this value lives (dropping it stops
/// accepting connections).
///
/// ```no_run
/// # use sync_runtime::testing::TestServer;
/// # async fn test(router: axum::Router) {
/// let app = TestServer::start(router).await;
/// let mut alice = app.connect("/dashboard").token("alice").await;
/// alice.expect_nothing().await;
/// # }
/// ```
#[derive(Debug)]
pub struct TestServer {
    endpoint: Endpoint,
    server: JoinHandle<()>,
}

/// Where users connect, and how long they wait.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    prefix: String,
    timeout: Duration,
}

impl TestServer {
    /// Serve `router` (the app's, with the hub attached: [`SyncHub::attach`](crate::SyncHub::attach)) on
    /// `127.0.0.1:0`, with `axum::serve` and the peer's address available to handlers (`ConnectInfo`).
    pub async fn start(router: Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(target: "sync_runtime::testing", error = %e, "the test server stopped");
            }
        });
        TestServer {
            endpoint: Endpoint {
                addr,
                prefix: "/_sync".to_owned(),
                timeout: DEFAULT_TIMEOUT,
            },
            server,
        }
    }

    /// Where the hub's endpoints are, when the app moved them
    /// ([`SyncHubBuilder::path_prefix`](crate::SyncHubBuilder::path_prefix)). Default: `/_sync`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.endpoint.prefix = prefix.into();
        self
    }

    /// How long the users connected from now on wait for what they expect before failing. Default:
    /// [`DEFAULT_TIMEOUT`]. A passing [`TestUser::expect_nothing`] takes one round trip, not this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.timeout = timeout;
        self
    }

    /// The address the app listens on.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// `http://127.0.0.1:<port><path>`: for the app's own pages and forms.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.endpoint.addr)
    }

    /// Connect a user at `path` (awaiting the [`Connect`] connects; before that, say who they are).
    ///
    /// ```no_run
    /// # use sync_runtime::testing::TestServer;
    /// # async fn test(app: TestServer, sid: String) {
    /// let mut bob = app.connect("/boards/7").cookie(&sid).named("bob").sse().await;
    /// # }
    /// ```
    pub fn connect(&self, path: &str) -> Connect {
        Connect {
            endpoint: self.endpoint.clone(),
            path: path.to_owned(),
            options: ConnectOptions::new(),
            token: None,
            cursor: None,
            cookies: Vec::new(),
            transport: Transport::WebSocket,
            name: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Which of the hub's transports a user connects over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `ws://…/_sync/ws` (the default).
    WebSocket,
    /// `http://…/_sync/sse`: the event stream, and a `POST` per message.
    Sse,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "WebSocket",
            Transport::Sse => "SSE",
        })
    }
}

/// A user about to connect: who they are and how. Awaiting it connects (and fails the test, saying why,
/// when the server refuses); [`try_connect`](Self::try_connect) returns the refusal instead.
#[derive(Debug)]
#[must_use = "the user connects when this is awaited"]
pub struct Connect {
    endpoint: Endpoint,
    path: String,
    options: ConnectOptions,
    /// The token, for failure messages.
    token: Option<String>,
    cursor: Option<String>,
    cookies: Vec<String>,
    transport: Transport,
    name: Option<String>,
}

impl Connect {
    /// Present `token` (`Authorization: Bearer <token>`, what [`AuthRequest::token`](crate::AuthRequest::token)
    /// returns). Failures call the user by it unless [`named`](Self::named).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.options = self.options.token(token.as_str());
        self.token = Some(token);
        self
    }

    /// Send the cookie `name=value` (what [`AuthRequest::cookie`](crate::AuthRequest::cookie) finds), e.g.
    /// the part of a login response's `Set-Cookie` before the first `;`. Several go out in one `Cookie`
    /// header.
    pub fn cookie(mut self, pair: impl Into<String>) -> Self {
        self.cookies.push(pair.into());
        self
    }

    /// Add a request header (an `Origin`, an app's own session header).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// Connect from `cursor` in the path's history (what a rendered page embeds): every reaction after
    /// it arrives first.
    pub fn cursor(mut self, cursor: impl ToString) -> Self {
        self.cursor = Some(cursor.to_string());
        self
    }

    /// Reconnect and resume when the connection drops or the server goes away
    /// ([`ConnectOptions::reconnect`]).
    pub fn reconnect(mut self) -> Self {
        self.options = self.options.reconnect();
        self
    }

    /// Over SSE instead of a WebSocket.
    pub fn sse(self) -> Self {
        self.over(Transport::Sse)
    }

    /// Over `transport`: for a test that runs once per transport.
    pub fn over(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// What failure messages call this user (default: the token, else the cookies, else "a user
    /// without credentials").
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Connect, or say why the server refused ([`ClientError::status`]: 401, 403 …).
    ///
    /// ```no_run
    /// # use sync_runtime::testing::TestServer;
    /// # async fn test(app: TestServer) {
    /// let refused = app.connect("/dashboard").try_connect().await.unwrap_err();
    /// assert_eq!(refused.status(), Some(401));
    /// # }
    /// ```
    pub async fn try_connect(self) -> Result<TestUser, ClientError> {
        let name = self.name.clone().unwrap_or_else(|| self.describe());
        let mut options = self.options;
        if !self.cookies.is_empty() {
            options = options.header("Cookie", self.cookies.join("; "));
        }
        let mut first = options.clone().path(self.path.as_str());
        if let Some(cursor) = self.cursor {
            first = first.cursor(cursor);
        }
        let url = self.endpoint.url(self.transport);
        let timeout = self.endpoint.timeout;
        let client = match tokio::time::timeout(timeout, SyncClient::connect(&url, first)).await {
            Ok(connected) => connected?,
            Err(_) => {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no `hello` and `located` within {timeout:?}"),
                );
                return Err(ClientError::Io(late));
            }
        };
        Ok(TestUser::new(
            client,
            user::Who {
                name,
                transport: self.transport,
                path: self.path,
            },
            self.endpoint,
            options,
        ))
    }

    fn describe(&self) -> String {
        match (self.token.as_deref(), self.cookies.is_empty()) {
            (Some(token), _) => token.to_owned(),
            (None, false) => format!("the user with cookie {}", self.cookies.join("; ")),
            (None, true) => "a user without credentials".to_owned(),
        }
    }
}

impl IntoFuture for Connect {
    type Output = TestUser;
    type IntoFuture = Pin<Box<dyn Future<Output = TestUser> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let what = format!(
                "{} could not connect at {} over {}",
                self.name.clone().unwrap_or_else(|| self.describe()),
                self.path,
                self.transport
            );
            match self.try_connect().await {
                Ok(user) => user,
                Err(e) => panic!("{what}: {e}"),
            }
        })
    }
}

impl Endpoint {
    /// `fut`, or `None` after the timeout.
    async fn within<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::time::timeout(self.timeout, fut).await.ok()
    }

    fn url(&self, transport: Transport) -> String {
        match transport {
            Transport::WebSocket => format!("ws://{}{}/ws", self.addr, self.prefix),
            Transport::Sse => format!("http://{}{}/sse", self.addr, self.prefix),
        }
    }
}

#[cfg(test)]
mod tests;
