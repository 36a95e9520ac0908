//! What a scrape reads from the hub, and how it is written: gauges, and the counters the hub keeps
//! anyway ([`Stats`]), encoded when Prometheus asks, never counted a second time.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::broker::BackplaneStatus;
use crate::stats::Stats;

/// The `route` label of users on a path that no registered sync's route matches (a route pattern always
/// starts with `/`, so it cannot collide).
pub(crate) const NO_ROUTE: &str = "none";

/// Everything a scrape shows that the hub knows without counting per event.
#[derive(Debug, Default)]
pub(crate) struct Reading {
    pub stats: Stats,
    /// Users (each once) with a connection on this node, per route pattern: every registered route, then
    /// [`NO_ROUTE`] when someone is on a path without syncs.
    pub users: Vec<(&'static str, usize)>,
    /// The busiest concrete paths here and their users, at most `metrics_top_paths`.
    pub top_paths: Vec<(Arc<str>, usize)>,
    /// Paths with a lane (triggers being run, or run lately).
    pub lanes: usize,
    /// Jobs waiting in every lane together, and in the longest one.
    pub backlog: (usize, usize),
    /// Frames and bytes waiting for every connection's transport together, and the most frames one
    /// connection has waiting.
    pub queued: (usize, usize, usize),
    /// Nodes this one hears, itself included.
    pub nodes: usize,
    pub backplane: Option<BackplaneStatus>,
}

/// What a scrape reads: implemented by the hub, which hands a `Weak` of itself.
pub(crate) trait Gauges: Send + Sync + 'static {
    fn read(&self) -> Reading;
}

/// The collector a registry calls on every scrape.
pub(super) struct Scrape {
    pub source: Arc<OnceLock<Weak<dyn Gauges>>>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // A hub gone (dropped while an app's registry lives on) shows nothing rather than zeros.
        let Some(hub) = self.source.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        write(&mut encoder, &hub.read())
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value as u64).encode(metric)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// One series per `(label value, value)`, under one name.
fn labelled<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    rows: impl IntoIterator<Item = (impl AsRef<str>, M)>,
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, kind)?;
    for (value, m) in rows {
        m.encode(metric.encode_family(&[(label, value.as_ref())])?)?;
    }
    Ok(())
}

fn write(e: &mut DescriptorEncoder, r: &Reading) -> fmt::Result {
    let s = &r.stats;
    let (gauge_of, counter_of) = (ConstGauge::new, ConstCounter::new);
    labelled(
        e,
        (
            "sync_connections",
            "Connections with a transport attached.",
            MetricType::Gauge,
        ),
        "transport",
        [
            ("websocket", gauge_of(s.websockets)),
            ("sse", gauge_of(s.sse_streams)),
        ],
    )?;
    gauge(
        e,
        "sync_connections_parked",
        "Connections whose transport dropped, waiting for a resume.",
        s.parked as usize,
    )?;
    labelled(
        e,
        (
            "sync_users",
            "Users with a connection on this node, each once, by route pattern.",
            MetricType::Gauge,
        ),
        "route",
        r.users
            .iter()
            .map(|(route, n)| (route, gauge_of(*n as u64))),
    )?;
    if !r.top_paths.is_empty() {
        labelled(
            e,
            (
                "sync_path_users",
                "Users with a connection on this node on the busiest concrete paths.",
                MetricType::Gauge,
            ),
            "path",
            r.top_paths
                .iter()
                .map(|(path, n)| (path, gauge_of(*n as u64))),
        )?;
    }
    labelled(
        e,
        (
            "sync_filter_failures",
            "Filters that failed, by why: returned an error, panicked (a reaction too), overran the deadline.",
            MetricType::Counter,
        ),
        "reason",
        [
            ("error", counter_of(s.filter_errors)),
            ("panic", counter_of(s.filter_panics)),
            ("deadline", counter_of(s.filter_timeouts)),
        ],
    )?;
    for (name, help, value) in [
        (
            "sync_slow_consumer_closes",
            "Connections closed because their outbound queue overflowed.",
            s.slow_consumers,
        ),
        (
            "sync_rejected_messages",
            "Client messages answered with an error code.",
            s.rejected_messages,
        ),
        (
            "sync_rate_limited_frames",
            "Client messages refused by a rate limit (of sync_rejected_messages).",
            s.rate_limited,
        ),
        (
            "sync_resumes",
            "Connections resumed by key within the grace window.",
            s.resumed,
        ),
        (
            "sync_replayed_reactions",
            "Reactions re-run from a path's history for connections that stood behind.",
            s.replayed,
        ),
        (
            "sync_resyncs",
            "resync frames sent because a position was no longer in its path's history.",
            s.history_resyncs,
        ),
        (
            "sync_parked_evicted",
            "Parked connections forgotten before their grace window ended.",
            s.parked_evicted,
        ),
        (
            "sync_remote_dropped",
            "Triggers from other nodes dropped because their path's lane was full.",
            s.remote_dropped,
        ),
    ] {
        counter(e, name, help, value)?;
    }
    gauge(
        e,
        "sync_lanes",
        "Paths with a lane (running triggers, or idle for less than lane_idle).",
        r.lanes,
    )?;
    gauge(
        e,
        "sync_lane_backlog",
        "Triggers and catch-ups waiting in every lane together.",
        r.backlog.0,
    )?;
    gauge(
        e,
        "sync_lane_backlog_max",
        "Triggers and catch-ups waiting in the longest lane.",
        r.backlog.1,
    )?;
    let (frames, bytes, most) = r.queued;
    gauge(
        e,
        "sync_outbound_queued_frames",
        "Frames waiting for every connection's transport together.",
        frames,
    )?;
    gauge(
        e,
        "sync_outbound_queued_bytes",
        "Bytes waiting for every connection's transport together.",
        bytes,
    )?;
    gauge(
        e,
        "sync_outbound_queue_max_frames",
        "Frames waiting for the connection with the longest queue.",
        most,
    )?;
    gauge(
        e,
        "sync_nodes",
        "Nodes this one hears on the backplane, itself included.",
        r.nodes,
    )?;
    if let Some(b) = &r.backplane {
        labelled(
            e,
            (
                "sync_broker_up",
                "The backplane's connection is up (1) or not (0).",
                MetricType::Gauge,
            ),
            "connection",
            [
                ("publish", gauge_of(u64::from(b.publishing))),
                ("subscribe", gauge_of(u64::from(b.subscribed))),
            ],
        )?;
        counter(
            e,
            "sync_broker_published",
            "Triggers this node published.",
            b.published,
        )?;
        counter(
            e,
            "sync_broker_received",
            "Triggers received on the channels this node follows.",
            b.received,
        )?;
        counter(
            e,
            "sync_broker_dropped",
            "Triggers that could not be published (refused to their sender).",
            b.dropped,
        )?;
        gauge(
            e,
            "sync_broker_following_paths",
            "Paths whose channel this node follows.",
            b.following as usize,
        )?;
    }
    Ok(())
}
