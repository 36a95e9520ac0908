//! A server file's per-trigger work: `prepare` once per trigger, the filter once per `class`, and async
//! filters a bounded number at a time under their deadline.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::registry::Registration;
use crate::test_support::{Note, TestClient, token_hub};
use crate::{ClientCx, Filter, PrepareCx, Reaction, ServerCx, SyncHub};

/// Calls of each handler, per sync (each test has its own syncs, so the counts do not mix).
#[derive(Default)]
struct Calls {
    prepare: AtomicUsize,
    class: AtomicUsize,
    filter: AtomicUsize,
}

fn react_team(cx: ClientCx<Note, String>) -> Reaction {
    Reaction::event("team", json!({ "n": cx.data.n, "team": cx.server }))
}

/// A user's team: the first letter of the name (`a1` is on team `a`).
fn team(user: &str) -> String {
    user[..1].to_owned()
}

async fn connect(hub: &SyncHub, users: &[&str]) -> Vec<TestClient> {
    let mut clients = Vec::new();
    for user in users {
        let mut client = TestClient::connect(hub, user, "/room/1").await;
        client.next_of("located").await;
        clients.push(client);
    }
    clients
}

static PREPARED: Calls = Calls {
    prepare: AtomicUsize::new(0),
    class: AtomicUsize::new(0),
    filter: AtomicUsize::new(0),
};

/// Once per trigger: the teams allowed to see note `n` (odd notes: team `a` only).
async fn prepare_allowed(cx: PrepareCx<Note, String, ()>) -> Result<HashSet<String>, String> {
    PREPARED.prepare.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    if cx.data.n == 13 {
        return Err("the database is down".to_owned());
    }
    let teams: &[&str] = if cx.data.n % 2 == 1 {
        &["a"]
    } else {
        &["a", "b"]
    };
    Ok(teams.iter().map(|t| (*t).to_owned()).collect())
}

fn filter_allowed(cx: ServerCx<Note, String, (), HashSet<String>>) -> Filter<String> {
    PREPARED.filter.fetch_add(1, Ordering::SeqCst);
    let team = team(&cx.recipient.user);
    if cx.prepared.contains(&team) {
        Filter::Deliver(team)
    } else {
        Filter::Skip
    }
}

static ALLOWED: Registration = server_sync("allowed", || {
    crate::handler::SyncDef::new(react_team)
        .prepare_async(prepare_allowed)
        .filter_sync(filter_allowed)
        .finish()
});

/// A sync on `/room/[id]` with a server file.
const fn server_sync(
    name: &'static str,
    build: fn() -> crate::handler::ErasedSync,
) -> Registration {
    Registration {
        route: "/room/[id]",
        name,
        client_file: "src/room/[id]/_sync/x_client.rs",
        server_file: Some("src/room/[id]/_sync/x_server.rs"),
        build,
        data_json: || None,
    }
}

#[tokio::test]
async fn prepare_runs_once_per_trigger_and_every_filter_reads_what_it_returned() {
    let hub = token_hub(&[&ALLOWED], |b| b);
    // Nobody on the path: no recipient, so no `prepare` either.
    let outcome = hub
        .request("/room/1", "allowed", json!({ "n": 2 }))
        .await
        .expect("accepted");
    assert_eq!(outcome.matched, 0);
    assert_eq!(
        PREPARED.prepare.load(Ordering::SeqCst),
        0,
        "prepare ran for nobody"
    );

    let mut clients = connect(&hub, &["a1", "a2", "b1", "c1"]).await;
    let outcome = hub
        .request("/room/1", "allowed", json!({ "n": 2 }))
        .await
        .expect("accepted");
    assert_eq!(
        (outcome.matched, outcome.passed, outcome.delivered),
        (4, 3, 3)
    );
    let outcome = hub
        .request("/room/1", "allowed", json!({ "n": 3 }))
        .await
        .expect("accepted");
    assert_eq!(
        (outcome.matched, outcome.passed, outcome.delivered),
        (4, 2, 2)
    );
    assert_eq!(
        PREPARED.prepare.load(Ordering::SeqCst),
        2,
        "once per trigger"
    );
    assert_eq!(
        PREPARED.filter.load(Ordering::SeqCst),
        8,
        "once per recipient"
    );
    for (client, expected) in clients.iter_mut().zip([&[2, 3][..], &[2, 3], &[2], &[]]) {
        for n in expected {
            let reaction = client.next_of("reaction").await;
            assert_eq!(reaction["reaction"]["payload"]["n"], *n);
        }
        assert!(!client.has_frame(), "nothing more");
    }

    // A `prepare` that fails skips everyone; it is counted once, not once per recipient.
    let outcome = hub
        .request("/room/1", "allowed", json!({ "n": 13 }))
        .await
        .expect("accepted");
    assert_eq!(
        (outcome.matched, outcome.failed, outcome.delivered),
        (4, 4, 0)
    );
    assert_eq!(hub.stats().filter_errors, 1);
    assert_eq!(
        PREPARED.filter.load(Ordering::SeqCst),
        8,
        "no filter ran after it"
    );
}

static CLASSED: Calls = Calls {
    prepare: AtomicUsize::new(0),
    class: AtomicUsize::new(0),
    filter: AtomicUsize::new(0),
};

fn class_team(cx: &ServerCx<Note, String, ()>) -> String {
    CLASSED.class.fetch_add(1, Ordering::SeqCst);
    team(&cx.recipient.user)
}

/// Async, as a database query would be: team `c` has no access, team `e`'s lookup fails.
async fn filter_team(cx: ServerCx<Note, String, ()>) -> Result<Filter<String>, String> {
    CLASSED.filter.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    match team(&cx.recipient.user).as_str() {
        "c" => Ok(Filter::Skip),
        "e" => Err("no such team".to_owned()),
        team => Ok(Filter::Deliver(team.to_owned())),
    }
}

static BY_TEAM: Registration = server_sync("byTeam", || {
    crate::handler::SyncDef::new(react_team)
        .filter_async(filter_team)
        .class(class_team)
        .finish()
});

#[tokio::test]
async fn the_filter_runs_once_per_class_and_its_members_share_the_verdict() {
    let hub = token_hub(&[&BY_TEAM], |b| b);
    let users = ["a1", "b1", "a2", "c1", "e1", "b2", "a3", "e2"];
    let mut clients = connect(&hub, &users).await;
    let outcome = hub
        .request("/room/1", "byTeam", json!({ "n": 5 }))
        .await
        .expect("accepted");
    assert_eq!(
        CLASSED.class.load(Ordering::SeqCst),
        8,
        "class: once per recipient"
    );
    assert_eq!(
        CLASSED.filter.load(Ordering::SeqCst),
        4,
        "filter: once per class (a, b, c, e)"
    );
    assert_eq!(
        (
            outcome.matched,
            outcome.passed,
            outcome.delivered,
            outcome.failed
        ),
        (8, 5, 5, 2)
    );
    // The failing class counts once by reason, though both its members count as failed.
    assert_eq!(hub.stats().filter_errors, 1);
    for (client, user) in clients.iter_mut().zip(users) {
        match team(user).as_str() {
            "c" | "e" => {}
            team => {
                let reaction = client.next_of("reaction").await;
                assert_eq!(
                    reaction["reaction"]["payload"],
                    json!({ "n": 5, "team": team })
                );
            }
        }
        assert!(!client.has_frame(), "{user}: nothing more");
    }
}

/// Calls in flight now, and the most seen at once.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// A query that waits a little; user `x…` never answers.
async fn filter_waits(cx: ServerCx<Note, String, ()>) -> Filter<()> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    if cx.recipient.user.starts_with('x') {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Filter::Deliver(())
}

fn react_unit(cx: ClientCx<Note, ()>) -> Reaction {
    Reaction::event("waited", cx.data.n)
}

static WAITS: Registration = server_sync("waits", || {
    crate::handler::SyncDef::new(react_unit)
        .filter_async(filter_waits)
        .finish()
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_filters_wait_at_most_filter_concurrency_at_once_each_under_its_deadline() {
    let hub = token_hub(&[&WAITS], |b| {
        b.filter_concurrency(3)
            .filter_deadline(Duration::from_millis(200))
    });
    let mut users: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    users.extend(["x1".to_owned(), "x2".to_owned()]);
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let _clients = connect(&hub, &names).await;
    let outcome = hub
        .request("/room/1", "waits", json!({ "n": 1 }))
        .await
        .expect("accepted");
    assert_eq!(
        (outcome.matched, outcome.delivered, outcome.failed),
        (22, 20, 2),
        "the two that never answer overran their deadline; everyone else got it"
    );
    assert_eq!(hub.stats().filter_timeouts, 2);
    assert_eq!(
        MOST.load(Ordering::SeqCst),
        3,
        "never more than 3 waiting, and 3 reached"
    );
}

/// Counts every call: completes at once, without awaiting anything.
static AT_ONCE: AtomicUsize = AtomicUsize::new(0);

async fn filter_at_once(_cx: ServerCx<Note, String, ()>) -> Filter<()> {
    AT_ONCE.fetch_add(1, Ordering::SeqCst);
    Filter::Deliver(())
}

static QUICK: Registration = server_sync("quick", || {
    crate::handler::SyncDef::new(react_unit)
        .filter_async(filter_at_once)
        .finish()
});

#[tokio::test]
async fn async_filters_that_complete_at_once_all_run_in_one_fan_out_at_a_bound_of_one() {
    // At a bound of 1, 3,000 recipients whose filters complete at once all get the reaction, in one
    // fan-out: none of them waits for a slot.
    let hub = token_hub(&[&QUICK], |b| b.filter_concurrency(1));
    let mut clients = Vec::new();
    for i in 0..3000 {
        clients.push(TestClient::connect(&hub, &format!("q{i}"), "/room/1").await);
    }
    let outcome = hub
        .request("/room/1", "quick", json!({ "n": 9 }))
        .await
        .expect("accepted");
    assert_eq!((outcome.matched, outcome.delivered), (3000, 3000));
    assert_eq!(AT_ONCE.load(Ordering::SeqCst), 3000);
    let last = clients.last_mut().expect("clients");
    assert_eq!(last.next_of("reaction").await["reaction"]["payload"], 9);
}
