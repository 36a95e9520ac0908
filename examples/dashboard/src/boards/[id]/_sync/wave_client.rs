//! `wave` on `/boards/[id]`: add a line to the board's list.

use sync_runtime::prelude::*;

use crate::escape;

/// A wave carries nothing.
pub type Data = ();

/// Append who waved.
pub fn react(cx: ClientCx<Data, String>) -> Reaction {
    Reaction::html("#waves", format!("<li>{} waved</li>", escape(&cx.server))).swap(Swap::Append)
}
