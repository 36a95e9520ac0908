//! Who is on which concrete path: the index a fan-out reads its recipients from. A connection is moved in
//! one step under one lock, so a fan-out sees it in exactly one place; the user-level [`Roster`] changes
//! under the same lock, so the list of users always agrees with the connections.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::conn::Conn;
use crate::handler::{ConnectionId, Location};
use crate::roster::Roster;

/// Everyone on one concrete path.
struct Bucket {
    location: Location,
    conns: HashMap<ConnectionId, Arc<Conn>>,
}

/// Told when a path gets its first connection here (`true`) and loses its last (`false`), under the
/// index's lock, so the calls for one path come in order: the broker follows the paths in use.
pub(crate) type Watch = Box<dyn Fn(&Arc<str>, bool) + Send + Sync>;

/// Path -> connections.
pub(crate) struct Presence {
    paths: RwLock<HashMap<Arc<str>, Bucket>>,
    roster: Arc<Roster>,
    watch: std::sync::OnceLock<Watch>,
    /// A path whose connections are on no user list and whose channel no node follows (the admin page's).
    hidden: std::sync::OnceLock<Arc<str>>,
}

impl Presence {
    pub fn new(roster: Arc<Roster>) -> Self {
        Presence {
            paths: RwLock::default(),
            roster,
            watch: std::sync::OnceLock::new(),
            hidden: std::sync::OnceLock::new(),
        }
    }

    /// Keep the connections on `path` off the user lists, and the path off the backplane (set once).
    pub fn hide(&self, path: Arc<str>) {
        let _ = self.hidden.set(path);
    }

    /// Whether the users on `path` are listed (the roster knows them).
    fn listed(&self, path: &str) -> bool {
        self.hidden.get().is_none_or(|hidden| **hidden != *path)
    }

    /// Tell `watch` about the paths in use from now on.
    pub fn set_watch(&self, watch: Watch) {
        let _ = self.watch.set(watch);
    }

    fn watch(&self, path: &Arc<str>, used: bool) {
        // A hidden path is this node's own (the admin page's snapshots never cross nodes): no channel.
        if !self.listed(path) {
            return;
        }
        if let Some(watch) = self.watch.get() {
            watch(path, used);
        }
    }

    /// Move `conn` to `path`; `locate` gives the location of a path nobody is on yet. The connection's
    /// own record of its location changes under the same lock.
    pub fn place(
        &self,
        conn: &Arc<Conn>,
        path: Arc<str>,
        locate: impl FnOnce(Arc<str>) -> Location,
    ) -> Location {
        let mut paths = self.paths.write().expect("presence lock is never poisoned");
        if !paths.contains_key(&path) {
            self.watch(&path, true);
        }
        let bucket = paths.entry(path.clone()).or_insert_with(|| Bucket {
            location: locate(path),
            conns: HashMap::new(),
        });
        bucket.conns.insert(conn.id, conn.clone());
        let location = bucket.location.clone();
        let old = conn.swap_location(Some(location.clone()));
        let moved = old.as_ref().is_none_or(|old| old.path() != location.path());
        if let Some(old) = old.filter(|_| moved) {
            self.leave(&mut paths, conn, &old);
            if self.listed(old.path()) {
                self.roster.leave(old.path_arc(), conn.user());
            }
        }
        if moved && self.listed(location.path()) {
            let view = conn.credentials().view;
            self.roster.join(location.path_arc(), conn.user(), &view);
            // Its client starts this path's list afresh (it clears it on a `located` elsewhere). A `nav`
            // to where it already is changes nothing: resending the list would let a client make the
            // server send 5 KB (a list of 100) per 50-byte message.
            conn.set_listed(None);
            self.roster.want(location.path_arc());
        }
        location
    }

    /// Take `conn` off its path.
    pub fn remove(&self, conn: &Conn) {
        let mut paths = self.paths.write().expect("presence lock is never poisoned");
        if let Some(old) = conn.swap_location(None) {
            self.leave(&mut paths, conn, &old);
            if self.listed(old.path()) {
                self.roster.leave(old.path_arc(), conn.user());
            }
        }
    }

    /// The user-level list this index keeps up to date.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// The connections on `path` that still take reactions.
    pub fn recipients(&self, path: &str) -> Vec<Arc<Conn>> {
        self.paths
            .read()
            .expect("presence lock is never poisoned")
            .get(path)
            // A connection closed by the server (revoked, slow) gets nothing more, even before its
            // transport has taken it off the route.
            .map(|b| {
                b.conns
                    .values()
                    .filter(|c| !c.is_closed())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many connections are on `path`.
    pub fn count(&self, path: &str) -> usize {
        self.paths
            .read()
            .expect("presence lock is never poisoned")
            .get(path)
            .map_or(0, |b| b.conns.len())
    }

    /// Every connection on any path that `keep` selects.
    pub fn all(&self, mut keep: impl FnMut(&Conn) -> bool) -> Vec<Arc<Conn>> {
        self.paths
            .read()
            .expect("presence lock is never poisoned")
            .values()
            .flat_map(|b| b.conns.values())
            .filter(|c| keep(c))
            .cloned()
            .collect()
    }
}

impl Presence {
    /// Take `conn` out of `old`'s bucket, and the bucket away once empty.
    fn leave(&self, paths: &mut HashMap<Arc<str>, Bucket>, conn: &Conn, old: &Location) {
        if let Some(bucket) = paths.get_mut(old.path_arc()) {
            bucket.conns.remove(&conn.id);
            if bucket.conns.is_empty() {
                paths.remove(old.path_arc());
                self.watch(old.path_arc(), false);
            }
        }
    }
}
