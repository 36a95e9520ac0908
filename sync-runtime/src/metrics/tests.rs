//! The series a hub keeps, read back from its text as Prometheus would: over the in-memory transport.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use crate::SyncHub;
use crate::test_support::{NOTE, TestClient, token_hub};

/// Every sample of an OpenMetrics text: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().expect("a number")))
        .collect()
}

fn scrape(hub: &SyncHub) -> HashMap<String, f64> {
    samples(&hub.metrics_text().expect("metrics on"))
}

#[tokio::test]
async fn without_metrics_there_is_no_text_nothing_to_register_and_no_observer() {
    let hub = token_hub(&[&NOTE], |b| b);
    assert_eq!(hub.metrics_text(), None);
    let mut registry = prometheus_client::registry::Registry::default();
    assert!(!hub.register_metrics(&mut registry));
    assert_eq!(hub.inner.observers.count(), 0, "nobody is told of fan-outs");

    let with = token_hub(&[&NOTE], |b| b.metrics());
    assert_eq!(with.inner.observers.count(), 1);
}

#[tokio::test]
async fn a_trigger_counts_per_sync_with_its_deliveries_and_fan_out_time_and_users_per_route() {
    let hub = token_hub(&[&NOTE], |b| b.metrics_top_paths(1));
    let before = scrape(&hub);
    assert_eq!(
        before[r#"sync_triggers_total{route="/room/[id]",sync="note"}"#],
        0.0
    );
    assert_eq!(before[r#"sync_users{route="/room/[id]"}"#], 0.0);

    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    let _ann_again = TestClient::connect(&hub, "ann", "/room/1").await;
    let _bea = TestClient::connect(&hub, "bea", "/room/1").await;
    let _cid = TestClient::connect(&hub, "cid", "/room/2").await;
    let _dot = TestClient::connect(&hub, "dot", "/lobby").await;
    let outcome = hub
        .request("/room/1", "note", json!({ "n": 1 }))
        .await
        .expect("sent");
    assert_eq!(outcome.delivered, 3);
    hub.request("/room/2", "note", json!({ "n": 2 }))
        .await
        .expect("sent");
    ann.next_of("reaction").await;

    let after = scrape(&hub);
    let sync = r#"{route="/room/[id]",sync="note"}"#;
    assert_eq!(after[&format!("sync_triggers_total{sync}")], 2.0);
    assert_eq!(after[&format!("sync_recipients_matched_total{sync}")], 4.0);
    assert_eq!(after[&format!("sync_deliveries_total{sync}")], 4.0);
    assert_eq!(after[&format!("sync_recipients_failed_total{sync}")], 0.0);
    assert_eq!(
        after[&format!("sync_fanout_duration_seconds_count{sync}")],
        2.0
    );
    // Users each once however many tabs: ann, bea and cid on the route, dot on a path without syncs.
    assert_eq!(after[r#"sync_users{route="/room/[id]"}"#], 3.0);
    assert_eq!(after[r#"sync_users{route="none"}"#], 1.0);
    assert_eq!(after[r#"sync_connections{transport="websocket"}"#], 5.0);
    // The busiest path only: one per-path series, however many paths.
    assert_eq!(after[r#"sync_path_users{path="/room/1"}"#], 2.0);
    assert_eq!(
        after
            .keys()
            .filter(|k| k.starts_with("sync_path_users"))
            .count(),
        1
    );
    assert_eq!(after["sync_nodes"], 1.0);
    assert!(
        !after.keys().any(|k| k.starts_with("sync_broker_up")),
        "no backplane"
    );
}

#[tokio::test]
async fn an_app_registry_that_outlives_the_hub_does_not_keep_it_alive() {
    let hub = token_hub(&[&NOTE], |b| b.metrics());
    let mut registry = prometheus_client::registry::Registry::default();
    assert!(hub.register_metrics(&mut registry));
    let encode = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("a String");
        samples(&text)
    };
    assert_eq!(encode(&registry)["sync_connections_parked"], 0.0);

    let weak = Arc::downgrade(&hub.inner);
    drop(hub);
    assert!(weak.upgrade().is_none(), "the registry holds no hub");
    let left = encode(&registry);
    assert!(
        !left.contains_key("sync_connections_parked"),
        "a dropped hub's gauges are gone"
    );
    assert_eq!(
        left[r#"sync_triggers_total{route="/room/[id]",sync="note"}"#],
        0.0
    );
}

#[tokio::test]
async fn between_two_nodes_the_receiver_counts_the_trigger_and_both_show_the_backplane_and_lags() {
    use crate::test_support::until;
    use crate::{Backplane, MemoryBus};
    let bus = MemoryBus::new();
    let node = || {
        token_hub(&[&NOTE], |b| {
            b.backplane(Backplane::memory(&bus).heartbeat(std::time::Duration::from_millis(20)))
                .metrics()
        })
    };
    let (a, b) = (node(), node());
    let mut bea = TestClient::connect(&b, "bea", "/room/1").await;
    until("each node hears the other and follows", || {
        let (sa, sb) = (scrape(&a), scrape(&b));
        sa["sync_nodes"] == 2.0
            && sb["sync_nodes"] == 2.0
            && sb["sync_broker_following_paths"] == 1.0
            && sa[r#"sync_broker_up{connection="subscribe"}"#] == 1.0
    })
    .await;

    a.request("/room/1", "note", json!({ "n": 1 }))
        .await
        .expect("published");
    bea.next_of("reaction").await;
    until("a hears its publish back", || {
        scrape(&a)["sync_publish_lag_seconds_count"] == 1.0
    })
    .await;

    let (sa, sb) = (scrape(&a), scrape(&b));
    let sync = r#"{route="/room/[id]",sync="note"}"#;
    // Accepted on a, counted there once; its fan-out ran on both, delivering on b, where the user is.
    assert_eq!(sa[&format!("sync_triggers_total{sync}")], 1.0);
    assert_eq!(sb[&format!("sync_triggers_total{sync}")], 0.0);
    assert_eq!(
        sa[&format!("sync_fanout_duration_seconds_count{sync}")],
        1.0
    );
    assert_eq!(
        sb[&format!("sync_fanout_duration_seconds_count{sync}")],
        1.0
    );
    assert_eq!(sa[&format!("sync_deliveries_total{sync}")], 0.0);
    assert_eq!(sb[&format!("sync_deliveries_total{sync}")], 1.0);
    assert_eq!(sb["sync_receive_lag_seconds_count"], 1.0);
    assert_eq!(sa["sync_receive_lag_seconds_count"], 0.0);
    assert_eq!(sa["sync_broker_published_total"], 1.0);
    assert_eq!(sb["sync_broker_received_total"], 1.0);
    assert_eq!(sa[r#"sync_broker_up{connection="publish"}"#], 1.0);
    assert_eq!(sb[r#"sync_users{route="/room/[id]"}"#], 1.0);
    assert_eq!(
        sa[r#"sync_users{route="/room/[id]"}"#], 0.0,
        "this node's users only"
    );
}
