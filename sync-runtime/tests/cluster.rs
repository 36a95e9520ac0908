//! The Redis Cluster backplane (`Backplane::redis_cluster`) against a real three-master cluster on
//! loopback: hubs in this process, one node each, with clients over real sockets. Each test starts and
//! stops its own cluster (`support::cluster`).

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use support::cluster::RedisCluster;
use support::proxy::Proxy;
use sync_runtime::__private::{DataToJson, ErasedSync, Registration, SyncDef};
use sync_runtime::client::{ConnectOptions, ReceivedReaction, SyncClient};
use sync_runtime::{Backplane, ClientCx, Reaction, SyncHub};
use tokio::time::{Instant, sleep, timeout};

/// How long anything that should happen may take.
const WAIT: Duration = Duration::from_secs(15);

#[derive(Serialize, Deserialize)]
struct Note {
    from: String,
    n: u64,
}

fn react(cx: ClientCx<Note, ()>) -> Reaction {
    Reaction::event("note", json!({ "from": cx.data.from, "n": cx.data.n }))
}

fn build() -> ErasedSync {
    SyncDef::new(react).finish()
}

fn data_json() -> Option<DataToJson> {
    Some(|d| serde_json::to_string(d.downcast_ref::<Note>()?).ok())
}

sync_runtime::__private::inventory::submit! {
    Registration {
        route: "/room/[id]",
        name: "note",
        client_file: "src/room/[id]/_sync/note_client.rs",
        server_file: None,
        build,
        data_json,
    }
}

/// A hub on the cluster, serving on a free loopback port.
struct Node {
    hub: SyncHub,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(cluster: &RedisCluster) -> Node {
        let hub = SyncHub::builder()
            .guests()
            .backplane(
                Backplane::redis_cluster(cluster.urls()).heartbeat(Duration::from_millis(200)),
            )
            .build()
            .expect("a hub on the cluster");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let router = hub.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let node = Node { hub, addr, server };
        node.until("subscribed", |s| s.subscribed && s.publishing)
            .await;
        node
    }

    async fn client(&self, path: &str) -> SyncClient {
        connect(self.addr, path, false).await
    }

    /// Waits until the backplane's status satisfies `ready`.
    async fn until(&self, what: &str, ready: impl Fn(&sync_runtime::BackplaneStatus) -> bool) {
        let start = Instant::now();
        loop {
            let status = self.hub.backplane_status().expect("a backplane");
            if ready(&status) {
                return;
            }
            assert!(start.elapsed() < WAIT, "not {what} in time: {status:?}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Triggers `note` on `path` as `from`, `n`; whether the cluster took it.
    async fn send(&self, path: &str, from: &str, n: u64) -> bool {
        let pending = self
            .hub
            .request(path, "note", json!({ "from": from, "n": n }));
        matches!(timeout(WAIT, pending).await, Ok(Ok(_)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn connect(addr: SocketAddr, path: &str, reconnect: bool) -> SyncClient {
    let mut options = ConnectOptions::new().path(path);
    if reconnect {
        options = options.reconnect();
    }
    timeout(
        WAIT,
        SyncClient::connect(&format!("ws://{addr}/_sync/ws"), options),
    )
    .await
    .expect("connected in time")
    .expect("connected")
}

/// `(from, n)` of a note reaction.
fn note(reaction: &ReceivedReaction) -> (String, u64) {
    let payload = &reaction.reaction["payload"];
    (
        payload["from"].as_str().expect("from").to_owned(),
        payload["n"].as_u64().expect("n"),
    )
}

/// The next `count` reactions of `client`, each with its history offset.
async fn take(client: &mut SyncClient, count: usize) -> Vec<((String, u64), u64)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let reaction = timeout(WAIT, client.next_reaction())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} reactions in time", got.len()))
            .expect("the client is open");
        let offset = reaction
            .cursor
            .as_deref()
            .and_then(|c| c.rsplit_once(':'))
            .and_then(|(_, o)| o.parse().ok())
            .expect("a cursor");
        got.push((note(&reaction), offset));
    }
    got
}

/// Paths whose history lives on each master: `paths[i]` on node `i` of the cluster.
fn paths_per_master(cluster: &RedisCluster) -> Vec<String> {
    let mut paths = vec![String::new(); 3];
    for n in 0.. {
        let path = format!("/room/{n}");
        let owner = cluster.owner(&format!("sync:{{{path}}}:m"));
        if paths[owner].is_empty() {
            paths[owner] = path;
        }
        if paths.iter().all(|p| !p.is_empty()) {
            return paths;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn seed_urls_that_cannot_work_are_reported_when_the_hub_is_built() {
    for seeds in [
        &["http://10.0.0.1:7000"][..],
        &[],
        &["redis://10.0.0.1:7000/3"],
    ] {
        let built = SyncHub::builder()
            .guests()
            .backplane(Backplane::redis_cluster(seeds))
            .build();
        assert!(built.is_err(), "{seeds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_s_triggers_reach_every_node_once_in_one_order() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let nodes = [
        Node::start(&cluster).await,
        Node::start(&cluster).await,
        Node::start(&cluster).await,
    ];
    let path = "/room/lobby";
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.client(path).await);
        clients.push(node.client(path).await);
    }
    for node in &nodes {
        node.until("following", |s| s.following == 1).await;
    }
    // Each node sends 20 triggers, the three at once.
    const EACH: u64 = 20;
    let sent = nodes.iter().enumerate().map(|(i, node)| async move {
        for n in 1..=EACH {
            assert!(
                node.send(path, &format!("node{i}"), n).await,
                "node{i} #{n}"
            );
        }
    });
    futures_util::future::join_all(sent).await;
    let total = 3 * EACH as usize;
    let mut first: Option<Vec<((String, u64), u64)>> = None;
    for client in &mut clients {
        let got = take(client, total).await;
        let distinct: HashSet<&(String, u64)> = got.iter().map(|(note, _)| note).collect();
        assert_eq!(distinct.len(), total, "each trigger exactly once");
        let offsets: Vec<u64> = got.iter().map(|(_, o)| *o).collect();
        assert_eq!(offsets, (1..=total as u64).collect::<Vec<_>>());
        for i in 0..3 {
            let from: Vec<u64> = got
                .iter()
                .filter(|((f, _), _)| *f == format!("node{i}"))
                .map(|((_, n), _)| *n)
                .collect();
            assert_eq!(from, (1..=EACH).collect::<Vec<_>>(), "node{i}'s own order");
        }
        match &first {
            None => first = Some(got),
            Some(first) => assert_eq!(&got, first, "one order on every client"),
        }
        assert_eq!(client.resyncs(), 0);
    }
    for node in &nodes {
        let status = node.hub.backplane_status().expect("a backplane");
        assert_eq!(status.received, total as u64, "{status:?}");
        assert_eq!((status.published, status.dropped), (EACH, 0), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_without_a_gap() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (a, b) = (Node::start(&cluster).await, Node::start(&cluster).await);
    let path = "/room/moving";
    let proxy = Proxy::start(a.addr).await;
    let mut client = connect(proxy.addr(), path, true).await;
    a.until("following", |s| s.following == 1).await;
    // B publishes a steady stream; it has no users on the path until the client moves there.
    const TOTAL: u64 = 150;
    const BEFORE: usize = 40;
    let b_addr = b.addr;
    let publisher = tokio::spawn(async move {
        for n in 1..=TOTAL {
            assert!(b.send(path, "b", n).await, "#{n}");
            sleep(Duration::from_millis(5)).await;
        }
        b
    });
    let mut got = take(&mut client, BEFORE).await;
    // Cut without a close: the client reconnects, through the proxy, to B, with its last cursor.
    proxy.switch(b_addr);
    proxy.cut();
    got.extend(take(&mut client, TOTAL as usize - BEFORE).await);
    let b = publisher.await.expect("B published");
    let ns: Vec<u64> = got.iter().map(|((_, n), _)| *n).collect();
    assert_eq!(ns, (1..=TOTAL).collect::<Vec<_>>(), "each once, in order");
    let offsets: Vec<u64> = got.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, ns);
    assert_eq!(client.resyncs(), 0);
    assert_eq!(client.reconnects(), 1);
    b.until("following", |s| s.following == 1).await;
    let status = b.hub.backplane_status().expect("a backplane");
    eprintln!(
        "resumed on B after {BEFORE} of {TOTAL}; B received {} of them live",
        status.received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_triggers_of_its_own_paths() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // One path on each master.
    let paths = paths_per_master(&cluster);
    let (x, y) = (Node::start(&cluster).await, Node::start(&cluster).await);
    let mut on_p = x.client(&paths[0]).await;
    let mut on_q = y.client(&paths[1]).await;
    let mut on_r = y.client(&paths[2]).await;
    x.until("following", |s| s.following == 1).await;
    y.until("following", |s| s.following == 2).await;
    let counts = [5, 7, 9];
    for n in 1..=9 {
        for (path, count) in paths.iter().zip(counts) {
            if n <= count {
                assert!(y.send(path, "y", n).await);
            }
        }
    }
    assert_eq!(take(&mut on_p, 5).await.len(), 5);
    assert_eq!(take(&mut on_q, 7).await.len(), 7);
    assert_eq!(take(&mut on_r, 9).await.len(), 9);
    // Anything stray would have come by now.
    sleep(Duration::from_millis(500)).await;
    let (sx, sy) = (
        x.hub.backplane_status().expect("a backplane"),
        y.hub.backplane_status().expect("a backplane"),
    );
    assert_eq!((sx.received, sx.following), (5, 1), "{sx:?}");
    assert_eq!((sy.received, sy.following), (16, 2), "{sy:?}");
    assert_eq!((sx.published, sy.published), (0, 21));
}

/// Every reaction until none came for `quiet`: `(n, epoch)` each.
async fn drain(client: &mut SyncClient, quiet: Duration) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while let Ok(Some(reaction)) = timeout(quiet, client.next_reaction()).await {
        let epoch = reaction.cursor.as_deref().and_then(|c| c.rsplit_once(':'));
        let epoch = epoch.map(|(e, _)| e.to_owned()).expect("a cursor");
        got.push((note(&reaction).1, epoch));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_costs_a_resync_never_a_silent_loss() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    // The path lives on a master that does not hold the deployment's channel (heartbeats go on).
    let channel_home = cluster.owner("sync:sync:v2");
    let victim = (channel_home + 1) % 3;
    let path = paths_per_master(&cluster)[victim].clone();
    let (a, b) = (Node::start(&cluster).await, Node::start(&cluster).await);
    let mut clients = [a.client(&path).await, b.client(&path).await];
    a.until("following", |s| s.following == 1).await;
    b.until("following", |s| s.following == 1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (stop, path) = (stop.clone(), path.clone());
        async move {
            let (mut accepted, mut refused) = (Vec::new(), 0);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                if a.send(&path, "a", n).await {
                    accepted.push(n);
                } else {
                    refused += 1;
                }
                sleep(Duration::from_millis(10)).await;
            }
            (accepted, refused, a)
        }
    });
    sleep(Duration::from_millis(300)).await;
    // Killed, and back without its data (no persistence): the path's history starts over.
    tokio::task::block_in_place(|| {
        cluster.stop(victim);
        std::thread::sleep(Duration::from_millis(500));
        cluster.restart(victim);
    });
    let back = Instant::now();
    b.until("subscribed", |s| s.subscribed && s.following == 1)
        .await;
    sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (accepted, refused, a) = publisher.await.expect("the publisher ran");
    eprintln!(
        "accepted {}, refused {refused}; back after {:?}",
        accepted.len(),
        back.elapsed()
    );
    for (i, client) in clients.iter_mut().enumerate() {
        let got = drain(client, Duration::from_secs(1)).await;
        let ns: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        let distinct: HashSet<u64> = ns.iter().copied().collect();
        assert_eq!(distinct.len(), ns.len(), "client {i}: a trigger twice");
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ns, "client {i}: out of order");
        assert!(
            distinct.iter().all(|n| accepted.contains(n)),
            "client {i}: a refused trigger arrived"
        );
        let missing: Vec<u64> = accepted
            .iter()
            .copied()
            .filter(|n| !distinct.contains(n))
            .collect();
        let epochs: HashSet<&str> = got.iter().map(|(_, e)| e.as_str()).collect();
        eprintln!(
            "client {i}: received {}, missing {}, epochs {}, resyncs {}",
            ns.len(),
            missing.len(),
            epochs.len(),
            client.resyncs()
        );
        // A new history: the client was told, whatever it missed.
        assert_eq!(epochs.len(), 2, "client {i}: {got:?}");
        assert!(client.resyncs() >= 1, "client {i}: missed {missing:?}");
        // What was accepted once the cluster was whole again all arrived.
        let tail = &accepted[accepted.len().saturating_sub(20)..];
        assert!(
            tail.iter().all(|n| distinct.contains(n)),
            "client {i}: missed {missing:?} of the last {tail:?}"
        );
    }
    drop(a);
}

/// Each way, the promoted node has never run the scripts (a server's script cache is not replicated)
/// and the nodes' slot maps are stale for a moment. CI caught both: a position read that found no
/// script where the crate had loaded it (`NoScript`, then a resync), and the cluster client's own retry
/// waiting 1.28 s, longer than the path's history of 100 lasts at 100 triggers a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_moves_a_path_without_a_gap() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let path = paths_per_master(&cluster)[0].clone();
    let replica = tokio::task::block_in_place(|| cluster.add_replica(0));
    let (a, b) = (Node::start(&cluster).await, Node::start(&cluster).await);
    let b = std::sync::Arc::new(b);
    let mut client = a.client(&path).await;
    a.until("following", |s| s.following == 1).await;
    const TOTAL: u64 = 200;
    // There, and back to the first master.
    for (round, promoted) in [replica, 0].into_iter().enumerate() {
        let first = TOTAL * round as u64 + 1;
        let publisher = tokio::spawn({
            let (path, b) = (path.clone(), b.clone());
            async move {
                let mut refused = Vec::new();
                for n in first..first + TOTAL {
                    if !b.send(&path, "b", n).await {
                        refused.push(n);
                    }
                    sleep(Duration::from_millis(10)).await;
                }
                refused
            }
        });
        sleep(Duration::from_millis(300)).await;
        // A manual failover: the replica has everything; the old master drops the shard subscriptions
        // of its slots with a `sunsubscribe` the node did not ask for.
        tokio::task::block_in_place(|| cluster.failover(promoted));
        let refused = publisher.await.expect("the publisher ran");
        let accepted: Vec<u64> = (first..first + TOTAL)
            .filter(|n| !refused.contains(n))
            .collect();
        let got = take(&mut client, accepted.len()).await;
        let ns: Vec<u64> = got.iter().map(|((_, n), _)| *n).collect();
        assert_eq!(
            ns, accepted,
            "failover {round}: each accepted trigger once, in order"
        );
        assert_eq!(client.resyncs(), 0, "failover {round}");
        eprintln!(
            "failover {round}: {} accepted, {} refused during it, a re-followed the path",
            accepted.len(),
            refused.len()
        );
        a.until("following", |s| s.subscribed && s.following == 1)
            .await;
    }
}
