//! The Redis Cluster transport (feature `redis`), on the `redis` crate's async cluster client: the same
//! keys, scripts and history as the standalone one ([`super::redis`]), with the path's channel sharded.
//!
//! * A path's two keys and its channel share a hash tag, so they live in one slot: the append script
//!   runs on the slot's master and publishes there with `SPUBLISH`, which a script may do on a channel
//!   of its own slot.
//! * The publisher is one cluster connection (multiplexed, routed by slot). A path's triggers of one
//!   batch are appended one after the other, in order; different paths' go concurrently.
//! * Notes and heartbeats use plain `PUBLISH`/`SUBSCRIBE` on the deployment's channel: they live on the
//!   master of that channel's slot, and Redis Cluster forwards them to every node.
//! * The subscription is a RESP3 cluster connection of its own, whose pushes come through a bounded
//!   queue. It follows a path with one `SSUBSCRIBE` on the master of the path's slot. It ends (the
//!   engine subscribes again on a fresh connection, with a fresh slot map, and catches every path up)
//!   when the queue overflows, a node's connection drops, or the cluster drops a subscription by itself
//!   (a failover or a resharding moves the slot: Redis says `sunsubscribe`, and the `redis` crate does
//!   not subscribe again).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::future::join_all;
use redis::aio::{AsyncPushSender, SendError};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, ProtocolVersion, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use super::redis::{
    Reader, TIMEOUT, check_url, classify, install_crypto_provider, node_channel, path_of,
    publish_pipeline, recalled, redact, since_pipeline, unreachable,
};
use super::redis_scripts::{Lua, append_args, append_script, position, read_top, top_script};
use super::{Message, Transport, TransportError};
use crate::history::{Cursor, HistoryLimits, Recalled, new_epoch};

/// How often the cluster client retries a request itself (a moved slot, a node being failed over).
const RETRIES: u32 = 5;

/// A Redis Cluster backplane's seed nodes and the roots to trust for TLS.
#[derive(Clone)]
pub(crate) struct RedisClusterConfig {
    urls: Vec<String>,
    /// PEM certificates trusted instead of the system's roots, for `rediss://`.
    pub roots: Option<Vec<u8>>,
}

impl fmt::Debug for RedisClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterConfig")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("roots", &self.roots.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

impl RedisClusterConfig {
    pub fn new(urls: Vec<String>) -> Self {
        RedisClusterConfig { urls, roots: None }
    }

    /// A client for these seed nodes (with a push sender: RESP3), or what is wrong with them.
    fn client(&self, pushes: Option<PushQueue>) -> Result<ClusterClient, String> {
        if self.urls.is_empty() {
            return Err("a Redis Cluster backplane needs at least one seed node URL".to_owned());
        }
        let infos = self
            .urls
            .iter()
            .map(|url| check_url(url, self.roots.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((url, _)) = self
            .urls
            .iter()
            .zip(&infos)
            .find(|(_, info)| info.redis_settings().db() != 0)
        {
            return Err(format!(
                "`{}` names a database: a Redis Cluster has only database 0",
                redact(url)
            ));
        }
        // The crate's own retries (a moved slot, a node being failed over) wait at least 1.28 s each by
        // default, longer than a path's history lasts at a hundred triggers a second: a few quick ones
        // here (10 ms to 25-400 ms, jittered), and the engine's own backoff beyond.
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(400)
            .retry_wait_formula(25, 2);
        if let Some(pem) = &self.roots {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        if let Some(pushes) = pushes {
            builder = builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(pushes);
        }
        builder
            .build()
            .map_err(|e| format!("the Redis Cluster at {} cannot be used: {e}", self.place()))
    }

    /// What makes this configuration unusable, for the hub's `build`.
    pub fn problem(&self) -> Option<String> {
        self.client(None).err()
    }

    /// The seed nodes, for the logs (no secrets).
    fn place(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        urls.join(", ")
    }
}

/// Where the subscription's pushes go: a bounded queue. A push that finds it full is dropped, and the
/// subscription ends at its next read.
struct PushQueue {
    tx: mpsc::Sender<PushInfo>,
    overflow: Arc<AtomicBool>,
}

impl AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        self.tx.try_send(info).map_err(|_| {
            self.overflow.store(true, Ordering::Release);
            SendError
        })
    }
}

/// A Redis Cluster.
pub(crate) struct RedisClusterTransport {
    config: RedisClusterConfig,
    prefix: String,
    channel: String,
    place: String,
    history: HistoryLimits,
    /// Pushes waiting for the subscriber.
    queue: usize,
    append: Lua,
    top: Lua,
    reader: Reader<ClusterConnection>,
}

impl RedisClusterTransport {
    pub fn new(
        config: &RedisClusterConfig,
        prefix: &str,
        history: HistoryLimits,
        queue: usize,
    ) -> Self {
        if config.urls.iter().any(|url| url.starts_with("rediss://")) {
            install_crypto_provider();
        }
        RedisClusterTransport {
            config: config.clone(),
            prefix: prefix.to_owned(),
            channel: node_channel(prefix),
            place: config.place(),
            history,
            queue: queue.max(1),
            append: append_script("SPUBLISH"),
            top: top_script(),
            reader: Reader::new(),
        }
    }

    /// A cluster connection (RESP3, its pushes to `pushes`, if given): the slot map is read afresh.
    async fn open(&self, pushes: Option<PushQueue>) -> Result<ClusterConnection, TransportError> {
        let client = self.config.client(pushes).map_err(TransportError::Broken)?;
        match tokio::time::timeout(TIMEOUT * 2, client.get_async_connection()).await {
            Ok(connection) => connection.map_err(unreachable),
            Err(_) => Err(TransportError::Broken(format!(
                "no connection to the cluster within {:?}",
                TIMEOUT * 2
            ))),
        }
    }
}

/// A refusal by the server, which leaves the connection usable.
fn refused(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// A subscription: its connection, the queue of its pushes, and the channels left whose confirmation
/// has not come through the queue yet.
pub(crate) struct ClusterSubscription {
    connection: ClusterConnection,
    pushes: mpsc::Receiver<PushInfo>,
    overflow: Arc<AtomicBool>,
    leaving: HashMap<Vec<u8>, usize>,
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl Transport for RedisClusterTransport {
    type Publisher = ClusterConnection;
    type Subscription = ClusterSubscription;

    fn service(&self) -> &'static str {
        "Redis Cluster"
    }

    fn place(&self) -> &str {
        &self.place
    }

    async fn connect(&self) -> Result<ClusterConnection, TransportError> {
        // The script is loaded where it is missing, when it is missing: loading it on every master now
        // would fail while any one of them is down.
        self.open(None).await
    }

    async fn publish(
        &self,
        publisher: &mut ClusterConnection,
        payloads: &[Bytes],
    ) -> Result<(), TransportError> {
        // One channel, one slot: one pipeline to its master.
        publish_pipeline(&self.channel, payloads)
            .query_async::<()>(publisher)
            .await
            .map_err(classify)
    }

    async fn append(
        &self,
        publisher: &mut ClusterConnection,
        triggers: &[(Arc<str>, Bytes)],
    ) -> Result<Vec<Result<Cursor, String>>, TransportError> {
        let epoch = new_epoch();
        // Each path's triggers, in their order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, (path, _)) in triggers.iter().enumerate() {
            let group = *group_of.entry(path).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(i);
        }
        let runs = groups.into_iter().map(|group| {
            let mut connection = publisher.clone();
            let epoch = &epoch;
            async move {
                let mut done = Vec::with_capacity(group.len());
                // After a broken connection, the path's later triggers are not tried: they would be
                // appended out of their order (or fail the same way).
                let mut broken: Option<String> = None;
                for i in group {
                    if let Some(why) = &broken {
                        done.push((i, Err(why.clone()), true));
                        continue;
                    }
                    let (path, trigger) = &triggers[i];
                    // A master that does not have the script (restarted, flushed, or a replica promoted
                    // since) runs it by its text.
                    let appended = self.append.run::<(String, u64)>(&mut connection, |cmd| {
                        append_args(cmd, &self.prefix, path, epoch, &self.history, trigger);
                    });
                    match appended.await {
                        Ok(at) => done.push((i, Ok(position(at)), false)),
                        Err(e) => {
                            let is_broken = !refused(&e);
                            if is_broken {
                                broken = Some(e.to_string());
                            }
                            done.push((i, Err(e.to_string()), is_broken));
                        }
                    }
                }
                done
            }
        });
        let mut results: Vec<Option<Result<Cursor, String>>> = vec![None; triggers.len()];
        let mut all_broken = true;
        let mut first_break = None;
        for (i, result, is_broken) in join_all(runs).await.into_iter().flatten() {
            all_broken &= is_broken;
            if is_broken && first_break.is_none() {
                first_break = result.clone().err();
            }
            results[i] = Some(result);
        }
        // Nothing went through: the connection is taken for broken, and a fresh one is opened.
        if all_broken && let Some(why) = first_break {
            return Err(TransportError::Broken(why));
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("not appended".to_owned())))
            .collect())
    }

    async fn since(
        &self,
        path: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Recalled<Bytes>, TransportError> {
        // All in the path's slot: the cluster client sends the pipeline to its master.
        let pipe = &since_pipeline(&self.prefix, path, after, upto);
        let reply = self
            .reader
            .read(
                || self.open(None),
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        Ok(recalled(reply, epoch, self.history.age))
    }

    async fn top(&self, path: &str) -> Result<Cursor, TransportError> {
        self.reader
            .read(
                || self.open(None),
                |mut c| async move { read_top(&self.top, &mut c, &self.prefix, path).await },
            )
            .await
    }

    async fn subscribe(&self) -> Result<ClusterSubscription, TransportError> {
        let (tx, pushes) = mpsc::channel(self.queue);
        let overflow = Arc::new(AtomicBool::new(false));
        let queue = PushQueue {
            tx,
            overflow: overflow.clone(),
        };
        let mut connection = self.open(Some(queue)).await?;
        // Returns once the channel's master confirmed it.
        match tokio::time::timeout(TIMEOUT, connection.subscribe(&self.channel)).await {
            Ok(result) => result.map_err(unreachable)?,
            Err(_) => {
                return Err(TransportError::Broken(format!(
                    "no subscription within {TIMEOUT:?}"
                )));
            }
        }
        Ok(ClusterSubscription {
            connection,
            pushes,
            overflow,
            leaving: HashMap::new(),
        })
    }

    async fn follow(
        &self,
        subscription: &mut ClusterSubscription,
        paths: &[Arc<str>],
        on: bool,
    ) -> Result<(), TransportError> {
        let channels: Vec<String> = paths
            .iter()
            .map(|path| super::redis::PathKeys::new(&self.prefix, path).channel)
            .collect();
        if !on {
            for channel in &channels {
                *subscription
                    .leaving
                    .entry(channel.as_bytes().to_vec())
                    .or_default() += 1;
            }
        }
        // One channel per command: each goes to the master of its own slot.
        let runs = channels.iter().map(|channel| {
            let mut connection = subscription.connection.clone();
            async move {
                if on {
                    connection.ssubscribe(channel).await
                } else {
                    connection.sunsubscribe(channel).await
                }
            }
        });
        match tokio::time::timeout(TIMEOUT, join_all(runs)).await {
            Ok(results) => results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(drop)
                .map_err(unreachable),
            Err(_) => Err(TransportError::Broken(format!(
                "no confirmation within {TIMEOUT:?}"
            ))),
        }
    }

    async fn next(&self, subscription: &mut ClusterSubscription) -> Option<Message> {
        loop {
            if subscription.overflow.load(Ordering::Acquire) {
                tracing::warn!(target: "sync_runtime::backplane", place = %self.place, "the subscription's queue overflowed; subscribing again");
                return None;
            }
            let push = subscription.pushes.recv().await?;
            let channel = push.data.first().and_then(bytes);
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    let (Some(channel), Some(payload)) =
                        (channel, push.data.get(1).and_then(bytes))
                    else {
                        continue;
                    };
                    let payload = Bytes::copy_from_slice(payload);
                    if push.kind == PushKind::Message && channel == self.channel.as_bytes() {
                        return Some(Message::Node(payload));
                    }
                    if push.kind == PushKind::SMessage
                        && std::str::from_utf8(channel)
                            .is_ok_and(|c| path_of(&self.prefix, c).is_some())
                    {
                        return Some(Message::Path(payload));
                    }
                }
                PushKind::Disconnection => {
                    tracing::debug!(target: "sync_runtime::backplane", place = %self.place, "a cluster node's connection dropped; subscribing again");
                    return None;
                }
                PushKind::SUnsubscribe | PushKind::Unsubscribe => {
                    let Some(channel) = channel else { continue };
                    if let Some(left) = subscription.leaving.get_mut(channel) {
                        *left -= 1;
                        if *left == 0 {
                            subscription.leaving.remove(channel);
                        }
                        continue;
                    }
                    tracing::info!(target: "sync_runtime::backplane", place = %self.place, channel = %String::from_utf8_lossy(channel), "the cluster dropped a subscription (its slot moved); subscribing again");
                    return None;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_urls_are_checked_when_the_hub_is_built() {
        let config =
            |urls: &[&str]| RedisClusterConfig::new(urls.iter().map(|u| (*u).to_owned()).collect());
        assert_eq!(
            config(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).problem(),
            None
        );
        assert_eq!(
            config(&["redis://app:s3cret@10.0.0.1:7000"]).problem(),
            None
        );
        assert_eq!(config(&["rediss://cache.internal:7000"]).problem(), None);
        let problem = config(&[]).problem().expect("no seeds");
        assert!(problem.contains("at least one"), "{problem}");
        let problem = config(&["redis://10.0.0.1:7000", "http://:s3cret@x"])
            .problem()
            .expect("not a Redis URL");
        assert!(
            problem.contains("not a Redis URL") && !problem.contains("s3cret"),
            "{problem}"
        );
        let problem = config(&["redis://:a@10.0.0.1:7000", "redis://:b@10.0.0.2:7000"])
            .problem()
            .expect("two passwords");
        assert!(
            !problem.contains(":a@") && !problem.contains(":b@"),
            "{problem}"
        );
        let problem = config(&["redis://10.0.0.1:7000/2"])
            .problem()
            .expect("a database");
        assert!(problem.contains("only database 0"), "{problem}");
        let mut plain = config(&["redis://10.0.0.1:7000"]);
        plain.roots = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(
            plain
                .problem()
                .expect("refused")
                .contains("does not use TLS")
        );
        let shown = format!("{:?}", config(&["redis://alice:s3cret@cache"]));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
