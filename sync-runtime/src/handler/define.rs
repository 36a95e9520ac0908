//! How generated code turns a sync's handler functions into the type-erased form the hub runs: the
//! builders (`SyncDef` → `StagedSyncDef` → `FilteredSyncDef` → `ErasedSync`) and what the fan-out calls.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{
    AnyArc, BoxFuture, ClientCx, ErasedPeer, Filter, GateCx, IntoFilter, IntoPrepared,
    NoServerData, PrepareCx, Refusal, Sender, ServerCx,
};
use crate::Reaction;
use crate::roster::Here;

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

    /// The server file's `async fn prepare`, run once per trigger before its filters.
    pub fn prepare_async<S, F, P, Fut>(
        self,
        prepare: impl Fn(PrepareCx<D, S, F>) -> Fut + Send + Sync + 'static,
    ) -> StagedSyncDef<D, O, S, F, P>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        P: Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoPrepared<P>,
    {
        let prepare: ErasedPrepare = Arc::new(move |call| {
            let Some(cx) = prepare_cx::<D, S, F>(call) else {
                return Box::pin(std::future::ready(Err(FilterFailure::Internal(
                    "type mismatch",
                ))));
            };
            let work = prepare(cx);
            Box::pin(async move { prepared(work.await.into_prepared()) })
        });
        self.staged(prepare)
    }

    /// The server file's (synchronous) `fn prepare`, run once per trigger before its filters.
    pub fn prepare_sync<S, F, P, R>(
        self,
        prepare: impl Fn(PrepareCx<D, S, F>) -> R + Send + Sync + 'static,
    ) -> StagedSyncDef<D, O, S, F, P>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        P: Send + Sync + 'static,
        R: IntoPrepared<P>,
    {
        let prepare: ErasedPrepare = Arc::new(move |call| {
            let result = match prepare_cx::<D, S, F>(call) {
                Some(cx) => prepared(prepare(cx).into_prepared()),
                None => Err(FilterFailure::Internal("type mismatch")),
            };
            Box::pin(std::future::ready(result))
        });
        self.staged(prepare)
    }

    fn staged<S, F, P>(self, prepare: ErasedPrepare) -> StagedSyncDef<D, O, S, F, P> {
        StagedSyncDef {
            react: self.react,
            prepare: Some(prepare),
            _types: PhantomData,
        }
    }

    /// A server file without `prepare`: its filters read `()`.
    fn unstaged<S, F>(self) -> StagedSyncDef<D, O, S, F, ()> {
        StagedSyncDef {
            react: self.react,
            prepare: None,
            _types: PhantomData,
        }
    }

    pub fn filter_async<S, F, Fut>(
        self,
        filter: impl Fn(ServerCx<D, S, F>) -> Fut + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F, ()>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoFilter<O>,
    {
        self.unstaged().filter_async(filter)
    }

    pub fn filter_sync<S, F, R>(
        self,
        filter: impl Fn(ServerCx<D, S, F>) -> R + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F, ()>
    where
        S: Send + Sync + 'static,
        F: Send + Sync + 'static,
        R: IntoFilter<O>,
    {
        self.unstaged().filter_sync(filter)
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

/// A sync whose server file's `prepare` (if any) is known; the filter comes next.
#[doc(hidden)]
pub struct StagedSyncDef<D, O, S, F, P> {
    react: ReactFn<D, O>,
    prepare: Option<ErasedPrepare>,
    _types: PhantomData<Types<D, O, S, F, P>>,
}

impl<D, O, S, F, P> StagedSyncDef<D, O, S, F, P>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    pub fn filter_async<Fut>(
        self,
        filter: impl Fn(ServerCx<D, S, F, P>) -> Fut + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F, P>
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoFilter<O>,
    {
        let react = self.react;
        let filter: ErasedAsyncFilter = Arc::new(move |call| {
            let Some(cx) = server_cx::<D, S, F, P>(call) else {
                return Box::pin(std::future::ready(Err(FilterFailure::Internal(
                    "type mismatch",
                ))));
            };
            let data = cx.data.clone();
            let decision = filter(cx);
            let react = react.clone();
            let sender = call.sender.map(ErasedPeer::sender);
            Box::pin(async move { decide(decision.await.into_filter(), &react, data, sender) })
        });
        FilteredSyncDef::new(self.prepare, Judge::Async(filter))
    }

    pub fn filter_sync<R>(
        self,
        filter: impl Fn(ServerCx<D, S, F, P>) -> R + Send + Sync + 'static,
    ) -> FilteredSyncDef<D, O, S, F, P>
    where
        R: IntoFilter<O>,
    {
        let react = self.react;
        let filter: ErasedInlineFilter = Arc::new(move |call| {
            let cx =
                server_cx::<D, S, F, P>(call).ok_or(FilterFailure::Internal("type mismatch"))?;
            let data = cx.data.clone();
            let sender = call.sender.map(ErasedPeer::sender);
            decide(filter(cx).into_filter(), &react, data, sender)
        });
        FilteredSyncDef::new(self.prepare, Judge::Inline(filter))
    }
}

/// The typed context of one filter call, or `None` when a type does not match (which `build` rules out).
fn server_cx<D, S, F, P>(call: &Call<'_>) -> Option<ServerCx<D, S, F, P>>
where
    D: Send + Sync + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    Some(ServerCx {
        data: call.data.clone().downcast::<D>().ok()?,
        recipient: call.recipient.typed::<S>()?,
        sender: call.sender.and_then(ErasedPeer::typed::<S>),
        functions: call.functions.clone().downcast::<F>().ok()?,
        here: call.here.clone(),
        prepared: call.prepared.clone().downcast::<P>().ok()?,
    })
}

fn prepare_cx<D, S, F>(call: &PrepareCall<'_>) -> Option<PrepareCx<D, S, F>>
where
    D: Send + Sync + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
{
    Some(PrepareCx {
        data: call.data.clone().downcast::<D>().ok()?,
        sender: call.sender.and_then(ErasedPeer::typed::<S>),
        functions: call.functions.clone().downcast::<F>().ok()?,
        here: call.here.clone(),
    })
}

fn prepared<P: Send + Sync + 'static>(result: Result<P, String>) -> Result<AnyArc, FilterFailure> {
    result
        .map(|p| Arc::new(p) as AnyArc)
        .map_err(FilterFailure::Error)
}

/// One filter (or class) call, type-erased.
pub(crate) struct Call<'a> {
    pub data: &'a AnyArc,
    pub recipient: &'a ErasedPeer,
    pub sender: Option<&'a ErasedPeer>,
    pub functions: &'a AnyArc,
    pub here: &'a Here,
    /// What `prepare` returned, or `()`.
    pub prepared: &'a AnyArc,
}

/// One `prepare` call, type-erased.
pub(crate) struct PrepareCall<'a> {
    pub data: &'a AnyArc,
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

/// The handler types a builder is for (it stores them erased).
type Types<D, O, S, F, P> = fn() -> (D, O, S, F, P);

#[doc(hidden)]
pub struct FilteredSyncDef<D, O, S, F, P = ()> {
    prepare: Option<ErasedPrepare>,
    classes: Option<ErasedClasses>,
    judge: Judge,
    gate: Option<ErasedGate>,
    _types: PhantomData<Types<D, O, S, F, P>>,
}

impl<D, O, S, F, P> FilteredSyncDef<D, O, S, F, P>
where
    D: DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
    S: Send + Sync + 'static,
    F: Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    fn new(prepare: Option<ErasedPrepare>, judge: Judge) -> Self {
        FilteredSyncDef {
            prepare,
            classes: None,
            judge,
            gate: None,
            _types: PhantomData,
        }
    }

    /// The server file's `fn class`: recipients it puts in one class share one filter call, one reaction
    /// and one serialized frame.
    pub fn class<K>(
        mut self,
        class: impl Fn(&ServerCx<D, S, F, P>) -> K + Send + Sync + 'static,
    ) -> Self
    where
        K: Hash + Eq + Send + 'static,
    {
        let class = Arc::new(class);
        self.classes = Some(Arc::new(move || {
            let class = class.clone();
            let mut seen: HashMap<K, usize> = HashMap::new();
            Box::new(move |call: &Call<'_>| {
                let cx = server_cx::<D, S, F, P>(call)?;
                let next = seen.len();
                Some(*seen.entry(class(&cx)).or_insert(next))
            })
        }));
        self
    }

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
            handling: Handling::Filtered(Filtered {
                prepare: self.prepare,
                classes: self.classes,
                judge: self.judge,
            }),
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
pub(crate) type ErasedInlineFilter =
    Arc<dyn Fn(&Call<'_>) -> Result<Option<Reaction>, FilterFailure> + Send + Sync>;
pub(crate) type ErasedAsyncFilter =
    Arc<dyn Fn(&Call<'_>) -> BoxFuture<Result<Option<Reaction>, FilterFailure>> + Send + Sync>;
type ErasedPrepare =
    Arc<dyn Fn(&PrepareCall<'_>) -> BoxFuture<Result<AnyArc, FilterFailure>> + Send + Sync>;
/// A fresh classifier for one fan-out: each recipient's class number, counting classes from 0 in the
/// order their first member comes (`None`: a type did not match).
pub(crate) type Classifier = Box<dyn FnMut(&Call<'_>) -> Option<usize> + Send>;
type ErasedClasses = Arc<dyn Fn() -> Classifier + Send + Sync>;
type ErasedGate = Arc<
    dyn Fn(&AnyArc, &ErasedPeer, &AnyArc, &Here) -> BoxFuture<Result<(), Refusal>> + Send + Sync,
>;

/// How a sync decides what each recipient gets.
pub(crate) enum Handling {
    /// No server file: one reaction for every recipient, computed once (`None`: the data had another
    /// type, which `build` rules out).
    Shared(ErasedShared),
    /// A server file.
    Filtered(Filtered),
}

/// A server file's steps: `prepare` once per trigger, `class` once per recipient, the filter once per
/// recipient or per class.
pub(crate) struct Filtered {
    pub prepare: Option<ErasedPrepare>,
    pub classes: Option<ErasedClasses>,
    pub judge: Judge,
}

/// How a filter runs.
pub(crate) enum Judge {
    /// Synchronous, called in place: no future, box or task per call.
    Inline(ErasedInlineFilter),
    /// Asynchronous: a future per call, a bounded number waiting at once, each under a deadline.
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
