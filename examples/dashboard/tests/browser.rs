//! The example app in real headless Chromium: `tests/browser/e2e.mjs` (Node + playwright-core) drives
//! four users in separate browser contexts; this test runs the server, restarts it on the same port when
//! the script asks, and checks the script passed. Screenshots land in `target/browser-screenshots/`.
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser` (`.ci/run` does both). Without them the test
//! says loudly that it was skipped; under CI (`CI` set) it fails instead.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use example_dashboard::{App, hub, router};

struct Server {
    hub: sync_runtime::SyncHub,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(app: &App, listener: tokio::net::TcpListener) -> Server {
    let hub = hub(app.clone());
    let router = router(app.clone(), &hub);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the server runs");
    });
    Server { hub, task }
}

fn missing_prerequisites(browser_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        missing.push(format!("Chromium at {chromium} (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_owned());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "playwright-core (cd {} && npm ci)",
            browser_dir.display()
        ));
    }
    missing
}

#[test]
fn two_browsers_stay_in_sync() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let browser_dir = workspace.join("tests/browser");
    let missing = missing_prerequisites(&browser_dir);
    if !missing.is_empty() {
        let message = format!("the browser tests need: {}", missing.join(", "));
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!(
            "\n{}\nSKIPPED: {message}\nRun `bash .ci/run`, or install them and rerun `cargo test -p example-dashboard --test browser`.\n{}\n",
            "!".repeat(72),
            "!".repeat(72)
        );
        return;
    }
    let shots: PathBuf = workspace.join("target/browser-screenshots");

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let app = App::seeded();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a free loopback port");
    let addr = listener.local_addr().expect("an address");
    let mut server = runtime.block_on(serve(&app, listener));

    let mut node = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut stdin = node.stdin.take().expect("stdin");
    let stdout = BufReader::new(node.stdout.take().expect("stdout"));
    let mut restarted = false;
    for line in stdout.lines() {
        let line = line.expect("a line from node");
        println!("{line}");
        if line == "RESTART" {
            // Stop the server the way a deploy does (clients get "going away"), then start a new one on
            // the same port with the same database.
            runtime.block_on(async {
                assert_eq!(server.hub.shutdown(Duration::from_secs(5)).await, 0);
                server.task.abort();
                let _ = (&mut server.task).await;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .expect("the same port again");
                server = serve(&app, listener).await;
            });
            restarted = true;
            writeln!(stdin, "RESTARTED").expect("answer node");
        }
    }
    let status = node.wait().expect("node exits");
    assert!(
        status.success(),
        "the browser scenarios failed (see the output above)"
    );
    assert!(restarted, "the script never asked for the restart");
    for shot in [
        "alice-dashboard.png",
        "bob-dashboard.png",
        "carol-dashboard.png",
        "homer-home.png",
        "bob-after-restart.png",
    ] {
        assert!(shots.join(shot).exists(), "screenshot {shot} was saved");
    }
}
