//! This framework's server for the benchmark (started by the harness). With `REDIS_URL` set, the hub joins
//! the Redis backplane at that URL (the two-node run), and the port is printed once the backplane is up.
//! With `BENCH_PRESENCE=1`, connections get their path's user list (the presence phase); with
//! `BENCH_HISTORY=<n>`, each path keeps `n` triggers of history (0: none); with `BENCH_METRICS=1`, the hub
//! keeps Prometheus metrics and a task reads their text every second (a scrape, more often than usual).
//! Every hub has the simulated database (`sync_bench::Db`) as its filters' functions; a line `db` on stdin
//! prints its call count.
fn main() {
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let presence = std::env::var("BENCH_PRESENCE").is_ok_and(|v| v == "1");
    let metrics = std::env::var("BENCH_METRICS").is_ok_and(|v| v == "1");
    // The filters' simulated database; `db` on stdin reads its call count.
    let db = sync_bench::Db::new(sync_bench::DbConfig::default());
    sync_bench::serve_child(Some(db.clone()), || async move {
        let hub = sync_bench::hub(redis.as_deref(), presence, metrics, db);
        if metrics {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    every.tick().await;
                    let text = hub.metrics_text().unwrap_or_default();
                    std::hint::black_box(text);
                }
            });
        }
        if let Err(status) = sync_bench::backplane_ready(&hub).await {
            // A two-node figure without a working backplane would be a lie: stop, loudly.
            eprintln!("bench-ours: the Redis backplane is not up after 2 s ({status:?})");
            std::process::exit(1);
        }
        hub.router()
    });
}
