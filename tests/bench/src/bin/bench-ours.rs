//! This framework's server for the benchmark (started by the harness). With `REDIS_URL` set, the hub joins
//! the Redis backplane at that URL (the two-node run), and the port is printed once the backplane is up.
//! With `BENCH_PRESENCE=1`, connections get their path's user list (the presence phase); with
//! `BENCH_HISTORY=<n>`, each path keeps `n` triggers of history (0: none).
fn main() {
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let presence = std::env::var("BENCH_PRESENCE").is_ok_and(|v| v == "1");
    sync_bench::serve_child(|| async move {
        let hub = sync_bench::hub(redis.as_deref(), presence);
        if let Err(status) = sync_bench::backplane_ready(&hub).await {
            // A two-node figure without a working backplane would be a lie: stop, loudly.
            eprintln!("bench-ours: the Redis backplane is not up after 2 s ({status:?})");
            std::process::exit(1);
        }
        hub.router()
    });
}
