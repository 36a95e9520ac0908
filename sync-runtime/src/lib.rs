//! Route-scoped real-time sync for axum.
//!
//! Handler files in a route's `_sync` folder define what happens when a sync is requested on that route;
//! `sync_request!("name", data)` (from Rust code in the route's folder) or `syncRequest({ name, data })`
//! (from a browser on the route's page) fans out to every user currently on the route: the optional server
//! filter runs once per recipient, the client reaction decides what each recipient's page does, and the
//! hub pushes it down that user's WebSocket.
//!
//! ```text
//! src/dashboard/page.rs
//! src/dashboard/_sync/refreshData_client.rs   required: `Data` and `fn react`
//! src/dashboard/_sync/refreshData_server.rs   optional: `fn filter` (and `fn gate`)
//! ```
//!
//! ```ignore
//! // build.rs
//! fn main() { sync_build::compile().expect("valid _sync folders"); }
//!
//! // src/main.rs (the crate root)
//! sync_runtime::include_routes!();
//!
//! // src/dashboard/page.rs
//! pub async fn save() -> &'static str {
//!     sync_runtime::sync_request!("refreshData", Data { widget: 3 });
//!     "saved"
//! }
//! ```
//!
//! Who is on a page is part of it: with [`SyncHubBuilder::presence`] every user is listed once per path
//! however many tabs and nodes they are on ([`SyncHub::presence`], [`ServerCx::here`], the browser's
//! `data-sync-presence`), every reaction knows its sender ([`ClientCx::sender`]), and sessions can change
//! or expire while connected ([`SyncHub::update_session`], [`Identity::expires_at`]).
//!
//! See the README for the whole flow and `docs/PROTOCOL.md` for the wire protocol.

// The layers, bottom up (each imports only from those above it in this list):
// protocol, routes, handler, reaction, error, random, stats, observe, auth, roster, admin_log
//             what everything speaks (admin_log: the admin page's check and its ring of recent triggers)
// conn        one connection: lifecycle, outbox, writer
// registry, presence, conns  the sync table; who is where; admission, resume and parking
// fanout      lanes and the broadcast
// broker      the engine between nodes (knows only its own traits)
// metrics     Prometheus series and the scrape (feature `metrics`; knows readings, not the hub)
// hub         the handle and builder that put the pieces together
// membership  keeping the roster right: browsers' lists, other nodes, session changes
// trigger     every way a trigger comes in
// admin       the admin page's feed: snapshots of this node to its watchers
// transport   WebSocket and SSE endpoints, inbound messages
mod admin;
mod admin_log;
mod auth;
mod broker;
mod conn;
mod conns;
mod declarations;
mod error;
mod fanout;
mod handler;
mod history;
mod hub;
mod membership;
#[cfg(feature = "metrics")]
mod metrics;
mod observe;
mod presence;
mod protocol;
mod random;
mod reaction;
mod registry;
mod roster;
mod routes;
mod stats;
#[cfg(test)]
mod test_support;
mod transport;
mod trigger;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "testing")]
pub mod testing;

/// What handler files and page handlers use, in one line: `use sync_runtime::prelude::*;`.
///
/// ```
/// use sync_runtime::prelude::*;
///
/// #[derive(serde::Deserialize)]
/// pub struct Data {
///     pub team: String,
/// }
///
/// pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
///     Reaction::event("refreshData", &cx.data.team)
/// }
/// ```
pub mod prelude {
    pub use crate::{
        ClientCx, Cursor, Filter, Functions, GateCx, Identity, PrepareCx, Reaction, Refusal,
        ServerCx, Swap, SyncHub, sync_request,
    };
}

pub use auth::{AuthRequest, Identity};
pub use broker::{Backplane, BackplaneStatus, MemoryBus};
pub use error::SyncError;
pub use handler::{
    ClientCx, ConnectionId, Filter, GateCx, IntoFilter, IntoPrepared, Location, NoServerData, Peer,
    PrepareCx, Refusal, Sender, ServerCx,
};
pub use history::{BadCursor, Cursor};
pub use hub::{BuildError, BuildProblem, Functions, SyncHub, SyncHubBuilder};
pub use protocol::{ErrorCode, Outcome, PROTOCOL_VERSION, close_code};
pub use reaction::{ListOp, ListUpdate, Reaction, Swap};
pub use roster::{Here, Present};
pub use stats::Stats;
pub use trigger::Pending;

/// Request sync `name` on the caller's route: every user currently on it gets the reaction.
///
/// Callable from any Rust code in the route's folder (page handlers, helpers in `_components`), sync or
/// async, without `.await`; it returns a [`Pending`] at once, which may be awaited for the [`Outcome`] or
/// dropped. The route is resolved at compile time from the calling file: a name the route does not define,
/// or data of the wrong type, does not compile. A dynamic route takes its params by name.
///
/// ```ignore
/// // in src/dashboard/page.rs
/// sync_request!("refreshData", Data { widget: 3 });
/// // in src/posts/[id]/page.rs
/// sync_request!("newComment", comment, id = post_id);
/// ```
#[macro_export]
macro_rules! sync_request {
    ($name:literal, $data:expr $(, $param:ident = $value:expr)* $(,)?) => {
        $crate::__private::sync_request_impl!(name = $name, data = ($data), params = [$($param = ($value)),*])
    };
}

/// Include the route tree that `sync-build` generated. Invoke once, at the crate root (`main.rs` or
/// `lib.rs`): `sync_request!` refers to `crate::__sync_routes`.
///
/// It also makes `crate::syncs` public: `syncs::<route>::<name>::Data` names each sync's data type
/// (`syncs::dashboard::refreshData::Data`, `syncs::posts__id::newComment::Data` for `/posts/[id]`, `syncs::root`
/// for `/`). `syncs::TYPESCRIPT` is the routes' TypeScript declarations, which the hub serves at
/// `<prefix>/types.d.ts`.
///
/// ```ignore
/// sync_runtime::include_routes!();
///
/// use crate::syncs::dashboard::refreshData;
/// sync_request!("refreshData", refreshData::Data { team: 1 });
/// ```
#[macro_export]
macro_rules! include_routes {
    () => {
        $crate::__private::include_routes_impl!();
    };
}

/// What generated code and the macros use. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::declarations::TypeDeclarations;
    pub use crate::handler::{ErasedSync, FilteredSyncDef, StagedSyncDef, SyncDef};
    pub use crate::registry::{DataToJson, Registration};

    /// Picks, for a concrete `Data` type, how it serializes to cross nodes: generated code calls
    /// `(&&DataCodec::<Data>::new()).data_json()`, which finds [`SerializeData`] when `Data: Serialize`
    /// and falls back to [`OpaqueData`] otherwise (method lookup tries `&&DataCodec` before `&DataCodec`).
    pub struct DataCodec<D>(core::marker::PhantomData<fn() -> D>);

    impl<D> DataCodec<D> {
        /// The picker for `D`.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            DataCodec(core::marker::PhantomData)
        }
    }

    /// `Data: Serialize`: it can cross nodes.
    pub trait SerializeData {
        /// The serializer.
        fn data_json(&self) -> Option<DataToJson>;
    }

    impl<D: serde::Serialize + 'static> SerializeData for &DataCodec<D> {
        fn data_json(&self) -> Option<DataToJson> {
            Some(|data| {
                data.downcast_ref::<D>()
                    .and_then(|d| serde_json::to_string(d).ok())
            })
        }
    }

    /// `Data` without `Serialize`: fine on one node, refused with a backplane.
    pub trait OpaqueData {
        /// No serializer.
        fn data_json(&self) -> Option<DataToJson>;
    }

    impl<D> OpaqueData for DataCodec<D> {
        fn data_json(&self) -> Option<DataToJson> {
            None
        }
    }
    pub use inventory;
    pub use sync_macros::{include_routes_impl, sync_request_impl};

    /// Decode one inbound frame as the server does; for the fuzz target.
    pub fn fuzz_decode(bytes: &[u8]) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = crate::protocol::client::parse_client_frame(text);
        }
    }

    /// Trigger a sync of `route` from Rust code: what the generated `request` functions call.
    pub fn request<D: Send + Sync + 'static>(
        route: &'static str,
        name: &'static str,
        params: &[(&str, &dyn core::fmt::Display)],
        data: D,
    ) -> crate::Pending {
        crate::trigger::request_typed(route, name, params, data)
    }
}
