//! What the admin page needs below the hub: the app's check that guards it, the page's path, and the log
//! of recent triggers, kept by an [`Observer`] in a bounded ring. The snapshot itself is built above the
//! hub (`admin.rs`), which reads everything else from the hub's tables.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::handler::AnyArc;
use crate::observe::{Finished, Observer, unix_millis};

/// Triggers the admin page lists, newest first.
pub(crate) const RECENT_TRIGGERS: usize = 50;

/// The app's admin check, its session type erased: `false` for a session of another type.
pub(crate) type AdminCheck = Arc<dyn Fn(&AnyArc) -> bool + Send + Sync>;

/// The admin page of one hub: where it is, who may see it, and what it remembers.
pub(crate) struct Admin {
    /// `<prefix>/admin`: the page, and the path its connections are on.
    pub path: Arc<str>,
    /// The same, as the route pattern its sync is registered under.
    pub route: &'static str,
    check: AdminCheck,
    pub recent: Arc<RecentTriggers>,
    /// A task sends snapshots to this node's connections on `path`.
    pub feeding: AtomicBool,
}

impl Admin {
    pub fn new(route: &'static str, check: AdminCheck) -> Self {
        Admin {
            path: Arc::from(route),
            route,
            check,
            recent: Arc::new(RecentTriggers::default()),
            feeding: AtomicBool::new(false),
        }
    }

    /// Whether `session` passes the app's check. A check that panics refuses.
    pub fn allows(&self, session: &AnyArc) -> bool {
        allows(&self.check, session)
    }
}

/// `check(session)`, `false` when it panics.
pub(crate) fn allows(check: &AdminCheck, session: &AnyArc) -> bool {
    std::panic::catch_unwind(AssertUnwindSafe(|| check(session))).unwrap_or(false)
}

/// One finished trigger as the admin page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TriggerRow {
    /// `<node>-<seq>`, the same on every node.
    pub id: String,
    pub route: &'static str,
    pub sync: &'static str,
    pub path: String,
    pub matched: u32,
    pub passed: u32,
    pub delivered: u32,
    pub failed: u32,
    /// From this node taking it to its last reaction queued, in microseconds.
    pub took_us: u64,
    /// Accepted on another node.
    pub remote: bool,
    /// When its fan-out finished here, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// The last [`RECENT_TRIGGERS`] triggers whose fan-out finished here, and the last lags between nodes.
#[derive(Default)]
pub(crate) struct RecentTriggers {
    rows: Mutex<VecDeque<TriggerRow>>,
    /// Woken when a trigger finishes: the feed sends a fresher snapshot (at most one permit is kept, so
    /// a burst of triggers wakes it once).
    pub changed: Notify,
    publish_lag_us: AtomicU64,
    receive_lag_us: AtomicU64,
}

impl RecentTriggers {
    /// The rows, newest first.
    pub fn rows(&self) -> Vec<TriggerRow> {
        self.rows
            .lock()
            .expect("recent lock is never poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// The last publish lag (this node's trigger taken by the backplane) and receive lag (another node's
    /// trigger arriving here), in microseconds; 0 before the first.
    pub fn lags_us(&self) -> (u64, u64) {
        (
            self.publish_lag_us.load(Ordering::Relaxed),
            self.receive_lag_us.load(Ordering::Relaxed),
        )
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Observer for RecentTriggers {
    fn finished(&self, f: &Finished<'_>) {
        let row = TriggerRow {
            id: f.id.to_string(),
            route: f.route,
            sync: f.name,
            path: f.path.to_owned(),
            matched: f.outcome.matched,
            passed: f.outcome.passed,
            delivered: f.outcome.delivered,
            failed: f.outcome.failed,
            took_us: micros(f.took),
            remote: f.remote,
            at: unix_millis(),
        };
        {
            let mut rows = self.rows.lock().expect("recent lock is never poisoned");
            if rows.len() == RECENT_TRIGGERS {
                rows.pop_back();
            }
            rows.push_front(row);
        }
        self.changed.notify_one();
    }

    fn published(&self, lag: Duration) {
        self.publish_lag_us.store(micros(lag), Ordering::Relaxed);
    }

    fn received(&self, lag: Duration) {
        self.receive_lag_us.store(micros(lag), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::TriggerId;
    use crate::protocol::Outcome;

    fn finished(seq: u64) -> Finished<'static> {
        Finished {
            id: TriggerId { node: 1, seq },
            route: "/r",
            name: "s",
            path: "/r",
            outcome: Outcome {
                matched: 2,
                passed: 1,
                delivered: 1,
                failed: 1,
            },
            took: Duration::from_micros(1500),
            remote: false,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_triggers_first_and_no_more_than_its_bound() {
        let recent = RecentTriggers::default();
        for seq in 1..=(RECENT_TRIGGERS as u64 + 7) {
            recent.finished(&finished(seq));
        }
        let rows = recent.rows();
        assert_eq!(rows.len(), RECENT_TRIGGERS);
        assert_eq!(rows[0].id, format!("{:016x}-{}", 1, RECENT_TRIGGERS + 7));
        assert_eq!(rows[RECENT_TRIGGERS - 1].id, format!("{:016x}-8", 1));
        assert_eq!(
            (rows[0].passed, rows[0].failed, rows[0].took_us),
            (1, 1, 1500)
        );
    }

    #[test]
    fn a_check_that_panics_refuses() {
        let check: AdminCheck = Arc::new(|_| panic!("the app's check failed"));
        let session: AnyArc = Arc::new(());
        assert!(!allows(&check, &session));
        let yes: AdminCheck = Arc::new(|_| true);
        assert!(allows(&yes, &session));
    }
}
