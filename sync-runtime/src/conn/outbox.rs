//! A connection's outgoing side as plain data: the queue of frames waiting for a transport, the numbered
//! reactions kept for replay, and the acknowledgement window. No locks and no I/O here; `Conn` holds it
//! under one mutex.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;

use crate::protocol::server::REACTION_HEAD;

/// A frame waiting in a connection's queue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outbound {
    /// A reaction: the writer prefixes `{"t":"reaction","seq":N` to this shared tail.
    Reaction(Arc<str>),
    /// A complete control frame; shared by every recipient it is queued for (presence lists), so that
    /// the writer hands the same bytes to each transport instead of copying them.
    Control(Utf8Bytes),
}

impl Outbound {
    pub fn control(text: impl Into<Utf8Bytes>) -> Self {
        Outbound::Control(text.into())
    }

    /// What this frame is charged against a queue's byte bound: its slot and its text (a tail shared with
    /// other recipients is charged to each, so that the bound holds whoever lets go of it last).
    pub fn cost(&self) -> usize {
        SLOT + match self {
            Outbound::Reaction(tail) => REACTION_HEAD + tail.len(),
            Outbound::Control(text) => text.len(),
        }
    }
}

/// A frame taken from the queue for the writer (see [`Outbox::take`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Taken<'a> {
    /// A reaction, numbered, and its tail.
    Reaction(u64, &'a str),
    Control(Utf8Bytes),
}

/// What one queued frame costs besides its text.
const SLOT: usize = std::mem::size_of::<Outbound>() + std::mem::size_of::<usize>();

/// A queue bound, in frames and in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub frames: usize,
    pub bytes: usize,
}

/// A byte budget shared by many holders: all parked connections of a hub.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Take `n` bytes if they fit.
    fn charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes taken now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The outgoing side of one connection.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Outbound>,
    queued_bytes: usize,
    /// Reactions handed to a transport and not yet acknowledged, for replay after a resume.
    sent: VecDeque<(u64, Arc<str>)>,
    sent_bytes: usize,
    last_seq: u64,
    acked: u64,
    /// Frames were dropped while nobody was reading: the client must resync when it comes back.
    pub overflowed: bool,
    /// Bytes of this outbox charged to the parked budget (0 unless parked).
    charged: usize,
}

impl Outbox {
    /// Queue `out` if it fits in `bound`; false when it does not (nothing is queued then).
    pub fn push(&mut self, out: Outbound, bound: Bound) -> Result<bool, Outbound> {
        let cost = out.cost();
        if self.queue.len() >= bound.frames || self.queued_bytes + cost > bound.bytes {
            return Err(out);
        }
        let was_empty = self.queue.is_empty();
        self.queued_bytes += cost;
        self.queue.push_back(out);
        Ok(was_empty)
    }

    /// Queue `out` for a parked connection: the bound counts the replay too, and every byte is charged
    /// to the shared `budget`.
    pub fn push_parked(
        &mut self,
        out: Outbound,
        bound: Bound,
        budget: &Budget,
    ) -> Result<(), Outbound> {
        let cost = out.cost();
        if self.queue.len() >= bound.frames
            || self.bytes() + cost > bound.bytes
            || !budget.charge(cost)
        {
            return Err(out);
        }
        self.charged += cost;
        self.queued_bytes += cost;
        self.queue.push_back(out);
        Ok(())
    }

    /// The connection parks: charge what it holds (and is not charged for yet) to `budget`. False when it
    /// holds more than `bound` or the budget has no room.
    pub fn park(&mut self, bound: Bound, budget: &Budget) -> bool {
        let held = self.bytes();
        let owed = held.saturating_sub(self.charged);
        if held > bound.bytes || self.queue.len() > bound.frames || !budget.charge(owed) {
            return false;
        }
        self.charged += owed;
        true
    }

    /// Give back what is charged to `budget` (the connection left the parked state).
    pub fn release(&mut self, budget: &Budget) {
        budget.release(std::mem::take(&mut self.charged));
    }

    /// Nobody reads and the bounds are passed: drop what is held, give back its budget, and remember the
    /// client must resync.
    pub fn overflow(&mut self, budget: &Budget) {
        self.release(budget);
        self.clear();
        self.overflowed = true;
    }

    /// Move up to `max` queued frames out, in order, to `each`, numbering each reaction and keeping it for
    /// replay (at most `keep`) as it goes. How many. One pass under the caller's one lock, straight into
    /// the writer's frames: no batch in between, which every connection would keep the capacity of. A
    /// reaction's tail moves into the replay and `each` reads it there: no second count on a tail that
    /// every recipient shares (its count's cache line is what the fan-out and the writers on the other
    /// cores contend for).
    pub fn take(&mut self, max: usize, keep: usize, mut each: impl FnMut(Taken<'_>)) -> usize {
        let n = self.queue.len().min(max);
        for _ in 0..n {
            let out = self.queue.pop_front().expect("n frames are queued");
            self.queued_bytes -= out.cost();
            match out {
                Outbound::Control(text) => each(Taken::Control(text)),
                Outbound::Reaction(tail) if keep == 0 => {
                    self.last_seq += 1;
                    each(Taken::Reaction(self.last_seq, &tail));
                }
                Outbound::Reaction(tail) => {
                    let seq = self.record(tail, keep);
                    let (_, kept) = self.sent.back().expect("just kept");
                    each(Taken::Reaction(seq, kept));
                }
            }
        }
        // A burst's worth of room goes back once the connection is idle again.
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        n
    }

    /// The bytes of the reaction frames among the first `max` queued (heads included): what writing
    /// them takes.
    pub fn reaction_bytes(&self, max: usize) -> usize {
        self.queue
            .iter()
            .take(max)
            .map(|out| match out {
                Outbound::Reaction(tail) => REACTION_HEAD + tail.len(),
                Outbound::Control(_) => 0,
            })
            .sum()
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Frames and bytes waiting for the transport.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.queued_bytes)
    }

    /// Number the next reaction and keep it for replay (at most `keep`).
    pub fn record(&mut self, tail: Arc<str>, keep: usize) -> u64 {
        self.last_seq += 1;
        if keep > 0 {
            if self.sent.len() >= keep
                && let Some((_, old)) = self.sent.pop_front()
            {
                self.sent_bytes -= REACTION_HEAD + old.len();
            }
            self.sent_bytes += REACTION_HEAD + tail.len();
            self.sent.push_back((self.last_seq, tail));
        }
        self.last_seq
    }

    /// What a client that last saw `seen` missed, or `None` when some of it is no longer kept.
    pub fn since(&self, seen: u64) -> Option<Vec<(u64, Arc<str>)>> {
        if seen >= self.last_seq {
            return Some(Vec::new());
        }
        let first_kept = self.sent.front().map_or(self.last_seq + 1, |(seq, _)| *seq);
        if seen + 1 < first_kept {
            return None;
        }
        Some(
            self.sent
                .iter()
                .filter(|(seq, _)| *seq > seen)
                .cloned()
                .collect(),
        )
    }

    /// The client has processed every reaction up to `seq`: they need no replay any more. False when
    /// `seq` acknowledges nothing new or reactions that were never sent.
    pub fn ack(&mut self, seq: u64) -> bool {
        if seq > self.last_seq || seq <= self.acked {
            return false;
        }
        self.acked = seq;
        while let Some((s, tail)) = self.sent.front()
            && *s <= seq
        {
            self.sent_bytes -= REACTION_HEAD + tail.len();
            self.sent.pop_front();
        }
        true
    }

    /// The `seq` of the last reaction handed to a transport.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Reactions sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.last_seq.saturating_sub(self.acked)
    }

    /// Bytes held: queued frames and reactions kept for replay.
    pub fn bytes(&self) -> usize {
        self.queued_bytes + self.sent_bytes
    }

    /// Let go of everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.sent = VecDeque::new();
        self.queued_bytes = 0;
        self.sent_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(n: u64) -> Arc<str> {
        Arc::from(n.to_string())
    }

    const ROOMY: Bound = Bound {
        frames: 1000,
        bytes: 1 << 20,
    };

    #[test]
    fn replay_returns_what_was_missed_or_none_when_evicted() {
        let mut outbox = Outbox::default();
        for n in 1..=10 {
            assert_eq!(outbox.record(tail(n), 4), n);
        }
        assert_eq!(outbox.since(10), Some(vec![]));
        let missed: Vec<u64> = outbox
            .since(7)
            .expect("kept")
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(missed, vec![8, 9, 10]);
        assert_eq!(outbox.since(6).expect("kept").len(), 4);
        assert_eq!(outbox.since(5), None, "seq 6 was evicted");
    }

    #[test]
    fn the_queue_is_bounded_in_frames_and_in_bytes() {
        let mut outbox = Outbox::default();
        let frames = Bound {
            frames: 2,
            bytes: 1 << 20,
        };
        assert_eq!(outbox.push(Outbound::control("a"), frames), Ok(true));
        assert_eq!(outbox.push(Outbound::control("b"), frames), Ok(false));
        assert!(outbox.push(Outbound::control("c"), frames).is_err());

        let mut outbox = Outbox::default();
        let big = Outbound::Reaction(Arc::from("x".repeat(100)));
        let bytes = Bound {
            frames: 1000,
            bytes: big.cost() * 3,
        };
        for _ in 0..3 {
            assert!(outbox.push(big.clone(), bytes).is_ok());
        }
        assert!(
            outbox.push(big.clone(), bytes).is_err(),
            "a fourth does not fit"
        );
        assert_eq!(outbox.bytes(), big.cost() * 3);
        let mut seqs = Vec::new();
        let taken = outbox.take(10, 0, |taken| {
            if let Taken::Reaction(seq, _) = taken {
                seqs.push(seq);
            }
        });
        assert_eq!(taken, 3);
        assert_eq!(seqs, vec![1, 2, 3], "reactions numbered in order");
        assert_eq!(outbox.bytes(), 0, "taking frees the bytes (nothing kept)");
    }

    #[test]
    fn taking_numbers_reactions_keeps_them_for_replay_and_passes_controls_through() {
        let mut outbox = Outbox::default();
        let _ = outbox.push(Outbound::Reaction(tail(7)), ROOMY);
        let _ = outbox.push(Outbound::control("c"), ROOMY);
        let _ = outbox.push(Outbound::Reaction(tail(8)), ROOMY);
        let mut seen = Vec::new();
        let taken = outbox.take(2, 64, |taken| {
            seen.push(match taken {
                Taken::Reaction(seq, tail) => format!("{seq}:{tail}"),
                Taken::Control(text) => format!("control:{}", text.as_str()),
            })
        });
        assert_eq!(taken, 2, "at most `max`");
        assert_eq!(seen, vec!["1:7".to_owned(), "control:c".to_owned()]);
        assert_eq!(outbox.queued().0, 1, "the third waits");
        let kept: Vec<(u64, String)> = outbox
            .since(0)
            .expect("kept")
            .into_iter()
            .map(|(seq, tail)| (seq, tail.to_string()))
            .collect();
        assert_eq!(
            kept,
            vec![(1, "7".to_owned())],
            "the reaction is kept for replay"
        );
    }

    #[test]
    fn acknowledged_reactions_leave_the_replay_and_its_bytes() {
        let mut outbox = Outbox::default();
        for n in 1..=5 {
            outbox.record(tail(n), 64);
        }
        assert_eq!(outbox.in_flight(), 5);
        let held = outbox.bytes();
        assert!(outbox.ack(3));
        assert!(!outbox.ack(3), "nothing new");
        assert!(!outbox.ack(9), "never sent");
        assert_eq!(outbox.in_flight(), 2);
        assert!(outbox.bytes() < held);
        assert_eq!(outbox.since(3).expect("kept").len(), 2);
        let _ = outbox.push(Outbound::control("x"), ROOMY);
        outbox.clear();
        assert_eq!(outbox.bytes(), 0);
    }
}
