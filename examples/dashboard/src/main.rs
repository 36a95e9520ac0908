//! Run with: cargo run -p example-dashboard
//!
//! Serves the example on http://127.0.0.1:3000 (`PORT` or `ADDR=host:port` override it), with a seeded
//! in-memory SQLite database: log in as alice or bob (team red) and carol (team blue) in separate windows.
//! Every page lists who is on it; `/dashboard` also switches your team, and your open pages follow.
//! `example_dashboard::serve` serves it, with a header-read and an idle timeout (see `Timeouts`).
//!
//! Several processes: give each the same `DATABASE` (an SQLite file they share) and `REDIS_URL`, and its
//! own `PORT`; a change made through any of them reaches the pages served by all of them. On a Redis
//! Cluster, `REDIS_CLUSTER` lists some of its nodes instead (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`).

use std::time::Duration;

#[tokio::main]
async fn main() {
    // The runtime's logs (connections refused, a Redis outage and its recovery) on stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| {
        let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
        format!("127.0.0.1:{port}")
    });
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let app = match std::env::var("DATABASE") {
        Ok(path) => example_dashboard::App::open(&path),
        Err(_) => example_dashboard::App::seeded(),
    };
    let backplane = match (std::env::var("REDIS_CLUSTER"), std::env::var("REDIS_URL")) {
        (Ok(nodes), _) => Some(sync_runtime::Backplane::redis_cluster(nodes.split(','))),
        (_, Ok(url)) => Some(sync_runtime::Backplane::redis(url)),
        _ => None,
    };
    let hub = example_dashboard::hub_with(app, backplane);
    println!("example-dashboard: open http://{addr} and log in as alice, bob or carol");
    let router = example_dashboard::router(&hub);
    // Ctrl-C: close the live connections first ("going away"; pages reconnect to the next server). `serve`
    // then lets the requests in flight finish, but an SSE stream only ends when the hub closes it, and an
    // upgraded WebSocket is no longer the HTTP server's to close.
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        hub.shutdown(Duration::from_secs(5)).await;
    };
    // A request head within 10 s, the next request within 60 s, 10 s to drain: see `Timeouts`.
    example_dashboard::serve(
        listener,
        router,
        example_dashboard::Timeouts::default(),
        shutdown,
    )
    .await;
}
