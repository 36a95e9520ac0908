//! The ceiling: a minimal tokio + tungstenite (through axum) broadcaster with no framework. A connection
//! that sends `pub` is the publisher; each number it sends is pushed, pre-serialized once, to every other
//! connection through a bounded queue, and answered with `ok`. With `CEILING_FRAME_PAD=<n>` each frame
//! carries `n` more bytes (`"pad":"xx…"`), to compare at the size of the framework's frames.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Utf8Bytes>>>>;

async fn upgrade(State(subs): State<Subscribers>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| run(socket, subs))
}

async fn run(socket: WebSocket, subs: Subscribers) {
    let (mut sink, mut stream) = socket.split();
    let Some(Ok(Message::Text(first))) = stream.next().await else {
        return;
    };
    if first.as_str() == "pub" {
        let pad = std::env::var("CEILING_FRAME_PAD")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| "x".repeat(n));
        while let Some(Ok(Message::Text(n))) = stream.next().await {
            let frame = match &pad {
                Some(pad) => Utf8Bytes::from(format!(r#"{{"n":{},"pad":"{pad}"}}"#, n.as_str())),
                None => Utf8Bytes::from(format!(r#"{{"n":{}}}"#, n.as_str())),
            };
            let targets: Vec<_> = subs.lock().expect("lock").clone();
            for tx in targets {
                let _ = tx.try_send(frame.clone());
            }
            if sink.send(Message::text("ok")).await.is_err() {
                return;
            }
        }
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(1024);
    subs.lock().expect("lock").push(tx);
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        for frame in batch.drain(..) {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

fn main() {
    let subs: Subscribers = Arc::default();
    sync_bench::serve_child(None, || async move {
        axum::Router::new()
            .route("/", get(upgrade))
            .with_state(subs)
    });
}
