//! The example app as two processes behind one Redis (the README's "several processes" recipe), with
//! browsers on both: a task added through either shows up on the other's page without a reload
//! (`tests/browser/multinode.mjs`), and every page's "here now" list shows who is on it, whichever process
//! serves them (`tests/browser/presence.mjs`). Screenshots land in `target/browser-screenshots/`.
//!
//! Needs `redis-server`, Debian's `chromium` and `npm ci` in `tests/browser` (`.ci/run` installs them).
//! Without them the test says loudly that it was skipped; under CI (`CI` set) it fails instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop, so that a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "../../../tests/browser/runner.rs"]
#[allow(
    dead_code,
    reason = "these tests run their scripts themselves (a restart, two nodes): only the turn is used"
)]
mod runner;

/// What the multi-node tests need besides a browser.
fn missing_redis() -> Vec<String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["redis-server (apt-get install redis-server)".to_owned()],
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Start one example process and return it with the URL it printed.
fn example(database: &Path, redis_url: &str) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-dashboard"))
        .env("PORT", "0")
        .env("DATABASE", database)
        .env("REDIS_URL", redis_url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the example prints its URL");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (running, url)
}

/// Two example processes sharing one SQLite file and one Redis, started for one test and stopped (killed)
/// when it ends.
struct Cluster {
    workspace: PathBuf,
    browser_dir: PathBuf,
    node_a: String,
    node_b: String,
    // Dropped in this order: the processes, then Redis, then their database.
    _nodes: [Running; 2],
    _redis: Running,
    _dir: tempfile::TempDir,
    _turn: runner::Turn,
}

impl Cluster {
    /// Wait for this test's turn and start the cluster; `None` (after saying so loudly) when a
    /// prerequisite is missing outside CI. Under CI (`CI` set) a missing prerequisite fails the test.
    fn start(test: &str) -> Option<Cluster> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let browser_dir = runner::browser_dir(env!("CARGO_MANIFEST_DIR"));
        let turn = runner::turn(&browser_dir, test, missing_redis())?;
        let port = free_port();
        let redis = Running(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server never accepted connections"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let redis_url = format!("redis://127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = dir.path().join("dashboard.db");
        let (a, node_a) = example(&database, &redis_url);
        let (b, node_b) = example(&database, &redis_url);
        Some(Cluster {
            workspace,
            browser_dir,
            node_a,
            node_b,
            _nodes: [a, b],
            _redis: redis,
            _dir: dir,
            _turn: turn,
        })
    }

    /// Run `tests/browser/<script>` against both nodes, saving into the screenshot directory; asserts
    /// that it passed and saved `shots`.
    fn run(&self, script: &str, shots: &[&str]) {
        let dir = self.workspace.join("target/browser-screenshots");
        // A screenshot left by an earlier run must not pass for one of this run.
        for shot in shots {
            let _ = std::fs::remove_file(dir.join(shot));
        }
        let out = Command::new("node")
            .arg(self.browser_dir.join(script))
            .args([&self.node_a, &self.node_b])
            .arg(&dir)
            .output()
            .expect("node runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{script} failed (see its output above)"
        );
        for shot in shots {
            assert!(dir.join(shot).exists(), "screenshot {shot} was saved");
        }
    }
}

#[test]
fn two_processes_behind_one_redis_keep_two_browsers_in_sync() {
    let Some(cluster) = Cluster::start("two_processes_behind_one_redis_keep_two_browsers_in_sync")
    else {
        return;
    };
    cluster.run(
        "multinode.mjs",
        &["multinode-alice-node-a.png", "multinode-bob-node-b.png"],
    );
}

/// Three users, two pages, two processes: alice (two tabs) and carol on node A, bob on node B. Each
/// page lists its users once (alice's two tabs are one entry), a user who moves to another page moves
/// in every list, and one who closes their last tab leaves the lists on both nodes.
#[test]
fn three_users_see_who_is_here_across_two_pages_and_two_processes() {
    let Some(cluster) =
        Cluster::start("three_users_see_who_is_here_across_two_pages_and_two_processes")
    else {
        return;
    };
    cluster.run(
        "presence.mjs",
        &[
            "presence-home-carol-node-a.png",
            "presence-dashboard-alice-node-a.png",
            "presence-dashboard-bob-node-b.png",
            "presence-dashboard-after-bob-left.png",
        ],
    );
}
