//! The admin page's feed: while anyone on this node is on `<prefix>/admin`, one task builds a snapshot of
//! this node (counters, connections, routes with their users, recent triggers, lanes, slow and parked
//! connections, the backplane) and sends it through the fan-out as the admin route's `live` sync, at most
//! every [`AT_MOST`] after a trigger finished and at least every [`AT_LEAST`]. It holds the hub weakly and
//! stops when nobody watches.
//!
//! Snapshots are node-local and ephemeral ([`Work::Live`]): no position in the path's history, never
//! published to other nodes, nothing kept for a replay. A watcher that missed one gets the next.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::admin_log::{Admin, RecentTriggers, TriggerRow};
use crate::broker::BackplaneStatus;
use crate::conn::{Conn, Phase};
use crate::fanout::{Job, Reply, Work};
use crate::handler::AnyArc;
use crate::hub::HubInner;
use crate::hub::admin::LIVE;
use crate::observe::unix_millis;
use crate::roster::View;
use crate::stats::Stats;

/// Snapshots follow a finished trigger at most this often.
pub(crate) const AT_MOST: Duration = Duration::from_millis(250);
/// And come at least this often, triggers or not (counters and queues move without them).
pub(crate) const AT_LEAST: Duration = Duration::from_secs(1);

/// Paths listed per route, users per path, lanes, and connections per table.
const TOP_PATHS: usize = 20;
const TOP_USERS: usize = 20;
const TOP_LANES: usize = 20;
const TOP_CONNS: usize = 10;

/// What the admin page shows of one node.
#[derive(Serialize)]
pub(crate) struct Snapshot {
    /// This node's id (16 hex digits).
    node: String,
    /// When this snapshot was taken, in milliseconds since the Unix epoch.
    at: u64,
    stats: Stats,
    connections: Connections,
    routes: Vec<RouteRow>,
    /// The last triggers whose fan-out finished here, newest first.
    triggers: Vec<TriggerRow>,
    lanes: Lanes,
    /// Live connections with the most frames queued.
    slowest: Vec<ConnRow>,
    parked: Parked,
    /// `None`: a single node, no backplane.
    broker: Option<Broker>,
}

#[derive(Serialize)]
struct Connections {
    total: u64,
    websocket: u64,
    sse: u64,
    parked: u64,
}

#[derive(Serialize)]
struct RouteRow {
    /// `None`: paths where no route defines syncs.
    route: Option<&'static str>,
    users: usize,
    paths: usize,
    busiest: Vec<PathRow>,
}

#[derive(Serialize)]
struct PathRow {
    path: String,
    users: usize,
    listed: Vec<UserRow>,
}

#[derive(Serialize)]
struct UserRow {
    user: String,
    /// The app's presence view of the user (`null` without one).
    #[serde(serialize_with = "raw")]
    view: View,
}

fn raw<S: serde::Serializer>(view: &View, s: S) -> Result<S::Ok, S::Error> {
    (**view).serialize(s)
}

#[derive(Serialize)]
struct Lanes {
    /// Paths whose lane has a task now.
    active: usize,
    /// Jobs waiting on the busiest lanes.
    backlog: Vec<LaneRow>,
}

#[derive(Serialize)]
struct LaneRow {
    path: String,
    waiting: usize,
}

#[derive(Serialize)]
struct ConnRow {
    id: String,
    user: String,
    path: Option<String>,
    frames: usize,
    bytes: usize,
}

#[derive(Serialize)]
struct Parked {
    count: usize,
    /// The parked connections holding the most frames.
    top: Vec<ConnRow>,
}

#[derive(Serialize)]
struct Broker {
    status: BackplaneStatus,
    /// The other nodes this one hears from.
    nodes: Vec<NodeRow>,
    /// The last trigger of this node's taken by the backplane, this long after it was published.
    publish_lag_us: u64,
    /// The last trigger of another node's arrived here this long after it was accepted (their clocks).
    receive_lag_us: u64,
}

#[derive(Serialize)]
struct NodeRow {
    node: String,
    /// Since this node last heard it.
    heard_ms_ago: u64,
    /// Its last roster change applied here.
    version: u64,
}

impl HubInner {
    /// A connection arrived on the admin path: start the feed unless it runs, and ask it for a snapshot
    /// now, so the newcomer does not wait for the next tick.
    pub fn watch_admin(self: &Arc<Self>) {
        let Some(admin) = &self.admin else {
            return;
        };
        admin.recent.changed.notify_one();
        if !admin.feeding.swap(true, Ordering::AcqRel) {
            tokio::spawn(feed(Arc::downgrade(self), admin.recent.clone()));
        }
    }

    /// This node as the admin page shows it.
    pub(crate) fn snapshot(&self, admin: &Admin) -> Snapshot {
        let stats = self.counters.snapshot();
        let routes = self
            .roster
            .census(
                |path| self.table.patterns.lookup(path).map(|(route, _)| route),
                TOP_PATHS,
                TOP_USERS,
            )
            .into_iter()
            .map(|r| RouteRow {
                route: r.route,
                users: r.users,
                paths: r.paths,
                busiest: r
                    .busiest
                    .into_iter()
                    .map(|p| PathRow {
                        path: p.path.to_string(),
                        users: p.count,
                        listed: p
                            .users
                            .into_iter()
                            .map(|(user, view)| UserRow {
                                user: user.to_string(),
                                view,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let lanes = self.fanout.backlog();
        let mut backlog: Vec<LaneRow> = lanes
            .iter()
            .filter(|(_, waiting)| *waiting > 0)
            .map(|(path, waiting)| LaneRow {
                path: path.to_string(),
                waiting: *waiting,
            })
            .collect();
        backlog.sort_by(|a, b| b.waiting.cmp(&a.waiting).then_with(|| a.path.cmp(&b.path)));
        backlog.truncate(TOP_LANES);
        let (mut live, mut parked): (Vec<Arc<Conn>>, Vec<Arc<Conn>>) = self
            .conns
            .all()
            .into_iter()
            .filter(|c| matches!(c.phase(), Phase::Live | Phase::Parked))
            .partition(|c| c.phase() == Phase::Live);
        let parked_count = parked.len();
        Snapshot {
            node: format!("{:016x}", self.node),
            at: unix_millis(),
            stats,
            connections: Connections {
                total: stats.connections,
                websocket: stats.websockets,
                sse: stats.sse_streams,
                parked: stats.parked,
            },
            routes,
            triggers: admin.recent.rows(),
            lanes: Lanes {
                active: lanes.len(),
                backlog,
            },
            slowest: most_queued(&mut live),
            parked: Parked {
                count: parked_count,
                top: most_queued(&mut parked),
            },
            broker: self.broker.as_ref().map(|broker| {
                let (publish_lag_us, receive_lag_us) = admin.recent.lags_us();
                Broker {
                    status: broker.status(),
                    nodes: self.known_nodes(),
                    publish_lag_us,
                    receive_lag_us,
                }
            }),
        }
    }

    fn known_nodes(&self) -> Vec<NodeRow> {
        let nodes = self.membership.nodes.lock().expect("nodes lock");
        let mut rows: Vec<NodeRow> = nodes
            .iter()
            .map(|(node, known)| NodeRow {
                node: format!("{node:016x}"),
                heard_ms_ago: u64::try_from(known.heard.elapsed().as_millis()).unwrap_or(u64::MAX),
                version: known.version,
            })
            .collect();
        rows.sort_by(|a, b| a.node.cmp(&b.node));
        rows
    }

    /// Whether a live connection is on the admin path (a parked one gets no snapshot: when it resumes,
    /// its connect places it there again, which restarts the feed).
    fn watched(&self, admin: &Admin) -> bool {
        self.presence
            .recipients(&admin.path)
            .iter()
            .any(|c| c.phase() == Phase::Live)
    }

    /// Hand a snapshot to the admin path's lane; `false` when there was no room (the next one follows).
    fn send_snapshot(&self, admin: &Admin) -> bool {
        let Some(entry) = self.table.get(admin.route, LIVE) else {
            return false;
        };
        let snapshot = match serde_json::to_value(self.snapshot(admin)) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::error!(target: "sync_runtime::admin", error = %e, "a snapshot failed to serialize");
                return false;
            }
        };
        let data: AnyArc = Arc::new(snapshot);
        let job = Job {
            entry: entry.clone(),
            location: self.table.locate(admin.path.clone()),
            data,
            sender: None,
            reply: Reply::None,
            at: None,
            trace: None,
        };
        self.fanout.try_submit(Work::Live(job)).is_ok()
    }
}

/// The `TOP_CONNS` of `conns` with the most frames queued.
fn most_queued(conns: &mut [Arc<Conn>]) -> Vec<ConnRow> {
    let mut rows: Vec<(Arc<Conn>, (usize, usize))> =
        conns.iter().map(|c| (c.clone(), c.queued())).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    rows.into_iter()
        .take(TOP_CONNS)
        .map(|(conn, (frames, bytes))| ConnRow {
            id: conn.id.to_string(),
            user: conn.user().to_string(),
            path: conn.current_location().map(|l| l.path().to_owned()),
            frames,
            bytes,
        })
        .collect()
}

/// The feed: a snapshot when woken by a finished trigger (no sooner than [`AT_MOST`] after the last)
/// or after [`AT_LEAST`], until nobody is on the admin path. The hub is upgraded only to build and hand
/// over a snapshot, never across a wait, so the feed keeps no dropped hub alive.
async fn feed(hub: Weak<HubInner>, recent: Arc<RecentTriggers>) {
    let mut last: Option<Instant> = None;
    loop {
        if let Some(last) = last {
            tokio::time::sleep_until(last + AT_MOST).await;
        }
        let due = last.map_or_else(Instant::now, |last| last + AT_LEAST);
        let _ = tokio::time::timeout_at(due, recent.changed.notified()).await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let Some(admin) = &hub.admin else {
            return;
        };
        if !hub.watched(admin) {
            admin.feeding.store(false, Ordering::Release);
            // Someone who arrived between the look and the store found the feed running and started
            // none: it is this one's again, unless a new one started meanwhile.
            if !hub.watched(admin) || admin.feeding.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        if !hub.send_snapshot(admin) {
            tracing::debug!(target: "sync_runtime::admin", "the admin path's queue is full; snapshot skipped");
        }
        last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests;
