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
