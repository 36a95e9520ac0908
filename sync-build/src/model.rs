//! The route tree as a plain model: which routes exist and which syncs each defines.
//!
//! Built from a list of paths (so it is testable without a filesystem) or by walking a folder, then
//! validated; the emitter only ever sees a valid tree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// One entry under the routes root, relative to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The path relative to the routes root.
    pub path: PathBuf,
    /// Whether it is a folder.
    pub is_dir: bool,
}

impl Entry {
    /// A file entry.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Entry {
            path: path.into(),
            is_dir: false,
        }
    }

    /// A folder entry.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Entry {
            path: path.into(),
            is_dir: true,
        }
    }
}

/// A sync: its name and handler files (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHandler {
    /// The sync name, exactly as written in the file names.
    pub name: String,
    /// `<name>_client.rs`.
    pub client_file: PathBuf,
    /// `<name>_server.rs`, if any.
    pub server_file: Option<PathBuf>,
}

/// A route: its pattern and the syncs defined for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/`, `/dashboard`, `/posts/[id]`.
    pub pattern: String,
    /// The dynamic segments' names, in order.
    pub params: Vec<String>,
    /// The generated module's name (see `docs/DESIGN.md`).
    pub module: String,
    /// Sorted by name. Empty for routes that only have code, no syncs.
    pub syncs: Vec<SyncHandler>,
    /// The route's `page.rs` (absolute), if it has one: included as `pages::<module>`.
    pub page: Option<PathBuf>,
}

impl Route {
    /// The route's path in axum's syntax: `/posts/{id}` for `/posts/[id]`.
    ///
    /// ```
    /// use sync_build::{Entry, RouteTree};
    ///
    /// let tree = RouteTree::from_entries("/app/src".as_ref(), [Entry::file("posts/[id]/page.rs")]).unwrap();
    /// assert_eq!(tree.routes()[0].axum_path(), "/posts/{id}");
    /// ```
    pub fn axum_path(&self) -> String {
        self.pattern
            .split('/')
            .map(
                |segment| match segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    Some(param) => format!("{{{param}}}"),
                    None => segment.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The sync `name`, if this route defines it.
    pub fn sync(&self, name: &str) -> Option<&SyncHandler> {
        self.syncs.iter().find(|s| s.name == name)
    }
}

/// Every route under a routes root. Routes without syncs are kept (so that any source file can be placed),
/// but the emitter skips them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTree {
    root: PathBuf,
    routes: Vec<Route>,
}

/// One thing wrong with a route tree: the files involved, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The files (or folders) involved.
    pub files: Vec<PathBuf>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "{}: {}\n  fix: {}",
            files.join(", "),
            self.message,
            self.fix
        )
    }
}

/// How a folder name counts in the route tree.
#[derive(Debug, PartialEq, Eq)]
enum Folder<'a> {
    /// `_sync`, `_dashboardSync`: holds handlers of the enclosing route.
    Sync,
    /// `_components`, `(group)`: adds no segment.
    Transparent,
    /// `.git`: ignored with everything in it.
    Hidden,
    /// `[id]`.
    Param(&'a str),
    /// `dashboard`.
    Static(&'a str),
}

fn classify(name: &str) -> Folder<'_> {
    if name.starts_with('.') {
        Folder::Hidden
    } else if name.ends_with("sync") || name.ends_with("Sync") {
        // Checked before the `_` rule: `_sync` and `_dashboardSync` are sync folders.
        Folder::Sync
    } else if name.starts_with('_') || (name.starts_with('(') && name.ends_with(')')) {
        Folder::Transparent
    } else if let Some(param) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Folder::Param(param)
    } else {
        Folder::Static(name)
    }
}

/// Where a path sits in the tree.
struct Placement {
    pattern: String,
    params: Vec<String>,
    /// The sync folder the path is directly in, or below.
    sync_folder: Option<PathBuf>,
    /// Folders below the sync folder.
    nested: Vec<String>,
    hidden: bool,
}

fn place(relative: &Path) -> Placement {
    let mut segments = Vec::new();
    let mut params = Vec::new();
    let mut sync_folder: Option<PathBuf> = None;
    let mut nested = Vec::new();
    let mut so_far = PathBuf::new();
    let mut hidden = false;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let name = name.to_string_lossy();
        so_far.push(&*name);
        if sync_folder.is_some() {
            nested.push(name.into_owned());
            continue;
        }
        match classify(&name) {
            Folder::Hidden => hidden = true,
            Folder::Sync => sync_folder = Some(so_far.clone()),
            Folder::Transparent => {}
            Folder::Param(p) => {
                segments.push(format!("[{p}]"));
                params.push(p.to_owned());
            }
            Folder::Static(s) => segments.push(s.to_owned()),
        }
    }
    Placement {
        pattern: format!("/{}", segments.join("/")),
        params,
        sync_folder,
        nested,
        hidden,
    }
}

/// The folder of a route's own `page.rs` (relative to the root): `page.rs` itself, not inside a `_` folder,
/// whose content belongs to the enclosing route's code.
fn page_folder(relative: &Path) -> Option<&Path> {
    if relative.file_name()? != "page.rs" {
        return None;
    }
    let dir = relative.parent()?;
    let inside_code_folder = dir
        .components()
        .any(|c| matches!(c, Component::Normal(name) if name.to_string_lossy().starts_with('_')));
    (!inside_code_folder).then_some(dir)
}

/// The route pattern of a folder relative to the root (`_` folders, groups and sync folders add nothing).
fn pattern_of_dir(relative_dir: &Path) -> (String, Vec<String>) {
    // Every component is a folder here; a sync folder in the chain stops segment collection.
    let p = place(relative_dir);
    (p.pattern, p.params)
}

const SUFFIXES: [&str; 2] = ["_client", "_server"];

/// The closest of `_client` / `_server` to a misspelt suffix, if close enough to be a typo.
fn near_miss(stem: &str) -> Option<(String, &'static str)> {
    let (name, suffix) = stem.rsplit_once('_')?;
    let suffix = format!("_{suffix}");
    SUFFIXES
        .iter()
        .map(|s| (edit_distance(&suffix, s), *s))
        .filter(|(d, _)| *d > 0 && *d <= 2)
        .min()
        .map(|(_, s)| (name.to_owned(), s))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `name` can be a sync name: a Rust identifier that is not a keyword.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    starts_well
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name != "_"
        && syn::parse_str::<syn::Ident>(name).is_ok()
}

/// The module name for a route pattern, before collisions are resolved.
fn module_base(pattern: &str) -> String {
    if pattern == "/" {
        return "root".to_owned();
    }
    let joined = pattern
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
        .collect::<Vec<_>>()
        .join("__");
    let mut out: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'r');
    }
    if syn::parse_str::<syn::Ident>(&out).is_err() {
        // A keyword (`/type`) or `_` alone.
        out.push('_');
    }
    out
}

#[derive(Default)]
struct Collected {
    params: Vec<String>,
    pages: Vec<PathBuf>,
    clients: BTreeMap<String, Vec<PathBuf>>,
    servers: BTreeMap<String, Vec<PathBuf>>,
}

impl RouteTree {
    /// Walk `root` (sorted, deterministic) and build the validated tree.
    ///
    /// ```no_run
    /// let tree = sync_build::RouteTree::discover("src".as_ref()).expect("a valid tree");
    /// for route in tree.routes() {
    ///     println!("{}: {:?}", route.pattern, route.syncs.iter().map(|s| &s.name).collect::<Vec<_>>());
    /// }
    /// ```
    pub fn discover(root: &Path) -> Result<RouteTree, Error> {
        let mut entries = Vec::new();
        let walker = walkdir::WalkDir::new(root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        for entry in walker.filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.')) {
            let entry = entry.map_err(|e| Error::io(root, e.into()))?;
            let relative = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_path_buf();
            entries.push(Entry {
                path: relative,
                is_dir: entry.file_type().is_dir(),
            });
        }
        RouteTree::from_entries(root, entries)
    }

    /// Build the validated tree from entries relative to `root` (no filesystem access).
    ///
    /// ```
    /// use sync_build::{Entry, RouteTree};
    ///
    /// let tree = RouteTree::from_entries(
    ///     "/app/src".as_ref(),
    ///     [Entry::file("dashboard/_sync/refreshData_client.rs"), Entry::file("posts/[id]/_sync/newComment_client.rs")],
    /// )
    /// .unwrap();
    /// assert_eq!(tree.routes()[1].pattern, "/posts/[id]");
    /// assert_eq!(tree.routes()[1].module, "posts__id");
    /// ```
    pub fn from_entries(
        root: &Path,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<RouteTree, Error> {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        entries.sort();
        let mut problems = Vec::new();
        let mut routes: BTreeMap<String, Collected> = BTreeMap::new();
        for entry in &entries {
            let placement = place(&entry.path);
            if placement.hidden {
                continue;
            }
            if entry.is_dir {
                // Every folder is a route (syncs or not), so that any source file can be placed.
                if placement.sync_folder.is_none() {
                    let (pattern, params) = pattern_of_dir(&entry.path);
                    routes.entry(pattern).or_default().params = params;
                } else if placement.nested.len() == 1 {
                    problems.push(Problem {
                        files: vec![root.join(&entry.path)],
                        message: "a folder inside a sync folder; sync folders hold only `<name>_client.rs` and `<name>_server.rs`".to_owned(),
                        fix: "move its files into the sync folder itself, or out of it".to_owned(),
                    });
                }
                continue;
            }
            let Some(sync_folder) = &placement.sync_folder else {
                if let Some(dir) = page_folder(&entry.path) {
                    let (pattern, params) = pattern_of_dir(dir);
                    let collected = routes.entry(pattern).or_default();
                    collected.params = params;
                    collected.pages.push(root.join(&entry.path));
                }
                continue;
            };
            if placement.nested.len() != 1 {
                // Reported once, for the nested folder itself.
                continue;
            }
            let file = root.join(&entry.path);
            let file_name = placement.nested[0].as_str();
            let parsed = file_name.strip_suffix(".rs").and_then(|stem| {
                stem.strip_suffix("_client")
                    .map(|n| (n, true))
                    .or_else(|| stem.strip_suffix("_server").map(|n| (n, false)))
            });
            let Some((name, is_client)) = parsed else {
                let fix = match file_name.strip_suffix(".rs").and_then(near_miss) {
                    Some((name, suffix)) => format!("rename `{file_name}` to `{name}{suffix}.rs`"),
                    None => "rename it `<name>_client.rs` or `<name>_server.rs`, or move it out of the sync folder".to_owned(),
                };
                problems.push(Problem {
                    files: vec![file],
                    message: format!(
                        "`{file_name}` is not a sync handler; a sync folder may only hold `<name>_client.rs` and `<name>_server.rs` (a misspelt server filter must never silently become \"send to everyone\")"
                    ),
                    fix,
                });
                continue;
            };
            if !is_valid_name(name) {
                problems.push(Problem {
                    files: vec![file],
                    message: format!("`{name}` is not a valid sync name: it must be a Rust identifier and not a keyword"),
                    fix: "use letters, digits and `_`, starting with a letter (camelCase is fine), e.g. `refreshData`".to_owned(),
                });
                continue;
            }
            let (pattern, params) = pattern_of_dir(sync_folder.parent().unwrap_or(Path::new("")));
            let collected = routes.entry(pattern).or_default();
            collected.params = params;
            let files = if is_client {
                &mut collected.clients
            } else {
                &mut collected.servers
            };
            files.entry(name.to_owned()).or_default().push(file);
        }

        let mut out = Vec::new();
        let mut used_modules: BTreeMap<String, usize> = BTreeMap::new();
        for (pattern, collected) in routes {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = collected.params.iter().find(|p| !seen.insert(*p)) {
                problems.push(Problem {
                    files: collected
                        .clients
                        .values()
                        .chain(collected.servers.values())
                        .flatten()
                        .cloned()
                        .collect(),
                    message: format!("the route `{pattern}` uses the param `[{dup}]` twice"),
                    fix: format!("rename one of the `[{dup}]` folders"),
                });
            }
            for (name, servers) in &collected.servers {
                if !collected.clients.contains_key(name) {
                    let dir = servers[0]
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    problems.push(Problem {
                        files: servers.clone(),
                        message: format!("`{name}_server.rs` has no `{name}_client.rs`: a server filter needs a client reaction"),
                        fix: format!("add `{}` next to it", dir.join(format!("{name}_client.rs")).display()),
                    });
                }
            }
            for (kind, map) in [
                ("client", &collected.clients),
                ("server", &collected.servers),
            ] {
                for (name, files) in map {
                    if files.len() > 1 {
                        problems.push(Problem {
                            files: files.clone(),
                            message: format!(
                                "the route `{pattern}` defines `{name}` ({kind}) more than once"
                            ),
                            fix: format!(
                                "keep one `{name}_{kind}.rs` for `{pattern}`, or rename the others"
                            ),
                        });
                    }
                }
            }
            let syncs = collected
                .clients
                .iter()
                .map(|(name, clients)| SyncHandler {
                    name: name.clone(),
                    client_file: clients[0].clone(),
                    server_file: collected.servers.get(name).map(|s| s[0].clone()),
                })
                .collect();
            if collected.pages.len() > 1 {
                problems.push(Problem {
                    files: collected.pages.clone(),
                    message: format!("the route `{pattern}` has more than one `page.rs` (group folders add no segment)"),
                    fix: format!("keep one `page.rs` for `{pattern}`, or give the others their own path"),
                });
            }
            let base = module_base(&pattern);
            let count = used_modules.entry(base.clone()).or_insert(0);
            *count += 1;
            let module = if *count == 1 {
                base
            } else {
                format!("{base}_{count}")
            };
            out.push(Route {
                pattern,
                params: collected.params,
                module,
                syncs,
                page: collected.pages.into_iter().next(),
            });
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        Ok(RouteTree {
            root: root.to_path_buf(),
            routes: out,
        })
    }

    /// The same tree without its pages (for a crate that declares its page modules itself).
    pub fn without_pages(mut self) -> RouteTree {
        for route in &mut self.routes {
            route.page = None;
        }
        self
    }

    /// The routes root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All routes, sorted by pattern.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route a source file belongs to: the route of its folder (`_` folders, groups and sync folders
    /// belong to the enclosing route). `None` when the file is not under the root.
    pub fn route_of_file(&self, file: &Path) -> Option<RouteRef<'_>> {
        let relative = file.strip_prefix(&self.root).ok()?;
        let (pattern, params) = pattern_of_dir(relative.parent().unwrap_or(Path::new("")));
        Some(match self.routes.iter().find(|r| r.pattern == pattern) {
            Some(route) => RouteRef {
                pattern: route.pattern.clone(),
                params: route.params.clone(),
                route: Some(route),
            },
            None => RouteRef {
                pattern,
                params,
                route: None,
            },
        })
    }

    /// The routes that define a sync called `name`.
    pub fn routes_defining(&self, name: &str) -> Vec<&Route> {
        self.routes
            .iter()
            .filter(|r| r.sync(name).is_some())
            .collect()
    }
}

/// The route a file belongs to, which may have no syncs (and then no generated module).
#[derive(Debug, Clone)]
pub struct RouteRef<'a> {
    /// The pattern.
    pub pattern: String,
    /// The dynamic segments.
    pub params: Vec<String>,
    /// The route in the tree, if it has any syncs or code folders.
    pub route: Option<&'a Route>,
}

impl RouteRef<'_> {
    /// The syncs this route defines.
    pub fn syncs(&self) -> &[SyncHandler] {
        self.route.map_or(&[], |r| &r.syncs)
    }
}
