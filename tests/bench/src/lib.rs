//! The benchmarked app: one route, `/bench`, with `tick` (no server file) and `filtered` (a server filter).
//! `cargo run --release -p sync-bench` runs the comparison; see `docs/BENCHMARKS.md`.

use sync_runtime::{Identity, Refusal, SyncHub};

sync_runtime::include_routes!();

/// A hub where token `u<n>` is user `n` (the session is the number, for the half-passing filter).
pub fn hub() -> SyncHub {
    SyncHub::builder()
        .authenticate(|req| async move {
            let n: u64 = req
                .token()
                .and_then(|t| t.strip_prefix('u'))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Refusal::new("token must be u<n>"))?;
            Ok(Identity::new(format!("u{n}"), n))
        })
        .max_connections_per_user(1_000_000)
        .rate_limit(1_000_000, 1_000_000)
        .user_rate_limit(1_000_000, 1_000_000)
        .build()
        .expect("the bench handlers use u64 sessions and no functions")
}

/// Serve until stdin closes, printing the port first: how the harness runs a server as a child process.
pub fn serve_child(router: axum::Router) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        println!("{}", listener.local_addr().expect("an address").port());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .expect("stdin watcher");
    });
}
