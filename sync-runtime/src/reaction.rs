//! What a recipient's page does: the value a client reaction returns.

use serde::Serialize;
use serde_json::Value;

/// What one recipient's client does when a sync reaches it.
///
/// A `_client.rs` handler returns one of these for every recipient. The browser client applies it; the
/// Rust client hands it over as JSON.
///
/// ```
/// use sync_runtime::Reaction;
/// use serde_json::json;
///
/// let r = Reaction::event("refreshData", json!({ "widget": 3 }))
///     .and(Reaction::html("#widget-3", "<b>3 new</b>"))
///     .and(Reaction::invalidate(json!(["widgets", 3])));
/// assert_eq!(
///     serde_json::to_value(&r).unwrap()["kind"],
///     "batch",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reaction {
    /// Deliver an event with a JSON payload to the page's listeners registered under `name`.
    Event {
        /// The listener name.
        name: String,
        /// Any JSON value.
        payload: Value,
    },
    /// Put an HTML fragment into every element matching `selector`.
    Html {
        /// A CSS selector.
        selector: String,
        /// The fragment (trusted HTML rendered by the server).
        html: String,
        /// Where the fragment goes.
        swap: Swap,
    },
    /// Invalidate query-cache entries whose key starts with `key` (the page refetches them).
    Invalidate {
        /// A query key, e.g. `["todos", 7]`.
        key: Value,
    },
    /// Set a query-cache entry.
    SetQuery {
        /// The query key.
        key: Value,
        /// The new data.
        data: Value,
    },
    /// Remove query-cache entries whose key starts with `key`.
    RemoveQuery {
        /// The query key.
        key: Value,
    },
    /// Reload the page.
    Reload,
    /// Navigate to another location (an SPA navigation when the page handles it).
    Navigate {
        /// The target, e.g. `/home`.
        to: String,
    },
    /// Several reactions, applied in order.
    Batch {
        /// The reactions.
        items: Vec<Reaction>,
    },
}

/// Where [`Reaction::Html`] puts its fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Swap {
    /// Replace the element's children (`innerHTML`). The default.
    #[default]
    Inner,
    /// Replace the element itself (`outerHTML`).
    Outer,
    /// Append to the element's children.
    Append,
    /// Prepend to the element's children.
    Prepend,
}

impl Reaction {
    /// An event for the page's listeners of `name`.
    ///
    /// ```
    /// # use sync_runtime::Reaction;
    /// let r = Reaction::event("refreshData", serde_json::json!({ "n": 1 }));
    /// ```
    pub fn event(name: impl Into<String>, payload: impl Serialize) -> Self {
        Reaction::Event {
            name: name.into(),
            payload: to_value(payload),
        }
    }

    /// Replace the children of every element matching `selector` with `html`.
    ///
    /// ```
    /// # use sync_runtime::{Reaction, Swap};
    /// let r = Reaction::html("#feed", "<li>hi</li>").swap(Swap::Prepend);
    /// ```
    pub fn html(selector: impl Into<String>, html: impl Into<String>) -> Self {
        Reaction::Html {
            selector: selector.into(),
            html: html.into(),
            swap: Swap::Inner,
        }
    }

    /// Change how an [`Reaction::Html`] fragment is placed; other reactions are returned unchanged.
    pub fn swap(self, how: Swap) -> Self {
        match self {
            Reaction::Html { selector, html, .. } => Reaction::Html {
                selector,
                html,
                swap: how,
            },
            other => other,
        }
    }

    /// Invalidate query-cache entries under `key`.
    ///
    /// ```
    /// # use sync_runtime::Reaction;
    /// let r = Reaction::invalidate(["todos"]);
    /// ```
    pub fn invalidate(key: impl Serialize) -> Self {
        Reaction::Invalidate { key: to_value(key) }
    }

    /// Set the query-cache entry `key` to `data`.
    pub fn set_query(key: impl Serialize, data: impl Serialize) -> Self {
        Reaction::SetQuery {
            key: to_value(key),
            data: to_value(data),
        }
    }

    /// Remove query-cache entries under `key`.
    pub fn remove_query(key: impl Serialize) -> Self {
        Reaction::RemoveQuery { key: to_value(key) }
    }

    /// Reload the page.
    pub fn reload() -> Self {
        Reaction::Reload
    }

    /// Navigate to `to`.
    pub fn navigate(to: impl Into<String>) -> Self {
        Reaction::Navigate { to: to.into() }
    }

    /// Several reactions applied in order.
    pub fn batch(items: impl IntoIterator<Item = Reaction>) -> Self {
        Reaction::Batch {
            items: items.into_iter().collect(),
        }
    }

    /// This reaction followed by `next`.
    pub fn and(self, next: Reaction) -> Self {
        match self {
            Reaction::Batch { mut items } => {
                items.push(next);
                Reaction::Batch { items }
            }
            first => Reaction::Batch {
                items: vec![first, next],
            },
        }
    }
}

/// Serializing a payload can only fail for maps with non-string keys or a failing `Serialize` impl; such a
/// payload becomes `null` with an error logged instead of panicking the fan-out.
fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        tracing::error!(target: "sync_runtime::reaction", error = %e, "reaction payload failed to serialize");
        Value::Null
    })
}
