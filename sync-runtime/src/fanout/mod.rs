//! The broadcast: one trigger at a time per concrete path (`lane`), each run over everyone on the path
//! (`run`): filters, verdicts, frames; and the path's history (`replay`), from which a connection that
//! stands behind gets what it missed, in order, before the trigger at hand.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::conn::{Conn, Outbound};
use crate::conns::ConnTable;
use crate::error::SyncError;
use crate::handler::{AnyArc, ErasedPeer, Location};
use crate::history::Cursor;
use crate::protocol::Outcome;
use crate::protocol::server::{ResultFrame, error_frame};
use crate::registry::SyncEntry;

mod judge;
mod lane;
mod replay;
mod run;

pub(crate) use replay::{Recall, Record};
pub(crate) use run::{FanOut, FanOutSettings, HistoryAt};

/// One accepted trigger, waiting for its lane.
pub(crate) struct Job {
    pub entry: Arc<SyncEntry>,
    pub location: Location,
    pub data: AnyArc,
    pub sender: Option<Sender>,
    pub reply: Reply,
    /// Its position in the path's history, when the broker gave it one; `None`: this node's own history
    /// gives it one when it runs.
    pub at: Option<Cursor>,
    /// Its id and span; `None` for a trigger re-run from the history (it was reported when it ran).
    pub trace: Option<crate::observe::Trace>,
}

impl Job {
    /// The sending connection, when it asked to be left out of the recipients (`echo: false`).
    pub fn skip(&self) -> Option<crate::handler::ConnectionId> {
        self.sender
            .as_ref()
            .filter(|s| !s.echo)
            .and_then(|s| s.conn.as_ref())
            .map(|c| c.id)
    }
}

/// What a lane runs, one after another.
pub(crate) enum Work {
    Trigger(Job),
    /// Connections placed on the path with a position: each gets what came after it (or `resync`).
    CatchUp {
        path: Arc<str>,
        conns: Vec<Arc<Conn>>,
    },
    /// This node's subscription to the path is confirmed (again): everyone here gets what was published
    /// since `before` (the position read just before subscribing) or since this node last ran the path.
    Follow {
        path: Arc<str>,
        before: Option<Cursor>,
    },
    /// A broadcast of this node's own (the admin page's snapshots) to its live connections on the path:
    /// no position in the path's history, nothing kept for a replay, no observer told, nothing counted.
    /// Ephemeral by design: a snapshot missed is superseded by the next one.
    Live(Job),
}

impl Work {
    pub fn path(&self) -> &Arc<str> {
        match self {
            Work::Trigger(job) | Work::Live(job) => job.location.path_arc(),
            Work::CatchUp { path, .. } | Work::Follow { path, .. } => path,
        }
    }
}

/// Who sent a trigger.
pub(crate) struct Sender {
    /// The sending connection when it is on this node; `None` for a sender on another node.
    pub conn: Option<Arc<Conn>>,
    pub peer: ErasedPeer,
    /// `false`: the sending connection is left out of the recipients.
    pub echo: bool,
}

/// Where a fan-out's outcome goes.
pub(crate) enum Reply {
    None,
    /// The Rust caller's [`Pending`](crate::Pending).
    Caller(oneshot::Sender<Result<Outcome, SyncError>>),
    /// A `result` (or `error`) frame to the sending connection, answering its request `id`.
    Frame {
        conn: Arc<Conn>,
        id: u64,
    },
}

impl Reply {
    pub fn send(self, conns: &ConnTable, result: Result<Outcome, SyncError>) {
        match self {
            Reply::None => {}
            Reply::Caller(tx) => {
                let _ = tx.send(result);
            }
            Reply::Frame { conn, id } => {
                let frame = match result {
                    Ok(outcome) => serde_json::to_string(&ResultFrame {
                        t: "result",
                        id,
                        outcome,
                    })
                    .expect("a result frame has only integers"),
                    Err(e) => error_frame(Some(id), e.code, &e.message),
                };
                conns.push(&conn, Outbound::control(frame));
            }
        }
    }
}
