//! The TypeScript declarations over a real socket: a hub whose binary registered none (no
//! `include_routes!()`, as here) answers 404 at `<prefix>/types.d.ts`, and serves the client's
//! route-agnostic `<prefix>/client.d.ts` with its prefix in the module name.

use std::time::Duration;

use sync_runtime::SyncHub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

async fn serve(prefix: &str) -> std::net::SocketAddr {
    let hub = SyncHub::builder()
        .guests()
        .path_prefix(prefix)
        .build()
        .expect("a guest hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(listener, hub.router())
            .await
            .expect("the server runs");
    });
    addr
}

/// `GET path`: the whole response, head and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        String::from_utf8(bytes).expect("UTF-8")
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("a response in time")
}

#[tokio::test]
async fn without_generated_declarations_types_d_ts_is_404() {
    let addr = serve("/_sync").await;
    let response = get(addr, "/_sync/types.d.ts").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("include_routes!()"), "{response}");
}

#[tokio::test]
async fn client_d_ts_names_the_module_under_the_hubs_prefix() {
    let addr = serve("/live").await;
    let response = get(addr, "/live/client.d.ts").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/typescript; charset=utf-8"),
        "{response}"
    );
    assert!(
        response.contains("declare module \"*/live/client.js\" {"),
        "{response}"
    );
    assert!(!response.contains("/_sync/client.js\" {"), "{response}");
    assert!(
        response.contains(
            "export function syncRequest(request: AnySyncRequest): Promise<SyncOutcome>;"
        )
    );
}
