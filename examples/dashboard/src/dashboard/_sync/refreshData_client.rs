//! `refreshData` on `/dashboard`: swap in the team's task list the server rendered for this user.

use sync_runtime::prelude::*;

/// Which team's list changed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Data {
    /// The team.
    pub team: String,
}

/// Replace the list.
pub fn react(cx: ClientCx<Data, String>) -> Reaction {
    Reaction::html("#tasks", cx.server)
}
