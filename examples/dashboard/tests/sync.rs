//! The example over real HTTP and live connections (no browser), with `sync_runtime::testing`: log in,
//! connect with the cookie, and check the team filter, the wall's authors and refusals, a team switch
//! while connected, and who is here. Every "nothing else arrived" is a round trip, not a sleep.

use example_dashboard::{App, hub, router};
use serde_json::json;
use sync_runtime::client::{ClientError, PresenceList, ReceivedReaction};
use sync_runtime::testing::{TestServer, TestUser, Transport};
use sync_runtime::{ErrorCode, SyncHub};

/// The example served on a loopback port, with its hub.
struct Site {
    app: TestServer,
    hub: SyncHub,
    db: App,
}

async fn site() -> Site {
    let db = App::seeded();
    let hub = hub(db.clone());
    let app = TestServer::start(router(&hub)).await;
    Site { app, hub, db }
}

impl Site {
    /// Log in through the form; the `sid=...` cookie.
    async fn login(&self, name: &str, team: &str) -> String {
        let form = [("name", name), ("team", team)];
        let response = self.app.post_form("/login", &form, None).await;
        response.cookie("sid").expect("a session cookie")
    }

    /// `name` logged in on `team` and connected at `path` (over a WebSocket).
    async fn user(&self, name: &str, team: &str, path: &str) -> TestUser {
        let cookie = self.login(name, team).await;
        self.app.connect(path).cookie(cookie).named(name).await
    }
}

/// Wait until `user`'s list of who is on its page is `expected` (user key, name, team), in any order.
async fn listed(user: &mut TestUser, expected: &[(&str, &str)]) -> PresenceList {
    let view = |name: &str, team: &str| json!([name, { "name": name, "team": team }]);
    let mut want: Vec<serde_json::Value> = expected.iter().map(|(n, t)| view(n, t)).collect();
    want.sort_by_key(|v| v.to_string());
    user.expect_presence_where(&format!("exactly {expected:?} listed"), |list| {
        let mut got: Vec<serde_json::Value> = list
            .users
            .iter()
            .map(|(user, v)| json!([user, v]))
            .collect();
        got.sort_by_key(|v| v.to_string());
        list.count == expected.len() && got == want
    })
    .await
}

/// The user keys and views `hub.presence` lists on `path`, in the order they came.
fn presence(hub: &SyncHub, path: &str) -> Vec<(String, serde_json::Value)> {
    hub.presence(path)
        .iter()
        .map(|p| {
            let view = p.view::<serde_json::Value>().expect("a JSON view");
            (p.user().to_owned(), view)
        })
        .collect()
}

/// The `html` of a reaction.
fn html(reaction: &ReceivedReaction) -> &str {
    reaction.reaction["html"].as_str().expect("an html swap")
}

/// The README's example: two users by their session cookies, one over SSE; an update for team red.
#[tokio::test]
async fn a_team_update_reaches_its_members_only() {
    let db = App::seeded();
    let hub = hub(db.clone());
    let app = TestServer::start(router(&hub)).await;
    let mut bob = app
        .connect("/dashboard")
        .cookie(format!("sid={}", db.login("bob", "red")))
        .await;
    let mut carol = app
        .connect("/dashboard")
        .cookie(format!("sid={}", db.login("carol", "blue")))
        .sse()
        .await;

    hub.request("/dashboard", "refreshData", json!({ "team": "red" }))
        .await
        .expect("a refresh");
    let update = bob.expect("refreshData").await;
    assert!(html(&update).contains("Ship the sync framework"));
    carol.expect_nothing().await;
}

/// `refreshData`'s server file reads the list in `prepare` and filters per team (`class`): one query per
/// trigger, however many members are watching.
#[tokio::test]
async fn a_team_update_reads_the_list_once_however_many_members_watch() {
    let site = site().await;
    let mut red = Vec::new();
    for name in ["bob", "dan", "eve", "fay"] {
        red.push(site.user(name, "red", "/dashboard").await);
    }
    let mut carol = site.user("carol", "blue", "/dashboard").await;
    let before = site.db.list_reads();
    let outcome = site
        .hub
        .request("/dashboard", "refreshData", json!({ "team": "red" }))
        .await
        .expect("a refresh");
    assert_eq!(
        (outcome.matched, outcome.passed, outcome.delivered),
        (5, 4, 4)
    );
    assert_eq!(
        site.db.list_reads() - before,
        1,
        "one read for four members"
    );
    for member in &mut red {
        let update = member.expect("refreshData").await;
        assert!(html(&update).contains("Ship the sync framework"));
    }
    carol.expect_nothing().await;
}

#[tokio::test]
async fn a_new_task_reaches_the_teams_members_only() {
    a_new_task_reaches_the_teams_members_only_over(Transport::WebSocket).await;
}

#[tokio::test]
async fn a_new_task_reaches_the_teams_members_only_over_sse() {
    a_new_task_reaches_the_teams_members_only_over(Transport::Sse).await;
}

async fn a_new_task_reaches_the_teams_members_only_over(transport: Transport) {
    let site = site().await;
    let alice = site.login("alice", "red").await;
    let connect = |name: &'static str, cookie: String| {
        site.app
            .connect("/dashboard")
            .cookie(cookie)
            .named(name)
            .over(transport)
    };
    let mut bob = connect("bob", site.login("bob", "red").await).await;
    let mut carol = connect("carol", site.login("carol", "blue").await).await;
    // No cookie, no connection.
    let refused = site
        .app
        .connect("/dashboard")
        .over(transport)
        .try_connect()
        .await
        .expect_err("no cookie");
    assert_eq!(refused.status(), Some(401));

    // The handler answers after the fan-out: bob's update is queued, and carol has none.
    let response = site
        .app
        .post_form(
            "/dashboard/tasks",
            &[("text", "Review the PR")],
            Some(&alice),
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains(r#""delivered":1"#),
        "only bob is on /dashboard in team red: {response:?}"
    );
    let r = bob.expect("refreshData").await;
    assert_eq!(r.reaction["selector"], "#tasks");
    assert!(html(&r).contains("Review the PR <small>by alice</small>"));
    bob.expect_nothing().await;
    carol.expect_nothing().await;

    // carol's next reaction is her own team's update: nothing of team red's came before it.
    site.hub
        .request("/dashboard", "refreshData", json!({ "team": "blue" }))
        .await
        .expect("blue refresh");
    let r = carol.expect("refreshData").await;
    assert!(
        html(&r).contains("Plan the offsite") && !html(&r).contains("Review the PR"),
        "{}",
        html(&r)
    );
    bob.expect_nothing().await;
}

#[tokio::test]
async fn the_wall_names_the_author_the_server_knows_not_the_one_the_data_claims() {
    let site = site().await;
    let mut alice = site.user("alice", "red", "/home").await;
    let mut carol = site.user("carol", "blue", "/home").await;

    let outcome = alice
        .request(
            "refreshData",
            json!({ "text": "Hello <all>", "author": "mallory" }),
        )
        .await
        .expect("a post");
    assert_eq!((outcome.matched, outcome.delivered), (2, 2));
    for user in [&mut carol, &mut alice] {
        let post = user.expect("refreshData").await;
        assert_eq!(html(&post), "<li><b>alice</b> Hello &lt;all&gt;</li>");
        user.expect_nothing().await;
    }

    // A post the app makes itself has no sender.
    site.hub
        .request(
            "/home",
            "refreshData",
            json!({ "text": "Maintenance at noon" }),
        )
        .await
        .expect("a post from the server");
    for user in [&mut carol, &mut alice] {
        let post = user.expect("refreshData").await;
        assert_eq!(html(&post), "<li><b>server</b> Maintenance at noon</li>");
    }
}

#[tokio::test]
async fn a_bad_post_is_refused_with_bad_data_before_any_fan_out() {
    let site = site().await;
    let mut alice = site.user("alice", "red", "/home").await;
    let mut carol = site.user("carol", "blue", "/home").await;

    let overlong = "x".repeat(281);
    for text in ["", "   \n ", overlong.as_str()] {
        let refused = alice
            .request("refreshData", json!({ "text": text }))
            .await
            .expect_err("a post has 1 to 280 characters");
        assert_eq!(
            refused.code(),
            Some(ErrorCode::BadData),
            "{text:?}: {refused}"
        );
        let ClientError::Refused(reply) = refused else {
            unreachable!("a refusal has a code");
        };
        assert!(
            reply.message.contains("a post has 1 to 280 characters"),
            "{}",
            reply.message
        );
    }
    // None of the refused posts reached anyone.
    carol.expect_nothing().await;
    alice.expect_nothing().await;
    // At the limit it passes (counted in characters, not bytes).
    let longest = "é".repeat(280);
    alice
        .request("refreshData", json!({ "text": longest }))
        .await
        .expect("280 characters is a post");
    let post = carol.expect("refreshData").await;
    assert_eq!(html(&post), format!("<li><b>alice</b> {longest}</li>"));
    assert_eq!(site.hub.stats().fanouts, 1, "{:?}", site.hub.stats());
}

#[tokio::test]
async fn a_team_switch_reaches_the_live_connection_without_a_reconnect() {
    let site = site().await;
    let bob_cookie = site.login("bob", "red").await;
    let mut bob = site
        .app
        .connect("/dashboard")
        .cookie(&bob_cookie)
        .named("bob")
        .await;
    let mut carol = site.user("carol", "blue", "/dashboard").await;
    listed(&mut carol, &[("bob", "red"), ("carol", "blue")]).await;
    let connection = bob.client().connection().to_owned();

    let response = site
        .app
        .post_form("/team", &[("team", "blue")], Some(&bob_cookie))
        .await;
    assert_eq!(
        (response.status, response.headers.get("location")),
        (303, Some(&"/dashboard".parse().expect("a header value"))),
        "{response:?}"
    );

    // Team red's update reaches nobody now; team blue's reaches bob on the connection he had.
    let red = site
        .hub
        .request("/dashboard", "refreshData", json!({ "team": "red" }))
        .await
        .expect("red refresh");
    assert_eq!((red.matched, red.passed), (2, 0), "{red:?}");
    bob.expect_nothing().await;
    let blue = site
        .hub
        .request("/dashboard", "refreshData", json!({ "team": "blue" }))
        .await
        .expect("blue refresh");
    assert_eq!((blue.matched, blue.passed), (2, 2), "{blue:?}");
    let r = bob.expect("refreshData").await;
    assert!(
        html(&r).contains("Plan the offsite") && !html(&r).contains("Ship the sync framework"),
        "bob's next update is team blue's list: {}",
        html(&r)
    );
    bob.expect_nothing().await;
    assert_eq!(bob.client().connection(), connection);
    assert_eq!(bob.client().reconnects(), 0);
    carol.expect("refreshData").await;
    carol.expect_nothing().await;

    // Others see the new team; and so does the next page bob loads.
    listed(&mut carol, &[("bob", "blue"), ("carol", "blue")]).await;
    assert_eq!(
        presence(&site.hub, "/dashboard"),
        [
            ("bob".to_owned(), json!({ "name": "bob", "team": "blue" })),
            (
                "carol".to_owned(),
                json!({ "name": "carol", "team": "blue" })
            ),
        ]
    );
    let page = site.app.get("/dashboard", Some(&bob_cookie)).await;
    assert!(
        page.body
            .contains(r#"Team <span class="team">blue</span> tasks"#),
        "{page:?}"
    );
}

#[tokio::test]
async fn who_is_here_lists_each_user_once_with_their_name_and_team() {
    let site = site().await;
    let alice_cookie = site.login("alice", "red").await;
    let tab = || {
        site.app
            .connect("/dashboard")
            .cookie(&alice_cookie)
            .named("alice")
    };
    let alice_tab = tab().await;
    let mut alice_other_tab = tab().await;
    let mut carol = site.user("carol", "blue", "/dashboard").await;
    let bob = site.user("bob", "red", "/home").await;

    let list = listed(&mut carol, &[("alice", "red"), ("carol", "blue")]).await;
    assert_eq!(list.path, "/dashboard");
    listed(&mut alice_other_tab, &[("alice", "red"), ("carol", "blue")]).await;
    let alice = (
        "alice".to_owned(),
        json!({ "name": "alice", "team": "red" }),
    );
    let carol_here = (
        "carol".to_owned(),
        json!({ "name": "carol", "team": "blue" }),
    );
    assert_eq!(site.hub.present("/dashboard"), 3, "three connections");
    assert_eq!(
        presence(&site.hub, "/dashboard"),
        [alice.clone(), carol_here.clone()],
        "two users, alice once"
    );
    assert_eq!(
        presence(&site.hub, "/home"),
        [("bob".to_owned(), json!({ "name": "bob", "team": "red" }))]
    );
    // The view is what the app chose to show: no session id.
    let sid = alice_cookie.trim_start_matches("sid=");
    assert!(
        site.hub
            .presence("/dashboard")
            .iter()
            .all(|p| !p.view_json().contains(sid))
    );

    // alice stays while she has a tab there, and leaves with the last.
    alice_tab.close().await;
    assert_eq!(
        presence(&site.hub, "/dashboard"),
        [alice.clone(), carol_here.clone()]
    );
    alice_other_tab.close().await;
    assert_eq!(presence(&site.hub, "/dashboard"), [carol_here]);
    listed(&mut carol, &[("carol", "blue")]).await;
    bob.close().await;
    assert!(presence(&site.hub, "/home").is_empty());
}

#[tokio::test]
async fn metrics_count_a_new_task_by_route_and_sync_and_the_users_on_the_dashboard() {
    let site = site().await;
    let alice = site.login("alice", "red").await;
    let mut bob = site.user("bob", "red", "/dashboard").await;
    let _carol = site.user("carol", "blue", "/dashboard").await;
    let form = [("text", "Ship the metrics")];
    let response = site
        .app
        .post_form("/dashboard/tasks", &form, Some(&alice))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    bob.expect("refreshData").await;

    let scraped = site.app.get("/metrics", None).await;
    assert_eq!(scraped.status, 200);
    let value = |series: &str| -> f64 {
        let line = scraped
            .body
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{}", scraped.body));
        line.rsplit_once(' ')
            .expect("a sample")
            .1
            .parse()
            .expect("a number")
    };
    let sync = r#"{route="/dashboard",sync="refreshData"}"#;
    assert_eq!(value(&format!("sync_triggers_total{sync}")), 1.0);
    // bob and carol were on the page; the team filter let bob's through only.
    assert_eq!(value(&format!("sync_recipients_matched_total{sync}")), 2.0);
    assert_eq!(value(&format!("sync_deliveries_total{sync}")), 1.0);
    assert_eq!(value(r#"sync_users{route="/dashboard"}"#), 2.0);
    assert_eq!(value(r#"sync_connections{transport="websocket"}"#), 2.0);
}
