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

use example_dashboard::{App, Timeouts, hub, router};

struct Server {
    hub: sync_runtime::SyncHub,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(app: &App, listener: tokio::net::TcpListener) -> Server {
    let hub = hub(app.clone());
    let router = router(&hub);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(example_dashboard::serve(
        listener,
        router,
        Timeouts::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    Server { hub, task, stop }
}

impl Server {
    /// Stop the way a deploy does: clients get "going away", then every HTTP connection closes (as when
    /// the process exits; a kept-alive connection left open would still reach the old server).
    async fn stop(self) {
        assert_eq!(self.hub.shutdown(Duration::from_secs(5)).await, 0);
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

#[path = "../../../tests/browser/runner.rs"]
#[allow(
    dead_code,
    reason = "these tests run their scripts themselves (a restart, two nodes): only the turn is used"
)]
mod runner;

/// A browser test's turn, with where its files are.
struct Turn {
    workspace: PathBuf,
    browser_dir: PathBuf,
    _turn: runner::Turn,
}

/// Wait for `test`'s turn; `None` (after saying so loudly) when a prerequisite is missing outside CI.
fn browser_turn(test: &str) -> Option<Turn> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let browser_dir = runner::browser_dir(env!("CARGO_MANIFEST_DIR"));
    let turn = runner::turn(&browser_dir, test, Vec::new())?;
    Some(Turn {
        workspace,
        browser_dir,
        _turn: turn,
    })
}

#[test]
fn two_browsers_stay_in_sync() {
    browsers_stay_in_sync("websocket");
}

/// The same scenarios over SSE: two users told to use it, two whose WebSockets cannot open.
#[test]
fn two_browsers_stay_in_sync_over_sse() {
    browsers_stay_in_sync("sse");
}

fn browsers_stay_in_sync(transport: &str) {
    let Some(turn) = browser_turn("e2e.mjs") else {
        return;
    };
    let (workspace, browser_dir) = (&turn.workspace, &turn.browser_dir);
    let shots: PathBuf = workspace.join("target/browser-screenshots");

    let prefix = if transport == "sse" { "sse-" } else { "" };
    let screenshots = [
        "alice-dashboard.png",
        "bob-dashboard.png",
        "carol-dashboard.png",
        "homer-home.png",
        "bob-after-restart.png",
    ]
    .map(|shot| format!("{prefix}{shot}"));
    // A screenshot left by an earlier run must not pass for one of this run.
    for shot in &screenshots {
        let _ = std::fs::remove_file(shots.join(shot));
    }

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let app = App::seeded();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a free loopback port");
    let addr = listener.local_addr().expect("an address");
    let mut server = Some(runtime.block_on(serve(&app, listener)));

    let mut node = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&shots)
        .arg(transport)
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
                server.take().expect("a running server").stop().await;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .expect("the same port again");
                server = Some(serve(&app, listener).await);
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
    for shot in &screenshots {
        assert!(shots.join(shot).exists(), "screenshot {shot} was saved");
    }
}

/// Forwards loopback TCP to `upstream`; cuts every open connection when `cuts` changes.
async fn cutting_proxy(
    upstream: std::net::SocketAddr,
    cuts: tokio::sync::watch::Receiver<u64>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cut = cuts.clone();
            cut.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.changed() => {}
                }
            });
        }
    });
    addr
}

#[test]
fn the_browser_client_gets_every_reaction_once_across_cut_connections() {
    every_reaction_once_across_cuts("websocket");
}

/// The same over SSE: the stream and the `POST`s go through the cutting proxy.
#[test]
fn the_browser_client_gets_every_reaction_once_across_cut_connections_over_sse() {
    every_reaction_once_across_cuts("sse");
}

fn every_reaction_once_across_cuts(transport: &str) {
    let Some(turn) = browser_turn("resume.mjs") else {
        return;
    };
    let browser_dir = &turn.browser_dir;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let app = App::seeded();
    let (cuts, cuts_rx) = tokio::sync::watch::channel(0u64);
    let (server, proxy) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let server = serve(&app, listener).await;
        (server, cutting_proxy(addr, cuts_rx).await)
    });
    let mut node = Command::new("node")
        .arg(browser_dir.join("resume.mjs"))
        .arg(format!("http://{proxy}"))
        .arg(transport)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let stdout = BufReader::new(node.stdout.take().expect("stdout"));
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the page is ready");
    assert_eq!(ready, "READY");
    runtime.block_on(async {
        for n in 0..1000u32 {
            let data = serde_json::json!({ "text": n.to_string() });
            server
                .hub
                .request("/home", "refreshData", data)
                .await
                .expect("a post");
            if n == 300 || n == 700 {
                cuts.send_modify(|c| *c += 1);
                if n == 300 {
                    // The page's client reports its states: wait until it is back before the second cut.
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    let mut went_down = false;
                    loop {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        let line = lines
                            .recv_timeout(left)
                            .expect("the page reconnects in time");
                        went_down |= line == "STATE reconnecting";
                        if went_down && line == "STATE open" {
                            break;
                        }
                    }
                }
            }
        }
    });
    for line in lines {
        println!("{line}");
    }
    assert!(
        node.wait().expect("node exits").success(),
        "the browser missed, repeated or reordered reactions"
    );
}

/// The live admin page in Chromium (`tests/browser/admin.mjs`): the admin, logged in, opens
/// `/_sync/admin` from the navigation; a trigger alice fires on the dashboard appears there (route, sync,
/// delivered count) without a reload, and the script prints how long that took; bob gets 403. The
/// screenshot is `target/browser-screenshots/admin.png`.
#[test]
fn the_admin_page_shows_another_user_s_trigger_live_and_refuses_a_non_admin() {
    let Some(turn) = browser_turn("admin.mjs") else {
        return;
    };
    let shots = turn.workspace.join("target/browser-screenshots");
    let _ = std::fs::remove_file(shots.join("admin.png"));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let app = App::seeded();
    let (addr, server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("an address");
        (addr, serve(&app, listener).await)
    });
    let output = Command::new("node")
        .arg(turn.browser_dir.join("admin.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the admin page's scenarios failed (see the output above)"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        3,
        "every scenario of admin.mjs ran"
    );
    assert!(shots.join("admin.png").exists(), "the screenshot was saved");
    runtime.block_on(server.stop());
}
