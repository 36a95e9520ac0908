//! The TypeScript declarations of the fixture app (`tests/fixture`) against a golden file
//! (`UPDATE_GOLDEN=1` rewrites it; review the diff), and a real `tsc --strict` over them and a page using
//! them (`tests/typescript/`) when `tests/browser` has it installed (required under CI).

use std::path::Path;

use sync_build::{RouteTree, declarations};

#[path = "../../tests/browser/tsc.rs"]
mod tsc;

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

    let Some(tsc) = tsc::tsc(env!("CARGO_MANIFEST_DIR"), 1) else {
        return;
    };
    let samples = manifest.join("tests/typescript");
    let (ok, output) = tsc::check(&tsc, &[&golden, &samples.join("fixture_page.ts")]);
    assert!(
        ok,
        "the declarations and a page using them must compile:\n{output}"
    );
    let (ok, output) = tsc::check(&tsc, &[&golden, &samples.join("fixture_wrong_payload.ts")]);
    assert!(!ok, "a listener of the wrong payload type must not compile");
    assert!(
        output.contains("fixture_wrong_payload.ts(3,") && output.contains("error TS2769"),
        "expected no overload to match the listener, got:\n{output}"
    );
}
