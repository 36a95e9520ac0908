//! The helpers over real sockets, each scenario over both transports: what they pass, and that they fail,
//! saying why, when something unexpected arrived or what was expected did not.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;

use super::{TestServer, Transport};
use crate::registry::Registration;
use crate::{ClientCx, ErrorCode, Filter, Identity, Reaction, ServerCx, SyncHub};

#[derive(serde::Deserialize, serde::Serialize)]
struct Note {
    n: u64,
}

fn react_note(cx: ClientCx<Note, u64>) -> Reaction {
    Reaction::event("note", cx.server)
}

/// `odd` gets odd numbers only; everyone else gets all.
fn filter_note(cx: ServerCx<Note, String, ()>) -> Filter<u64> {
    if cx.recipient.user.as_ref() == "odd" && cx.data.n.is_multiple_of(2) {
        Filter::Skip
    } else {
        Filter::Deliver(cx.data.n)
    }
}

/// Released by the test that holds a `note` of 1000 in its gate.
static HOLD: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A `note` of 1000 waits for [`HOLD`]: the sender's next messages wait behind it.
async fn gate_note(cx: crate::GateCx<Note, String, ()>) -> Result<(), crate::Refusal> {
    if cx.data.n == 1000 {
        HOLD.notified().await;
    }
    Ok(())
}

static NOTE: Registration = Registration {
    route: "/room/[id]",
    name: "note",
    client_file: "src/room/[id]/_sync/note_client.rs",
    server_file: Some("src/room/[id]/_sync/note_server.rs"),
    build: || {
        crate::handler::SyncDef::new(react_note)
            .filter_sync(filter_note)
            .gate_async(gate_note)
            .finish()
    },
    data_json: || None,
};

fn react_shout(cx: ClientCx<Note, ()>) -> Reaction {
    Reaction::event("shout", cx.data.n)
}

static SHOUT: Registration = Registration {
    route: "/room/[id]",
    name: "shout",
    client_file: "src/room/[id]/_sync/shout_client.rs",
    server_file: None,
    build: || crate::handler::SyncDef::new(react_shout).finish(),
    data_json: || None,
};

/// A hub whose users are named by their token or their `sid` cookie, listed by name, with `note` and
/// `shout` on `/room/[id]`; and the app served with it.
async fn serve() -> (SyncHub, TestServer) {
    let hub = SyncHub::builder()
        .authenticate(|req| {
            let name = req.token().or(req.cookie("sid")).map(str::to_owned);
            async move {
                let name = name.ok_or_else(|| crate::Refusal::new("log in first"))?;
                Ok(Identity::new(name.clone(), name))
            }
        })
        .presence(|name: &String| name.clone())
        .presence_window(Duration::from_millis(10))
        .build_with(&[&NOTE, &SHOUT])
        .expect("the test syncs fit");
    let app = TestServer::start(hub.attach(site())).await;
    (hub, app)
}

/// A login form that sets `sid=<name>`, and a page that says whose cookie came with it.
fn site() -> axum::Router {
    use axum::http::{HeaderMap, header};
    let login = |body: String| async move {
        let name = form_urlencoded::parse(body.as_bytes())
            .find(|(field, _)| field == "name")
            .map(|(_, name)| name.into_owned())
            .unwrap_or_default();
        let cookie = format!("sid={name}; Path=/; HttpOnly");
        ([(header::SET_COOKIE, cookie)], "logged in")
    };
    let whoami = |headers: HeaderMap| async move {
        let cookie = headers.get(header::COOKIE).and_then(|c| c.to_str().ok());
        cookie.unwrap_or("nobody").to_owned()
    };
    axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/whoami", axum::routing::get(whoami))
}

/// The message `fut` failed with; fails if it passed.
async fn failure(fut: impl Future<Output = ()>) -> String {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(()) => panic!("the expectation passed"),
        Err(panic) => match panic.downcast::<String>() {
            Ok(message) => *message,
            Err(panic) => panic.downcast_ref::<&str>().map_or_else(
                || "a panic without a message".to_owned(),
                |s| (*s).to_owned(),
            ),
        },
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

/// One `#[tokio::test]` per transport for each `async fn scenario(transport: Transport)`.
macro_rules! over_both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod ws {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Transport::WebSocket).await
            })*
        }
        mod sse {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Transport::Sse).await
            })*
        }
    };
}

over_both_transports!(
    each_user_gets_what_was_meant_for_them_and_nothing_else,
    expect_nothing_fails_naming_what_arrived,
    expect_times_out_saying_what_arrived_instead,
    expect_fails_on_another_reaction_saying_which,
    a_user_requests_and_hears_refusals,
    presence_is_awaited_and_its_failure_shows_the_last_list,
    users_connect_by_cookie_and_without_credentials_are_refused,
    a_user_reopens_and_a_closed_connection_is_expected,
    errors_and_resyncs_are_expected_by_name,
);

async fn each_user_gets_what_was_meant_for_them_and_nothing_else(transport: Transport) {
    let (hub, app) = serve().await;
    let mut even = app.connect("/room/1").token("even").over(transport).await;
    let mut odd = app.connect("/room/1").token("odd").over(transport).await;
    let mut elsewhere = app.connect("/room/2").token("away").over(transport).await;

    let outcome = hub
        .request("/room/1", "note", json!({ "n": 2 }))
        .await
        .expect("a note");
    assert_eq!((outcome.matched, outcome.delivered), (2, 1));
    let note = even.expect("note").await;
    assert_eq!(
        (note.path.as_str(), &note.reaction["payload"]),
        ("/room/1", &json!(2))
    );
    for user in [&mut even, &mut odd, &mut elsewhere] {
        user.expect_nothing().await;
    }
    hub.request("/room/1", "note", json!({ "n": 3 }))
        .await
        .expect("a note");
    for user in [&mut even, &mut odd] {
        assert_eq!(user.expect("note").await.reaction["payload"], 3);
        user.expect_nothing().await;
    }
    elsewhere.expect_nothing().await;
}

async fn expect_nothing_fails_naming_what_arrived(transport: Transport) {
    let (hub, app) = serve().await;
    let mut alice = app.connect("/room/1").token("alice").over(transport).await;
    // Awaited: the reaction is queued before the ping that `expect_nothing` sends. No sleep needed.
    hub.request("/room/1", "shout", json!({ "n": 7 }))
        .await
        .expect("a shout");
    let message = failure(alice.expect_nothing()).await;
    assert_mentions(
        &message,
        &[
            "alice",
            &transport.to_string(),
            "at /room/1",
            "expected nothing, but received",
            "`shout` (#1 on /room/1)",
            r#""payload":7"#,
        ],
    );
    // An error frame that answers no request is something too.
    alice
        .client()
        .send_raw("not JSON")
        .await
        .expect("the connection is open");
    let message = failure(alice.expect_nothing()).await;
    assert_mentions(&message, &["expected nothing", "error `malformed`"]);
    // What was reported is not reported again.
    alice.expect_nothing().await;
}

/// A `pong` answering a ping sent as a raw frame must not pass for the answer to `expect_nothing`'s own
/// ping. Two requests held in their gates order it on the server: the raw ping is answered when the
/// first is released, `expect_nothing`'s own only when the second is, after a reaction was queued.
/// (Over a WebSocket: an SSE client waits for each `POST` to be answered before it sends the next.)
#[tokio::test]
async fn expect_nothing_is_not_fooled_by_the_pong_of_a_raw_ping() {
    let (hub, app) = serve().await;
    let mut alice = app.connect("/room/1").token("alice").await;
    for raw in [
        r#"{"t":"req","name":"note","data":{"n":1000},"echo":false}"#,
        r#"{"t":"ping"}"#,
        r#"{"t":"req","name":"note","data":{"n":1000},"echo":false}"#,
    ] {
        alice
            .client()
            .send_raw(raw)
            .await
            .expect("the connection is open");
    }
    let checking = alice.expect_nothing();
    tokio::pin!(checking);
    // Its ping goes out now, behind the held requests.
    assert!(futures_util::poll!(&mut checking).is_pending());
    // The raw ping is answered; its `pong` must not end the wait. (A bound on something that must not
    // happen: without the fix it ends within a millisecond.)
    HOLD.notify_one();
    let early = tokio::time::timeout(Duration::from_millis(200), &mut checking).await;
    assert!(early.is_err(), "expect_nothing took the raw ping's pong");
    hub.request("/room/1", "shout", json!({ "n": 1 }))
        .await
        .expect("a shout");
    HOLD.notify_one();
    let message = failure(checking).await;
    assert_mentions(&message, &["expected nothing, but received", "`shout`"]);
}

async fn expect_times_out_saying_what_arrived_instead(transport: Transport) {
    let (hub, app) = serve().await;
    let app = app.timeout(Duration::from_millis(300));
    let mut odd = app.connect("/room/1").token("odd").over(transport).await;
    hub.request("/room/1", "note", json!({ "n": 1 }))
        .await
        .expect("a note");
    odd.expect("note").await;
    odd.client()
        .send_raw(r#"{"t":"unheard-of"}"#)
        .await
        .expect("the connection is open");
    // Skipped by the filter: it never comes.
    hub.request("/room/1", "note", json!({ "n": 2 }))
        .await
        .expect("a note");
    let message = failure(async {
        odd.expect("note").await;
    })
    .await;
    assert_mentions(
        &message,
        &[
            "odd (",
            "at /room/1",
            "expected reaction `note` within 300ms, but no reaction arrived",
            "Before that it received, oldest first",
            "`note` (#1 on /room/1)",
            "error `unknown_type`",
        ],
    );
}

async fn expect_fails_on_another_reaction_saying_which(transport: Transport) {
    let (hub, app) = serve().await;
    let mut alice = app.connect("/room/1").token("alice").over(transport).await;
    hub.request("/room/1", "shout", json!({ "n": 4 }))
        .await
        .expect("a shout");
    let message = failure(async {
        alice.expect("note").await;
    })
    .await;
    assert_mentions(
        &message,
        &[
            "alice (",
            "expected reaction `note`, but the next one was `shout` (#1 on /room/1)",
        ],
    );
}

async fn a_user_requests_and_hears_refusals(transport: Transport) {
    let (_hub, app) = serve().await;
    let mut alice = app.connect("/room/1").token("alice").over(transport).await;
    let mut bob = app.connect("/room/1").token("bob").over(transport).await;
    // The outcome comes after the fan-out queued every reaction: bob's `expect_nothing` covers it.
    let outcome = alice
        .request_with("shout", json!({ "n": 1 }), false)
        .await
        .expect("a shout");
    assert_eq!(outcome.delivered, 1);
    assert_eq!(bob.expect("shout").await.reaction["payload"], 1);
    alice.expect_nothing().await;
    bob.expect_nothing().await;
    let refused = alice
        .request("shout", json!({ "n": "one" }))
        .await
        .expect_err("not a number");
    assert_eq!(refused.code(), Some(ErrorCode::BadData));
    alice.navigate("/room/2").await;
    assert_eq!(alice.path(), "/room/2");
    alice
        .request("shout", json!({ "n": 2 }))
        .await
        .expect("a shout");
    alice.expect("shout").await;
    bob.expect_nothing().await;
}

async fn presence_is_awaited_and_its_failure_shows_the_last_list(transport: Transport) {
    let (_hub, app) = serve().await;
    let app = app.timeout(Duration::from_millis(300));
    let mut alice = app.connect("/room/1").token("alice").over(transport).await;
    let bob = app.connect("/room/1").token("bob").over(transport).await;
    let list = alice.expect_presence(&["bob", "alice"]).await;
    assert_eq!(list.users.len(), 2);
    bob.close().await;
    alice.expect_presence(&["alice"]).await;
    let message = failure(async {
        alice.expect_presence(&["alice", "carol"]).await;
    })
    .await;
    assert_mentions(
        &message,
        &[
            "alice (",
            r#"expected the users on /room/1 to be ["alice", "carol"] within 300ms"#,
            r#"the last list: 1 in all: alice "alice""#,
        ],
    );
}

async fn users_connect_by_cookie_and_without_credentials_are_refused(transport: Transport) {
    let (hub, app) = serve().await;
    let mut carol = app
        .connect("/room/1")
        .cookie("theme=dark")
        .cookie("sid=carol")
        .over(transport)
        .await;
    assert_eq!(carol.name(), "the user with cookie theme=dark; sid=carol");
    assert_eq!(hub.presence("/room/1")[0].user(), "carol");
    hub.request("/room/1", "shout", json!({ "n": 1 }))
        .await
        .expect("a shout");
    carol.expect("shout").await;
    let refused = app
        .connect("/room/1")
        .over(transport)
        .try_connect()
        .await
        .expect_err("no credentials");
    assert_eq!(refused.status(), Some(401), "{refused}");
    let message = failure(async {
        app.connect("/room/1")
            .named("mallory")
            .over(transport)
            .await;
    })
    .await;
    assert_mentions(
        &message,
        &["mallory could not connect at /room/1 over", "401"],
    );
}

async fn a_user_reopens_and_a_closed_connection_is_expected(transport: Transport) {
    let (hub, app) = serve().await;
    let alice = app.connect("/room/1").token("alice").over(transport).await;
    let mut alice = alice.reopen().await;
    assert_eq!(hub.present("/room/1"), 1, "the first connection is gone");
    hub.request("/room/1", "shout", json!({ "n": 1 }))
        .await
        .expect("a shout");
    alice.expect("shout").await;
    assert_eq!(hub.disconnect_user("alice"), 1);
    let (code, _reason) = alice.expect_closed().await;
    assert_eq!(code, crate::close_code::REVOKED);
    let message = failure(alice.expect_nothing()).await;
    assert_mentions(
        &message,
        &["expected nothing, but the connection was closed"],
    );
}

async fn errors_and_resyncs_are_expected_by_name(transport: Transport) {
    let (_hub, app) = serve().await;
    let app = app.timeout(Duration::from_millis(300));
    let mut alice = app.connect("/room/1").token("alice").over(transport).await;
    alice
        .client()
        .send_raw("not JSON")
        .await
        .expect("the connection is open");
    let error = alice.expect_error(ErrorCode::Malformed).await;
    assert_eq!(error.id, None);
    alice.expect_nothing().await;
    alice
        .client()
        .send_raw("not JSON either")
        .await
        .expect("the connection is open");
    let message = failure(async {
        alice.expect_error(ErrorCode::RateLimited).await;
    })
    .await;
    assert_mentions(
        &message,
        &["expected error `rate_limited`, but got error `malformed`"],
    );
    let message = failure(async {
        alice.expect_error(ErrorCode::Malformed).await;
    })
    .await;
    assert_mentions(
        &message,
        &[
            "expected error `malformed` within 300ms, but none arrived",
            "Before that it received, oldest first:\n  - error `malformed`",
        ],
    );

    // A cursor from a history this server never had: the page must reload its data.
    let stale = || {
        app.connect("/room/1")
            .token("bob")
            .cursor("elsewhere:7")
            .over(transport)
    };
    let mut bob = stale().await;
    bob.expect_resync().await;
    bob.expect_nothing().await;
    let mut bob = stale().await;
    let message = failure(bob.expect_nothing()).await;
    assert_mentions(&message, &["expected nothing, but received:\n  - 1 resync"]);
}

#[tokio::test]
async fn a_session_cookie_comes_from_the_login_form() {
    let (hub, app) = serve().await;
    let login = app
        .post_form("/login", &[("name", "dora+kim"), ("team", "red")], None)
        .await;
    assert_eq!((login.status, login.body.as_str()), (200, "logged in"));
    assert_eq!(login.cookie("theme"), None);
    let sid = login.cookie("sid").expect("a session cookie");
    assert_eq!(sid, "sid=dora+kim", "the form was encoded, and decoded");
    let page = app.get("/whoami", Some(&sid)).await;
    assert_eq!(page.body, "sid=dora+kim");
    assert_eq!(app.get("/whoami", None).await.body, "nobody");
    assert_eq!(app.get("/nowhere", None).await.status, 404);
    let mut dora = app.connect("/room/1").cookie(sid).sse().await;
    assert_eq!(hub.presence("/room/1")[0].user(), "dora+kim");
    hub.request("/room/1", "shout", json!({ "n": 1 }))
        .await
        .expect("a shout");
    dora.expect("shout").await;
}
