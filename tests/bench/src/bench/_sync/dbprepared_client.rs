//! `dbprepared` on `/bench`: the `tick` event, behind a server file that asks the simulated database once
//! per trigger (`prepare`) and filters every recipient from what it answered.

use sync_runtime::{ClientCx, Reaction};

/// The trigger's number, checked by every subscriber.
pub type Data = u64;

/// An event carrying the number, as `tick`'s.
pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    Reaction::event("tick", *cx.data)
}
