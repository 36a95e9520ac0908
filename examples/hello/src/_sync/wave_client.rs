use sync_runtime::prelude::*;

#[derive(serde::Deserialize)]
pub struct Data {
    pub from: String,
}

pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    Reaction::event("wave", &cx.data.from)
}
