//! `dbeach`'s filter, unchanged, with the recipients sorted into classes first: the app knows a user's
//! class (their team) from the session, so the filter (and its database call) runs once per team and its
//! verdict and frame go to every member.

use sync_runtime::{Filter, ServerCx};

use super::Data;
use crate::{Db, DbError, TEAMS};

/// A recipient's class: their team, from the session (no database call).
pub fn class(cx: &ServerCx<Data, u64, Db>) -> u64 {
    *cx.recipient.session % TEAMS
}

/// Once per team: `dbeach`'s filter itself, asking the database about the team's first member.
pub async fn filter(cx: ServerCx<Data, u64, Db>) -> Result<Filter<()>, DbError> {
    super::super::dbeach::server::filter(cx).await
}
