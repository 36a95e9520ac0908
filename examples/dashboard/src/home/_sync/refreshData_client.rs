//! `refreshData` on `/home`: put the new post on top of the wall, with its author.
//!
//! There is no server file: everyone on `/home` gets the same reaction, computed once per post. The author
//! is `cx.sender`, who the server knows sent the request (their presence view's name), never something the
//! browser's data says. A bad post does not parse as [`Data`], so it is refused with `bad_data` before
//! anyone is considered.

use sync_runtime::prelude::*;

use crate::escape;

/// A post, as the browser's form sends it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Data {
    /// What was said.
    pub text: Post,
}

/// A post's text: 1 to 280 characters once trimmed. Checked where the request is parsed, which is
/// the only check a sync without a server file gets.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Post(String);

impl TryFrom<String> for Post {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Post, Self::Error> {
        match text.trim().chars().count() {
            1..=280 => Ok(Post(text)),
            _ => Err("a post has 1 to 280 characters"),
        }
    }
}

impl Post {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the wall shows of an author: the name in the hub's presence view.
#[derive(serde::Deserialize)]
struct Author {
    name: String,
}

/// Prepend it, with the author's name ("server" for a post made by the app itself).
pub fn react(cx: ClientCx<Data, ()>) -> Reaction {
    let author = match &cx.sender {
        Some(sender) => sender
            .view::<Author>()
            .map_or_else(|_| sender.user().to_owned(), |a| a.name),
        None => "server".to_owned(),
    };
    let html = format!(
        "<li><b>{}</b> {}</li>",
        escape(&author),
        escape(cx.data.text.as_str())
    );
    Reaction::html("#wall", html).swap(Swap::Prepend)
}
