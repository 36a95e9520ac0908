//! The Redis backplane: several server processes behind one Redis act as one hub.
//!
//! A trigger accepted on a node fans out to that node's own connections at once and is published once on
//! the deployment's channel; every other node receives it and fans it out to *its* connections, running
//! filters only for them. Redis only carries triggers (route path, sync name, data, sender), never
//! reactions, so the traffic is one message per trigger whatever the number of recipients.
//!
//! Delivery between nodes is at most once, and losses are never silent: each node numbers what it
//! publishes and sends a heartbeat with its last number every second. A node that sees a number skipped
//! (Redis was down, the queue to Redis was full, its own subscription dropped) logs it and sends `resync`
//! to its connections, exactly as a resume that cannot replay does. While Redis is down, local delivery
//! goes on; both connections reconnect by themselves with backoff, and the outage and the recovery are
//! logged once each.
//!
//! The client for Redis is a few lines of RESP over a `TcpStream` (`PUBLISH` and `SUBSCRIBE` only) rather
//! than a client crate: the two commands need no more, and it keeps the dependency tree as it is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Broker, Inbox, WireTrigger};

/// Where the backplane connects, and what it calls its channel.
///
/// ```no_run
/// use sync_runtime::{Backplane, SyncHub};
///
/// # async fn f() {
/// let hub = SyncHub::builder()
///     .guests()
///     .backplane(Backplane::redis("redis://127.0.0.1:6379").key_prefix("staging"))
///     .build()
///     .expect("handlers match");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Backplane {
    pub(crate) host: String,
    pub(crate) password: Option<String>,
    pub(crate) prefix: String,
    pub(crate) url_error: Option<String>,
    pub(crate) queue: usize,
    pub(crate) heartbeat: Duration,
}

impl Backplane {
    /// A Redis at `url`: `redis://host:port`, or `redis://:password@host:port`. The default key prefix
    /// is `sync`; give each deployment sharing one Redis its own with [`key_prefix`](Self::key_prefix).
    pub fn redis(url: impl AsRef<str>) -> Self {
        let url = url.as_ref();
        let mut backplane = Backplane {
            host: String::new(),
            password: None,
            prefix: "sync".to_owned(),
            url_error: None,
            queue: 16_384,
            heartbeat: Duration::from_secs(1),
        };
        match parse_url(url) {
            Some((host, password)) => {
                backplane.host = host;
                backplane.password = password;
            }
            None => {
                backplane.url_error = Some(format!(
                    "`{url}` is not a Redis URL: expected redis://host:port or redis://:password@host:port"
                ));
            }
        }
        backplane
    }

    /// The prefix of the channel this deployment uses (default `sync`): two deployments sharing a Redis
    /// with different prefixes never see each other's triggers.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Triggers waiting to be published (default 16,384). Past it, triggers still reach this node's
    /// connections, and the other nodes see a gap and resync.
    pub fn queue(mut self, triggers: usize) -> Self {
        self.queue = triggers.max(1);
        self
    }

    /// How often each node announces its last published number (default 1 s): the longest a loss at the
    /// end of a burst stays unnoticed, and how fast a dead subscription is detected (5 heartbeats).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    fn channel(&self) -> String {
        format!("{}:sync:v1", self.prefix)
    }
}

fn parse_url(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix("redis://")?;
    let rest = rest.split('/').next()?;
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    if host.is_empty() {
        return None;
    }
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:6379")
    };
    let password = auth
        .map(|a| a.split_once(':').map_or(a, |(_, p)| p))
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    Some((host, password))
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The publishing node (random per process).
    node: u64,
    /// That node's count of triggers published (or given up), for gap detection.
    seq: u64,
    /// `None`: a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trigger: Option<WireTrigger>,
}

/// The backplane's state, for [`SyncHub::backplane_status`](crate::SyncHub::backplane_status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackplaneStatus {
    /// The publishing connection is up.
    pub publishing: bool,
    /// The subscription is up and confirmed.
    pub subscribed: bool,
    /// Triggers published.
    pub published: u64,
    /// Triggers from other nodes fanned out here.
    pub received: u64,
    /// Triggers that could not be published (Redis down, queue full).
    pub dropped: u64,
    /// Gaps seen in another node's numbering (each sends `resync` to this node's connections).
    pub gaps: u64,
}

/// A running backplane: the publisher's queue, and what both tasks share.
pub(crate) struct BackplaneHandle {
    config: Backplane,
    tx: mpsc::Sender<WireTrigger>,
    shared: Arc<Shared>,
}

/// Shared by the handle, the publisher and the subscriber. The tasks hold no sender of the queue, so
/// dropping the hub closes it and ends them.
struct Shared {
    node: u64,
    /// Triggers dropped since the publisher last numbered one: it skips as many numbers.
    skipped: AtomicU64,
    publishing: AtomicBool,
    subscribed: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    gaps: AtomicU64,
}

impl Shared {
    fn lost(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::AcqRel);
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

impl BackplaneHandle {
    /// Start the publisher (on the current Tokio runtime); [`subscribe`](Self::subscribe) starts the
    /// subscriber once the hub exists.
    pub fn start(config: &Backplane) -> BackplaneHandle {
        let (tx, rx) = mpsc::channel(config.queue);
        let shared = Arc::new(Shared {
            node: node_id(),
            skipped: AtomicU64::new(0),
            publishing: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        });
        tokio::spawn(publish_loop(config.clone(), shared.clone(), rx));
        BackplaneHandle {
            config: config.clone(),
            tx,
            shared,
        }
    }
}

impl Broker for BackplaneHandle {
    fn start(&self, inbox: Weak<dyn Inbox>) {
        tokio::spawn(subscribe_loop(
            self.config.clone(),
            self.shared.clone(),
            inbox,
        ));
    }

    fn publish(&self, trigger: WireTrigger) {
        if self.tx.try_send(trigger).is_err() {
            self.shared.lost(1);
        }
    }

    fn status(&self) -> BackplaneStatus {
        let s = &self.shared;
        BackplaneStatus {
            publishing: s.publishing.load(Ordering::Acquire),
            subscribed: s.subscribed.load(Ordering::Acquire),
            published: s.published.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
        }
    }
}

fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Reconnect delays: 100 ms doubling to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// Logs an outage once when it starts and once when it ends.
struct Health {
    what: &'static str,
    down: bool,
}

impl Health {
    fn failed(&mut self, host: &str, error: &std::io::Error) {
        if !self.down {
            tracing::warn!(target: "sync_runtime::backplane", host, error = %error, "{} lost Redis; local delivery goes on, reconnecting", self.what);
            self.down = true;
        } else {
            tracing::debug!(target: "sync_runtime::backplane", host, error = %error, "{} still cannot reach Redis", self.what);
        }
    }

    fn up(&mut self, host: &str) {
        if self.down {
            tracing::warn!(target: "sync_runtime::backplane", host, "{} reconnected to Redis", self.what);
            self.down = false;
        } else {
            tracing::info!(target: "sync_runtime::backplane", host, "{} connected to Redis", self.what);
        }
    }
}

async fn publish_loop(config: Backplane, handle: Arc<Shared>, mut rx: mpsc::Receiver<WireTrigger>) {
    let channel = config.channel();
    let mut health = Health {
        what: "publisher",
        down: false,
    };
    let mut backoff = Backoff::new();
    let mut seq = 0u64;
    let mut batch = Vec::with_capacity(256);
    loop {
        let mut redis = match Redis::connect(&config).await {
            Ok(redis) => redis,
            Err(e) => {
                health.failed(&config.host, &e);
                // Whatever waits now would arrive late and out of context: give it up, so that the other
                // nodes see the gap and resync instead.
                let mut n = 0;
                while rx.try_recv().is_ok() {
                    n += 1;
                }
                handle.lost(n);
                if rx.is_closed() && rx.is_empty() {
                    return;
                }
                if !wait_dropping(&mut backoff, &mut rx, &handle).await {
                    return;
                }
                continue;
            }
        };
        health.up(&config.host);
        backoff = Backoff::new();
        handle.publishing.store(true, Ordering::Release);
        let mut beat = tokio::time::interval(config.heartbeat);
        let error = loop {
            let mut out = Vec::new();
            let mut count = 0usize;
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        handle.publishing.store(false, Ordering::Release);
                        return;
                    }
                    for trigger in batch.drain(..) {
                        seq += 1 + handle.skipped.swap(0, Ordering::AcqRel);
                        let envelope = Envelope { node: handle.node, seq, trigger: Some(trigger) };
                        let payload = serde_json::to_vec(&envelope).expect("a trigger is plain JSON");
                        resp_command(&mut out, &[b"PUBLISH", channel.as_bytes(), &payload]);
                        count += 1;
                    }
                }
                _ = beat.tick() => {
                    seq += handle.skipped.swap(0, Ordering::AcqRel);
                    let envelope: Envelope = Envelope { node: handle.node, seq, trigger: None };
                    let payload = serde_json::to_vec(&envelope).expect("a heartbeat is plain JSON");
                    resp_command(&mut out, &[b"PUBLISH", channel.as_bytes(), &payload]);
                }
            }
            if let Err(e) = redis.write(&out).await {
                break e;
            }
            // One reply per command, in order; the published ones are counted once Redis took them.
            let replies = count + usize::from(count == 0);
            let mut failed = None;
            for _ in 0..replies {
                match redis.read().await {
                    Ok(Resp::Error(e)) => {
                        tracing::warn!(target: "sync_runtime::backplane", error = %e, "Redis refused a publish");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break e;
            }
            handle.published.fetch_add(count as u64, Ordering::Relaxed);
        };
        handle.publishing.store(false, Ordering::Release);
        health.failed(&config.host, &error);
        if !wait_dropping(&mut backoff, &mut rx, &handle).await {
            return;
        }
    }
}

/// Wait out a reconnect delay, giving up every trigger that arrives meanwhile (as the failed connect gave
/// up those already queued): published after the outage, it would reach the other nodes late and out of
/// context, whereas a skipped number makes them resync. False when the hub is gone.
async fn wait_dropping(
    backoff: &mut Backoff,
    rx: &mut mpsc::Receiver<WireTrigger>,
    handle: &Shared,
) -> bool {
    let delay = backoff.wait();
    tokio::pin!(delay);
    loop {
        tokio::select! {
            () = &mut delay => return true,
            trigger = rx.recv() => match trigger {
                Some(_) => handle.lost(1),
                None => return false,
            },
        }
    }
}

async fn subscribe_loop(config: Backplane, own: Arc<Shared>, hub: Weak<dyn Inbox>) {
    let channel = config.channel();
    let mut health = Health {
        what: "subscriber",
        down: false,
    };
    let mut backoff = Backoff::new();
    // The last number seen from each node, kept across reconnects so that an outage shows as a gap.
    let mut last: HashMap<u64, u64> = HashMap::new();
    // Five missed heartbeats: the subscription is dead even if the socket does not say so.
    let silence = config.heartbeat * 5;
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let mut redis = Redis::connect(&config).await?;
            let mut out = Vec::new();
            resp_command(&mut out, &[b"SUBSCRIBE", channel.as_bytes()]);
            redis.write(&out).await?;
            match redis.read().await? {
                Resp::Array(items) if items.first().is_some_and(|i| i.is_bulk(b"subscribe")) => {
                    Ok(redis)
                }
                other => Err(std::io::Error::other(format!(
                    "unexpected answer to SUBSCRIBE: {other:?}"
                ))),
            }
        }
        .await;
        let mut redis = match subscribed {
            Ok(redis) => redis,
            Err(e) => {
                health.failed(&config.host, &e);
                backoff.wait().await;
                continue;
            }
        };
        health.up(&config.host);
        backoff = Backoff::new();
        own.subscribed.store(true, Ordering::Release);
        let error = loop {
            let message = match tokio::time::timeout(silence, redis.read()).await {
                Ok(Ok(message)) => message,
                Ok(Err(e)) => break e,
                Err(_) => {
                    break std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no heartbeat from any node, not even this one",
                    );
                }
            };
            let Some(payload) = message.pubsub_payload() else {
                continue;
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
                tracing::warn!(target: "sync_runtime::backplane", "unreadable message on the channel; ignored");
                continue;
            };
            if envelope.node == own.node {
                continue;
            }
            let Some(hub) = hub.upgrade() else { return };
            let previous = last.get(&envelope.node).copied();
            let fresh = match (previous, &envelope.trigger) {
                (Some(seen), Some(_)) if envelope.seq <= seen => false,
                (Some(seen), _) if envelope.seq > seen + u64::from(envelope.trigger.is_some()) => {
                    own.gaps.fetch_add(1, Ordering::Relaxed);
                    let missed = envelope.seq - seen - u64::from(envelope.trigger.is_some());
                    tracing::warn!(target: "sync_runtime::backplane", node = envelope.node, missed, "triggers from another node were lost; connections here resync");
                    hub.lost();
                    true
                }
                _ => true,
            };
            last.insert(
                envelope.node,
                previous.map_or(envelope.seq, |s| s.max(envelope.seq)),
            );
            if let (true, Some(trigger)) = (fresh, envelope.trigger) {
                own.received.fetch_add(1, Ordering::Relaxed);
                hub.trigger(trigger);
            }
        };
        own.subscribed.store(false, Ordering::Release);
        health.failed(&config.host, &error);
        backoff.wait().await;
    }
}

/// One Redis connection, speaking just enough RESP.
struct Redis {
    stream: BufReader<TcpStream>,
}

/// Bulk strings over this size end the connection: nothing this module sends is near it.
const MAX_BULK: usize = 64 * 1024 * 1024;

impl Redis {
    async fn connect(config: &Backplane) -> std::io::Result<Redis> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&config.host))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        let mut redis = Redis {
            stream: BufReader::new(stream),
        };
        if let Some(password) = &config.password {
            let mut out = Vec::new();
            resp_command(&mut out, &[b"AUTH", password.as_bytes()]);
            redis.write(&out).await?;
            if let Resp::Error(e) = redis.read().await? {
                return Err(std::io::Error::other(format!("AUTH refused: {e}")));
            }
        }
        Ok(redis)
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    async fn read(&mut self) -> std::io::Result<Resp> {
        let mut line = Vec::new();
        Box::pin(read_value(&mut self.stream, &mut line)).await
    }
}

/// A RESP value, as far as PUBLISH / SUBSCRIBE answer.
#[derive(Debug)]
enum Resp {
    Simple,
    Error(String),
    Integer,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Resp {
    fn is_bulk(&self, expected: &[u8]) -> bool {
        matches!(self, Resp::Bulk(Some(b)) if b == expected)
    }

    /// The payload of a `message` push: `["message", channel, payload]`.
    fn pubsub_payload(&self) -> Option<&[u8]> {
        match self {
            Resp::Array(items) if items.len() == 3 && items[0].is_bulk(b"message") => {
                match &items[2] {
                    Resp::Bulk(Some(payload)) => Some(payload),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad RESP: {what}"))
}

async fn read_value(
    stream: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
) -> std::io::Result<Resp> {
    line.clear();
    let n = (&mut *stream)
        .take(64 * 1024)
        .read_until(b'\n', line)
        .await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid("line without CRLF"));
    }
    let body = &line[1..line.len() - 2];
    let number = || -> std::io::Result<i64> {
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("not a number"))
    };
    match line[0] {
        b'+' => Ok(Resp::Simple),
        b'-' => Ok(Resp::Error(String::from_utf8_lossy(body).into_owned())),
        b':' => number().map(|_| Resp::Integer),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Resp::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| invalid("length"))?;
            if len > MAX_BULK {
                return Err(invalid("bulk string too large"));
            }
            let mut bytes = vec![0; len + 2];
            stream.read_exact(&mut bytes).await?;
            bytes.truncate(len);
            Ok(Resp::Bulk(Some(bytes)))
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                return Ok(Resp::Array(Vec::new()));
            }
            let len = usize::try_from(len).map_err(|_| invalid("length"))?;
            if len > 16 {
                return Err(invalid("array too long for a pub/sub answer"));
            }
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(Box::pin(read_value(stream, line)).await?);
            }
            Ok(Resp::Array(items))
        }
        _ => Err(invalid("unknown type byte")),
    }
}

/// Append one command as a RESP array of bulk strings.
fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

impl Backplane {
    /// Start this backplane's broker (on the current Tokio runtime).
    pub(crate) fn start(&self) -> Arc<dyn Broker> {
        Arc::new(BackplaneHandle::start(self))
    }

    /// Why this configuration cannot work, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        self.url_error.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_password() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6390"),
            Some(("127.0.0.1:6390".to_owned(), None))
        );
        assert_eq!(
            parse_url("redis://:s3cret@cache:7000/0"),
            Some(("cache:7000".to_owned(), Some("s3cret".to_owned())))
        );
        assert_eq!(
            parse_url("redis://cache"),
            Some(("cache:6379".to_owned(), None))
        );
        assert_eq!(parse_url("http://cache"), None);
        assert!(Backplane::redis("nope").url_error.is_some());
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        resp_command(&mut out, &[b"PUBLISH", b"a:sync:v1", b"{}"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$9\r\na:sync:v1\r\n$2\r\n{}\r\n"
        );
    }
}
