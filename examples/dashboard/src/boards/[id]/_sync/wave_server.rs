//! Everyone on the board gets the wave, with the sender's name.

use sync_runtime::prelude::*;

use super::Data;
use crate::{App, User};

/// Deliver the sender's name.
pub fn filter(cx: ServerCx<Data, User, App>) -> Filter<String> {
    Filter::Deliver(cx.sender.map_or_else(|| "someone".to_owned(), |s| s.session.name.clone()))
}
