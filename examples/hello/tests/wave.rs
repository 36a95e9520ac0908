use serde_json::json;
use sync_runtime::testing::TestServer;

#[tokio::test]
async fn a_wave_reaches_every_window_on_the_page() {
    let app = TestServer::start(hello::app()).await;
    let mut alice = app.connect("/").await;
    let mut bob = app.connect("/").sse().await;

    let outcome = alice
        .request("wave", json!({ "from": "alice" }))
        .await
        .unwrap();
    assert_eq!(outcome.delivered, 2);
    assert_eq!(bob.expect("wave").await.reaction["payload"], "alice");
    alice.expect("wave").await;
    assert!(alice.request("wave", json!({ "name": "x" })).await.is_err()); // bad_data
    bob.expect_nothing().await;
}
