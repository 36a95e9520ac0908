//! The syncs a hub serves: every `Registration` generated code submitted, by route and name, and the
//! route patterns that place a concrete path.

use std::collections::HashMap;
use std::sync::Arc;

use crate::handler::{ErasedSync, Location};
use crate::protocol::ErrorCode;
use crate::routes::PatternSet;

/// One sync as generated code registers it (through `inventory`). Not for direct use.
#[doc(hidden)]
pub struct Registration {
    /// The route pattern, e.g. `/posts/[id]`.
    pub route: &'static str,
    /// The sync name.
    pub name: &'static str,
    /// The client file, relative to the crate.
    pub client_file: &'static str,
    /// The server file, if any.
    pub server_file: Option<&'static str>,
    /// Builds the handler.
    pub build: fn() -> ErasedSync,
    /// How the data turns back into JSON to cross nodes, if its type is `Serialize`.
    pub data_json: fn() -> Option<DataToJson>,
}

/// Serializes a sync's (type-erased) data. Not for direct use.
#[doc(hidden)]
pub type DataToJson = fn(&(dyn std::any::Any + Send + Sync)) -> Option<String>;

inventory::collect!(Registration);

pub(crate) struct SyncEntry {
    pub route: &'static str,
    pub name: &'static str,
    pub sync: ErasedSync,
    pub client_file: &'static str,
    pub data_json: Option<DataToJson>,
}

#[derive(Default)]
pub(crate) struct SyncTable {
    pub patterns: PatternSet,
    by_route: HashMap<&'static str, HashMap<&'static str, Arc<SyncEntry>>>,
    routes_of_name: HashMap<&'static str, Vec<&'static str>>,
}

impl SyncTable {
    /// Add one sync; `false` when the route already has one of that name.
    pub fn insert(&mut self, reg: &'static Registration, sync: ErasedSync) -> bool {
        let data_json = (reg.data_json)();
        self.add(reg.route, reg.name, sync, reg.client_file, data_json)
    }

    /// Add one sync by its parts (the hub's own syncs have no `Registration`).
    pub fn add(
        &mut self,
        route: &'static str,
        name: &'static str,
        sync: ErasedSync,
        client_file: &'static str,
        data_json: Option<DataToJson>,
    ) -> bool {
        let syncs = self.by_route.entry(route).or_default();
        if syncs.contains_key(name) {
            return false;
        }
        syncs.insert(
            name,
            Arc::new(SyncEntry {
                route,
                name,
                sync,
                client_file,
                data_json,
            }),
        );
        self.patterns.insert(route);
        self.routes_of_name.entry(name).or_default().push(route);
        true
    }

    /// Every registered sync.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<SyncEntry>> {
        self.by_route.values().flat_map(|syncs| syncs.values())
    }

    pub fn get(&self, route: &str, name: &str) -> Option<&Arc<SyncEntry>> {
        self.by_route.get(route)?.get(name)
    }

    /// The sync `name` on `route`, or the stable error a client gets for asking.
    pub fn resolve(
        &self,
        route: Option<&str>,
        name: &str,
    ) -> Result<&Arc<SyncEntry>, (ErrorCode, String)> {
        if let Some(entry) = route.and_then(|r| self.get(r, name)) {
            return Ok(entry);
        }
        match self.routes_of_name.get(name) {
            None => Err((
                ErrorCode::UnknownName,
                format!("no route defines a sync named `{name}`"),
            )),
            Some(routes) => Err((
                ErrorCode::NotOnRoute,
                format!(
                    "`{name}` is defined on {} but this connection is on {}",
                    routes.join(", "),
                    route.unwrap_or("a path without syncs")
                ),
            )),
        }
    }
}

impl SyncTable {
    /// The location for a normalized path: which route it matches, and its params.
    pub fn locate(&self, path: Arc<str>) -> Location {
        match self.patterns.lookup(&path) {
            Some((route, params)) => Location::new(path, Some(route), params),
            None => Location::new(path, None, Vec::new()),
        }
    }
}
