//! The example over real HTTP and WebSockets (no browser): log in, connect with the cookie, add a task,
//! and check the team filter.

use std::time::Duration;

use example_dashboard::{App, Timeouts, hub, router, serve};
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

async fn http(addr: std::net::SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .expect("read");
    response
}

/// Log in through the form; the `sid=...` cookie.
async fn login(addr: std::net::SocketAddr, name: &str, team: &str) -> String {
    let body = format!("name={name}&team={team}");
    let response = http(
        addr,
        format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn a_new_task_reaches_the_teams_members_only() {
    let app = App::seeded();
    let hub = hub(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve(
        listener,
        router(app, &hub),
        Timeouts::default(),
        std::future::pending(),
    ));

    let url = format!("ws://{addr}/_sync/ws");
    let connect = |cookie: String| {
        let url = url.clone();
        async move {
            SyncClient::connect(
                &url,
                ConnectOptions::new()
                    .header("Cookie", cookie)
                    .path("/dashboard"),
            )
            .await
            .expect("the cookie authenticates")
        }
    };
    let alice = login(addr, "alice", "red").await;
    let mut bob = connect(login(addr, "bob", "red").await).await;
    let mut carol = connect(login(addr, "carol", "blue").await).await;
    // No cookie, no connection.
    let refused = SyncClient::connect(&url, ConnectOptions::new().path("/dashboard"))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401));

    let body = "text=Review+the+PR";
    let response = http(
        addr,
        format!(
            "POST /dashboard/tasks HTTP/1.1\r\nHost: {addr}\r\nCookie: {alice}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(
        response.contains(r#""delivered":1"#),
        "only bob is on /dashboard in team red: {response}"
    );
    let r = tokio::time::timeout(WAIT, bob.next_reaction())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(r.reaction["selector"], "#tasks");
    assert!(
        r.reaction["html"]
            .as_str()
            .expect("html")
            .contains("Review the PR <small>by alice</small>")
    );

    // carol's next reaction is her own team's update: nothing of team red's came before it.
    hub.request(
        "/dashboard",
        "refreshData",
        serde_json::json!({ "team": "blue" }),
    )
    .await
    .expect("blue refresh");
    let r = tokio::time::timeout(WAIT, carol.next_reaction())
        .await
        .expect("in time")
        .expect("open");
    let html = r.reaction["html"].as_str().expect("html");
    assert!(
        html.contains("Plan the offsite") && !html.contains("Review the PR"),
        "{html}"
    );
    server.abort();
}
