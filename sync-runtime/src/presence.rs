//! Who is on which concrete path: the index a fan-out reads its recipients from. A connection is moved in
//! one step under one lock, so a fan-out sees it in exactly one place.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::conn::Conn;
use crate::handler::{ConnectionId, Location};

/// Everyone on one concrete path.
struct Bucket {
    location: Location,
    conns: HashMap<ConnectionId, Arc<Conn>>,
}

/// Path -> connections.
#[derive(Default)]
pub(crate) struct Presence {
    paths: RwLock<HashMap<Arc<str>, Bucket>>,
}

impl Presence {
    /// Move `conn` to `path`; `locate` gives the location of a path nobody is on yet. The connection's
    /// own record of its location changes under the same lock.
    pub fn place(
        &self,
        conn: &Arc<Conn>,
        path: Arc<str>,
        locate: impl FnOnce(Arc<str>) -> Location,
    ) -> Location {
        let mut paths = self.paths.write().expect("presence lock is never poisoned");
        let bucket = paths.entry(path.clone()).or_insert_with(|| Bucket {
            location: locate(path),
            conns: HashMap::new(),
        });
        bucket.conns.insert(conn.id, conn.clone());
        let location = bucket.location.clone();
        if let Some(old) = conn.swap_location(Some(location.clone()))
            && old.path() != location.path()
        {
            leave(&mut paths, conn, &old);
        }
        location
    }

    /// Take `conn` off its path.
    pub fn remove(&self, conn: &Conn) {
        let mut paths = self.paths.write().expect("presence lock is never poisoned");
        if let Some(old) = conn.swap_location(None) {
            leave(&mut paths, conn, &old);
        }
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

/// Take `conn` out of `old`'s bucket, and the bucket away once empty.
fn leave(paths: &mut HashMap<Arc<str>, Bucket>, conn: &Conn, old: &Location) {
    if let Some(bucket) = paths.get_mut(old.path_arc()) {
        bucket.conns.remove(&conn.id);
        if bucket.conns.is_empty() {
            paths.remove(old.path_arc());
        }
    }
}
