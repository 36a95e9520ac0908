//! `dbclass` on `/bench`: the `tick` event, behind a filter that asks the simulated database once per
//! class of recipients (their team), not once per recipient.

use sync_runtime::{ClientCx, Reaction};

/// The trigger's number, checked by every subscriber.
pub type Data = u64;

/// An event carrying the number, as `tick`'s.
pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    Reaction::event("tick", *cx.data)
}
