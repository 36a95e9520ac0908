//! Prometheus metrics on the hub (feature `metrics`): opting in on the builder, the scrape's text and
//! route, registering into an app's own registry, and the readings a scrape takes from the hub's parts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};

use super::{HubInner, SyncHub, SyncHubBuilder};
use crate::metrics::{Gauges, Metrics, NO_ROUTE, Reading};

/// What the builder was told about metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricsConfig {
    pub on: bool,
    pub top_paths: usize,
}

/// The content type of the OpenMetrics text format, which Prometheus asks for first.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl<S: Send + Sync + 'static, F: Send + Sync + 'static> SyncHubBuilder<S, F> {
    /// Keep Prometheus metrics (feature `metrics`): connections by transport, users per route,
    /// triggers, deliveries and filter failures per route and sync, slow consumers, rate limits,
    /// resumes, the backplane's state, lags and fan-out times; `docs/METRICS.md` lists every series.
    /// Serve them where the app chooses with [`SyncHub::metrics_route`], read them with
    /// [`SyncHub::metrics_text`], or add them to the app's registry with [`SyncHub::register_metrics`].
    /// Default: off (no series kept, nothing counted).
    ///
    /// ```
    /// use axum::Router;
    /// use sync_runtime::SyncHub;
    ///
    /// let hub = SyncHub::builder().guests().metrics().build().expect("a hub");
    /// let app: Router = hub.attach(Router::new().route("/metrics", hub.metrics_route()));
    /// assert!(hub.metrics_text().expect("metrics on").contains("sync_connections"));
    /// # drop(app);
    /// ```
    pub fn metrics(mut self) -> Self {
        self.config.metrics.on = true;
        self
    }

    /// Also list the users of the `n` busiest concrete paths (`sync_path_users{path="/boards/7"}`), the
    /// only series labelled by a concrete path, hence bounded by `n`. Turns [`metrics`](Self::metrics)
    /// on. Default: 0 (users are counted per route pattern only).
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder()
    ///     .guests()
    ///     .metrics_top_paths(10)
    ///     .build()
    ///     .expect("a hub");
    /// assert!(hub.metrics_text().is_some());
    /// ```
    pub fn metrics_top_paths(mut self, n: usize) -> Self {
        self.config.metrics = MetricsConfig {
            on: true,
            top_paths: n,
        };
        self
    }
}

impl SyncHub {
    /// Every series in the OpenMetrics text format (what [`metrics_route`](Self::metrics_route)
    /// serves), or `None` without [`SyncHubBuilder::metrics`].
    ///
    /// ```
    /// let hub = sync_runtime::SyncHub::builder().guests().metrics().build().expect("a hub");
    /// let text = hub.metrics_text().expect("metrics on");
    /// assert!(text.contains("sync_connections{transport=\"websocket\"} 0"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn metrics_text(&self) -> Option<String> {
        self.inner.metrics.as_ref().map(|m| m.text())
    }

    /// A `GET` handler serving [`metrics_text`](Self::metrics_text) as
    /// `application/openmetrics-text`, to mount where the app chooses (behind its own guard if the
    /// endpoint must not be public). Without [`SyncHubBuilder::metrics`] it answers `404`.
    ///
    /// ```no_run
    /// use axum::Router;
    /// # fn f(hub: sync_runtime::SyncHub) -> Router {
    /// hub.attach(Router::new().route("/metrics", hub.metrics_route()))
    /// # }
    /// ```
    pub fn metrics_route<T: Clone + Send + Sync + 'static>(&self) -> MethodRouter<T> {
        // The route holds the metrics, not the hub: the hub's own tasks end when the app drops it.
        let metrics = self.inner.metrics.clone();
        get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics {
                    Some(metrics) => {
                        ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.text()).into_response()
                    }
                    None => (
                        StatusCode::NOT_FOUND,
                        "metrics are off: call SyncHubBuilder::metrics",
                    )
                        .into_response(),
                }
            }
        })
    }

    /// Add this hub's series to the app's own `prometheus-client` registry, to be served with the app's
    /// metrics; `false` (nothing added) without [`SyncHubBuilder::metrics`]. Several hubs in one
    /// registry each need a sub-registry with a label of their own, or their series collide.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    ///
    /// let hub = sync_runtime::SyncHub::builder().guests().metrics().build().expect("a hub");
    /// let mut registry = Registry::default();
    /// assert!(hub.register_metrics(&mut registry));
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).expect("a String");
    /// assert!(text.contains("sync_users"));
    /// ```
    #[must_use = "false means nothing was registered: the hub was built without `metrics()`"]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) -> bool {
        match &self.inner.metrics {
            Some(metrics) => {
                metrics.register(registry);
                true
            }
            None => false,
        }
    }
}

/// The hub's metrics, when configured: built before the hub (its observer goes into the list).
pub(super) fn build(
    config: &MetricsConfig,
    table: &crate::registry::SyncTable,
) -> Option<Arc<Metrics>> {
    config
        .on
        .then(|| Arc::new(Metrics::new(table.entries().map(|e| (e.route, e.name)))))
}

impl Gauges for HubInner {
    fn read(&self) -> Reading {
        let mut routes: HashMap<&'static str, HashSet<Arc<str>>> = HashMap::new();
        for entry in self.table.entries() {
            routes.entry(entry.route).or_default();
        }
        let mut paths: HashMap<Arc<str>, HashSet<Arc<str>>> = HashMap::new();
        for conn in self.presence.all(|_| true) {
            let Some(location) = conn.current_location() else {
                continue;
            };
            let route = location.route().unwrap_or(NO_ROUTE);
            routes.entry(route).or_default().insert(conn.user().clone());
            paths
                .entry(location.path_arc().clone())
                .or_default()
                .insert(conn.user().clone());
        }
        let mut users: Vec<(&'static str, usize)> =
            routes.into_iter().map(|(r, u)| (r, u.len())).collect();
        users.sort_unstable();
        let mut top_paths: Vec<(Arc<str>, usize)> =
            paths.into_iter().map(|(p, u)| (p, u.len())).collect();
        top_paths.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_paths.truncate(self.config.metrics.top_paths);

        let lanes = self.fanout.backlog();
        let backlog = lanes
            .iter()
            .fold((0, 0), |(sum, most), (_, n)| (sum + n, most.max(*n)));
        let queued = self
            .conns
            .all()
            .iter()
            .fold((0, 0, 0), |(f, b, most), conn| {
                let (frames, bytes) = conn.queued();
                (f + frames, b + bytes, most.max(frames))
            });
        let others = self
            .membership
            .nodes
            .lock()
            .expect("nodes lock is never poisoned")
            .keys()
            .filter(|node| **node != self.node)
            .count();
        Reading {
            stats: self.counters.snapshot(),
            users,
            top_paths,
            lanes: lanes.len(),
            backlog,
            queued,
            nodes: others + 1,
            backplane: self.broker.as_ref().map(|b| b.status()),
        }
    }
}
