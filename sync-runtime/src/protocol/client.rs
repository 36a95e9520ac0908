//! What clients send: one JSON text frame per message, parsed without copying `data`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::ErrorCode;
use crate::history::{BadCursor, Cursor};

/// A frame from a client, as parsed by the server.
#[derive(Debug)]
pub(crate) enum ClientFrame<'a> {
    /// Report the current location, and perhaps the position in its history the client has had
    /// everything up to (a page rendered with a cursor).
    Nav {
        path: Cow<'a, str>,
        cursor: Option<Cursor>,
    },
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
    /// A fresh credential for the live connection, before the old one expires.
    Refresh { token: Cow<'a, str> },
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
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cursor: Option<Cow<'a, str>>,
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
        "nav" => {
            Ok(ClientFrame::Nav {
                path: envelope.path.clone().ok_or_else(|| missing("path"))?,
                cursor: match &envelope.cursor {
                    None => None,
                    Some(cursor) => Some(cursor.parse().map_err(|e: BadCursor| {
                        (ErrorCode::Malformed, format!("`cursor`: {e}"))
                    })?),
                },
            })
        }
        "req" => Ok(ClientFrame::Req {
            id: envelope.id,
            name: envelope.name.clone().ok_or_else(|| missing("name"))?,
            data: envelope.data,
            echo: envelope.echo.unwrap_or(true),
        }),
        "ping" => Ok(ClientFrame::Ping),
        "refresh" => Ok(ClientFrame::Refresh {
            token: envelope.token.clone().ok_or_else(|| missing("token"))?,
        }),
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
}
