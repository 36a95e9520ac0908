//! Running the pinned `tsc` of `tests/browser` (`npm ci` there) over declarations and a page from a Rust
//! test: one source file that each crate's TypeScript tests include with `#[path]`.
//!
//! Without `tsc` a test says loudly that it was skipped; under CI (`CI` set) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned `tsc`, from a crate directory `up` levels below the workspace root; `None` (loudly; a
/// failure under CI) when it is not installed.
pub fn tsc(crate_dir: &str, up: usize) -> Option<PathBuf> {
    let root = (0..up).fold(PathBuf::from(crate_dir), |dir, _| dir.join(".."));
    let tsc = root.join("tests/browser/node_modules/.bin/tsc");
    if tsc.exists() {
        return Some(tsc);
    }
    let message = format!(
        "TYPESCRIPT CHECK SKIPPED: {} is missing; run `npm ci` in tests/browser",
        tsc.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

/// `tsc --noEmit --strict` (ES2022 modules, the DOM) over `files`: whether it passed, and what it printed.
pub fn check(tsc: &Path, files: &[&Path]) -> (bool, String) {
    let output = Command::new(tsc)
        .args(["--noEmit", "--strict", "--pretty", "false"])
        .args(["--target", "es2022", "--lib", "es2022,dom"])
        .args(["--module", "es2022", "--moduleResolution", "bundler"])
        .args(files)
        .output()
        .expect("tsc runs (node is installed)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}
