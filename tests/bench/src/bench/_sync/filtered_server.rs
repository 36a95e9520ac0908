//! A filter of realistic shape: it reads the recipient's session and decides; half pass when asked.

use sync_runtime::{Filter, ServerCx};

use super::Data;
use crate::Db;

/// Pass everyone, or the recipients whose user number is even.
pub fn filter(cx: ServerCx<Data, u64, Db>) -> Filter<()> {
    if cx.data.1 || cx.recipient.session.is_multiple_of(2) {
        Filter::Deliver(())
    } else {
        Filter::Skip
    }
}
