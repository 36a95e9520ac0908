//! The frames and queries the client builds, against what the server parses.

use super::*;
use crate::protocol::client::{ClientFrame as Parsed, parse_client_frame};

#[test]
fn the_frames_the_client_builds_are_the_ones_the_server_parses() {
    let ack = serde_json::to_string(&ClientFrame::Ack { seq: 42 }).expect("serializes");
    assert!(matches!(
        parse_client_frame(&ack),
        Ok(Parsed::Ack { seq: 42 })
    ));
    let bye = serde_json::to_string(&ClientFrame::Bye).expect("serializes");
    assert!(matches!(parse_client_frame(&bye), Ok(Parsed::Bye)));
    let ping = serde_json::to_string(&ClientFrame::Ping).expect("serializes");
    assert!(matches!(parse_client_frame(&ping), Ok(Parsed::Ping)));
}

#[test]
fn connect_queries_are_form_encoded_after_the_urls_own() {
    assert_eq!(connect_query("", None, None, Some("e:1")), "ack=1");
    assert_eq!(
        connect_query("x=1", Some("/posts/a b&c"), Some(("k+y", 7)), None),
        "x=1&path=%2Fposts%2Fa+b%26c&ack=1&resume=k%2By&last_seq=7"
    );
}
