//! A connection's lifecycle: one enum, every transition in [`Phase::on`].
//!
//! ```text
//!             serve               drop                 resume
//! Connecting ───────▶ Live ───────────────▶ Parked ───────────▶ Connecting
//!     │                │ close                │ close / expire / evict
//!     │ close          ▼                      ▼
//!     └──────────▶ Closing ──── forget ────▶ Gone ◀── forget (from anywhere)
//! ```
//!
//! * **Connecting**: admitted (counted against the user's cap), no transport serving it yet; a resumed
//!   connection passes through it again on its way to a new transport.
//! * **Live**: one transport writes its queue. A resume that finds it still live (the server has not yet
//!   noticed the old socket died) asks that transport to let go (`detach`), which parks it.
//! * **Parked**: no transport; the connection stays on its route, queueing within its bounds, for the grace
//!   window.
//! * **Closing**: closed by either side; the transport sends the close (frame or event) and forgets it.
//! * **Gone**: off every route and out of every table. Terminal.

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Live,
    Parked,
    Closing,
    Gone,
}

/// What can happen to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A transport starts serving it.
    Serve,
    /// Its transport died (or let go for a resume) without a close.
    Drop,
    /// A new transport of the same client claims it while parked.
    Resume,
    /// Closed on purpose: a goodbye, a revocation, a slow consumer, a shutdown, a protocol violation.
    Close,
    /// Removed for good: closed and done, grace window over, or evicted to keep parked memory bounded.
    Forget,
}

impl Phase {
    /// The phase after `event`, or `None` when `event` cannot happen in this phase (the caller lost a
    /// race, e.g. two resumes of one parked connection: only the first gets it).
    pub fn on(self, event: Event) -> Option<Phase> {
        use {Event::*, Phase::*};
        match (self, event) {
            (Gone, _) => None,
            (_, Forget) => Some(Gone),
            (Connecting, Serve) => Some(Live),
            (Live, Drop) => Some(Parked),
            (Parked, Resume) => Some(Connecting),
            (Connecting | Live, Close) => Some(Closing),
            // Nobody could send a parked connection's close: closing it is forgetting it.
            (Parked, Close) => Some(Gone),
            _ => None,
        }
    }

    /// Closed or gone: it gets nothing more.
    pub fn is_closed(self) -> bool {
        matches!(self, Phase::Closing | Phase::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::{Event::*, Phase::*};

    #[test]
    fn a_connection_is_served_parked_resumed_and_served_again() {
        let mut phase = Connecting;
        for (event, next) in [
            (Serve, Live),
            (Drop, Parked),
            (Resume, Connecting),
            (Serve, Live),
        ] {
            phase = phase.on(event).expect("allowed");
            assert_eq!(phase, next);
        }
    }

    #[test]
    fn only_one_resume_claims_a_parked_connection() {
        let claimed = Parked.on(Resume).expect("the first resume claims it");
        assert_eq!(claimed.on(Resume), None);
        assert_eq!(
            Live.on(Resume),
            None,
            "a live connection must be let go of first"
        );
    }

    #[test]
    fn closing_a_live_connection_waits_for_its_transport() {
        assert_eq!(Live.on(Close), Some(Closing));
        assert_eq!(Connecting.on(Close), Some(Closing));
        assert_eq!(
            Closing.on(Drop),
            None,
            "a closing connection is never parked"
        );
        assert_eq!(Closing.on(Serve), None);
        assert_eq!(Closing.on(Forget), Some(Gone));
    }

    #[test]
    fn closing_a_parked_connection_forgets_it() {
        assert_eq!(Parked.on(Close), Some(Gone));
        assert_eq!(Parked.on(Forget), Some(Gone));
    }

    #[test]
    fn gone_is_terminal() {
        for event in [Serve, Drop, Resume, Close, Forget] {
            assert_eq!(Gone.on(event), None);
        }
    }

    #[test]
    fn a_connection_that_was_never_served_can_only_start_close_or_be_forgotten() {
        assert_eq!(Connecting.on(Drop), None);
        assert_eq!(Connecting.on(Forget), Some(Gone));
        assert!(Closing.is_closed() && Gone.is_closed());
        assert!(!Parked.is_closed());
    }
}
