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
    /// Change the list held by every cached query entry whose key starts with `key`, in place of
    /// refetching it: built with [`Reaction::list`].
    UpdateList {
        /// The query key.
        key: Value,
        /// What to do to the list.
        #[serde(flatten)]
        op: ListOp,
        /// The list is this field of the entry (of each page, for an infinite query), not the entry itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// The entry is an infinite query's `{ pages, pageParams }`.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        infinite: bool,
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

/// One change to a cached list: the operation of a [`Reaction::UpdateList`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ListOp {
    /// Put `item` first (in the first page of an infinite query).
    Prepend {
        /// The new element.
        item: Value,
    },
    /// Put `item` last (in the last page of an infinite query).
    Append {
        /// The new element.
        item: Value,
    },
    /// Put `item` in place of every element whose field `id_field` equals the item's (in every page).
    Replace {
        /// The field that identifies an element, e.g. `"id"`.
        id_field: String,
        /// The new element, which has `id_field`.
        item: Value,
    },
    /// Drop every element whose field `id_field` equals `id` (in every page).
    Remove {
        /// The field that identifies an element, e.g. `"id"`.
        id_field: String,
        /// The identity of the elements to drop (compared strictly: `7` is not `"7"`).
        id: Value,
    },
}

/// A list in the query cache, on its way to becoming a [`Reaction`]: made by [`Reaction::list`], shaped by
/// [`at`](ListUpdate::at) and [`infinite`](ListUpdate::infinite), and turned into a reaction by one of its
/// operations.
///
/// Where the cache holds no entry under the key, nothing happens and nothing is fetched. An entry that is
/// not of the expected shape (no array where the list should be) is left as it is, with a warning on the
/// browser's console.
///
/// ```
/// use sync_runtime::Reaction;
/// use serde_json::json;
///
/// // `["todos", 7]` holds `[{ "id": 1, … }, …]`.
/// let added = Reaction::list(("todos", 7)).prepend(json!({ "id": 9, "title": "new" }));
/// // `["feed"]` is an infinite query whose pages are `{ "items": […], "next": … }`.
/// let edited = Reaction::list(["feed"]).infinite().at("items").replace("id", json!({ "id": 3, "text": "edited" }));
/// let gone = Reaction::list(["feed"]).infinite().at("items").remove("id", 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a list update does nothing until an operation (prepend, append, replace, remove) makes it a Reaction"]
pub struct ListUpdate {
    key: Value,
    at: Option<String>,
    infinite: bool,
}

impl ListUpdate {
    /// The list is the entry's field `field` (each page's, with [`infinite`](Self::infinite)), e.g. for
    /// data shaped `{ "items": [...], "total": 12 }`. Default: the entry (page) is the list.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.at = Some(field.into());
        self
    }

    /// The entry is an infinite query (TanStack's `{ pages, pageParams }`): `prepend` goes to the first page,
    /// `append` to the last, `replace` and `remove` go through every page. Default: a plain query.
    pub fn infinite(mut self) -> Self {
        self.infinite = true;
        self
    }

    /// Put `item` first.
    pub fn prepend(self, item: impl Serialize) -> Reaction {
        self.with(ListOp::Prepend {
            item: to_value(item),
        })
    }

    /// Put `item` last.
    pub fn append(self, item: impl Serialize) -> Reaction {
        self.with(ListOp::Append {
            item: to_value(item),
        })
    }

    /// Put `item` in place of the elements whose `id_field` equals `item`'s.
    pub fn replace(self, id_field: impl Into<String>, item: impl Serialize) -> Reaction {
        self.with(ListOp::Replace {
            id_field: id_field.into(),
            item: to_value(item),
        })
    }

    /// Drop the elements whose `id_field` equals `id`.
    pub fn remove(self, id_field: impl Into<String>, id: impl Serialize) -> Reaction {
        self.with(ListOp::Remove {
            id_field: id_field.into(),
            id: to_value(id),
        })
    }

    fn with(self, op: ListOp) -> Reaction {
        Reaction::UpdateList {
            key: self.key,
            op,
            at: self.at,
            infinite: self.infinite,
        }
    }
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

    /// The list held by the query-cache entries under `key`, to change in place (see [`ListUpdate`]) rather
    /// than [`set_query`](Self::set_query) the whole entry or [`invalidate`](Self::invalidate) it.
    ///
    /// ```
    /// # use sync_runtime::Reaction;
    /// # let comment = serde_json::json!({ "id": 4, "text": "hi" });
    /// let r = Reaction::list(["comments", "post-7"]).append(&comment);
    /// ```
    pub fn list(key: impl Serialize) -> ListUpdate {
        ListUpdate {
            key: to_value(key),
            at: None,
            infinite: false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(r: &Reaction) -> Value {
        serde_json::to_value(r).expect("reactions serialize")
    }

    #[test]
    fn list_operations_on_a_plain_query_leave_out_the_defaults() {
        let item = json!({ "id": 9, "title": "new" });
        assert_eq!(
            wire(&Reaction::list(("todos", 7)).prepend(&item)),
            json!({ "kind": "update_list", "key": ["todos", 7], "op": "prepend", "item": item })
        );
        assert_eq!(
            wire(&Reaction::list(["todos"]).append(&item)),
            json!({ "kind": "update_list", "key": ["todos"], "op": "append", "item": item })
        );
    }

    #[test]
    fn replace_and_remove_name_the_id_field() {
        assert_eq!(
            wire(&Reaction::list(["todos"]).replace("id", json!({ "id": 3, "done": true }))),
            json!({
                "kind": "update_list", "key": ["todos"], "op": "replace",
                "id_field": "id", "item": { "id": 3, "done": true },
            })
        );
        assert_eq!(
            wire(&Reaction::list(["todos"]).remove("slug", "a-b")),
            json!({ "kind": "update_list", "key": ["todos"], "op": "remove", "id_field": "slug", "id": "a-b" })
        );
    }

    #[test]
    fn infinite_and_at_shape_where_the_list_is() {
        let r = Reaction::list(["feed"])
            .at("items")
            .infinite()
            .remove("id", 3);
        assert_eq!(
            wire(&r),
            json!({
                "kind": "update_list", "key": ["feed"], "op": "remove", "id_field": "id", "id": 3,
                "at": "items", "infinite": true,
            })
        );
        assert_eq!(
            r,
            Reaction::UpdateList {
                key: json!(["feed"]),
                op: ListOp::Remove {
                    id_field: "id".to_owned(),
                    id: json!(3),
                },
                at: Some("items".to_owned()),
                infinite: true,
            }
        );
    }

    #[test]
    fn a_list_update_goes_in_a_batch_like_any_reaction() {
        let r = Reaction::event("added", 9).and(Reaction::list(["todos"]).append(9));
        assert_eq!(
            wire(&r)["items"][1],
            json!({ "kind": "update_list", "key": ["todos"], "op": "append", "item": 9 })
        );
    }
}
