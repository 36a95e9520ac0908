use axum::Router;
use axum::routing::get;
use sync_runtime::prelude::*;

sync_runtime::include_routes!();

pub fn app() -> Router {
    let hub = SyncHub::builder()
        .guests()
        .build()
        .expect("the handlers fit the hub");
    hub.attach(Router::new().route(pages::root::PATH, get(pages::root::show)))
}
