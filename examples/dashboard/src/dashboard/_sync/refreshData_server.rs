//! Only members of the changed team get the update, with the team's list. Each step runs as rarely as it
//! can: `prepare` reads the list once per trigger (one query, however many are watching), `class` sorts the
//! recipients by team, and `filter` runs once per team, not once per user; every member of a team gets
//! the same frame, serialized once.
//!
//! The team is the recipient's session's, read from no database: `POST /team` hands a switched user's new
//! session to their live connections (`SyncHub::update_session`), so the session is never stale.

use sync_runtime::prelude::*;

use super::Data;
use crate::{App, User};

/// Once per trigger: the changed team's list, rendered.
pub fn prepare(cx: PrepareCx<Data, User, App>) -> String {
    cx.functions.tasks_html(&cx.data.team)
}

/// Which class a recipient is in: its team. Cheap, and runs for every recipient.
pub fn class(cx: &ServerCx<Data, User, App, String>) -> String {
    cx.recipient.session.team.clone()
}

/// Once per team: its members get the list if it is their team's.
pub fn filter(cx: ServerCx<Data, User, App, String>) -> Filter<String> {
    if cx.recipient.session.team == cx.data.team {
        Filter::Deliver(cx.prepared.as_ref().clone())
    } else {
        Filter::Skip
    }
}
