//! Every path's history (SPEC 10): each trigger accepted for a concrete path gets the next offset in that
//! path's history, and a [`Cursor`] (the history's epoch and an offset) names a position in it. A client
//! that holds a cursor gets every trigger after it, re-run through its filter and reaction, or `resync`
//! when the history no longer covers it.
//!
//! [`Log`] is the in-memory history: a hub without a backplane keeps its own, and the in-process
//! [`MemoryBus`](crate::MemoryBus) shares one between its hubs as Redis does with streams. It is bounded
//! by [`HistoryLimits`]: entries per path, their age, bytes per path, bytes in all, and paths. A path
//! whose history was dropped to make room (or never existed here) starts a new epoch, so a cursor from
//! before can never be mistaken for one of now.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A position in one concrete path's history: its epoch and the offset of the last trigger before it.
///
/// Written `<epoch>:<offset>` ([`Display`](fmt::Display), [`FromStr`]): that is what reaction frames carry
/// in `cursor`, what a client sends back to resume from, and what [`meta`](Self::meta) embeds in a page.
///
/// ```
/// use sync_runtime::Cursor;
///
/// let cursor: Cursor = "9f86d081884c7d65:42".parse().expect("a cursor");
/// assert_eq!(cursor.offset(), 42);
/// assert_eq!(cursor.to_string(), "9f86d081884c7d65:42");
/// assert_eq!(cursor.meta(), r#"<meta name="sync-cursor" content="9f86d081884c7d65:42">"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    epoch: Arc<str>,
    offset: u64,
}

impl Cursor {
    pub(crate) fn new(epoch: Arc<str>, offset: u64) -> Self {
        Cursor { epoch, offset }
    }

    /// The history this cursor belongs to: a new epoch means the history before it was lost.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn epoch_arc(&self) -> &Arc<str> {
        &self.epoch
    }

    /// How many triggers the path had had at this position.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same history, `offset`.
    #[cfg(test)]
    pub(crate) fn at(&self, offset: u64) -> Cursor {
        Cursor::new(self.epoch.clone(), offset)
    }

    /// `<meta name="sync-cursor" content="…">`, for the `<head>` of a page rendered on the server: the
    /// browser client connects from it, so a trigger accepted between the render and the connect still
    /// reaches the page. The epoch and offset are `[0-9A-Za-z_-]` and digits: nothing to escape.
    pub fn meta(&self) -> String {
        format!(r#"<meta name="sync-cursor" content="{self}">"#)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// A string that is not `<epoch>:<offset>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: expected `<epoch>:<offset>`")]
pub struct BadCursor;

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (epoch, offset) = s.rsplit_once(':').ok_or(BadCursor)?;
        let epoch_ok = !epoch.is_empty()
            && epoch.len() <= 64
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !epoch_ok || offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadCursor);
        }
        Ok(Cursor::new(
            Arc::from(epoch),
            offset.parse().map_err(|_| BadCursor)?,
        ))
    }
}

/// A fresh epoch: 64 random bits as 16 hex digits.
pub(crate) fn new_epoch() -> Arc<str> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    Arc::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    /// Triggers kept per path; 0 keeps none (offsets are still counted, so a gap is seen and resyncs).
    pub size: usize,
    /// How long a trigger is kept.
    pub age: Duration,
    /// Bytes kept per path.
    pub path_bytes: usize,
    /// Bytes kept for all paths together (in memory).
    pub total_bytes: usize,
    /// Paths whose position is remembered (in memory); past it, the least recently used is forgotten.
    pub paths: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            size: 100,
            age: Duration::from_secs(300),
            path_bytes: 256 * 1024,
            total_bytes: 64 * 1024 * 1024,
            paths: 100_000,
        }
    }
}

/// What a history holds after a position.
#[derive(Debug, PartialEq)]
pub(crate) enum Recalled<T> {
    /// The entries after the position asked for, in order, up to the bound asked for. `first` is the
    /// oldest offset still kept: a position before `first - 1` can no longer be served.
    Entries { first: u64, entries: Vec<(u64, T)> },
    /// The history is another one (a new epoch): nothing before it can be served.
    Lost,
}

struct Kept<T> {
    offset: u64,
    at: Instant,
    bytes: usize,
    item: T,
}

struct PathLog<T> {
    epoch: Arc<str>,
    top: u64,
    entries: VecDeque<Kept<T>>,
    bytes: usize,
    touched: u64,
}

impl<T> PathLog<T> {
    fn new(touched: u64) -> Self {
        PathLog {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            bytes: 0,
            touched,
        }
    }

    /// Drop entries past the age; the bytes let go.
    fn expire(&mut self, now: Instant, age: Duration) -> usize {
        let mut freed = 0;
        while let Some(first) = self.entries.front()
            && now.duration_since(first.at) > age
        {
            freed += first.bytes;
            self.entries.pop_front();
        }
        self.bytes -= freed;
        freed
    }

    fn pop_front(&mut self) -> usize {
        let freed = self.entries.pop_front().map_or(0, |k| k.bytes);
        self.bytes -= freed;
        freed
    }

    fn cursor(&self) -> Cursor {
        Cursor::new(self.epoch.clone(), self.top)
    }
}

struct State<T> {
    paths: HashMap<Arc<str>, PathLog<T>>,
    bytes: usize,
    clock: u64,
}

/// The in-memory history of every path, bounded by [`HistoryLimits`].
pub(crate) struct Log<T> {
    state: Mutex<State<T>>,
    limits: HistoryLimits,
}

impl<T: Clone> Log<T> {
    pub fn new(limits: HistoryLimits) -> Self {
        Log {
            state: Mutex::new(State {
                paths: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            limits,
        }
    }

    /// Give `item` (`bytes` long) the next offset of `path`; its position.
    pub fn append(&self, path: &Arc<str>, item: T, bytes: usize) -> Cursor {
        let limits = self.limits;
        let now = Instant::now();
        let mut state = self.state.lock().expect("history lock is never poisoned");
        let state = &mut *state;
        let log = touch(state, path, limits.paths);
        log.top += 1;
        let offset = log.top;
        let mut freed = log.expire(now, limits.age);
        let mut added = 0;
        if limits.size > 0 && bytes <= limits.path_bytes {
            while log.entries.len() >= limits.size || log.bytes + bytes > limits.path_bytes {
                freed += log.pop_front();
            }
            log.entries.push_back(Kept {
                offset,
                at: now,
                bytes,
                item,
            });
            log.bytes += bytes;
            added = bytes;
        } else {
            // Too big to keep, or nothing is kept: what came before can no longer be served in order.
            while !log.entries.is_empty() {
                freed += log.pop_front();
            }
        }
        let cursor = log.cursor();
        state.bytes = state.bytes + added - freed;
        if state.bytes > limits.total_bytes {
            shed(state, limits.total_bytes, path);
        }
        cursor
    }

    /// The current position of `path` (a path with no history starts one here).
    pub fn top(&self, path: &Arc<str>) -> Cursor {
        let mut state = self.state.lock().expect("history lock is never poisoned");
        touch(&mut state, path, self.limits.paths).cursor()
    }

    /// The entries of `path` after `after` and up to `upto`, if `epoch` is still its history.
    pub fn since(&self, path: &str, epoch: &str, after: u64, upto: u64) -> Recalled<T> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("history lock is never poisoned");
        let state = &mut *state;
        let Some(log) = state.paths.get_mut(path) else {
            return Recalled::Lost;
        };
        if *log.epoch != *epoch {
            return Recalled::Lost;
        }
        let freed = log.expire(now, self.limits.age);
        let first = log.entries.front().map_or(log.top + 1, |k| k.offset);
        let entries = log
            .entries
            .iter()
            .filter(|k| k.offset > after && k.offset <= upto)
            .map(|k| (k.offset, k.item.clone()))
            .collect();
        state.bytes -= freed;
        Recalled::Entries { first, entries }
    }

    /// Bytes held by every path's entries.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.state.lock().expect("history lock").bytes
    }
}

/// `path`'s log, created if need be (forgetting the least recently used paths past `max`), marked used.
fn touch<'a, T>(state: &'a mut State<T>, path: &Arc<str>, max: usize) -> &'a mut PathLog<T> {
    state.clock += 1;
    let clock = state.clock;
    if !state.paths.contains_key(path) && state.paths.len() >= max.max(1) {
        // Forget an eighth at once, so that the scan is paid once per many new paths.
        let mut ages: Vec<u64> = state.paths.values().map(|l| l.touched).collect();
        let cut = (ages.len() / 8).max(1).min(ages.len() - 1);
        let (_, limit, _) = ages.select_nth_unstable(cut);
        let limit = *limit;
        let mut freed = 0;
        state.paths.retain(|_, log| {
            let keep = log.touched > limit;
            if !keep {
                freed += log.bytes;
            }
            keep
        });
        state.bytes -= freed;
    }
    let log = state
        .paths
        .entry(path.clone())
        .or_insert_with(|| PathLog::new(clock));
    log.touched = clock;
    log
}

/// Past the total bound: drop the entries of the least recently used paths (their positions stay), never
/// those of `keep`, until the bound holds again.
fn shed<T>(state: &mut State<T>, total: usize, keep: &str) {
    let mut order: Vec<(u64, Arc<str>)> = state
        .paths
        .iter()
        .filter(|(p, l)| !l.entries.is_empty() && &***p != keep)
        .map(|(p, l)| (l.touched, p.clone()))
        .collect();
    order.sort_unstable();
    for (_, path) in order {
        if state.bytes <= total {
            return;
        }
        if let Some(log) = state.paths.get_mut(&path) {
            state.bytes -= log.bytes;
            log.entries.clear();
            log.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests;
