//! The admin page (`SyncHubBuilder::admin`) over real sockets: served only when enabled, only to sessions
//! the app's check accepts, fed with snapshots through the hub's own sync path to admins only, with its
//! watchers listed nowhere. (Snapshots listing an app's triggers are tested in the example app, which has
//! syncs to trigger.)

use std::time::Duration;

use sync_runtime::testing::TestServer;
use sync_runtime::{
    BuildProblem, ErrorCode, Identity, Refusal, SyncHub, SyncHubBuilder, close_code,
};

/// A hub whose sessions are the `token`'s name; `root` is the admin when `admin` is set.
fn builder() -> SyncHubBuilder<String, ()> {
    SyncHub::builder().authenticate(|req| {
        let name = req.token().map(str::to_owned);
        async move {
            let name = name.ok_or_else(|| Refusal::new("log in first"))?;
            Ok(Identity::new(name.clone(), name))
        }
    })
}

fn admin_hub() -> SyncHub {
    builder()
        .presence(|name: &String| name.clone())
        .admin(|name: &String| name == "root")
        .build()
        .expect("a hub")
}

#[tokio::test]
async fn without_admin_the_admin_page_is_not_served() {
    let hub = builder().build().expect("a hub");
    let app = TestServer::start(hub.router()).await;
    let page = app.get("/_sync/admin?token=root", None).await;
    assert_eq!(page.status, 404);
}

#[tokio::test]
async fn the_admin_page_is_served_only_to_sessions_the_apps_check_accepts() {
    let hub = admin_hub();
    let app = TestServer::start(hub.router()).await;

    let nobody = app.get("/_sync/admin", None).await;
    assert_eq!(nobody.status, 403, "{}", nobody.body);
    assert!(nobody.body.contains("log in first"), "{}", nobody.body);

    let bob = app.get("/_sync/admin?token=bob", None).await;
    assert_eq!(bob.status, 403, "{}", bob.body);
    assert!(bob.body.contains("admins only"), "{}", bob.body);
    assert_eq!(bob.headers["cache-control"], "no-store");

    let root = app.get("/_sync/admin?token=root", None).await;
    assert_eq!(root.status, 200, "{}", root.body);
    assert_eq!(root.headers["cache-control"], "no-store");
    assert!(
        root.headers["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/html")
    );
    assert!(
        root.body
            .contains(r#"<meta name="sync-prefix" content="/_sync">"#),
        "the page knows where the client is"
    );
}

#[tokio::test]
async fn the_page_follows_the_prefix() {
    let hub = builder()
        .path_prefix("/ops/sync")
        .admin(|name: &String| name == "root")
        .build()
        .expect("a hub");
    let app = TestServer::start(hub.router()).await.prefix("/ops/sync");
    assert_eq!(app.get("/_sync/admin?token=root", None).await.status, 404);
    let page = app.get("/ops/sync/admin?token=root", None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"content="/ops/sync""#));
    let mut root = app.connect("/ops/sync/admin").token("root").await;
    let snapshot = root.expect("live").await;
    assert_eq!(snapshot.reaction["name"], "snapshot");
}

#[tokio::test]
async fn an_admin_gets_snapshots_without_a_cursor_and_its_watchers_are_listed_nowhere() {
    let hub = admin_hub();
    let app = TestServer::start(hub.router()).await;
    let mut alice = app.connect("/lobby").token("alice").await;
    let mut root = app.connect("/_sync/admin").token("root").await;

    let first = root.expect("live").await;
    assert_eq!(first.path, "/_sync/admin");
    assert_eq!(
        first.cursor, None,
        "snapshots are not in the path's history"
    );
    let snapshot = &first.reaction["payload"];
    assert_eq!(first.reaction["kind"], "event");
    assert_eq!(snapshot["node"].as_str().map(str::len), Some(16));
    assert_eq!(snapshot["connections"]["total"], 2);
    assert_eq!(snapshot["broker"], serde_json::Value::Null, "a single node");
    let routes = snapshot["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 1, "only /lobby has users: {routes:?}");
    assert_eq!(routes[0]["busiest"][0]["path"], "/lobby");
    assert_eq!(routes[0]["busiest"][0]["listed"][0]["user"], "alice");
    assert_eq!(routes[0]["busiest"][0]["listed"][0]["view"], "alice");

    // No trigger runs, yet the feed goes on (at least once a second).
    let second = root.expect("live").await;
    assert!(second.reaction["payload"]["at"].as_u64() >= snapshot["at"].as_u64());
    assert!(hub.presence("/_sync/admin").is_empty());
    assert_eq!(hub.present("/_sync/admin"), 1);
    assert_eq!(
        hub.stats().fanouts,
        0,
        "snapshots are not counted as fan-outs"
    );
    assert_eq!(hub.stats().delivered, 0);
    alice.expect_nothing().await;
}

#[tokio::test]
async fn a_non_admin_who_goes_to_the_admin_path_is_closed_with_forbidden() {
    let hub = admin_hub();
    let app = TestServer::start(hub.router()).await;

    // Navigating there from a page.
    let mut bob = app.connect("/lobby").token("bob").await;
    let nav = tokio::time::timeout(
        Duration::from_secs(10),
        bob.client().navigate("/_sync/admin"),
    )
    .await
    .expect("an answer in time");
    assert!(nav.is_err(), "bob was placed on the admin path: {nav:?}");
    let (code, reason) = bob.expect_closed().await;
    assert_eq!(code, close_code::FORBIDDEN);
    assert!(reason.contains("admins only"), "{reason}");
    assert!(hub.presence("/lobby").is_empty(), "bob left the lobby too");

    // Connecting there directly: the client never gets placed.
    let direct = app.connect("/_sync/admin").token("bob").try_connect().await;
    assert!(direct.is_err(), "bob connected on the admin path");
    assert_eq!(hub.present("/_sync/admin"), 0);
}

#[tokio::test]
async fn clients_cannot_send_the_admin_page_s_snapshots() {
    let hub = admin_hub();
    let app = TestServer::start(hub.router()).await;
    let mut root = app.connect("/_sync/admin").token("root").await;
    root.expect("live").await;
    let forged = root
        .request("live", serde_json::json!({ "node": "forged" }))
        .await
        .expect_err("the admin sync takes no requests");
    assert_eq!(forged.code(), Some(ErrorCode::GateRefused));
}

#[test]
fn admin_before_authenticate_is_a_build_error() {
    let problems = SyncHub::builder()
        .admin(|_: &()| true)
        .authenticate(|_| async { Ok::<_, Refusal>(Identity::new("x", 1u8)) })
        .build()
        .expect_err("the check takes the wrong session type")
        .problems()
        .to_vec();
    assert!(
        problems.contains(&BuildProblem::AdminBeforeAuthenticate),
        "{problems:?}"
    );
}
