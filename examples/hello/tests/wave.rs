//! The quick start works as the README says: two users on `/`, one waves, both hear it; and the README's
//! code is this crate's code, block for block.

use std::time::Duration;

use serde_json::json;
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_wave_reaches_every_window_on_the_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(async move { axum::serve(listener, hello::app()).await });
    let url = format!("ws://{addr}/_sync/ws");
    let connect = || SyncClient::connect(&url, ConnectOptions::new().path("/"));
    let mut alice = connect().await.expect("alice connects");
    let mut bob = connect().await.expect("bob connects");
    let outcome = alice
        .request("wave", json!({ "from": "alice" }))
        .await
        .expect("accepted");
    assert_eq!((outcome.matched, outcome.delivered), (2, 2));
    for window in [&mut alice, &mut bob] {
        let reaction = timeout(WAIT, window.next_reaction())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(
            reaction.reaction,
            json!({ "kind": "event", "name": "wave", "payload": "alice" })
        );
    }
    // Data of the wrong shape is refused before any fan-out.
    let refused = alice.request("wave", json!({ "name": "x" })).await;
    assert!(refused.is_err(), "{refused:?}");
    server.abort();
}

#[test]
fn the_readme_shows_this_crate_s_code() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).expect("the README");
    let mut checked = 0;
    // Each block of the quick start starts with `// <path in the crate>` (or `# ` for TOML).
    for block in readme.split("```").skip(1).step_by(2) {
        let Some((_lang, body)) = block.split_once('\n') else {
            continue;
        };
        let Some(file) = body
            .lines()
            .next()
            .and_then(|first| first.strip_prefix("// hello/"))
        else {
            continue;
        };
        let shown: String = body.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let actual = std::fs::read_to_string(crate_dir.join(file))
            .unwrap_or_else(|e| panic!("README shows hello/{file}: {e}"));
        assert_eq!(
            shown, actual,
            "README's hello/{file} differs from the crate's"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "the README's quick start shows {checked} files of hello/"
    );
}
