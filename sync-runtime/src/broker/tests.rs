//! The engine over the in-process bus: positions, following, history, outages, notes. The Redis
//! transport runs the same engine; `tests/fixture/tests/multinode.rs` drives it with real processes.

use std::sync::Mutex;

use super::*;

pub(crate) fn trigger(n: u64) -> WireTrigger {
    trigger_on("/dashboard", n)
}

fn trigger_on(path: &str, n: u64) -> WireTrigger {
    WireTrigger {
        path: path.to_owned(),
        name: "counter".to_owned(),
        data: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("JSON"),
        sender: None,
        origin: None,
    }
}

/// The number a delivered test trigger carries.
pub(crate) fn n_of(trigger: &WireTrigger) -> u64 {
    serde_json::from_str::<serde_json::Value>(trigger.data.get()).expect("JSON")["n"]
        .as_u64()
        .expect("a number")
}

/// A hub stand-in that records what it got.
#[derive(Default)]
struct Recorder {
    triggers: Mutex<Vec<(String, u64, u64)>>,
    published: Mutex<Vec<(u64, Result<u64, String>)>>,
    followed: Mutex<Vec<(Arc<str>, Option<u64>)>>,
    notes: Mutex<Vec<(u64, WireNote)>>,
    heard: Mutex<Vec<(u64, u64)>>,
}

impl Inbox for Recorder {
    fn trigger(&self, trigger: WireTrigger, at: Cursor) {
        let n = n_of(&trigger);
        self.triggers
            .lock()
            .expect("lock")
            .push((trigger.path, at.offset(), n));
    }

    fn published(&self, id: u64, result: Result<Cursor, String>) {
        self.published
            .lock()
            .expect("lock")
            .push((id, result.map(|at| at.offset())));
    }

    fn followed(&self, path: Arc<str>, before: Option<Cursor>) {
        self.followed
            .lock()
            .expect("lock")
            .push((path, before.map(|b| b.offset())));
    }

    fn note(&self, node: u64, note: WireNote) {
        self.notes.lock().expect("lock").push((node, note));
    }

    fn heard(&self, node: u64, presence: u64) {
        self.heard.lock().expect("lock").push((node, presence));
    }
}

impl Recorder {
    /// `(offset, n)` of the triggers received on `path`.
    fn on(&self, path: &str) -> Vec<(u64, u64)> {
        self.triggers
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, o, n)| (*o, *n))
            .collect()
    }

    fn published(&self) -> Vec<(u64, Result<u64, String>)> {
        self.published.lock().expect("lock").clone()
    }

    fn followed(&self) -> Vec<(Arc<str>, Option<u64>)> {
        self.followed.lock().expect("lock").clone()
    }
}

const BEAT: Duration = Duration::from_millis(50);

/// A node on `bus`: its broker and its recording inbox.
fn node(bus: &MemoryBus) -> (Arc<dyn Broker>, Arc<Recorder>) {
    node_with(
        Backplane::memory(bus).heartbeat(BEAT),
        HistoryLimits::default(),
    )
}

fn node_with(backplane: Backplane, history: HistoryLimits) -> (Arc<dyn Broker>, Arc<Recorder>) {
    let broker = backplane.start(history);
    let inbox = Arc::new(Recorder::default());
    broker.start(Arc::downgrade(&inbox) as Weak<dyn Inbox>);
    (broker, inbox)
}

/// Wait (in the test's paused time) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn connected(broker: &Arc<dyn Broker>) {
    until("the broker to connect", || {
        let status = broker.status();
        status.publishing && status.subscribed
    })
    .await;
}

/// Follow `path` on `broker` and wait for the confirmation.
async fn follow(broker: &Arc<dyn Broker>, path: &str) {
    broker.follow(&Arc::from(path), true);
    until("the subscription", || broker.follows(path)).await;
}

#[tokio::test(start_paused = true)]
async fn triggers_get_consecutive_offsets_and_reach_every_node_that_follows_their_path() {
    let bus = MemoryBus::new();
    let (a, a_in) = node(&bus);
    let (b, b_in) = node(&bus);
    let (c, c_in) = node(&bus);
    for broker in [&a, &b, &c] {
        connected(broker).await;
    }
    follow(&a, "/dashboard").await;
    follow(&b, "/dashboard").await;
    follow(&c, "/elsewhere").await;
    for n in 1..=3 {
        assert!(a.publish(n, trigger(n)));
    }
    assert!(b.publish(7, trigger(4)));
    until("delivery", || b_in.on("/dashboard").len() == 4).await;
    let expected = [(1, 1), (2, 2), (3, 3), (4, 4)];
    assert_eq!(b_in.on("/dashboard"), expected);
    until("the publisher's own", || a_in.on("/dashboard").len() == 4).await;
    assert_eq!(
        a_in.on("/dashboard"),
        expected,
        "the publisher gets its own"
    );
    assert_eq!(a_in.published(), [(1, Ok(1)), (2, Ok(2)), (3, Ok(3))]);
    assert_eq!(b_in.published(), [(7, Ok(4))]);
    assert!(
        c_in.on("/dashboard").is_empty(),
        "a node that does not follow gets none"
    );
    assert_eq!(c.status().received, 0);
    assert_eq!(a.status().following, 1);

    // Leaving a path stops its triggers; its history stays readable.
    a.follow(&Arc::from("/dashboard"), false);
    until("leaving", || !a.follows("/dashboard")).await;
    b.publish(8, trigger(5));
    until("delivery", || b_in.on("/dashboard").len() == 5).await;
    assert_eq!(a_in.on("/dashboard").len(), 4);
    let top = a.top(Arc::from("/dashboard")).await.expect("readable");
    assert_eq!(top.offset(), 5);
    let Some(Recalled::Entries { first, entries }) = c
        .since(Arc::from("/dashboard"), top.epoch_arc().clone(), 3, 5)
        .await
    else {
        panic!("readable");
    };
    assert_eq!(first, 1);
    let got: Vec<(u64, u64)> = entries.iter().map(|(o, t)| (*o, n_of(t))).collect();
    assert_eq!(got, [(4, 4), (5, 5)]);
    assert!(matches!(
        c.since(Arc::from("/dashboard"), Arc::from("another"), 3, 5)
            .await,
        Some(Recalled::Lost)
    ));
}

#[tokio::test(start_paused = true)]
async fn following_reads_the_position_first_so_nothing_in_between_is_lost() {
    let bus = MemoryBus::new();
    let (a, _a_in) = node(&bus);
    let (b, b_in) = node(&bus);
    connected(&a).await;
    connected(&b).await;
    for n in 1..=2 {
        a.publish(n, trigger(n));
    }
    until("published", || a.status().published == 2).await;
    follow(&b, "/dashboard").await;
    assert_eq!(b_in.followed(), [(Arc::from("/dashboard"), Some(2))]);
}

#[tokio::test(start_paused = true)]
async fn different_prefixes_never_cross_talk() {
    let bus = MemoryBus::new();
    let (a, _a_in) = node_with(
        Backplane::memory(&bus).heartbeat(BEAT).key_prefix("one"),
        HistoryLimits::default(),
    );
    let (b, b_in) = node_with(
        Backplane::memory(&bus).heartbeat(BEAT).key_prefix("two"),
        HistoryLimits::default(),
    );
    connected(&a).await;
    connected(&b).await;
    follow(&b, "/dashboard").await;
    a.publish(1, trigger(1));
    until("published", || a.status().published == 1).await;
    tokio::time::sleep(BEAT * 4).await;
    assert!(b_in.on("/dashboard").is_empty());
    assert!(
        b_in.heard.lock().expect("lock").is_empty(),
        "not even heartbeats"
    );
    assert_eq!(
        b.top(Arc::from("/dashboard"))
            .await
            .expect("readable")
            .offset(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_refuses_triggers_and_a_resubscription_is_caught_up_from_its_position() {
    let bus = MemoryBus::new();
    let (a, a_in) = node(&bus);
    let (b, b_in) = node(&bus);
    connected(&a).await;
    connected(&b).await;
    follow(&b, "/dashboard").await;
    a.publish(1, trigger(1));
    until("delivery", || b_in.on("/dashboard").len() == 1).await;
    bus.set_down(true);
    until("the outage", || {
        !a.status().publishing || !a.status().subscribed
    })
    .await;
    a.publish(2, trigger(2));
    until("the refusal", || a_in.published().len() == 2).await;
    assert!(a_in.published()[1].1.is_err(), "refused to its sender");
    bus.set_down(false);
    connected(&a).await;
    connected(&b).await;
    until("b follows again", || b_in.followed().len() == 2).await;
    assert_eq!(
        b_in.followed()[1],
        (Arc::from("/dashboard"), Some(1)),
        "its position when it came back"
    );
    a.publish(3, trigger(3));
    until("delivery", || b_in.on("/dashboard").len() == 2).await;
    assert_eq!(
        b_in.on("/dashboard"),
        [(1, 1), (2, 3)],
        "the refused one has no offset"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_publish_queue_refuses_the_trigger_at_once() {
    let bus = MemoryBus::new();
    let (a, _a_in) = node_with(
        Backplane::memory(&bus).heartbeat(BEAT).queue(4),
        HistoryLimits::default(),
    );
    connected(&a).await;
    // Ten at once, with no chance for the publisher to run: six do not fit.
    let taken = (1..=10).filter(|n| a.publish(*n, trigger(*n))).count();
    assert_eq!(taken, 4);
    assert_eq!(a.status().dropped, 6);
}

#[tokio::test]
async fn a_subscriber_too_far_behind_is_dropped() {
    let bus = MemoryBus::new();
    let transport = memory::MemoryTransport::new(bus.clone(), "c", 2, HistoryLimits::default());
    let mut subscription = transport.subscribe().await.expect("up");
    transport
        .follow(&mut subscription, &[Arc::from("/p")], true)
        .await
        .expect("up");
    let mut publisher = transport.connect().await.expect("up");
    let triggers: Vec<(Arc<str>, bytes::Bytes)> = (0..3)
        .map(|n| (Arc::from("/p"), bytes::Bytes::from(format!("{n}"))))
        .collect();
    let positions = transport
        .append(&mut publisher, &triggers)
        .await
        .expect("up");
    assert_eq!(positions.len(), 3);
    for _ in 0..2 {
        assert!(matches!(
            transport.next(&mut subscription).await,
            Some(Message::Path(_))
        ));
    }
    assert!(transport.next(&mut subscription).await.is_none(), "dropped");
    assert_eq!(bus.live_subscribers(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flushed_history_starts_a_new_epoch() {
    let bus = MemoryBus::new();
    let (a, _a_in) = node(&bus);
    connected(&a).await;
    a.publish(1, trigger(1));
    until("published", || a.status().published == 1).await;
    let before = a.top(Arc::from("/dashboard")).await.expect("readable");
    bus.flush();
    let after = a.top(Arc::from("/dashboard")).await.expect("readable");
    assert_ne!(before.epoch(), after.epoch());
    assert_eq!(after.offset(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_tasks_end_with_the_broker_or_the_inbox() {
    let bus = MemoryBus::new();
    let (a, a_in) = node(&bus);
    connected(&a).await;
    assert_eq!(bus.live_subscribers(), 1);
    drop(a_in);
    until("the subscriber to end", || bus.live_subscribers() == 0).await;
    drop(a);
    let (b, b_in) = node(&bus);
    connected(&b).await;
    drop(b);
    until("the subscriber to end", || bus.live_subscribers() == 0).await;
    drop(b_in);
}

#[tokio::test(start_paused = true)]
async fn a_note_crosses_and_every_envelope_after_it_repeats_its_presence_version() {
    let bus = MemoryBus::new();
    let (a, _a_in) = node(&bus);
    let (b, b_in) = node(&bus);
    connected(&a).await;
    connected(&b).await;
    a.share(WireNote::Want { node: 5 });
    a.share(WireNote::Presence {
        v: 3,
        path: "/p".to_owned(),
        user: "u".to_owned(),
        view: None,
    });
    until("the notes", || b_in.notes.lock().expect("lock").len() == 2).await;
    let node = a.node();
    until("a heartbeat after", || {
        b_in.heard
            .lock()
            .expect("lock")
            .iter()
            .any(|(n, pv)| *n == node && *pv == 3)
    })
    .await;
    assert!(
        b_in.notes
            .lock()
            .expect("lock")
            .iter()
            .all(|(n, _)| *n == node)
    );
}
