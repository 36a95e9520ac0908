//! The roster counted by route, for the admin page: per route pattern its users and its busiest paths,
//! each with the first users listed. Bounded whatever the number of paths and users.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Roster, View};

/// One route's users on every node.
pub(crate) struct RouteCensus {
    /// The pattern; `None` for paths where no route defines syncs.
    pub route: Option<&'static str>,
    /// Distinct users on any of its paths.
    pub users: usize,
    /// Its paths with anyone on them.
    pub paths: usize,
    /// The busiest of them, most users first.
    pub busiest: Vec<PathCensus>,
}

/// One concrete path.
pub(crate) struct PathCensus {
    pub path: Arc<str>,
    pub count: usize,
    /// The first users to come, with their presence views.
    pub users: Vec<(Arc<str>, View)>,
}

impl Roster {
    /// Every route with users, busiest first: `route_of` maps a path to its pattern; each route lists at
    /// most `paths` paths and each path at most `users` users.
    pub fn census(
        &self,
        route_of: impl Fn(&str) -> Option<&'static str>,
        paths: usize,
        users: usize,
    ) -> Vec<RouteCensus> {
        struct Tally<'a> {
            users: HashSet<&'a str>,
            paths: Vec<(&'a Arc<str>, &'a super::Room)>,
        }
        let state = self.read();
        let mut routes: HashMap<Option<&'static str>, Tally<'_>> = HashMap::new();
        for (path, room) in state.rooms.iter().filter(|(_, r)| !r.members.is_empty()) {
            let tally = routes.entry(route_of(path)).or_insert_with(|| Tally {
                users: HashSet::new(),
                paths: Vec::new(),
            });
            tally.users.extend(room.members.keys().map(|u| &**u));
            tally.paths.push((path, room));
        }
        let mut out: Vec<RouteCensus> = routes
            .into_iter()
            .map(|(route, mut tally)| {
                tally
                    .paths
                    .sort_by(|a, b| b.1.members.len().cmp(&a.1.members.len()).then(a.0.cmp(b.0)));
                let busiest = tally
                    .paths
                    .iter()
                    .take(paths)
                    .map(|(path, room)| PathCensus {
                        path: (*path).clone(),
                        count: room.members.len(),
                        users: room
                            .order
                            .values()
                            .take(users)
                            .map(|user| (user.clone(), room.members[user].view.clone()))
                            .collect(),
                    })
                    .collect();
                RouteCensus {
                    route,
                    users: tally.users.len(),
                    paths: tally.paths.len(),
                    busiest,
                }
            })
            .collect();
        out.sort_by(|a, b| b.users.cmp(&a.users).then(a.route.cmp(&b.route)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_census_groups_paths_by_route_and_bounds_what_it_lists() {
        let roster = Roster::new(100, false);
        let view = super::super::null_view();
        let join = |path: &str, user: &str| {
            roster.join(&Arc::from(path), &Arc::from(user), &view);
        };
        for user in ["a", "b", "c"] {
            join("/boards/1", user);
        }
        join("/boards/2", "a");
        join("/boards/3", "d");
        join("/elsewhere", "e");
        let route_of = |path: &str| path.starts_with("/boards/").then_some("/boards/[id]");
        let census = roster.census(route_of, 2, 2);
        assert_eq!(census.len(), 2);
        let boards = &census[0];
        assert_eq!(boards.route, Some("/boards/[id]"));
        assert_eq!((boards.users, boards.paths), (4, 3), "a counted once");
        assert_eq!(boards.busiest.len(), 2, "at most two paths listed");
        assert_eq!(
            (&*boards.busiest[0].path, boards.busiest[0].count),
            ("/boards/1", 3)
        );
        let listed: Vec<&str> = boards.busiest[0].users.iter().map(|(u, _)| &**u).collect();
        assert_eq!(listed, ["a", "b"], "the first two to come");
        assert_eq!((census[1].route, census[1].users), (None, 1));
    }
}
