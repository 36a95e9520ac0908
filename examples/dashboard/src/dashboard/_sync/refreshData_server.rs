//! Only members of the changed team get the update, with the team's list. The team is the recipient's
//! session's, read from no database: `POST /team` hands a switched user's new session to their live
//! connections (`SyncHub::update_session`), so the session is never stale.

use sync_runtime::prelude::*;

use super::Data;
use crate::{App, User};

/// Deliver the team's list to its members.
pub fn filter(cx: ServerCx<Data, User, App>) -> Filter<String> {
    if cx.recipient.session.team != cx.data.team {
        return Filter::Skip;
    }
    let list = cx
        .data
        .list
        .get_or_init(|| cx.functions.tasks_html(&cx.data.team));
    Filter::Deliver(list.clone())
}
