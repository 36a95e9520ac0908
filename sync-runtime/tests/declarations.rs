//! The TypeScript declarations over a real socket: a hub whose binary registered none (no
//! `include_routes!()`, as here) answers 404 at `<prefix>/types.d.ts`, and serves the client's
//! route-agnostic `<prefix>/client.d.ts` with its prefix in the module name.

use sync_runtime::SyncHub;
use sync_runtime::testing::TestServer;

async fn serve(prefix: &str) -> TestServer {
    let hub = SyncHub::builder()
        .guests()
        .path_prefix(prefix)
        .build()
        .expect("a guest hub");
    TestServer::start(hub.router()).await.prefix(prefix)
}

#[tokio::test]
async fn without_generated_declarations_types_d_ts_is_404() {
    let app = serve("/_sync").await;
    let response = app.get("/_sync/types.d.ts", None).await;
    assert_eq!(response.status, 404, "{response:?}");
    assert!(response.body.contains("include_routes!()"), "{response:?}");
}

#[tokio::test]
async fn client_d_ts_names_the_module_under_the_hubs_prefix() {
    let app = serve("/live").await;
    let response = app.get("/live/client.d.ts", None).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/typescript; charset=utf-8"[..]),
        "{response:?}"
    );
    let body = &response.body;
    assert!(
        body.contains("declare module \"*/live/client.js\" {"),
        "{body}"
    );
    assert!(!body.contains("/_sync/client.js\" {"), "{body}");
    assert!(
        body.contains(
            "export function syncRequest(request: AnySyncRequest): Promise<SyncOutcome>;"
        ),
        "{body}"
    );
}
