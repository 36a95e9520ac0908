//! History and cursors on one node (SPEC 10): a connection placed with a position gets every trigger
//! after it, through its own filter, once and in order, or `resync` when the history no longer covers it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::registry::Registration;
use crate::test_support::TestClient;
use crate::{ClientCx, Filter, Reaction, ServerCx, SyncHub, SyncHubBuilder};

#[derive(serde::Deserialize, serde::Serialize)]
struct Note {
    n: u64,
}

fn react(cx: ClientCx<Note, u64>) -> Reaction {
    Reaction::event("note", cx.server)
}

/// `odd` gets only odd numbers; everyone else gets all.
fn filter(cx: ServerCx<Note, String, ()>) -> Filter<u64> {
    if cx.recipient.session.as_str() == "odd" && cx.data.n.is_multiple_of(2) {
        Filter::Skip
    } else {
        Filter::Deliver(cx.data.n)
    }
}

fn build() -> crate::handler::ErasedSync {
    crate::handler::SyncDef::new(react)
        .filter_sync(filter)
        .finish()
}

static NOTE: Registration = Registration {
    route: "/room/[id]",
    name: "note",
    client_file: "src/room/[id]/_sync/note_client.rs",
    server_file: Some("src/room/[id]/_sync/note_server.rs"),
    build,
    data_json: || {
        Some(|data| {
            data.downcast_ref::<Note>()
                .and_then(|n| serde_json::to_string(n).ok())
        })
    },
};

fn hub(
    configure: impl FnOnce(SyncHubBuilder<String, ()>) -> SyncHubBuilder<String, ()>,
) -> SyncHub {
    crate::test_support::token_hub(&[&NOTE], configure)
}

async fn note(hub: &SyncHub, path: &str, n: u64) {
    hub.request(path, "note", json!({ "n": n }))
        .await
        .expect("accepted");
}

/// The payloads of the next `count` reactions, and their cursors. A `resync` among them fails the test
/// (it would otherwise wait for reactions that are not coming).
async fn reactions(client: &mut TestClient, count: usize) -> (Vec<u64>, Vec<String>) {
    let mut payloads = Vec::new();
    let mut cursors = Vec::new();
    while payloads.len() < count {
        let frame: Value = client.next().await;
        match frame["t"].as_str() {
            Some("reaction") => {}
            Some("resync") => panic!("resync after {payloads:?}: the history did not cover it"),
            _ => continue,
        }
        payloads.push(frame["reaction"]["payload"].as_u64().expect("a number"));
        cursors.push(frame["cursor"].as_str().expect("a cursor").to_owned());
    }
    (payloads, cursors)
}

#[tokio::test]
async fn reactions_carry_their_position_and_a_cursor_from_before_gets_what_came_after() {
    let hub = hub(|b| b);
    let start = hub.cursor("/room/1").await.expect("a cursor");
    assert_eq!(start.offset(), 0);
    let mut live = TestClient::connect(&hub, "ann", "/room/1").await;
    live.next_of("located").await;
    for n in 1..=3 {
        note(&hub, "/room/1", n).await;
    }
    let (payloads, cursors) = reactions(&mut live, 3).await;
    assert_eq!(payloads, [1, 2, 3]);
    assert_eq!(
        cursors,
        (1..=3).map(|n| start.at(n).to_string()).collect::<Vec<_>>()
    );
    assert_eq!(hub.cursor("/room/1").await.expect("a cursor"), start.at(3));

    // A page rendered at offset 1 connects now: it gets 2 and 3, then what comes next, once each.
    let mut late = TestClient::from_cursor(&hub, "bob", "/room/1", &start.at(1).to_string()).await;
    assert_eq!(late.next().await["resumed"], false);
    late.next_of("located").await;
    assert_eq!(reactions(&mut late, 2).await.0, [2, 3]);
    note(&hub, "/room/1", 4).await;
    assert_eq!(reactions(&mut late, 1).await.0, [4]);
    assert_eq!(reactions(&mut live, 1).await.0, [4]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!late.has_frame(), "nothing twice");
    assert_eq!(hub.stats().replayed, 2);
}

#[tokio::test]
async fn a_replay_runs_the_recipient_s_own_filter() {
    let hub = hub(|b| b);
    let start = hub.cursor("/room/1").await.expect("a cursor");
    for n in 1..=4 {
        note(&hub, "/room/1", n).await;
    }
    let mut odd = TestClient::from_cursor(&hub, "odd", "/room/1", &start.to_string()).await;
    assert_eq!(reactions(&mut odd, 2).await.0, [1, 3]);
    note(&hub, "/room/1", 5).await;
    assert_eq!(reactions(&mut odd, 1).await.0, [5]);
}

#[tokio::test]
async fn a_position_the_history_no_longer_covers_gets_resync_and_then_live_reactions() {
    let hub = hub(|b| b.history_size(2));
    let start = hub.cursor("/room/1").await.expect("a cursor");
    for n in 1..=5 {
        note(&hub, "/room/1", n).await;
    }
    let mut covered =
        TestClient::from_cursor(&hub, "ann", "/room/1", &start.at(3).to_string()).await;
    assert_eq!(reactions(&mut covered, 2).await.0, [4, 5]);
    let mut behind =
        TestClient::from_cursor(&hub, "bob", "/room/1", &start.at(2).to_string()).await;
    behind.next_of("resync").await;
    let mut other = TestClient::from_cursor(&hub, "cid", "/room/1", "0123456789abcdef:1").await;
    other.next_of("resync").await;
    note(&hub, "/room/1", 6).await;
    for client in [&mut covered, &mut behind, &mut other] {
        assert_eq!(reactions(client, 1).await.0, [6]);
    }
    assert_eq!(hub.stats().history_resyncs, 2);
}

#[tokio::test]
async fn a_nav_with_a_cursor_catches_up_on_the_new_path() {
    let hub = hub(|b| b);
    let start = hub.cursor("/room/2").await.expect("a cursor");
    note(&hub, "/room/2", 1).await;
    let mut client = TestClient::connect(&hub, "ann", "/room/1").await;
    client.next_of("located").await;
    client
        .send(&json!({ "t": "nav", "path": "/room/2", "cursor": start.to_string() }).to_string())
        .await;
    client.next_of("located").await;
    assert_eq!(reactions(&mut client, 1).await.0, [1]);
    client
        .send(r#"{"t":"nav","path":"/room/1","cursor":"nope"}"#)
        .await;
    assert_eq!(client.next_of("error").await["code"], "malformed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_from_a_cursor_while_triggers_run_gets_each_once_in_order() {
    // The history keeps all 400: on a slow machine the triggers may all have run before the first
    // client connects from offset 0, and the default 100 would then rightly answer with `resync`
    // (CI stop 17 failed so).
    let hub = hub(|b| b.history_size(400));
    let start = hub.cursor("/room/1").await.expect("a cursor");
    let firing = tokio::spawn({
        let hub = hub.clone();
        async move {
            for n in 1..=400u64 {
                drop(hub.request("/room/1", "note", json!({ "n": n })));
                if n.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut clients = Vec::new();
    for i in 0..8 {
        let cursor = if i % 2 == 0 {
            start.clone()
        } else {
            hub.cursor("/room/1").await.expect("a cursor")
        };
        let client = TestClient::from_cursor(&hub, "ann", "/room/1", &cursor.to_string()).await;
        clients.push((cursor.offset(), client));
        tokio::task::yield_now().await;
    }
    firing.await.expect("fired");
    for (from, client) in &mut clients {
        let count = usize::try_from(400 - *from).expect("small");
        let expected: Vec<u64> = (*from + 1..=400).collect();
        assert_eq!(reactions(client, count).await.0, expected);
    }
    assert_eq!(hub.stats().history_resyncs, 0);
}

#[tokio::test]
async fn a_connection_its_filter_skips_is_told_its_position_so_its_cursor_stays_covered() {
    // Four kept: a skipped connection hears its position every second trigger.
    let hub = hub(|b| b.history_size(4));
    let mut odd = TestClient::connect(&hub, "odd", "/room/1").await;
    odd.next_of("located").await;
    for n in 1..=10 {
        note(&hub, "/room/1", n * 2).await;
    }
    let mut last = None;
    for _ in 0..5 {
        let frame = odd.next_of("cursor").await;
        assert_eq!(frame["path"], "/room/1");
        last = frame["cursor"].as_str().map(str::to_owned);
    }
    let last = last.expect("a cursor");
    assert_eq!(
        last,
        hub.cursor("/room/1").await.expect("a cursor").to_string()
    );
    // Back from there (on any node), nothing is missing: no resync, though the history holds only the
    // last four of the ten it skipped.
    let mut back = TestClient::from_cursor(&hub, "odd", "/room/1", &last).await;
    note(&hub, "/room/1", 21).await;
    assert_eq!(reactions(&mut back, 1).await.0, [21]);
    assert_eq!(hub.stats().history_resyncs, 0);
}
