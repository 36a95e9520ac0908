use super::*;

fn limits() -> HistoryLimits {
    HistoryLimits {
        size: 3,
        age: Duration::from_secs(60),
        path_bytes: 1000,
        total_bytes: 10_000,
        paths: 100,
    }
}

fn offsets(recalled: Recalled<u32>) -> (u64, Vec<u64>) {
    match recalled {
        Recalled::Entries { first, entries } => {
            (first, entries.into_iter().map(|(o, _)| o).collect())
        }
        Recalled::Lost => panic!("lost"),
    }
}

#[test]
fn cursors_read_and_write_as_epoch_colon_offset() {
    let cursor: Cursor = "ab_-9:17".parse().expect("a cursor");
    assert_eq!((cursor.epoch(), cursor.offset()), ("ab_-9", 17));
    assert_eq!(cursor.to_string(), "ab_-9:17");
    for bad in [
        "",
        ":1",
        "abc",
        "abc:",
        "abc:x",
        "a b:1",
        "a\"b:1",
        "abc:-1",
        "abc:99999999999999999999",
    ] {
        assert_eq!(bad.parse::<Cursor>(), Err(BadCursor), "{bad}");
    }
    assert_ne!(new_epoch(), new_epoch());
    assert_eq!(new_epoch().len(), 16);
}

#[test]
fn offsets_count_per_path_and_the_last_few_are_kept() {
    let log = Log::new(limits());
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("/a"), Arc::from("/b"));
    let first = log.top(&a);
    assert_eq!(first.offset(), 0);
    for n in 1..=5 {
        assert_eq!(log.append(&a, n, 10), first.at(u64::from(n)));
    }
    assert_eq!(
        log.append(&b, 9, 10).offset(),
        1,
        "another path counts on its own"
    );
    assert_ne!(
        log.top(&b).epoch(),
        first.epoch(),
        "each path has its own epoch"
    );
    assert_eq!(
        offsets(log.since("/a", first.epoch(), 3, 5)),
        (3, vec![4, 5])
    );
    assert_eq!(
        offsets(log.since("/a", first.epoch(), 0, 5)).0,
        3,
        "1 and 2 are gone"
    );
    assert_eq!(offsets(log.since("/a", first.epoch(), 3, 4)), (3, vec![4]));
    assert_eq!(log.since("/a", "another", 3, 5), Recalled::Lost);
    assert_eq!(log.since("/nowhere", first.epoch(), 0, 5), Recalled::Lost);
    assert_eq!(log.bytes(), 40);
}

#[test]
fn a_history_of_size_zero_counts_offsets_but_keeps_nothing() {
    let log = Log::new(HistoryLimits {
        size: 0,
        ..limits()
    });
    let path: Arc<str> = Arc::from("/a");
    let cursor = log.append(&path, 1u32, 10);
    assert_eq!(cursor.offset(), 1);
    assert_eq!(offsets(log.since("/a", cursor.epoch(), 0, 1)), (2, vec![]));
    assert_eq!(log.bytes(), 0);
}

#[test]
fn bytes_are_bounded_per_path_and_in_all() {
    let log = Log::new(HistoryLimits {
        size: 100,
        path_bytes: 100,
        total_bytes: 250,
        ..limits()
    });
    let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("/a"), Arc::from("/b"), Arc::from("/c"));
    for n in 0..5 {
        log.append(&a, n, 40);
    }
    assert_eq!(log.bytes(), 80, "two of 40 fit in 100");
    let epoch = log.top(&a);
    assert_eq!(
        offsets(log.since("/a", epoch.epoch(), 0, 5)),
        (4, vec![4, 5])
    );
    log.append(&a, 9, 500);
    assert_eq!(
        offsets(log.since("/a", epoch.epoch(), 0, 6)),
        (7, vec![]),
        "too big to keep: none before it can be served either"
    );
    for n in 0..2 {
        log.append(&b, n, 50);
        log.append(&c, n, 50);
    }
    log.append(&a, 1, 90);
    assert!(log.bytes() <= 250, "{}", log.bytes());
    assert_eq!(
        offsets(log.since("/a", epoch.epoch(), 6, 7)),
        (7, vec![7]),
        "the path written keeps its entry"
    );
}

#[test]
fn the_least_recently_used_paths_are_forgotten_past_the_bound_with_a_new_epoch_after() {
    let log = Log::new(HistoryLimits {
        paths: 8,
        ..limits()
    });
    let paths: Vec<Arc<str>> = (0..8).map(|n| Arc::from(format!("/{n}"))).collect();
    let old = log.append(&paths[0], 1u32, 1);
    for path in &paths[1..] {
        log.append(path, 1, 1);
    }
    log.append(&Arc::from("/new"), 1, 1);
    assert_eq!(
        log.since("/0", old.epoch(), 0, 1),
        Recalled::Lost,
        "the oldest is forgotten"
    );
    assert_ne!(
        log.top(&paths[0]).epoch(),
        old.epoch(),
        "and starts a new epoch"
    );
    assert_eq!(
        offsets(log.since("/7", log.top(&paths[7]).epoch(), 0, 1)).1,
        vec![1]
    );
}

#[tokio::test(start_paused = true)]
async fn entries_older_than_the_age_are_not_served() {
    let log = Log::new(limits());
    let path: Arc<str> = Arc::from("/a");
    let cursor = log.append(&path, 1u32, 10);
    tokio::time::advance(Duration::from_secs(61)).await;
    log.append(&path, 2, 10);
    assert_eq!(offsets(log.since("/a", cursor.epoch(), 0, 2)), (2, vec![2]));
    assert_eq!(log.bytes(), 10);
}
