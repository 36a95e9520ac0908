//! The filter shape issue 14 is about: one database call per recipient (their team), awaited. Everyone
//! passes, so that the deliveries compare with `tick`'s; the calls per trigger are the recipients.

use sync_runtime::{Filter, ServerCx};

use super::Data;
use crate::{Db, DbError, TEAMS};

/// Look up the recipient's team, then deliver: every team may see the trigger.
pub async fn filter(cx: ServerCx<Data, u64, Db>) -> Result<Filter<()>, DbError> {
    let team = cx.functions.team_of(*cx.recipient.session).await?;
    Ok(if team < TEAMS {
        Filter::Deliver(())
    } else {
        Filter::Skip
    })
}
