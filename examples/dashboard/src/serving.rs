//! Serving the router over HTTP/1.1 with the timeouts `axum::serve` lacks.
//!
//! `axum::serve` waits for a request head as long as the client likes: 400 sockets that each send one
//! header line every few seconds hold 400 connections (and their tasks) forever, and so do kept-alive
//! connections that never send another request. [`serve`] closes both, and leaves alone the responses
//! that are meant to last: a WebSocket leaves the HTTP connection once upgraded, and an SSE stream is a
//! request in flight, which no timeout here cuts.
//!
//! hyper's own `header_read_timeout` is not used: it runs from the moment hyper starts waiting for a head,
//! so it would also close every kept-alive connection after the header timeout, leaving no separate (longer)
//! idle timeout. Each connection here instead tracks its [`Phase`] and is dropped when its deadline passes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a connection may keep the server waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From a request head's first byte to its blank line (for a connection's first request, from the
    /// connection's opening): past it, a client that trickles its head (slowloris) is disconnected.
    pub header_read: Duration,
    /// How long a kept-alive connection may wait for its next request's first byte after a response.
    /// Longer than `header_read`, so that a browser's next click reuses the connection.
    pub idle: Duration,
    /// On shutdown, how long requests in flight may take to finish before their connections are closed.
    pub drain: Duration,
}

impl Default for Timeouts {
    /// 10 s for a request head, 60 s between requests, 10 s to drain on shutdown.
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(10),
        }
    }
}

/// Serve `router` on `listener` until `shutdown` completes, then stop accepting, let requests in flight
/// finish for at most [`Timeouts::drain`], and close what is left.
///
/// WebSocket upgrades work (and, once upgraded, are no longer this function's: close them first, as
/// `SyncHub::shutdown` does, so that clients hear "going away"). Every socket has Nagle's algorithm off,
/// since a reaction is a small write that must leave at once rather than wait for the previous one's ACK.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener, router: axum::Router) {
/// use example_dashboard::{Timeouts, serve};
/// let ctrl_c = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// serve(listener, router, Timeouts::default(), ctrl_c).await;
/// # }
/// ```
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            // axum's accept: retries after a failed accept (and waits a second when out of descriptors).
            (tcp, _) = axum::serve::Listener::accept(&mut listener) => {
                connections.spawn(connection(tcp, router.clone(), timeouts, stopping.clone()));
            }
            // Forget finished connections, so that the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Idle connections close at once, busy ones after their response.
    stop.send_replace(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(timeouts.drain, drained).await.is_err() {
        tracing::warn!(
            "{} connection(s) still busy after {:?}; closing them",
            connections.len(),
            timeouts.drain
        );
        connections.shutdown().await;
    }
}

/// Serve one connection until it ends, its [`Phase`]'s deadline passes, or the server stops.
async fn connection(
    tcp: TcpStream,
    router: Router,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let (phase, watching) = watch::channel(Phase::Head(Instant::now()));
    let phase = Arc::new(phase);
    let io = TokioIo::new(Watched {
        tcp,
        phase: phase.clone(),
    });
    let router = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request| {
        let busy = Busy::start(phase.clone());
        let response = hyper::service::Service::call(&router, request);
        async move {
            let response: axum::response::Response = response.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines below replace it (see the module's doc).
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut expired = pin!(expired(watching, timeouts));
    loop {
        tokio::select! {
            // Done, failed or upgraded (the WebSocket now owns the socket).
            _ = conn.as_mut() => return,
            // Dropping the connection closes the socket.
            () = &mut expired => return,
            Ok(()) = stopping.changed() => conn.as_mut().graceful_shutdown(),
        }
    }
}

/// Where a connection is between requests, and so which deadline applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is arriving, since this instant: it must be complete within `header_read`.
    Head(Instant),
    /// This many requests are being answered, from their head to their response's last byte. No
    /// deadline: a handler may take its time, and an SSE stream is a response that lasts.
    Busy(usize),
    /// The last response ended at this instant: the next request must start within `idle`.
    Idle(Instant),
}

/// Returns once the connection has stayed in one [`Phase`] past that phase's deadline.
async fn expired(mut phase: watch::Receiver<Phase>, timeouts: Timeouts) {
    loop {
        let deadline = match *phase.borrow_and_update() {
            Phase::Head(since) => Some(since + timeouts.header_read),
            Phase::Busy(_) => None,
            Phase::Idle(since) => Some(since + timeouts.idle),
        };
        let deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = deadline => return,
            changed = phase.changed() => {
                // The connection holds the sender, so it cannot be gone while the connection is served.
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// A request in flight, from its head to the end (or drop) of its response's body.
struct Busy(Arc<watch::Sender<Phase>>);

impl Busy {
    fn start(phase: Arc<watch::Sender<Phase>>) -> Busy {
        phase.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
            }
        });
        Busy(phase)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }
}

/// A response body that keeps its request [`Busy`] until hyper has sent it (or dropped it).
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noticing the first byte that arrives while the connection is idle: the next request's
/// head has begun, and from now on it has `header_read` to finish.
struct Watched {
    tcp: TcpStream,
    phase: Arc<watch::Sender<Phase>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.phase.send_if_modified(|p| match *p {
                Phase::Idle(_) => {
                    *p = Phase::Head(Instant::now());
                    true
                }
                Phase::Head(_) | Phase::Busy(_) => false,
            });
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
