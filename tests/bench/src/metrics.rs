//! Phase 5: what Prometheus metrics cost. The same closed-loop fan-out on this framework with metrics off
//! and on (`BENCH_METRICS=1`: `SyncHubBuilder::metrics`, and the server scrapes itself every second, far
//! more often than Prometheus would), one right after the other on fresh servers, their order swapped
//! every repeat so that neither always runs on a warmer machine, after one warm-up run that is not
//! counted (the first run of a phase is the slowest on a VM). The goal: metrics on loses at most 3% of the
//! deliveries/s. Runs on a shared VM drift by more than that from one to the next, so each pair gives its
//! own ratio and the summary is their median, next to the ratio of the means.

use super::{Args, Env, Server, closed_publishes, ms, run};

pub(crate) async fn phase(args: &Args, env: &Env) {
    if args.metrics_repeats == 0 {
        return;
    }
    for &n in &args.subscribers {
        let publishes = closed_publishes(args, n);
        println!(
            "\n== metrics off and on: {n} subscribers, {publishes} closed-loop publishes, {} pair(s)",
            args.metrics_repeats
        );
        println!(
            "{:<8} {:<20} {:>10} {:>8} {:>8}",
            "repeat", "server", "deliv/s", "p50 ms", "p99 ms"
        );
        let warm = run(Server::Ours, env, n, publishes, None).await;
        println!(
            "{:<8} {:<20} {:>10.0} {:>8} {:>8}",
            "warm-up",
            "metrics off",
            warm.deliveries_per_sec,
            ms(warm.p50),
            ms(warm.p99)
        );
        let (mut off_total, mut on_total) = (0.0, 0.0);
        let mut ratios = Vec::with_capacity(args.metrics_repeats);
        for repeat in 1..=args.metrics_repeats {
            let order = if repeat % 2 == 1 {
                [Server::Ours, Server::OursMetrics]
            } else {
                [Server::OursMetrics, Server::Ours]
            };
            let (mut off, mut on) = (0.0, 0.0);
            for server in order {
                let f = run(server, env, n, publishes, None).await;
                let label = match server {
                    Server::OursMetrics => "metrics on",
                    _ => "metrics off",
                };
                println!(
                    "{:<8} {:<20} {:>10.0} {:>8} {:>8}",
                    repeat,
                    label,
                    f.deliveries_per_sec,
                    ms(f.p50),
                    ms(f.p99)
                );
                match server {
                    Server::OursMetrics => on = f.deliveries_per_sec,
                    _ => off = f.deliveries_per_sec,
                }
            }
            println!("{:<8} {:<20} {:>10.3}", repeat, "on/off", on / off);
            ratios.push(on / off);
            off_total += off;
            on_total += on;
        }
        ratios.sort_by(f64::total_cmp);
        let mid = ratios.len() / 2;
        let median = if ratios.len() % 2 == 0 {
            (ratios[mid - 1] + ratios[mid]) / 2.0
        } else {
            ratios[mid]
        };
        let pairs = args.metrics_repeats as f64;
        println!(
            "summary  {n} subscribers: metrics off {:.0}, on {:.0} deliv/s (means); on/off: median of pairs {median:.3}, of the means {:.3}",
            off_total / pairs,
            on_total / pairs,
            on_total / off_total
        );
    }
}
