//! A simulated database for the "filters at scale" phase: what a filter that queries a real database pays
//! per call, without a database server on the benchmark machine.
//!
//! A pool of `connections` (10 by default, sqlx's default maximum) dedicated OS threads takes requests from
//! one bounded queue. A call waits, in its worker, a fixed time (`std::thread::sleep`: Tokio's timer ticks
//! in milliseconds and cannot wait 50 µs), answers through a `tokio::sync::oneshot`, and the caller then
//! spends a small fixed CPU cost (hashing a row, calibrated once when the pool starts), as decoding a
//! row would. Waiting happens off the async runtime, so a filter awaiting a call leaves the runtime's
//! threads free, as a real driver's socket wait does; the CPU cost lands on the runtime, as decoding does.
//!
//! Every call is counted with its wall time as the caller sees it (queueing for a connection included)
//! and the time its worker spent on it (the query alone), so the harness can print calls per trigger and
//! the mean call latency ([`Db::stats`]).
//!
//! The workers set their timer slack to 1 µs: with Linux's default 50 µs a 50 µs sleep took ~115 µs on
//! the benchmark VM (~65 µs with it, the rest is the wake-up).
//!
//! Rejected: a Tokio task per connection (its 1 ms timer would make every call ~1 ms); spinning for the
//! wait (it would burn one of the machine's two cores and measure the spin, not the filter).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// Teams in the simulated database: user `n` is on team `n % TEAMS`.
pub const TEAMS: u64 = 10;

/// How the simulated database behaves.
///
/// ```
/// use std::time::Duration;
/// use sync_bench::DbConfig;
///
/// let config = DbConfig::default();
/// assert_eq!(config.connections, 10);
/// assert_eq!(config.wait, Duration::from_micros(50));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbConfig {
    /// Worker threads, each one "connection" serving one call at a time. Default: 10 (sqlx's default
    /// pool maximum). At least 1 is used.
    pub connections: usize,
    /// What a call waits in its worker, the query's round trip. Default: 50 µs (the workers set their
    /// timer slack to 1 µs; a sleep still overshoots by its wake-up, ~20 µs on an idle 2-core VM).
    pub wait: Duration,
    /// The caller's CPU cost per call, decoding the answer. Default: 2 µs.
    pub cpu: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            connections: 10,
            wait: Duration::from_micros(50),
            cpu: Duration::from_micros(2),
        }
    }
}

/// Why a call got no answer: the pool's workers are gone. A filter returning it skips its recipient
/// (and the benchmark then fails loudly: every publish must reach everyone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbError {
    /// The pool was shut down, or a worker stopped before answering.
    Closed,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Closed => f.write_str("db_closed: the simulated database's pool is gone"),
        }
    }
}

impl std::error::Error for DbError {}

/// Calls so far and their summed times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Calls answered.
    pub calls: u64,
    /// Their wall time summed, as callers saw it: from the call to its decoded answer, waiting for a
    /// free connection included.
    pub total: Duration,
    /// The workers' time on them summed: the queries alone (the wait and the wake-up), no queueing.
    pub queries: Duration,
}

impl DbStats {
    /// The line a benchmark server prints when the harness asks (`db` on its stdin):
    /// `db <calls> <total_call_us> <total_query_us>`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sync_bench::DbStats;
    ///
    /// let stats = DbStats {
    ///     calls: 3,
    ///     total: Duration::from_micros(900),
    ///     queries: Duration::from_micros(150),
    /// };
    /// assert_eq!(stats.line(), "db 3 900 150");
    /// assert_eq!(DbStats::parse_line(&stats.line()), Some(stats));
    /// ```
    pub fn line(&self) -> String {
        format!(
            "db {} {} {}",
            self.calls,
            self.total.as_micros(),
            self.queries.as_micros()
        )
    }

    /// Read a [`line`](Self::line) back; `None` if it is not one.
    pub fn parse_line(line: &str) -> Option<DbStats> {
        let mut words = line.split_whitespace();
        if words.next()? != "db" {
            return None;
        }
        let calls = words.next()?.parse().ok()?;
        let total = Duration::from_micros(words.next()?.parse().ok()?);
        let queries = Duration::from_micros(words.next()?.parse().ok()?);
        words.next().is_none().then_some(DbStats {
            calls,
            total,
            queries,
        })
    }

    /// The calls between `earlier` and `self`.
    pub fn since(&self, earlier: DbStats) -> DbStats {
        DbStats {
            calls: self.calls.saturating_sub(earlier.calls),
            total: self.total.saturating_sub(earlier.total),
            queries: self.queries.saturating_sub(earlier.queries),
        }
    }

    /// Add another server's calls (a two-node run).
    pub fn plus(&self, other: DbStats) -> DbStats {
        DbStats {
            calls: self.calls + other.calls,
            total: self.total + other.total,
            queries: self.queries + other.queries,
        }
    }

    /// Mean wall time per call, as callers saw it; zero without calls.
    pub fn mean(&self) -> Duration {
        self.per_call(self.total)
    }

    /// Mean worker time per call (the query alone); zero without calls.
    pub fn mean_query(&self) -> Duration {
        self.per_call(self.queries)
    }

    fn per_call(&self, sum: Duration) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(sum.as_secs_f64() / self.calls as f64)
    }
}

/// The whole membership table, loaded by one call ([`Db::teams`]): a trigger's one query instead of one
/// per recipient.
#[derive(Debug)]
pub struct Teams {
    names: HashMap<u64, String>,
}

impl Teams {
    /// The team of `user`, answered from memory.
    pub fn team_of(&self, user: u64) -> u64 {
        user % TEAMS
    }

    /// A team's name, if the team exists.
    pub fn name(&self, team: u64) -> Option<&str> {
        self.names.get(&team).map(String::as_str)
    }

    /// How many teams there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none (never, in this database).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A query a worker answers after its wait.
type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    requests: mpsc::Sender<Job>,
    /// Hash rounds that take about `DbConfig::cpu`, measured when the pool started.
    rounds: u32,
    calls: AtomicU64,
    total_ns: AtomicU64,
    /// Shared with the workers, which must not hold the pool (its sender would keep them alive).
    query_ns: Arc<AtomicU64>,
}

/// A handle on the simulated database's pool (cheap to clone); the workers stop when the last handle goes.
///
/// ```
/// use sync_bench::{Db, DbConfig};
///
/// let db = Db::new(DbConfig::default());
/// let runtime = tokio::runtime::Runtime::new().expect("a runtime");
/// let team = runtime.block_on(db.team_of(13)).expect("the pool is up");
/// assert_eq!(team, 3);
/// assert_eq!(db.stats().calls, 1);
/// ```
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("rounds", &self.pool.rounds)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Db {
    /// Start the pool: calibrate the CPU cost, then spawn `config.connections` worker threads sharing one
    /// queue of as many requests (a caller finding it full waits, asynchronously, for room). Needs no
    /// async runtime.
    pub fn new(config: DbConfig) -> Db {
        let connections = config.connections.max(1);
        let (requests, queue) = mpsc::channel::<Job>(connections);
        // One queue, many workers: the worker holding the lock waits for the next request, the others
        // for the lock. A queue per worker would let one slow call hold up the calls behind it while
        // other connections idle.
        let queue = Arc::new(Mutex::new(queue));
        let query_ns = Arc::new(AtomicU64::new(0));
        for i in 0..connections {
            let (queue, query_ns) = (queue.clone(), query_ns.clone());
            let wait = config.wait;
            std::thread::Builder::new()
                .name(format!("bench-db-{i}"))
                .spawn(move || {
                    tight_timer_slack();
                    loop {
                        let job = queue
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .blocking_recv();
                        let Some(job) = job else { break };
                        let began = Instant::now();
                        std::thread::sleep(wait);
                        // Counted before answering, so a caller holding its answer sees its query counted.
                        query_ns.fetch_add(nanos(began.elapsed()), Ordering::Relaxed);
                        job();
                    }
                })
                .expect("a thread for a simulated database connection");
        }
        Db {
            pool: Arc::new(Pool {
                requests,
                rounds: calibrate(config.cpu),
                calls: AtomicU64::new(0),
                total_ns: AtomicU64::new(0),
                query_ns,
            }),
        }
    }

    /// The team of `user` (`user % TEAMS`): one call, as a filter asking per recipient makes.
    pub async fn team_of(&self, user: u64) -> Result<u64, DbError> {
        self.call(user, move || user % TEAMS).await
    }

    /// The whole membership table in one call, as a once-per-trigger step makes.
    pub async fn teams(&self) -> Result<Arc<Teams>, DbError> {
        self.call(TEAMS, || {
            Arc::new(Teams {
                names: (0..TEAMS).map(|t| (t, format!("team {t}"))).collect(),
            })
        })
        .await
    }

    /// Calls answered so far and their summed wall time.
    pub fn stats(&self) -> DbStats {
        DbStats {
            calls: self.pool.calls.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.pool.total_ns.load(Ordering::Relaxed)),
            queries: Duration::from_nanos(self.pool.query_ns.load(Ordering::Relaxed)),
        }
    }

    /// Queue `answer` for a worker, await it, then decode the "row" (`key` seeds the hashing).
    async fn call<T: Send + 'static>(
        &self,
        key: u64,
        answer: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DbError> {
        let began = Instant::now();
        let (reply, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may be gone (its filter overran its deadline): nobody to answer.
            let _ = reply.send(answer());
        });
        self.pool
            .requests
            .send(job)
            .await
            .map_err(|_| DbError::Closed)?;
        let value = answered.await.map_err(|_| DbError::Closed)?;
        black_box(row_work(self.pool.rounds, key));
        self.pool.calls.fetch_add(1, Ordering::Relaxed);
        self.pool
            .total_ns
            .fetch_add(nanos(began.elapsed()), Ordering::Relaxed);
        Ok(value)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Let this thread's sleeps overshoot by at most 1 µs instead of Linux's default 50 µs timer slack,
/// which would double every call's wait. Best effort, through `/proc` (no `unsafe` `prctl`): where it
/// fails (not Linux), calls wait longer, and the measured latency the harness prints says so.
fn tight_timer_slack() {
    // `/proc/thread-self` links to `<pid>/task/<tid>`; `/proc/<tid>/timerslack_ns` is this thread's.
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    if let Some(tid) = link.file_name().and_then(|t| t.to_str()) {
        let _ = std::fs::write(format!("/proc/{tid}/timerslack_ns"), "1000");
    }
}

/// Deterministic CPU work: hash a 64-byte row `rounds` times, each round over the last one's result.
fn row_work(rounds: u32, key: u64) -> u64 {
    let mut row = [0u8; 64];
    let mut h = key;
    for _ in 0..rounds {
        row[..8].copy_from_slice(&h.to_le_bytes());
        let mut hasher = DefaultHasher::new();
        black_box(&row).hash(&mut hasher);
        h = hasher.finish();
    }
    h
}

/// The rounds of [`row_work`] that take about `target`: the fastest of three timed probes (the others
/// were interrupted), at least 1.
fn calibrate(target: Duration) -> u32 {
    const PROBE: u32 = 2_000;
    let fastest = (0..3)
        .map(|_| {
            let began = Instant::now();
            black_box(row_work(black_box(PROBE), 1));
            began.elapsed()
        })
        .min()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_nanos(1));
    let per_round = fastest.as_secs_f64() / f64::from(PROBE);
    let rounds = (target.as_secs_f64() / per_round).round();
    (rounds as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> DbConfig {
        DbConfig {
            connections: 2,
            wait: Duration::from_micros(50),
            cpu: Duration::from_micros(2),
        }
    }

    #[tokio::test]
    async fn answers_and_counts_every_call() {
        let db = Db::new(quick());
        assert_eq!(db.team_of(27).await, Ok(7));
        let teams = db.teams().await.expect("the pool is up");
        assert_eq!(teams.len(), TEAMS as usize);
        assert_eq!(teams.team_of(27), 7);
        assert_eq!(teams.name(7), Some("team 7"));
        let stats = db.stats();
        assert_eq!(stats.calls, 2);
        // Each call waited in its worker at least the configured time, and its caller at least as long.
        assert!(stats.queries >= 2 * quick().wait, "{stats:?}");
        assert!(stats.total >= stats.queries, "{stats:?}");
    }

    #[tokio::test]
    async fn more_callers_than_connections_all_get_answers() {
        // 2 connections, a queue of 2: 200 concurrent callers wait for room and are all answered.
        let db = Db::new(quick());
        let calls = (0..200u64).map(|u| {
            let db = db.clone();
            async move { db.team_of(u).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        for (u, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer, Ok(u as u64 % TEAMS));
        }
        assert_eq!(db.stats().calls, 200);
    }

    #[test]
    fn calibration_finds_some_work() {
        assert!(calibrate(Duration::from_micros(2)) >= 1);
        // Longer targets take more rounds (ten times the target: well clear of timer noise).
        assert!(calibrate(Duration::from_micros(200)) > calibrate(Duration::from_micros(2)));
        assert_ne!(row_work(3, 1), row_work(3, 2));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn workers_sleep_with_a_tight_timer_slack() {
        std::thread::spawn(|| {
            tight_timer_slack();
            let link =
                std::fs::read_link("/proc/thread-self").expect("Linux has /proc/thread-self");
            let tid = link.file_name().and_then(|t| t.to_str()).expect("a tid");
            let slack = std::fs::read_to_string(format!("/proc/{tid}/timerslack_ns"))
                .expect("the thread's timer slack");
            assert_eq!(slack.trim(), "1000");
        })
        .join()
        .expect("the slack is set");
    }

    #[test]
    fn stats_lines_round_trip_and_subtract() {
        let a = DbStats {
            calls: 10,
            total: Duration::from_micros(700),
            queries: Duration::from_micros(500),
        };
        let b = DbStats {
            calls: 30,
            total: Duration::from_micros(2_700),
            queries: Duration::from_micros(1_500),
        };
        assert_eq!(DbStats::parse_line(&b.line()), Some(b));
        assert_eq!(DbStats::parse_line("db 1 2"), None);
        assert_eq!(DbStats::parse_line("db 1 2 3 4"), None);
        assert_eq!(DbStats::parse_line("8080"), None);
        let run = b.since(a);
        assert_eq!(run.calls, 20);
        assert_eq!(run.mean(), Duration::from_micros(100));
        assert_eq!(run.mean_query(), Duration::from_micros(50));
        assert_eq!(a.plus(run), b);
        assert_eq!(DbStats::default().mean(), Duration::ZERO);
    }
}
