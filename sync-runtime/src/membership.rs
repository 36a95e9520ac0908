//! Keeping the roster right (SPEC 9, 6.7): browsers' lists, the other nodes' parts, and identities that
//! change while connected.
//!
//! One task per hub (started with the first connection, or at `build` with a backplane) runs every
//! `presence_window`:
//!
//! 1. it hands this node's roster changes to the other nodes, and a snapshot of its part when one asked;
//! 2. it drops the part of a node silent for `SILENT_HEARTBEATS` heartbeats (dead, or cut off from this
//!    one): its users leave every list here;
//! 3. it sends each changed path's connections their `presence_diff` (or, to one that has no list yet,
//!    the whole `presence`): changes within one window are coalesced, and a user who came and went
//!    within it is never sent.
//!
//! Another node's changes are numbered (`v`); this node applies them in order, and asks that node for a
//! snapshot when one is missing, which it notices from the next change or from the `pv` every envelope
//! of that node carries. A snapshot replaces the node's part.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::broker::WireNote;
use crate::conn::{Outbound, Phase};
use crate::error::SyncError;
use crate::handler::AnyArc;
use crate::hub::{HubInner, SyncHub};
use crate::protocol::ErrorCode;
use crate::roster::{Known, View, null_view};

/// Heartbeats of silence after which a node's users leave the lists here (as the broker takes its own
/// subscription for dead after as many).
const SILENT_HEARTBEATS: u32 = 5;

impl HubInner {
    /// Start the task that keeps the lists, once.
    pub fn keep_lists(self: &Arc<Self>) {
        if self.membership.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = Arc::downgrade(self);
        let every = self.config.presence_window;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_snapshot: Option<Instant> = None;
            loop {
                tick.tick().await;
                let Some(hub) = Weak::upgrade(&hub) else {
                    return;
                };
                hub.share_changes(&mut last_snapshot);
                hub.drop_silent_nodes();
                hub.send_lists();
                hub.sweep_waiting();
            }
        });
    }

    /// What others may see of `session`: the app's mapping, or `null`.
    pub fn view_of(&self, session: &AnyArc) -> View {
        self.presence_map
            .as_ref()
            .and_then(|map| (map.view)(session))
            .unwrap_or_else(null_view)
    }

    /// Step 1: this node's changes, and its snapshot when asked (at most once per heartbeat).
    fn share_changes(&self, last_snapshot: &mut Option<Instant>) {
        let Some(broker) = &self.broker else {
            return;
        };
        for change in self.roster.take_outgoing() {
            broker.share(WireNote::Presence {
                v: change.version,
                path: change.path.to_string(),
                user: change.user.to_string(),
                view: change.view.map(|v| raw(&v)),
            });
        }
        let due = last_snapshot.is_none_or(|at| at.elapsed() >= broker.heartbeat());
        if due && self.membership.wanted.swap(false, Ordering::AcqRel) {
            let (v, entries) = self.roster.local();
            let entries = entries
                .into_iter()
                .map(|(path, user, view)| (path.to_string(), user.to_string(), raw(&view)))
                .collect();
            broker.share(WireNote::Snapshot { v, entries });
            *last_snapshot = Some(Instant::now());
        }
    }

    /// Step 2: nodes not heard for a while leave with their users.
    fn drop_silent_nodes(&self) {
        let Some(broker) = &self.broker else {
            return;
        };
        let silence = broker.heartbeat() * SILENT_HEARTBEATS;
        let mut nodes = self.membership.nodes.lock().expect("nodes lock");
        nodes.retain(|node, known| {
            let alive = known.heard.elapsed() < silence;
            if !alive {
                tracing::warn!(target: "sync_runtime::presence", node, "a node went silent; its users leave the lists here");
                self.roster.drop_node(*node);
            }
            alive
        });
    }

    /// Step 3: each changed path's list to its connections, a diff to those that hold its list and the
    /// whole list to the others. Only with a presence mapping: without one, user keys are not shown to
    /// users.
    fn send_lists(&self) {
        let listings = self.roster.flush(self.presence_map.is_some());
        for listing in listings {
            for conn in self.presence.recipients(&listing.path) {
                if conn.phase() != Phase::Live {
                    // A parked connection gets the whole list when it resumes.
                    conn.set_listed(None);
                    continue;
                }
                if conn.lists(&listing.path) {
                    if let Some(diff) = &listing.diff {
                        self.conns.push(&conn, Outbound::Control(diff.clone()));
                    }
                } else if conn
                    .current_location()
                    .is_some_and(|l| l.path() == &*listing.path)
                {
                    conn.set_listed(Some(listing.path.clone()));
                    self.conns
                        .push(&conn, Outbound::Control(listing.snapshot().clone()));
                }
            }
        }
    }

    /// A note from another node.
    pub fn on_note(&self, node: u64, note: WireNote) {
        match note {
            WireNote::Presence {
                v,
                path,
                user,
                view,
            } => {
                let mut nodes = self.membership.nodes.lock().expect("nodes lock");
                let known = nodes.entry(node).or_insert_with(Known::new);
                if v <= known.version {
                    return;
                }
                if v == known.version + 1 {
                    known.version = v;
                    self.roster.remote(node, &path, &user, view.map(View::from));
                } else {
                    self.ask(node, known);
                }
            }
            WireNote::Snapshot { v, entries } => {
                let mut nodes = self.membership.nodes.lock().expect("nodes lock");
                let known = nodes.entry(node).or_insert_with(Known::new);
                if v < known.version {
                    return;
                }
                known.version = v;
                known.asked = None;
                let entries = entries
                    .into_iter()
                    .map(|(path, user, view)| (path, user, View::from(view)))
                    .collect();
                self.roster.replace(node, entries);
            }
            WireNote::Want { node: wanted } => {
                if self.broker.as_ref().is_some_and(|b| b.node() == wanted) {
                    self.membership.wanted.store(true, Ordering::Release);
                }
            }
            WireNote::Session { user, session } => {
                let Some(session) = self
                    .session_codec
                    .and_then(|codec| (codec.decode)(session.get()))
                else {
                    tracing::warn!(target: "sync_runtime::presence", "a session from another node does not parse here; ignored");
                    return;
                };
                self.set_session(&user, session);
            }
        }
    }

    /// `node` is alive, and its part of the roster is at change `presence`.
    pub fn on_heard(&self, node: u64, presence: u64) {
        let mut nodes = self.membership.nodes.lock().expect("nodes lock");
        let known = nodes.entry(node).or_insert_with(Known::new);
        known.heard = Instant::now();
        if presence > known.version {
            self.ask(node, known);
        }
    }

    /// Ask `node` for its snapshot, unless asked lately.
    fn ask(&self, node: u64, known: &mut Known) {
        let Some(broker) = &self.broker else {
            return;
        };
        if known
            .asked
            .is_some_and(|at| at.elapsed() < broker.heartbeat() * 2)
        {
            return;
        }
        known.asked = Some(Instant::now());
        broker.share(WireNote::Want { node });
    }

    /// Give every connection of `user` here `session`, and the view that goes with it; how many.
    pub fn set_session(&self, user: &str, session: AnyArc) -> usize {
        let view = self.view_of(&session);
        let conns = self.conns.of_user(user);
        for conn in &conns {
            conn.update_credentials(|c| {
                c.session = session.clone();
                c.view = view.clone();
            });
        }
        if let Some(conn) = conns.first() {
            self.roster.revise(conn.user(), &view);
        }
        conns.len()
    }
}

/// A view as it crosses nodes.
fn raw(view: &View) -> Box<RawValue> {
    RawValue::from_string(view.get().to_owned()).expect("a view is JSON")
}

/// Milliseconds from now until `at` (0 when past).
pub(crate) fn millis_until(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

impl SyncHub {
    /// Replace the session of every connection of `user`, on every node (a role revoked, a team
    /// switched): the next filter, gate and presence view see the new one, without a reconnect. `S` is
    /// the authenticator's session type. Returns how many connections on this node changed. Other nodes
    /// get it over the backplane, at most once (like a trigger): an update lost in an outage is not
    /// retried there.
    ///
    /// ```no_run
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct User { team: u32 }
    /// # fn f(hub: sync_runtime::SyncHub) {
    /// hub.update_session("alice", User { team: 2 }).expect("the authenticator's session type");
    /// # }
    /// ```
    pub fn update_session<S: Send + Sync + 'static>(
        &self,
        user: &str,
        session: S,
    ) -> Result<usize, SyncError> {
        let inner = &self.inner;
        if std::any::TypeId::of::<S>() != inner.session_type {
            return Err(SyncError::new(
                ErrorCode::SessionType,
                format!(
                    "`update_session` takes the authenticator's session type, not `{}`",
                    std::any::type_name::<S>()
                ),
            ));
        }
        let session: AnyArc = Arc::new(session);
        if let (Some(broker), Some(codec)) = (&inner.broker, inner.session_codec)
            && let Some(json) = (codec.encode)(&session)
        {
            broker.share(WireNote::Session {
                user: user.to_owned(),
                session: json,
            });
        }
        Ok(inner.set_session(user, session))
    }
}
