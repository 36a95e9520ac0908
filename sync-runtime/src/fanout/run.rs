//! One fan-out: every recipient on the path, its filter (in place, or concurrently under a deadline),
//! its verdict, and its frame; recipients with the same reaction share one serialized frame.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::Job;
use super::lane::{Full, Lanes};
use crate::Reaction;
use crate::conn::{Conn, Outbound};
use crate::conns::ConnTable;
use crate::handler::{AnyArc, Call, FilterFailure, Handling, Location};
use crate::presence::Presence;
use crate::protocol::Outcome;
use crate::protocol::server::reaction_tail;
use crate::registry::SyncEntry;
use crate::roster::Here;
use crate::stats::Counters;

/// The fan-out engine of a hub: its lanes and what a fan-out reads.
pub(crate) struct FanOut {
    pub presence: Arc<Presence>,
    pub conns: Arc<ConnTable>,
    pub counters: Arc<Counters>,
    pub functions: AnyArc,
    pub deadline: Duration,
    lanes: Lanes,
}

impl FanOut {
    pub fn new(
        presence: Arc<Presence>,
        conns: Arc<ConnTable>,
        counters: Arc<Counters>,
        functions: AnyArc,
        deadline: Duration,
        lane_queue: usize,
        lane_idle: Duration,
    ) -> Self {
        FanOut {
            presence,
            conns,
            counters,
            functions,
            deadline,
            lanes: Lanes::new(lane_queue, lane_idle),
        }
    }

    /// Queue a job on its lane without waiting; the job back when the lane is full.
    #[allow(clippy::result_large_err)] // the caller's own job, handed back (see `Lanes::try_submit`)
    pub fn try_submit(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        let path = job.location.path_arc().clone();
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

    /// Queue a job, waiting for room (client requests: backpressure reaches the sending connection).
    pub async fn submit(self: &Arc<Self>, job: Job) {
        let path = job.location.path_arc().clone();
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

    /// Run one trigger: every recipient on the path, in this lane's order.
    pub async fn run(&self, job: Job) {
        let Job {
            entry,
            location,
            data,
            sender,
            reply,
        } = job;
        Counters::bump(&self.counters.fanouts);
        let skip = sender
            .as_ref()
            .filter(|s| !s.echo)
            .and_then(|s| s.conn.as_ref())
            .map(|c| c.id);
        let mut recipients = self.presence.recipients(location.path());
        recipients.retain(|c| Some(c.id) != skip);
        let mut outcome = Outcome {
            matched: count(recipients.len()),
            ..Outcome::default()
        };
        if recipients.is_empty() {
            reply.send(&self.conns, Ok(outcome));
            return;
        }
        let route = entry.route;
        let sender_peer = sender.as_ref().map(|s| &s.peer);
        let here = Here::new(self.presence.roster().clone(), location.path_arc().clone());
        match &entry.sync.0.handling {
            Handling::Shared(react) => {
                // Same reaction for everyone: computed and serialized once.
                let Some(reaction) = catch(|| react(&data, sender_peer)).flatten() else {
                    Counters::bump(&self.counters.filter_panics);
                    tracing::error!(target: "sync_runtime::fanout", route, name = entry.name, "client reaction panicked");
                    outcome.failed = outcome.matched;
                    reply.send(&self.conns, Ok(outcome));
                    return;
                };
                let tail = reaction_tail(location.path(), location.route(), entry.name, &reaction);
                outcome.passed = outcome.matched;
                for conn in &recipients {
                    if self.conns.push(conn, Outbound::Reaction(tail.clone())) {
                        outcome.delivered += 1;
                    }
                }
            }
            Handling::Inline(filter) => {
                // A synchronous filter runs in place: no future, box or task per recipient. It cannot
                // overrun a deadline that nothing could enforce anyway; a panic still skips only its
                // recipient.
                let mut last = None;
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
                    self.record(&mut outcome, &entry, &location, conn, verdict, &mut last);
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
                let mut last = None;
                while let Some((conn, result)) = running.next().await {
                    let verdict = match result {
                        Ok(Ok(result)) => Verdict::from(result),
                        Ok(Err(_panic)) => Verdict::Panicked,
                        Err(_elapsed) => Verdict::Overran(deadline),
                    };
                    self.record(&mut outcome, &entry, &location, conn, verdict, &mut last);
                }
            }
        }
        self.counters
            .delivered
            .fetch_add(u64::from(outcome.delivered), Ordering::Relaxed);
        reply.send(&self.conns, Ok(outcome));
    }

    /// Queue a recipient's reaction, or count and log why it got none.
    ///
    /// `last` remembers the previous recipient's reaction and its serialized frame: recipients whose
    /// filters deliver the same (a team's list, `()`) share one frame, and comparing costs less than
    /// serializing.
    fn record(
        &self,
        outcome: &mut Outcome,
        entry: &SyncEntry,
        location: &Location,
        conn: &Arc<Conn>,
        verdict: Verdict,
        last: &mut Option<(Reaction, Arc<str>)>,
    ) {
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
                        let tail =
                            reaction_tail(location.path(), location.route(), name, &reaction);
                        *last = Some((reaction, tail.clone()));
                        tail
                    }
                };
                if self.conns.push(conn, Outbound::Reaction(tail)) {
                    outcome.delivered += 1;
                }
            }
            Verdict::Skip => {}
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
