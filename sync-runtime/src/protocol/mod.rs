//! The wire protocol: JSON text frames, version [`PROTOCOL_VERSION`]. See `docs/PROTOCOL.md`.
//!
//! `client` holds what clients send (parsed by the server), `server` what the server sends (serialized
//! by the server, parsed by the Rust client): every frame is a type, so the two sides cannot drift.

use std::fmt;

use serde::{Deserialize, Serialize};

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
    /// (Rust only) `SyncHub::update_session` was given another type than the authenticator's session.
    SessionType,
    /// A `refresh` whose token the authenticator refused, or that belongs to another user; the
    /// connection keeps its old credential until it expires.
    RefreshRefused,
    /// The backplane cannot be reached: the trigger was not accepted (nobody got it), or a cursor could
    /// not be read. Try again.
    Unavailable,
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
            ErrorCode::SessionType => "session_type",
            ErrorCode::RefreshRefused => "refresh_refused",
            ErrorCode::Unavailable => "unavailable",
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
    /// A normal close: the client said goodbye.
    pub const NORMAL: u16 = 1000;
    /// The connection's credential expired and was not refreshed in time (`Identity::expires_at`).
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The app disconnected every connection of the user ([`SyncHub::disconnect_user`](crate::SyncHub::disconnect_user)).
    pub const REVOKED: u16 = 4003;
    /// The connection went to a path it may not be on: the admin page (`<prefix>/admin`) without passing
    /// the app's admin check. The client must not come back.
    pub const FORBIDDEN: u16 = 4403;
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
    /// Try again later: the connection to resume vanished while the user was at the connection cap.
    pub const TRY_AGAIN_LATER: u16 = 1013;
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

pub(crate) mod client;
pub(crate) mod server;

#[cfg(test)]
mod tests {
    use super::*;

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
