//! The benchmarked app: one route, `/bench`, with `tick` (no server file), `filtered` (a server filter)
//! and `dbeach` (an async filter making one simulated database call per recipient; [`Db`]).
//! `cargo run --release -p sync-bench` runs the comparison; see `docs/BENCHMARKS.md`.

use std::future::Future;
use std::time::Duration;

use axum::serve::ListenerExt;
use sync_runtime::{Backplane, BackplaneStatus, Identity, Refusal, SyncHub};

pub mod db;

pub use db::{Db, DbConfig, DbError, DbStats, TEAMS, Teams};

sync_runtime::include_routes!();

/// A hub where token `u<n>` is user `u<n>` (the session is the number, for the half-passing filter). With
/// `redis`, the hub shares triggers with other nodes through the Redis backplane at that URL. With
/// `presence`, every connection gets its path's user list (`presence`, then `presence_diff` frames) with
/// the view `{"name":"u<n>"}`, at the runtime's default limit (100 listed) and window (100 ms). With
/// `metrics`, the hub keeps its Prometheus series. `db` is the filters' functions (`ServerCx<_, u64, Db>`).
/// Must be called on a Tokio runtime (the backplane starts its tasks there).
pub fn hub(redis: Option<&str>, presence: bool, metrics: bool, db: Db) -> SyncHub {
    let builder = SyncHub::builder()
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
        .functions(db);
    // The view has no `"n":` key: the load generator reads a trigger's number from the first `"n":` or
    // `"payload":` in a frame.
    let builder = if presence {
        builder.presence(|n: &u64| serde_json::json!({ "name": format!("u{n}") }))
    } else {
        builder
    };
    let builder = if metrics { builder.metrics() } else { builder };
    let builder = match redis {
        Some(url) => builder.backplane(Backplane::redis(url)),
        None => builder,
    };
    // `BENCH_HISTORY=0`: offsets still count, but no trigger is kept (the history-off rows).
    let builder = match std::env::var("BENCH_HISTORY")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(size) => builder.history_size(size),
        None => builder,
    };
    builder
        .build()
        .expect("the bench handlers use u64 sessions and the simulated database as functions")
}

/// Wait (at most 2 s) until the hub's backplane publishes and is subscribed, so that a trigger published
/// right after start reaches the other nodes. Returns the last status if it did not get there.
pub async fn backplane_ready(hub: &SyncHub) -> Result<(), BackplaneStatus> {
    let mut last = BackplaneStatus::default();
    for _ in 0..40 {
        match hub.backplane_status() {
            None => return Ok(()),
            Some(s) if s.publishing && s.subscribed => return Ok(()),
            Some(s) => last = s,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

/// Serve until stdin closes, printing the port first: how the harness runs a server as a child process.
/// `make` builds the router on the server's runtime; the port is printed once it returns. Each line `db`
/// on stdin is answered with one line `db <calls> <total_call_us> <total_query_us>` on stdout
/// ([`DbStats::line`]): `db`'s calls so far (`db 0 0 0` without one), read by the harness before and
/// after a run.
pub fn serve_child<Fut: Future<Output = axum::Router>>(db: Option<Db>, make: impl FnOnce() -> Fut) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let router = make().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        println!("{}", listener.local_addr().expect("an address").port());
        // Nagle off, as Node's HTTP server (the Socket.IO peer) does by default: otherwise a small frame
        // written while the previous one awaits a delayed ACK waits up to 40 ms.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        tokio::task::spawn_blocking(move || {
            // Rust's stdout is line-buffered, pipe or not: each answer reaches the harness at once.
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "db" {
                    let stats = db.as_ref().map(Db::stats).unwrap_or_default();
                    println!("{}", stats.line());
                }
            }
        })
        .await
        .expect("stdin watcher");
    });
}
