//! This framework's server for the benchmark (started by the harness). With `REDIS_URL` set, the hub joins
//! the Redis backplane at that URL (the two-node run), and the port is printed once the backplane is up.
fn main() {
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    sync_bench::serve_child(|| async move {
        // Now and then (seen in ~1 of 12 starts on a busy machine) the backplane publishes but never
        // subscribes: `subscribed` stays false and Redis shows no subscriber. Suspected: the subscriber task
        // is spawned inside `Arc::new_cyclic` in `SyncHubBuilder::build` and returns at once if it runs before
        // the hub exists (`hub.strong_count() == 0`). A fresh hub gets past it.
        for attempt in 1..=5 {
            let hub = sync_bench::hub(redis.as_deref());
            match sync_bench::backplane_ready(&hub).await {
                Ok(()) => return hub.router(),
                Err(status) if attempt == 5 => {
                    eprintln!("bench-ours: the Redis backplane is not up ({status:?}); continuing");
                    return hub.router();
                }
                Err(status) => {
                    eprintln!(
                        "bench-ours: the Redis backplane is not up after 2 s ({status:?}); new hub"
                    );
                }
            }
        }
        unreachable!("the last attempt returns")
    });
}
