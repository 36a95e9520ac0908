//! Fan-out benchmark: this framework against the ceiling (a minimal tokio + tungstenite broadcaster) and
//! Socket.IO 4.8, one load generator for all, servers as separate processes, interleaved per repeat.
//!
//! Run with: `bash tests/bench/run.sh` or `cargo run --release -p sync-bench -- [options]` (see `--help`
//! and `docs/BENCHMARKS.md`).
//!
//! Phases, each a table with a `ratio` column against the ceiling measured in the same repeat:
//!
//! 1. Fan-out, for each subscriber count and repeat, each server in turn: start it, connect the
//!    subscribers (server RSS before and after gives memory per connection), publish closed-loop (the next
//!    publish when every subscriber got the last: deliveries/s, publish-to-last-receipt latency, server CPU
//!    per delivery from `/proc`, the load generator's own CPU), then open-loop at a fixed rate on the same
//!    connections (achieved deliveries/s and latency measured from each publish's scheduled time).
//! 2. Memory per idle connection: connect N idle subscribers, server RSS growth / N.
//! 3. Connection churn: while broadcasts go on at a modest rate to 1,000 subscribers, connect and
//!    disconnect as fast as possible for a fixed time; connects/s.
//! 4. Presence (`presence.rs`): trigger deliveries/s elsewhere on the server without and with users
//!    joining and leaving a big room, side by side, and what the room's members receive meanwhile.
//! 5. Metrics (`metrics.rs`): the same closed-loop fan-out on this framework with Prometheus metrics off
//!    and on, side by side, and the ratio (`--metrics-only` runs this phase alone).
//! 6. Filters at scale (`filters.rs`): filters that await a simulated database call (`db.rs`) per
//!    recipient, against no server file, side by side, with the database calls per trigger counted
//!    (`--filters-only` runs this phase alone).
//!
//! Every subscriber checks that numbers arrive in order without gaps or duplicates; any violation fails
//! the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sync_bench::DbStats;
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

mod burst;
mod filters;
mod metrics;
mod presence;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Ceiling,
    /// The plainest tokio-tungstenite broadcaster (`accept_async`, default configuration): `bench-bare`.
    Bare,
    /// The same with a 4 KiB read buffer (tungstenite 0.20's fixed read chunk) instead of 128 KiB.
    BareSmallRead,
    /// The ceiling, its frames padded to the length of this framework's `tick` reaction frames.
    CeilingOurFrameSize,
    /// This framework, no server file.
    Ours,
    /// The same, with Prometheus metrics on (and scraped every second).
    OursMetrics,
    /// This framework, a filter that passes everyone.
    OursFilterAll,
    /// This framework, a filter that passes half.
    OursFilterHalf,
    /// This framework, an async filter awaiting one simulated database call per recipient (`dbeach`).
    OursDbEach,
    /// The same calls, made once per trigger in the sync's `prepare` step (`dbprepared`).
    OursDbPrepared,
    /// The same calls, once per recipient class (`dbclass`).
    OursDbClasses,
    /// This framework, no server file, two processes sharing triggers through Redis.
    OursTwoNodes,
    /// The same, keeping no history (offsets only).
    OursTwoNodesNoHistory,
    /// Socket.IO 4.8, a room broadcast.
    SocketIo,
    /// Socket.IO 4.8, a per-socket filter that passes everyone.
    SocketIoFilterAll,
    /// Socket.IO 4.8, a per-socket filter that passes half.
    SocketIoFilterHalf,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Ceiling => "ceiling (tokio+tungstenite)",
            Server::Bare => "bare tokio-tungstenite",
            Server::BareSmallRead => "bare, 4 KiB read buffer",
            Server::CeilingOurFrameSize => "ceiling, frames of our size",
            Server::Ours => "sync, no server file",
            Server::OursMetrics => "sync, metrics on",
            Server::OursFilterAll => "sync, filter (all pass)",
            Server::OursFilterHalf => "sync, filter (half pass)",
            Server::OursDbEach => "sync, db filter per recipient",
            Server::OursDbPrepared => "sync, db + prepare",
            Server::OursDbClasses => "sync, db + classes",
            Server::OursTwoNodes => "sync, two nodes (Redis)",
            Server::OursTwoNodesNoHistory => "sync, two nodes, history off",
            Server::SocketIo => "socket.io 4.8, room",
            Server::SocketIoFilterAll => "socket.io, filter (all)",
            Server::SocketIoFilterHalf => "socket.io, filter (half)",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Server::Ceiling
            | Server::Bare
            | Server::BareSmallRead
            | Server::CeilingOurFrameSize => Kind::Ceiling,
            Server::Ours
            | Server::OursMetrics
            | Server::OursFilterAll
            | Server::OursFilterHalf
            | Server::OursDbEach
            | Server::OursDbPrepared
            | Server::OursDbClasses
            | Server::OursTwoNodes
            | Server::OursTwoNodesNoHistory => Kind::Ours,
            Server::SocketIo | Server::SocketIoFilterAll | Server::SocketIoFilterHalf => {
                Kind::SocketIo
            }
        }
    }

    fn half(self) -> bool {
        matches!(self, Server::OursFilterHalf | Server::SocketIoFilterHalf)
    }
}

/// The wire protocol a server speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ceiling,
    Ours,
    SocketIo,
}

const USAGE: &str = "\
usage: sync-bench [options]
  --subscribers LIST    subscriber counts for the fan-out phase (default 100,1000,10000)
  --publishes N         closed-loop publishes per run, at most 500000/N per run (default 200)
  --repeats N           repeats of the fan-out phase (default 2)
  --rate P              open-loop publishes/s (default: 70% of the ceiling's closed-loop rate in the
                        same repeat, per subscriber count)
  --open-seconds S      open-loop duration per run (default 3; 0 skips the open-loop table)
  --memory LIST         idle-connection counts for the memory phase (default 10000,19000; none skips)
  --churn-seconds S     connection churn duration per server (default 5; 0 skips)
  --presence-room N     connections in the presence phase's big room (default 10000; 0 skips)
  --presence-churn N    users joining and leaving that room, each once a second (default 1000; 0 skips)
  --presence-seconds S  duration of each presence row (default 3)
  --metrics-repeats N   repeats of the metrics off/on pairs, per subscriber count (default 3; 0 skips)
  --metrics-only        only the metrics phase (with --subscribers, --publishes)
  --filters-repeats N   repeats of the filters-at-scale rows, per subscriber count (default 3; 0 skips)
  --filters-only        only the filters-at-scale phase (with --subscribers, default 1000,10000 for
                        this phase, and --publishes)
  --burst N             write syscalls per delivery with N subscribers, one publish at a time and in a
                        burst (default 0: skipped; needs perf)
  --pin                 server on CPU 1 (taskset -c 1), load generator on CPU 0
  --help                this text";

struct Args {
    subscribers: Vec<usize>,
    publishes: u64,
    repeats: usize,
    rate: Option<f64>,
    open_seconds: f64,
    memory: Vec<usize>,
    churn_seconds: f64,
    presence_room: usize,
    presence_churn: usize,
    presence_seconds: f64,
    metrics_repeats: usize,
    metrics_only: bool,
    filters_repeats: usize,
    filters_only: bool,
    /// Whether `--subscribers` was given (the filters phase has its own default).
    subscribers_given: bool,
    burst: usize,
    pin: bool,
}

fn list(value: &str) -> Vec<usize> {
    value.split(',').filter_map(|n| n.parse().ok()).collect()
}

fn args() -> Args {
    let mut a = Args {
        subscribers: vec![100, 1000, 10000],
        publishes: 200,
        repeats: 2,
        rate: None,
        open_seconds: 3.0,
        memory: vec![10000, 19000],
        churn_seconds: 5.0,
        presence_room: 10_000,
        presence_churn: 1000,
        presence_seconds: 3.0,
        metrics_repeats: 3,
        metrics_only: false,
        filters_repeats: 3,
        filters_only: false,
        subscribers_given: false,
        burst: 0,
        pin: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--pin" {
            a.pin = true;
            continue;
        }
        if flag == "--metrics-only" {
            a.metrics_only = true;
            continue;
        }
        if flag == "--filters-only" {
            a.filters_only = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let Some(value) = argv.next() else {
            panic!("{flag} needs a value\n{USAGE}");
        };
        let number = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--subscribers" => {
                a.subscribers = list(&value);
                a.subscribers_given = true;
            }
            "--publishes" => a.publishes = number(&value) as u64,
            "--repeats" => a.repeats = number(&value) as usize,
            "--rate" => a.rate = Some(number(&value)).filter(|r| *r > 0.0),
            "--open-seconds" => a.open_seconds = number(&value),
            "--memory" => a.memory = list(&value),
            "--churn-seconds" => a.churn_seconds = number(&value),
            "--presence-room" => a.presence_room = number(&value) as usize,
            "--presence-churn" => a.presence_churn = number(&value) as usize,
            "--presence-seconds" => a.presence_seconds = number(&value),
            "--metrics-repeats" => a.metrics_repeats = number(&value) as usize,
            "--filters-repeats" => a.filters_repeats = number(&value) as usize,
            "--burst" => a.burst = number(&value) as usize,
            other => panic!("unknown argument {other}\n{USAGE}"),
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

/// What the environment offers: node with the Socket.IO peer installed, redis-server, pinning.
struct Env {
    socketio: bool,
    redis: bool,
    pin: bool,
}

fn socketio_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio")
}

fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn detect(pin: bool) -> Env {
    let node = runs("node", "--version");
    let installed = socketio_dir()
        .join("node_modules/socket.io/package.json")
        .exists();
    if !node || !installed {
        let missing = if node {
            "tests/bench/socketio/node_modules is missing"
        } else {
            "node is not on PATH"
        };
        println!();
        println!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        println!("!!! SOCKET.IO ROWS SKIPPED: {missing}.");
        println!("!!! Install Node.js 18+, then run `bash tests/bench/setup.sh` (npm ci).");
        println!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        println!();
    }
    let redis = runs("redis-server", "--version");
    if !redis {
        println!("note: redis-server is not on PATH: the two-node (Redis) rows are skipped");
    }
    Env {
        socketio: node && installed,
        redis,
        pin,
    }
}

/// A free loopback port (bound then released: another process could take it in between, unlikely here).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Start a server process that prints its port as its first line and exits when stdin closes. Returns
/// its stdout too, kept for its later lines (`db` answers).
async fn spawn_server(
    program: &Path,
    args: &[&str],
    envs: &[(&str, String)],
    pin: bool,
) -> (Child, u16, BufReader<ChildStdout>) {
    let mut command = if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("1").arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build with `cargo build --release -p sync-bench`)",
            program.display()
        )
    });
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).await.expect("port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: expected a port, got {line:?}", program.display()));
    (child, port, out)
}

/// The running processes of one server under test.
struct Running {
    /// The server processes (two for the two-node run), then any helper (Redis).
    children: Vec<Child>,
    /// Port of each server process; the publisher uses the first.
    ports: Vec<u16>,
    /// Pids of the server processes (CPU and RSS are summed over them).
    pids: Vec<u32>,
    /// Stdout of each server process, past the port line.
    outputs: Vec<BufReader<ChildStdout>>,
}

impl Running {
    /// One server process, as [`spawn_server`] started it.
    fn one((child, port, out): (Child, u16, BufReader<ChildStdout>)) -> Running {
        let pid = child.id().expect("a pid");
        Running {
            children: vec![child],
            ports: vec![port],
            pids: vec![pid],
            outputs: vec![out],
        }
    }

    fn cpu(&self) -> (f64, f64) {
        self.pids
            .iter()
            .map(|&p| cpu(p))
            .fold((0.0, 0.0), |(u, s), (u1, s1)| (u + u1, s + s1))
    }

    fn rss_kib(&self) -> u64 {
        self.pids.iter().map(|&p| rss_kib(p)).sum()
    }

    /// The simulated database's calls so far, summed over the server processes (`db` on each one's
    /// stdin); `None` for servers other than ours, which have no database.
    async fn db_stats(&mut self, kind: Kind) -> Option<DbStats> {
        if kind != Kind::Ours {
            return None;
        }
        let mut sum = DbStats::default();
        // Servers come first in `children`, in the order of `outputs`.
        for (child, out) in self.children.iter_mut().zip(&mut self.outputs) {
            let stdin = child.stdin.as_mut().expect("a server's stdin");
            let mut line = String::new();
            let asked = async {
                stdin.write_all(b"db\n").await.ok()?;
                out.read_line(&mut line).await.ok()?;
                DbStats::parse_line(&line)
            };
            let stats = tokio::time::timeout(Duration::from_secs(10), asked)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("a server answered `db` with {line:?}"));
            sum = sum.plus(stats);
        }
        Some(sum)
    }

    /// The port subscriber `i` of `n` connects to: half/half over the nodes of a two-node run.
    fn port_for(&self, i: usize, n: usize) -> u16 {
        self.ports[(i * self.ports.len() / n.max(1)).min(self.ports.len() - 1)]
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let _ = child.kill().await;
        }
        // Subscriber tasks end when their server goes; wait (bounded) so the next run starts clean.
        for _ in 0..200 {
            if LIVE.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sibling(bin: &str) -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(bin)
}

async fn start(server: Server, env: &Env) -> Running {
    match server.kind() {
        Kind::Ceiling => {
            // Our `tick` frame is `{"t":"reaction","seq":S,"path":"/bench","route":"/bench","name":"tick",
            // "reaction":{"kind":"event","name":"tick","payload":N}}`: 110 bytes more than `{"n":N}`
            // (with a 3-digit seq), which is what the pad adds.
            let envs = match server {
                Server::CeilingOurFrameSize => vec![("CEILING_FRAME_PAD", "110".to_owned())],
                Server::BareSmallRead => vec![("BARE_READ_BUFFER", "4096".to_owned())],
                _ => Vec::new(),
            };
            let bin = if matches!(server, Server::Bare | Server::BareSmallRead) {
                "bench-bare"
            } else {
                "bench-ceiling"
            };
            Running::one(spawn_server(&sibling(bin), &[], &envs, env.pin).await)
        }
        Kind::SocketIo => {
            let script = socketio_dir().join("server.js");
            let script = script.to_str().expect("a UTF-8 path");
            Running::one(spawn_server(Path::new("node"), &[script], &[], env.pin).await)
        }
        Kind::Ours if !matches!(server, Server::OursTwoNodes | Server::OursTwoNodesNoHistory) => {
            let envs = match server {
                Server::OursMetrics => vec![("BENCH_METRICS", "1".to_owned())],
                _ => Vec::new(),
            };
            Running::one(spawn_server(&sibling("bench-ours"), &[], &envs, env.pin).await)
        }
        Kind::Ours => {
            let redis_port = free_port();
            let mut redis = if env.pin {
                let mut c = Command::new("taskset");
                c.args(["-c", "1", "redis-server"]);
                c
            } else {
                Command::new("redis-server")
            };
            redis
                .args(["--port", &redis_port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let mut redis = redis.spawn().expect("redis-server");
            let mut up = false;
            for _ in 0..250 {
                if redis_pong(redis_port).await {
                    up = true;
                    break;
                }
                assert!(
                    redis.try_wait().ok().flatten().is_none(),
                    "redis-server on port {redis_port} exited"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(up, "redis-server on port {redis_port}: no PONG after 5 s");
            let mut url = vec![("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))];
            if server == Server::OursTwoNodesNoHistory {
                url.push(("BENCH_HISTORY", "0".to_owned()));
            }
            let a = spawn_server(&sibling("bench-ours"), &[], &url, env.pin).await;
            let b = spawn_server(&sibling("bench-ours"), &[], &url, env.pin).await;
            let pids = vec![a.0.id().expect("a pid"), b.0.id().expect("a pid")];
            Running {
                ports: vec![a.1, b.1],
                children: vec![a.0, b.0, redis],
                pids,
                outputs: vec![a.2, b.2],
            }
        }
    }
}

/// Whether a Redis server answers `PING` on `port`.
async fn redis_pong(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Subscriber tasks still running (all runs).
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Room for open-loop publishes after the closed-loop ones.
const MAX_OPEN: usize = 5000;

/// Shared between subscribers and the publisher.
struct Counts {
    received: AtomicU64,
    errors: AtomicU64,
    done: Notify,
    target: AtomicU64,
    /// Deliveries each publish needs.
    per_publish: u64,
    /// Receipts of publish `k` so far.
    per_k: Vec<AtomicU64>,
    /// When publish `k` reached its last recipient (ns since `base`).
    done_ns: Vec<AtomicU64>,
    base: Instant,
}

impl Counts {
    fn new(per_publish: u64, publishes: usize) -> Counts {
        Counts {
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            done: Notify::new(),
            target: AtomicU64::new(u64::MAX),
            per_publish,
            per_k: (0..publishes).map(|_| AtomicU64::new(0)).collect(),
            done_ns: (0..publishes).map(|_| AtomicU64::new(0)).collect(),
            base: Instant::now(),
        }
    }

    fn record(&self, k: u64) {
        if let Some(c) = self.per_k.get(k as usize)
            && c.fetch_add(1, Ordering::AcqRel) + 1 == self.per_publish
        {
            self.done_ns[k as usize]
                .store(self.base.elapsed().as_nanos() as u64, Ordering::Release);
        }
        if self.received.fetch_add(1, Ordering::AcqRel) + 1 == self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    /// Wait until `total` deliveries arrived; false if 30 s pass without reaching it.
    async fn wait_for(&self, total: u64) -> bool {
        self.target.store(total, Ordering::Release);
        for _ in 0..3000 {
            if self.received.load(Ordering::Acquire) >= total {
                return true;
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), self.done.notified()).await;
        }
        self.received.load(Ordering::Acquire) >= total
    }
}

/// The number in a frame: `{"n":7}` (ceiling), a reaction with `"payload":7` (ours), `42["tick",7]`
/// (Socket.IO).
fn number(text: &str) -> Option<u64> {
    let at = text
        .find(r#""payload":"#)
        .map(|i| i + 10)
        .or_else(|| text.find(r#""n":"#).map(|i| i + 4))
        .or_else(|| text.find(r#"["tick","#).map(|i| i + 8))?;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A WebSocket client connection with Nagle's algorithm off: the publisher writes small frames back to back
/// (the ceiling's `pub` then the first number), which would otherwise wait ~40 ms for a delayed ACK.
async fn ws_connect(url: String) -> Option<Ws> {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .ok()
        .map(|(ws, _)| ws)
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    for _ in 0..64 {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Engine.IO v4 / Socket.IO v5 over the websocket transport: the open packet `0{...}`, then a connect to
/// the main namespace with auth, `40{...}`, answered by `40{"sid":...}`. Pings (`2`) get pongs (`3`).
async fn socketio_connect(port: u16, auth: &str) -> Option<Ws> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let mut ws = ws_connect(url).await?;
    if !next_text(&mut ws).await?.starts_with('0') {
        return None;
    }
    ws.send(Message::text(format!("40{auth}"))).await.ok()?;
    for _ in 0..16 {
        let text = next_text(&mut ws).await?;
        if text.starts_with("40") {
            return Some(ws);
        }
        if text == "2" {
            ws.send(Message::text("3")).await.ok()?;
        } else if text.starts_with("44") {
            return None;
        }
    }
    None
}

/// Connect subscriber `i` and complete the protocol's handshake: the upgrade (ceiling, then `sub`), the
/// `hello` (ours), the namespace connect reply (Socket.IO).
async fn connect(kind: Kind, port: u16, i: usize) -> Option<Ws> {
    match kind {
        Kind::Ceiling => {
            let mut ws = ws_connect(format!("ws://127.0.0.1:{port}/")).await?;
            // The ceiling needs one frame to tell subscribers from the publisher.
            ws.send(Message::text("sub")).await.ok()?;
            Some(ws)
        }
        Kind::Ours => {
            let url = format!("ws://127.0.0.1:{port}/_sync/ws?path=/bench&token=u{i}");
            let mut ws = ws_connect(url).await?;
            next_text(&mut ws).await?;
            Some(ws)
        }
        Kind::SocketIo => socketio_connect(port, &format!(r#"{{"token":"u{i}"}}"#)).await,
    }
}

async fn subscriber(kind: Kind, port: u16, i: usize, counts: Arc<Counts>, ready: Arc<AtomicU64>) {
    LIVE.fetch_add(1, Ordering::AcqRel);
    let Some(mut ws) = connect(kind, port, i).await else {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        ready.fetch_add(1, Ordering::Release);
        LIVE.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    ready.fetch_add(1, Ordering::Release);
    let mut expected: Option<u64> = None;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if kind == Kind::SocketIo && text.as_str() == "2" {
            if ws.send(Message::text("3")).await.is_err() {
                break;
            }
            continue;
        }
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
        counts.record(n);
    }
    LIVE.fetch_sub(1, Ordering::AcqRel);
}

/// Connect `n` subscribers to `running`, paced so that at most a few hundred handshakes are in flight.
async fn connect_all(server: Server, running: &Running, n: usize, counts: &Arc<Counts>) {
    let ready = Arc::new(AtomicU64::new(0));
    let what = format!("{}: subscribers", server.label());
    connect_paced(n, &ready, &what, |i| {
        let port = running.port_for(i, n);
        tokio::spawn(subscriber(
            server.kind(),
            port,
            i,
            counts.clone(),
            ready.clone(),
        ));
    })
    .await;
    // Let the last connections settle (ours places them on the path during the upgrade).
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Spawn `n` connections with `spawn(i)`, at most a few hundred handshakes in flight, and wait (at most
/// 60 s) until `ready` counts all of them through theirs; `what` names them if they are not.
async fn connect_paced(n: usize, ready: &AtomicU64, what: &str, mut spawn: impl FnMut(usize)) {
    for i in 0..n {
        spawn(i);
        if i % 200 == 199 {
            for _ in 0..60_000 {
                if ready.load(Ordering::Acquire) + 400 >= i as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    for _ in 0..12_000 {
        if ready.load(Ordering::Acquire) >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        ready.load(Ordering::Acquire) >= n as u64,
        "{what} still connecting after 60 s"
    );
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
    /// The simulated database's calls during the closed loop (ours only).
    db: Option<DbStats>,
    /// The open-loop run on the same connections, if any.
    open: Option<OpenFigures>,
}

struct OpenFigures {
    /// Offered publishes/s.
    rate: f64,
    /// Achieved: deliveries over the time from the first scheduled publish to the last receipt.
    deliveries_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    (pct(0.5), pct(0.99), *v.last().expect("samples"))
}

/// Recipients of one publish to `n` subscribers.
fn per_publish(server: Server, n: usize) -> u64 {
    if server.half() {
        (n as u64).div_ceil(2)
    } else {
        n as u64
    }
}

/// Closed-loop publishes for `n` subscribers: `--publishes`, at most 500,000 deliveries per run.
fn closed_publishes(args: &Args, n: usize) -> u64 {
    args.publishes.min((500_000 / n.max(1)) as u64).max(5)
}

/// One fan-out run. `open`: the open-loop rate (publishes/s; `None`: 70% of this run's closed loop) and
/// duration, if any.
async fn run(
    server: Server,
    env: &Env,
    n: usize,
    publishes: u64,
    open: Option<(Option<f64>, f64)>,
) -> Figures {
    let mut running = start(server, env).await;
    let rss_before = running.rss_kib();
    let per_publish = per_publish(server, n);
    let counts = Arc::new(Counts::new(per_publish, publishes as usize + MAX_OPEN));
    connect_all(server, &running, n, &counts).await;
    let kib_per_conn = running.rss_kib().saturating_sub(rss_before) as f64 / n as f64;

    let mut publisher = Publisher::open(server, running.ports[0]).await;
    let db0 = running.db_stats(server.kind()).await;
    let (user0, sys0) = running.cpu();
    let (me_user0, me_sys0) = cpu(std::process::id());
    let mut latencies = Vec::with_capacity(publishes as usize);
    let start = Instant::now();
    for k in 0..publishes {
        counts
            .target
            .store((k + 1) * per_publish, Ordering::Release);
        let t0 = Instant::now();
        publisher.publish(k).await;
        assert!(
            counts.wait_for((k + 1) * per_publish).await,
            "{}: publish {k} never reached everyone",
            server.label()
        );
        latencies.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let (user1, sys1) = running.cpu();
    let (me_user1, me_sys1) = cpu(std::process::id());
    let db = match (db0, running.db_stats(server.kind()).await) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    let deliveries = (publishes * per_publish) as f64;
    let (p50, p99, max) = percentiles(latencies);

    let open = match open {
        Some((rate, seconds)) => {
            let rate = rate.unwrap_or(0.7 * deliveries / elapsed.as_secs_f64() / n as f64);
            Some(open_loop(server, &counts, &mut publisher, publishes, rate, seconds).await)
        }
        None => None,
    };
    let errors = counts.errors.load(Ordering::Relaxed);
    assert_eq!(
        errors,
        0,
        "{}: {errors} gaps, duplicates or failed connections",
        server.label()
    );
    drop(publisher);
    running.stop().await;
    Figures {
        deliveries_per_sec: deliveries / elapsed.as_secs_f64(),
        p50,
        p99,
        max,
        user_us: (user1 - user0) * 1e6 / deliveries,
        sys_us: (sys1 - sys0) * 1e6 / deliveries,
        kib_per_conn,
        loadgen_cpu: ((me_user1 - me_user0) + (me_sys1 - me_sys0)) / elapsed.as_secs_f64(),
        db,
        open,
    }
}

/// Publish at a fixed `rate` for `seconds`, continuing the numbering after `first`. Each publish waits for
/// the server's acknowledgement, so a server that cannot keep up falls behind the schedule; latency is
/// measured from each publish's scheduled time (no coordinated omission) to its last receipt.
async fn open_loop(
    server: Server,
    counts: &Counts,
    publisher: &mut Publisher,
    first: u64,
    rate: f64,
    seconds: f64,
) -> OpenFigures {
    let count = ((rate * seconds) as usize).clamp(5, MAX_OPEN) as u64;
    let start = tokio::time::Instant::now();
    let base_offset = start.into_std().duration_since(counts.base);
    for j in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / rate)).await;
        publisher.publish(first + j).await;
    }
    assert!(
        counts.wait_for((first + count) * counts.per_publish).await,
        "{}: open-loop publishes never reached everyone",
        server.label()
    );
    let mut latencies = Vec::with_capacity(count as usize);
    let mut last = Duration::ZERO;
    for j in 0..count {
        let done =
            Duration::from_nanos(counts.done_ns[(first + j) as usize].load(Ordering::Acquire));
        let scheduled = base_offset + Duration::from_secs_f64(j as f64 / rate);
        latencies.push(done.saturating_sub(scheduled));
        last = last.max(done);
    }
    let (p50, p99, max) = percentiles(latencies);
    // From the first scheduled publish to the last receipt, but at least the schedule's length: a server
    // that keeps up achieves the offered rate, not more.
    let span = last
        .saturating_sub(base_offset)
        .max(Duration::from_secs_f64(count as f64 / rate));
    OpenFigures {
        rate,
        deliveries_per_sec: (count * counts.per_publish) as f64 / span.as_secs_f64(),
        p50,
        p99,
        max,
    }
}

enum Publisher {
    Ceiling(Ws),
    Ours(SyncClient, Server),
    SocketIo {
        ws: Ws,
        mode: &'static str,
        ack: u64,
    },
}

impl Publisher {
    async fn open(server: Server, port: u16) -> Publisher {
        match server.kind() {
            Kind::Ceiling => {
                let mut ws = ws_connect(format!("ws://127.0.0.1:{port}/"))
                    .await
                    .expect("publisher");
                ws.send(Message::text("pub")).await.expect("pub");
                Publisher::Ceiling(ws)
            }
            Kind::Ours => {
                let url = format!("ws://127.0.0.1:{port}/_sync/ws");
                let client = SyncClient::connect(
                    &url,
                    ConnectOptions::new().token("u999999999").path("/bench"),
                )
                .await
                .expect("publisher");
                Publisher::Ours(client, server)
            }
            Kind::SocketIo => {
                let ws = socketio_connect(port, r#"{"token":"u999999999","pub":true}"#)
                    .await
                    .expect("Socket.IO publisher");
                let mode = match server {
                    Server::SocketIo => "plain",
                    Server::SocketIoFilterAll => "filter-all",
                    _ => "filter-half",
                };
                Publisher::SocketIo { ws, mode, ack: 0 }
            }
        }
    }

    async fn publish(&mut self, k: u64) {
        match self {
            Publisher::Ceiling(ws) => {
                ws.send(Message::text(k.to_string()))
                    .await
                    .expect("publish");
                ws.next().await.expect("ok").expect("ok");
            }
            Publisher::Ours(client, server) => {
                let outcome = match server {
                    Server::OursFilterAll => {
                        client.request_with("filtered", (k, true), false).await
                    }
                    Server::OursFilterHalf => {
                        client.request_with("filtered", (k, false), false).await
                    }
                    Server::OursDbEach | Server::OursDbPrepared | Server::OursDbClasses => {
                        let name = filters::sync_of(*server).expect("a database row");
                        client.request_with(name, k, false).await
                    }
                    _ => client.request_with("tick", k, false).await,
                };
                outcome.expect("the request is accepted");
            }
            Publisher::SocketIo { ws, mode, ack } => {
                *ack += 1;
                ws.send(Message::text(format!(
                    r#"42{ack}["pub",{{"k":{k},"mode":"{mode}"}}]"#
                )))
                .await
                .expect("publish");
                let expected = format!("43{ack}[");
                for _ in 0..64 {
                    let text = next_text(ws).await.expect("the ack");
                    if text.starts_with(&expected) {
                        return;
                    }
                    if text == "2" {
                        ws.send(Message::text("3")).await.expect("pong");
                    }
                }
                panic!("Socket.IO: no ack for publish {k}");
            }
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The fan-out phase for `n` subscribers, one repeat: closed loop, then open loop on the same connections.
async fn fan_out(args: &Args, env: &Env, servers: &[Server], n: usize, repeat: usize) {
    let publishes = closed_publishes(args, n);
    println!("\n== fan-out, closed loop: {n} subscribers, repeat {repeat}, {publishes} publishes");
    println!(
        "{:<28} {:>10} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>7} {:>9}",
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
    let mut open_rows: Vec<(Server, OpenFigures)> = Vec::new();
    for &server in servers {
        // Open loop at `--rate`, or at 70% of the ceiling's closed-loop rate in this repeat (for the ceiling
        // itself: of its own closed loop, just measured on the same connections).
        let rate = args.rate.or_else(|| {
            ceiling
                .as_ref()
                .map(|c| 0.7 * c.deliveries_per_sec / n as f64)
        });
        let open = (args.open_seconds > 0.0).then_some((rate, args.open_seconds));
        let mut f = run(server, env, n, publishes, open).await;
        let (ratio, p99_ratio) = ceiling.as_ref().map_or((1.0, 1.0), |c| {
            (
                f.deliveries_per_sec / c.deliveries_per_sec,
                f.p99.as_secs_f64() / c.p99.as_secs_f64(),
            )
        });
        println!(
            "{:<28} {:>10.0} {:>6.2} {:>8} {:>8} {:>8} {:>9.2} {:>9.2} {:>8.1} {:>6.0}% {:>9.2}",
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
        if let Some(o) = f.open.take() {
            open_rows.push((server, o));
        }
        if server == Server::Ceiling {
            ceiling = Some(f);
        }
    }
    if open_rows.is_empty() {
        return;
    }
    println!(
        "\n== fan-out, open loop: {n} subscribers, repeat {repeat}, {} s at a fixed publish rate",
        args.open_seconds
    );
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>7} {:>6} {:>8} {:>8} {:>8} {:>9}",
        "server",
        "pub/s",
        "offered d/s",
        "achieved d/s",
        "kept up",
        "ratio",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 ratio"
    );
    let base = open_rows
        .iter()
        .find(|(s, _)| *s == Server::Ceiling)
        .map(|(_, o)| (o.deliveries_per_sec, o.p99.as_secs_f64()));
    for (server, o) in &open_rows {
        let (ratio, p99_ratio) = base.map_or((1.0, 1.0), |(d, p99)| {
            (o.deliveries_per_sec / d, o.p99.as_secs_f64() / p99)
        });
        let offered = o.rate * per_publish(*server, n) as f64;
        println!(
            "{:<28} {:>9.1} {:>12.0} {:>12.0} {:>6.0}% {:>6.2} {:>8} {:>8} {:>8} {:>9.2}",
            server.label(),
            o.rate,
            offered,
            o.deliveries_per_sec,
            100.0 * o.deliveries_per_sec / offered,
            ratio,
            ms(o.p50),
            ms(o.p99),
            ms(o.max),
            p99_ratio
        );
    }
}

/// Memory per idle connection: `m` idle subscribers, server RSS growth / `m`.
async fn memory(env: &Env, servers: &[Server], m: usize) {
    println!("\n== memory per idle connection: {m} subscribers");
    println!(
        "{:<28} {:>11} {:>11} {:>9} {:>6} {:>8}",
        "server", "RSS before", "RSS after", "KiB/conn", "ratio", "vs bare"
    );
    let mut ceiling: Option<f64> = None;
    let mut bare: Option<f64> = None;
    for &server in servers {
        let running = start(server, env).await;
        let before = running.rss_kib();
        let counts = Arc::new(Counts::new(u64::MAX, 0));
        connect_all(server, &running, m, &counts).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = running.rss_kib();
        let errors = counts.errors.load(Ordering::Relaxed);
        assert_eq!(errors, 0, "{}: {errors} failed connections", server.label());
        running.stop().await;
        let per = after.saturating_sub(before) as f64 / m as f64;
        let ratio = ceiling.map_or(1.0, |c| per / c);
        if server == Server::Bare {
            bare = Some(per);
        }
        println!(
            "{:<28} {:>8} MiB {:>7} MiB {:>9.1} {:>6.2} {:>8}",
            server.label(),
            before / 1024,
            after / 1024,
            per,
            ratio,
            bare.map_or("-".to_owned(), |b| format!("{:.2}", per / b))
        );
        if server == Server::Ceiling {
            ceiling = Some(per);
        }
    }
}

/// One churn connection: connect, complete the handshake up to the first server message (ours: the
/// `hello`; Socket.IO: the namespace connect reply; ceiling: the upgrade), then close cleanly.
async fn churn_once(kind: Kind, port: u16, token: usize) -> bool {
    let ws = match kind {
        Kind::Ceiling => ws_connect(format!("ws://127.0.0.1:{port}/")).await,
        Kind::Ours | Kind::SocketIo => connect(kind, port, token).await,
    };
    let Some(mut ws) = ws else {
        return false;
    };
    let _ = ws.close(None).await;
    // Read to the server's close (bounded), so the server side ends the TCP connection first.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for _ in 0..100_000 {
            if !matches!(ws.next().await, Some(Ok(_))) {
                break;
            }
        }
    })
    .await;
    true
}

/// Subscribers receiving broadcasts during the churn phase, and their publish rate.
const CHURN_SUBSCRIBERS: usize = 1000;
const CHURN_RATE: f64 = 20.0;
/// Concurrent connect/disconnect loops.
const CHURNERS: usize = 8;

/// Connection churn: `CHURNERS` loops connect and disconnect for `seconds` while `CHURN_RATE`
/// publishes/s go to `CHURN_SUBSCRIBERS` subscribers.
async fn churn(env: &Env, servers: &[Server], seconds: f64) {
    println!(
        "\n== connection churn: {seconds} s, {CHURNERS} concurrent connect/close loops, while {CHURN_RATE} publishes/s go to {CHURN_SUBSCRIBERS} subscribers"
    );
    println!(
        "{:<28} {:>10} {:>6} {:>9} {:>12} {:>8}",
        "server", "connects/s", "ratio", "failures", "deliv/s", "p99 ms"
    );
    let mut ceiling: Option<f64> = None;
    for &server in servers {
        let running = start(server, env).await;
        let n = CHURN_SUBSCRIBERS;
        let per_publish = per_publish(server, n);
        let count = ((CHURN_RATE * seconds) as usize).clamp(5, MAX_OPEN) as u64;
        let counts = Arc::new(Counts::new(per_publish, count as usize));
        connect_all(server, &running, n, &counts).await;
        let mut publisher = Publisher::open(server, running.ports[0]).await;
        let began = Instant::now();
        let deadline = began + Duration::from_secs_f64(seconds);
        let connects = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let port = running.ports[0];
        let tasks: Vec<_> = (0..CHURNERS)
            .map(|c| {
                let (connects, failures) = (connects.clone(), failures.clone());
                tokio::spawn(async move {
                    for j in 0..10_000_000 {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let token = 1_000_000 + c * 10_000_000 + j;
                        if churn_once(server.kind(), port, token).await {
                            connects.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let open = open_loop(server, &counts, &mut publisher, 0, CHURN_RATE, seconds).await;
        for task in tasks {
            let _ = task.await;
        }
        let elapsed = began.elapsed();
        let errors = counts.errors.load(Ordering::Relaxed);
        assert_eq!(
            errors,
            0,
            "{}: {errors} gaps, duplicates or failed connections during churn",
            server.label()
        );
        drop(publisher);
        running.stop().await;
        let rate = connects.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
        let ratio = ceiling.map_or(1.0, |c| rate / c);
        println!(
            "{:<28} {:>10.0} {:>6.2} {:>9} {:>12.0} {:>8}",
            server.label(),
            rate,
            ratio,
            failures.load(Ordering::Relaxed),
            open.deliveries_per_sec,
            ms(open.p99)
        );
        if server == Server::Ceiling {
            ceiling = Some(rate);
        }
    }
}

#[tokio::main]
async fn main() {
    let began = Instant::now();
    let args = args();
    // Before pinning, which narrows what the process sees.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if args.pin {
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(pinned, "--pin: `taskset -a -p -c 0 <pid>` failed");
    }
    println!(
        "sync-bench: subscribers {:?}, up to {} closed-loop publishes per run, {} repeat(s), servers interleaved; loopback only",
        args.subscribers, args.publishes, args.repeats
    );
    println!(
        "machine: {} cores; {}",
        cores,
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
    if args.pin {
        println!("pinning: servers on CPU 1 (taskset -c 1), load generator on CPU 0");
    } else {
        println!("pinning: none (servers and load generator share all cores; --pin to separate)");
    }
    let env = detect(args.pin);
    if args.metrics_only || args.filters_only {
        if args.metrics_only {
            metrics::phase(&args, &env).await;
        }
        if args.filters_only {
            filters::phase(&args, &env).await;
        }
        println!("\nelapsed: {:.0} s", began.elapsed().as_secs_f64());
        return;
    }
    let mut single = vec![
        Server::Ceiling,
        Server::Bare,
        Server::Ours,
        Server::OursFilterAll,
        Server::OursFilterHalf,
    ];
    if env.socketio {
        single.extend([
            Server::SocketIo,
            Server::SocketIoFilterAll,
            Server::SocketIoFilterHalf,
        ]);
    }
    let mut all = single.clone();
    // What the ceiling reaches with frames as long as ours: how much of the gap is bytes on the wire.
    all.insert(2, Server::CeilingOurFrameSize);
    if env.redis {
        // Next to the one-node row: with the default history (100 per path) and without.
        all.insert(4, Server::OursTwoNodes);
        all.insert(5, Server::OursTwoNodesNoHistory);
    }
    for &n in &args.subscribers {
        for repeat in 1..=args.repeats {
            fan_out(&args, &env, &all, n, repeat).await;
        }
    }
    // One row per server process: the filter variants are the same process as their plain row when idle.
    let processes: Vec<Server> = single
        .iter()
        .copied()
        .filter(|s| {
            matches!(
                s,
                Server::Ceiling | Server::Bare | Server::Ours | Server::SocketIo
            )
        })
        .flat_map(|s| {
            // The bare broadcaster with the read buffer of older tungstenite, next to its default.
            let small = (s == Server::Bare).then_some(Server::BareSmallRead);
            std::iter::once(s).chain(small)
        })
        .collect();
    for &m in &args.memory {
        memory(&env, &processes, m).await;
    }
    if args.churn_seconds > 0.0 {
        churn(&env, &single, args.churn_seconds).await;
    }
    burst::phase(&env, args.burst).await;
    if args.presence_room > 0 && args.presence_churn > 0 && args.presence_seconds > 0.0 {
        presence::phase(
            &env,
            args.presence_room,
            args.presence_churn,
            args.presence_seconds,
        )
        .await;
    }
    metrics::phase(&args, &env).await;
    filters::phase(&args, &env).await;
    println!("\nelapsed: {:.0} s", began.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_from_each_protocol() {
        assert_eq!(number(r#"{"n":7}"#), Some(7));
        assert_eq!(number(r#"42["tick",42]"#), Some(42));
        assert_eq!(number(r#"42["tick",0]"#), Some(0));
        assert_eq!(
            number(r#"{"t":"event","name":"tick","payload":123}"#),
            Some(123)
        );
        assert_eq!(number("2"), None);
        assert_eq!(number(r#"40{"sid":"abc"}"#), None);
    }
}
