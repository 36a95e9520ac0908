//! Phase 6: filters at scale (issue 14). What a filter that queries the database costs at 1,000 and
//! 10,000 recipients, side by side with no server file: the same closed-loop fan-out on this framework,
//! every row delivering to all N (the filters pass everyone), rows interleaved within each repeat on fresh
//! servers, their order rotated every repeat so that no row always runs first, after one warm-up run
//! that is not counted (the first run of a phase is the slowest on a VM).
//!
//! The database is simulated (`db.rs`: 10 worker threads, ~50 µs of wait and ~2 µs of caller CPU per
//! call) and counts its calls; each bench server reports the count on request, so the table shows the
//! database calls per trigger (counted, not timed) next to the deliveries/s. Ratios are to the
//! no-server-file row of the same repeat; the summary gives each row's median over the repeats.

use super::{Args, Env, Figures, Server, closed_publishes, ms, run};

/// The rows, in the order of the first repeat (and of every table).
const ROWS: [Server; 5] = [
    Server::Ours,
    Server::OursFilterAll,
    Server::OursDbEach,
    Server::OursDbPrepared,
    Server::OursDbClasses,
];

/// Subscriber counts when `--subscribers` is not given.
const DEFAULT_SUBSCRIBERS: [usize; 2] = [1000, 10_000];

/// What issue 14 asks of the per-trigger step and of classes: this much of the no-filter deliveries/s.
const TARGET_RATIO: f64 = 0.8;

/// The sync a database row's publisher requests (`None` for the other rows).
pub(crate) fn sync_of(server: Server) -> Option<&'static str> {
    match server {
        Server::OursDbEach => Some("dbeach"),
        Server::OursDbPrepared => Some("dbprepared"),
        Server::OursDbClasses => Some("dbclass"),
        _ => None,
    }
}

/// The rows of repeat `repeat` (from 1), in the order they run: rotated by one each repeat.
fn order(rows: &[Server], repeat: usize) -> Vec<Server> {
    let mut rows = rows.to_vec();
    if !rows.is_empty() {
        let by = (repeat.saturating_sub(1)) % rows.len();
        rows.rotate_left(by);
    }
    rows
}

/// The median; `NaN` for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// One row's figures in a repeat, as printed.
struct Row {
    server: Server,
    deliveries_per_sec: f64,
    ratio: f64,
    p99_ratio: f64,
    cpu_us: f64,
    calls_per_trigger: f64,
}

fn header() {
    println!(
        "{:<8} {:<30} {:>10} {:>6} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>11}",
        "repeat",
        "server",
        "deliv/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "p99 ratio",
        "cpu µs/d",
        "db/trigger",
        "db call µs",
        "db query µs"
    );
}

/// Print one run's line; `base` is the no-server-file row of the same repeat (`None`: this is it, or the
/// warm-up).
fn line(repeat: &str, server: Server, f: &Figures, base: Option<&Figures>, publishes: u64) -> Row {
    let (ratio, p99_ratio) = base.map_or((1.0, 1.0), |b| {
        (
            f.deliveries_per_sec / b.deliveries_per_sec,
            f.p99.as_secs_f64() / b.p99.as_secs_f64(),
        )
    });
    let db = f.db.unwrap_or_default();
    let calls_per_trigger = db.calls as f64 / publishes.max(1) as f64;
    let us = |d: std::time::Duration| {
        if db.calls == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", d.as_secs_f64() * 1e6)
        }
    };
    println!(
        "{:<8} {:<30} {:>10.0} {:>6.2} {:>8} {:>8} {:>9.2} {:>9.2} {:>10.1} {:>10} {:>11}",
        repeat,
        server.label(),
        f.deliveries_per_sec,
        ratio,
        ms(f.p50),
        ms(f.p99),
        p99_ratio,
        f.user_us + f.sys_us,
        calls_per_trigger,
        us(db.mean()),
        us(db.mean_query())
    );
    Row {
        server,
        deliveries_per_sec: f.deliveries_per_sec,
        ratio,
        p99_ratio,
        cpu_us: f.user_us + f.sys_us,
        calls_per_trigger,
    }
}

pub(crate) async fn phase(args: &Args, env: &Env) {
    if args.filters_repeats == 0 {
        return;
    }
    let counts = if args.subscribers_given {
        args.subscribers.clone()
    } else {
        DEFAULT_SUBSCRIBERS.to_vec()
    };
    let rows: Vec<Server> = ROWS.to_vec();
    for &n in &counts {
        let publishes = closed_publishes(args, n);
        println!(
            "\n== filters at scale: {n} subscribers, {publishes} closed-loop publishes, {} repeat(s); \
             simulated database: 10 connections, ~50 µs wait and ~2 µs CPU per call; every row delivers to all {n}",
            args.filters_repeats
        );
        header();
        let warm = run(Server::Ours, env, n, publishes, None).await;
        line("warm-up", Server::Ours, &warm, None, publishes);
        let mut all: Vec<Row> = Vec::new();
        for repeat in 1..=args.filters_repeats {
            let mut done: Vec<(Server, Figures)> = Vec::with_capacity(rows.len());
            for server in order(&rows, repeat) {
                done.push((server, run(server, env, n, publishes, None).await));
            }
            // Printed in the table's order once the repeat is over: every ratio needs its base.
            done.sort_by_key(|(s, _)| ROWS.iter().position(|r| r == s));
            let base = done
                .iter()
                .find(|(s, _)| *s == Server::Ours)
                .map(|(_, f)| f);
            for (server, f) in &done {
                let base = base.filter(|_| *server != Server::Ours);
                all.push(line(&repeat.to_string(), *server, f, base, publishes));
            }
        }
        for &server in &rows {
            let mine: Vec<&Row> = all.iter().filter(|r| r.server == server).collect();
            let of = |f: fn(&Row) -> f64| median(mine.iter().map(|r| f(r)).collect());
            let target = match server {
                Server::OursDbPrepared | Server::OursDbClasses => {
                    format!(" (target ≥ {TARGET_RATIO:.2})")
                }
                _ => String::new(),
            };
            println!(
                "summary  {n} subscribers, {:<30} medians over {} repeat(s): {:.0} deliv/s, ratio {:.3}{target}, p99 ratio {:.2}, cpu {:.2} µs/d, {:.1} db calls/trigger",
                server.label(),
                mine.len(),
                of(|r| r.deliveries_per_sec),
                of(|r| r.ratio),
                of(|r| r.p99_ratio),
                of(|r| r.cpu_us),
                of(|r| r.calls_per_trigger),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repeat_starts_with_another_row() {
        let rows = [Server::Ours, Server::OursFilterAll, Server::OursDbEach];
        assert_eq!(order(&rows, 1), rows);
        assert_eq!(
            order(&rows, 2),
            [Server::OursFilterAll, Server::OursDbEach, Server::Ours]
        );
        assert_eq!(order(&rows, 4), rows);
        assert!(order(&[], 3).is_empty());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn every_database_row_has_its_sync_files() {
        for server in [
            Server::OursDbEach,
            Server::OursDbPrepared,
            Server::OursDbClasses,
        ] {
            assert!(sync_of(server).is_some(), "{}", server.label());
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bench/_sync");
        for server in ROWS {
            if let Some(name) = sync_of(server) {
                for side in ["client", "server"] {
                    let file = dir.join(format!("{name}_{side}.rs"));
                    assert!(file.exists(), "{}: no {}", server.label(), file.display());
                }
            }
        }
    }
}
