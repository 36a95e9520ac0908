//! What handler files receive and return, and the type-erased form the hub runs.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Reaction;
use crate::roster::Here;

mod peer;
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

/// What a server filter (`<name>_server.rs`, `fn filter`) receives, once per recipient.
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
pub struct ServerCx<D, S, F> {
    /// The request data.
    pub data: Arc<D>,
    /// The user this call decides about.
    pub recipient: Peer<S>,
    /// Who sent the request; `None` when it came from Rust code.
    pub sender: Option<Peer<S>>,
    /// The app's backend helpers (database pool and the like), as given to
    /// [`SyncHubBuilder::functions`](crate::SyncHubBuilder::functions).
    pub functions: Arc<F>,
    /// Who is on the trigger's path (the recipient's too), on every node.
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

type ReactFn<D, O> = Arc<dyn Fn(ClientCx<D, O>) -> Reaction + Send + Sync>;
type GateFn<D, S, F> = Arc<dyn Fn(GateCx<D, S, F>) -> BoxFuture<Result<(), Refusal>> + Send + Sync>;

/// Builds one sync from its handler functions. Used by generated code only.
#[doc(hidden)]
pub struct SyncDef<D, O> {
    react: ReactFn<D, O>,
}

impl<D, O> SyncDef<D, O>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
{
    pub fn new(react: impl Fn(ClientCx<D, O>) -> Reaction + Send + Sync + 'static) -> Self {
        SyncDef {
            react: Arc::new(react),
        }
    }

    pub fn filter_async<S, F, Fut>(
        self,
        filter: impl Fn(ServerCx<D, S, F>) -> Fut + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoFilter<O>,
    {
        let react = self.react;
        let filter: ErasedAsyncFilter = Arc::new(move |call| {
            let Some((data, cx)) = server_cx::<D, S, F>(call) else {
                return Box::pin(std::future::ready(Err(FilterFailure::Internal(
                    "type mismatch",
                ))));
            };
            let decision = filter(cx);
            let react = react.clone();
            let sender = call.sender.map(ErasedPeer::sender);
            Box::pin(async move { decide(decision.await.into_filter(), &react, data, sender) })
        });
        FilteredSyncDef {
            filter: Handling::Async(filter),
            gate: None,
            _types: PhantomData,
        }
    }

    pub fn filter_sync<S, F, R>(
        self,
        filter: impl Fn(ServerCx<D, S, F>) -> R + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        R: IntoFilter<O>,
    {
        let react = self.react;
        let filter: ErasedInlineFilter = Arc::new(move |call| {
            let (data, cx) =
                server_cx::<D, S, F>(call).ok_or(FilterFailure::Internal("type mismatch"))?;
            let sender = call.sender.map(ErasedPeer::sender);
            decide(filter(cx).into_filter(), &react, data, sender)
        });
        FilteredSyncDef {
            filter: Handling::Inline(filter),
            gate: None,
            _types: PhantomData,
        }
    }

    pub fn finish(self) -> ErasedSync
    where
        O: NoServerData,
    {
        let react = self.react;
        ErasedSync(Arc::new(SyncHandlers {
            parse: parse_json::<D>,
            server_types: None,
            gate: None,
            handling: Handling::Shared(Arc::new(move |data, sender| {
                let data = data.clone().downcast::<D>().ok()?;
                Some(react(ClientCx {
                    data,
                    server: O::none(),
                    sender: sender.map(ErasedPeer::sender),
                }))
            })),
        }))
    }
}

/// The typed context of one filter call, or `None` when a type does not match (which `build` rules out).
fn server_cx<D, S, F>(call: &Call<'_>) -> Option<(Arc<D>, ServerCx<D, S, F>)>
where
    D: Send + Sync + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    let data = call.data.clone().downcast::<D>().ok()?;
    let cx = ServerCx {
        data: data.clone(),
        recipient: call.recipient.typed::<S>()?,
        sender: call.sender.and_then(ErasedPeer::typed::<S>),
        functions: call.functions.clone().downcast::<F>().ok()?,
        here: call.here.clone(),
    };
    Some((data, cx))
}

/// One filter call, type-erased.
pub(crate) struct Call<'a> {
    pub data: &'a AnyArc,
    pub recipient: &'a ErasedPeer,
    pub sender: Option<&'a ErasedPeer>,
    pub functions: &'a AnyArc,
    pub here: &'a Here,
}

/// A filter's decision turned into the recipient's reaction.
fn decide<D, O>(
    decision: Result<Filter<O>, String>,
    react: &ReactFn<D, O>,
    data: Arc<D>,
    sender: Option<Sender>,
) -> Result<Option<Reaction>, FilterFailure> {
    match decision {
        Ok(Filter::Skip) => Ok(None),
        Ok(Filter::Deliver(server)) => Ok(Some(react(ClientCx {
            data,
            server,
            sender,
        }))),
        Err(e) => Err(FilterFailure::Error(e)),
    }
}

/// The handler types a [`FilteredSyncDef`] is for (it stores them erased).
type Types<D, O, S, F> = fn() -> (D, O, S, F);

#[doc(hidden)]
pub struct FilteredSyncDef<D, O, S, F> {
    filter: Handling,
    gate: Option<ErasedGate>,
    _types: PhantomData<Types<D, O, S, F>>,
}

impl<D, O, S, F> FilteredSyncDef<D, O, S, F>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    pub fn gate_async<Fut>(
        self,
        gate: impl Fn(GateCx<D, S, F>) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.with_gate(Arc::new(move |cx| Box::pin(gate(cx))))
    }

    pub fn gate_sync(
        self,
        gate: impl Fn(GateCx<D, S, F>) -> Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.with_gate(Arc::new(move |cx| Box::pin(std::future::ready(gate(cx)))))
    }

    fn with_gate(mut self, gate: GateFn<D, S, F>) -> Self {
        self.gate = Some(Arc::new(move |data, sender, functions, here| {
            let (Ok(data), Some(sender), Ok(functions)) = (
                data.clone().downcast::<D>(),
                sender.typed::<S>(),
                functions.clone().downcast::<F>(),
            ) else {
                return Box::pin(std::future::ready(Err(Refusal::new(
                    "internal type mismatch",
                ))));
            };
            gate(GateCx {
                data,
                sender,
                functions,
                here: here.clone(),
            })
        }));
        self
    }

    pub fn finish(self) -> ErasedSync {
        ErasedSync(Arc::new(SyncHandlers {
            parse: parse_json::<D>,
            server_types: Some((TypeTag::of::<S>(), TypeTag::of::<F>())),
            gate: self.gate,
            handling: self.filter,
        }))
    }
}

/// A sync with its types erased, as the hub stores it.
#[doc(hidden)]
#[derive(Clone)]
pub struct ErasedSync(pub(crate) Arc<SyncHandlers>);

/// The name and id of a type a handler expects.
#[derive(Clone, Copy)]
pub(crate) struct TypeTag {
    pub id: TypeId,
    pub name: &'static str,
}

impl TypeTag {
    fn of<T: 'static>() -> Self {
        TypeTag {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }
}

/// Why one recipient got nothing although it was considered.
pub(crate) enum FilterFailure {
    Error(String),
    Internal(&'static str),
}

type ErasedShared = Arc<dyn Fn(&AnyArc, Option<&ErasedPeer>) -> Option<Reaction> + Send + Sync>;
type ErasedInlineFilter =
    Arc<dyn Fn(&Call<'_>) -> Result<Option<Reaction>, FilterFailure> + Send + Sync>;
type ErasedAsyncFilter =
    Arc<dyn Fn(&Call<'_>) -> BoxFuture<Result<Option<Reaction>, FilterFailure>> + Send + Sync>;
type ErasedGate = Arc<
    dyn Fn(&AnyArc, &ErasedPeer, &AnyArc, &Here) -> BoxFuture<Result<(), Refusal>> + Send + Sync,
>;

/// How a sync decides what each recipient gets: exactly one of the three, so the fan-out has no arm
/// that can never run.
pub(crate) enum Handling {
    /// No server file: one reaction for every recipient, computed once (`None`: the data had another
    /// type, which `build` rules out).
    Shared(ErasedShared),
    /// A synchronous filter, called in place for each recipient: no future, box or task per recipient.
    Inline(ErasedInlineFilter),
    /// An asynchronous filter: one future per recipient, run concurrently under a deadline.
    Async(ErasedAsyncFilter),
}

/// One sync's handlers with their types erased.
pub(crate) struct SyncHandlers {
    /// Check JSON against the declared data type.
    pub parse: fn(&str) -> Result<AnyArc, String>,
    /// `(session, functions)` types, for syncs with a server file.
    pub server_types: Option<(TypeTag, TypeTag)>,
    /// The origin gate, run once per request a client sent.
    pub gate: Option<ErasedGate>,
    pub handling: Handling,
}

fn parse_json<D: DeserializeOwned + Send + Sync + 'static>(json: &str) -> Result<AnyArc, String> {
    serde_json::from_str::<D>(json)
        .map(|d| Arc::new(d) as AnyArc)
        .map_err(|e| e.to_string())
}
