//! The hub and its `functions` in page handlers, as axum extractors: a page reads the same database pool
//! as the filters, with no second copy in the app's state.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::SyncHub;

/// The hub's `functions` (the value given to [`SyncHubBuilder::functions`](super::SyncHubBuilder::functions)),
/// in a handler of a router the hub is attached to ([`SyncHub::attach`]) or when the hub is installed
/// globally.
///
/// ```no_run
/// use axum::response::Html;
/// use sync_runtime::Functions;
///
/// struct Db;
/// impl Db {
///     fn tasks(&self) -> String { String::new() }
/// }
///
/// async fn show(Functions(db): Functions<Db>) -> Html<String> {
///     Html(db.tasks())
/// }
/// ```
///
/// A handler asking for another type than the hub was given answers 500 and logs both types.
#[derive(Debug)]
pub struct Functions<F>(pub Arc<F>);

impl<F: Send + Sync + 'static, S: Send + Sync> FromRequestParts<S> for Functions<F> {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let hub = hub_here()?;
        match hub.functions::<F>() {
            Some(functions) => Ok(Functions(functions)),
            None => {
                tracing::error!(target: "sync_runtime::hub", asked = std::any::type_name::<F>(), "a handler asked for `Functions` of another type than the hub's `functions`");
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "functions of another type",
                ))
            }
        }
    }
}

/// The hub itself, in a handler of a router it is attached to: `async fn show(hub: SyncHub)`.
impl<S: Send + Sync> FromRequestParts<S> for SyncHub {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        hub_here()
    }
}

fn hub_here() -> Result<SyncHub, (StatusCode, &'static str)> {
    SyncHub::current().ok_or_else(|| {
        tracing::error!(target: "sync_runtime::hub", "a handler asked for the hub outside any: route it through `hub.attach(router)`, or call `hub.install_global()`");
        (StatusCode::INTERNAL_SERVER_ERROR, "no sync hub")
    })
}

impl SyncHub {
    /// The hub's `functions`, if they are an `F`.
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder().guests().functions(7u32).build().expect("a hub");
    /// assert_eq!(hub.functions::<u32>().as_deref(), Some(&7));
    /// assert!(hub.functions::<String>().is_none());
    /// ```
    pub fn functions<F: Send + Sync + 'static>(&self) -> Option<Arc<F>> {
        self.inner.functions.clone().downcast::<F>().ok()
    }
}
