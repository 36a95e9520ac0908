//! The Redis transport (feature `redis`), on the `redis` crate: a multiplexed connection for the
//! appends and `PUBLISH` (pipelined, one round trip per batch), another for reading history, and a
//! dedicated RESP2 pub/sub connection for `SUBSCRIBE`.
//!
//! A path's history is two keys and a channel sharing one hash tag (`{<path>}`), so that on a Redis
//! Cluster they live in one slot:
//!
//! * `<prefix>:{<path>}:m`, a hash: `e` the epoch, `o` the last offset. It expires after a day without
//!   triggers (`META_TTL`); a new one starts a new epoch, so cursors from before get `resync`.
//! * `<prefix>:{<path>}:s`, a stream of the last `history_size` triggers, entry id `<offset>-0`, fields
//!   `d` (the trigger) and `t` (Redis's clock, ms). It expires after `history_age` without triggers.
//! * `<prefix>:{<path>}:c`, the channel; a message is `<offset> <epoch> <trigger>`.
//!
//! The script [`APPEND`] does all of it in one atomic step, so the offset is assigned with the publish.
//! Only connecting, appending, publishing and reading live here; reconnects, heartbeats and following
//! are the engine's.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ErrorKind, IntoConnectionInfo, RedisError, Value};
use tokio::sync::Mutex;

use super::{Message, Transport, TransportError};
use crate::history::{Cursor, HistoryLimits, Recalled, new_epoch};

/// How long a path's position is kept without triggers.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// Append a trigger to its path's history and publish it, atomically. KEYS: the position hash, the
/// stream. ARGV: an epoch for a new history, entries kept (0: none), the trigger, the stream's expiry
/// (ms), the channel, the position's expiry (ms). Returns `{epoch, offset}`.
const APPEND: &str = r#"
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
local e = redis.call('HGET', KEYS[1], 'e')
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if tonumber(ARGV[2]) > 0 then
  local now = redis.call('TIME')
  local ms = now[1] * 1000 + math.floor(now[2] / 1000)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], o .. '-0', 'd', ARGV[3], 't', ms)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], o .. ' ' .. e .. ' ' .. ARGV[3])
return {e, o}
"#;

/// The position of a path, starting its history if it has none. KEYS: the position hash. ARGV: an
/// epoch for a new history, the position's expiry (ms). Returns `{epoch, offset}`.
const TOP: &str = r#"
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local p = redis.call('HMGET', KEYS[1], 'e', 'o')
return {p[1], p[2] or '0'}
"#;

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
fn path_of(prefix: &str, channel: &str) -> Option<Arc<str>> {
    let inner = channel.strip_prefix(prefix)?.strip_prefix(":{")?;
    Some(Arc::from(inner.strip_suffix("}:c")?))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long connecting (TCP, TLS, `AUTH`, `SELECT`, `SUBSCRIBE`) or one publish may take.
const TIMEOUT: Duration = Duration::from_secs(2);

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
        let shown = redact(&self.url);
        let tls = self.url.starts_with("rediss://");
        if !tls && !self.url.starts_with("redis://") {
            return Err(format!(
                "`{shown}` is not a Redis URL: expected redis://[user:password@]host[:port][/db] or rediss://…"
            ));
        }
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("`{shown}` is not a valid Redis URL: {e}"))?;
        match &self.roots {
            None => Client::open(info),
            Some(_) if !tls => {
                return Err(format!(
                    "TLS root certificates were given for `{shown}`, which does not use TLS: use rediss://"
                ));
            }
            Some(pem) => {
                if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "the TLS root certificates for `{shown}` contain no PEM certificate"
                    ));
                }
                Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                )
            }
        }
        .map_err(|e| format!("`{shown}` cannot be used: {e}"))
    }
}

/// `url` with its password, if any, replaced by `***`: for logs and messages.
fn redact(url: &str) -> String {
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

/// A standalone Redis (or a managed one that looks like it).
pub(crate) struct RedisTransport {
    /// `Err`: the configuration's problem, which the hub's `build` reported; every attempt fails with it.
    client: Result<Client, String>,
    prefix: String,
    channel: String,
    place: String,
    history: HistoryLimits,
    append: redis::Script,
    top: redis::Script,
    /// The connection history is read on, opened on first use and again after it broke.
    reader: Mutex<Option<MultiplexedConnection>>,
}

impl RedisTransport {
    pub fn new(config: &RedisConfig, prefix: &str, history: HistoryLimits) -> Self {
        if config.url.starts_with("rediss://") {
            // The `redis` crate builds its TLS configuration with rustls' process-wide provider. Install
            // the one this crate enables, unless the application installed its own: with two providers
            // compiled in, rustls would otherwise refuse to pick.
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            }
        }
        RedisTransport {
            client: config.client(),
            prefix: prefix.to_owned(),
            channel: format!("{prefix}:sync:v2"),
            place: redact(&config.url),
            history,
            append: redis::Script::new(APPEND),
            top: redis::Script::new(TOP),
            reader: Mutex::new(None),
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

    /// The reading connection (a clone of the shared one: the `redis` crate multiplexes it).
    async fn reader(&self) -> Result<MultiplexedConnection, TransportError> {
        let mut reader = self.reader.lock().await;
        if let Some(connection) = &*reader {
            return Ok(connection.clone());
        }
        let connection = self.open().await?;
        *reader = Some(connection.clone());
        Ok(connection)
    }

    /// Run `read` on the reading connection; one that broke is reopened next time.
    async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, RedisError>,
    ) -> Result<T, TransportError> {
        let mut connection = self.reader().await?;
        match read(&mut connection).await {
            Ok(value) => Ok(value),
            Err(e) => {
                if !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                    *self.reader.lock().await = None;
                }
                Err(classify(e))
            }
        }
    }
}

/// A position as the scripts return it.
fn position(value: (String, u64)) -> Cursor {
    Cursor::new(Arc::from(value.0), value.1)
}

/// A refusal (the server answered with an error) leaves the connection usable; anything else breaks it.
fn classify(e: RedisError) -> TransportError {
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => TransportError::Refused(e.to_string()),
        _ => TransportError::Broken(e.to_string()),
    }
}

/// Connecting failed: whatever the cause, the connection is to be retried.
fn unreachable(e: RedisError) -> TransportError {
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
        self.append
            .prepare_invoke()
            .load_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(connection)
    }

    async fn publish(
        &self,
        publisher: &mut MultiplexedConnection,
        payloads: &[Bytes],
    ) -> Result<(), TransportError> {
        // One pipeline: one write and one round trip for the whole batch, in order.
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&payload[..])
                .ignore();
        }
        pipe.query_async::<()>(publisher).await.map_err(classify)
    }

    async fn append(
        &self,
        publisher: &mut MultiplexedConnection,
        triggers: &[(Arc<str>, Bytes)],
    ) -> Result<Vec<Result<Cursor, String>>, TransportError> {
        let epoch = new_epoch();
        let (size, age, meta) = (
            self.history.size,
            millis(self.history.age),
            millis(META_TTL),
        );
        let mut pipe = redis::pipe();
        for (path, trigger) in triggers {
            let keys = PathKeys::new(&self.prefix, path);
            pipe.cmd("EVALSHA")
                .arg(self.append.get_hash())
                .arg(2)
                .arg(&keys.meta)
                .arg(&keys.stream)
                .arg(&*epoch)
                .arg(size)
                .arg(&trigger[..])
                .arg(age)
                .arg(&keys.channel)
                .arg(meta);
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
        let keys = PathKeys::new(&self.prefix, path);
        type Entries = Vec<(String, Vec<(String, Value)>)>;
        let (position, head, range): ((Option<String>, Option<u64>), Entries, Entries) = self
            .read(async |c| {
                redis::pipe()
                    .cmd("HMGET")
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
                    .arg(format!("{upto}-0"))
                    .query_async(c)
                    .await
            })
            .await?;
        let (Some(current), top) = position else {
            return Ok(Recalled::Lost);
        };
        if current != epoch {
            return Ok(Recalled::Lost);
        }
        let now = redis_now_ms();
        let age = millis(self.history.age);
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
        Ok(Recalled::Entries { first, entries })
    }

    async fn top(&self, path: &str) -> Result<Cursor, TransportError> {
        let keys = PathKeys::new(&self.prefix, path);
        let epoch = new_epoch();
        self.read(async |c| {
            self.top
                .key(&keys.meta)
                .arg(&*epoch)
                .arg(millis(META_TTL))
                .invoke_async::<(String, u64)>(c)
                .await
        })
        .await
        .map(position)
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
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_when_the_hub_is_built() {
        assert!(RedisConfig::new("redis://127.0.0.1:6390").client().is_ok());
        assert!(
            RedisConfig::new("redis://alice:s3cret@cache:7000/2")
                .client()
                .is_ok()
        );
        assert!(RedisConfig::new("redis://:s3cret@cache").client().is_ok());
        assert!(
            RedisConfig::new("rediss://cache.internal:6380")
                .client()
                .is_ok()
        );
        let problem = RedisConfig::new("http://cache")
            .client()
            .expect_err("refused");
        assert!(problem.contains("not a Redis URL"), "{problem}");
        assert!(RedisConfig::new("nope").client().is_err());
        assert!(RedisConfig::new("redis://").client().is_err());
        let mut plain = RedisConfig::new("redis://cache");
        plain.roots = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(
            plain
                .client()
                .expect_err("refused")
                .contains("does not use TLS")
        );
        let mut empty = RedisConfig::new("rediss://cache");
        empty.roots = Some(b"not a certificate".to_vec());
        assert!(empty.client().expect_err("refused").contains("no PEM"));
    }

    #[test]
    fn a_path_s_keys_share_one_hash_tag_and_its_channel_names_it() {
        let keys = PathKeys::new("sync", "/boards/7");
        assert_eq!(keys.meta, "sync:{/boards/7}:m");
        assert_eq!(keys.stream, "sync:{/boards/7}:s");
        assert_eq!(keys.channel, "sync:{/boards/7}:c");
        assert_eq!(path_of("sync", &keys.channel).as_deref(), Some("/boards/7"));
        let odd = PathKeys::new("sync", "/a}{b");
        assert_eq!(path_of("sync", &odd.channel).as_deref(), Some("/a}{b"));
        assert_eq!(path_of("other", &keys.channel), None);
        assert_eq!(path_of("sync", "sync:sync:v2"), None);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://alice:s3cret@cache:7000/2"),
            "redis://alice:***@cache:7000/2"
        );
        assert_eq!(redact("redis://:s3cret@cache"), "redis://:***@cache");
        assert_eq!(redact("rediss://alice@cache"), "rediss://alice@cache");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        let problem = RedisConfig::new("http://alice:s3cret@cache")
            .client()
            .expect_err("refused");
        assert!(!problem.contains("s3cret"), "{problem}");
        let shown = format!("{:?}", RedisConfig::new("redis://alice:s3cret@cache"));
        assert!(!shown.contains("s3cret"), "{shown}");
        let transport = RedisTransport::new(
            &RedisConfig::new("redis://:pw@cache"),
            "c",
            HistoryLimits::default(),
        );
        assert!(!transport.place().contains("pw"));
    }
}
