//! The bare broadcaster: the plainest tokio-tungstenite server, as a newcomer would write it from the
//! crate's README. `accept_async` on a `TcpListener` with the default configuration, one task per
//! connection fed by a bounded channel, no axum, no buffer tuning. It speaks the ceiling's protocol: a
//! connection that sends `pub` is the publisher, `sub` a subscriber; each number the publisher sends is
//! pushed, serialized once, to every subscriber and answered with `ok`.
//!
//! Beside `bench-ceiling` (axum, with the buffers sized like ours) it is the yardstick for "no more memory
//! per connection than a bare broadcaster". tungstenite 0.29's default read buffer is 128 KiB, zeroed on
//! the first read, so each connection holds that much; `BARE_READ_BUFFER=<bytes>` sets it instead (4096:
//! the fixed read chunk of tungstenite 0.20 and earlier, which the outside yardstick's 4.6 KiB reflects).

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Message>>>>;

async fn run(tcp: TcpStream, subs: Subscribers, read_buffer: Option<usize>) {
    let accepted = match read_buffer {
        None => tokio_tungstenite::accept_async(tcp).await,
        Some(size) => {
            let config = WebSocketConfig::default().read_buffer_size(size);
            tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
        }
    };
    let Ok(ws) = accepted else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let Some(Ok(Message::Text(first))) = stream.next().await else {
        return;
    };
    if first.as_str() == "pub" {
        while let Some(Ok(Message::Text(n))) = stream.next().await {
            let frame = Message::Text(Utf8Bytes::from(format!(r#"{{"n":{}}}"#, n.as_str())));
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
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    subs.lock().expect("lock").push(tx);
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => if sink.send(frame).await.is_err() { return },
                None => return,
            },
            read = stream.next() => match read {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        println!("{}", listener.local_addr().expect("an address").port());
        let subs: Subscribers = Arc::default();
        let read_buffer = std::env::var("BARE_READ_BUFFER")
            .ok()
            .and_then(|n| n.parse().ok());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // Nagle off, as every server in the benchmark (see `serve_child`).
                let _ = tcp.set_nodelay(true);
                tokio::spawn(run(tcp, subs.clone(), read_buffer));
            }
        });
        // Serve until the harness closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .expect("stdin watcher");
    });
}
