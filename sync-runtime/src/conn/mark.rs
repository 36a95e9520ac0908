//! Where a connection stands in its path's history (SPEC 10), and how a trigger at some position
//! relates to it. Only the path's lane moves it on, one trigger at a time.

use std::sync::Arc;

use super::Conn;
use crate::history::Cursor;

/// Where a connection stands in its path's history: the path, and the position up to which it has had
/// every trigger there (`None`: from whenever it arrived). Set when it is placed; moved on only by that
/// path's lane, which runs one trigger at a time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mark {
    pub path: Option<Arc<str>>,
    pub at: Option<Cursor>,
    /// The offset of the last position frame its client was sent.
    pub told: u64,
}

/// What a trigger at some position is to one connection (see [`Conn::step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next one: deliver it (the mark has moved to it).
    Next,
    /// Already had: skip it.
    Had,
    /// Triggers before it are missing, after this offset: replay them first.
    Behind(u64),
    /// Its mark is in another history (lost since): resync, then deliver (the mark has moved to it).
    Reset,
    /// It is on another path by now: deliver as before, mark untouched.
    Elsewhere,
}

impl Conn {
    /// Where it stands in its path's history.
    pub fn mark(&self) -> Mark {
        self.mark
            .lock()
            .expect("mark lock is never poisoned")
            .clone()
    }

    /// Whether its position is on `path` (it has not moved elsewhere since).
    pub fn is_on(&self, path: &str) -> bool {
        self.mark
            .lock()
            .expect("mark lock is never poisoned")
            .path
            .as_deref()
            == Some(path)
    }

    /// It is placed on `path`, having had everything there up to `at` (`None`: from now on).
    pub fn set_mark(&self, path: Arc<str>, at: Option<Cursor>) {
        *self.mark.lock().expect("mark lock is never poisoned") = Mark {
            path: Some(path),
            at,
            told: 0,
        };
    }

    /// It has had everything on `path` up to `at` (nothing changes if it is elsewhere by now).
    pub fn mark_at(&self, path: &str, at: Cursor) {
        let mut mark = self.mark.lock().expect("mark lock is never poisoned");
        if mark.path.as_deref() == Some(path) {
            mark.at = Some(at);
        }
    }

    /// Its filter skipped the trigger at `offset` on `path`: whether its client is to be told its
    /// position now (once per `every` triggers).
    pub fn skipped(&self, path: &str, offset: u64, every: u64) -> bool {
        let mut mark = self.mark.lock().expect("mark lock is never poisoned");
        if mark.path.as_deref() != Some(path) || offset < mark.told + every {
            return false;
        }
        mark.told = offset;
        true
    }

    /// It goes on from whatever runs next on `path` (after a `resync`).
    pub fn forget_position(&self, path: &str) {
        let mut mark = self.mark.lock().expect("mark lock is never poisoned");
        if mark.path.as_deref() == Some(path) {
            mark.at = None;
        }
    }

    /// What the trigger at `at` on `path` is to this connection; a connection with no position yet
    /// stands where the node does (`seen`: the position of the trigger this node ran before).
    ///
    /// Run for every recipient of every trigger, so its compares look at pointers first: a mark's path and
    /// epoch are most often the very `Arc`s the lane holds.
    pub fn step(&self, path: &Arc<str>, at: &Cursor, seen: Option<&Cursor>) -> Step {
        let mut mark = self.mark.lock().expect("mark lock is never poisoned");
        if !mark.path.as_ref().is_some_and(|p| same(p, path)) {
            return Step::Elsewhere;
        }
        let step = match mark.at.as_ref().or(seen) {
            None => Step::Next,
            Some(had) if !same(had.epoch_arc(), at.epoch_arc()) => {
                if mark.at.is_some() {
                    Step::Reset
                } else {
                    Step::Next
                }
            }
            Some(had) if had.offset() >= at.offset() => return Step::Had,
            Some(had) if had.offset() + 1 == at.offset() => Step::Next,
            Some(had) => return Step::Behind(had.offset()),
        };
        mark.at = Some(at.clone());
        step
    }
}

/// Whether two shared strings are equal: the same allocation, or the same text.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}
