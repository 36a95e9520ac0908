//! `example_dashboard::serve` (what `main` runs) against clients that hold connections: a head trickled a
//! line at a time and a kept-alive connection that goes quiet are closed; a WebSocket and an SSE stream,
//! which are meant to last, are not.
//!
//! Each server is configured with a 1 s timeout for the behaviour under test and 60 s for the other, so
//! that only the timeout under test can act; each test waits up to 20 s for it.

use std::net::SocketAddr;
use std::time::Duration;

use example_dashboard::{App, Timeouts, hub, router, serve};
use sync_runtime::SyncHub;
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The timeout under test.
const SHORT: Duration = Duration::from_secs(1);
/// The other timeout: long enough not to act during a test.
const LONG: Duration = Duration::from_secs(60);
/// How long a test waits for the server to close a socket: generous, since the machine may be busy.
const BOUND: Duration = Duration::from_secs(20);
/// How long a test waits for a response or a reaction.
const WAIT: Duration = Duration::from_secs(10);

/// The example served on a loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    hub: SyncHub,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(timeouts: Timeouts) -> Server {
    let app = App::seeded();
    let hub = hub(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let addr = listener.local_addr().expect("an address");
    let task = tokio::spawn(serve(
        listener,
        router(&hub),
        timeouts,
        std::future::pending(),
    ));
    Server { addr, hub, task }
}

/// Read one response (head and `Content-Length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the connection closed mid-response");
            bytes.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&bytes);
            let Some(head_end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a Content-Length")
                .parse()
                .expect("a number");
            if bytes.len() >= head_end + 4 + length {
                return text.into_owned();
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a response in time")
}

/// Log in through the form (on its own connection); the `sid=...` cookie.
async fn login(addr: SocketAddr, name: &str, team: &str) -> String {
    let body = format!("name={name}&team={team}");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let response = read_response(&mut stream).await;
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn a_slow_header_sender_is_disconnected() {
    let server = start(Timeouts {
        header_read: SHORT,
        idle: LONG,
        ..Timeouts::default()
    })
    .await;
    let (mut read, mut write) = TcpStream::connect(server.addr)
        .await
        .expect("connect")
        .into_split();
    write
        .write_all(b"GET /login HTTP/1.1\r\n")
        .await
        .expect("write");
    // A slowloris client: one more header line every third of the timeout, never the blank line.
    let mut trickle = tokio::time::interval(SHORT / 3);
    let closed = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = read.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 before the close would be fine too
                },
                _ = trickle.tick() => {
                    // Fails once the server has closed; the read above then sees it.
                    let _ = write.write_all(b"X-Slow: 1\r\n").await;
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an unfinished request head still holds its connection after {BOUND:?} (header timeout {SHORT:?})"
    );
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed() {
    let server = start(Timeouts {
        header_read: LONG,
        idle: SHORT,
        ..Timeouts::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // Kept alive between two requests...
    for _ in 0..2 {
        stream
            .write_all(b"GET /login HTTP/1.1\r\nHost: example\r\n\r\n")
            .await
            .expect("write");
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // ...then quiet: the server closes it.
    let read = tokio::time::timeout(BOUND, stream.read(&mut [0u8; 64])).await;
    match read {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!("{n} unexpected bytes on an idle connection"),
        Err(_) => panic!(
            "an idle kept-alive connection is still open after {BOUND:?} (idle timeout {SHORT:?})"
        ),
    }
}

/// Connect alice to `/dashboard` over `url`, let several timeout periods pass, and check that reactions
/// still arrive on the same connection.
async fn a_live_connection_outlives_the_timeouts(url: &str) {
    let server = start(Timeouts {
        header_read: SHORT,
        idle: SHORT,
        ..Timeouts::default()
    })
    .await;
    let cookie = login(server.addr, "alice", "red").await;
    let url = url.replace("ADDR", &server.addr.to_string());
    let mut alice = SyncClient::connect(
        &url,
        ConnectOptions::new()
            .header("Cookie", cookie)
            .path("/dashboard"),
    )
    .await
    .expect("the cookie authenticates");
    for round in 0..2 {
        if round == 1 {
            // Nothing but the live connection for four timeout periods: what the test is about.
            tokio::time::sleep(SHORT * 4).await;
        }
        let outcome = server
            .hub
            .request(
                "/dashboard",
                "refreshData",
                serde_json::json!({ "team": "red" }),
            )
            .await
            .expect("a refresh");
        assert_eq!(
            outcome.delivered, 1,
            "alice is on /dashboard (round {round})"
        );
        let reaction = tokio::time::timeout(WAIT, alice.next_reaction())
            .await
            .expect("a reaction in time")
            .unwrap_or_else(|| panic!("the connection closed (round {round})"));
        assert_eq!(reaction.reaction["selector"], "#tasks");
    }
    assert_eq!(alice.reconnects(), 0, "the same connection throughout");
}

#[tokio::test]
async fn a_websocket_outlives_the_timeouts() {
    a_live_connection_outlives_the_timeouts("ws://ADDR/_sync/ws").await;
}

/// An SSE stream is a response in flight; the `POST`s beside it go over a kept-alive connection, which the
/// idle timeout does close (the client then opens another).
#[tokio::test]
async fn an_sse_stream_outlives_the_timeouts() {
    a_live_connection_outlives_the_timeouts("http://ADDR/_sync/sse").await;
}
