//! `filtered` on `/bench`: the same event, through a per-recipient server filter.

use sync_runtime::{ClientCx, Reaction};

/// `(number, pass everyone?)`: with `false`, only recipients with an even connection id pass.
pub type Data = (u64, bool);

/// An event carrying the number.
pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    Reaction::event("tick", cx.data.0)
}
