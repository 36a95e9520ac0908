//! The presence phase: what a big room costs everyone else while users come and go.
//!
//! One server process with a presence mapping (`BENCH_PRESENCE=1`) holds:
//!
//! * a room of `--presence-room` connections on `/room`, which read every frame and count the presence
//!   frames and bytes they get (reading keeps their queues short: a member that stopped reading would
//!   be closed as a slow consumer, and that would be a figure of the load generator, not the server);
//! * `SUBSCRIBERS` trigger subscribers on `/bench`, elsewhere rather than in the room: the question is
//!   what churn in one big room costs the other traffic of the server. In the room, every trigger would
//!   go to 10,000 connections and the figure would be the fan-out phase's again, with the presence
//!   frames a small share of it;
//! * `--presence-churn` churn users, connected before the first row, each on its own path `/away/<j>`,
//!   so that leaving the room does not make a second busy room. While churn is on, each one navigates
//!   (`nav`) into the room, waits for its `located`, stays `DWELL`, navigates back out, stays `DWELL`,
//!   and so on: with 1,000 users, about 1,000 joins and 1,000 leaves per second. Navigation rather than
//!   connect/close, so that the rows measure presence, not handshakes (the churn phase measures those).
//!
//! Rows, each `--presence-seconds` long, on the same connections: triggers published in a closed loop
//! (the next when every subscriber has the last), alternately without and with churn (no churn, churn,
//! no churn, churn, no churn), so that each churn row is measured against the no-churn rows either side
//! of it; then the same at a fixed rate (`OPEN_SHARE` of the no-churn closed loop), without, with and
//! without churn, for whether the server still keeps up and how late triggers arrive; then churn with
//! no triggers, where the server's CPU is what presence costs, divided by the
//! joins and leaves it served and compared with what a trigger delivery cost in the no-churn rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Counts, Env, LIVE, MAX_OPEN, Publisher, Running, Server, connect_all, connect_paced, cpu, ms,
    next_text, open_loop, percentiles, sibling, spawn_server, ws_connect,
};

/// Trigger subscribers on `/bench`.
const SUBSCRIBERS: usize = 1000;
/// How long a churn user stays in the room, and then out of it.
const DWELL: Duration = Duration::from_millis(500);
/// Room members are users `u10000000…`, churn users `u20000000…` (subscribers are `u0…`).
const ROOM_USERS: usize = 10_000_000;
const CHURN_USERS: usize = 20_000_000;
/// Room for closed-loop publishes over all rows.
const MAX_PUBLISHES: usize = 200_000;

/// What the room's members received, summed over all of them.
#[derive(Default)]
struct Room {
    /// `presence_diff` frames.
    diffs: AtomicU64,
    /// Whole lists (`presence` frames).
    lists: AtomicU64,
    /// Bytes of both.
    bytes: AtomicU64,
    /// Members whose connection ended before the phase did (closed by the server as slow consumers).
    dropped: AtomicU64,
    /// Set once the phase is over: connections ending after it are not dropped.
    over: AtomicBool,
}

/// What the churn users did and received.
#[derive(Default)]
struct Churn {
    joins: AtomicU64,
    leaves: AtomicU64,
    /// Navigations without a `located` answer within 10 s, or a connection lost.
    failures: AtomicU64,
    /// The room's whole list, received on joining, and its bytes.
    lists: AtomicU64,
    list_bytes: AtomicU64,
    /// Churn users in the middle of a join/leave cycle.
    active: AtomicU64,
}

/// Counters at one instant.
#[derive(Clone, Copy)]
struct Tally {
    at: Instant,
    server_cpu: f64,
    loadgen_cpu: f64,
    diffs: u64,
    member_bytes: u64,
    joins: u64,
    leaves: u64,
}

impl Tally {
    fn take(running: &Running, room: &Room, churn: &Churn) -> Tally {
        let (user, sys) = running.cpu();
        let (me_user, me_sys) = cpu(std::process::id());
        Tally {
            at: Instant::now(),
            server_cpu: user + sys,
            loadgen_cpu: me_user + me_sys,
            diffs: room.diffs.load(Ordering::Relaxed),
            member_bytes: room.bytes.load(Ordering::Relaxed),
            joins: churn.joins.load(Ordering::Relaxed),
            leaves: churn.leaves.load(Ordering::Relaxed),
        }
    }
}

/// Triggers delivered during a row.
struct Triggers {
    deliveries_per_sec: f64,
    /// Open loop: the deliveries/s offered.
    offered: Option<f64>,
    /// Closed loop: from publish to last receipt; open loop: from the publish's scheduled time.
    p99: Duration,
}

/// One row: the change of every counter over its duration.
struct Row {
    kind: Kind,
    triggers: Option<Triggers>,
    secs: f64,
    joins: u64,
    leaves: u64,
    /// Cores.
    server_cpu: f64,
    loadgen_cpu: f64,
    diffs: u64,
    member_bytes: u64,
    rss_kib: u64,
}

impl Row {
    fn new(kind: Kind, triggers: Option<Triggers>, a: Tally, b: Tally, running: &Running) -> Row {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        Row {
            kind,
            triggers,
            secs,
            joins: b.joins - a.joins,
            leaves: b.leaves - a.leaves,
            server_cpu: (b.server_cpu - a.server_cpu) / secs,
            loadgen_cpu: (b.loadgen_cpu - a.loadgen_cpu) / secs,
            diffs: b.diffs - a.diffs,
            member_bytes: b.member_bytes - a.member_bytes,
            rss_kib: running.rss_kib(),
        }
    }
}

/// One room member: connect to `/room`, then read and count until the connection ends.
async fn member(port: u16, i: usize, room: Arc<Room>, ready: Arc<AtomicU64>) {
    LIVE.fetch_add(1, Ordering::AcqRel);
    let url = format!(
        "ws://127.0.0.1:{port}/_sync/ws?path=/room&token=u{}",
        ROOM_USERS + i
    );
    let ws = match ws_connect(url).await {
        Some(mut ws) => next_text(&mut ws).await.map(|_| ws),
        None => None,
    };
    ready.fetch_add(1, Ordering::Release);
    if let Some(mut ws) = ws {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if text.starts_with(r#"{"t":"presence_diff""#) {
                room.diffs.fetch_add(1, Ordering::Relaxed);
            } else if text.starts_with(r#"{"t":"presence""#) {
                room.lists.fetch_add(1, Ordering::Relaxed);
            } else {
                continue;
            }
            room.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        }
    }
    if !room.over.load(Ordering::Acquire) {
        room.dropped.fetch_add(1, Ordering::Relaxed);
    }
    LIVE.fetch_sub(1, Ordering::AcqRel);
}

/// Send `{"t":"nav","path":..}` and read until its `located` (at most 10 s), counting the room's whole
/// list if it comes first. False on a timeout or a lost connection.
async fn navigate(ws: &mut super::Ws, path: &str, churn: &Churn) -> bool {
    let nav = serde_json::json!({ "t": "nav", "path": path }).to_string();
    if ws.send(Message::text(nav)).await.is_err() {
        return false;
    }
    let located = async {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if text.starts_with(r#"{"t":"located""#) && text.contains(path) {
                return true;
            }
            if text.starts_with(r#"{"t":"presence","path":"/room""#) {
                churn.lists.fetch_add(1, Ordering::Relaxed);
                churn
                    .list_bytes
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(10), located)
        .await
        .unwrap_or(false)
}

/// One churn user: connect to `/away/<j>`; whenever churn is on, go in and out of the room until it is
/// off. `stagger` spreads the users' cycles evenly.
async fn churner(
    port: u16,
    j: usize,
    stagger: Duration,
    churn: Arc<Churn>,
    ready: Arc<AtomicU64>,
    mut on: watch::Receiver<bool>,
) {
    LIVE.fetch_add(1, Ordering::AcqRel);
    let away = format!("/away/{j}");
    let url = format!(
        "ws://127.0.0.1:{port}/_sync/ws?path={away}&token=u{}",
        CHURN_USERS + j
    );
    let ws = match ws_connect(url).await {
        Some(mut ws) => next_text(&mut ws).await.map(|_| ws),
        None => None,
    };
    ready.fetch_add(1, Ordering::Release);
    let Some(mut ws) = ws else {
        churn.failures.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    'phase: while on.wait_for(|on| *on).await.is_ok() {
        churn.active.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(stagger).await;
        while *on.borrow() {
            for (path, counter) in [("/room", &churn.joins), (away.as_str(), &churn.leaves)] {
                if !navigate(&mut ws, path, &churn).await {
                    churn.failures.fetch_add(1, Ordering::Relaxed);
                    churn.active.fetch_sub(1, Ordering::AcqRel);
                    break 'phase;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(DWELL).await;
            }
        }
        churn.active.fetch_sub(1, Ordering::AcqRel);
    }
    LIVE.fetch_sub(1, Ordering::AcqRel);
}

/// Publish in a closed loop for `seconds`, numbering on from `next`.
async fn closed_loop(
    counts: &Counts,
    publisher: &mut Publisher,
    next: &mut u64,
    seconds: f64,
) -> Triggers {
    let began = Instant::now();
    let first = *next;
    let mut latencies = Vec::new();
    while began.elapsed().as_secs_f64() < seconds && (*next as usize) < MAX_PUBLISHES {
        let k = *next;
        let t0 = Instant::now();
        publisher.publish(k).await;
        assert!(
            counts.wait_for((k + 1) * counts.per_publish).await,
            "presence: trigger {k} never reached every subscriber"
        );
        latencies.push(t0.elapsed());
        *next += 1;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let (_, p99, _) = percentiles(latencies);
    Triggers {
        deliveries_per_sec: ((*next - first) * counts.per_publish) as f64 / elapsed,
        offered: None,
        p99,
    }
}

/// Turn churn on, let every user start (a whole cycle), and return once they are all cycling.
async fn churn_on(on: &watch::Sender<bool>) {
    on.send_replace(true);
    tokio::time::sleep(DWELL * 2).await;
}

/// Turn churn off and wait (at most 15 s) until every user has finished its cycle and is out.
async fn churn_off(on: &watch::Sender<bool>, churn: &Churn) {
    on.send_replace(false);
    for _ in 0..1500 {
        if churn.active.load(Ordering::Acquire) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The presence phase: a room of `n`, `m` churn users, `seconds` per row.
pub(crate) async fn phase(env: &Env, n: usize, m: usize, seconds: f64) {
    println!(
        "\n== presence: a room of {n} on /room; {m} users navigating in and out of it ({} ms in, {} ms out, \
         each); {SUBSCRIBERS} subscribers on /bench get triggers (closed loop, then open); {seconds} s per row; \
         presence limit 100, window 100 ms (the runtime's defaults)",
        DWELL.as_millis(),
        DWELL.as_millis()
    );
    let presence = [("BENCH_PRESENCE", "1".to_owned())];
    let running = Running::one(spawn_server(&sibling("bench-ours"), &[], &presence, env.pin).await);
    let port = running.ports[0];
    let rss_empty = running.rss_kib();

    let room = Arc::new(Room::default());
    let ready = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    connect_paced(n, &ready, "presence: room members", |i| {
        tokio::spawn(member(port, i, room.clone(), ready.clone()));
    })
    .await;
    let room_secs = began.elapsed().as_secs_f64();
    let rss_room = running.rss_kib();

    let churn = Arc::new(Churn::default());
    let (on, on_rx) = watch::channel(false);
    let ready = Arc::new(AtomicU64::new(0));
    connect_paced(m, &ready, "presence: churn users", |j| {
        let stagger = DWELL * 2 * j as u32 / m.max(1) as u32;
        tokio::spawn(churner(
            port,
            j,
            stagger,
            churn.clone(),
            ready.clone(),
            on_rx.clone(),
        ));
    })
    .await;
    drop(on_rx);

    let counts = Arc::new(Counts::new(SUBSCRIBERS as u64, MAX_PUBLISHES));
    connect_all(Server::Ours, &running, SUBSCRIBERS, &counts).await;
    let mut publisher = Publisher::open(Server::Ours, port).await;
    // Let the room's last lists and diffs go out before the first row.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "room of {n} connected in {room_secs:.1} s; server RSS {} MiB empty, {} MiB with the room, {} MiB \
         with everyone",
        rss_empty / 1024,
        rss_room / 1024,
        running.rss_kib() / 1024
    );

    // No churn and churn alternate, so that each churn row has a no-churn row on either side: on a
    // shared machine the trigger rate drifts between rows, and the neighbours bound that drift.
    let mut next = 0;
    let mut rows = Vec::new();
    let tally = || Tally::take(&running, &room, &churn);
    for kind in [
        Kind::Quiet,
        Kind::Churn,
        Kind::Quiet,
        Kind::Churn,
        Kind::Quiet,
        Kind::OpenQuiet,
        Kind::OpenChurn,
        Kind::OpenQuiet,
        Kind::ChurnOnly,
    ] {
        if kind.churns() {
            churn_on(&on).await;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let a = tally();
        let triggers = match kind {
            Kind::Quiet | Kind::Churn => {
                Some(closed_loop(&counts, &mut publisher, &mut next, seconds).await)
            }
            Kind::OpenQuiet | Kind::OpenChurn => {
                // A share of what the closed loop reached without churn: a rate the server sustains
                // with room to spare, to see whether it still does under churn, and how late.
                let rate = OPEN_SHARE * quiet_mean(&rows) / SUBSCRIBERS as f64;
                let open =
                    open_loop(Server::Ours, &counts, &mut publisher, next, rate, seconds).await;
                // As many as `open_loop` published: the numbering goes on after them.
                next += ((rate * seconds) as usize).clamp(5, MAX_OPEN) as u64;
                Some(Triggers {
                    deliveries_per_sec: open.deliveries_per_sec,
                    offered: Some(rate * SUBSCRIBERS as f64),
                    p99: open.p99,
                })
            }
            Kind::ChurnOnly => {
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                None
            }
        };
        rows.push(Row::new(kind, triggers, a, tally(), &running));
        if kind.churns() {
            churn_off(&on, &churn).await;
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let errors = counts.errors.load(Ordering::Relaxed);
    assert_eq!(
        errors, 0,
        "presence: {errors} gaps, duplicates or failed connections among the trigger subscribers"
    );
    room.over.store(true, Ordering::Release);
    drop(on);
    drop(publisher);
    running.stop().await;

    print_rows(&rows, n);
    report(&rows, n, &churn, &room);
    println!(
        "presence: load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// What a row does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Triggers in a closed loop, no churn.
    Quiet,
    /// Triggers in a closed loop, and churn.
    Churn,
    /// Triggers at a fixed rate, no churn.
    OpenQuiet,
    /// Triggers at a fixed rate, and churn.
    OpenChurn,
    /// Churn, no triggers: the server's CPU is what presence costs.
    ChurnOnly,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Quiet => "no churn",
            Kind::Churn => "churn",
            Kind::OpenQuiet => "no churn, open loop",
            Kind::OpenChurn => "churn, open loop",
            Kind::ChurnOnly => "churn, no triggers",
        }
    }

    fn churns(self) -> bool {
        matches!(self, Kind::Churn | Kind::OpenChurn | Kind::ChurnOnly)
    }
}

/// The open-loop rows' rate: this share of the no-churn closed loop's.
const OPEN_SHARE: f64 = 0.25;

fn deliveries(row: &Row) -> Option<f64> {
    row.triggers.as_ref().map(|t| t.deliveries_per_sec)
}

/// The mean trigger rate of the no-churn closed-loop rows.
fn quiet_mean(rows: &[Row]) -> f64 {
    let quiet: Vec<f64> = rows
        .iter()
        .filter(|r| r.kind == Kind::Quiet)
        .filter_map(deliveries)
        .collect();
    quiet.iter().sum::<f64>() / quiet.len().max(1) as f64
}

fn print_rows(rows: &[Row], n: usize) {
    println!(
        "{:<20} {:>9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9} {:>8}",
        "row",
        "deliv/s",
        "ratio",
        "kept up",
        "p99 ms",
        "joins/s",
        "leaves/s",
        "server",
        "loadgen",
        "frames/s/m",
        "B/s/m",
        "RSS MiB"
    );
    let base = quiet_mean(rows);
    for row in rows {
        let dash = || "-".to_owned();
        let (rate, ratio, kept, p99) = match &row.triggers {
            Some(t) => (
                format!("{:.0}", t.deliveries_per_sec),
                match t.offered {
                    None => format!("{:.2}", t.deliveries_per_sec / base),
                    Some(_) => dash(),
                },
                t.offered.map_or_else(dash, |o| {
                    format!("{:.0}%", 100.0 * t.deliveries_per_sec / o)
                }),
                ms(t.p99),
            ),
            None => (dash(), dash(), dash(), dash()),
        };
        println!(
            "{:<20} {:>9} {:>6} {:>7} {:>8} {:>8.0} {:>8.0} {:>6.0}% {:>7.0}% {:>10.1} {:>9.0} {:>8}",
            row.kind.label(),
            rate,
            ratio,
            kept,
            p99,
            row.joins as f64 / row.secs,
            row.leaves as f64 / row.secs,
            row.server_cpu * 100.0,
            row.loadgen_cpu * 100.0,
            row.diffs as f64 / n.max(1) as f64 / row.secs,
            row.member_bytes as f64 / n.max(1) as f64 / row.secs,
            row.rss_kib / 1024
        );
    }
}

/// The summary lines under the table.
fn report(rows: &[Row], n: usize, churn: &Churn, room: &Room) {
    // Each churn row against the mean of the no-churn rows either side of it.
    let against: Vec<String> = rows
        .windows(3)
        .filter(|w| {
            w[1].kind == Kind::Churn && w[0].kind == Kind::Quiet && w[2].kind == Kind::Quiet
        })
        .filter_map(|w| Some(deliveries(&w[1])? * 2.0 / (deliveries(&w[0])? + deliveries(&w[2])?)))
        .map(|r| format!("{r:.2}"))
        .collect();
    let quiet: Vec<f64> = rows
        .iter()
        .filter(|r| r.kind == Kind::Quiet)
        .filter_map(deliveries)
        .collect();
    let spread = quiet.iter().copied().fold(f64::MIN, f64::max)
        / quiet.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "presence: trigger deliveries/s with churn / without (each churn row against the no-churn rows \
         either side): {}; the no-churn rows spread {:.2}x (max/min)",
        against.join(", "),
        spread
    );
    let open = |kind| {
        rows.iter()
            .find(|r| r.kind == kind)
            .and_then(|r| r.triggers.as_ref())
    };
    if let (Some(quiet), Some(churn)) = (open(Kind::OpenQuiet), open(Kind::OpenChurn)) {
        let offered = churn.offered.unwrap_or(f64::NAN);
        println!(
            "presence: open loop at {offered:.0} deliveries/s offered ({:.0}% of the no-churn closed loop): \
             kept up {:.0}% without churn, {:.0}% with; p99 {} ms without, {} ms with",
            OPEN_SHARE * 100.0,
            100.0 * quiet.deliveries_per_sec / quiet.offered.unwrap_or(f64::NAN),
            100.0 * churn.deliveries_per_sec / offered,
            ms(quiet.p99),
            ms(churn.p99)
        );
    }
    // What the room received: the closed-loop churn rows (the open-loop one is alike).
    let churning: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Churn).collect();
    let sum = |f: fn(&Row) -> f64| churning.iter().map(|r| f(r)).sum::<f64>();
    let secs = sum(|r| r.secs);
    let moves = sum(|r| (r.joins + r.leaves) as f64);
    let diffs = sum(|r| r.diffs as f64);
    let frames = diffs / n.max(1) as f64 / secs;
    let bytes = sum(|r| r.member_bytes as f64) / n.max(1) as f64 / secs;
    println!(
        "presence: during churn a room member got {frames:.1} presence frames/s ({bytes:.0} B/s, {:.0} B a \
         frame) while {:.0} joins/s and {:.0} leaves/s went on: {:.1} frames to the room per join or leave",
        bytes / frames.max(f64::MIN_POSITIVE),
        sum(|r| r.joins as f64) / secs,
        sum(|r| r.leaves as f64) / secs,
        diffs / moves.max(1.0)
    );
    let lists = churn.lists.load(Ordering::Relaxed);
    println!(
        "presence: a joiner got the room's list {lists} times in {} joins, {:.0} B each (count + the \
         first 100 users)",
        churn.joins.load(Ordering::Relaxed),
        churn.list_bytes.load(Ordering::Relaxed) as f64 / lists.max(1) as f64
    );
    // Server CPU per trigger delivery in the no-churn rows: the yardstick a join is measured with.
    let quiet_rows = rows.iter().filter(|r| r.kind == Kind::Quiet);
    // (Closed-loop rows only: the open-loop ones leave the server idle part of the time.)
    let (cpu, delivered) = quiet_rows.fold((0.0, 0.0), |(c, d), r| {
        (
            c + r.server_cpu * r.secs,
            d + deliveries(r).unwrap_or(0.0) * r.secs,
        )
    });
    let per_delivery = cpu * 1e6 / delivered.max(1.0);
    if let Some(alone) = rows.iter().find(|r| r.kind == Kind::ChurnOnly) {
        let moves = (alone.joins + alone.leaves) as f64;
        let per_move = alone.server_cpu * alone.secs * 1e6 / moves.max(1.0);
        println!(
            "presence: churn alone (no triggers): server {:.0}% CPU for {:.0} joins+leaves/s = {per_move:.0} µs \
             per join or leave in a room of {n}; a trigger delivery cost {per_delivery:.1} µs (no-churn \
             rows), so a join or leave costs as much as {:.0} trigger deliveries",
            alone.server_cpu * 100.0,
            moves / alone.secs,
            per_move / per_delivery.max(f64::MIN_POSITIVE)
        );
    }
    let dropped = room.dropped.load(Ordering::Relaxed);
    let failures = churn.failures.load(Ordering::Relaxed);
    let flag = if dropped + failures > 0 { "!!! " } else { "" };
    println!(
        "presence: {flag}room members closed by the server (slow consumers): {dropped}; churn navigations \
         unanswered within 10 s: {failures}"
    );
}
