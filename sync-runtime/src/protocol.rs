//! The wire protocol: JSON text frames, version [`PROTOCOL_VERSION`]. See `docs/PROTOCOL.md`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The protocol version the server speaks, sent in its `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A stable error code, sent to a client in an `error` frame and returned by [`Pending`](crate::Pending).
///
/// The string forms (`unknown_name`, …) are the stable part; see `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not JSON, or a field has the wrong shape.
    Malformed,
    /// The `t` field names no message type this server knows.
    UnknownType,
    /// No route defines a sync of this name.
    UnknownName,
    /// A sync of this name exists, but not on the sender's current route.
    NotOnRoute,
    /// The request came before the connection reported a location.
    NoLocation,
    /// The data does not parse into the sync's declared `Data` type.
    BadData,
    /// The sync's origin gate refused the sender.
    GateRefused,
    /// The frame is larger than the configured limit.
    TooLarge,
    /// Binary frames are not part of the protocol.
    BinaryUnsupported,
    /// The connection sent more messages than its rate limit allows; the message was dropped.
    RateLimited,
    /// The server's queue for this route is full; the request was not run.
    Overloaded,
    /// A reported location is not an absolute path of at most 2048 bytes.
    BadPath,
    /// No hub was in scope for `sync_request!`.
    NoHub,
    /// The params given do not fill the route pattern.
    BadParams,
}

impl ErrorCode {
    /// The stable string form, e.g. `"unknown_name"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnknownName => "unknown_name",
            ErrorCode::NotOnRoute => "not_on_route",
            ErrorCode::NoLocation => "no_location",
            ErrorCode::BadData => "bad_data",
            ErrorCode::GateRefused => "gate_refused",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::BadPath => "bad_path",
            ErrorCode::NoHub => "no_hub",
            ErrorCode::BadParams => "bad_params",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Close codes the server uses besides the standard ones.
pub mod close_code {
    /// The app disconnected every connection of the user ([`SyncHub::disconnect_user`](crate::SyncHub::disconnect_user)).
    pub const REVOKED: u16 = 4003;
    /// The connection's outbound queue overflowed: the client reads too slowly.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The server is shutting down ("going away").
    pub const GOING_AWAY: u16 = 1001;
    /// A frame exceeded the hard size cap.
    pub const TOO_BIG: u16 = 1009;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A frame that breaks the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
}

/// A frame from a client, as parsed by the server.
#[derive(Debug)]
pub(crate) enum ClientFrame<'a> {
    /// Report the current location.
    Nav { path: Cow<'a, str> },
    /// Trigger a sync on the current route.
    Req {
        id: Option<u64>,
        name: Cow<'a, str>,
        data: Option<&'a RawValue>,
        /// `false`: do not deliver to the sending connection.
        echo: bool,
    },
    /// Keepalive from clients that cannot send WebSocket pings (browsers).
    Ping,
    /// The client has processed every reaction up to `seq` (acknowledged delivery, `ack=1`).
    Ack { seq: u64 },
    /// The client leaves on purpose: close and forget the connection now (an SSE client cannot send a
    /// close frame, and a dropped stream is kept for a resume).
    Bye,
}

/// Every field any client frame has. A flat struct rather than a `#[serde(tag)]` enum: serde buffers
/// tagged content, and `RawValue` (data kept as the client's bytes until its sync parses it) cannot pass
/// through that buffer.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    seq: Option<u64>,
}

/// Parse a client frame, telling malformed JSON apart from an unknown `t`.
pub(crate) fn parse_client_frame(text: &str) -> Result<ClientFrame<'_>, (ErrorCode, String)> {
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
    let missing = |field: &str| {
        (
            ErrorCode::Malformed,
            format!("`{}` needs a `{field}` field", envelope.t),
        )
    };
    match &*envelope.t {
        "nav" => Ok(ClientFrame::Nav {
            path: envelope.path.clone().ok_or_else(|| missing("path"))?,
        }),
        "req" => Ok(ClientFrame::Req {
            id: envelope.id,
            name: envelope.name.clone().ok_or_else(|| missing("name"))?,
            data: envelope.data,
            echo: envelope.echo.unwrap_or(true),
        }),
        "ping" => Ok(ClientFrame::Ping),
        "bye" => Ok(ClientFrame::Bye),
        "ack" => Ok(ClientFrame::Ack {
            seq: envelope.seq.ok_or_else(|| missing("seq"))?,
        }),
        other => Err((
            ErrorCode::UnknownType,
            format!("unknown message type `{}`", truncate(other, 64)),
        )),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The outcome of a fan-out, reported to the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Connections on the path when the fan-out ran (the sender included unless it opted out).
    pub matched: u32,
    /// Recipients whose filter delivered (all matched ones without a server file).
    pub passed: u32,
    /// Reactions handed to a connection's queue.
    pub delivered: u32,
    /// Recipients whose filter failed: panicked, errored or overran its deadline.
    pub failed: u32,
}

#[derive(Serialize)]
pub(crate) struct ServerHello<'a> {
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
}

#[derive(Serialize)]
pub(crate) struct Located<'a> {
    pub t: &'static str,
    pub path: &'a str,
    pub route: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct ResultFrame {
    pub t: &'static str,
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Serialize)]
pub(crate) struct ErrorFrame<'a> {
    pub t: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: &'a str,
}

pub(crate) fn error_frame(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    serde_json::to_string(&ErrorFrame {
        t: "error",
        id,
        code,
        message,
    })
    .expect("an error frame has only strings and integers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_is_told_apart_from_malformed() {
        assert_eq!(
            parse_client_frame(r#"{"t":"nope"}"#).unwrap_err().0,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse_client_frame("{not json").unwrap_err().0,
            ErrorCode::Malformed
        );
        assert_eq!(
            parse_client_frame(r#"{"t":"req"}"#).unwrap_err().0,
            ErrorCode::Malformed
        );
        assert_eq!(
            parse_client_frame(r#"{"t":5}"#).unwrap_err().0,
            ErrorCode::Malformed
        );
    }

    #[test]
    fn request_defaults_to_echo_and_keeps_raw_data() {
        let ClientFrame::Req {
            id,
            name,
            data,
            echo,
        } = parse_client_frame(r#"{"t":"req","id":3,"name":"x","data":{"a":[1,2]}}"#).unwrap()
        else {
            panic!("not a req");
        };
        assert_eq!((id, &*name, echo), (Some(3), "x", true));
        assert_eq!(data.unwrap().get(), r#"{"a":[1,2]}"#);
    }

    proptest::proptest! {
        /// Whatever a client sends, decoding returns a frame or one of the two envelope error codes; it never
        /// panics. (The coverage-guided version of this is `sync-runtime/fuzz`.)
        #[test]
        fn decoding_any_text_never_panics(text in proptest::prelude::any::<String>()) {
            if let Err((code, _)) = parse_client_frame(&text) {
                proptest::prop_assert!(matches!(code, ErrorCode::Malformed | ErrorCode::UnknownType));
            }
        }

        /// Near-valid frames: a real type tag with arbitrary field values.
        #[test]
        fn decoding_near_valid_frames_never_panics(
            t in "(nav|req|ping|ack|x)",
            field in "(path|name|data|id|echo)",
            value in r#"(null|true|-?[0-9]{1,20}|"[^"\\]{0,10}"|\[\]|\{\}|\[\[\[)"#,
        ) {
            let text = format!(r#"{{"t":"{t}","{field}":{value}}}"#);
            let _ = parse_client_frame(&text);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // The envelope keeps `data` as raw bytes without recursing; parsing it into a type then stops at
        // serde_json's depth limit (128) with an error, which the server answers with `bad_data`.
        let deep = format!(
            r#"{{"t":"req","name":"x","data":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let Ok(ClientFrame::Req {
            data: Some(data), ..
        }) = parse_client_frame(&deep)
        else {
            panic!("the envelope is well-formed");
        };
        assert!(serde_json::from_str::<serde_json::Value>(data.get()).is_err());
    }

    #[test]
    fn error_codes_serialize_to_their_stable_strings() {
        for code in [
            ErrorCode::UnknownName,
            ErrorCode::NotOnRoute,
            ErrorCode::BadData,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
