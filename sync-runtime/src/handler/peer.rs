//! Who a handler hears about: a connected user as filters and gates see them ([`Peer`]), the same with its
//! session type erased, as the hub keeps it, and the sender a reaction sees ([`Sender`]).

use std::fmt;
use std::sync::Arc;

use super::{AnyArc, ConnectionId, Location};
use crate::roster::View;

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
    /// What others may see of the session (the app's presence view).
    pub view: View,
}

impl ErasedPeer {
    /// The typed peer a handler of session type `S` sees, or `None` for another session type.
    pub(crate) fn typed<S: Send + Sync + 'static>(&self) -> Option<Peer<S>> {
        Some(Peer {
            user: self.user.clone(),
            session: self.session.clone().downcast::<S>().ok()?,
            token: self.token.clone(),
            location: self.location.clone(),
            connection: self.connection,
        })
    }

    /// The sender as a reaction sees it.
    pub(crate) fn sender(&self) -> Sender {
        Sender {
            user: self.user.clone(),
            session: self.session.clone(),
            view: self.view.clone(),
            connection: self.connection,
        }
    }
}

/// Who sent a request, as the server knows them: the identity bound to the sending connection, never
/// what the browser claims. A reaction reads it to name its author without a server file, and is still
/// computed once for every recipient.
///
/// ```
/// use sync_runtime::{ClientCx, Reaction};
/// # #[derive(serde::Deserialize)] pub struct Data { text: String }
/// #[derive(serde::Deserialize)]
/// struct Public { name: String }
///
/// pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
///     let author = cx.sender.as_ref().and_then(|s| s.view::<Public>().ok()).map(|p| p.name);
///     Reaction::event("posted", serde_json::json!({ "text": cx.data.text, "author": author }))
/// }
/// ```
#[derive(Clone)]
pub struct Sender {
    user: Arc<str>,
    session: AnyArc,
    view: View,
    connection: ConnectionId,
}

impl Sender {
    /// The sender's user key.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The sender's session, if it is an `S` (the type the hub's authenticator produces). On another
    /// node the session is the one that crossed the backplane as JSON.
    pub fn session<S: Send + Sync + 'static>(&self) -> Option<&S> {
        self.session.downcast_ref::<S>()
    }

    /// The sender's presence view (`SyncHubBuilder::presence`), read as `T`.
    pub fn view<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.view.get())
    }

    /// The sender's presence view as JSON (`null` when the app maps none).
    pub fn view_json(&self) -> &str {
        self.view.get()
    }

    /// The sending connection (on the sender's node).
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("user", &self.user)
            .field("view", &self.view.get())
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}
