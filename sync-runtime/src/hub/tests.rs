//! The hub, the fan-out and the lifecycle over an in-memory transport (`crate::test_support`) and the broker's
//! `Inbox`, without a socket. The socket-level suites in `tests/fixture` prove the wiring.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::broker::{Inbox, WireTrigger};
use crate::registry::Registration;
use crate::test_support::{TestClient, until};
use crate::{ClientCx, Filter, Reaction, ServerCx, SyncHub, SyncHubBuilder};

#[derive(serde::Deserialize, serde::Serialize)]
struct Note {
    n: u64,
}

fn react_note(cx: ClientCx<Note, ()>) -> Reaction {
    Reaction::event("note", cx.data.n)
}

fn build_note() -> crate::handler::ErasedSync {
    crate::handler::SyncDef::new(react_note).finish()
}

static NOTE: Registration = Registration {
    route: "/room/[id]",
    name: "note",
    client_file: "src/room/[id]/_sync/note_client.rs",
    server_file: None,
    build: build_note,
    data_json: || None,
};

/// Released by the test that holds the `slow` sync's filters.
static RELEASE: Notify = Notify::const_new();

fn react_slow(cx: ClientCx<Note, u64>) -> Reaction {
    Reaction::event("slow", cx.server)
}

async fn filter_slow(cx: ServerCx<Note, String, ()>) -> Filter<u64> {
    RELEASE.notified().await;
    Filter::Deliver(cx.data.n)
}

fn build_slow() -> crate::handler::ErasedSync {
    crate::handler::SyncDef::new(react_slow)
        .filter_async(filter_slow)
        .finish()
}

static SLOW: Registration = Registration {
    route: "/room/[id]",
    name: "slow",
    client_file: "src/room/[id]/_sync/slow_client.rs",
    server_file: Some("src/room/[id]/_sync/slow_server.rs"),
    build: build_slow,
    data_json: || None,
};

/// A hub whose tokens are user names, with `note` and `slow` on `/room/[id]`.
fn hub(
    configure: impl FnOnce(SyncHubBuilder<String, ()>) -> SyncHubBuilder<String, ()>,
) -> SyncHub {
    crate::test_support::token_hub(&[&NOTE, &SLOW], configure)
}

#[tokio::test]
async fn a_trigger_reaches_everyone_on_the_path_and_nobody_elsewhere() {
    let hub = hub(|b| b);
    let mut here = TestClient::connect(&hub, "ann", "/room/1").await;
    let mut also = TestClient::connect(&hub, "bob", "/room/1").await;
    let mut elsewhere = TestClient::connect(&hub, "cid", "/room/2").await;
    for client in [&mut here, &mut also, &mut elsewhere] {
        client.next_of("located").await;
    }
    let outcome = hub
        .request("/room/1", "note", json!({ "n": 7 }))
        .await
        .expect("accepted");
    assert_eq!((outcome.matched, outcome.delivered), (2, 2));
    for client in [&mut here, &mut also] {
        let reaction = client.next_of("reaction").await;
        assert_eq!(reaction["reaction"]["payload"], 7);
        assert_eq!(reaction["path"], "/room/1");
    }
    hub.request("/room/2", "note", json!({ "n": 8 }))
        .await
        .expect("accepted");
    assert_eq!(
        elsewhere.next_of("reaction").await["reaction"]["payload"],
        8
    );
    assert!(!here.has_frame(), "room 1 got nothing of room 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_of_one_path_arrive_in_trigger_order_at_a_tiny_lane_idle_time() {
    // Lanes that end as soon as they are empty: every trigger races a lane going away.
    let hub = hub(|b| b.lane_idle(Duration::from_nanos(1)));
    let mut clients = Vec::new();
    for room in 0..4 {
        let mut client = TestClient::connect(&hub, "ann", &format!("/room/{room}")).await;
        client.next_of("located").await;
        clients.push(client);
    }
    for n in 0..500u64 {
        for room in 0..4 {
            // Not awaited: the triggers of all rooms are in flight together.
            drop(hub.request(&format!("/room/{room}"), "note", json!({ "n": n })));
        }
        if n % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for client in &mut clients {
        for n in 0..500u64 {
            assert_eq!(client.next_of("reaction").await["reaction"]["payload"], n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_s_requests_arrive_in_order_at_a_tiny_lane_idle_time() {
    // Client requests wait for room in their lane (the path where a trigger could slip into a lane that
    // was going away): three senders at once, each in its own order.
    let hub = hub(|b| b.lane_idle(Duration::from_nanos(1)));
    let mut reader = TestClient::connect(&hub, "rex", "/room/1").await;
    reader.next_of("located").await;
    let mut senders = Vec::new();
    for name in ["a", "b", "c"] {
        let mut sender = TestClient::connect(&hub, name, "/room/1").await;
        sender.next_of("located").await;
        senders.push(sender);
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, sender)| {
            tokio::spawn(async move {
                for n in 0..300u64 {
                    let req = json!({ "t": "req", "name": "note", "data": { "n": i as u64 * 1000 + n }, "echo": false });
                    sender.send(&req.to_string()).await;
                    if n % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                sender
            })
        })
        .collect();
    let mut last = [None::<u64>; 3];
    for _ in 0..900 {
        let n = reader.next_of("reaction").await["reaction"]["payload"]
            .as_u64()
            .expect("a number");
        let (sender, n) = ((n / 1000) as usize, n % 1000);
        assert!(
            last[sender].is_none_or(|l| n == l + 1),
            "sender {sender}: {n} after {:?}",
            last[sender]
        );
        last[sender] = Some(n);
    }
    for task in tasks {
        task.await.expect("the sender finished");
    }
}

#[tokio::test]
async fn a_dropped_transport_parks_and_a_resume_replays_what_was_missed() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    let key = ann.resume_key().await;
    ann.next_of("located").await;
    hub.request("/room/1", "note", json!({ "n": 1 }))
        .await
        .expect("accepted");
    assert_eq!(ann.next_of("reaction").await["seq"], 1);
    ann.cut();
    ann.until_parked().await;
    assert_eq!(hub.stats().parked, 1);
    assert_eq!(
        hub.present("/room/1"),
        1,
        "a parked connection stays on its route"
    );
    for n in 2..=4 {
        hub.request("/room/1", "note", json!({ "n": n }))
            .await
            .expect("accepted");
    }
    let mut back = TestClient::resume(&hub, "ann", &key, 1).await;
    assert_eq!(back.next().await["resumed"], true);
    for seq in 2..=4 {
        assert_eq!(back.next().await["seq"], seq);
    }
    assert_eq!(hub.stats().parked, 0);
    assert!(Arc::ptr_eq(&back.conn, &ann.conn), "the same connection");
}

#[tokio::test]
async fn a_rust_trigger_s_param_is_a_decoded_segment_like_the_page_s_path() {
    let hub = hub(|b| b);
    // The page for the value `a%31` is at `/room/a%2531`; `/room/a1` is another page.
    let mut literal = TestClient::connect(&hub, "ann", "/room/a%2531").await;
    let mut other = TestClient::connect(&hub, "bob", "/room/a1").await;
    assert_eq!(literal.next_of("located").await["path"], "/room/a%31");
    other.next_of("located").await;
    let params: [(&str, &dyn std::fmt::Display); 1] = [("id", &"a%31")];
    let target = crate::trigger::Target::Route {
        pattern: "/room/[id]",
        params: &params,
    };
    let data = crate::trigger::Payload::Typed(Arc::new(Note { n: 9 }));
    let accepted = hub.inner.accept(target, "note", data).expect("accepted");
    let outcome = hub.inner.submit(accepted).await.expect("ran");
    assert_eq!(outcome.delivered, 1);
    assert_eq!(literal.next_of("reaction").await["reaction"]["payload"], 9);
    assert!(!other.has_frame(), "not decoded twice into /room/a1");
}

#[tokio::test]
async fn someone_else_cannot_resume_a_connection() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    let key = ann.resume_key().await;
    ann.cut();
    ann.until_parked().await;
    let mut eve = TestClient::resume(&hub, "eve", &key, 0).await;
    assert_eq!(eve.next().await["resumed"], false);
    assert_eq!(eve.next().await["t"], "resync");
    assert!(!Arc::ptr_eq(&eve.conn, &ann.conn));
}

#[tokio::test]
async fn a_guest_resumes_its_own_connection() {
    let hub = SyncHub::builder()
        .guests()
        .build_with(&[&NOTE])
        .expect("a guest hub");
    let mut guest = TestClient::connect(&hub, "", "/room/1").await;
    let key = guest.resume_key().await;
    guest.next_of("located").await;
    guest.cut();
    guest.until_parked().await;
    hub.request("/room/1", "note", json!({ "n": 5 }))
        .await
        .expect("accepted");
    // Every request of a guest authenticates as a new guest: the key alone brings it back.
    let mut back = TestClient::resume(&hub, "", &key, 0).await;
    assert_eq!(back.next().await["resumed"], true);
    assert_eq!(back.next().await["reaction"]["payload"], 5);
    assert_eq!(hub.stats().parked, 0);
}

#[tokio::test]
async fn parked_connections_are_bounded_in_total_and_per_user_and_the_oldest_goes_first() {
    let hub = hub(|b| b.max_parked(3, 2, 1 << 20));
    let mut keys = Vec::new();
    for user in ["a", "b", "c", "d", "d", "d"] {
        let mut client = TestClient::connect(&hub, user, "/room/1").await;
        keys.push((user, client.resume_key().await));
        client.cut();
        until("let go", || client.conn.phase() != crate::conn::Phase::Live).await;
    }
    let stats = hub.stats();
    assert_eq!(stats.parked, 3, "at most 3 in total");
    assert_eq!(stats.parked_evicted, 3);
    assert_eq!(hub.present("/room/1"), 3, "the evicted are off the route");
    // Past three in total, `a` then `b` (the oldest overall) went; `d` parked a third time past its two
    // per user, and its oldest went.
    let mut back_again = Vec::new();
    for (i, (user, key)) in keys.iter().enumerate() {
        let mut back = TestClient::resume(&hub, user, key, 0).await;
        let hello = back.next_of("hello").await;
        if [0, 1, 3].contains(&i) {
            assert_eq!(
                hello["resumed"], false,
                "{user}'s connection #{i} was forgotten"
            );
            assert_eq!(back.next().await["t"], "resync");
        } else {
            assert_eq!(hello["resumed"], true, "{user}'s connection #{i} was kept");
        }
        // Kept open: a client dropped here would park again and evict the next.
        back_again.push(back);
    }
}

#[tokio::test]
async fn a_parked_connection_past_its_queue_bound_is_forgotten_and_resyncs() {
    let hub = hub(|b| b.parked_queue(4, 1 << 20));
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    let key = ann.resume_key().await;
    ann.next_of("located").await;
    ann.cut();
    ann.until_parked().await;
    for n in 0..5 {
        hub.request("/room/1", "note", json!({ "n": n }))
            .await
            .expect("accepted");
    }
    assert_eq!(hub.present("/room/1"), 0);
    assert_eq!(hub.stats().parked, 0);
    let mut back = TestClient::resume(&hub, "ann", &key, 0).await;
    back.next_of("hello").await;
    assert_eq!(back.next().await["t"], "resync");
}

#[tokio::test]
async fn a_full_lane_does_not_stall_triggers_from_other_nodes_and_its_path_resyncs() {
    let hub = hub(|b| b.lane_queue(1));
    let mut busy = TestClient::connect(&hub, "ann", "/room/1").await;
    let mut other = TestClient::connect(&hub, "bob", "/room/2").await;
    busy.next_of("located").await;
    other.next_of("located").await;
    // Room 1's lane: one fan-out held in its filter, one waiting; the lane is full.
    let held = hub.request("/room/1", "slow", json!({ "n": 1 }));
    until("the first fan-out runs", || hub.stats().fanouts > 0).await;
    let waiting = hub.request("/room/1", "note", json!({ "n": 2 }));
    let remote = |path: &str, n: u64| WireTrigger {
        path: path.to_owned(),
        name: "note".to_owned(),
        data: serde_json::value::to_raw_value(&json!({ "n": n })).expect("json"),
        sender: None,
        origin: None,
    };
    let at = |n: u64| crate::history::Cursor::new(std::sync::Arc::from("remote"), n);
    let inbox: &dyn Inbox = &*hub.inner;
    inbox.trigger(remote("/room/1", 3), at(3));
    inbox.trigger(remote("/room/2", 4), at(4));
    // Room 2's trigger ran while room 1 is still held.
    assert_eq!(other.next_of("reaction").await["reaction"]["payload"], 4);
    assert_eq!(
        busy.next().await["t"],
        "resync",
        "the dropped trigger is not silent"
    );
    assert_eq!(hub.stats().remote_dropped, 1);
    RELEASE.notify_waiters();
    held.await.expect("ran");
    waiting.await.expect("ran");
    assert_eq!(busy.next_of("reaction").await["reaction"]["payload"], 1);
    assert_eq!(busy.next_of("reaction").await["reaction"]["payload"], 2);
}

#[tokio::test]
async fn disconnecting_a_user_closes_live_and_parked_connections() {
    let hub = hub(|b| b);
    let mut live = TestClient::connect(&hub, "ann", "/room/1").await;
    let mut parked = TestClient::connect(&hub, "ann", "/room/1").await;
    parked.cut();
    parked.until_parked().await;
    assert_eq!(hub.disconnect_user("ann"), 2);
    assert_eq!(live.closed().await, crate::close_code::REVOKED);
    assert_eq!(hub.present("/room/1"), 0);
    assert_eq!(hub.stats().parked, 0);
}

#[tokio::test]
async fn a_goodbye_forgets_the_connection_at_once() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    ann.next_of("located").await;
    ann.send(r#"{"t":"bye"}"#).await;
    assert_eq!(ann.closed().await, 1000);
    until("off the route", || hub.present("/room/1") == 0).await;
    assert_eq!(hub.stats().parked, 0, "not parked");
}

#[tokio::test]
async fn a_client_request_runs_the_same_checks_as_rust_code() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    ann.next_of("located").await;
    ann.send(r#"{"t":"req","id":1,"name":"note","data":{"n":"x"}}"#)
        .await;
    assert_eq!(ann.next_of("error").await["code"], "bad_data");
    ann.send(r#"{"t":"req","id":2,"name":"nope","data":{}}"#)
        .await;
    assert_eq!(ann.next_of("error").await["code"], "unknown_name");
    ann.send(r#"{"t":"nav","path":"/elsewhere"}"#).await;
    ann.next_of("located").await;
    ann.send(r#"{"t":"req","id":3,"name":"note","data":{"n":1}}"#)
        .await;
    assert_eq!(ann.next_of("error").await["code"], "not_on_route");
    let bad = hub
        .request("/room/1", "note", json!({ "n": "x" }))
        .await
        .expect_err("bad data");
    assert_eq!(bad.code, crate::ErrorCode::BadData);
    let nowhere = hub
        .request("room", "note", json!({ "n": 1 }))
        .await
        .expect_err("bad path");
    assert_eq!(nowhere.code, crate::ErrorCode::BadPath);
}

#[tokio::test]
async fn shutdown_closes_live_connections_and_forgets_parked_ones() {
    let hub = hub(|b| b);
    let mut live = TestClient::connect(&hub, "ann", "/room/1").await;
    let mut parked = TestClient::connect(&hub, "bob", "/room/1").await;
    parked.cut();
    parked.until_parked().await;
    assert_eq!(hub.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(live.closed().await, crate::close_code::GOING_AWAY);
    assert_eq!(hub.present("/room/1"), 0);
    assert_eq!(hub.stats().parked, 0);
}
