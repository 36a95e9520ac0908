//! The example over real HTTP and WebSockets (no browser): log in, connect with the cookie, and check
//! the team filter, the wall's authors and refusals, a team switch while connected, and who is here.

use std::net::SocketAddr;
use std::time::Duration;

use example_dashboard::{App, Timeouts, hub, router, serve};
use serde_json::json;
use sync_runtime::client::{ClientError, ConnectOptions, ReceivedReaction, Status, SyncClient};
use sync_runtime::{ErrorCode, SyncHub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

/// The example served on a loopback port, with its hub.
struct Site {
    addr: SocketAddr,
    hub: SyncHub,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn site() -> Site {
    let app = App::seeded();
    let hub = hub(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve(
        listener,
        router(&hub),
        Timeouts::default(),
        std::future::pending(),
    ));
    Site { addr, hub, server }
}

impl Site {
    async fn http(&self, request: String) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
            .await
            .expect("a response in time")
            .expect("read");
        response
    }

    /// `POST` a form to `path`, with the session cookie when given; the whole response.
    async fn post_form(&self, path: &str, cookie: Option<&str>, body: &str) -> String {
        let addr = self.addr;
        let cookie = cookie.map_or_else(String::new, |c| format!("Cookie: {c}\r\n"));
        self.http(format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// Log in through the form; the `sid=...` cookie.
    async fn login(&self, name: &str, team: &str) -> String {
        let response = self
            .post_form("/login", None, &format!("name={name}&team={team}"))
            .await;
        let cookie = response
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .expect("a session cookie");
        cookie.split(';').next().expect("name=value").to_owned()
    }

    /// A live connection with `cookie`, placed on `path`.
    async fn connect(&self, cookie: &str, path: &str) -> SyncClient {
        SyncClient::connect(
            &format!("ws://{}/_sync/ws", self.addr),
            ConnectOptions::new().header("Cookie", cookie).path(path),
        )
        .await
        .expect("the cookie authenticates")
    }
}

async fn next_reaction(client: &mut SyncClient) -> ReceivedReaction {
    tokio::time::timeout(WAIT, client.next_reaction())
        .await
        .expect("a reaction in time")
        .expect("open")
}

/// The `html` of `client`'s next reaction.
async fn next_html(client: &mut SyncClient) -> String {
    let r = next_reaction(client).await;
    r.reaction["html"]
        .as_str()
        .expect("an html swap")
        .to_owned()
}

/// Wait until `client`'s list of who is on its page is `expected` (user key, name, team), in any order.
async fn listed(client: &mut SyncClient, expected: &[(&str, &str)]) -> Status {
    let mut want: Vec<serde_json::Value> = expected
        .iter()
        .map(|(name, team)| json!([name, { "name": name, "team": team }]))
        .collect();
    want.sort_by_key(|v| v.to_string());
    let status = tokio::time::timeout(
        WAIT,
        client.status_until(|s| {
            s.presence.as_ref().is_some_and(|list| {
                let mut got: Vec<serde_json::Value> = list
                    .users
                    .iter()
                    .map(|(user, view)| json!([user, view]))
                    .collect();
                got.sort_by_key(|v| v.to_string());
                list.count == expected.len() && got == want
            })
        }),
    )
    .await;
    match status {
        Ok(Some(status)) => status,
        _ => panic!(
            "never listed {expected:?}; last list: {:?}",
            client.presence()
        ),
    }
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

#[tokio::test]
async fn a_new_task_reaches_the_teams_members_only() {
    let site = site().await;
    let alice = site.login("alice", "red").await;
    let mut bob = site
        .connect(&site.login("bob", "red").await, "/dashboard")
        .await;
    let mut carol = site
        .connect(&site.login("carol", "blue").await, "/dashboard")
        .await;
    // No cookie, no connection.
    let refused = SyncClient::connect(
        &format!("ws://{}/_sync/ws", site.addr),
        ConnectOptions::new().path("/dashboard"),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status(), Some(401));

    let response = site
        .post_form("/dashboard/tasks", Some(&alice), "text=Review+the+PR")
        .await;
    assert!(
        response.contains(r#""delivered":1"#),
        "only bob is on /dashboard in team red: {response}"
    );
    let r = next_reaction(&mut bob).await;
    assert_eq!(r.reaction["selector"], "#tasks");
    assert!(
        r.reaction["html"]
            .as_str()
            .expect("html")
            .contains("Review the PR <small>by alice</small>")
    );

    // carol's next reaction is her own team's update: nothing of team red's came before it.
    site.hub
        .request("/dashboard", "refreshData", json!({ "team": "blue" }))
        .await
        .expect("blue refresh");
    let html = next_html(&mut carol).await;
    assert!(
        html.contains("Plan the offsite") && !html.contains("Review the PR"),
        "{html}"
    );
}

#[tokio::test]
async fn the_wall_names_the_author_the_server_knows_not_the_one_the_data_claims() {
    let site = site().await;
    let mut alice = site
        .connect(&site.login("alice", "red").await, "/home")
        .await;
    let mut carol = site
        .connect(&site.login("carol", "blue").await, "/home")
        .await;

    let outcome = alice
        .request(
            "refreshData",
            json!({ "text": "Hello <all>", "author": "mallory" }),
        )
        .await
        .expect("a post");
    assert_eq!((outcome.matched, outcome.delivered), (2, 2));
    for client in [&mut carol, &mut alice] {
        assert_eq!(
            next_html(client).await,
            "<li><b>alice</b> Hello &lt;all&gt;</li>"
        );
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
    assert_eq!(
        next_html(&mut carol).await,
        "<li><b>server</b> Maintenance at noon</li>"
    );
}

#[tokio::test]
async fn a_bad_post_is_refused_with_bad_data_before_any_fan_out() {
    let site = site().await;
    let mut alice = site
        .connect(&site.login("alice", "red").await, "/home")
        .await;
    let mut carol = site
        .connect(&site.login("carol", "blue").await, "/home")
        .await;

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
    // At the limit it passes (counted in characters, not bytes); and it is the first thing carol gets:
    // none of the refused posts reached anyone.
    let longest = "é".repeat(280);
    alice
        .request("refreshData", json!({ "text": longest }))
        .await
        .expect("280 characters is a post");
    assert_eq!(
        next_html(&mut carol).await,
        format!("<li><b>alice</b> {longest}</li>")
    );
    assert_eq!(site.hub.stats().fanouts, 1, "{:?}", site.hub.stats());
}

#[tokio::test]
async fn a_team_switch_reaches_the_live_connection_without_a_reconnect() {
    let site = site().await;
    let bob_cookie = site.login("bob", "red").await;
    let mut bob = site.connect(&bob_cookie, "/dashboard").await;
    let mut carol = site
        .connect(&site.login("carol", "blue").await, "/dashboard")
        .await;
    listed(&mut carol, &[("bob", "red"), ("carol", "blue")]).await;
    let connection = bob.connection().to_owned();

    let response = site
        .post_form("/team", Some(&bob_cookie), "team=blue")
        .await;
    assert!(
        response.starts_with("HTTP/1.1 303") && response.contains("location: /dashboard"),
        "{response}"
    );

    // Team red's update reaches nobody now; team blue's reaches bob on the connection he had.
    let red = site
        .hub
        .request("/dashboard", "refreshData", json!({ "team": "red" }))
        .await
        .expect("red refresh");
    assert_eq!((red.matched, red.passed), (2, 0), "{red:?}");
    let blue = site
        .hub
        .request("/dashboard", "refreshData", json!({ "team": "blue" }))
        .await
        .expect("blue refresh");
    assert_eq!((blue.matched, blue.passed), (2, 2), "{blue:?}");
    let html = next_html(&mut bob).await;
    assert!(
        html.contains("Plan the offsite") && !html.contains("Ship the sync framework"),
        "bob's next update is team blue's list: {html}"
    );
    assert_eq!(bob.connection(), connection);
    assert_eq!(bob.reconnects(), 0);

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
    let page = site
        .http(format!(
            "GET /dashboard HTTP/1.1\r\nHost: {}\r\nCookie: {bob_cookie}\r\nConnection: close\r\n\r\n",
            site.addr
        ))
        .await;
    assert!(
        page.contains(r#"Team <span class="team">blue</span> tasks"#),
        "{page}"
    );
}

#[tokio::test]
async fn who_is_here_lists_each_user_once_with_their_name_and_team() {
    let site = site().await;
    let alice_cookie = site.login("alice", "red").await;
    let alice_tab = site.connect(&alice_cookie, "/dashboard").await;
    let mut alice_other_tab = site.connect(&alice_cookie, "/dashboard").await;
    let mut carol = site
        .connect(&site.login("carol", "blue").await, "/dashboard")
        .await;
    let bob = site.connect(&site.login("bob", "red").await, "/home").await;

    let status = listed(&mut carol, &[("alice", "red"), ("carol", "blue")]).await;
    assert_eq!(status.presence.expect("a list").path, "/dashboard");
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
