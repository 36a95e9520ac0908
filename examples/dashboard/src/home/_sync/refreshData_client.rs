//! `refreshData` on `/home`: put the new post on top of the wall.

use sync_runtime::{ClientCx, Reaction, Swap};

use crate::escape;

/// A post, as the browser's form sends it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Data {
    /// What was said.
    pub text: String,
}

/// Prepend it, with the author the server vouches for.
pub fn react(cx: ClientCx<Data, String>) -> Reaction {
    let html = format!("<li><b>{}</b> {}</li>", escape(&cx.server), escape(&cx.data.text));
    Reaction::html("#wall", html).swap(Swap::Prepend)
}
