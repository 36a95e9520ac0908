#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .unwrap();
    println!("open http://127.0.0.1:3000 in two windows");
    axum::serve(listener, hello::app()).await.unwrap();
}
