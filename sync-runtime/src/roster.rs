//! Who is on which concrete path, user by user, on every node (SPEC 9): the list [`SyncHub::presence`]
//! returns, filters read through [`Here`], and browsers receive as `presence` / `presence_diff` frames.
//!
//! The connection index (`presence`) knows connections; this knows users. A user is listed once on a path
//! however many tabs (connections) and nodes they are there on: this node counts its own tabs, and keeps
//! for every other node the set of `(path, user)` it announced. A user leaves a path when the last tab on
//! the last node goes. Changes made here on this node are numbered (`version`), so that another node that
//! missed one can tell and ask for a snapshot (`membership`).
//!
//! [`SyncHub::presence`]: crate::SyncHub::presence

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// What others may see of a user: the app's presence view, as JSON.
pub(crate) type View = Arc<RawValue>;

/// The view of a user when the app maps none (`null`).
pub(crate) fn null_view() -> View {
    Arc::from(RawValue::from_string("null".to_owned()).expect("`null` is JSON"))
}

/// One user on a path, as others may see them.
///
/// ```
/// # fn f(hub: sync_runtime::SyncHub) {
/// #[derive(serde::Deserialize)]
/// struct Public { name: String }
///
/// for user in hub.presence("/boards/7") {
///     let name = user.view::<Public>().map(|p| p.name).unwrap_or_default();
///     println!("{} ({name})", user.user());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Present {
    user: Arc<str>,
    view: View,
}

impl Present {
    /// The user key the authenticator returned (two tabs of one user share it).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The view the app's presence mapping made of the user's session (`null` without one), as JSON.
    pub fn view_json(&self) -> &str {
        self.view.get()
    }

    /// The view, read as `T`.
    pub fn view<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.view.get())
    }
}

impl fmt::Debug for Present {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Present")
            .field("user", &self.user)
            .field("view", &self.view.get())
            .finish()
    }
}

/// The users on one concrete path, as a filter or a gate reads them (`cx.here`): the path of the
/// trigger, which is also where the recipient is. Reads are live, not a copy taken when the trigger
/// came in: an async filter that ran for a while sees who is there now.
///
/// ```
/// use sync_runtime::{Filter, ServerCx};
/// # #[derive(serde::Deserialize)] pub struct Data;
///
/// // Deliver only while the author is still on the page.
/// pub fn filter(cx: ServerCx<Data, String, ()>) -> Filter<()> {
///     match &cx.sender {
///         Some(author) if cx.here.contains(&author.user) => Filter::Deliver(()),
///         _ => Filter::Skip,
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Here {
    roster: Arc<Roster>,
    path: Arc<str>,
}

impl Here {
    pub(crate) fn new(roster: Arc<Roster>, path: Arc<str>) -> Self {
        Here { roster, path }
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `user` is on the path (on any node, in any tab).
    pub fn contains(&self, user: &str) -> bool {
        self.roster.contains(&self.path, user)
    }

    /// How many users are on the path.
    pub fn count(&self) -> usize {
        self.roster.count(&self.path)
    }

    /// The users on the path, in the order they came.
    pub fn users(&self) -> Vec<Present> {
        self.roster.users(&self.path)
    }
}

impl fmt::Debug for Here {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Here").field("path", &self.path).finish()
    }
}

/// A change this node made to its own part of the roster, for the other nodes: `user` is on `path` with
/// `view`, or (`None`) no longer is. `version` numbers this node's changes 1, 2, 3…
#[derive(Debug, Clone)]
pub(crate) struct Announce {
    pub version: u64,
    pub path: Arc<str>,
    pub user: Arc<str>,
    pub view: Option<View>,
}

/// The frames for the connections on one path after a change: the whole (bounded) list for those that
/// have none yet, and the difference from the previous list for the others.
pub(crate) struct Listing {
    pub path: Arc<str>,
    count: usize,
    now: Vec<(Arc<str>, View)>,
    /// The `presence` frame, made when the first connection without a list needs it.
    snapshot: std::sync::OnceLock<Utf8Bytes>,
    /// `None` when the list clients have is still right, or only its count changed and the last count
    /// went out less than `COUNT_WINDOWS` windows ago.
    pub diff: Option<Utf8Bytes>,
}

/// A user on a path: `(path, user)`.
type Spot = (Arc<str>, Arc<str>);

/// A user on a path with their view: `(path, user, view)`.
pub(crate) type Entry = (Arc<str>, Arc<str>, View);

impl Listing {
    /// The whole list, as a `presence` frame.
    pub fn snapshot(&self) -> &Utf8Bytes {
        self.snapshot.get_or_init(|| {
            crate::protocol::server::presence_frame(&self.path, self.count, &self.now).into()
        })
    }
}

/// One user on one path.
struct Member {
    order: u64,
    view: View,
    /// Tabs on this node.
    local: u32,
    /// Other nodes that announced the user here.
    remote: Vec<u64>,
}

impl Member {
    fn gone(&self) -> bool {
        self.local == 0 && self.remote.is_empty()
    }
}

#[derive(Default)]
struct Room {
    members: HashMap<Arc<str>, Member>,
    /// Join order -> user: the first `limit` are the ones listed to clients.
    order: BTreeMap<u64, Arc<str>>,
    /// The list clients on this path were last sent, its count, and the `flush` that sent it.
    sent: Vec<(Arc<str>, View)>,
    sent_count: usize,
    sent_at: u64,
}

#[derive(Default)]
struct State {
    rooms: HashMap<Arc<str>, Room>,
    next_order: u64,
    /// What every other node announced: node -> its `(path, user)`.
    remote: HashMap<u64, HashSet<Spot>>,
    /// Paths whose list changed since the last `flush`.
    dirty: HashSet<Arc<str>>,
    /// Paths where a connection waits for the whole list (it landed there, or resumed).
    wanted: HashSet<Arc<str>>,
    /// `flush` calls so far.
    flushes: u64,
    /// The number of this node's last change.
    version: u64,
    /// Changes not yet handed to the other nodes (only with a backplane), at most `OUTGOING`.
    outgoing: Vec<Announce>,
    sharing: bool,
}

/// A change to a path's count alone (a user past the first `limit` came or went) goes out at most once
/// per this many windows: in a room of 10,000, every diff is 10,000 frames, and most changes there touch
/// only the count.
const COUNT_WINDOWS: u64 = 10;

/// Changes waiting for the backplane, at most: past it they are dropped, and the other nodes, seeing
/// a version they lack in this node's heartbeats, ask for a snapshot.
const OUTGOING: usize = 65_536;

/// Users per path, on every node.
pub(crate) struct Roster {
    state: RwLock<State>,
    /// Users listed to clients, at most.
    limit: usize,
}

impl Roster {
    /// A roster listing at most `limit` users to clients; `sharing`: changes are kept for the other
    /// nodes ([`take_outgoing`](Self::take_outgoing)).
    pub fn new(limit: usize, sharing: bool) -> Self {
        Roster {
            state: RwLock::new(State {
                sharing,
                ..State::default()
            }),
            limit,
        }
    }

    /// The changes made here since the last call, in order, for the other nodes.
    pub fn take_outgoing(&self) -> Vec<Announce> {
        std::mem::take(&mut self.write().outgoing)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().expect("roster lock is never poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().expect("roster lock is never poisoned")
    }

    /// One more tab of `user` on `path` here; an announcement when the other nodes must hear of it.
    pub fn join(&self, path: &Arc<str>, user: &Arc<str>, view: &View) -> Option<Announce> {
        let mut state = self.write();
        let (member, changed) = state.member(path, user, view);
        member.local += 1;
        let announce = member.local == 1 || changed;
        if changed {
            state.dirty.insert(path.clone());
        }
        announce.then(|| state.announce(path, user, Some(view.clone())))
    }

    /// One tab fewer of `user` on `path` here; an announcement when it was the last one here.
    pub fn leave(&self, path: &Arc<str>, user: &Arc<str>) -> Option<Announce> {
        let mut state = self.write();
        let room = state.rooms.get_mut(path)?;
        let member = room.members.get_mut(user)?;
        member.local = member.local.checked_sub(1)?;
        if member.local > 0 {
            return None;
        }
        if member.gone() {
            room.remove(user);
            state.dirty.insert(path.clone());
        }
        Some(state.announce(path, user, None))
    }

    /// `user`'s view changed (their session did): every path they are on here.
    pub fn revise(&self, user: &Arc<str>, view: &View) -> Vec<Announce> {
        let mut state = self.write();
        let paths: Vec<Arc<str>> = state
            .rooms
            .iter()
            .filter(|(_, room)| room.members.get(user).is_some_and(|m| m.local > 0))
            .map(|(path, _)| path.clone())
            .collect();
        let mut out = Vec::new();
        for path in paths {
            let (_, changed) = state.member(&path, user, view);
            if changed {
                state.dirty.insert(path.clone());
                out.push(state.announce(&path, user, Some(view.clone())));
            }
        }
        out
    }

    /// Another node says `user` is on `path` with `view`, or (`None`) no longer is.
    pub fn remote(&self, node: u64, path: &str, user: &str, view: Option<View>) {
        let mut state = self.write();
        state.set_remote(node, Arc::from(path), Arc::from(user), view);
    }

    /// Another node's whole part, replacing what it announced before.
    pub fn replace(&self, node: u64, entries: Vec<(String, String, View)>) {
        let mut state = self.write();
        state.drop_node(node);
        for (path, user, view) in entries {
            state.set_remote(node, Arc::from(path), Arc::from(user), Some(view));
        }
    }

    /// Connections on `path` wait for its list: the next `flush` includes it even if nothing changed.
    pub fn want(&self, path: &Arc<str>) {
        self.write().wanted.insert(path.clone());
    }

    /// A node died (or this one stopped hearing it): its users leave wherever only it had them.
    pub fn drop_node(&self, node: u64) {
        self.write().drop_node(node);
    }

    /// This node's own part and the number of its last change: what a snapshot for the others holds.
    pub fn local(&self) -> (u64, Vec<Entry>) {
        let state = self.read();
        let entries = state
            .rooms
            .iter()
            .flat_map(|(path, room)| {
                room.members
                    .iter()
                    .filter(|(_, m)| m.local > 0)
                    .map(move |(user, m)| (path.clone(), user.clone(), m.view.clone()))
            })
            .collect();
        (state.version, entries)
    }

    /// The number of this node's last change.
    #[cfg(test)]
    pub fn version(&self) -> u64 {
        self.read().version
    }

    pub fn contains(&self, path: &str, user: &str) -> bool {
        self.read()
            .rooms
            .get(path)
            .is_some_and(|r| r.members.contains_key(user))
    }

    pub fn count(&self, path: &str) -> usize {
        self.read().rooms.get(path).map_or(0, |r| r.members.len())
    }

    /// Everyone on `path`, in join order.
    pub fn users(&self, path: &str) -> Vec<Present> {
        let state = self.read();
        let Some(room) = state.rooms.get(path) else {
            return Vec::new();
        };
        room.order
            .values()
            .map(|user| Present {
                user: user.clone(),
                view: room.members[user].view.clone(),
            })
            .collect()
    }

    /// The frames for every path whose list changed since the last call, or where a connection waits for
    /// its first list (`want`). Each path's list is what its clients are now assumed to have: a client
    /// that gets `snapshot` and then the later diffs always holds the current list.
    ///
    /// Without `frames` (no browser gets lists) it only lets go of the rooms nobody is in.
    pub fn flush(&self, frames: bool) -> Vec<Listing> {
        let mut state = self.write();
        let wanted = std::mem::take(&mut state.wanted);
        let mut paths: HashSet<Arc<str>> = std::mem::take(&mut state.dirty);
        paths.extend(wanted.iter().cloned());
        if !frames {
            for path in paths {
                if state.rooms.get(&path).is_some_and(|r| r.members.is_empty()) {
                    state.rooms.remove(&path);
                }
            }
            return Vec::new();
        }
        let limit = self.limit;
        state.flushes += 1;
        let tick = state.flushes;
        let mut later = Vec::new();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let room = state.rooms.entry(path.clone()).or_default();
            let now: Vec<(Arc<str>, View)> = room
                .order
                .values()
                .take(limit)
                .map(|user| (user.clone(), room.members[user].view.clone()))
                .collect();
            let count = room.members.len();
            let diff = match Change::between(&room.sent, &now) {
                Some(change) => Some(change.frame(&path, count)),
                None if count == room.sent_count => None,
                None if tick.saturating_sub(room.sent_at) >= COUNT_WINDOWS || count == 0 => {
                    Some(Change::default().frame(&path, count))
                }
                None => {
                    // Only the count changed, and it went out lately: it waits (the path stays dirty).
                    later.push(path.clone());
                    None
                }
            };
            if diff.is_some() {
                room.sent_count = count;
                room.sent_at = tick;
            }
            room.sent.clone_from(&now);
            if room.members.is_empty() {
                state.rooms.remove(&path);
            }
            // Nothing to send: no diff, and every connection there holds the list already (a
            // connection without one made the path wanted).
            if diff.is_none() && !wanted.contains(&path) {
                continue;
            }
            out.push(Listing {
                path,
                count,
                now,
                snapshot: std::sync::OnceLock::new(),
                diff,
            });
        }
        state.dirty.extend(later);
        out
    }
}

impl State {
    /// The member `user` on `path`, created with `view` if new; whether it is new or its view changed.
    fn member(&mut self, path: &Arc<str>, user: &Arc<str>, view: &View) -> (&mut Member, bool) {
        let room = self.rooms.entry(path.clone()).or_default();
        let mut changed = false;
        let member = room.members.entry(user.clone()).or_insert_with(|| {
            changed = true;
            self.next_order += 1;
            room.order.insert(self.next_order, user.clone());
            Member {
                order: self.next_order,
                view: view.clone(),
                local: 0,
                remote: Vec::new(),
            }
        });
        if !changed && member.view.get() != view.get() {
            member.view = view.clone();
            changed = true;
        }
        (member, changed)
    }

    fn announce(&mut self, path: &Arc<str>, user: &Arc<str>, view: Option<View>) -> Announce {
        self.version += 1;
        let announce = Announce {
            version: self.version,
            path: path.clone(),
            user: user.clone(),
            view,
        };
        if self.sharing && self.outgoing.len() < OUTGOING {
            self.outgoing.push(announce.clone());
        }
        announce
    }

    fn set_remote(&mut self, node: u64, path: Arc<str>, user: Arc<str>, view: Option<View>) {
        match view {
            Some(view) => {
                let (member, changed) = self.member(&path, &user, &view);
                if !member.remote.contains(&node) {
                    member.remote.push(node);
                }
                if changed {
                    self.dirty.insert(path.clone());
                }
                self.remote.entry(node).or_default().insert((path, user));
            }
            None => {
                if let Some(set) = self.remote.get_mut(&node) {
                    set.remove(&(path.clone(), user.clone()));
                }
                self.unset_remote(node, &path, &user);
            }
        }
    }

    fn unset_remote(&mut self, node: u64, path: &Arc<str>, user: &Arc<str>) {
        let Some(room) = self.rooms.get_mut(path) else {
            return;
        };
        let Some(member) = room.members.get_mut(user) else {
            return;
        };
        member.remote.retain(|n| *n != node);
        if member.gone() {
            room.remove(user);
            self.dirty.insert(path.clone());
        }
    }

    fn drop_node(&mut self, node: u64) {
        for (path, user) in self.remote.remove(&node).unwrap_or_default() {
            self.unset_remote(node, &path, &user);
        }
    }
}

impl Room {
    fn remove(&mut self, user: &Arc<str>) {
        if let Some(member) = self.members.remove(user) {
            self.order.remove(&member.order);
        }
    }
}

/// What changed in a path's list (not its count): who left it, who joined it or changed their view.
#[derive(Default)]
struct Change<'a> {
    join: Vec<&'a (Arc<str>, View)>,
    leave: Vec<&'a str>,
}

impl<'a> Change<'a> {
    /// From list `before` to `now`; `None` when they are the same.
    fn between(before: &'a [(Arc<str>, View)], now: &'a [(Arc<str>, View)]) -> Option<Self> {
        let old: HashMap<&str, &str> = before.iter().map(|(u, v)| (&**u, v.get())).collect();
        let new: HashSet<&str> = now.iter().map(|(u, _)| &**u).collect();
        let change = Change {
            leave: before
                .iter()
                .map(|(u, _)| &**u)
                .filter(|u| !new.contains(u))
                .collect(),
            join: now
                .iter()
                .filter(|(u, v)| old.get(&**u) != Some(&v.get()))
                .collect(),
        };
        (!change.join.is_empty() || !change.leave.is_empty()).then_some(change)
    }

    /// The `presence_diff` frame, with the path's count.
    fn frame(&self, path: &str, count: usize) -> Utf8Bytes {
        crate::protocol::server::presence_diff_frame(path, count, &self.join, &self.leave).into()
    }
}

/// What this node knows of the other nodes' parts of the roster (kept up by `membership`).
#[derive(Default)]
pub(crate) struct Membership {
    pub ticking: AtomicBool,
    pub nodes: Mutex<HashMap<u64, Known>>,
    /// Another node asked for this node's snapshot.
    pub wanted: AtomicBool,
}

/// One other node.
pub(crate) struct Known {
    /// Its last change applied here.
    pub version: u64,
    pub heard: tokio::time::Instant,
    /// When this node last asked it for a snapshot, while one is missing.
    pub asked: Option<tokio::time::Instant>,
}

impl Known {
    /// A node heard just now, none of whose changes were applied yet.
    pub fn new() -> Self {
        Known {
            version: 0,
            heard: tokio::time::Instant::now(),
            asked: None,
        }
    }
}

mod census;
#[cfg(test)]
mod tests;
