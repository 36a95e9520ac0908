//! One fan-out: every recipient on the path, its filter (in place, or concurrently under a deadline),
//! its verdict, and its frame; recipients with the same reaction share one serialized frame.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::Instrument;

use super::lane::{Full, Lanes};
use super::replay::History;
use super::{Job, Work};
use crate::Reaction;
use crate::conn::{Conn, Outbound};
use crate::conns::ConnTable;
use crate::handler::{AnyArc, Call, FilterFailure, Handling, Location};
use crate::history::{Cursor, HistoryLimits, Log};
use crate::observe::{Finished, Observers, Trace};
use crate::presence::Presence;
use crate::protocol::Outcome;
use crate::protocol::server::{cursor_frame, reaction_tail};
use crate::registry::SyncEntry;
use crate::roster::Here;
use crate::stats::Counters;

/// The fan-out engine of a hub: its lanes and what a fan-out reads.
pub(crate) struct FanOut {
    pub presence: Arc<Presence>,
    pub conns: Arc<ConnTable>,
    pub counters: Arc<Counters>,
    pub observers: Arc<Observers>,
    pub functions: AnyArc,
    pub deadline: Duration,
    lanes: Lanes,
    pub(super) history: History,
    /// The position of the last trigger this node ran on each path someone here is on.
    pub(super) seen: Mutex<HashMap<Arc<str>, Cursor>>,
    /// A connection skipped by its filter is told its position once per this many triggers.
    position_every: u64,
}

/// How a hub's fan-outs run.
pub(crate) struct FanOutSettings {
    /// How long an async filter may take.
    pub deadline: Duration,
    /// Triggers waiting per path.
    pub lane_queue: usize,
    /// How long an empty lane's task lingers.
    pub lane_idle: Duration,
    pub history: HistoryAt,
    /// Triggers kept per path (the position frames of skipped connections go out twice per history).
    pub history_size: usize,
    pub observers: Arc<Observers>,
}

/// Where a hub's fan-outs find the history of a path.
pub(crate) enum HistoryAt {
    /// This node keeps it, within these limits.
    Here(HistoryLimits),
    /// The broker keeps it.
    Broker,
}

impl FanOut {
    pub fn new(
        presence: Arc<Presence>,
        conns: Arc<ConnTable>,
        counters: Arc<Counters>,
        functions: AnyArc,
        settings: FanOutSettings,
    ) -> Self {
        let FanOutSettings {
            deadline,
            lane_queue,
            lane_idle,
            history,
            history_size,
            observers,
        } = settings;
        FanOut {
            presence,
            conns,
            counters,
            observers,
            functions,
            deadline,
            lanes: Lanes::new(lane_queue, lane_idle),
            history: match history {
                HistoryAt::Here(limits) => History::Local(Log::new(limits)),
                HistoryAt::Broker => History::Shared(std::sync::OnceLock::new()),
            },
            seen: Mutex::new(HashMap::new()),
            position_every: (history_size as u64 / 2).max(1),
        }
    }

    /// Queue a job on its lane without waiting; the job back when the lane is full.
    #[allow(clippy::result_large_err)] // the caller's own job, handed back (see `Lanes::try_submit`)
    pub fn try_submit(self: &Arc<Self>, job: Work) -> Result<(), Work> {
        let path = job.path().clone();
        match self.lanes.try_submit(job) {
            Ok(start) => {
                if start {
                    self.start_lane(path);
                }
                Ok(())
            }
            Err(Full(job)) => Err(job),
        }
    }

    /// Every lane's path and the triggers (and catch-ups) waiting on it.
    pub fn backlog(&self) -> Vec<(Arc<str>, usize)> {
        self.lanes.backlog()
    }

    /// Queue a job, waiting for room (client requests: backpressure reaches the sending connection).
    pub async fn submit(self: &Arc<Self>, job: Work) {
        let path = job.path().clone();
        if self.lanes.submit(job).await {
            self.start_lane(path);
        }
    }

    fn start_lane(self: &Arc<Self>, path: Arc<str>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let runner = engine.clone();
            engine
                .lanes
                .run(path, move |job| {
                    let runner = runner.clone();
                    async move { runner.run(job).await }
                })
                .await;
        });
    }

    /// Run one piece of a lane's work, in this lane's order.
    pub async fn run(&self, work: Work) {
        match work {
            Work::Trigger(job) => match job.trace.as_ref().map(|t| t.span.clone()) {
                Some(span) => self.trigger(job).instrument(span).await,
                None => self.trigger(job).await,
            },
            Work::CatchUp { path, conns } => self.catch_up(path, conns).await,
            Work::Follow { path, before } => self.follow(path, before).await,
            Work::Live(job) => {
                // A parked connection would only fill its bounded queue with snapshots it no longer
                // needs: it gets the next one when it comes back.
                let mut recipients = self.presence.recipients(job.location.path());
                recipients.retain(|c| c.phase() == crate::conn::Phase::Live);
                self.broadcast(job, None, recipients).await;
            }
        }
    }

    /// Run one trigger at `at` over `recipients`: filters, verdicts, frames. Without a position (`at` is
    /// `None`) it is a [`Work::Live`] broadcast: its frames carry no cursor, and it is not counted.
    pub(super) async fn broadcast(
        &self,
        job: Job,
        at: Option<&Cursor>,
        recipients: Vec<Arc<Conn>>,
    ) {
        let Job {
            entry,
            location,
            data,
            sender,
            reply,
            at: _,
            trace,
        } = job;
        if at.is_some() {
            Counters::bump(&self.counters.fanouts);
        }
        let cursor = at.map(Cursor::to_string);
        let outcome = Outcome {
            matched: count(recipients.len()),
            ..Outcome::default()
        };
        if recipients.is_empty() {
            self.finish(trace, &entry, &location, outcome, reply);
            return;
        }
        let route = entry.route;
        let sender_peer = sender.as_ref().map(|s| &s.peer);
        let here = Here::new(self.presence.roster().clone(), location.path_arc().clone());
        let mut tally = Tally {
            outcome,
            entry: &entry,
            location: &location,
            cursor: cursor.as_deref(),
            offset: at.map(Cursor::offset),
            last: None,
        };
        match &entry.sync.0.handling {
            Handling::Shared(react) => {
                // Same reaction for everyone: computed and serialized once.
                let Some(reaction) = catch(|| react(&data, sender_peer)).flatten() else {
                    Counters::bump(&self.counters.filter_panics);
                    tracing::error!(target: "sync_runtime::fanout", route, name = entry.name, "client reaction panicked");
                    tally.outcome.failed = tally.outcome.matched;
                    let outcome = tally.outcome;
                    self.finish(trace, &entry, &location, outcome, reply);
                    return;
                };
                let tail = reaction_tail(
                    cursor.as_deref(),
                    location.path(),
                    location.route(),
                    entry.name,
                    &reaction,
                );
                tally.outcome.passed = tally.outcome.matched;
                for conn in &recipients {
                    if self.conns.push(conn, Outbound::Reaction(tail.clone())) {
                        tally.outcome.delivered += 1;
                    }
                }
            }
            Handling::Inline(filter) => {
                // A synchronous filter runs in place: no future, box or task per recipient. It cannot
                // overrun a deadline that nothing could enforce anyway; a panic still skips only its
                // recipient.
                for (i, conn) in recipients.iter().enumerate() {
                    let peer = conn.peer(location.clone());
                    let call = Call {
                        data: &data,
                        recipient: &peer,
                        sender: sender_peer,
                        functions: &self.functions,
                        here: &here,
                    };
                    let verdict = match catch(|| filter(&call)) {
                        Some(result) => Verdict::from(result),
                        None => Verdict::Panicked,
                    };
                    self.record(&mut tally, conn, verdict);
                    // Let other lanes run during a long fan-out.
                    if i % 1024 == 1023 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            Handling::Async(filter) => {
                let deadline = self.deadline;
                let mut running: FuturesUnordered<_> = recipients
                    .iter()
                    .map(|conn| {
                        let peer = conn.peer(location.clone());
                        let work = filter(&Call {
                            data: &data,
                            recipient: &peer,
                            sender: sender_peer,
                            functions: &self.functions,
                            here: &here,
                        });
                        async move {
                            let result = tokio::time::timeout(
                                deadline,
                                AssertUnwindSafe(work).catch_unwind(),
                            )
                            .await;
                            (conn, result)
                        }
                    })
                    .collect();
                while let Some((conn, result)) = running.next().await {
                    let verdict = match result {
                        Ok(Ok(result)) => Verdict::from(result),
                        Ok(Err(_panic)) => Verdict::Panicked,
                        Err(_elapsed) => Verdict::Overran(deadline),
                    };
                    self.record(&mut tally, conn, verdict);
                }
            }
        }
        if at.is_some() {
            self.counters
                .delivered
                .fetch_add(u64::from(tally.outcome.delivered), Ordering::Relaxed);
        }
        let outcome = tally.outcome;
        self.finish(trace, &entry, &location, outcome, reply);
    }

    /// Tell the observers (a trigger re-run from the history has no trace: it was told when it ran) and
    /// the sender how a fan-out went.
    fn finish(
        &self,
        trace: Option<Trace>,
        entry: &SyncEntry,
        location: &Location,
        outcome: Outcome,
        reply: super::Reply,
    ) {
        if let Some(trace) = trace {
            let _entered = trace.span.enter();
            self.observers.finished(&Finished {
                id: trace.id,
                route: entry.route,
                name: entry.name,
                path: location.path(),
                outcome,
                took: trace.since.elapsed(),
                remote: trace.remote,
            });
        }
        reply.send(&self.conns, Ok(outcome));
    }

    /// Queue a recipient's reaction, or count and log why it got none.
    ///
    /// `last` remembers the previous recipient's reaction and its serialized frame: recipients whose
    /// filters deliver the same (a team's list, `()`) share one frame, and comparing costs less than
    /// serializing.
    fn record(&self, tally: &mut Tally<'_>, conn: &Arc<Conn>, verdict: Verdict) {
        let Tally {
            outcome,
            entry,
            location,
            cursor,
            offset,
            last,
        } = tally;
        let (route, name) = (entry.route, entry.name);
        let failed = |counter: &std::sync::atomic::AtomicU64, outcome: &mut Outcome| {
            outcome.failed += 1;
            Counters::bump(counter);
        };
        match verdict {
            Verdict::Deliver(reaction) => {
                outcome.passed += 1;
                let tail = match last {
                    Some((previous, tail)) if *previous == reaction => tail.clone(),
                    _ => {
                        let tail = reaction_tail(
                            *cursor,
                            location.path(),
                            location.route(),
                            name,
                            &reaction,
                        );
                        *last = Some((reaction, tail.clone()));
                        tail
                    }
                };
                if self.conns.push(conn, Outbound::Reaction(tail)) {
                    outcome.delivered += 1;
                }
            }
            Verdict::Skip => {
                // A client whose filter skips trigger after trigger still moves on in the history: it is
                // told its position now and then, so that the cursor it resumes from stays covered.
                if let (Some(offset), Some(cursor)) = (*offset, *cursor)
                    && conn.skipped(location.path(), offset, self.position_every)
                {
                    let frame = cursor_frame(location.path(), cursor);
                    self.conns.push(conn, Outbound::control(frame));
                }
            }
            Verdict::Failed(FilterFailure::Error(e)) => {
                failed(&self.counters.filter_errors, outcome);
                tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, error = %e, "filter failed; recipient skipped");
            }
            Verdict::Failed(FilterFailure::Internal(e)) => {
                failed(&self.counters.filter_errors, outcome);
                tracing::error!(target: "sync_runtime::fanout", route, name, error = e, "internal error; recipient skipped");
            }
            Verdict::Panicked => {
                failed(&self.counters.filter_panics, outcome);
                tracing::error!(target: "sync_runtime::fanout", route, name, conn = %conn.id, "filter panicked; recipient skipped");
            }
            Verdict::Overran(deadline) => {
                failed(&self.counters.filter_timeouts, outcome);
                tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, ?deadline, "filter overran its deadline; recipient skipped");
            }
        }
    }
}

/// A filtered fan-out as it goes: its outcome so far, what every frame of it shares, and the last
/// reaction with its serialized tail.
struct Tally<'a> {
    outcome: Outcome,
    entry: &'a SyncEntry,
    location: &'a Location,
    /// `None` for a [`Work::Live`] broadcast.
    cursor: Option<&'a str>,
    /// The trigger's offset in its path's history.
    offset: Option<u64>,
    last: Option<(Reaction, Arc<str>)>,
}

/// What became of one recipient of a filtered fan-out.
enum Verdict {
    Deliver(Reaction),
    Skip,
    Failed(FilterFailure),
    Panicked,
    Overran(Duration),
}

impl From<Result<Option<Reaction>, FilterFailure>> for Verdict {
    fn from(result: Result<Option<Reaction>, FilterFailure>) -> Self {
        match result {
            Ok(Some(reaction)) => Verdict::Deliver(reaction),
            Ok(None) => Verdict::Skip,
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}
