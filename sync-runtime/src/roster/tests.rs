//! The roster without a hub: tabs, nodes, snapshots, numbering, and the lists and diffs browsers get.

use super::*;

fn view(json: &str) -> View {
    Arc::from(RawValue::from_string(json.to_owned()).unwrap())
}

fn users(roster: &Roster, path: &str) -> Vec<String> {
    roster
        .users(path)
        .iter()
        .map(|p| p.user().to_owned())
        .collect()
}

#[test]
fn two_tabs_of_one_user_are_listed_once_and_leave_with_the_last() {
    let roster = Roster::new(100, false);
    let (path, alice) = (Arc::from("/boards/7"), Arc::from("alice"));
    assert!(roster.join(&path, &alice, &null_view()).is_some());
    assert!(
        roster.join(&path, &alice, &null_view()).is_none(),
        "a second tab changes nothing the others must hear"
    );
    assert_eq!(users(&roster, "/boards/7"), ["alice"]);
    assert!(roster.leave(&path, &alice).is_none());
    assert_eq!(roster.count("/boards/7"), 1);
    let gone = roster.leave(&path, &alice).expect("the last tab left");
    assert!(gone.view.is_none());
    assert_eq!(roster.count("/boards/7"), 0);
    assert!(!roster.contains("/boards/7", "alice"));
}

#[test]
fn a_user_on_two_nodes_leaves_when_the_last_node_lets_go() {
    let roster = Roster::new(100, false);
    let (path, bob) = (Arc::from("/p"), Arc::from("bob"));
    roster.join(&path, &bob, &view(r#"{"n":1}"#));
    roster.remote(9, "/p", "bob", Some(view(r#"{"n":1}"#)));
    roster.remote(9, "/p", "carol", Some(view("null")));
    assert_eq!(users(&roster, "/p"), ["bob", "carol"]);
    roster.leave(&path, &bob);
    assert_eq!(
        users(&roster, "/p"),
        ["bob", "carol"],
        "node 9 still has bob"
    );
    roster.drop_node(9);
    assert!(users(&roster, "/p").is_empty(), "a dead node's users leave");
}

#[test]
fn a_snapshot_replaces_what_a_node_announced() {
    let roster = Roster::new(100, false);
    roster.remote(3, "/a", "x", Some(null_view()));
    roster.remote(3, "/b", "y", Some(null_view()));
    roster.replace(3, vec![("/b".into(), "y".into(), null_view())]);
    assert!(users(&roster, "/a").is_empty());
    assert_eq!(users(&roster, "/b"), ["y"]);
}

#[test]
fn changes_are_numbered_for_the_other_nodes() {
    let roster = Roster::new(100, false);
    let (path, u) = (Arc::from("/p"), Arc::from("u"));
    let first = roster.join(&path, &u, &null_view()).unwrap();
    let second = roster.revise(&u, &view(r#"{"team":2}"#));
    assert_eq!(first.version, 1);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].version, 2);
    assert_eq!(roster.version(), 2);
    let (version, entries) = roster.local();
    assert_eq!(version, 2);
    assert_eq!(entries[0].2.get(), r#"{"team":2}"#);
}

#[test]
fn clients_get_a_bounded_list_and_diffs_that_replay_to_it() {
    let roster = Roster::new(2, false);
    let path: Arc<str> = Arc::from("/room");
    for u in ["a", "b", "c"] {
        roster.join(&path, &Arc::from(u), &null_view());
    }
    let first = roster.flush(true);
    assert_eq!(first.len(), 1);
    let snapshot: serde_json::Value = serde_json::from_str(first[0].snapshot()).unwrap();
    assert_eq!(snapshot["count"], 3);
    assert_eq!(
        snapshot["users"].as_array().unwrap().len(),
        2,
        "at most `limit` users"
    );
    roster.leave(&path, &Arc::from("a"));
    let next = roster.flush(true);
    let diff: serde_json::Value = serde_json::from_str(next[0].diff.as_deref().unwrap()).unwrap();
    assert_eq!(diff["t"], "presence_diff");
    assert_eq!(diff["leave"], serde_json::json!(["a"]));
    assert_eq!(
        diff["join"][0]["user"], "c",
        "the next user moves into the list"
    );
    assert_eq!(diff["count"], 2);
    assert!(
        roster.flush(true).is_empty(),
        "nothing changed, nothing sent"
    );
}

#[test]
fn a_join_and_leave_inside_one_window_send_nothing_to_the_listed() {
    let roster = Roster::new(10, false);
    let path: Arc<str> = Arc::from("/p");
    roster.join(&path, &Arc::from("a"), &null_view());
    roster.flush(true);
    roster.join(&path, &Arc::from("b"), &null_view());
    roster.leave(&path, &Arc::from("b"));
    let out = roster.flush(true);
    assert!(out.iter().all(|l| l.diff.is_none()), "coalesced away");
    assert!(
        out.is_empty(),
        "and no connection waits for a list: nothing to send"
    );
}

#[test]
fn a_change_to_the_count_alone_waits_for_its_window_and_the_list_never_does() {
    let roster = Roster::new(1, false);
    let path: Arc<str> = Arc::from("/big");
    roster.join(&path, &Arc::from("first"), &null_view());
    assert!(roster.flush(true)[0].diff.is_some());
    // Past the listed one: only the count changes, and it went out just now.
    roster.join(&path, &Arc::from("second"), &null_view());
    let mut waited = 0;
    let diff = loop {
        // Nothing to send while it waits, yet the path stays due until its count goes out.
        let out = roster.flush(true);
        assert!(out.len() <= 1 && waited < 100, "the count never went out");
        if let Some(listing) = out.first() {
            let diff = listing
                .diff
                .as_deref()
                .expect("a listing sent for its diff");
            break serde_json::from_str::<serde_json::Value>(diff).unwrap();
        }
        waited += 1;
    };
    assert_eq!(waited, COUNT_WINDOWS as usize - 1);
    assert_eq!(diff["count"], 2);
    assert_eq!(diff["join"], serde_json::json!([]));
    // The listed user leaves: the list changes, and that goes out at once.
    roster.leave(&path, &Arc::from("first"));
    let out = roster.flush(true);
    let diff: serde_json::Value = serde_json::from_str(out[0].diff.as_deref().unwrap()).unwrap();
    assert_eq!(diff["leave"], serde_json::json!(["first"]));
    assert_eq!(diff["join"][0]["user"], "second");
}
