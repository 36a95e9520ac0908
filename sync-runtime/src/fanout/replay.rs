//! The fan-out's side of history (SPEC 10): every trigger runs at a position of its path's history, and
//! each connection's [`Mark`](crate::conn::Mark) says how far it has had them. A lane runs one trigger
//! at a time, so a connection that stands behind the trigger at hand (placed with an older cursor, or a
//! trigger this node never heard) first gets what it missed from the history, through its own filter
//! and reaction, in order; one whose position the history no longer covers gets `resync`. A trigger a
//! connection already had (a replay got there first) is skipped: once, in order, no gap.
//!
//! Without a backplane the history is this node's own [`Log`], and a trigger gets its offset when its
//! lane runs it, so offsets follow the lane's order by construction. With one, the broker gives each
//! trigger its offset when it is published and keeps the history; [`Recall`] reads it.

use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;

use super::{FanOut, Job, Reply, Sender};
use crate::conn::{Conn, Outbound, Step};
use crate::handler::{AnyArc, ConnectionId, ErasedPeer, Location};
use crate::history::{Cursor, Log, Recalled};
use crate::protocol::server::RESYNC;
use crate::registry::SyncEntry;
use crate::stats::Counters;

/// A trigger as a history holds it: what its fan-out needs to run again.
#[derive(Clone)]
pub(crate) struct Record {
    pub entry: Arc<SyncEntry>,
    pub location: Location,
    pub data: AnyArc,
    pub sender: Option<ErasedPeer>,
    /// The sending connection, when it asked to be left out (`echo: false`).
    pub skip: Option<ConnectionId>,
}

impl Record {
    pub fn into_job(self) -> Job {
        Job {
            entry: self.entry,
            location: self.location,
            data: self.data,
            sender: self.sender.map(|peer| Sender {
                conn: None,
                peer,
                echo: true,
            }),
            reply: Reply::None,
            at: None,
            trace: None,
        }
    }
}

/// Where a path's history kept elsewhere (by the broker) is read: implemented by the hub, which turns
/// what the broker holds back into records.
pub(crate) trait Recall: Send + Sync + 'static {
    /// The records of `path` after offset `after`, up to `upto`, if `epoch` is still its history.
    fn since(
        &self,
        path: Arc<str>,
        epoch: Arc<str>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'_, Recalled<Record>>;

    /// The current position of `path`; `None` when it cannot be read now.
    fn top(&self, path: Arc<str>) -> BoxFuture<'_, Option<Cursor>>;
}

/// Which history a hub's fan-outs run against.
pub(crate) enum History {
    /// This node's own.
    Local(Log<Record>),
    /// The broker's, read through the hub (set once the hub exists).
    Shared(OnceLock<Weak<dyn Recall>>),
}

impl FanOut {
    /// Read `path`'s history kept elsewhere through the hub, once it exists.
    pub fn share_history(&self, recall: Weak<dyn Recall>) {
        if let History::Shared(slot) = &self.history {
            let _ = slot.set(recall);
        }
    }

    /// The position of a trigger that has none yet: the next of this node's own history.
    pub(super) fn position(&self, job: &Job) -> Option<Cursor> {
        let History::Local(log) = &self.history else {
            return None;
        };
        // What the record holds besides its data is shared (`Arc`s); its data is charged at its JSON size.
        let bytes = job
            .entry
            .data_json
            .and_then(|to_json| to_json(&*job.data))
            .map_or(1024, |json| json.len())
            + 256;
        let record = Record {
            entry: job.entry.clone(),
            location: job.location.clone(),
            data: job.data.clone(),
            sender: job.sender.as_ref().map(|s| s.peer.clone()),
            skip: job.skip(),
        };
        Some(log.append(job.location.path_arc(), record, bytes))
    }

    async fn since(
        &self,
        path: &Arc<str>,
        epoch: &Arc<str>,
        after: u64,
        upto: u64,
    ) -> Recalled<Record> {
        match &self.history {
            History::Local(log) => log.since(path, epoch, after, upto),
            History::Shared(slot) => match slot.get().and_then(Weak::upgrade) {
                Some(recall) => recall.since(path.clone(), epoch.clone(), after, upto).await,
                None => Recalled::Lost,
            },
        }
    }

    /// The current position of `path`, starting its history if it has none.
    pub async fn top(&self, path: &Arc<str>) -> Option<Cursor> {
        match &self.history {
            History::Local(log) => Some(log.top(path)),
            History::Shared(slot) => {
                let recall = slot.get().and_then(Weak::upgrade)?;
                recall.top(path.clone()).await
            }
        }
    }

    /// Run `job` at its position over everyone on its path: those behind get what they missed first.
    pub(super) async fn trigger(&self, mut job: Job) {
        let path = job.location.path_arc().clone();
        let Some(at) = job.at.take().or_else(|| self.position(&job)) else {
            tracing::error!(target: "sync_runtime::fanout", path = %path, "a trigger without a position; dropped");
            return;
        };
        let skip = job.skip();
        let mut recipients = self.presence.recipients(&path);
        recipients.retain(|c| Some(c.id) != skip);
        let seen = self.saw(&path, &at, recipients.is_empty());
        let mut live = Vec::with_capacity(recipients.len());
        let mut behind = Vec::new();
        for conn in recipients {
            match conn.step(&path, &at, seen.as_ref()) {
                Step::Next | Step::Elsewhere => live.push(conn),
                Step::Had => {}
                Step::Reset => {
                    self.resync(&path, &conn);
                    live.push(conn);
                }
                Step::Behind(had) => behind.push((conn, had)),
            }
        }
        if !behind.is_empty() {
            self.replay(&path, at.epoch_arc(), at.offset() - 1, &behind)
                .await;
            for (conn, _) in behind {
                conn.mark_at(&path, at.clone());
                live.push(conn);
            }
        }
        self.broadcast(job, Some(&at), live).await;
    }

    /// Record that this node ran `path` at `at`; the position it ran before. A path nobody here is on
    /// is forgotten.
    fn saw(&self, path: &Arc<str>, at: &Cursor, nobody: bool) -> Option<Cursor> {
        let mut seen = self.seen.lock().expect("seen lock is never poisoned");
        if nobody {
            seen.remove(path)
        } else {
            seen.insert(path.clone(), at.clone())
        }
    }

    /// This node follows `path` (again): everyone here gets what was published since this node last ran
    /// the path, or since `before` (read just before subscribing) for a path it had not run.
    pub(super) async fn follow(&self, path: Arc<str>, before: Option<Cursor>) {
        let seen = self
            .seen
            .lock()
            .expect("seen lock is never poisoned")
            .get(&path)
            .cloned()
            .or(before);
        let recipients = self.presence.recipients(&path);
        if let Some(top) = self.bring_up(&path, recipients, seen).await {
            self.seen
                .lock()
                .expect("seen lock is never poisoned")
                .insert(path, top);
        }
    }

    /// Connections placed on `path` with a position: each gets what came after it, or `resync`.
    pub(super) async fn catch_up(&self, path: Arc<str>, conns: Vec<Arc<Conn>>) {
        self.bring_up(&path, conns, None).await;
    }

    /// Bring each of `conns` still on `path` up to the path's current position, from its own position
    /// (`fallback` for one that has none; neither: it starts from now), through the history; `resync` to
    /// those the history cannot serve. The position they are at now, if it could be read.
    async fn bring_up(
        &self,
        path: &Arc<str>,
        conns: Vec<Arc<Conn>>,
        fallback: Option<Cursor>,
    ) -> Option<Cursor> {
        let Some(top) = self.top(path).await else {
            // The history cannot be read: nobody here can know what they missed.
            for conn in &conns {
                self.resync(path, conn);
            }
            return None;
        };
        let mut behind = Vec::new();
        for conn in conns {
            let mark = conn.mark();
            if mark.path.as_deref() != Some(&**path) {
                continue;
            }
            let Some(had) = mark.at.or_else(|| fallback.clone()) else {
                continue;
            };
            // Another history (lost since, or another path's), this one rewound (a Redis replica
            // promoted without the last triggers it had acknowledged), or a position it never had:
            // what was had cannot be matched with what is there now.
            if had.epoch() != top.epoch() || had.offset() > top.offset() {
                self.resync(path, &conn);
                conn.mark_at(path, top.clone());
            } else if had.offset() < top.offset() {
                behind.push((conn, had.offset()));
            }
        }
        if !behind.is_empty() {
            self.replay(path, top.epoch_arc(), top.offset(), &behind)
                .await;
            for (conn, _) in behind {
                conn.mark_at(path, top.clone());
            }
        }
        Some(top)
    }

    /// Give each connection of `behind` (each with the offset it has had) the triggers of `path` after
    /// its offset up to `upto`, re-run for it in order; `resync` to those the history no longer covers.
    async fn replay(
        &self,
        path: &Arc<str>,
        epoch: &Arc<str>,
        upto: u64,
        behind: &[(Arc<Conn>, u64)],
    ) {
        let after = behind.iter().map(|(_, had)| *had).min().unwrap_or(upto);
        let (first, entries) = match self.since(path, epoch, after, upto).await {
            Recalled::Entries { first, entries } => (first, entries),
            Recalled::Lost => (u64::MAX, Vec::new()),
        };
        let mut served = Vec::with_capacity(behind.len());
        for (conn, had) in behind {
            if had + 1 >= first {
                served.push((conn, *had));
            } else {
                self.resync(path, conn);
            }
        }
        for (offset, record) in entries {
            let recipients: Vec<Arc<Conn>> = served
                .iter()
                .filter(|(conn, had)| {
                    *had < offset && Some(conn.id) != record.skip && conn.is_on(path)
                })
                .map(|(conn, _)| (*conn).clone())
                .collect();
            if recipients.is_empty() {
                continue;
            }
            Counters::add(&self.counters.replayed, recipients.len());
            let at = Cursor::new(epoch.clone(), offset);
            self.broadcast(record.into_job(), Some(&at), recipients)
                .await;
        }
    }

    /// Tell `conn` it may have missed reactions on `path`: its client reloads, and it goes on from the
    /// next trigger this node runs there (its position is forgotten, so that it is not told twice).
    fn resync(&self, path: &str, conn: &Arc<Conn>) {
        Counters::bump(&self.counters.history_resyncs);
        conn.forget_position(path);
        self.conns.push(conn, Outbound::control(RESYNC));
    }
}
