//! Only members of the changed team get the update, checked against the database (not the session's
//! copy, so a team change takes effect at once); they get their team's list, rendered here.

use sync_runtime::{Filter, ServerCx};

use super::Data;
use crate::{App, User};

/// Deliver the team's list to its members.
pub fn filter(cx: ServerCx<Data, User, App>) -> Filter<String> {
    match cx.functions.team_of(&cx.recipient.session.name) {
        Some(team) if team == cx.data.team => Filter::Deliver(cx.functions.tasks_html(&team)),
        _ => Filter::Skip,
    }
}
