//! What the `redis` crate's async cluster client (1.8) does on a real cluster that the Redis Cluster
//! transport relies on, and works around. If this test starts failing, the library changed: revisit
//! `ClusterSubscription` in `src/broker/redis_cluster.rs`.

mod support;

use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use support::cluster::RedisCluster;
use tokio::sync::mpsc::unbounded_channel;
use tokio::time::{Instant, sleep, timeout};

fn bulk(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

/// A failover drops the sharded subscriptions of the slots the old master lost with a `sunsubscribe`
/// push ([channel, count left]) nobody asked for, and the library takes it as final: it never
/// subscribes again, even once its slot map is fresh. The transport therefore ends its subscription on
/// such a push, and subscribes again on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_unsubscribes_sharded_channels_for_good() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let channel = (0..)
        .map(|n| format!("t:{{room{n}}}:c"))
        .find(|c| cluster.owner(c) == 0)
        .expect("a channel on node 0");
    let replica = tokio::task::block_in_place(|| cluster.add_replica(0));
    let (tx, mut pushes) = unbounded_channel::<PushInfo>();
    let mut connection = ClusterClientBuilder::new(cluster.urls())
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .expect("a client")
        .get_async_connection()
        .await
        .expect("a connection");
    connection.ssubscribe(&channel).await.expect("ssubscribe");

    tokio::task::block_in_place(|| cluster.failover(replica));
    let deadline = Instant::now() + Duration::from_secs(5);
    let unsubscribed = loop {
        let push = timeout(deadline - Instant::now(), pushes.recv())
            .await
            .expect("a sunsubscribe in time")
            .expect("the connection is open");
        if push.kind == PushKind::SUnsubscribe {
            break push;
        }
    };
    assert_eq!(bulk(&unsubscribed.data[0]), channel, "{unsubscribed:?}");

    // A keyed command of the slot: MOVED, and the client refreshes its slot map.
    let _: i64 = redis::cmd("EXISTS")
        .arg(&channel)
        .query_async(&mut connection)
        .await
        .expect("exists");
    sleep(Duration::from_millis(300)).await;
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(&channel)
        .arg("after")
        .query_async(&mut connection)
        .await
        .expect("spublish");
    let heard = timeout(Duration::from_secs(1), async {
        while let Some(push) = pushes.recv().await {
            if push.kind == PushKind::SMessage {
                return push;
            }
        }
        unreachable!("the connection is open")
    })
    .await;
    assert!(heard.is_err(), "subscribed again by itself: {heard:?}");
    let count = cluster.cli(replica, &["PUBSUB", "SHARDNUMSUB", &channel]);
    assert_eq!(count, format!("{channel}\n0\n"));
}
