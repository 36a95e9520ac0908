//! The Redis transport (feature `redis`), on the `redis` crate: a multiplexed connection for the
//! appends and `PUBLISH` (pipelined, one round trip per batch), another for reading history, and a
//! dedicated RESP2 pub/sub connection for `SUBSCRIBE`. What it shares with the Redis Cluster transport
//! ([`super::redis_cluster`]) lives here too: the key layout, the scripts, reading history, the
//! configuration's checks.
//!
//! A path's history is two keys and a channel sharing one hash tag (`{<path>}`), so that on a Redis
//! Cluster they live in one slot (the cluster's script publishes with `SPUBLISH`, which a script may do
//! on a channel of its own slot):
//!
//! * `<prefix>:{<path>}:m`, a hash: `e` the epoch, `o` the last offset. It expires after a day without
//!   triggers (`META_TTL`, in [`super::redis_scripts`]); a new one starts a new epoch, so cursors from before get `resync`.
//! * `<prefix>:{<path>}:s`, a stream of the last `history_size` triggers, entry id `<offset>-0`, fields
//!   `d` (the trigger) and `t` (Redis's clock, ms). It expires after `history_age` without triggers.
//! * `<prefix>:{<path>}:c`, the channel (sharded on a cluster); a message is `<offset> <epoch> <trigger>`.
//!
//! The script `APPEND` (in [`super::redis_scripts`]) does all of it in one atomic step, so the offset is assigned with the publish.
//! Only connecting, appending, publishing and reading live here; reconnects, heartbeats and following
//! are the engine's.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, Value,
};
use tokio::sync::Mutex;

use super::redis_scripts::{Lua, append_args, append_script, position, read_top, top_script};
use super::{Message, Transport, TransportError};
use crate::history::{Cursor, HistoryLimits, Recalled, new_epoch};

/// The keys and channel of one path's history.
pub(crate) struct PathKeys {
    pub meta: String,
    pub stream: String,
    pub channel: String,
}

impl PathKeys {
    pub fn new(prefix: &str, path: &str) -> Self {
        PathKeys {
            meta: format!("{prefix}:{{{path}}}:m"),
            stream: format!("{prefix}:{{{path}}}:s"),
            channel: format!("{prefix}:{{{path}}}:c"),
        }
    }
}

/// The path whose channel is `channel` (the inverse of [`PathKeys::new`]).
pub(super) fn path_of(prefix: &str, channel: &str) -> Option<Arc<str>> {
    let inner = channel.strip_prefix(prefix)?.strip_prefix(":{")?;
    Some(Arc::from(inner.strip_suffix("}:c")?))
}

/// The deployment's channel: heartbeats and notes.
pub(super) fn node_channel(prefix: &str) -> String {
    format!("{prefix}:sync:v2")
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long connecting (TCP, TLS, `AUTH`, `SELECT`, `SUBSCRIBE`) or one publish may take.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis backplane's address: its URL and the roots to trust for TLS.
#[derive(Clone)]
pub(crate) struct RedisConfig {
    url: String,
    /// PEM certificates trusted instead of the system's roots, for `rediss://`.
    pub roots: Option<Vec<u8>>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("roots", &self.roots.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

impl RedisConfig {
    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_owned(),
            roots: None,
        }
    }

    /// The client for this configuration, or what is wrong with it.
    pub fn client(&self) -> Result<Client, String> {
        let info = check_url(&self.url, self.roots.as_deref())?;
        match &self.roots {
            None => Client::open(info),
            Some(pem) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| format!("`{}` cannot be used: {e}", redact(&self.url)))
    }
}

/// What `url` connects to, or what is wrong with it (alone, or with TLS roots `roots`).
pub(super) fn check_url(url: &str, roots: Option<&[u8]>) -> Result<ConnectionInfo, String> {
    let shown = redact(url);
    let tls = url.starts_with("rediss://");
    if !tls && !url.starts_with("redis://") {
        return Err(format!(
            "`{shown}` is not a Redis URL: expected redis://[user:password@]host[:port][/db] or rediss://…"
        ));
    }
    let info = url
        .into_connection_info()
        .map_err(|e| format!("`{shown}` is not a valid Redis URL: {e}"))?;
    match roots {
        Some(_) if !tls => Err(format!(
            "TLS root certificates were given for `{shown}`, which does not use TLS: use rediss://"
        )),
        Some(pem) if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") => Err(
            format!("the TLS root certificates for `{shown}` contain no PEM certificate"),
        ),
        _ => Ok(info),
    }
}

/// The `redis` crate builds its TLS configuration with rustls' process-wide provider. Install the one
/// this crate enables, unless the application installed its own: with two providers compiled in,
/// rustls would otherwise refuse to pick.
pub(super) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// `url` with its password, if any, replaced by `***`: for logs and messages.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let secret = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{secret}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// A connection opened on first use, and again after it broke (for reading history).
pub(super) struct Reader<C>(Mutex<Option<C>>);

impl<C: Clone> Reader<C> {
    pub fn new() -> Self {
        Reader(Mutex::new(None))
    }

    /// Run `read` on the connection (a clone of the shared one: the `redis` crate multiplexes it),
    /// opened with `open` if there is none; one found broken (Redis restarted since it was last used)
    /// is reopened and the read tried once more.
    pub async fn read<T, O, OFut, F, Fut>(&self, open: O, read: F) -> Result<T, TransportError>
    where
        O: Fn() -> OFut,
        OFut: Future<Output = Result<C, TransportError>> + Send,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, RedisError>> + Send,
    {
        let mut last = None;
        for _ in 0..2 {
            let connection = {
                let mut reader = self.0.lock().await;
                match &*reader {
                    Some(connection) => connection.clone(),
                    None => {
                        let connection = open().await?;
                        *reader = Some(connection.clone());
                        connection
                    }
                }
            };
            match read(connection).await {
                Ok(value) => return Ok(value),
                Err(e) if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) => {
                    return Err(classify(e));
                }
                Err(e) => {
                    *self.0.lock().await = None;
                    last = Some(e);
                }
            }
        }
        Err(classify(last.expect("two attempts failed")))
    }
}

/// `PUBLISH` each of `payloads` on `channel`, in order, in one pipeline.
pub(super) fn publish_pipeline(channel: &str, payloads: &[Bytes]) -> Pipeline {
    let mut pipe = redis::pipe();
    for payload in payloads {
        pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
    }
    pipe
}

/// What [`since_pipeline`] reads: the path's position, the stream's first entry, the entries asked for.
pub(super) type SinceReply = ((Option<String>, Option<u64>), Entries, Entries);
type Entries = Vec<(String, Vec<(String, Value)>)>;

/// One round trip (all in the path's slot): the position, the oldest entry, and those after `after` up
/// to `upto`.
pub(super) fn since_pipeline(prefix: &str, path: &str, after: u64, upto: u64) -> Pipeline {
    let keys = PathKeys::new(prefix, path);
    let mut pipe = redis::pipe();
    pipe.cmd("HMGET")
        .arg(&keys.meta)
        .arg("e")
        .arg("o")
        .cmd("XRANGE")
        .arg(&keys.stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XRANGE")
        .arg(&keys.stream)
        .arg(format!("{}-0", after.saturating_add(1)))
        .arg(format!("{upto}-0"));
    pipe
}

/// The triggers [`since_pipeline`] read, if `epoch` is still the history, without those older than
/// `age`.
pub(super) fn recalled(reply: SinceReply, epoch: &str, age: Duration) -> Recalled<Bytes> {
    let (position, head, range) = reply;
    let (Some(current), top) = position else {
        return Recalled::Lost;
    };
    if current != epoch {
        return Recalled::Lost;
    }
    let now = redis_now_ms();
    let age = millis(age);
    let fresh = |fields: &[(String, Value)]| {
        fields.iter().any(|(k, v)| {
            k == "t" && redis::from_redis_value_ref::<u64>(v).is_ok_and(|t| t + age >= now)
        })
    };
    let offset = |id: &str| id.split('-').next().and_then(|o| o.parse::<u64>().ok());
    // The oldest entry still served: the stream's first if it is fresh, else the first fresh one.
    let mut first = top.unwrap_or(0) + 1;
    if let Some((id, fields)) = head.first()
        && fresh(fields)
    {
        first = offset(id).unwrap_or(first);
    } else if let Some((id, _)) = range.iter().find(|(_, fields)| fresh(fields)) {
        first = offset(id).unwrap_or(first);
    }
    let entries = range
        .into_iter()
        .filter(|(_, fields)| fresh(fields))
        .filter_map(|(id, fields)| {
            let data = fields.into_iter().find(|(k, _)| k == "d")?.1;
            let data: Vec<u8> = redis::from_redis_value(data).ok()?;
            Some((offset(&id)?, Bytes::from(data)))
        })
        .collect();
    Recalled::Entries { first, entries }
}

/// A standalone Redis (or a managed one that looks like it).
pub(crate) struct RedisTransport {
    /// `Err`: the configuration's problem, which the hub's `build` reported; every attempt fails with it.
    client: Result<Client, String>,
    prefix: String,
    channel: String,
    place: String,
    history: HistoryLimits,
    append: Lua,
    top: Lua,
    reader: Reader<MultiplexedConnection>,
}

impl RedisTransport {
    pub fn new(config: &RedisConfig, prefix: &str, history: HistoryLimits) -> Self {
        if config.url.starts_with("rediss://") {
            install_crypto_provider();
        }
        RedisTransport {
            client: config.client(),
            prefix: prefix.to_owned(),
            channel: node_channel(prefix),
            place: redact(&config.url),
            history,
            append: append_script("PUBLISH"),
            top: top_script(),
            reader: Reader::new(),
        }
    }

    fn client(&self) -> Result<&Client, TransportError> {
        self.client
            .as_ref()
            .map_err(|e| TransportError::Broken(e.clone()))
    }

    async fn open(&self) -> Result<MultiplexedConnection, TransportError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        self.client()?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unreachable)
    }
}

/// A refusal (the server answered with an error) leaves the connection usable; anything else breaks it.
pub(super) fn classify(e: RedisError) -> TransportError {
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => TransportError::Refused(e.to_string()),
        _ => TransportError::Broken(e.to_string()),
    }
}

/// Connecting failed: whatever the cause, the connection is to be retried.
pub(super) fn unreachable(e: RedisError) -> TransportError {
    TransportError::Broken(e.to_string())
}

/// A pub/sub connection, split so that paths are followed while messages are read.
pub(crate) struct RedisSubscription {
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Transport for RedisTransport {
    type Publisher = MultiplexedConnection;
    type Subscription = RedisSubscription;

    fn service(&self) -> &'static str {
        "Redis"
    }

    fn place(&self) -> &str {
        &self.place
    }

    async fn connect(&self) -> Result<MultiplexedConnection, TransportError> {
        let mut connection = self.open().await?;
        // Loaded once per connection, so that the pipelined EVALSHAs find it (a Redis restarted since
        // has lost it, and the connection with it).
        self.append.load(&mut connection).await.map_err(classify)?;
        Ok(connection)
    }

    async fn publish(
        &self,
        publisher: &mut MultiplexedConnection,
        payloads: &[Bytes],
    ) -> Result<(), TransportError> {
        // One pipeline: one write and one round trip for the whole batch, in order.
        publish_pipeline(&self.channel, payloads)
            .query_async::<()>(publisher)
            .await
            .map_err(classify)
    }

    async fn append(
        &self,
        publisher: &mut MultiplexedConnection,
        triggers: &[(Arc<str>, Bytes)],
    ) -> Result<Vec<Result<Cursor, String>>, TransportError> {
        let epoch = new_epoch();
        let mut pipe = redis::pipe();
        for (path, trigger) in triggers {
            let mut cmd = self.append.command(true);
            append_args(&mut cmd, &self.prefix, path, &epoch, &self.history, trigger);
            pipe.add_command(cmd);
        }
        let results: Vec<redis::RedisResult<(String, u64)>> = pipe
            .ignore_errors()
            .query_async(publisher)
            .await
            .map_err(classify)?;
        if let Some(Err(e)) = results.iter().find(|r| r.is_err())
            && e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            // Flushed scripts: reconnecting loads it again.
            return Err(TransportError::Broken(e.to_string()));
        }
        Ok(results
            .into_iter()
            .map(|r| r.map(position).map_err(|e| e.to_string()))
            .collect())
    }

    async fn since(
        &self,
        path: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Recalled<Bytes>, TransportError> {
        let pipe = &since_pipeline(&self.prefix, path, after, upto);
        let reply = self
            .reader
            .read(
                || self.open(),
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        Ok(recalled(reply, epoch, self.history.age))
    }

    async fn top(&self, path: &str) -> Result<Cursor, TransportError> {
        self.reader
            .read(
                || self.open(),
                |mut c| async move { read_top(&self.top, &mut c, &self.prefix, path).await },
            )
            .await
    }

    async fn subscribe(&self) -> Result<RedisSubscription, TransportError> {
        let client = self.client()?;
        let subscribed = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            // Returns once Redis confirmed the subscription.
            sink.subscribe(&self.channel).await?;
            Ok::<_, RedisError>(RedisSubscription { sink, stream })
        };
        match tokio::time::timeout(TIMEOUT, subscribed).await {
            Ok(result) => result.map_err(unreachable),
            Err(_) => Err(TransportError::Broken(format!(
                "no subscription within {TIMEOUT:?}"
            ))),
        }
    }

    async fn follow(
        &self,
        subscription: &mut RedisSubscription,
        paths: &[Arc<str>],
        on: bool,
    ) -> Result<(), TransportError> {
        let channels: Vec<String> = paths
            .iter()
            .map(|path| PathKeys::new(&self.prefix, path).channel)
            .collect();
        let done = async {
            if on {
                subscription.sink.subscribe(&channels).await
            } else {
                subscription.sink.unsubscribe(&channels).await
            }
        };
        match tokio::time::timeout(TIMEOUT, done).await {
            Ok(result) => result.map_err(unreachable),
            Err(_) => Err(TransportError::Broken(format!(
                "no confirmation within {TIMEOUT:?}"
            ))),
        }
    }

    async fn next(&self, subscription: &mut RedisSubscription) -> Option<Message> {
        loop {
            let message = subscription.stream.next().await?;
            let payload = Bytes::copy_from_slice(message.get_payload_bytes());
            let channel = message.get_channel_name();
            if channel == self.channel {
                return Some(Message::Node(payload));
            }
            if path_of(&self.prefix, channel).is_some() {
                return Some(Message::Path(payload));
            }
        }
    }
}

/// Milliseconds since the epoch, as Redis's `TIME` counts them (the clocks of one deployment's machines
/// are taken to agree within the history's age).
fn redis_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
