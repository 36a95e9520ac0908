//! Run with: cargo run -p example-dashboard
//!
//! Serves the example on http://127.0.0.1:3000 (`ADDR` overrides), with a seeded in-memory SQLite database:
//! log in as alice or bob (team red) or carol (team blue) in two browser windows.

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    let app = example_dashboard::App::seeded();
    let hub = example_dashboard::hub(app.clone());
    println!("example-dashboard: open http://{addr} (log in as alice, bob or carol)");
    let router = example_dashboard::router(app, &hub);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .expect("the server runs");
    hub.shutdown(std::time::Duration::from_secs(5)).await;
}
