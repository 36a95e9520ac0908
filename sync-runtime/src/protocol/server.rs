//! What the server sends. The server writes these types (and, on the hot path, the reaction frame's head
//! by hand, checked against the type by a test); the Rust client reads them as [`ServerFrame`].

use serde::{Deserialize, Serialize};

use super::{ErrorCode, Outcome};

/// The first frame on every transport.
#[derive(Serialize)]
pub(crate) struct Hello<'a> {
    pub t: &'static str,
    pub v: u32,
    pub conn: &'a str,
    /// The secret to present (`?resume=`) when reconnecting, to get what was missed.
    pub resume: &'a str,
    /// Whether this socket resumed an earlier connection.
    pub resumed: bool,
    /// With acknowledged delivery (`ack=1`): how many reactions may be unacknowledged at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Milliseconds until the connection's credential expires, when it does: the client refreshes it
    /// before then (`refresh`), or the connection is closed with `TOKEN_EXPIRED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// The answer to a `refresh` the server took.
#[derive(Serialize)]
pub(crate) struct Refreshed {
    pub t: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// The whole (bounded) list of users on `path`: the first `users.len()` of `count`, in join order.
pub(crate) fn presence_frame(
    path: &str,
    count: usize,
    users: &[(
        std::sync::Arc<str>,
        std::sync::Arc<serde_json::value::RawValue>,
    )],
) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        t: &'static str,
        path: &'a str,
        count: usize,
        users: Vec<Entry<'a>>,
    }
    let users = users
        .iter()
        .map(|(user, view)| Entry { user, view })
        .collect();
    serde_json::to_string(&Frame {
        t: "presence",
        path,
        count,
        users,
    })
    .expect("a presence frame is strings and JSON")
}

/// What changed in the list of `path` since the previous `presence` or `presence_diff`.
pub(crate) fn presence_diff_frame(
    path: &str,
    count: usize,
    join: &[&(
        std::sync::Arc<str>,
        std::sync::Arc<serde_json::value::RawValue>,
    )],
    leave: &[&str],
) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        t: &'static str,
        path: &'a str,
        count: usize,
        join: Vec<Entry<'a>>,
        leave: &'a [&'a str],
    }
    let join = join
        .iter()
        .map(|(user, view)| Entry { user, view })
        .collect();
    serde_json::to_string(&Frame {
        t: "presence_diff",
        path,
        count,
        join,
        leave,
    })
    .expect("a presence frame is strings and JSON")
}

/// One listed user.
#[derive(Serialize)]
pub(crate) struct Entry<'a> {
    pub user: &'a str,
    pub view: &'a serde_json::value::RawValue,
}

/// A listed user as the Rust client reads it.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) struct OwnedEntry {
    pub user: String,
    pub view: serde_json::Value,
}

/// Where the server placed the connection, after a `nav` (or the `path` of the connect request).
#[derive(Serialize)]
pub(crate) struct Located<'a> {
    pub t: &'static str,
    pub path: &'a str,
    pub route: Option<&'a str>,
}

/// The outcome of a request that carried an `id`.
#[derive(Serialize)]
pub(crate) struct ResultFrame {
    pub t: &'static str,
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    t: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    code: ErrorCode,
    message: &'a str,
}

/// An `error` frame, answering request `id` if given.
pub(crate) fn error_frame(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    serde_json::to_string(&ErrorFrame {
        t: "error",
        id,
        code,
        message,
    })
    .expect("an error frame has only strings and integers")
}

/// The client missed reactions that cannot be replayed: it must reload its data.
pub(crate) const RESYNC: &str = r#"{"t":"resync"}"#;

/// The answer to a `ping`.
pub(crate) const PONG: &str = r#"{"t":"pong"}"#;

/// The last event of an SSE stream: the close a WebSocket would have sent.
#[derive(Serialize)]
pub(crate) struct CloseEvent {
    pub t: &'static str,
    pub code: u16,
    pub reason: &'static str,
}

/// The longest `{"t":"reaction","seq":N` can be.
pub(crate) const REACTION_HEAD: usize = 42;

/// Everything of a reaction frame after its per-connection sequence number: computed once per distinct
/// reaction and shared by every recipient's queue.
///
/// A reaction without a position in its path's history (the admin page's snapshots) has no `cursor`.
pub(crate) fn reaction_tail(
    cursor: Option<&str>,
    path: &str,
    route: Option<&str>,
    name: &str,
    reaction: &crate::Reaction,
) -> std::sync::Arc<str> {
    #[derive(Serialize)]
    struct Tail<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        cursor: Option<&'a str>,
        path: &'a str,
        route: Option<&'a str>,
        name: &'a str,
        reaction: &'a crate::Reaction,
    }
    let mut tail = serde_json::to_string(&Tail {
        cursor,
        path,
        route,
        name,
        reaction,
    })
    .unwrap_or_else(|e| {
        tracing::error!(target: "sync_runtime::fanout", error = %e, "reaction failed to serialize");
        r#"{"reaction":{"kind":"batch","items":[]}}"#.to_owned()
    });
    // `{"path":..}` becomes `,"path":..}` so that the writer can put `{"t":"reaction","seq":N` before it.
    tail.replace_range(..1, ",");
    std::sync::Arc::from(tail)
}

/// `{"t":"cursor","path":…,"cursor":…}`: the client's position on `path` moved on without a reaction for
/// it (its filter skipped the triggers).
pub(crate) fn cursor_frame(path: &str, cursor: &str) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        t: &'static str,
        path: &'a str,
        cursor: &'a str,
    }
    serde_json::to_string(&Frame {
        t: "cursor",
        path,
        cursor,
    })
    .expect("a cursor frame has only strings")
}

/// Write reaction frame `seq` (head and shared tail) into `out`.
pub(crate) fn write_reaction(out: &mut impl std::fmt::Write, seq: u64, tail: &str) {
    let _ = write!(out, r#"{{"t":"reaction","seq":{seq}"#);
    let _ = out.write_str(tail);
}

/// A reaction frame as a `String` (replays; the writer's hot path writes into a reused buffer).
pub(crate) fn reaction_frame(seq: u64, tail: &str) -> String {
    let mut text = String::with_capacity(REACTION_HEAD + tail.len());
    write_reaction(&mut text, seq, tail);
    text
}

/// Any server frame, as a client reads it.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) enum ServerFrame {
    Hello {
        conn: String,
        #[serde(default)]
        resume: Option<String>,
        #[serde(default)]
        resumed: bool,
        #[serde(default)]
        window: Option<u64>,
        #[serde(default)]
        expires_in: Option<u64>,
    },
    Resync,
    Presence {
        path: String,
        count: usize,
        users: Vec<OwnedEntry>,
    },
    PresenceDiff {
        path: String,
        count: usize,
        join: Vec<OwnedEntry>,
        leave: Vec<String>,
    },
    Refreshed {
        #[serde(default)]
        expires_in: Option<u64>,
    },
    Located {
        path: String,
        route: Option<String>,
    },
    Reaction {
        seq: u64,
        #[serde(default)]
        cursor: Option<String>,
        path: String,
        route: Option<String>,
        name: String,
        reaction: serde_json::Value,
    },
    Result {
        id: u64,
        #[serde(flatten)]
        outcome: Outcome,
    },
    Error {
        #[serde(default)]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
    Pong,
    Cursor {
        path: String,
        cursor: String,
    },
    Close {
        code: u16,
        #[serde(default)]
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServerFrame {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_hand_built_reaction_frame_round_trips_through_the_types() {
        let reaction = crate::Reaction::event("saved", serde_json::json!({ "id": "a\"b" }));
        let tail = reaction_tail(
            Some("e1:9"),
            "/posts/7",
            Some("/posts/[id]"),
            "newComment",
            &reaction,
        );
        let ServerFrame::Reaction {
            seq,
            cursor,
            path,
            route,
            name,
            reaction: json,
        } = parse(&reaction_frame(u64::MAX, &tail))
        else {
            panic!("not a reaction");
        };
        assert_eq!(seq, u64::MAX);
        assert_eq!(cursor.as_deref(), Some("e1:9"));
        assert_eq!(
            (path.as_str(), route.as_deref(), name.as_str()),
            ("/posts/7", Some("/posts/[id]"), "newComment")
        );
        assert_eq!(json, serde_json::to_value(&reaction).expect("json"));
        assert!(format!(r#"{{"t":"reaction","seq":{}"#, u64::MAX).len() <= REACTION_HEAD);
    }

    #[test]
    fn a_reaction_without_a_position_has_no_cursor_and_still_reads() {
        let reaction = crate::Reaction::event("snapshot", serde_json::json!({ "node": "n" }));
        let tail = reaction_tail(
            None,
            "/_sync/admin",
            Some("/_sync/admin"),
            "live",
            &reaction,
        );
        assert!(!tail.contains("cursor"), "{tail}");
        let ServerFrame::Reaction { seq, cursor, .. } = parse(&reaction_frame(3, &tail)) else {
            panic!("not a reaction");
        };
        assert_eq!((seq, cursor), (3, None));
    }

    #[test]
    fn constant_frames_are_the_types() {
        assert!(matches!(parse(RESYNC), ServerFrame::Resync));
        assert!(matches!(parse(PONG), ServerFrame::Pong));
        let error = error_frame(Some(3), ErrorCode::BadData, "no");
        assert!(matches!(
            parse(&error),
            ServerFrame::Error {
                id: Some(3),
                code: ErrorCode::BadData,
                ..
            }
        ));
        let hello = serde_json::to_string(&Hello {
            t: "hello",
            v: 1,
            conn: "c1",
            resume: "k",
            resumed: true,
            window: Some(64),
            expires_in: Some(5),
        })
        .expect("json");
        assert!(matches!(
            parse(&hello),
            ServerFrame::Hello {
                resumed: true,
                window: Some(64),
                expires_in: Some(5),
                ..
            }
        ));
    }

    #[test]
    fn presence_frames_are_the_types() {
        let view: std::sync::Arc<serde_json::value::RawValue> = std::sync::Arc::from(
            serde_json::value::RawValue::from_string(r#"{"n":"A"}"#.into()).unwrap(),
        );
        let listed = vec![(std::sync::Arc::from("alice"), view)];
        let ServerFrame::Presence { path, count, users } = parse(&presence_frame("/p", 3, &listed))
        else {
            panic!("not a presence frame");
        };
        assert_eq!((path.as_str(), count), ("/p", 3));
        assert_eq!(users[0].user, "alice");
        assert_eq!(users[0].view, serde_json::json!({"n": "A"}));
        let ServerFrame::PresenceDiff { join, leave, .. } =
            parse(&presence_diff_frame("/p", 1, &[&listed[0]], &["bob"]))
        else {
            panic!("not a diff");
        };
        assert_eq!(
            (join[0].user.as_str(), leave),
            ("alice", vec!["bob".to_owned()])
        );
    }
}
