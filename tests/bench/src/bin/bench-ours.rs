//! This framework's server for the benchmark (started by the harness). With `REDIS_URL` set, the hub joins
//! the Redis backplane at that URL (the two-node run), and the port is printed once the backplane is up.
fn main() {
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    sync_bench::serve_child(|| async move {
        let hub = sync_bench::hub(redis.as_deref());
        if !sync_bench::backplane_ready(&hub).await {
            eprintln!("bench-ours: the Redis backplane is not up after 10 s; continuing");
        }
        hub.router()
    });
}
