//! A hub's Prometheus metrics (feature `metrics`): the series counted per event, and the registry the
//! scrape reads.
//!
//! Two kinds of series, so that the hot path pays for nothing it already pays for:
//! * what the hub already counts or can read ([`Stats`](crate::Stats), connections, users, queues, the
//!   backplane) is read when scraped, by a collector ([`scrape`]) over a [`Gauges`] reading the hub hands
//!   it: nothing is counted twice;
//! * what only an event tells (a trigger's outcome per route and sync, its fan-out time, the lags between
//!   nodes) is counted by an [`Observer`]: one lookup in a map built once, a few atomic adds and one
//!   histogram observation per trigger.
//!
//! Labels are bounded: `route` and `sync` take the registered syncs' values only, `transport`, `reason`
//! and `connection` a fixed few; a concrete path is a label only in `sync_path_users`, at most
//! `metrics_top_paths` of them.
//!
//! This module knows the readings, not the hub: the hub implements [`Gauges`] and hands a `Weak` of
//! itself, so a registry that outlives the hub (an app's own) never keeps it alive.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::observe::{Finished, Observer};

mod scrape;

pub(crate) use scrape::{Gauges, NO_ROUTE, Reading};

/// `route` and `sync` of one registered sync.
type SyncLabels = [(&'static str, &'static str); 2];

/// Upper bounds of the time histograms, in seconds: 100 µs to 10 s. A fan-out on one node takes well
/// under a millisecond; lags between nodes are milliseconds; anything past seconds is an outage.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn seconds() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The series of one sync, taken out of their families once, so that an event looks up one map entry
/// and takes no lock of the families'.
struct SyncSeries {
    triggers: Counter,
    matched: Counter,
    passed: Counter,
    delivered: Counter,
    failed: Counter,
    took: Histogram,
}

/// The families counted per event.
#[derive(Clone)]
struct Families {
    triggers: Family<SyncLabels, Counter>,
    matched: Family<SyncLabels, Counter>,
    passed: Family<SyncLabels, Counter>,
    delivered: Family<SyncLabels, Counter>,
    failed: Family<SyncLabels, Counter>,
    took: Family<SyncLabels, Histogram, fn() -> Histogram>,
    publish_lag: Histogram,
    receive_lag: Histogram,
}

/// What the observer counts: per sync, and the lags.
struct Events {
    families: Families,
    by_sync: HashMap<(&'static str, &'static str), SyncSeries>,
}

impl Observer for Events {
    fn finished(&self, finished: &Finished<'_>) {
        // Every trigger runs a registered sync, whose series exist from the start.
        let Some(series) = self.by_sync.get(&(finished.route, finished.name)) else {
            return;
        };
        let outcome = finished.outcome;
        // Counted where accepted, so that a sum over nodes counts each trigger once; its fan-outs on
        // every node are the duration histogram's count.
        if !finished.remote {
            series.triggers.inc();
        }
        series.matched.inc_by(u64::from(outcome.matched));
        series.passed.inc_by(u64::from(outcome.passed));
        series.delivered.inc_by(u64::from(outcome.delivered));
        series.failed.inc_by(u64::from(outcome.failed));
        series.took.observe(finished.took.as_secs_f64());
    }

    fn published(&self, lag: Duration) {
        self.families.publish_lag.observe(lag.as_secs_f64());
    }

    fn received(&self, lag: Duration) {
        self.families.receive_lag.observe(lag.as_secs_f64());
    }
}

/// The hub whose gauges a scrape reads, once it exists.
type Source = OnceLock<Weak<dyn Gauges>>;

/// A hub's metrics: the observer that counts events, and the registry a scrape encodes.
pub(crate) struct Metrics {
    events: Arc<Events>,
    source: Arc<Source>,
    registry: Registry,
}

impl Metrics {
    /// The series of the syncs `syncs` (route, name), every one at zero from the start (a series that
    /// appears only with its first trigger makes `rate()` miss that trigger).
    pub fn new(syncs: impl IntoIterator<Item = (&'static str, &'static str)>) -> Self {
        let families = Families {
            triggers: Family::default(),
            matched: Family::default(),
            passed: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            took: Family::new_with_constructor(seconds),
            publish_lag: seconds(),
            receive_lag: seconds(),
        };
        let by_sync = syncs
            .into_iter()
            .map(|(route, name)| {
                let labels = [("route", route), ("sync", name)];
                let series = SyncSeries {
                    triggers: families.triggers.get_or_create_owned(&labels),
                    matched: families.matched.get_or_create_owned(&labels),
                    passed: families.passed.get_or_create_owned(&labels),
                    delivered: families.delivered.get_or_create_owned(&labels),
                    failed: families.failed.get_or_create_owned(&labels),
                    took: families.took.get_or_create_owned(&labels),
                };
                ((route, name), series)
            })
            .collect();
        let mut metrics = Metrics {
            events: Arc::new(Events { families, by_sync }),
            source: Arc::new(OnceLock::new()),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// The observer to give the hub.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.events.clone()
    }

    /// Read the gauges from `hub` from now on (called once, when the hub exists).
    pub fn watch(&self, hub: Weak<dyn Gauges>) {
        let _ = self.source.set(hub);
    }

    /// Every series of this hub, in `registry` (the hub's own, or an app's).
    pub fn register(&self, registry: &mut Registry) {
        let f = &self.events.families;
        registry.register(
            "sync_triggers",
            "Triggers accepted on this node (each counted once across nodes), by route pattern and sync",
            f.triggers.clone(),
        );
        registry.register(
            "sync_recipients_matched",
            "Connections on the trigger's path when its fan-out ran, summed over triggers",
            f.matched.clone(),
        );
        registry.register(
            "sync_recipients_passed",
            "Recipients whose filter let the reaction through (every matched one without a filter)",
            f.passed.clone(),
        );
        registry.register(
            "sync_deliveries",
            "Reactions handed to a connection's queue",
            f.delivered.clone(),
        );
        registry.register(
            "sync_recipients_failed",
            "Recipients whose filter returned an error, panicked or overran its deadline",
            f.failed.clone(),
        );
        registry.register_with_unit(
            "sync_fanout_duration",
            "Fan-outs run here (its count), from the trigger accepted (or received from another node) to its last reaction queued",
            Unit::Seconds,
            f.took.clone(),
        );
        registry.register_with_unit(
            "sync_publish_lag",
            "From one of this node's triggers handed to the backplane to its position coming back",
            Unit::Seconds,
            f.publish_lag.clone(),
        );
        registry.register_with_unit(
            "sync_receive_lag",
            "From a trigger accepted on another node to its arrival here, by the two nodes' clocks",
            Unit::Seconds,
            f.receive_lag.clone(),
        );
        registry.register_collector(Box::new(scrape::Scrape {
            source: self.source.clone(),
        }));
    }

    /// The hub's series in the OpenMetrics text format.
    pub fn text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding into a String never fails");
        text
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("syncs", &self.events.by_sync.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
