//! One fan-out: every recipient on the path, its filter (in place, or concurrently under a deadline),
//! its verdict, and its frame; recipients with the same reaction share one serialized frame.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use super::judge::Scene;
use super::lane::{Full, Lanes};
use super::replay::History;
use super::{Job, Work};
use crate::Reaction;
use crate::conn::{Conn, Outbound};
use crate::conns::ConnTable;
use crate::handler::{AnyArc, FilterFailure, Handling, Location};
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
    /// How many async filter calls of one fan-out wait at once.
    pub filter_concurrency: usize,
    /// What filters read as `prepared` when their server file has no `prepare`.
    pub unit: AnyArc,
    lanes: Lanes,
    pub(super) history: History,
    /// The position of the last trigger this node ran on each path someone here is on.
    pub(super) seen: Mutex<HashMap<Arc<str>, Cursor>>,
    /// A connection skipped by its filter is told its position once per this many triggers.
    position_every: u64,
}

/// How a hub's fan-outs run.
pub(crate) struct FanOutSettings {
    /// How long an async filter (or `prepare`) may take.
    pub deadline: Duration,
    /// How many async filter calls of one fan-out wait at once.
    pub filter_concurrency: usize,
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
            filter_concurrency,
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
            filter_concurrency: filter_concurrency.max(1),
            unit: Arc::new(()),
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
            Handling::Filtered(filtered) => {
                let scene = Scene {
                    location: &location,
                    data: &data,
                    sender: sender_peer,
                    here: &here,
                };
                self.judge(filtered, &scene, &recipients, &mut tally).await;
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
    pub(super) fn record(&self, tally: &mut Tally<'_>, conn: &Arc<Conn>, verdict: Verdict) {
        let (route, name) = (tally.entry.route, tally.entry.name);
        let tail = match verdict {
            Verdict::Deliver(reaction) => tally.frame(reaction),
            Verdict::Framed(tail) => tail,
            Verdict::Skip => {
                // A client whose filter skips trigger after trigger still moves on in the history: it is
                // told its position now and then, so that the cursor it resumes from stays covered.
                if let (Some(offset), Some(cursor)) = (tally.offset, tally.cursor)
                    && conn.skipped(tally.location.path(), offset, self.position_every)
                {
                    let frame = cursor_frame(tally.location.path(), cursor);
                    self.conns.push(conn, Outbound::control(frame));
                }
                return;
            }
            Verdict::AlsoFailed => {
                tally.outcome.failed += 1;
                return;
            }
            failed => {
                self.count_failure(&failed);
                tally.outcome.failed += 1;
                match failed {
                    Verdict::Failed(FilterFailure::Error(e)) => {
                        tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, error = %e, "filter failed; recipient skipped");
                    }
                    Verdict::Failed(FilterFailure::Internal(e)) => {
                        tracing::error!(target: "sync_runtime::fanout", route, name, error = e, "internal error; recipient skipped");
                    }
                    Verdict::Overran(deadline) => {
                        tracing::warn!(target: "sync_runtime::fanout", route, name, conn = %conn.id, ?deadline, "filter overran its deadline; recipient skipped");
                    }
                    _ => {
                        tracing::error!(target: "sync_runtime::fanout", route, name, conn = %conn.id, "filter panicked; recipient skipped");
                    }
                }
                return;
            }
        };
        tally.outcome.passed += 1;
        if self.conns.push(conn, Outbound::Reaction(tail)) {
            tally.outcome.delivered += 1;
        }
    }
}

/// A filtered fan-out as it goes: its outcome so far, what every frame of it shares, and the last
/// reaction with its serialized tail.
pub(super) struct Tally<'a> {
    pub outcome: Outcome,
    pub entry: &'a SyncEntry,
    location: &'a Location,
    /// `None` for a [`Work::Live`] broadcast.
    cursor: Option<&'a str>,
    /// The trigger's offset in its path's history.
    offset: Option<u64>,
    last: Option<(Reaction, Arc<str>)>,
}

impl Tally<'_> {
    /// A reaction's serialized frame tail. Recipients whose filters deliver the same reaction one after
    /// another (a team's list, `()`) share one frame: comparing costs less than serializing.
    pub fn frame(&mut self, reaction: Reaction) -> Arc<str> {
        match &self.last {
            Some((previous, tail)) if *previous == reaction => tail.clone(),
            _ => {
                let tail = reaction_tail(
                    self.cursor,
                    self.location.path(),
                    self.location.route(),
                    self.entry.name,
                    &reaction,
                );
                self.last = Some((reaction, tail.clone()));
                tail
            }
        }
    }
}

/// What became of one recipient of a filtered fan-out.
pub(super) enum Verdict {
    Deliver(Reaction),
    /// A class's reaction, serialized once for all its members.
    Framed(Arc<str>),
    Skip,
    Failed(FilterFailure),
    Panicked,
    Overran(Duration),
    /// A member of a class whose filter failed: counted in the outcome, logged and counted by reason
    /// once for the class.
    AlsoFailed,
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

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(super) fn catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}
