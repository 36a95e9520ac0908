//! The example's admin page (`/_sync/admin`, for the user named `admin`) over real HTTP and live
//! connections: who gets the page, who gets its snapshots, and that a trigger another user fires shows up
//! in them with its outcome.

use example_dashboard::{App, hub, router};
use sync_runtime::client::ReceivedReaction;
use sync_runtime::close_code;
use sync_runtime::testing::{TestServer, TestUser};

async fn site() -> (TestServer, sync_runtime::SyncHub) {
    let hub = hub(App::seeded());
    (TestServer::start(router(&hub)).await, hub)
}

async fn login(app: &TestServer, name: &str, team: &str) -> String {
    let form = [("name", name), ("team", team)];
    let response = app.post_form("/login", &form, None).await;
    response.cookie("sid").expect("a session cookie")
}

#[tokio::test]
async fn the_admin_page_is_for_the_admin_only() {
    let (app, _hub) = site().await;
    let nobody = app.get("/_sync/admin", None).await;
    assert_eq!(nobody.status, 403, "{}", nobody.body);
    assert!(nobody.body.contains("log in first"), "{}", nobody.body);

    let bob = login(&app, "bob", "red").await;
    let refused = app.get("/_sync/admin", Some(&bob)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.headers["cache-control"], "no-store");
    let dashboard = app.get("/dashboard", Some(&bob)).await;
    assert!(
        !dashboard.body.contains("/_sync/admin"),
        "no admin link for bob"
    );

    let admin = login(&app, "admin", "blue").await;
    let page = app.get("/_sync/admin", Some(&admin)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.body.contains("sync admin"));
    let dashboard = app.get("/dashboard", Some(&admin)).await;
    assert!(
        dashboard.body.contains(r#"href="/_sync/admin""#),
        "the admin's navigation links the page"
    );
}

#[tokio::test]
async fn a_non_admin_socket_on_the_admin_path_is_closed_and_gets_no_snapshot() {
    let (app, hub) = site().await;
    let bob = login(&app, "bob", "red").await;
    let mut bob = app.connect("/dashboard").cookie(bob).named("bob").await;
    let nav = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        bob.client().navigate("/_sync/admin"),
    )
    .await
    .expect("an answer in time");
    assert!(nav.is_err(), "bob was placed on the admin path");
    // `expect_closed` fails if any reaction (a snapshot) comes first.
    assert_eq!(bob.expect_closed().await.0, close_code::FORBIDDEN);
    assert_eq!(hub.present("/_sync/admin"), 0);
}

/// The next snapshot of `admin`'s feed that satisfies `ready`, within a bounded number of snapshots.
async fn snapshot_where(
    admin: &mut TestUser,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Snapshots come at least once a second and the server's timeout bounds each wait.
    for _ in 0..20 {
        let live: ReceivedReaction = admin.expect("live").await;
        assert_eq!(live.reaction["name"], "snapshot");
        let snapshot = live.reaction["payload"].clone();
        if ready(&snapshot) {
            return snapshot;
        }
    }
    panic!("no snapshot showed {what} in 20 snapshots");
}

/// Regression guard for the admin feed: a trigger fired by another user (alice's new task) appears in
/// the admin's snapshots with its route, sync, path and outcome, and the routes list who is where.
#[tokio::test]
async fn the_admin_sees_a_trigger_another_user_fired_with_its_outcome() {
    let (app, hub) = site().await;
    let (alice, bob, admin) = (
        login(&app, "alice", "red").await,
        login(&app, "bob", "red").await,
        login(&app, "admin", "blue").await,
    );
    let mut bob = app.connect("/dashboard").cookie(bob).named("bob").await;
    let mut admin = app
        .connect("/_sync/admin")
        .cookie(admin)
        .named("admin")
        .await;
    snapshot_where(&mut admin, "bob on /dashboard", |s| {
        s["routes"].as_array().is_some_and(|routes| {
            routes.iter().any(|r| {
                r["route"] == "/dashboard" && r["busiest"][0]["listed"][0]["user"] == "bob"
            })
        })
    })
    .await;

    let response = app
        .post_form(
            "/dashboard/tasks",
            &[("text", "Audit the logs")],
            Some(&alice),
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    bob.expect("refreshData").await;

    let snapshot = snapshot_where(&mut admin, "alice's trigger", |s| {
        s["triggers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["sync"] == "refreshData"))
    })
    .await;
    let trigger = &snapshot["triggers"][0];
    assert_eq!(trigger["route"], "/dashboard");
    assert_eq!(trigger["path"], "/dashboard");
    assert_eq!(
        (
            &trigger["matched"],
            &trigger["passed"],
            &trigger["delivered"],
            &trigger["failed"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(0)
        ),
        "bob, on /dashboard in team red, got it: {trigger}"
    );
    assert_eq!(trigger["remote"], false);
    assert!(trigger["took_us"].as_u64().is_some());
    assert_eq!(
        snapshot["stats"]["fanouts"], 1,
        "the snapshots are not counted"
    );
    assert!(
        hub.presence("/_sync/admin").is_empty(),
        "the admin is on no list"
    );
    bob.expect_nothing().await;
}
