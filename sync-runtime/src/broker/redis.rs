//! The Redis transport (feature `redis`), on the `redis` crate: a multiplexed connection for `PUBLISH`
//! (pipelined, one round trip per batch) and a dedicated RESP2 pub/sub connection for `SUBSCRIBE`.
//!
//! Only connecting, publishing and reading live here; reconnects, numbering and gap detection are the
//! engine's. A Redis Cluster transport would be a sibling of [`RedisTransport`]: `SPUBLISH` and
//! `SSUBSCRIBE` on the channel's shard, and nothing else changes.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ErrorKind, IntoConnectionInfo, RedisError};

use super::{Transport, TransportError};

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
    channel: String,
    place: String,
}

impl RedisTransport {
    pub fn new(config: &RedisConfig, channel: String) -> Self {
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
            channel,
            place: redact(&config.url),
        }
    }

    fn client(&self) -> Result<&Client, TransportError> {
        self.client
            .as_ref()
            .map_err(|e| TransportError::Broken(e.clone()))
    }
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

impl Transport for RedisTransport {
    type Publisher = MultiplexedConnection;
    type Subscription = PubSubStream;

    fn service(&self) -> &'static str {
        "Redis"
    }

    fn place(&self) -> &str {
        &self.place
    }

    async fn connect(&self) -> Result<MultiplexedConnection, TransportError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        self.client()?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unreachable)
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

    async fn subscribe(&self) -> Result<PubSubStream, TransportError> {
        let client = self.client()?;
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            // Returns once Redis confirmed the subscription.
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(TIMEOUT, subscribed).await {
            Ok(result) => result.map_err(unreachable),
            Err(_) => Err(TransportError::Broken(format!(
                "no subscription within {TIMEOUT:?}"
            ))),
        }
    }

    async fn next(&self, subscription: &mut PubSubStream) -> Option<Bytes> {
        let message = subscription.next().await?;
        Some(Bytes::copy_from_slice(message.get_payload_bytes()))
    }
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
        let transport = RedisTransport::new(&RedisConfig::new("redis://:pw@cache"), "c".to_owned());
        assert!(!transport.place().contains("pw"));
    }
}
