//! A server file's steps in one fan-out: `prepare` once, `class` per recipient, the filter per recipient
//! or per class; synchronous filters in place, asynchronous ones a bounded number at a time, each under
//! the deadline, and none queued at all when it completes at once.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::run::{FanOut, Tally, Verdict, catch};
use crate::conn::Conn;
use crate::handler::{
    AnyArc, Call, ErasedAsyncFilter, ErasedInlineFilter, ErasedPeer, FilterFailure, Filtered,
    Judge, Location, PrepareCall,
};
use crate::roster::Here;

/// What every filter call of one fan-out shares.
pub(super) struct Scene<'a> {
    pub location: &'a Location,
    pub data: &'a AnyArc,
    pub sender: Option<&'a ErasedPeer>,
    pub here: &'a Here,
}

/// Fan-out work done in place between two yields to the other lanes.
const YIELD_EVERY: usize = 1024;

impl FanOut {
    /// Run a server file's steps over `recipients` and record each recipient's verdict in `tally`.
    pub(super) async fn judge(
        &self,
        filtered: &Filtered,
        scene: &Scene<'_>,
        recipients: &[Arc<Conn>],
        tally: &mut Tally<'_>,
    ) {
        let prepared = match &filtered.prepare {
            None => self.unit.clone(),
            Some(prepare) => {
                let work = prepare(&PrepareCall {
                    data: scene.data,
                    sender: scene.sender,
                    functions: &self.functions,
                    here: scene.here,
                });
                let deadline = self.deadline;
                let result =
                    tokio::time::timeout(deadline, AssertUnwindSafe(work).catch_unwind()).await;
                match result {
                    Ok(Ok(Ok(prepared))) => prepared,
                    failed => {
                        let verdict = match failed {
                            Ok(Ok(Err(failure))) => Verdict::Failed(failure),
                            Ok(Err(_panic)) => Verdict::Panicked,
                            _ => Verdict::Overran(deadline),
                        };
                        self.prepare_failed(tally, recipients, verdict);
                        return;
                    }
                }
            }
        };
        let calls = Calls {
            scene,
            functions: &self.functions,
            prepared: &prepared,
        };
        match &filtered.classes {
            None => self.each(&filtered.judge, &calls, recipients, tally).await,
            Some(classes) => {
                self.by_class(&filtered.judge, classes(), &calls, recipients, tally)
                    .await
            }
        }
    }

    /// `prepare` failed: every recipient is skipped; the failure is counted and logged once.
    fn prepare_failed(&self, tally: &mut Tally<'_>, recipients: &[Arc<Conn>], verdict: Verdict) {
        let (route, name) = (tally.entry.route, tally.entry.name);
        match &verdict {
            Verdict::Failed(FilterFailure::Error(e)) => {
                tracing::warn!(target: "sync_runtime::fanout", route, name, error = %e, recipients = recipients.len(), "prepare failed; every recipient skipped");
            }
            _ => {
                tracing::error!(target: "sync_runtime::fanout", route, name, recipients = recipients.len(), "prepare panicked, overran its deadline or hit an internal error; every recipient skipped");
            }
        }
        self.count_failure(&verdict);
        tally.outcome.failed += super::run::count(recipients.len());
    }

    /// The filter once per recipient.
    async fn each(
        &self,
        judge: &Judge,
        calls: &Calls<'_>,
        recipients: &[Arc<Conn>],
        tally: &mut Tally<'_>,
    ) {
        match judge {
            Judge::Inline(filter) => {
                for (i, conn) in recipients.iter().enumerate() {
                    let peer = conn.peer(calls.scene.location.clone());
                    self.record(tally, conn, inline(filter, &calls.call(&peer)));
                    if i % YIELD_EVERY == YIELD_EVERY - 1 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            Judge::Async(filter) => {
                let peers = recipients
                    .iter()
                    .map(|conn| conn.peer(calls.scene.location.clone()));
                self.run_async(filter, calls, peers, |i, verdict| {
                    self.record(tally, &recipients[i], verdict)
                })
                .await;
            }
        }
    }

    /// The filter once per class: its verdict, reaction and frame shared by the class's members.
    async fn by_class(
        &self,
        judge: &Judge,
        mut classify: crate::handler::Classifier,
        calls: &Calls<'_>,
        recipients: &[Arc<Conn>],
        tally: &mut Tally<'_>,
    ) {
        // Each recipient's class (`None`: its `class` panicked), and each class's first member's peer.
        let mut class_of = Vec::with_capacity(recipients.len());
        let mut firsts: Vec<ErasedPeer> = Vec::new();
        for (i, conn) in recipients.iter().enumerate() {
            let peer = conn.peer(calls.scene.location.clone());
            let class = catch(|| classify(&calls.call(&peer)));
            let class = match class {
                Some(Some(k)) => {
                    if k == firsts.len() {
                        firsts.push(peer);
                    }
                    Some(k)
                }
                Some(None) => {
                    self.record(
                        tally,
                        conn,
                        Verdict::Failed(FilterFailure::Internal("type mismatch")),
                    );
                    None
                }
                None => {
                    tracing::error!(target: "sync_runtime::fanout", route = tally.entry.route, name = tally.entry.name, conn = %conn.id, "class panicked; recipient skipped");
                    self.record(tally, conn, Verdict::Panicked);
                    None
                }
            };
            class_of.push(class);
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        let mut verdicts: Vec<Option<Verdict>> =
            std::iter::repeat_with(|| None).take(firsts.len()).collect();
        match judge {
            Judge::Inline(filter) => {
                for (k, peer) in firsts.into_iter().enumerate() {
                    verdicts[k] = Some(inline(filter, &calls.call(&peer)));
                }
            }
            Judge::Async(filter) => {
                self.run_async(filter, calls, firsts.into_iter(), |k, verdict| {
                    verdicts[k] = Some(verdict);
                })
                .await;
            }
        }
        // Each class's reaction serialized once; its first member gets the verdict as it came (logged if
        // it failed), the others a copy.
        let mut copies: Vec<Verdict> = Vec::with_capacity(verdicts.len());
        for verdict in &mut verdicts {
            let framed = match verdict.take() {
                Some(Verdict::Deliver(reaction)) => Verdict::Framed(tally.frame(reaction)),
                Some(other) => other,
                None => Verdict::Failed(FilterFailure::Internal("no verdict")),
            };
            copies.push(framed.member());
            *verdict = Some(framed);
        }
        for (i, (conn, class)) in recipients.iter().zip(class_of).enumerate() {
            let Some(k) = class else { continue };
            let verdict = verdicts[k].take().unwrap_or_else(|| copies[k].member());
            self.record(tally, conn, verdict);
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Run an async filter for each of `peers` (numbered in order), at most `filter_concurrency` waiting
    /// at once, each under the deadline; `done` gets each number's verdict as it comes. A call is polled
    /// once in place first: one that completes at once never waits in the set, nor has a timer.
    async fn run_async(
        &self,
        filter: &ErasedAsyncFilter,
        calls: &Calls<'_>,
        peers: impl Iterator<Item = ErasedPeer>,
        mut done: impl FnMut(usize, Verdict),
    ) {
        let deadline = self.deadline;
        let mut waiting = FuturesUnordered::new();
        for (i, peer) in peers.enumerate() {
            if waiting.len() >= self.filter_concurrency
                && let Some((j, verdict)) = waiting.next().await
            {
                done(j, verdict);
            }
            let mut work = AssertUnwindSafe(filter(&calls.call(&peer))).catch_unwind();
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut work).poll(cx))).await;
            match first {
                Poll::Ready(result) => {
                    done(i, settled(Ok(result), deadline));
                    if i % YIELD_EVERY == YIELD_EVERY - 1 {
                        tokio::task::yield_now().await;
                    }
                }
                Poll::Pending => {
                    let until = tokio::time::Instant::now() + deadline;
                    waiting.push(async move {
                        (
                            i,
                            settled(tokio::time::timeout_at(until, work).await, deadline),
                        )
                    });
                }
            }
        }
        while let Some((j, verdict)) = waiting.next().await {
            done(j, verdict);
        }
    }

    /// Count a failed filter (or `prepare`) call by its reason.
    pub(super) fn count_failure(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Failed(_) => &self.counters.filter_errors,
            Verdict::Panicked => &self.counters.filter_panics,
            Verdict::Overran(_) => &self.counters.filter_timeouts,
            _ => return,
        };
        crate::stats::Counters::bump(counter);
    }
}

/// A synchronous filter's verdict, called in place (a panic skips only its recipient).
fn inline(filter: &ErasedInlineFilter, call: &Call<'_>) -> Verdict {
    match catch(|| filter(call)) {
        Some(result) => Verdict::from(result),
        None => Verdict::Panicked,
    }
}

type Caught = std::thread::Result<Result<Option<crate::Reaction>, FilterFailure>>;

/// An async filter call's verdict from how it ended.
fn settled(result: Result<Caught, tokio::time::error::Elapsed>, deadline: Duration) -> Verdict {
    match result {
        Ok(Ok(result)) => Verdict::from(result),
        Ok(Err(_panic)) => Verdict::Panicked,
        Err(_elapsed) => Verdict::Overran(deadline),
    }
}

/// What makes a [`Call`] for a recipient in this fan-out.
struct Calls<'a> {
    scene: &'a Scene<'a>,
    functions: &'a AnyArc,
    prepared: &'a AnyArc,
}

impl Calls<'_> {
    fn call<'b>(&'b self, recipient: &'b ErasedPeer) -> Call<'b> {
        Call {
            data: self.scene.data,
            recipient,
            sender: self.scene.sender,
            functions: self.functions,
            here: self.scene.here,
            prepared: self.prepared,
        }
    }
}

impl Verdict {
    /// What another member of a class gets from its class's verdict (already framed): the same frame,
    /// or the same skip; a failure counts against every member, but is logged and counted by reason once
    /// per class.
    fn member(&self) -> Verdict {
        match self {
            Verdict::Framed(frame) => Verdict::Framed(frame.clone()),
            Verdict::Skip => Verdict::Skip,
            Verdict::Deliver(_)
            | Verdict::Failed(_)
            | Verdict::Panicked
            | Verdict::Overran(_)
            | Verdict::AlsoFailed => Verdict::AlsoFailed,
        }
    }
}
