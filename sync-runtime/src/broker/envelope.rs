//! What goes on the wire between nodes: envelopes on the deployment's channel (heartbeats and notes) and
//! triggers on the paths' channels, as `<offset> <epoch> <trigger JSON>` (what the Redis script publishes).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::*;

/// A heartbeat, or a note, on the deployment's channel.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The publishing node (random per process).
    pub node: u64,
    /// A note (presence, a session); `None`: a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<WireNote>,
    /// The publishing node's last roster change that went out or was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv: Option<u64>,
}

impl Envelope {
    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("an envelope is plain JSON"))
    }
}

/// A trigger as a path's channel carries it: its position, then its JSON.
pub(crate) fn path_message(at: &Cursor, trigger: &[u8]) -> Bytes {
    let mut message = format!("{} {} ", at.offset(), at.epoch()).into_bytes();
    message.extend_from_slice(trigger);
    Bytes::from(message)
}

/// The position and the trigger of a path's message.
pub(crate) fn read_path_message(message: &[u8]) -> Option<(Cursor, WireTrigger)> {
    let mut parts = message.splitn(3, |b| *b == b' ');
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let epoch = std::str::from_utf8(parts.next()?).ok()?;
    let trigger = serde_json::from_slice(parts.next()?).ok()?;
    Some((Cursor::new(Arc::from(epoch), offset), trigger))
}

/// A node id: 64 random bits from the OS.
pub(crate) fn node_id() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_message_reads_back_as_its_position_and_trigger() {
        let at = Cursor::new(Arc::from("9f86d081884c7d65"), 42);
        let trigger = br#"{"path":"/a b","name":"n","data":{"x":"1 2"}}"#;
        let message = path_message(&at, trigger);
        assert!(message.starts_with(b"42 9f86d081884c7d65 {"));
        let (back, read) = read_path_message(&message).expect("readable");
        assert_eq!(back, at);
        assert_eq!(
            (read.path.as_str(), read.data.get()),
            ("/a b", r#"{"x":"1 2"}"#)
        );
        assert!(read_path_message(b"x e {}").is_none());
        assert!(read_path_message(b"1 e not json").is_none());
    }
}
