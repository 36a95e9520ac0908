//! Counters a hub keeps, shared by the pieces that count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a hub keeps; read them with [`SyncHub::stats`](crate::SyncHub::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Connections with a transport attached now.
    pub connections: u64,
    /// Of `connections`, those over WebSocket now.
    pub websockets: u64,
    /// Of `connections`, those over SSE now.
    pub sse_streams: u64,
    /// Connections waiting for a resume now (no transport attached).
    pub parked: u64,
    /// Connections that resumed (a transport came back within the grace window), since the hub was built.
    pub resumed: u64,
    /// Fan-outs run.
    pub fanouts: u64,
    /// Reactions handed to connection queues.
    pub delivered: u64,
    /// Filter calls (or `prepare` steps) that returned an error. With `class`, one filter call decides for
    /// a whole class.
    pub filter_errors: u64,
    /// Filter calls, `prepare` or `class` steps, or reactions that panicked.
    pub filter_panics: u64,
    /// Filter calls (or `prepare` steps) that overran the deadline.
    pub filter_timeouts: u64,
    /// Connections closed because their queue overflowed.
    pub slow_consumers: u64,
    /// Parked connections forgotten before their grace window ended (a queue or a bound overflowed); their
    /// clients get `resync` when they come back.
    pub parked_evicted: u64,
    /// Client messages answered with an error code.
    pub rejected_messages: u64,
    /// Of `rejected_messages`, those dropped by a rate limit (`rate_limited`).
    pub rate_limited: u64,
    /// Triggers from other nodes that could not be queued (the path's queue was full); that path's
    /// connections were told to resync.
    pub remote_dropped: u64,
    /// Reactions re-run from a path's history for connections that stood behind (a cursor from a page's
    /// render or an earlier connection, a trigger this node missed).
    pub replayed: u64,
    /// `resync`s sent because a connection's position was no longer in its path's history.
    pub history_resyncs: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub websockets: AtomicU64,
    pub sse_streams: AtomicU64,
    pub parked: AtomicU64,
    pub resumed: AtomicU64,
    pub fanouts: AtomicU64,
    pub delivered: AtomicU64,
    pub filter_errors: AtomicU64,
    pub filter_panics: AtomicU64,
    pub filter_timeouts: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub parked_evicted: AtomicU64,
    pub rejected_messages: AtomicU64,
    pub rate_limited: AtomicU64,
    pub remote_dropped: AtomicU64,
    pub replayed: AtomicU64,
    pub history_resyncs: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections: get(&self.connections),
            websockets: get(&self.websockets),
            sse_streams: get(&self.sse_streams),
            parked: get(&self.parked),
            resumed: get(&self.resumed),
            fanouts: get(&self.fanouts),
            delivered: get(&self.delivered),
            filter_errors: get(&self.filter_errors),
            filter_panics: get(&self.filter_panics),
            filter_timeouts: get(&self.filter_timeouts),
            slow_consumers: get(&self.slow_consumers),
            parked_evicted: get(&self.parked_evicted),
            rejected_messages: get(&self.rejected_messages),
            rate_limited: get(&self.rate_limited),
            remote_dropped: get(&self.remote_dropped),
            replayed: get(&self.replayed),
            history_resyncs: get(&self.history_resyncs),
        }
    }
}
