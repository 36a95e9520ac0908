//! Fan-out benchmark: this framework against the ceiling (a minimal tokio + tungstenite broadcaster), one
//! load generator for both, servers as separate processes, interleaved per repeat.
//!
//! Run with: `cargo run --release -p sync-bench -- [--subscribers 1000,10000] [--publishes 200] [--repeats 2]`
//!
//! For each subscriber count and repeat, each server in turn: start it, connect the subscribers (server RSS
//! before and after gives memory per idle connection), then publish closed-loop (the next publish when every
//! subscriber got the last) and report deliveries/s, publish-to-last-receipt latency, server user and system
//! CPU per delivery (from `/proc`), and the load generator's own CPU. Every subscriber checks that numbers
//! arrive in order without gaps or duplicates; any violation fails the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Ceiling,
    /// This framework, no server file.
    Ours,
    /// This framework, a filter that passes everyone.
    OursFilterAll,
    /// This framework, a filter that passes half.
    OursFilterHalf,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Ceiling => "ceiling (tokio+tungstenite)",
            Server::Ours => "sync, no server file",
            Server::OursFilterAll => "sync, filter (all pass)",
            Server::OursFilterHalf => "sync, filter (half pass)",
        }
    }
}

struct Args {
    subscribers: Vec<usize>,
    publishes: u64,
    repeats: usize,
}

fn args() -> Args {
    let mut a = Args {
        subscribers: vec![1000, 10000],
        publishes: 200,
        repeats: 2,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--subscribers" => {
                a.subscribers = value.split(',').filter_map(|n| n.parse().ok()).collect()
            }
            "--publishes" => a.publishes = value.parse().expect("--publishes N"),
            "--repeats" => a.repeats = value.parse().expect("--repeats N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// User and system CPU time of a process, in seconds.
fn cpu(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn start(server: Server) -> (Child, u16) {
    let bin = if server == Server::Ceiling {
        "bench-ceiling"
    } else {
        "bench-ours"
    };
    let path = std::env::current_exe()
        .expect("own path")
        .with_file_name(bin);
    let mut child = Command::new(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build with `cargo build --release -p sync-bench`)",
                path.display()
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .await
        .expect("port");
    (child, line.trim().parse().expect("a port number"))
}

/// Shared between subscribers and the publisher.
#[derive(Default)]
struct Counts {
    received: AtomicU64,
    errors: AtomicU64,
    done: Notify,
    target: AtomicU64,
}

/// The number in a frame: `{"n":7}` (ceiling) or a reaction with `"payload":7` (ours).
fn number(text: &str) -> Option<u64> {
    let at = text
        .find(r#""payload":"#)
        .map(|i| i + 10)
        .or_else(|| text.find(r#""n":"#).map(|i| i + 4))?;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn subscriber(url: String, counts: Arc<Counts>, ready: Arc<AtomicU64>) {
    let Ok((socket, _)) = tokio_tungstenite::connect_async(url).await else {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        ready.fetch_add(1, Ordering::Release);
        return;
    };
    let (mut sink, mut stream) = socket.split();
    // The ceiling needs one frame to tell subscribers from the publisher.
    let _ = sink.send(Message::text("sub")).await;
    ready.fetch_add(1, Ordering::Release);
    let mut expected: Option<u64> = None;
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Some(n) = number(text.as_str()) else {
            continue;
        };
        if let Some(e) = expected
            && n != e
        {
            // A gap or a duplicate: the run fails.
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        expected = Some(n + 1);
        if counts.received.fetch_add(1, Ordering::AcqRel) + 1
            == counts.target.load(Ordering::Acquire)
        {
            counts.done.notify_one();
        }
    }
}

struct Figures {
    deliveries_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    user_us: f64,
    sys_us: f64,
    kib_per_conn: f64,
    loadgen_cpu: f64,
}

async fn run(server: Server, n: usize, publishes: u64) -> Figures {
    let (mut child, port) = start(server).await;
    let pid = child.id().expect("a pid");
    let rss_before = rss_kib(pid);
    let counts = Arc::new(Counts::default());
    let ready = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let url = match server {
            Server::Ceiling => format!("ws://127.0.0.1:{port}/"),
            _ => format!("ws://127.0.0.1:{port}/_sync/ws?path=/bench&token=u{i}"),
        };
        tokio::spawn(subscriber(url, counts.clone(), ready.clone()));
        if i % 200 == 199 {
            while ready.load(Ordering::Acquire) < i as u64 / 2 {
                tokio::task::yield_now().await;
            }
        }
    }
    while ready.load(Ordering::Acquire) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ours places a connection on its path during the upgrade; give the last ones time to be counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kib_per_conn = rss_kib(pid).saturating_sub(rss_before) as f64 / n as f64;
    let per_publish = match server {
        Server::OursFilterHalf => (n as u64).div_ceil(2),
        _ => n as u64,
    };

    let mut publisher = Publisher::open(server, port).await;
    let (user0, sys0) = cpu(pid);
    let (me_user0, me_sys0) = cpu(std::process::id());
    let mut latencies = Vec::with_capacity(publishes as usize);
    let start = Instant::now();
    for k in 0..publishes {
        counts
            .target
            .store((k + 1) * per_publish, Ordering::Release);
        let t0 = Instant::now();
        publisher.publish(k).await;
        while counts.received.load(Ordering::Acquire) < (k + 1) * per_publish {
            let waited =
                tokio::time::timeout(Duration::from_secs(30), counts.done.notified()).await;
            assert!(
                waited.is_ok() || counts.received.load(Ordering::Acquire) >= (k + 1) * per_publish,
                "{}: publish {k} never reached everyone",
                server.label()
            );
        }
        latencies.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let (user1, sys1) = cpu(pid);
    let (me_user1, me_sys1) = cpu(std::process::id());
    let errors = counts.errors.load(Ordering::Relaxed);
    assert_eq!(
        errors,
        0,
        "{}: {errors} gaps, duplicates or failed connections",
        server.label()
    );
    let deliveries = (publishes * per_publish) as f64;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    drop(child.stdin.take());
    let _ = child.kill().await;
    Figures {
        deliveries_per_sec: deliveries / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        max: *latencies.last().expect("publishes"),
        user_us: (user1 - user0) * 1e6 / deliveries,
        sys_us: (sys1 - sys0) * 1e6 / deliveries,
        kib_per_conn,
        loadgen_cpu: ((me_user1 - me_user0) + (me_sys1 - me_sys0)) / elapsed.as_secs_f64(),
    }
}

enum Publisher {
    Ceiling(
        futures_util::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
            Message,
        >,
        futures_util::stream::SplitStream<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
    Ours(SyncClient, Server),
}

impl Publisher {
    async fn open(server: Server, port: u16) -> Publisher {
        if server == Server::Ceiling {
            let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
                .await
                .expect("publisher");
            let (mut sink, stream) = socket.split();
            sink.send(Message::text("pub")).await.expect("pub");
            return Publisher::Ceiling(sink, stream);
        }
        let url = format!("ws://127.0.0.1:{port}/_sync/ws");
        let client = SyncClient::connect(
            &url,
            ConnectOptions::new().token("u999999999").path("/bench"),
        )
        .await
        .expect("publisher");
        Publisher::Ours(client, server)
    }

    async fn publish(&mut self, k: u64) {
        match self {
            Publisher::Ceiling(sink, stream) => {
                sink.send(Message::text(k.to_string()))
                    .await
                    .expect("publish");
                stream.next().await.expect("ok").expect("ok");
            }
            Publisher::Ours(client, server) => {
                let outcome = match server {
                    Server::Ours => client.request_with("tick", k, false).await,
                    Server::OursFilterAll => {
                        client.request_with("filtered", (k, true), false).await
                    }
                    _ => client.request_with("filtered", (k, false), false).await,
                };
                outcome.expect("the request is accepted");
            }
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let args = args();
    println!(
        "sync-bench: {} publishes per run, {} repeats, servers interleaved; loopback only",
        args.publishes, args.repeats
    );
    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    let servers = [
        Server::Ceiling,
        Server::Ours,
        Server::OursFilterAll,
        Server::OursFilterHalf,
    ];
    for &n in &args.subscribers {
        for repeat in 1..=args.repeats {
            println!("\n== {n} subscribers, repeat {repeat}");
            println!(
                "{:<28} {:>12} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9}",
                "server",
                "deliv/s",
                "ratio",
                "p50 ms",
                "p99 ms",
                "max ms",
                "user µs/d",
                "sys µs/d",
                "KiB/conn",
                "loadgen",
                "p99 ratio"
            );
            let mut ceiling: Option<Figures> = None;
            for &server in &servers {
                let f = run(server, n, args.publishes).await;
                let (ratio, p99_ratio) = ceiling.as_ref().map_or((1.0, 1.0), |c| {
                    (
                        f.deliveries_per_sec / c.deliveries_per_sec,
                        f.p99.as_secs_f64() / c.p99.as_secs_f64(),
                    )
                });
                println!(
                    "{:<28} {:>12.0} {:>7.2} {:>8} {:>8} {:>8} {:>9.2} {:>9.2} {:>9.1} {:>7.0}% {:>9.2}",
                    server.label(),
                    f.deliveries_per_sec,
                    ratio,
                    ms(f.p50),
                    ms(f.p99),
                    ms(f.max),
                    f.user_us,
                    f.sys_us,
                    f.kib_per_conn,
                    f.loadgen_cpu * 100.0,
                    p99_ratio
                );
                if server == Server::Ceiling {
                    ceiling = Some(f);
                }
            }
        }
    }
}
