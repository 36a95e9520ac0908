//! `dbeach`'s decision with the database asked once per trigger: `prepare` loads the membership table in
//! one call, and every recipient's filter reads it from memory (no await, called in place).

use std::sync::Arc;

use sync_runtime::{Filter, PrepareCx, ServerCx};

use super::Data;
use crate::{Db, DbError, TEAMS, Teams};

/// Once per trigger: the whole membership table.
pub async fn prepare(cx: PrepareCx<Data, u64, Db>) -> Result<Arc<Teams>, DbError> {
    cx.functions.teams().await
}

/// Per recipient, from the table: every team may see the trigger.
pub fn filter(cx: ServerCx<Data, u64, Db, Arc<Teams>>) -> Filter<()> {
    if cx.prepared.team_of(*cx.recipient.session) < TEAMS {
        Filter::Deliver(())
    } else {
        Filter::Skip
    }
}
