//! `tick` on `/bench`: no server file, so the reaction is built and serialized once per trigger.

use sync_runtime::{ClientCx, Reaction};

/// The trigger's number, checked by every subscriber.
pub type Data = u64;

/// An event carrying the number.
pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    Reaction::event("tick", *cx.data)
}
