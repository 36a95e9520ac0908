//! What the crate's own tests share: a transport whose frames go to a channel, and clients over it, so
//! that the hub, the fan-out and the lifecycle are tested without a socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use axum::http::{HeaderMap, Uri};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;
use crate::conn::writer::Sink;
use crate::registry::Registration;
use crate::transport::inbound::{Inbound, receive};
use crate::transport::{ConnectQuery, ReadEnd, admit, attach, serve};
use crate::{Identity, SyncHub, SyncHubBuilder};

/// What a test transport was given.
#[derive(Debug)]
pub(crate) enum Sent {
    Frame(String),
    Close(u16),
}

/// A transport whose frames go to a channel.
pub(crate) struct MemorySink(mpsc::UnboundedSender<Sent>);

impl Sink for MemorySink {
    async fn feed(&mut self, _seq: Option<u64>, text: Utf8Bytes) -> Result<(), ()> {
        self.0
            .send(Sent::Frame(text.as_str().to_owned()))
            .map_err(drop)
    }

    async fn flush(&mut self) -> Result<(), ()> {
        Ok(())
    }

    async fn close(&mut self, code: u16, _reason: &'static str) {
        let _ = self.0.send(Sent::Close(code));
    }
}

/// How long a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// A client of a hub over a [`MemorySink`].
pub(crate) struct TestClient {
    pub hub: SyncHub,
    pub conn: Arc<Conn>,
    frames: mpsc::UnboundedReceiver<Sent>,
    reader: Option<oneshot::Sender<ReadEnd>>,
}

impl TestClient {
    /// Connect as `token` (the test hub's authenticator decides what it means) on `path`.
    pub async fn connect(hub: &SyncHub, token: &str, path: &str) -> TestClient {
        Self::open(hub, token, Some(path), None, None).await
    }

    /// Connect, resuming `key` after `last_seq`.
    pub async fn resume(hub: &SyncHub, token: &str, key: &str, last_seq: u64) -> TestClient {
        Self::open(hub, token, None, Some((key.to_owned(), last_seq)), None).await
    }

    /// Connect at `path`, having had everything there up to `cursor`.
    pub async fn from_cursor(hub: &SyncHub, token: &str, path: &str, cursor: &str) -> TestClient {
        Self::open(hub, token, Some(path), None, Some(cursor)).await
    }

    async fn open(
        hub: &SyncHub,
        token: &str,
        path: Option<&str>,
        resume: Option<(String, u64)>,
        cursor: Option<&str>,
    ) -> TestClient {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header"),
        );
        let query = ConnectQuery {
            path: path.map(str::to_owned),
            token: None,
            resume: None,
            last_seq: None,
            // No acknowledgements: the test reads at its own pace and the writer never waits for it.
            ack: None,
            cursor: None,
        };
        let inner = hub.inner.clone();
        let admitted = admit(
            &inner,
            headers,
            Uri::from_static("/_sync/ws"),
            &query,
            resume,
            cursor,
        )
        .await
        .expect("admitted");
        let attached = attach(&inner, admitted).await.expect("a connection");
        let conn = attached.conn.clone();
        let (tx, frames) = mpsc::unbounded_channel();
        let (reader, read_end) = oneshot::channel();
        let reading = move || async move { read_end.await.unwrap_or(ReadEnd::Dropped) };
        tokio::spawn(serve(
            inner,
            crate::transport::Transport::WebSocket,
            attached,
            MemorySink(tx),
            reading,
            false,
        ));
        TestClient {
            hub: hub.clone(),
            conn,
            frames,
            reader: Some(reader),
        }
    }

    /// The next frame, as JSON.
    pub async fn next(&mut self) -> Value {
        match tokio::time::timeout(WAIT, self.frames.recv()).await {
            Ok(Some(Sent::Frame(text))) => serde_json::from_str(&text).expect("JSON"),
            Ok(Some(Sent::Close(code))) => panic!("closed with {code}"),
            Ok(None) => panic!("the transport ended"),
            Err(_) => panic!("timed out waiting for a frame"),
        }
    }

    /// The next frame of type `t`, skipping others.
    pub async fn next_of(&mut self, t: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["t"] == t {
                return frame;
            }
        }
    }

    /// How the transport was closed.
    pub async fn closed(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.frames.recv()).await {
                Ok(Some(Sent::Close(code))) => return code,
                Ok(Some(Sent::Frame(_))) => {}
                Ok(None) => panic!("ended without a close"),
                Err(_) => panic!("timed out waiting for a close"),
            }
        }
    }

    /// Whether a frame is waiting right now.
    pub fn has_frame(&mut self) -> bool {
        !self.frames.is_empty()
    }

    /// One message from the client.
    pub async fn send(&self, text: &str) {
        receive(&self.hub.inner, &self.conn, Inbound::Text(text)).await;
    }

    /// The transport dies without a goodbye (a network cut).
    pub fn cut(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.send(ReadEnd::Dropped);
        }
    }

    /// Wait until the connection's transport let go of it.
    pub async fn until_parked(&self) {
        until("parked", || self.conn.phase() == crate::conn::Phase::Parked).await;
    }

    /// The resume key from the connection's `hello` (frames before it are skipped).
    pub async fn resume_key(&mut self) -> String {
        self.next_of("hello").await["resume"]
            .as_str()
            .expect("hello carries a resume key")
            .to_owned()
    }
}

/// Wait (yielding, never sleeping) until `ready` holds, or panic naming `what` after [`WAIT`].
pub(crate) async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !ready() {
            tokio::task::yield_now().await;
        }
    });
    if waited.await.is_err() {
        panic!("timed out waiting until {what}");
    }
}

/// A hub whose tokens are user names (each user's session is the name too), with exactly the syncs
/// `regs`, and whatever else `configure` sets.
pub(crate) fn token_hub(
    regs: &[&'static Registration],
    configure: impl FnOnce(SyncHubBuilder<String, ()>) -> SyncHubBuilder<String, ()>,
) -> SyncHub {
    let builder = SyncHub::builder().authenticate(|req| {
        let name = req.token().unwrap_or("anonymous").to_owned();
        async move { Ok(Identity::new(name.clone(), name)) }
    });
    configure(builder)
        .build_with(regs)
        .expect("the test syncs fit")
}

/// The data of [`NOTE`].
#[derive(serde::Deserialize, serde::Serialize)]
pub(crate) struct Note {
    pub n: u64,
}

fn react_note(cx: crate::ClientCx<Note, ()>) -> crate::Reaction {
    crate::Reaction::event("note", serde_json::json!({ "n": cx.data.n }))
}

/// `note` on `/room/[id]`: no server file, an event `note` with the data's `n`; its data crosses nodes.
pub(crate) static NOTE: Registration = Registration {
    route: "/room/[id]",
    name: "note",
    client_file: "src/room/[id]/_sync/note_client.rs",
    server_file: None,
    build: || crate::handler::SyncDef::new(react_note).finish(),
    data_json: || Some(|d| serde_json::to_string(d.downcast_ref::<Note>()?).ok()),
};
