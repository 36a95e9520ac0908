//! What handler files receive and return, and the type-erased form the hub runs.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Reaction;

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

/// A connected user as a handler sees them: the recipient of a fan-out, or the sender of a request.
///
/// `session` is the app's own session type, produced by the authenticator given to
/// [`SyncHubBuilder::authenticate`](crate::SyncHubBuilder::authenticate). Everything here comes from the
/// server side; a client cannot choose any of it.
pub struct Peer<S> {
    /// The user key the authenticator returned (two tabs of one user share it).
    pub user: Arc<str>,
    /// The app's session.
    pub session: Arc<S>,
    /// The credential the connection presented (bearer header or `token` query parameter), if any.
    pub token: Option<Arc<str>>,
    /// Where the connection is.
    pub location: Location,
    /// The connection.
    pub connection: ConnectionId,
}

impl<S> Clone for Peer<S> {
    fn clone(&self) -> Self {
        Peer {
            user: self.user.clone(),
            session: self.session.clone(),
            token: self.token.clone(),
            location: self.location.clone(),
            connection: self.connection,
        }
    }
}

impl<S> fmt::Debug for Peer<S> {
    // The token is a credential: it never reaches a log through `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("location", &self.location)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// A peer with its session still type-erased, as the hub stores it.
#[derive(Clone)]
pub(crate) struct ErasedPeer {
    pub user: Arc<str>,
    pub session: AnyArc,
    pub token: Option<Arc<str>>,
    pub location: Location,
    pub connection: ConnectionId,
}

impl ErasedPeer {
    fn typed<S: Send + Sync + 'static>(&self) -> Option<Peer<S>> {
        Some(Peer {
            user: self.user.clone(),
            session: self.session.clone().downcast::<S>().ok()?,
            token: self.token.clone(),
            location: self.location.clone(),
            connection: self.connection,
        })
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
type FilterFn<D, S, F, O> =
    Arc<dyn Fn(ServerCx<D, S, F>) -> BoxFuture<Result<Filter<O>, String>> + Send + Sync>;
type InlineFilterFn<D, S, F, O> =
    Arc<dyn Fn(ServerCx<D, S, F>) -> Result<Filter<O>, String> + Send + Sync>;
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
        Fut: Future + Send + 'static,
        Fut::Output: IntoFilter<O>,
    {
        FilteredSyncDef {
            react: self.react,
            filter: Arc::new(move |cx| {
                let fut = filter(cx);
                Box::pin(async move { fut.await.into_filter() })
            }),
            inline: None,
            gate: None,
        }
    }

    pub fn filter_sync<S: 'static, F: 'static, R>(
        self,
        filter: impl Fn(ServerCx<D, S, F>) -> R + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F>
    where
        R: IntoFilter<O>,
    {
        let filter: InlineFilterFn<D, S, F, O> = Arc::new(move |cx| filter(cx).into_filter());
        let boxed = filter.clone();
        FilteredSyncDef {
            react: self.react,
            filter: Arc::new(move |cx| Box::pin(std::future::ready(boxed(cx)))),
            inline: Some(filter),
            gate: None,
        }
    }

    pub fn finish(self) -> ErasedSync
    where
        O: NoServerData,
    {
        ErasedSync(Arc::new(Unfiltered { react: self.react }))
    }
}

#[doc(hidden)]
pub struct FilteredSyncDef<D, O, S, F> {
    react: ReactFn<D, O>,
    filter: FilterFn<D, S, F, O>,
    inline: Option<InlineFilterFn<D, S, F, O>>,
    gate: Option<GateFn<D, S, F>>,
}

impl<D, O, S, F> FilteredSyncDef<D, O, S, F>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    pub fn gate_async<Fut>(
        mut self,
        gate: impl Fn(GateCx<D, S, F>) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.gate = Some(Arc::new(move |cx| Box::pin(gate(cx))));
        self
    }

    pub fn gate_sync(
        mut self,
        gate: impl Fn(GateCx<D, S, F>) -> Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.gate = Some(Arc::new(move |cx| Box::pin(std::future::ready(gate(cx)))));
        self
    }

    pub fn finish(self) -> ErasedSync {
        ErasedSync(Arc::new(Filtered {
            react: self.react,
            filter: self.filter,
            inline: self.inline,
            gate: self.gate,
        }))
    }
}

/// A sync with its types erased, as the hub stores it.
#[doc(hidden)]
#[derive(Clone)]
pub struct ErasedSync(pub(crate) Arc<dyn DynSync>);

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

pub(crate) trait DynSync: Send + Sync {
    /// Check browser JSON against the declared data type.
    fn parse(&self, json: &str) -> Result<AnyArc, String>;
    /// `(session, functions)` types, for syncs with a server file.
    fn server_types(&self) -> Option<(TypeTag, TypeTag)>;
    fn has_gate(&self) -> bool;
    /// For syncs without a server file: the one reaction every recipient gets.
    fn react_shared(&self, data: &AnyArc) -> Option<Reaction>;
    fn gate(
        &self,
        data: &AnyArc,
        sender: &ErasedPeer,
        functions: &AnyArc,
    ) -> BoxFuture<Result<(), Refusal>>;
    /// For syncs with a server file: filter and react for one recipient.
    fn filter_react(
        &self,
        data: &AnyArc,
        recipient: &ErasedPeer,
        sender: Option<&ErasedPeer>,
        functions: &AnyArc,
    ) -> BoxFuture<Result<Option<Reaction>, FilterFailure>>;
    /// Whether the filter is synchronous, so that [`filter_react_inline`](Self::filter_react_inline)
    /// answers.
    fn filters_inline(&self) -> bool;
    /// For synchronous filters: filter and react for one recipient here and now, with no future, box or
    /// task per recipient. `None` for asynchronous filters.
    fn filter_react_inline(
        &self,
        data: &AnyArc,
        recipient: &ErasedPeer,
        sender: Option<&ErasedPeer>,
        functions: &AnyArc,
    ) -> Option<Result<Option<Reaction>, FilterFailure>>;
}

fn parse_json<D: DeserializeOwned + Send + Sync + 'static>(json: &str) -> Result<AnyArc, String> {
    serde_json::from_str::<D>(json)
        .map(|d| Arc::new(d) as AnyArc)
        .map_err(|e| e.to_string())
}

struct Unfiltered<D, O> {
    react: ReactFn<D, O>,
}

impl<D, O> DynSync for Unfiltered<D, O>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: NoServerData + Send + 'static,
{
    fn parse(&self, json: &str) -> Result<AnyArc, String> {
        parse_json::<D>(json)
    }
    fn server_types(&self) -> Option<(TypeTag, TypeTag)> {
        None
    }
    fn has_gate(&self) -> bool {
        false
    }
    fn react_shared(&self, data: &AnyArc) -> Option<Reaction> {
        let data = data.clone().downcast::<D>().ok()?;
        Some((self.react)(ClientCx {
            data,
            server: O::none(),
        }))
    }
    fn gate(&self, _: &AnyArc, _: &ErasedPeer, _: &AnyArc) -> BoxFuture<Result<(), Refusal>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn filter_react(
        &self,
        data: &AnyArc,
        _: &ErasedPeer,
        _: Option<&ErasedPeer>,
        _: &AnyArc,
    ) -> BoxFuture<Result<Option<Reaction>, FilterFailure>> {
        let out = self
            .react_shared(data)
            .map(Some)
            .ok_or(FilterFailure::Internal("data type mismatch"));
        Box::pin(std::future::ready(out))
    }
    fn filters_inline(&self) -> bool {
        false
    }
    fn filter_react_inline(
        &self,
        _: &AnyArc,
        _: &ErasedPeer,
        _: Option<&ErasedPeer>,
        _: &AnyArc,
    ) -> Option<Result<Option<Reaction>, FilterFailure>> {
        None
    }
}

struct Filtered<D, O, S, F> {
    react: ReactFn<D, O>,
    filter: FilterFn<D, S, F, O>,
    /// The same filter unboxed, when it is synchronous: the fan-out calls it in place.
    inline: Option<InlineFilterFn<D, S, F, O>>,
    gate: Option<GateFn<D, S, F>>,
}

impl<D, O, S, F> DynSync for Filtered<D, O, S, F>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    fn parse(&self, json: &str) -> Result<AnyArc, String> {
        parse_json::<D>(json)
    }
    fn server_types(&self) -> Option<(TypeTag, TypeTag)> {
        Some((TypeTag::of::<S>(), TypeTag::of::<F>()))
    }
    fn has_gate(&self) -> bool {
        self.gate.is_some()
    }
    fn react_shared(&self, _: &AnyArc) -> Option<Reaction> {
        None
    }
    fn gate(
        &self,
        data: &AnyArc,
        sender: &ErasedPeer,
        functions: &AnyArc,
    ) -> BoxFuture<Result<(), Refusal>> {
        let Some(gate) = &self.gate else {
            return Box::pin(std::future::ready(Ok(())));
        };
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
        })
    }
    fn filter_react(
        &self,
        data: &AnyArc,
        recipient: &ErasedPeer,
        sender: Option<&ErasedPeer>,
        functions: &AnyArc,
    ) -> BoxFuture<Result<Option<Reaction>, FilterFailure>> {
        let typed = (
            data.clone().downcast::<D>(),
            recipient.typed::<S>(),
            functions.clone().downcast::<F>(),
        );
        let (Ok(data), Some(recipient), Ok(functions)) = typed else {
            return Box::pin(std::future::ready(Err(FilterFailure::Internal(
                "type mismatch",
            ))));
        };
        let sender = sender.and_then(ErasedPeer::typed::<S>);
        let decision = (self.filter)(ServerCx {
            data: data.clone(),
            recipient,
            sender,
            functions,
        });
        let react = self.react.clone();
        Box::pin(async move {
            match decision.await {
                Ok(Filter::Skip) => Ok(None),
                Ok(Filter::Deliver(server)) => Ok(Some(react(ClientCx { data, server }))),
                Err(e) => Err(FilterFailure::Error(e)),
            }
        })
    }
    fn filters_inline(&self) -> bool {
        self.inline.is_some()
    }
    fn filter_react_inline(
        &self,
        data: &AnyArc,
        recipient: &ErasedPeer,
        sender: Option<&ErasedPeer>,
        functions: &AnyArc,
    ) -> Option<Result<Option<Reaction>, FilterFailure>> {
        let filter = self.inline.as_ref()?;
        let typed = (
            data.clone().downcast::<D>(),
            recipient.typed::<S>(),
            functions.clone().downcast::<F>(),
        );
        let (Ok(data), Some(recipient), Ok(functions)) = typed else {
            return Some(Err(FilterFailure::Internal("type mismatch")));
        };
        let sender = sender.and_then(ErasedPeer::typed::<S>);
        let decision = filter(ServerCx {
            data: data.clone(),
            recipient,
            sender,
            functions,
        });
        Some(match decision {
            Ok(Filter::Skip) => Ok(None),
            Ok(Filter::Deliver(server)) => Ok(Some((self.react)(ClientCx { data, server }))),
            Err(e) => Err(FilterFailure::Error(e)),
        })
    }
}
