//! The example app as two processes behind one Redis (the README's "several processes" recipe), with a
//! browser on each: a task added through either shows up on the other's page without a reload.
//!
//! Needs `redis-server`, Debian's `chromium` and `npm ci` in `tests/browser` (`.ci/run` installs them).
//! Without them the test says loudly that it was skipped; under CI (`CI` set) it fails instead.

use std::io::{BufRead, BufReader};
use std::path::Path;
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
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("redis-server (apt-get install redis-server)".to_owned());
    }
    missing
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

#[test]
fn two_processes_behind_one_redis_keep_two_browsers_in_sync() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let browser_dir = workspace.join("tests/browser");
    let missing = missing_prerequisites(&browser_dir);
    if !missing.is_empty() {
        let message = format!("the multi-node browser test needs: {}", missing.join(", "));
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!(
            "\nSKIPPED: {message}\nRun `bash .ci/run`, or install them and rerun `cargo test -p example-dashboard --test multinode`.\n"
        );
        return;
    }
    let port = free_port();
    let _redis = Running(
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
    let (_a, url_a) = example(&database, &redis_url);
    let (_b, url_b) = example(&database, &redis_url);

    let shots = workspace.join("target/browser-screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("multinode.mjs"))
        .args([&url_a, &url_b])
        .arg(&shots)
        .output()
        .expect("node runs");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the two browsers did not stay in sync"
    );
    for shot in ["multinode-alice-node-a.png", "multinode-bob-node-b.png"] {
        assert!(shots.join(shot).exists(), "screenshot {shot} was saved");
    }
}
