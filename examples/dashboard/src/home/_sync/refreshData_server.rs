//! Everyone on `/home` gets a post; the gate refuses empty or overlong ones before any fan-out, and the
//! author comes from the sender's session, never from the browser's data.

use sync_runtime::{Filter, GateCx, Refusal, ServerCx};

use super::Data;
use crate::{App, User};

/// Once per post: is it a reasonable post?
pub fn gate(cx: GateCx<Data, User, App>) -> Result<(), Refusal> {
    let len = cx.data.text.trim().chars().count();
    if len == 0 || len > 280 {
        return Err(Refusal::new("a post has 1 to 280 characters"));
    }
    Ok(())
}

/// Everyone gets it, with the sender's name.
pub fn filter(cx: ServerCx<Data, User, App>) -> Filter<String> {
    let author = cx.sender.map_or_else(|| "server".to_owned(), |s| s.session.name.clone());
    Filter::Deliver(author)
}
