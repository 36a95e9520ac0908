//! Enabling the admin page ([`SyncHubBuilder::admin`]): the app's check, and the page's own route and sync
//! in the hub's table.

use std::any::TypeId;
use std::sync::Arc;

use super::{BuildProblem, SyncHubBuilder};
use crate::admin_log::{AdminCheck, allows};
use crate::handler::{AnyArc, ErasedSync, SyncDef};
use crate::registry::SyncTable;
use crate::{ClientCx, Filter, Reaction, Refusal, ServerCx};

/// The name of the admin route's one sync: the server's snapshots.
pub(crate) const LIVE: &str = "live";

/// The event name the admin page listens to.
pub(crate) const SNAPSHOT_EVENT: &str = "snapshot";

/// The app's admin check as the builder keeps it, with the session type it was written for.
#[derive(Clone)]
pub(crate) struct AdminGuard {
    session: TypeId,
    check: AdminCheck,
}

impl<S: Send + Sync + 'static, F: Send + Sync + 'static> SyncHubBuilder<S, F> {
    /// Serve a live admin page at `<prefix>/admin` (`/_sync/admin` by default) to the sessions `check`
    /// accepts: routes with their users, the last 50 triggers with their outcomes and durations, lane
    /// and queue depths, slow and parked connections, and the backplane's state. Without it (the
    /// default) nothing is served there (404).
    ///
    /// A request for the page runs the app's authenticator (as a connection's upgrade does: headers,
    /// cookies, `?token=`) and then `check`: a refusal or a failed check gets `403`. The page updates
    /// itself over the framework's own connection on the path `<prefix>/admin`, whose sync runs `check`
    /// again for every snapshot and recipient; a connection that goes there without passing it is closed
    /// with [`close_code::FORBIDDEN`](crate::close_code::FORBIDDEN). Who watches the page is listed
    /// nowhere. Call it after [`authenticate`](Self::authenticate).
    ///
    /// ```
    /// use sync_runtime::{Identity, Refusal, SyncHub};
    ///
    /// struct User { name: String, admin: bool }
    ///
    /// let hub = SyncHub::builder()
    ///     .authenticate(|req| {
    ///         let user = req.token().map(|name| User { admin: name == "root", name: name.to_owned() });
    ///         async move {
    ///             let user = user.ok_or_else(|| Refusal::new("log in first"))?;
    ///             Ok(Identity::new(user.name.clone(), user))
    ///         }
    ///     })
    ///     .admin(|user: &User| user.admin)
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn admin(mut self, check: impl Fn(&S) -> bool + Send + Sync + 'static) -> Self {
        self.admin = Some(AdminGuard {
            session: TypeId::of::<S>(),
            check: Arc::new(move |session: &AnyArc| {
                session.downcast_ref::<S>().is_some_and(&check)
            }),
        });
        self
    }
}

/// Register the admin route and its sync in `table` when the page is enabled; what the hub keeps of it.
///
/// Route patterns are `&'static str` everywhere (generated code names them); the admin route is the only
/// one made at run time, from the prefix, so it is leaked: one short string per hub built with `.admin`.
pub(super) fn register<S: Send + Sync + 'static, F: Send + Sync + 'static>(
    guard: Option<AdminGuard>,
    prefix: &str,
    table: &mut SyncTable,
    problems: &mut Vec<BuildProblem>,
) -> Option<crate::admin_log::Admin> {
    let guard = guard?;
    if guard.session != TypeId::of::<S>() {
        problems.push(BuildProblem::AdminBeforeAuthenticate);
        return None;
    }
    let route: &'static str = Box::leak(format!("{prefix}/admin").into_boxed_str());
    // Snapshots never cross nodes (each node feeds its own watchers); the data is JSON all the same, so
    // a hub with a backplane finds nothing to object to.
    let data_json: crate::registry::DataToJson = |data| {
        data.downcast_ref::<serde_json::Value>()
            .and_then(|v| serde_json::to_string(v).ok())
    };
    let sync = live_sync::<S, F>(guard.check.clone());
    if !table.add(route, LIVE, sync, "(the admin page)", Some(data_json)) {
        problems.push(BuildProblem::Duplicate {
            route,
            name: LIVE,
            file: "(the admin page)",
        });
        return None;
    }
    Some(crate::admin_log::Admin::new(route, guard.check))
}

/// The admin route's sync: the data is a snapshot the server built, delivered only to recipients whose
/// session passes the check (each time: a session can change while connected), and no client may send it.
fn live_sync<S: Send + Sync + 'static, F: Send + Sync + 'static>(check: AdminCheck) -> ErasedSync {
    SyncDef::new(|cx: ClientCx<serde_json::Value, ()>| Reaction::event(SNAPSHOT_EVENT, &*cx.data))
        .filter_sync(move |cx: ServerCx<serde_json::Value, S, F>| {
            let session: AnyArc = cx.recipient.session;
            if allows(&check, &session) {
                Filter::Deliver(())
            } else {
                Filter::Skip
            }
        })
        .gate_sync(|_| {
            Err(Refusal::new(
                "the admin page's snapshots come from the server only",
            ))
        })
        .finish()
}
