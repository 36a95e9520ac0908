//! The TypeScript declarations of the example's syncs, as the hub serves them at `/_sync/types.d.ts`, with a
//! real `tsc --strict`: `web/typed.ts` (a typed page on the example's routes) compiles, and each sample in
//! `tests/typescript/` fails with the error its first line expects (`// expect: TS2322 "refresh"`: that
//! code, and that text in the message).
//!
//! `tsc` comes from `tests/browser` (`npm ci` there). Without it the test says so and passes, except under
//! CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};

use example_dashboard::{App, hub, router};
use sync_runtime::testing::TestServer;

#[path = "../../../tests/browser/tsc.rs"]
mod tsc;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example on a loopback port: what it serves at `/_sync/types.d.ts`, checked against the build's file.
async fn served_declarations() -> String {
    let app = TestServer::start(router(&hub(App::seeded()))).await;
    let response = app.get("/_sync/types.d.ts", None).await;
    assert_eq!(response.status, 200, "types.d.ts: {response:?}");
    assert_eq!(
        response.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/typescript; charset=utf-8"[..])
    );
    let body = response.body;
    assert_eq!(
        body,
        example_dashboard::syncs::TYPESCRIPT,
        "the served file is the build's"
    );
    assert!(body.contains("\"/boards/[id]\": {"), "{body}");

    let client = app.get("/_sync/client.d.ts", None).await;
    assert_eq!(client.status, 200, "client.d.ts: {client:?}");
    assert!(
        client.body.contains("declare module \"*/_sync/client.js\""),
        "{}",
        client.body
    );
    body
}

#[tokio::test]
async fn the_served_declarations_type_the_example_pages() {
    let declarations = served_declarations().await;
    let Some(tsc) = tsc::tsc(env!("CARGO_MANIFEST_DIR"), 2) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("types.d.ts");
    std::fs::write(&file, &declarations).expect("write the declarations");

    let page = manifest_dir().join("web/typed.ts");
    let (ok, output) = tsc::check(&tsc, &[&file, &page]);
    assert!(ok, "web/typed.ts must compile:\n{output}");

    let mut samples: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("tests/typescript"))
        .expect("tests/typescript")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    samples.sort();
    assert!(samples.len() >= 5, "the failing samples: {samples:?}");
    for sample in samples {
        let text = std::fs::read_to_string(&sample).expect("read the sample");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{} starts with `// expect: TSxxxx text`", sample.display()));
        let (code, needle) = expect.split_once(' ').expect("a code and a text");
        let (ok, output) = tsc::check(&tsc, &[&file, &sample]);
        assert!(!ok, "{} must not compile:\n{output}", sample.display());
        let errors: Vec<&str> = output.lines().filter(|l| l.contains("error TS")).collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: exactly one error:\n{output}",
            sample.display()
        );
        assert!(
            errors[0].contains(&format!("error {code}:")) && errors[0].contains(needle),
            "{}: expected {code} with {needle}, got:\n{output}",
            sample.display()
        );
    }
}
