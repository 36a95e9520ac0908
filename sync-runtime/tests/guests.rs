//! Guests (`SyncHubBuilder::guests`) over real sockets: every request of a guest authenticates as a new
//! anonymous user, so a guest's identity is bound to its connection and its resume key is what proves a
//! later request comes from it. Before that, a guest never resumed (always `resync`) and every SSE `POST`
//! of a guest was refused as "belongs to another user".

use std::time::Duration;

use futures_util::StreamExt;
use sync_runtime::SyncHub;
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

async fn serve() -> std::net::SocketAddr {
    // Guests see each other as "a guest": each connection is its own user.
    let hub = SyncHub::builder()
        .guests()
        .presence(|_: &()| "a guest")
        .build()
        .expect("a guest hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(listener, hub.router())
            .await
            .expect("the server runs");
    });
    addr
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn frame(socket: &mut Socket) -> serde_json::Value {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_guest_resumes_its_connection_instead_of_resyncing() {
    let addr = serve().await;
    let url = format!("ws://{addr}/_sync/ws?path=/lobby");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let hello = frame(&mut socket).await;
    let key = hello["resume"].as_str().expect("a resume key").to_owned();
    // Cut without a close, as a network failure does.
    drop(socket);
    let (mut back, _) = tokio_tungstenite::connect_async(format!("{url}&resume={key}&last_seq=0"))
        .await
        .expect("reconnect");
    let hello = frame(&mut back).await;
    assert_eq!(hello["resumed"], true, "{hello}");
    assert_eq!(
        frame(&mut back).await["t"],
        "located",
        "no resync before it"
    );
}

#[tokio::test]
async fn a_guest_can_use_the_sse_transport() {
    let addr = serve().await;
    let mut client = tokio::time::timeout(
        WAIT,
        SyncClient::connect(
            &format!("http://{addr}/_sync/sse"),
            ConnectOptions::new().path("/lobby"),
        ),
    )
    .await
    .expect("connected in time")
    .expect("a guest connects over SSE");
    // A `nav` travels as a POST: refused before (403), now answered on the stream.
    let located = tokio::time::timeout(WAIT, client.navigate("/hall"))
        .await
        .expect("in time")
        .expect("the POST is accepted");
    assert_eq!(located.path, "/hall");
}

#[tokio::test]
async fn guests_are_listed_each_as_their_own_user_over_both_transports() {
    let addr = serve().await;
    let connect = |url: String| async move {
        tokio::time::timeout(
            WAIT,
            SyncClient::connect(&url, ConnectOptions::new().path("/lobby")),
        )
        .await
        .expect("connected in time")
        .expect("a guest connects")
    };
    let mut over_ws = connect(format!("ws://{addr}/_sync/ws")).await;
    let over_sse = connect(format!("http://{addr}/_sync/sse")).await;
    let status = tokio::time::timeout(
        WAIT,
        over_ws.status_until(|s| s.presence.as_ref().is_some_and(|p| p.count == 2)),
    )
    .await
    .expect("both guests listed in time")
    .expect("the client runs");
    let list = status.presence.expect("a list");
    let keys = list.user_keys();
    assert!(keys.iter().all(|k| k.starts_with("guest-")), "{keys:?}");
    assert_ne!(keys[0], keys[1], "two guests, two users");
    assert!(list.users.iter().all(|(_, view)| view == "a guest"));
    over_sse.close().await;
    tokio::time::timeout(
        WAIT,
        over_ws.status_until(|s| s.presence.as_ref().is_some_and(|p| p.count == 1)),
    )
    .await
    .expect("the SSE guest left in time")
    .expect("the client runs");
}
