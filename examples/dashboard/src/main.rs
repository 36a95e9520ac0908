//! Run with: cargo run -p example-dashboard
//!
//! Serves the example on http://127.0.0.1:3000 (`PORT` or `ADDR=host:port` override it), with a seeded
//! in-memory SQLite database: log in as alice or bob (team red) and carol (team blue) in separate windows.

use std::time::Duration;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| {
        let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
        format!("127.0.0.1:{port}")
    });
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    let app = example_dashboard::App::seeded();
    let hub = example_dashboard::hub(app.clone());
    println!("example-dashboard: open http://{addr} and log in as alice, bob or carol");
    let router = example_dashboard::router(app, &hub);
    // Ctrl-C: close the live connections first ("going away"; pages reconnect to the next server), since
    // axum's graceful shutdown waits for every open connection and a WebSocket never ends by itself.
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        hub.shutdown(Duration::from_secs(5)).await;
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .expect("the server runs");
}
