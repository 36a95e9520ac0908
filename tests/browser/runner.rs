//! Running a `tests/browser/*.mjs` script (Node + playwright-core, Debian's Chromium) from a Rust test:
//! one source file that each crate's browser tests include with `#[path]` (a crate dependency would link
//! one app's route tree into another's test binary).
//!
//! Without Chromium, node or `npm ci` in `tests/browser` a test says loudly that it was skipped; under CI
//! (`CI` set) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/browser`, from a crate directory two levels below the workspace root.
pub fn browser_dir(crate_dir: &str) -> PathBuf {
    Path::new(crate_dir).join("../../tests/browser")
}

/// What is missing to run Chromium from Node here.
pub fn missing_prerequisites(browser_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        missing.push(format!("Chromium at {chromium} (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_owned());
    }
    // Every package the scripts need, as `package.json` lists them (a `node_modules` from before a new
    // one was added says so here, not as a script's ENOENT).
    let manifest = std::fs::read_to_string(browser_dir.join("package.json")).unwrap_or_default();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap_or_default();
    for section in ["dependencies", "devDependencies"] {
        for package in manifest[section]
            .as_object()
            .into_iter()
            .flat_map(|d| d.keys())
        {
            if !browser_dir.join("node_modules").join(package).exists() {
                missing.push(format!(
                    "{package} (cd {} && npm ci)",
                    browser_dir.display()
                ));
            }
        }
    }
    missing
}

/// The browser tests of one binary take turns: two Chromiums at once on a small machine only make both
/// slower.
static ONE_BROWSER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A browser test's turn: no other browser test of this binary runs while it is held.
pub struct Turn {
    _lock: std::sync::MutexGuard<'static, ()>,
}

/// Wait for `test`'s turn; `None` (after saying loudly what is missing) when Chromium, node, a package of
/// `package.json` or one of `also_missing` (the test's own prerequisites) is not there. Under CI (`CI`
/// set) a missing prerequisite fails the test instead.
pub fn turn(browser_dir: &Path, test: &str, also_missing: Vec<String>) -> Option<Turn> {
    let lock = ONE_BROWSER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut missing = missing_prerequisites(browser_dir);
    missing.extend(also_missing);
    if !missing.is_empty() {
        let message = format!("the browser test {test} needs: {}", missing.join(", "));
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!(
            "\n{}\nSKIPPED: {message}\nRun `bash .ci/run`, or install them and rerun the test.\n{}\n",
            "!".repeat(72),
            "!".repeat(72)
        );
        return None;
    }
    Some(Turn { _lock: lock })
}

/// Run `<browser_dir>/<script>` with the base URL of the server `start` starts (kept until the script
/// ends), and check that it passed with `oks` lines starting `ok: `; or say loudly that it was skipped.
pub fn run_script_on<S>(
    browser_dir: &Path,
    script: &str,
    oks: usize,
    start: impl FnOnce(&tokio::runtime::Runtime) -> (String, S),
) {
    let Some(_turn) = turn(browser_dir, script, Vec::new()) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (base, server) = start(&runtime);
    let output = Command::new("node")
        .arg(browser_dir.join(script))
        .arg(base)
        .output()
        .expect("node runs");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser scenarios of {script} failed (see the output above)"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        oks,
        "every scenario of {script} ran"
    );
    drop(server);
    drop(runtime);
}
