//! What a hub tells its observers and its spans: one id per trigger, the same on every node that runs it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::Registry;

use crate::observe::{Finished, Observer, TriggerId};
use crate::test_support::{NOTE, TestClient, until};
use crate::{Backplane, MemoryBus, SyncHub};

/// What one node's observer was told.
#[derive(Default)]
struct Seen {
    finished: Mutex<Vec<(TriggerId, bool, u32)>>,
    published: Mutex<Vec<Duration>>,
    received: Mutex<Vec<Duration>>,
}

impl Observer for Seen {
    fn finished(&self, f: &Finished<'_>) {
        let entry = (f.id, f.remote, f.outcome.delivered);
        self.finished.lock().unwrap().push(entry);
    }
    fn published(&self, lag: Duration) {
        self.published.lock().unwrap().push(lag);
    }
    fn received(&self, lag: Duration) {
        self.received.lock().unwrap().push(lag);
    }
}

fn node(bus: &MemoryBus) -> (SyncHub, Arc<Seen>) {
    let hub = SyncHub::builder()
        .authenticate(|req| {
            let user = req.token().unwrap_or("anonymous").to_owned();
            async move { Ok(crate::Identity::new(user, ())) }
        })
        .backplane(Backplane::memory(bus).heartbeat(Duration::from_millis(20)))
        .build_with(&[&NOTE])
        .expect("the test sync fits");
    let seen = Arc::new(Seen::default());
    hub.inner.observers.set(vec![seen.clone()]);
    (hub, seen)
}

/// The `trigger` field of every `sync.trigger` span opened, and on which node's task.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _cx: Context<'_, S>,
    ) {
        struct Trigger<'a>(&'a mut Option<String>);
        impl tracing::field::Visit for Trigger<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "trigger" {
                    *self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if attrs.metadata().name() == "sync.trigger" {
            let mut trigger = None;
            attrs.record(&mut Trigger(&mut trigger));
            self.0.lock().unwrap().extend(trigger);
        }
    }
}

#[tokio::test]
async fn one_trigger_has_one_id_on_every_node_that_runs_it() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(spans.clone()));
    let bus = MemoryBus::new();
    let ((a, seen_a), (b, seen_b)) = (node(&bus), node(&bus));
    until("both subscribed", || {
        [&a, &b]
            .iter()
            .all(|h| h.backplane_status().is_some_and(|s| s.subscribed))
    })
    .await;
    let mut on_a = TestClient::connect(&a, "ann", "/room/1").await;
    let mut on_b = TestClient::connect(&b, "bob", "/room/1").await;
    until("both follow the path", || {
        [&a, &b]
            .iter()
            .all(|h| h.inner.broker.as_ref().unwrap().follows("/room/1"))
    })
    .await;

    let outcome = a.request("/room/1", "note", json!({ "n": 7 })).await;
    assert_eq!(outcome.expect("ran").delivered, 1, "a's part: ann");
    assert_eq!(
        on_a.next_of("reaction").await["reaction"]["payload"]["n"],
        7
    );
    assert_eq!(
        on_b.next_of("reaction").await["reaction"]["payload"]["n"],
        7
    );
    until("b's fan-out reported", || {
        !seen_b.finished.lock().unwrap().is_empty()
    })
    .await;

    let here = seen_a.finished.lock().unwrap().clone();
    let there = seen_b.finished.lock().unwrap().clone();
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(there.len(), 1, "{there:?}");
    let ((id_a, remote_a, delivered_a), (id_b, remote_b, delivered_b)) = (here[0], there[0]);
    assert_eq!(id_a, id_b, "the same trigger, the same id on both nodes");
    assert_eq!(id_a.node, a.inner.node, "accepted on a");
    assert_eq!((remote_a, remote_b), (false, true));
    assert_eq!((delivered_a, delivered_b), (1, 1));
    assert_eq!(seen_a.published.lock().unwrap().len(), 1, "a published it");
    assert_eq!(seen_b.received.lock().unwrap().len(), 1, "b received it");
    assert!(
        seen_a.received.lock().unwrap().is_empty(),
        "a's own is not received"
    );

    let spans = spans.0.lock().unwrap().clone();
    assert_eq!(
        spans,
        [id_a.to_string(), id_a.to_string()],
        "one `sync.trigger` span on each node, with the one id"
    );
}
