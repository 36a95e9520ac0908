//! The feed's life: it runs while someone live is on the admin path, stops when nobody is, and starts
//! again for the next watcher.

use std::sync::atomic::Ordering;

use crate::test_support::{TestClient, token_hub, until};

#[tokio::test]
async fn the_feed_stops_when_nobody_watches_and_starts_again_for_the_next_watcher() {
    let hub = token_hub(&[], |b| b.admin(|name: &String| name == "root"));
    let admin = hub.inner.admin.as_ref().expect("the admin page is on");
    assert!(
        !admin.feeding.load(Ordering::Acquire),
        "no feed before a watcher"
    );

    let mut root = TestClient::connect(&hub, "root", "/_sync/admin").await;
    let first = root.next_of("reaction").await;
    assert_eq!(
        (first["name"].as_str(), first.get("cursor")),
        (Some("live"), None)
    );
    assert!(admin.feeding.load(Ordering::Acquire));

    // Its socket drops: parked, still on the path, but nobody live watches.
    root.cut();
    root.until_parked().await;
    until("the feed stopped", || {
        !admin.feeding.load(Ordering::Acquire)
    })
    .await;

    let mut again = TestClient::connect(&hub, "root", "/_sync/admin").await;
    let next = again.next_of("reaction").await;
    assert_eq!(next["reaction"]["name"], "snapshot");
    assert!(admin.feeding.load(Ordering::Acquire));
    assert!(!root.has_frame(), "the parked connection got no snapshot");
}

#[tokio::test]
async fn with_a_backplane_the_snapshot_shows_the_other_nodes_and_the_admin_path_stays_local() {
    let bus = crate::MemoryBus::new();
    let node = || {
        token_hub(&[], |b| {
            b.backplane(
                crate::Backplane::memory(&bus).heartbeat(std::time::Duration::from_millis(20)),
            )
            .admin(|name: &String| name == "root")
        })
    };
    let (a, b) = (node(), node());
    let mut root = TestClient::connect(&a, "root", "/_sync/admin").await;
    let mut other_nodes = Vec::new();
    for _ in 0..20 {
        let snapshot = root.next_of("reaction").await["reaction"]["payload"].clone();
        let broker = &snapshot["broker"];
        assert!(broker.is_object(), "a backplane: {snapshot}");
        other_nodes = broker["nodes"].as_array().cloned().unwrap_or_default();
        if !other_nodes.is_empty() {
            break;
        }
    }
    assert_eq!(other_nodes.len(), 1, "a hears b: {other_nodes:?}");
    assert_eq!(other_nodes[0]["node"], format!("{:016x}", b.inner.node));
    let broker = a.inner.broker.as_ref().expect("a backplane");
    assert!(
        !broker.follows("/_sync/admin"),
        "the admin path's snapshots never cross nodes: no channel"
    );
    assert!(
        b.presence("/_sync/admin").is_empty(),
        "b does not learn who watches a"
    );
}
