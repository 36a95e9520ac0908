//! The connection table: atomic admission per user, resume keys, and parked connections with their
//! bounds. It owns the transitions that touch more than one connection's own state (forgetting takes a
//! connection off its route, out of the resume table and out of its user's count).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::Who;
use crate::conn::{Conn, ConnLimits, Event, Phase, RateLimit};
use crate::handler::ConnectionId;
use crate::presence::Presence;
use crate::roster::View;
use crate::stats::Counters;

/// The table's bounds.
#[derive(Debug, Clone)]
pub(crate) struct TableConfig {
    pub max_per_user: usize,
    pub max_parked: usize,
    pub max_parked_per_user: usize,
    pub grace: Duration,
    pub user_rate: (u32, u32),
}

struct UserEntry {
    /// Connections counted against the cap: live, parked and reserved ones.
    connections: usize,
    limit: Arc<Mutex<RateLimit>>,
}

/// Parked connections, oldest first, for eviction.
#[derive(Default)]
struct Parked {
    order: BTreeMap<u64, Arc<Conn>>,
    by_conn: HashMap<ConnectionId, u64>,
    per_user: HashMap<Arc<str>, usize>,
    next: u64,
}

impl Parked {
    fn insert(&mut self, conn: &Arc<Conn>) {
        if self.by_conn.contains_key(&conn.id) {
            return;
        }
        self.next += 1;
        self.order.insert(self.next, conn.clone());
        self.by_conn.insert(conn.id, self.next);
        *self.per_user.entry(conn.user().clone()).or_default() += 1;
    }

    fn remove(&mut self, conn: &Conn) -> bool {
        let Some(key) = self.by_conn.remove(&conn.id) else {
            return false;
        };
        self.order.remove(&key);
        if let Some(n) = self.per_user.get_mut(conn.user()) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(conn.user());
            }
        }
        true
    }

    /// The oldest parked connection of `user`, or of anyone.
    fn oldest(&self, user: Option<&str>) -> Option<Arc<Conn>> {
        self.order
            .values()
            .find(|c| user.is_none_or(|u| &**c.user() == u))
            .cloned()
    }
}

/// Why admission refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdmitError {
    /// The user holds as many connections as allowed, none of them parked.
    TooMany,
}

/// A slot in a user's count, taken before a connection exists; given back unless it becomes one.
pub(crate) struct Reservation {
    table: Arc<ConnTable>,
    user: Arc<str>,
    used: bool,
}

impl Reservation {
    /// The connection for this slot.
    pub fn into_conn(mut self, who: Who, view: View, token: Option<Arc<str>>) -> Arc<Conn> {
        self.used = true;
        self.table.new_conn(who, view, token)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            self.table.release(&self.user);
        }
    }
}

/// Every connection of a hub that is not gone, by user and by resume key.
pub(crate) struct ConnTable {
    config: TableConfig,
    pub limits: Arc<ConnLimits>,
    presence: Arc<Presence>,
    counters: Arc<Counters>,
    users: Mutex<HashMap<Arc<str>, UserEntry>>,
    /// Every connection that can be resumed (live or parked), by resume key.
    resumable: Mutex<HashMap<Arc<str>, Arc<Conn>>>,
    parked: Mutex<Parked>,
    next_conn: AtomicU64,
}

impl ConnTable {
    pub fn new(
        config: TableConfig,
        limits: Arc<ConnLimits>,
        presence: Arc<Presence>,
        counters: Arc<Counters>,
    ) -> Self {
        ConnTable {
            config,
            limits,
            presence,
            counters,
            users: Mutex::new(HashMap::new()),
            resumable: Mutex::new(HashMap::new()),
            parked: Mutex::new(Parked::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Take a slot for a new connection of `user`: checked and counted under one lock, so racing
    /// requests cannot pass the cap. At the cap, the user's oldest parked connection makes room.
    pub fn reserve(self: &Arc<Self>, user: &Arc<str>) -> Result<Reservation, AdmitError> {
        loop {
            {
                let mut users = self.users.lock().expect("users lock is never poisoned");
                let entry = users.entry(user.clone()).or_insert_with(|| UserEntry {
                    connections: 0,
                    limit: Arc::new(Mutex::new(RateLimit::new(
                        self.config.user_rate.0,
                        self.config.user_rate.1,
                    ))),
                });
                if entry.connections < self.config.max_per_user {
                    entry.connections += 1;
                    return Ok(Reservation {
                        table: self.clone(),
                        user: user.clone(),
                        used: false,
                    });
                }
            }
            let oldest = self
                .parked
                .lock()
                .expect("parked lock is never poisoned")
                .oldest(Some(user));
            match oldest {
                Some(conn) => self.evict(&conn, "the user opened a new connection at the cap"),
                None => return Err(AdmitError::TooMany),
            }
        }
    }

    fn release(&self, user: &Arc<str>) {
        let mut users = self.users.lock().expect("users lock is never poisoned");
        if let Some(entry) = users.get_mut(user) {
            entry.connections -= 1;
            if entry.connections == 0 {
                users.remove(user);
            }
        }
    }

    fn new_conn(&self, who: Who, view: View, token: Option<Arc<str>>) -> Arc<Conn> {
        let id = ConnectionId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let user_limit = self
            .users
            .lock()
            .expect("users lock is never poisoned")
            .get(&who.user)
            .map(|u| u.limit.clone())
            .expect("a reservation keeps its user's entry");
        let conn = Arc::new(Conn::new(
            id,
            who,
            view,
            token,
            user_limit,
            self.limits.clone(),
        ));
        if !self.config.grace.is_zero() {
            self.resumable
                .lock()
                .expect("resumable lock is never poisoned")
                .insert(conn.resume_key.clone(), conn.clone());
        }
        conn
    }

    /// The connection a resume key names, if `who` may resume it: its own user, or a guest for a guest's
    /// connection (a guest has nothing to prove itself with but the key).
    pub fn resumable(&self, key: &str, who: &Who) -> Option<Arc<Conn>> {
        self.resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .get(key)
            .filter(|c| !c.is_closed() && may_act_for(who, &c.who))
            .cloned()
    }

    /// Take a connection back for a new transport. If its old transport is still attached (the server
    /// has not noticed it died, as is usual after a network change), ask it to let go first.
    pub async fn resume(&self, key: &str, who: &Who) -> Option<Arc<Conn>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let conn = self.resumable(key, who)?;
            let generation = conn.generation();
            if conn.transition(Event::Resume).is_some() {
                self.unpark(&conn);
                return Some(conn);
            }
            // Ask the attached transport to let go until it has parked (a new generation), re-asking in
            // case it had not started listening yet.
            loop {
                let parked = conn.parked_signal.notified();
                if conn.generation() != generation || conn.is_closed() {
                    break;
                }
                conn.request_detach();
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), parked).await;
            }
        }
    }

    /// The connection any request with this resume key may act on (an SSE `POST`), live or parked.
    pub fn by_key(&self, key: &str) -> Option<Arc<Conn>> {
        self.resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .get(key)
            .cloned()
    }

    /// Keep a connection whose transport dropped on its route for the grace window, within the bounds on
    /// parked connections (the oldest is forgotten past them).
    pub fn park(self: &Arc<Self>, conn: &Arc<Conn>) {
        if self.config.grace.is_zero() || conn.transition(Event::Drop) != Some(Phase::Parked) {
            self.forget(conn);
            return;
        }
        if conn.overflowed() {
            return self.evict(conn, "it held more than a parked connection may");
        }
        self.parked
            .lock()
            .expect("parked lock is never poisoned")
            .insert(conn);
        self.counters.parked.fetch_add(1, Ordering::AcqRel);
        // One at a time: each eviction changes what the next bound sees.
        loop {
            let victim = {
                let parked = self.parked.lock().expect("parked lock is never poisoned");
                if parked.per_user.get(conn.user()).copied().unwrap_or(0)
                    > self.config.max_parked_per_user
                {
                    parked.oldest(Some(conn.user()))
                } else if parked.order.len() > self.config.max_parked {
                    parked.oldest(None)
                } else {
                    None
                }
            };
            match victim {
                Some(victim) => self.evict(&victim, "too many parked connections"),
                None => break,
            }
        }
        let table = self.clone();
        let conn = conn.clone();
        let generation = conn.generation();
        let grace = self.config.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if conn.phase() == Phase::Parked && conn.generation() == generation {
                tracing::debug!(target: "sync_runtime::conn", conn = %conn.id, "grace window over; connection forgotten");
                table.forget(&conn);
            }
        });
    }

    /// Forget a parked connection before its grace window ends; its client gets `resync` if it returns.
    pub fn evict(&self, conn: &Arc<Conn>, why: &'static str) {
        if conn.phase() == Phase::Parked && self.forget(conn) {
            crate::stats::Counters::bump(&self.counters.parked_evicted);
            tracing::debug!(target: "sync_runtime::conn", conn = %conn.id, why, "parked connection forgotten early");
        }
    }

    /// Close `conn` with `code`: an attached transport sends the close and forgets it; a parked one has
    /// no transport, so it is forgotten here. True the first time.
    pub fn close(&self, conn: &Arc<Conn>, code: u16, reason: &'static str) -> bool {
        match conn.close(code, reason) {
            Some(Phase::Gone) => {
                self.cleanup(conn);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Remove a connection for good: off its route, out of the resume table and its user's count.
    /// True when this call forgot it (not already gone).
    pub fn forget(&self, conn: &Arc<Conn>) -> bool {
        if conn.transition(Event::Forget).is_none() {
            return false;
        }
        self.cleanup(conn);
        true
    }

    fn cleanup(&self, conn: &Arc<Conn>) {
        self.release(conn.user());
        self.resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .remove(&conn.resume_key);
        self.unpark(conn);
        self.presence.remove(conn);
    }

    /// Take `conn` out of the parked set (and its count), if it is in it.
    fn unpark(&self, conn: &Conn) {
        if self
            .parked
            .lock()
            .expect("parked lock is never poisoned")
            .remove(conn)
        {
            self.counters.parked.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Every connection that is not gone (live and parked).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        let mut all: HashMap<ConnectionId, Arc<Conn>> = self
            .resumable
            .lock()
            .expect("resumable lock is never poisoned")
            .values()
            .map(|c| (c.id, c.clone()))
            .collect();
        all.extend(self.presence.all(|_| true).into_iter().map(|c| (c.id, c)));
        all.into_values().collect()
    }

    /// Every connection of `user` that is not gone (live and parked).
    pub fn of_user(&self, user: &str) -> Vec<Arc<Conn>> {
        let mut conns = self.all();
        conns.retain(|c| &**c.user() == user);
        conns
    }
}

/// Whether a request made as `who` may act on a connection that belongs to `owner`.
pub(crate) fn may_act_for(who: &Who, owner: &Who) -> bool {
    who.user == owner.user || (who.guest && owner.guest)
}

impl ConnTable {
    /// Queue a frame for `conn` and deal with what that caused: a slow consumer is counted (its transport
    /// closes it), a parked connection past its bounds is forgotten. True when queued.
    pub fn push(&self, conn: &Arc<Conn>, out: crate::conn::Outbound) -> bool {
        match conn.push(out) {
            crate::conn::Pushed::Queued => true,
            crate::conn::Pushed::Closed => false,
            crate::conn::Pushed::SlowConsumer => {
                Counters::bump(&self.counters.slow_consumers);
                tracing::warn!(target: "sync_runtime::fanout", conn = %conn.id, "outbound queue full; closing as slow consumer");
                false
            }
            crate::conn::Pushed::Overflowed => {
                self.evict(conn, "its queue passed the parked bound");
                false
            }
        }
    }
}
