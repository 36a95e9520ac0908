//! One connection as the server keeps it, whichever transport serves it (or none, while parked): who it
//! is, where it is, its lifecycle (`state`), its outgoing queue and replay (`outbox`), and the writer that
//! drains the queue into a transport (`writer`). Nothing here knows the hub: the hub's tables hold
//! `Arc<Conn>` and act on what `push` and the lifecycle report.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::auth::Who;
use crate::handler::{AnyArc, ConnectionId, ErasedPeer, Location};
use crate::protocol::close_code;
use crate::roster::View;

pub(crate) mod mark;
pub(crate) mod outbox;
pub(crate) mod rate;
pub(crate) mod state;
pub(crate) mod writer;

pub(crate) use mark::{Mark, Step};
use outbox::Outbox;
pub(crate) use outbox::{Bound, Budget, Outbound};
pub(crate) use rate::RateLimit;
pub(crate) use state::{Event, Phase};

/// The bounds every connection of a hub lives within.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    /// The queue of a connection a transport serves; past it, the connection is closed as a slow consumer.
    pub live: Bound,
    /// What a parked connection may hold, queue and replay together; past it, it is forgotten.
    pub parked: Bound,
    /// Reactions kept for replay (and the acknowledgement window).
    pub keep: usize,
    /// Bytes all parked connections of the hub may hold together.
    pub parked_budget: Budget,
    /// Messages per second per connection, and the burst.
    pub rate: (u32, u32),
}

/// What became of a frame handed to [`Conn::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The connection is closed or gone: nothing more is queued for it.
    Closed,
    /// The queue was full: the connection is now closing as a slow consumer (this push closed it).
    SlowConsumer,
    /// A parked connection passed its bounds: its queue is dropped, and the caller must forget it (its
    /// client gets `resync` if it comes back).
    Overflowed,
}

struct Life {
    phase: Phase,
    /// Counts the times the connection parked: a grace timer only expires the parking it was set for.
    generation: u64,
    close: Option<(u16, &'static str)>,
}

/// What a connection's identity holds that can change while it lives: the session (`update_session`),
/// what others see of it, and the credential with its expiry (a `refresh`).
#[derive(Clone)]
pub(crate) struct Credentials {
    pub session: AnyArc,
    pub view: View,
    pub token: Option<Arc<str>>,
    pub expires: Option<SystemTime>,
}

/// One connection.
pub(crate) struct Conn {
    pub id: ConnectionId,
    /// Who it is as admitted; the user key never changes, the rest lives on in `credentials`.
    pub who: Who,
    credentials: RwLock<Credentials>,
    /// The secret a reconnecting client presents to resume this connection.
    pub resume_key: Arc<str>,
    location: Mutex<Option<Location>>,
    /// The path whose user list its client holds (it got that path's `presence`), to which later
    /// `presence_diff`s apply; `None` until it gets one.
    listed: Mutex<Option<Arc<str>>>,
    /// How far into its path's history it has had every trigger (SPEC 10).
    mark: Mutex<Mark>,
    /// The token bucket all connections of this user share.
    pub user_limit: Arc<Mutex<RateLimit>>,
    /// This connection's own token bucket; held while one message is handled, so that one connection's
    /// messages are handled one at a time, in order, whichever transport (or `POST`) carries them.
    pub inbound: tokio::sync::Mutex<RateLimit>,
    life: Mutex<Life>,
    /// The phase, readable without the lock (fan-outs check it for every recipient).
    phase: AtomicU8,
    outbox: Mutex<Outbox>,
    /// Reactions the attached transport may leave unacknowledged; 0 when its client does not acknowledge.
    pub window: AtomicU64,
    /// Wakes a writer waiting for room in the window.
    pub acked_signal: Notify,
    /// Wakes resumers waiting for the old transport to let go.
    pub parked_signal: Notify,
    /// Wakes the task serving this connection when it is closed, detached or its transport dropped: one
    /// waiter, so an `AtomicWaker` (a couple of atomics per poll) rather than a `Notify` (a mutex).
    pub attention: futures_util::task::AtomicWaker,
    /// A task watches its credential's expiry.
    pub watching_expiry: AtomicBool,
    /// Set to ask the transport attached now to let go, because the client resumed on a new one.
    detach: AtomicBool,
    limits: Arc<ConnLimits>,
}

const PHASES: [Phase; 5] = [
    Phase::Connecting,
    Phase::Live,
    Phase::Parked,
    Phase::Closing,
    Phase::Gone,
];

fn phase_index(phase: Phase) -> u8 {
    PHASES
        .iter()
        .position(|p| *p == phase)
        .expect("every phase is listed") as u8
}

impl Conn {
    pub fn new(
        id: ConnectionId,
        who: Who,
        view: View,
        token: Option<Arc<str>>,
        user_limit: Arc<Mutex<RateLimit>>,
        limits: Arc<ConnLimits>,
    ) -> Conn {
        Conn {
            credentials: RwLock::new(Credentials {
                session: who.session.clone(),
                view,
                token,
                expires: who.expires,
            }),
            id,
            who,
            resume_key: Arc::from(crate::random::hex128()),
            location: Mutex::new(None),
            listed: Mutex::new(None),
            mark: Mutex::new(Mark::default()),
            user_limit,
            inbound: tokio::sync::Mutex::new(RateLimit::new(limits.rate.0, limits.rate.1)),
            life: Mutex::new(Life {
                phase: Phase::Connecting,
                generation: 0,
                close: None,
            }),
            phase: AtomicU8::new(phase_index(Phase::Connecting)),
            outbox: Mutex::new(Outbox::default()),
            window: AtomicU64::new(0),
            acked_signal: Notify::new(),
            parked_signal: Notify::new(),
            attention: futures_util::task::AtomicWaker::new(),
            watching_expiry: AtomicBool::new(false),
            detach: AtomicBool::new(false),
            limits,
        }
    }

    pub fn user(&self) -> &Arc<str> {
        &self.who.user
    }

    /// Frames and bytes waiting for this connection's transport (for metrics and the admin page).
    pub fn queued(&self) -> (usize, usize) {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .queued()
    }

    pub fn phase(&self) -> Phase {
        PHASES[usize::from(self.phase.load(Ordering::Acquire))]
    }

    /// Closed or gone: it gets nothing more.
    pub fn is_closed(&self) -> bool {
        self.phase().is_closed()
    }

    /// Apply `event` (see `state`); the new phase, or `None` when it cannot happen now.
    pub fn transition(&self, event: Event) -> Option<Phase> {
        self.transition_with(event, |_| {})
    }

    fn transition_with(&self, event: Event, also: impl FnOnce(&mut Life)) -> Option<Phase> {
        let (from, to) = {
            let mut life = self.life.lock().expect("life lock is never poisoned");
            let from = life.phase;
            let to = from.on(event)?;
            life.phase = to;
            if to == Phase::Parked {
                life.generation += 1;
            }
            also(&mut life);
            self.phase.store(phase_index(to), Ordering::Release);
            (from, to)
        };
        {
            // The parked budget follows the phase, under the outbox lock every push takes.
            let budget = &self.limits.parked_budget;
            let mut outbox = self.outbox.lock().expect("outbox lock is never poisoned");
            if from == Phase::Parked {
                outbox.release(budget);
            }
            match to {
                // Holding more than a parked connection may: the caller sees it overflowed.
                Phase::Parked if !outbox.park(self.limits.parked, budget) => {
                    outbox.overflow(budget)
                }
                Phase::Gone => {
                    outbox.release(budget);
                    outbox.clear();
                }
                _ => {}
            }
        }
        match to {
            Phase::Parked => self.parked_signal.notify_waiters(),
            Phase::Closing | Phase::Gone => self.attention.wake(),
            Phase::Connecting | Phase::Live => {}
        }
        Some(to)
    }

    /// Close with `code`: `Closing` when a transport will send the close, `Gone` when it was parked (and
    /// the caller must finish forgetting it), `None` when it was already closed.
    pub fn close(&self, code: u16, reason: &'static str) -> Option<Phase> {
        self.transition_with(Event::Close, |life| life.close = Some((code, reason)))
    }

    /// The code and reason it was closed with.
    pub fn close_reason(&self) -> Option<(u16, &'static str)> {
        self.life.lock().expect("life lock is never poisoned").close
    }

    /// Which parking this is (see `Life::generation`).
    pub fn generation(&self) -> u64 {
        self.life
            .lock()
            .expect("life lock is never poisoned")
            .generation
    }

    /// Queue a frame without waiting, within the bounds of the connection's phase.
    pub fn push(&self, out: Outbound) -> Pushed {
        if self.is_closed() {
            return Pushed::Closed;
        }
        let mut outbox = self.outbox.lock().expect("outbox lock is never poisoned");
        // Read under the outbox lock, which every transition also takes to move the parked budget: a
        // frame charged to the budget is always given back when the connection leaves the parked state.
        let parked = self.phase() == Phase::Parked;
        let pushed = if parked {
            outbox
                .push_parked(out, self.limits.parked, &self.limits.parked_budget)
                .map(|()| false)
        } else {
            outbox.push(out, self.limits.live)
        };
        match pushed {
            Ok(was_empty) => {
                drop(outbox);
                // A writer with frames left drains them before it waits again: only the first one wakes it.
                if was_empty {
                    self.attention.wake();
                }
                Pushed::Queued
            }
            Err(_) if parked => {
                outbox.overflow(&self.limits.parked_budget);
                Pushed::Overflowed
            }
            Err(_) => {
                drop(outbox);
                match self.close(close_code::SLOW_CONSUMER, "slow consumer") {
                    Some(_) => Pushed::SlowConsumer,
                    None => Pushed::Closed,
                }
            }
        }
    }

    /// Whether frames were dropped since the client last had them all; clears it.
    pub fn take_overflowed(&self) -> bool {
        std::mem::take(
            &mut self
                .outbox
                .lock()
                .expect("outbox lock is never poisoned")
                .overflowed,
        )
    }

    /// Whether it overflowed while parked (and must be forgotten).
    pub fn overflowed(&self) -> bool {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .overflowed
    }

    pub fn has_queued(&self) -> bool {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .has_queued()
    }

    /// Act on the outbox under its lock, with the number of reactions to keep for replay: the writer takes
    /// a batch, numbering and keeping its reactions, in one lock.
    pub fn with_outbox<T>(&self, f: impl FnOnce(&mut Outbox, usize) -> T) -> T {
        let mut outbox = self.outbox.lock().expect("outbox lock is never poisoned");
        f(&mut outbox, self.limits.keep)
    }

    /// What a client that last saw `seen` missed, or `None` when some of it is no longer kept.
    pub fn since(&self, seen: u64) -> Option<Vec<(u64, Arc<str>)>> {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .since(seen)
    }

    /// The client processed every reaction up to `seq`. False when that acknowledges nothing new.
    pub fn ack(&self, seq: u64) -> bool {
        let moved = self
            .outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .ack(seq);
        if moved {
            self.acked_signal.notify_one();
        }
        moved
    }

    /// The `seq` of the last reaction handed to a transport.
    pub fn sent_seq(&self) -> u64 {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .last_seq()
    }

    /// Reactions sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.outbox
            .lock()
            .expect("outbox lock is never poisoned")
            .in_flight()
    }

    /// The reactions kept for replay (the acknowledgement window is never larger).
    pub fn keep(&self) -> usize {
        self.limits.keep
    }

    /// Ask the transport attached now to let go (a resume is waiting for the connection).
    pub fn request_detach(&self) {
        self.detach.store(true, Ordering::Release);
        self.attention.wake();
    }

    pub fn detach_requested(&self) -> bool {
        self.detach.load(Ordering::Acquire)
    }

    /// A new transport serves it: requests to let go were meant for the one before.
    pub fn clear_detach(&self) {
        self.detach.store(false, Ordering::Release);
    }

    pub fn peer(&self, location: Location) -> ErasedPeer {
        let credentials = self.credentials();
        ErasedPeer {
            user: self.who.user.clone(),
            session: credentials.session,
            token: credentials.token,
            location,
            connection: self.id,
            view: credentials.view,
        }
    }

    /// The session, view and credential as they are now.
    pub fn credentials(&self) -> Credentials {
        self.credentials
            .read()
            .expect("credentials lock is never poisoned")
            .clone()
    }

    /// Change them (a session update, a refreshed token), returning the result.
    pub fn update_credentials(&self, change: impl FnOnce(&mut Credentials)) -> Credentials {
        let mut credentials = self
            .credentials
            .write()
            .expect("credentials lock is never poisoned");
        change(&mut credentials);
        credentials.clone()
    }

    /// Record which path's user list its client holds.
    pub fn set_listed(&self, path: Option<Arc<str>>) {
        *self.listed.lock().expect("listed lock is never poisoned") = path;
    }

    /// Whether its client holds the user list of `path`.
    pub fn lists(&self, path: &str) -> bool {
        self.listed
            .lock()
            .expect("listed lock is never poisoned")
            .as_deref()
            == Some(path)
    }

    pub fn current_location(&self) -> Option<Location> {
        self.location
            .lock()
            .expect("location lock is never poisoned")
            .clone()
    }

    /// Replace the location (the presence index calls this under its own lock, so the two agree).
    pub fn swap_location(&self, location: Option<Location>) -> Option<Location> {
        std::mem::replace(
            &mut *self
                .location
                .lock()
                .expect("location lock is never poisoned"),
            location,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn limits(live: usize, parked: Bound, budget: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            live: Bound {
                frames: live,
                bytes: usize::MAX,
            },
            parked,
            keep: 8,
            parked_budget: Budget::new(budget),
            rate: (100, 100),
        })
    }

    pub(crate) fn conn(limits: Arc<ConnLimits>) -> Conn {
        let who = Who {
            user: Arc::from("u"),
            session: Arc::new(()),
            guest: false,
            expires: None,
        };
        let user_limit = Arc::new(Mutex::new(RateLimit::new(1, 1)));
        Conn::new(
            ConnectionId(1),
            who,
            crate::roster::null_view(),
            None,
            user_limit,
            limits,
        )
    }

    fn frame(n: usize) -> Outbound {
        Outbound::Reaction(Arc::from("x".repeat(n)))
    }

    const ROOMY: Bound = Bound {
        frames: 1000,
        bytes: 1 << 20,
    };

    #[test]
    fn a_full_live_queue_closes_as_a_slow_consumer() {
        let conn = conn(limits(2, ROOMY, 1 << 20));
        conn.transition(Event::Serve);
        assert_eq!(conn.push(frame(1)), Pushed::Queued);
        assert_eq!(conn.push(frame(1)), Pushed::Queued);
        assert_eq!(conn.push(frame(1)), Pushed::SlowConsumer);
        assert_eq!(conn.phase(), Phase::Closing);
        assert_eq!(
            conn.close_reason(),
            Some((close_code::SLOW_CONSUMER, "slow consumer"))
        );
        assert_eq!(conn.push(frame(1)), Pushed::Closed);
    }

    #[test]
    fn a_parked_connection_past_its_bound_overflows_and_lets_go_of_its_queue() {
        let bound = Bound {
            frames: 3,
            bytes: 1 << 20,
        };
        let conn = conn(limits(100, bound, 1 << 20));
        conn.transition(Event::Serve);
        conn.transition(Event::Drop);
        for _ in 0..3 {
            assert_eq!(conn.push(frame(10)), Pushed::Queued);
        }
        assert!(conn.limits.parked_budget.used() > 0);
        assert_eq!(conn.push(frame(10)), Pushed::Overflowed);
        assert!(!conn.has_queued(), "the queue is let go of at once");
        assert_eq!(
            conn.limits.parked_budget.used(),
            0,
            "and its bytes returned"
        );
        assert!(conn.take_overflowed());
    }

    #[test]
    fn parked_connections_share_one_byte_budget() {
        let budget = frame(100).cost() * 3;
        let limits = limits(100, ROOMY, budget);
        let (a, b) = (conn(limits.clone()), conn(limits.clone()));
        for c in [&a, &b] {
            c.transition(Event::Serve);
            c.transition(Event::Drop);
        }
        assert_eq!(a.push(frame(100)), Pushed::Queued);
        assert_eq!(a.push(frame(100)), Pushed::Queued);
        assert_eq!(b.push(frame(100)), Pushed::Queued);
        assert_eq!(
            b.push(frame(100)),
            Pushed::Overflowed,
            "the budget is spent"
        );
        assert_eq!(limits.parked_budget.used(), frame(100).cost() * 2);
        a.transition(Event::Resume);
        assert_eq!(
            limits.parked_budget.used(),
            0,
            "a resumed connection is not parked memory"
        );
        a.transition(Event::Serve);
        assert_eq!(
            a.push(frame(100)),
            Pushed::Queued,
            "live queues are not charged"
        );
    }

    #[test]
    fn parking_with_more_than_a_parked_connection_may_hold_overflows_at_once() {
        let bound = Bound {
            frames: 100,
            bytes: frame(10).cost(),
        };
        let conn = conn(limits(100, bound, 1 << 20));
        conn.transition(Event::Serve);
        conn.push(frame(10));
        conn.push(frame(10));
        conn.transition(Event::Drop);
        assert!(conn.overflowed());
        assert!(!conn.has_queued());
    }

    #[test]
    fn closing_a_parked_connection_makes_it_gone_and_empty() {
        let conn = conn(limits(100, ROOMY, 1 << 20));
        conn.transition(Event::Serve);
        conn.transition(Event::Drop);
        conn.push(frame(5));
        assert_eq!(conn.close(4003, "revoked"), Some(Phase::Gone));
        assert!(!conn.has_queued());
        assert_eq!(conn.limits.parked_budget.used(), 0);
        assert_eq!(conn.close(4003, "revoked"), None, "once");
    }
}
