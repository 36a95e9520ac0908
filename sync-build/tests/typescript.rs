//! The TypeScript declarations of the fixture app (`tests/fixture`) against a golden file
//! (`UPDATE_GOLDEN=1` rewrites it; review the diff), and a real `tsc --strict` over them when
//! `tests/browser` has it installed (required under CI).

use std::path::Path;
use std::process::Command;

use sync_build::{RouteTree, declarations};

#[test]
fn the_fixture_apps_declarations_match_the_golden_file() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .join("../tests/fixture/src")
        .canonicalize()
        .expect("the fixture app's routes");
    let tree = RouteTree::discover(&root).expect("the fixture's tree is valid");
    let types = declarations(&tree);
    assert_eq!(
        types.warnings,
        Vec::new(),
        "the fixture's types are all visible"
    );
    let golden = manifest.join("tests/golden/sync_types.d.ts");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &types.text).expect("write golden");
    }
    let expected =
        std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 creates it)");
    assert!(
        types.text == expected,
        "declarations changed; review and rerun with UPDATE_GOLDEN=1"
    );
    assert_eq!(declarations(&tree).text, types.text, "deterministic");

    let tsc = manifest.join("../tests/browser/node_modules/.bin/tsc");
    if !tsc.exists() {
        let message = format!(
            "TSC CHECK SKIPPED: {} is missing; run `npm ci` in tests/browser",
            tsc.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n*** {message} ***\n");
        return;
    }
    let output = Command::new(&tsc)
        .args([
            "--noEmit",
            "--strict",
            "--pretty",
            "false",
            "--lib",
            "es2022,dom",
        ])
        .arg(&golden)
        .output()
        .expect("tsc runs (node is installed)");
    assert!(
        output.status.success(),
        "the declarations must be valid TypeScript:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
