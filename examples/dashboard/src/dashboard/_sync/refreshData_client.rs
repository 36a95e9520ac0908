//! `refreshData` on `/dashboard`: swap in the team's task list the server rendered for this user.

use std::sync::OnceLock;

use sync_runtime::prelude::*;

/// Which team's list changed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Data {
    /// The team.
    pub team: String,
    /// The team's list, rendered by the filter of the first member it reaches and shared with the
    /// others: a trigger's data is one value for all its recipients (on each process), so the list is
    /// read once per trigger, not once per member. Never sent nor accepted: each process renders its own.
    #[serde(skip)]
    pub list: OnceLock<String>,
}

impl Data {
    /// `team`'s list changed.
    pub fn new(team: String) -> Data {
        Data {
            team,
            list: OnceLock::new(),
        }
    }
}

/// Replace the list.
pub fn react(cx: ClientCx<Data, String>) -> Reaction {
    Reaction::html("#tasks", cx.server)
}
