//! The Redis transports' shared pieces: URLs, keys, redaction.

use super::*;

#[test]
fn urls_are_checked_when_the_hub_is_built() {
    assert!(RedisConfig::new("redis://127.0.0.1:6390").client().is_ok());
    assert!(
        RedisConfig::new("redis://alice:s3cret@cache:7000/2")
            .client()
            .is_ok()
    );
    assert!(RedisConfig::new("redis://:s3cret@cache").client().is_ok());
    assert!(
        RedisConfig::new("rediss://cache.internal:6380")
            .client()
            .is_ok()
    );
    let problem = RedisConfig::new("http://cache")
        .client()
        .expect_err("refused");
    assert!(problem.contains("not a Redis URL"), "{problem}");
    assert!(RedisConfig::new("nope").client().is_err());
    assert!(RedisConfig::new("redis://").client().is_err());
    let mut plain = RedisConfig::new("redis://cache");
    plain.roots = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
    assert!(
        plain
            .client()
            .expect_err("refused")
            .contains("does not use TLS")
    );
    let mut empty = RedisConfig::new("rediss://cache");
    empty.roots = Some(b"not a certificate".to_vec());
    assert!(empty.client().expect_err("refused").contains("no PEM"));
}

#[test]
fn a_path_s_keys_share_one_hash_tag_and_its_channel_names_it() {
    let keys = PathKeys::new("sync", "/boards/7");
    assert_eq!(keys.meta, "sync:{/boards/7}:m");
    assert_eq!(keys.stream, "sync:{/boards/7}:s");
    assert_eq!(keys.channel, "sync:{/boards/7}:c");
    assert_eq!(path_of("sync", &keys.channel).as_deref(), Some("/boards/7"));
    let odd = PathKeys::new("sync", "/a}{b");
    assert_eq!(path_of("sync", &odd.channel).as_deref(), Some("/a}{b"));
    assert_eq!(path_of("other", &keys.channel), None);
    assert_eq!(path_of("sync", "sync:sync:v2"), None);
}

#[test]
fn passwords_never_show() {
    assert_eq!(
        redact("redis://alice:s3cret@cache:7000/2"),
        "redis://alice:***@cache:7000/2"
    );
    assert_eq!(redact("redis://:s3cret@cache"), "redis://:***@cache");
    assert_eq!(redact("rediss://alice@cache"), "rediss://alice@cache");
    assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    let problem = RedisConfig::new("http://alice:s3cret@cache")
        .client()
        .expect_err("refused");
    assert!(!problem.contains("s3cret"), "{problem}");
    let shown = format!("{:?}", RedisConfig::new("redis://alice:s3cret@cache"));
    assert!(!shown.contains("s3cret"), "{shown}");
    let transport = RedisTransport::new(
        &RedisConfig::new("redis://:pw@cache"),
        "c",
        HistoryLimits::default(),
    );
    assert!(!transport.place().contains("pw"));
}
