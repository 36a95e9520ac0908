//! What handler files receive and return, and the type-erased form the hub runs.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::roster::Here;

mod define;
mod peer;
pub(crate) use define::{
    Call, Classifier, ErasedAsyncFilter, ErasedInlineFilter, FilterFailure, Filtered, Handling,
    Judge, PrepareCall,
};
#[doc(hidden)]
pub use define::{ErasedSync, FilteredSyncDef, StagedSyncDef, SyncDef};
pub(crate) use peer::ErasedPeer;
pub use peer::{Peer, Sender};

pub(crate) type AnyArc = Arc<dyn Any + Send + Sync>;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Identifies one live connection inside a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Where a connection currently is: its path, the route pattern it matched and the dynamic params.
///
/// ```
/// # use sync_runtime::Location;
/// # fn show(loc: &Location) {
/// if loc.route() == Some("/posts/[id]") {
///     let id: u64 = loc.param("id").unwrap().parse().unwrap();
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Location(Arc<LocationInner>);

struct LocationInner {
    path: Arc<str>,
    route: Option<&'static str>,
    params: Vec<(String, String)>,
}

impl Location {
    pub(crate) fn new(
        path: Arc<str>,
        route: Option<&'static str>,
        params: Vec<(String, String)>,
    ) -> Self {
        Location(Arc::new(LocationInner {
            path,
            route,
            params,
        }))
    }

    /// The concrete path, e.g. `/posts/7`.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    pub(crate) fn path_arc(&self) -> &Arc<str> {
        &self.0.path
    }

    /// The route pattern this path matched, e.g. `/posts/[id]`; `None` when no route defines syncs there.
    pub fn route(&self) -> Option<&'static str> {
        self.0.route
    }

    /// The value of the dynamic segment `name`, e.g. `param("id") == Some("7")` on `/posts/7`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.0
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All dynamic segments in pattern order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("path", &self.path())
            .field("route", &self.route())
            .field("params", &self.0.params)
            .finish()
    }
}

/// What a server filter (`<name>_server.rs`, `fn filter`) receives, once per recipient (or once per
/// class of recipients, when the server file defines `class`).
///
/// `P` is what the server file's `prepare` step returned for this trigger, or `()` without one.
///
/// ```
/// use sync_runtime::{Filter, ServerCx};
/// # #[derive(serde::Deserialize)] pub struct Data { team: u32 }
/// # pub struct User { team: u32 }
/// # pub struct Functions;
///
/// pub async fn filter(cx: ServerCx<Data, User, Functions>) -> Filter<u32> {
///     if cx.recipient.session.team == cx.data.team {
///         Filter::Deliver(cx.data.team)
///     } else {
///         Filter::Skip
///     }
/// }
/// ```
pub struct ServerCx<D, S, F, P = ()> {
    /// The request data.
    pub data: Arc<D>,
    /// The user this call decides about (with `class`: the first recipient of its class).
    pub recipient: Peer<S>,
    /// Who sent the request; `None` when it came from Rust code.
    pub sender: Option<Peer<S>>,
    /// The app's backend helpers (database pool and the like), as given to
    /// [`SyncHubBuilder::functions`](crate::SyncHubBuilder::functions).
    pub functions: Arc<F>,
    /// Who is on the trigger's path (the recipient's too), on every node.
    pub here: Here,
    /// What `prepare` returned for this trigger (on this node), shared by every recipient; `()` without a
    /// `prepare`.
    pub prepared: Arc<P>,
}

/// What a server file's once-per-trigger step (`<name>_server.rs`, `fn prepare`) receives: everything a
/// filter does except a recipient. It runs on each node that has recipients for the trigger, before any
/// filter there, under the filter deadline; what it returns every filter of the trigger reads as
/// [`ServerCx::prepared`]. A database is then queried once per trigger, not once per recipient.
///
/// ```
/// use std::collections::HashSet;
/// use sync_runtime::{Filter, PrepareCx, ServerCx};
/// # #[derive(serde::Deserialize)] pub struct Data { board: u64 }
/// # pub struct User { id: u64 }
/// # pub struct Db;
/// # impl Db { async fn members(&self, board: u64) -> Result<HashSet<u64>, std::io::Error> { Ok(HashSet::new()) } }
///
/// /// Once per trigger: who may see the board.
/// pub async fn prepare(cx: PrepareCx<Data, User, Db>) -> Result<HashSet<u64>, std::io::Error> {
///     cx.functions.members(cx.data.board).await
/// }
///
/// /// Once per recipient, reading what `prepare` found: no database call.
/// pub fn filter(cx: ServerCx<Data, User, Db, HashSet<u64>>) -> Filter<()> {
///     if cx.prepared.contains(&cx.recipient.session.id) { Filter::Deliver(()) } else { Filter::Skip }
/// }
/// ```
pub struct PrepareCx<D, S, F> {
    /// The request data.
    pub data: Arc<D>,
    /// Who sent the request; `None` when it came from Rust code.
    pub sender: Option<Peer<S>>,
    /// The app's backend helpers.
    pub functions: Arc<F>,
    /// Who is on the trigger's path, on every node.
    pub here: Here,
}

/// What an origin gate (`<name>_server.rs`, `fn gate`) receives, once per request sent by a client.
///
/// ```
/// use sync_runtime::{GateCx, Refusal};
/// # #[derive(serde::Deserialize)] pub struct Data;
/// # pub struct User { admin: bool }
///
/// pub fn gate(cx: GateCx<Data, User, ()>) -> Result<(), Refusal> {
///     if cx.sender.session.admin { Ok(()) } else { Err(Refusal::new("admins only")) }
/// }
/// ```
pub struct GateCx<D, S, F> {
    /// The request data.
    pub data: Arc<D>,
    /// The connection that sent the request.
    pub sender: Peer<S>,
    /// The app's backend helpers.
    pub functions: Arc<F>,
    /// Who is on the sender's path, on every node.
    pub here: Here,
}

/// What a client reaction (`<name>_client.rs`, `fn react`) receives, once per recipient that passed.
///
/// `O` is what the server filter delivered, or `()` when the sync has no server file.
///
/// ```
/// use sync_runtime::{ClientCx, Reaction};
/// # #[derive(serde::Deserialize)] pub struct Data { widget: u32 }
///
/// pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
///     Reaction::event("refreshData", cx.data.widget)
/// }
/// ```
pub struct ClientCx<D, O> {
    /// The request data.
    pub data: Arc<D>,
    /// What the server filter delivered for this recipient.
    pub server: O,
    /// Who sent the request, as the server knows them; `None` when it came from Rust code.
    pub sender: Option<Sender>,
}

/// A server filter's decision for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter<O> {
    /// Do not deliver to this recipient.
    Skip,
    /// Deliver, handing `O` to the client reaction.
    Deliver(O),
}

/// Why an origin gate or an authenticator refused. The message goes back to the refused client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    message: String,
}

impl Refusal {
    /// A refusal with a message for the refused client.
    pub fn new(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// What a filter may return: a [`Filter`], or a `Result` whose error skips the recipient and is logged.
#[diagnostic::on_unimplemented(
    message = "`filter` returns `{Self}`, but `react` takes `ClientCx<Data, {O}>`: what the filter delivers is what the reaction takes",
    label = "`filter`'s `Filter<T>` and `react`'s `ClientCx<Data, T>` must name the same `T`"
)]
pub trait IntoFilter<O> {
    /// Convert; `Err` carries the error's message.
    fn into_filter(self) -> Result<Filter<O>, String>;
}

impl<O> IntoFilter<O> for Filter<O> {
    fn into_filter(self) -> Result<Filter<O>, String> {
        Ok(self)
    }
}

impl<O, E: fmt::Display> IntoFilter<O> for Result<Filter<O>, E> {
    fn into_filter(self) -> Result<Filter<O>, String> {
        self.map_err(|e| e.to_string())
    }
}

/// What a `prepare` step may return: the value every filter reads, or a `Result` whose error skips every
/// recipient of the trigger on this node (counted and logged once, as filter errors).
#[diagnostic::on_unimplemented(
    message = "`prepare` returns `{Self}`, but `filter` takes `ServerCx<Data, Session, Functions, {P}>`: what `prepare` returns (or its `Ok` value) is what every filter reads",
    label = "`prepare`'s return type (or its `Ok` type) and the last type argument of `filter`'s `ServerCx` must be the same"
)]
pub trait IntoPrepared<P> {
    /// Convert; `Err` carries the error's message.
    fn into_prepared(self) -> Result<P, String>;
}

impl<P> IntoPrepared<P> for P {
    fn into_prepared(self) -> Result<P, String> {
        Ok(self)
    }
}

impl<P, E: fmt::Display> IntoPrepared<P> for Result<P, E> {
    fn into_prepared(self) -> Result<P, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Marks the server data of a sync without a server file.
#[diagnostic::on_unimplemented(
    message = "this sync has no `_server.rs`, so its `react` must take `ClientCx<Data, ()>`",
    label = "`react` expects server data of type `{Self}`",
    note = "add a `<name>_server.rs` with a `filter` that returns `Filter<{Self}>`, or change `react` to take `ClientCx<Data, ()>`"
)]
pub trait NoServerData {
    /// The value handed to `react`.
    fn none() -> Self;
}

impl NoServerData for () {
    fn none() -> Self {}
}
