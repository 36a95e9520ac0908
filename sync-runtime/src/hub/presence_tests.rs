//! Presence and identity over the in-memory transport: users listed once across tabs and nodes, the
//! lists browsers hold, filters and reactions that read who is here and who sent, sessions that change
//! while connected, and credentials that expire.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::broker::{Inbox, WireNote};
use crate::registry::Registration;
use crate::test_support::{TestClient, until};
use crate::{
    Backplane, ClientCx, Filter, Identity, MemoryBus, Reaction, Refusal, ServerCx, SyncHub,
    SyncHubBuilder, close_code,
};

#[derive(serde::Deserialize, serde::Serialize)]
struct Note {
    n: u64,
}

/// Names the sender, with no server file.
fn react_signed(cx: ClientCx<Note, ()>) -> Reaction {
    let sender = cx.sender.as_ref();
    Reaction::event(
        "signed",
        json!({
            "user": sender.map(|s| s.user()),
            "view": sender.map(|s| s.view::<Value>().expect("JSON")),
            "session": sender.and_then(|s| s.session::<String>()),
        }),
    )
}

static SIGNED: Registration = Registration {
    route: "/room/[id]",
    name: "signed",
    client_file: "src/room/[id]/_sync/signed_client.rs",
    server_file: None,
    build: || crate::handler::SyncDef::new(react_signed).finish(),
    data_json: || Some(|d| serde_json::to_string(d.downcast_ref::<Note>()?).ok()),
};

fn react_here(cx: ClientCx<Note, Value>) -> Reaction {
    Reaction::event("here", cx.server)
}

/// Reads who is here, and the recipient's session as it is now.
fn filter_here(cx: ServerCx<Note, String, ()>) -> Filter<Value> {
    let author_here = cx
        .sender
        .as_ref()
        .is_some_and(|s| cx.here.contains(&s.user));
    Filter::Deliver(json!({
        "count": cx.here.count(),
        "author_here": author_here,
        "session": *cx.recipient.session,
    }))
}

static HERE: Registration = Registration {
    route: "/room/[id]",
    name: "here",
    client_file: "src/room/[id]/_sync/here_client.rs",
    server_file: Some("src/room/[id]/_sync/here_server.rs"),
    build: || {
        crate::handler::SyncDef::new(react_here)
            .filter_sync(filter_here)
            .finish()
    },
    data_json: || Some(|d| serde_json::to_string(d.downcast_ref::<Note>()?).ok()),
};

/// Tokens are `<user>` or `<user>:<session>`; `short` expires 300 ms after it is presented, `other`
/// names another user.
fn authenticate(builder: SyncHubBuilder<(), ()>) -> SyncHubBuilder<String, ()> {
    builder.authenticate(|req| {
        let token = req.token().unwrap_or("anonymous").to_owned();
        async move {
            let (user, session) = token.split_once(':').unwrap_or((&token, &token));
            let identity = Identity::new(user, session.to_owned());
            Ok(if session == "short" {
                identity.expires_at(SystemTime::now() + Duration::from_millis(300))
            } else if user == "refused" {
                return Err(Refusal::new("no"));
            } else {
                identity
            })
        }
    })
}

fn hub(
    configure: impl FnOnce(SyncHubBuilder<String, ()>) -> SyncHubBuilder<String, ()>,
) -> SyncHub {
    configure(
        authenticate(SyncHub::builder())
            .presence(|session: &String| json!({ "name": session }))
            .presence_window(Duration::from_millis(10)),
    )
    .build_with(&[&SIGNED, &HERE])
    .expect("the test syncs fit")
}

/// A client and the user list it holds, built from its `presence` and `presence_diff` frames as the
/// browser client builds it.
struct Watcher {
    client: TestClient,
    path: Option<String>,
    users: Vec<(String, Value)>,
    count: u64,
}

impl Watcher {
    async fn connect(hub: &SyncHub, token: &str, path: &str) -> Watcher {
        Watcher {
            client: TestClient::connect(hub, token, path).await,
            path: None,
            users: Vec::new(),
            count: 0,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.users.iter().map(|(u, _)| u.as_str()).collect()
    }

    /// Apply frames until the list satisfies `ready`.
    async fn until(&mut self, what: &str, ready: impl Fn(&Watcher) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !ready(self) {
                let frame = self.client.next().await;
                self.apply(&frame);
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting until {what}; the list is {:?}",
            self.keys()
        );
    }

    async fn until_listed(&mut self, users: &[&str]) {
        self.until(&format!("{users:?} are listed"), |w| w.keys() == users)
            .await;
    }

    fn apply(&mut self, frame: &Value) {
        let entry = |e: &Value| {
            (
                e["user"].as_str().expect("a user").to_owned(),
                e["view"].clone(),
            )
        };
        match frame["t"].as_str() {
            Some("located") => {
                self.path = frame["path"].as_str().map(str::to_owned);
                self.users.clear();
                self.count = 0;
            }
            Some("presence") if frame["path"].as_str() == self.path.as_deref() => {
                self.users = frame["users"]
                    .as_array()
                    .expect("users")
                    .iter()
                    .map(entry)
                    .collect();
                self.count = frame["count"].as_u64().expect("count");
            }
            Some("presence_diff") if frame["path"].as_str() == self.path.as_deref() => {
                let leave = frame["leave"].as_array().expect("leave");
                self.users.retain(|(u, _)| !leave.iter().any(|l| l == u));
                for (user, view) in frame["join"].as_array().expect("join").iter().map(entry) {
                    match self.users.iter_mut().find(|(u, _)| *u == user) {
                        Some(listed) => listed.1 = view,
                        None => self.users.push((user, view)),
                    }
                }
                self.count = frame["count"].as_u64().expect("count");
            }
            _ => {}
        }
    }
}

fn listed(hub: &SyncHub, path: &str) -> Vec<String> {
    hub.presence(path)
        .iter()
        .map(|p| p.user().to_owned())
        .collect()
}

#[tokio::test]
async fn two_tabs_of_one_user_are_listed_once_and_leave_with_the_last() {
    let hub = hub(|b| b);
    let mut bob = Watcher::connect(&hub, "bob", "/room/1").await;
    let first = TestClient::connect(&hub, "ann", "/room/1").await;
    let second = TestClient::connect(&hub, "ann", "/room/1").await;
    bob.until_listed(&["bob", "ann"]).await;
    assert_eq!(listed(&hub, "/room/1"), ["bob", "ann"]);
    assert_eq!(bob.users[1].1, json!({ "name": "ann" }), "the app's view");
    first.send(r#"{"t":"bye"}"#).await;
    until("the first tab is gone", || first.conn.is_closed()).await;
    assert_eq!(
        listed(&hub, "/room/1"),
        ["bob", "ann"],
        "her other tab is still here"
    );
    second.send(r#"{"t":"bye"}"#).await;
    bob.until_listed(&["bob"]).await;
    assert_eq!(listed(&hub, "/room/1"), ["bob"]);
    assert_eq!(bob.count, 1);
}

#[tokio::test]
async fn navigating_away_leaves_the_list_and_the_new_page_lists_its_own_users() {
    let hub = hub(|b| b);
    let mut bob = Watcher::connect(&hub, "bob", "/room/1").await;
    let mut ann = Watcher::connect(&hub, "ann", "/room/1").await;
    let _cid = TestClient::connect(&hub, "cid", "/room/2").await;
    bob.until_listed(&["bob", "ann"]).await;
    ann.client.send(r#"{"t":"nav","path":"/room/2"}"#).await;
    bob.until_listed(&["bob"]).await;
    ann.until("ann lists room 2", |w| {
        w.path.as_deref() == Some("/room/2") && w.keys() == ["cid", "ann"]
    })
    .await;
    assert_eq!(listed(&hub, "/room/2"), ["cid", "ann"]);
}

#[tokio::test]
async fn a_parked_tab_stays_listed_through_the_grace_window_and_leaves_when_forgotten() {
    let hub = hub(|b| b.resume_grace(Duration::from_millis(300)));
    let mut bob = Watcher::connect(&hub, "bob", "/room/1").await;
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    bob.until_listed(&["bob", "ann"]).await;
    ann.cut();
    ann.until_parked().await;
    assert_eq!(
        listed(&hub, "/room/1"),
        ["bob", "ann"],
        "a reload is not a leave"
    );
    bob.until_listed(&["bob"]).await;
    assert_eq!(
        listed(&hub, "/room/1"),
        ["bob"],
        "forgotten after the grace window"
    );
}

#[tokio::test]
async fn a_resumed_connection_gets_the_whole_list_again() {
    let hub = hub(|b| b);
    let mut ann = Watcher::connect(&hub, "ann", "/room/1").await;
    ann.until_listed(&["ann"]).await;
    let key = ann.client.conn.resume_key.to_string();
    ann.client.cut();
    ann.client.until_parked().await;
    let _bob = TestClient::connect(&hub, "bob", "/room/1").await;
    let mut back = TestClient::resume(&hub, "ann", &key, 0).await;
    let list = back.next_of("presence").await;
    assert_eq!(list["users"].as_array().map(Vec::len), Some(2), "{list}");
}

#[tokio::test]
async fn guests_are_each_their_own_user() {
    let hub = SyncHub::builder()
        .guests()
        .presence(|_: &()| json!("a guest"))
        .presence_window(Duration::from_millis(10))
        .build_with(&[])
        .expect("a hub");
    let mut one = Watcher::connect(&hub, "", "/lobby").await;
    let _two = TestClient::connect(&hub, "", "/lobby").await;
    one.until("two guests are listed", |w| w.users.len() == 2)
        .await;
    assert!(one.keys().iter().all(|k| k.starts_with("guest-")));
    assert_ne!(one.keys()[0], one.keys()[1]);
}

#[tokio::test]
async fn without_a_presence_mapping_the_server_lists_users_and_browsers_get_no_lists() {
    let hub = authenticate(SyncHub::builder())
        .presence_window(Duration::from_millis(10))
        .build_with(&[&SIGNED, &HERE])
        .expect("a hub");
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    ann.next_of("located").await;
    let mut bob = TestClient::connect(&hub, "bob", "/room/1").await;
    bob.next_of("located").await;
    assert_eq!(listed(&hub, "/room/1"), ["ann", "bob"]);
    assert_eq!(hub.presence("/room/1")[0].view_json(), "null");
    // A request's reaction comes after any list the windows since would have sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    hub.request("/room/1", "signed", json!({ "n": 1 }))
        .await
        .expect("accepted");
    loop {
        let frame = ann.next().await;
        assert!(
            !frame["t"]
                .as_str()
                .is_some_and(|t| t.starts_with("presence")),
            "user keys are not shown to users unless the app maps a view: {frame}"
        );
        if frame["t"] == "reaction" {
            break;
        }
    }
}

#[tokio::test]
async fn the_list_a_browser_gets_is_bounded_and_its_count_exact() {
    let hub = hub(|b| b.presence_limit(2));
    let mut watcher = Watcher::connect(&hub, "u0", "/room/1").await;
    let mut others = Vec::new();
    for i in 1..5 {
        others.push(TestClient::connect(&hub, &format!("u{i}"), "/room/1").await);
    }
    watcher.until("a count of 5", |w| w.count == 5).await;
    assert_eq!(watcher.keys(), ["u0", "u1"], "the first two only");
    others.remove(0).send(r#"{"t":"bye"}"#).await;
    watcher
        .until("u2 moves up", |w| w.count == 4 && w.keys() == ["u0", "u2"])
        .await;
}

#[tokio::test]
async fn a_reaction_names_its_sender_as_the_server_knows_them() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann:team-1", "/room/1").await;
    let mut bob = TestClient::connect(&hub, "bob", "/room/1").await;
    ann.next_of("located").await;
    ann.send(r#"{"t":"req","name":"signed","data":{"n":1},"echo":false}"#)
        .await;
    let signed = bob.next_of("reaction").await;
    assert_eq!(
        signed["reaction"]["payload"],
        json!({ "user": "ann", "view": { "name": "team-1" }, "session": "team-1" })
    );
    hub.request("/room/1", "signed", json!({ "n": 2 }))
        .await
        .expect("accepted");
    let unsigned = bob.next_of("reaction").await;
    assert_eq!(
        unsigned["reaction"]["payload"],
        json!({ "user": null, "view": null, "session": null }),
        "server code has no sender"
    );
}

#[tokio::test]
async fn filters_read_who_is_here_on_the_path() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    let mut bob = TestClient::connect(&hub, "bob", "/room/1").await;
    let _cid = TestClient::connect(&hub, "cid", "/room/2").await;
    ann.next_of("located").await;
    ann.send(r#"{"t":"req","name":"here","data":{"n":1}}"#)
        .await;
    let here = bob.next_of("reaction").await;
    assert_eq!(here["reaction"]["payload"]["count"], 2);
    assert_eq!(here["reaction"]["payload"]["author_here"], true);
}

#[tokio::test]
async fn an_updated_session_reaches_the_next_filter_and_every_list() {
    let hub = hub(|b| b);
    let mut ann = Watcher::connect(&hub, "ann:team-1", "/room/1").await;
    let mut bob = Watcher::connect(&hub, "bob", "/room/1").await;
    bob.until_listed(&["ann", "bob"]).await;
    assert_eq!(
        hub.update_session("ann", "team-2".to_owned())
            .expect("the session type"),
        1
    );
    bob.until("ann's new view", |w| {
        w.users.first().is_some_and(|(_, v)| v["name"] == "team-2")
    })
    .await;
    assert_eq!(
        hub.presence("/room/1")[0].view_json(),
        r#"{"name":"team-2"}"#
    );
    hub.request("/room/1", "here", json!({ "n": 1 }))
        .await
        .expect("accepted");
    let reaction = ann.client.next_of("reaction").await;
    assert_eq!(reaction["reaction"]["payload"]["session"], "team-2");
    assert_eq!(
        hub.update_session("ann", 7_u32).map_err(|e| e.code),
        Err(crate::ErrorCode::SessionType),
        "another type than the authenticator's is refused"
    );
}

#[tokio::test]
async fn an_expired_credential_closes_its_connection_unless_refreshed() {
    let hub = hub(|b| b);
    let mut lapsed = TestClient::connect(&hub, "ann:short", "/room/1").await;
    let hello = lapsed.next_of("hello").await;
    let expires_in = hello["expires_in"].as_u64().expect("an expiry");
    assert!(expires_in <= 300, "{hello}");
    assert_eq!(lapsed.closed().await, close_code::TOKEN_EXPIRED);

    let mut kept = TestClient::connect(&hub, "bob:short", "/room/1").await;
    kept.next_of("hello").await;
    kept.send(r#"{"t":"refresh","token":"bob:long"}"#).await;
    let refreshed = kept.next_of("refreshed").await;
    assert!(
        refreshed.get("expires_in").is_none(),
        "the new token does not expire: {refreshed}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!kept.conn.is_closed(), "refreshed in time");
    let session = kept.conn.credentials().session;
    assert_eq!(
        session.downcast_ref::<String>().map(String::as_str),
        Some("long")
    );
}

#[tokio::test]
async fn a_refresh_for_another_user_or_refused_is_an_error_and_changes_nothing() {
    let hub = hub(|b| b);
    let mut ann = TestClient::connect(&hub, "ann", "/room/1").await;
    ann.send(r#"{"t":"refresh","token":"bob"}"#).await;
    let error = ann.next_of("error").await;
    assert_eq!(error["code"], "refresh_refused");
    ann.send(r#"{"t":"refresh","token":"refused"}"#).await;
    assert_eq!(ann.next_of("error").await["code"], "refresh_refused");
    assert_eq!(&**ann.conn.user(), "ann");
}

/// A `null` view, as it crosses nodes.
fn null() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("null".into()).expect("JSON")
}

/// Two hubs on one bus, with fast heartbeats.
fn node(bus: &MemoryBus) -> SyncHub {
    hub(|b| b.backplane(Backplane::memory(bus).heartbeat(Duration::from_millis(20))))
}

/// Two nodes on `bus`, once both hear it.
async fn two_nodes(bus: &MemoryBus) -> (SyncHub, SyncHub) {
    let (a, b) = (node(bus), node(bus));
    until("both subscribed", || {
        [&a, &b]
            .iter()
            .all(|h| h.backplane_status().is_some_and(|s| s.subscribed))
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn a_user_on_two_nodes_is_listed_once_on_both_and_leaves_with_the_last_tab() {
    let bus = MemoryBus::new();
    let (a, b) = two_nodes(&bus).await;
    let mut watcher = Watcher::connect(&b, "bob", "/room/1").await;
    let on_a = TestClient::connect(&a, "ann", "/room/1").await;
    let on_b = TestClient::connect(&b, "ann", "/room/1").await;
    watcher.until_listed(&["bob", "ann"]).await;
    until("node a lists bob", || listed(&a, "/room/1").len() == 2).await;
    on_a.send(r#"{"t":"bye"}"#).await;
    until("a sees ann's last tab here go", || on_a.conn.is_closed()).await;
    assert_eq!(
        listed(&b, "/room/1"),
        ["bob", "ann"],
        "her tab on b is still here"
    );
    on_b.send(r#"{"t":"bye"}"#).await;
    watcher.until_listed(&["bob"]).await;
    until("node a hears it", || listed(&a, "/room/1") == ["bob"]).await;
}

#[tokio::test]
async fn a_node_started_later_learns_the_others_lists_from_their_snapshots() {
    let bus = MemoryBus::new();
    let a = node(&bus);
    let _ann = TestClient::connect(&a, "ann", "/room/1").await;
    let _cid = TestClient::connect(&a, "cid", "/room/9").await;
    let late = node(&bus);
    until("the late node lists a's users", || {
        listed(&late, "/room/1") == ["ann"] && listed(&late, "/room/9") == ["cid"]
    })
    .await;
}

#[tokio::test]
async fn a_silent_node_takes_its_users_off_the_lists() {
    let bus = MemoryBus::new();
    let hub = node(&bus);
    let mut watcher = Watcher::connect(&hub, "bob", "/room/1").await;
    watcher.until_listed(&["bob"]).await;
    let ghost = 77;
    hub.inner.note(
        ghost,
        WireNote::Presence {
            v: 1,
            path: "/room/1".into(),
            user: "zed".into(),
            view: Some(null()),
        },
    );
    hub.inner.heard(ghost, 1);
    watcher.until_listed(&["bob", "zed"]).await;
    // The node says nothing more: after five heartbeats it is taken for dead.
    watcher.until_listed(&["bob"]).await;
    assert_eq!(listed(&hub, "/room/1"), ["bob"]);
}

#[tokio::test]
async fn a_missed_change_is_repaired_by_a_snapshot() {
    let bus = MemoryBus::new();
    let hub = node(&bus);
    let node = 78;
    let note = |v, user: &str| WireNote::Presence {
        v,
        path: "/room/1".into(),
        user: user.into(),
        view: Some(null()),
    };
    hub.inner.note(node, note(1, "x"));
    // Change 2 never arrived: 3 is not applied out of order.
    hub.inner.note(node, note(3, "y"));
    assert_eq!(listed(&hub, "/room/1"), ["x"]);
    let snapshot = |v| WireNote::Snapshot {
        v,
        entries: vec![("/room/1".into(), "y".into(), null())],
    };
    hub.inner.note(node, snapshot(3));
    assert_eq!(
        listed(&hub, "/room/1"),
        ["y"],
        "the snapshot replaced the node's part"
    );
    hub.inner.note(node, note(2, "stale"));
    assert_eq!(
        listed(&hub, "/room/1"),
        ["y"],
        "older than the snapshot: ignored"
    );
}

#[tokio::test]
async fn an_updated_session_reaches_the_users_connections_on_every_node() {
    let bus = MemoryBus::new();
    let (a, b) = two_nodes(&bus).await;
    let mut on_b = Watcher::connect(&b, "ann:team-1", "/room/1").await;
    on_b.until_listed(&["ann"]).await;
    assert_eq!(
        a.update_session("ann", "team-2".to_owned())
            .expect("the session type"),
        0,
        "no connection of hers on node a"
    );
    on_b.until("her view on node b", |w| {
        w.users.first().is_some_and(|(_, v)| v["name"] == "team-2")
    })
    .await;
    let session = on_b.client.conn.credentials().session;
    assert_eq!(
        session.downcast_ref::<String>().map(String::as_str),
        Some("team-2"),
        "node b's filters see the new session"
    );
    until("node a lists her new view too", || {
        a.presence("/room/1")
            .first()
            .is_some_and(|p| p.view_json() == r#"{"name":"team-2"}"#)
    })
    .await;
}

#[tokio::test]
async fn a_nav_to_where_the_connection_already_is_does_not_resend_the_list() {
    let hub = hub(|b| b);
    let mut ann = Watcher::connect(&hub, "ann", "/room/1").await;
    ann.until_listed(&["ann"]).await;
    for _ in 0..3 {
        ann.client.send(r#"{"t":"nav","path":"/room/1"}"#).await;
        ann.client.next_of("located").await;
    }
    // Windows pass (10 ms each); then a marker: nothing but it may come.
    tokio::time::sleep(Duration::from_millis(50)).await;
    hub.request("/room/1", "signed", json!({ "n": 1 }))
        .await
        .expect("accepted");
    let next = ann.client.next().await;
    assert_eq!(next["t"], "reaction", "no list was resent: {next}");
}
