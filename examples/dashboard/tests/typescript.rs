//! The TypeScript declarations of the example's syncs, as the hub serves them at `/_sync/types.d.ts`, with a
//! real `tsc --strict`: `web/typed.ts` (a typed page on the example's routes) compiles, and each sample in
//! `tests/typescript/` fails with the error its first line expects (`// expect: TS2322 "refresh"`: that
//! code, and that text in the message).
//!
//! `tsc` comes from `tests/browser` (`npm ci` there). Without it the test says so and passes, except under
//! CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use example_dashboard::{App, hub, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a request to the local server may take.
const WAIT: Duration = Duration::from_secs(10);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `GET path` on a fresh connection: the status line, the headers (lowercased names) and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<(String, String)>, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        bytes
    };
    let bytes = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("a response in time");
    let text = String::from_utf8(bytes).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines.next().expect("a status line").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The example on a loopback port: what it serves at `/_sync/types.d.ts`, checked against the build's file.
async fn served_declarations() -> String {
    let hub = hub(App::seeded());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(async move {
        axum::serve(listener, router(&hub)).await.expect("serve");
    });
    let (status, headers, body) = get(addr, "/_sync/types.d.ts").await;
    assert!(status.contains(" 200 "), "types.d.ts: {status}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/typescript; charset=utf-8")
    );
    assert_eq!(
        body,
        example_dashboard::syncs::TYPESCRIPT,
        "the served file is the build's"
    );
    assert!(body.contains("\"/boards/[id]\": {"), "{body}");

    let (status, _, client) = get(addr, "/_sync/client.d.ts").await;
    assert!(status.contains(" 200 "), "client.d.ts: {status}");
    assert!(
        client.contains("declare module \"*/_sync/client.js\""),
        "{client}"
    );
    server.abort();
    body
}

/// The pinned `tsc` of `tests/browser`, or `None` (loudly; a failure under CI) when it is not installed.
fn tsc() -> Option<PathBuf> {
    let tsc = manifest_dir().join("../../tests/browser/node_modules/.bin/tsc");
    if tsc.exists() {
        return Some(tsc);
    }
    let message = format!(
        "TYPESCRIPT CHECKS SKIPPED: {} is missing; run `npm ci` in tests/browser",
        tsc.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

/// Run `tsc --noEmit --strict` over the declarations and one sample: success, and what it printed.
fn check(tsc: &Path, declarations: &Path, sample: &Path) -> (bool, String) {
    let output = Command::new(tsc)
        .args(["--noEmit", "--strict", "--pretty", "false"])
        .args(["--target", "es2022", "--lib", "es2022,dom"])
        .args(["--module", "es2022", "--moduleResolution", "bundler"])
        .arg(declarations)
        .arg(sample)
        .output()
        .expect("tsc runs (node is installed)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn the_served_declarations_type_the_example_pages() {
    let declarations = served_declarations().await;
    let Some(tsc) = tsc() else { return };
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("types.d.ts");
    std::fs::write(&file, &declarations).expect("write the declarations");

    let page = manifest_dir().join("web/typed.ts");
    let (ok, output) = check(&tsc, &file, &page);
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
        let (ok, output) = check(&tsc, &file, &sample);
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
