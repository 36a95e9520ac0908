//! Lanes: the triggers of one concrete path run one after another, in the order they were accepted;
//! different paths run concurrently.
//!
//! A lane is a bounded queue plus a flag saying a task is running it, both under the one lock every
//! submitter takes. A runner that finds its queue empty lingers for `idle`, then removes the lane under
//! that lock; a submitter that finds no lane (or one whose runner has left) starts a new runner. So at
//! most one runner per path exists at any time, and no job can be left behind in a lane that is going
//! away. (The previous design, a channel per path whose task closed it on idle, let a job slip in between
//! the idle check and the close and run concurrently with the next lane's jobs: out of order.)

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Work;

struct Lane {
    jobs: VecDeque<Work>,
    /// Wakes a lingering runner when a job arrives.
    arrived: Arc<Notify>,
}

/// Every path's lane.
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<Arc<str>, Lane>>,
    capacity: usize,
    idle: Duration,
    /// Wakes submitters waiting for room in a full lane.
    room: Notify,
}

/// A job handed back because its lane is full.
pub(crate) struct Full(pub Work);

impl Lanes {
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Lanes {
            lanes: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            idle,
            room: Notify::new(),
        }
    }

    /// Every lane's path and the jobs waiting on it (the one running not counted).
    pub fn backlog(&self) -> Vec<(Arc<str>, usize)> {
        let lanes = self.lanes.lock().expect("lanes lock is never poisoned");
        lanes
            .iter()
            .map(|(path, lane)| (path.clone(), lane.jobs.len()))
            .collect()
    }

    /// Queue `job` on its path's lane without waiting. `Ok(true)` when no runner serves the lane: the
    /// caller must start one with [`run`](Self::run).
    // The error hands the caller's own job back (a move, not a copy to the heap): boxing it would cost an
    // allocation per trigger to save one on the rare full lane.
    #[allow(clippy::result_large_err)]
    pub fn try_submit(&self, job: Work) -> Result<bool, Full> {
        let mut lanes = self.lanes.lock().expect("lanes lock is never poisoned");
        let path = job.path();
        if let Some(lane) = lanes.get_mut(path) {
            if lane.jobs.len() >= self.capacity {
                return Err(Full(job));
            }
            lane.jobs.push_back(job);
            lane.arrived.notify_one();
            return Ok(false);
        }
        let path = path.clone();
        lanes.insert(
            path,
            Lane {
                jobs: VecDeque::from([job]),
                arrived: Arc::new(Notify::new()),
            },
        );
        Ok(true)
    }

    /// Queue `job`, waiting for room while its lane is full; `true` when a runner must be started.
    pub async fn submit(&self, mut job: Work) -> bool {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_submit(job) {
                Ok(start) => return start,
                Err(Full(back)) => job = back,
            }
            // Woken when a job leaves any full lane; the timeout only guards against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(100), room).await;
        }
    }

    /// Run `path`'s lane until it has been empty for `idle`, calling `fan_out` for each job in order.
    pub async fn run<F, Fut>(&self, path: Arc<str>, mut fan_out: F)
    where
        F: FnMut(Work) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let next = {
                let mut lanes = self.lanes.lock().expect("lanes lock is never poisoned");
                let lane = lanes
                    .get_mut(&path)
                    .expect("a lane exists while its runner runs");
                let was_full = lane.jobs.len() >= self.capacity;
                match lane.jobs.pop_front() {
                    Some(job) => {
                        if was_full {
                            self.room.notify_waiters();
                        }
                        Ok(job)
                    }
                    None => Err(lane.arrived.clone()),
                }
            };
            match next {
                Ok(job) => fan_out(job).await,
                Err(arrived) => {
                    // `notify_one` keeps a permit for a job that arrived since the lock was let go.
                    let _ = tokio::time::timeout(self.idle, arrived.notified()).await;
                    let mut lanes = self.lanes.lock().expect("lanes lock is never poisoned");
                    if lanes.get(&path).is_some_and(|lane| lane.jobs.is_empty()) {
                        lanes.remove(&path);
                        return;
                    }
                }
            }
        }
    }
}
