//! Route trees on disk: every rule of SPEC section 2, every build error and its message, and the
//! generated output against a golden file (`UPDATE_GOLDEN=1` rewrites it; review the diff).

use std::path::{Path, PathBuf};

use sync_build::{Entry, Error, Inspection, RouteTree};

/// A temporary crate with files under `src/`.
struct Crate {
    dir: tempfile::TempDir,
}

impl Crate {
    fn new() -> Crate {
        Crate {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn file(&self, path: &str, text: &str) -> &Crate {
        let path = self.src().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    fn dir(&self, path: &str) -> &Crate {
        std::fs::create_dir_all(self.src().join(path)).expect("mkdir");
        self
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn discover(&self) -> Result<RouteTree, Error> {
        RouteTree::discover(&self.src())
    }

    /// Discover, expecting failure; the whole message.
    fn error(&self) -> String {
        match self.discover() {
            Ok(tree) => panic!("expected an error, got {tree:?}"),
            Err(e) => e.to_string(),
        }
    }
}

const CLIENT: &str = "pub struct Data; pub fn react() {}";

fn patterns(tree: &RouteTree) -> Vec<(&str, Vec<&str>)> {
    tree.routes()
        .iter()
        .filter(|r| !r.syncs.is_empty())
        .map(|r| {
            (
                r.pattern.as_str(),
                r.syncs.iter().map(|s| s.name.as_str()).collect(),
            )
        })
        .collect()
}

#[test]
fn every_folder_rule_of_the_route_tree() {
    let c = Crate::new();
    c.file("_sync/hello_client.rs", CLIENT)
        .file("dashboard/page.rs", "")
        .file("dashboard/_sync/refreshData_client.rs", CLIENT)
        .file(
            "dashboard/_sync/refreshData_server.rs",
            "pub async fn filter() {}",
        )
        .file("dashboard/_dashboardSync/announce_client.rs", CLIENT)
        .file("dashboard/_components/widget.rs", "")
        .file(
            "dashboard/_components/_sync/fromComponents_client.rs",
            CLIENT,
        )
        .file("(marketing)/about/_sync/ping_client.rs", CLIENT)
        .file("posts/[id]/_sync/newComment_client.rs", CLIENT)
        .file("posts/[id]/comments/_sync/reply_client.rs", CLIENT)
        .file("home/_sync/refreshData_client.rs", CLIENT)
        .file(".hidden/_sync/ignored_client.rs", CLIENT);
    let tree = c.discover().expect("a valid tree");
    assert_eq!(
        patterns(&tree),
        vec![
            ("/", vec!["hello"]),
            ("/about", vec!["ping"]),
            (
                "/dashboard",
                vec!["announce", "fromComponents", "refreshData"]
            ),
            ("/home", vec!["refreshData"]),
            ("/posts/[id]", vec!["newComment"]),
            ("/posts/[id]/comments", vec!["reply"]),
        ]
    );
    let posts = tree
        .routes()
        .iter()
        .find(|r| r.pattern == "/posts/[id]/comments")
        .expect("route");
    assert_eq!(
        (posts.params.as_slice(), posts.module.as_str()),
        (&["id".to_owned()][..], "posts__id__comments")
    );
    let dashboard = tree
        .routes()
        .iter()
        .find(|r| r.pattern == "/dashboard")
        .expect("route");
    assert!(
        dashboard
            .sync("refreshData")
            .expect("sync")
            .server_file
            .is_some()
    );
    assert!(
        dashboard
            .sync("announce")
            .expect("sync")
            .server_file
            .is_none()
    );
    // Files belong to the route of their folder; `_` folders to the enclosing route.
    let of = |p: &str| {
        tree.route_of_file(&c.src().join(p))
            .expect("under the root")
            .pattern
    };
    assert_eq!(of("dashboard/_components/widget.rs"), "/dashboard");
    assert_eq!(of("posts/[id]/page.rs"), "/posts/[id]");
    assert_eq!(of("main.rs"), "/");
    assert_eq!(of("(marketing)/about/page.rs"), "/about");
    assert!(tree.route_of_file(Path::new("/elsewhere/x.rs")).is_none());
}

#[test]
fn a_misspelt_server_file_is_an_error_with_the_rename() {
    let c = Crate::new();
    c.file("dashboard/_sync/refreshData_client.rs", CLIENT)
        .file("dashboard/_sync/refreshData_sever.rs", "");
    let e = c.error();
    assert!(e.contains("refreshData_sever.rs"), "{e}");
    assert!(
        e.contains("rename `refreshData_sever.rs` to `refreshData_server.rs`"),
        "{e}"
    );
    assert!(
        e.contains("never silently become \"send to everyone\""),
        "{e}"
    );
}

#[test]
fn other_files_and_nested_folders_in_a_sync_folder_are_errors() {
    let c = Crate::new();
    c.file("_sync/notes.txt", "")
        .file("_sync/mod.rs", "")
        .dir("_sync/nested")
        .file("_sync/nested/x_client.rs", CLIENT);
    let e = c.error();
    assert!(e.contains("`notes.txt` is not a sync handler"), "{e}");
    assert!(e.contains("`mod.rs` is not a sync handler"), "{e}");
    assert!(e.contains("a folder inside a sync folder"), "{e}");
    assert!(e.contains("nested"), "{e}");
    assert_eq!(
        c.discover().unwrap_err().problems().len(),
        3,
        "every problem is reported, each once: {e}"
    );
}

#[test]
fn a_server_file_without_its_client_is_an_error_naming_the_missing_file() {
    let c = Crate::new();
    c.file("home/_sync/refreshData_server.rs", "pub fn filter() {}");
    let e = c.error();
    assert!(
        e.contains("`refreshData_server.rs` has no `refreshData_client.rs`"),
        "{e}"
    );
    assert!(
        e.contains("add `") && e.contains("home/_sync/refreshData_client.rs` next to it"),
        "{e}"
    );
}

#[test]
fn the_same_name_twice_in_one_route_is_an_error_naming_both_files() {
    let c = Crate::new();
    c.file("dashboard/_sync/refreshData_client.rs", CLIENT)
        .file("dashboard/_dashboardSync/refreshData_client.rs", CLIENT);
    let e = c.error();
    assert!(
        e.contains("_sync/refreshData_client.rs")
            && e.contains("_dashboardSync/refreshData_client.rs"),
        "{e}"
    );
    assert!(
        e.contains("defines `refreshData` (client) more than once"),
        "{e}"
    );
    // Two groups mapping to one route conflict the same way.
    let c = Crate::new();
    c.file("(a)/x/_sync/y_client.rs", CLIENT)
        .file("(b)/x/_sync/y_client.rs", CLIENT);
    assert!(
        c.error()
            .contains("the route `/x` defines `y` (client) more than once")
    );
}

#[test]
fn names_that_are_not_identifiers_are_errors() {
    for bad in ["refresh-data", "2fast", "type", "fn"] {
        let c = Crate::new();
        c.file(&format!("_sync/{bad}_client.rs"), CLIENT);
        let e = c.error();
        assert!(
            e.contains(&format!("`{bad}` is not a valid sync name")),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_duplicate_param_in_one_pattern_is_an_error() {
    let c = Crate::new();
    c.file("[id]/x/[id]/_sync/y_client.rs", CLIENT);
    assert!(c.error().contains("uses the param `[id]` twice"));
}

#[test]
fn handler_files_must_define_what_the_glue_calls() {
    let c = Crate::new();
    c.file("_sync/a_client.rs", "pub fn react() {}")
        .file("_sync/b_client.rs", "pub struct Data;")
        .file("_sync/c_client.rs", CLIENT)
        .file("_sync/c_server.rs", "pub fn gate() {}")
        .file("_sync/d_client.rs", "pub fn react( {");
    let tree = c.discover().expect("the tree itself is valid");
    let problems = sync_build::inspect(&tree).expect_err("the files are not");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(
        text.contains("a_client.rs: a client file must declare the sync's data type `Data`"),
        "{text}"
    );
    assert!(
        text.contains("b_client.rs: a client file must define `pub fn react`"),
        "{text}"
    );
    assert!(
        text.contains("c_server.rs: a server file must define `pub fn filter`"),
        "{text}"
    );
    assert!(text.contains("d_client.rs: does not parse at 1:"), "{text}");
}

#[test]
fn a_react_taking_server_data_without_a_server_file_names_the_route_and_the_sync() {
    let c = Crate::new();
    c.file(
        "posts/[id]/_sync/newComment_client.rs",
        "pub struct Data; pub fn react(cx: sync_runtime::ClientCx<Data, String>) -> Reaction { todo!() }",
    )
    .file(
        "posts/[id]/_sync/plain_client.rs",
        "pub struct Data; pub fn react(cx: ClientCx<Data, ()>) -> Reaction { todo!() }",
    )
    .file(
        "posts/[id]/_sync/filtered_client.rs",
        "pub struct Data; pub fn react(cx: ClientCx<Data, String>) -> Reaction { todo!() }",
    )
    .file(
        "posts/[id]/_sync/filtered_server.rs",
        "pub fn filter(cx: ServerCx<super::Data, S, F>) -> Filter<String> { todo!() }",
    );
    let tree = c.discover().expect("the tree is valid");
    let problems = sync_build::inspect(&tree).expect_err("newComment is not");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(
        text.contains("newComment_client.rs: `newComment` on `/posts/[id]`: `react` takes server data `String`, but there is no `newComment_server.rs`"),
        "{text}"
    );
    assert!(text.contains("or take `ClientCx<Data, ()>`"), "{text}");
}

#[test]
fn inspection_tells_async_and_gates_apart() {
    let c = Crate::new();
    c.file(
        "_sync/a_client.rs",
        "pub use crate::x::Thing as Data; pub fn react() {}",
    )
    .file(
        "_sync/a_server.rs",
        "pub async fn filter() {} pub fn gate() {}",
    )
    .file("_sync/b_client.rs", "pub type Data = (); pub fn react() {}")
    .file(
        "_sync/b_server.rs",
        "pub fn filter() {} pub async fn gate() {}",
    )
    .file("_sync/c_client.rs", "pub type Data = (); pub fn react() {}")
    .file(
        "_sync/c_server.rs",
        "pub async fn prepare() {} pub fn class() {} pub fn filter() {}",
    )
    .file("_sync/d_client.rs", "pub type Data = (); pub fn react() {}")
    .file(
        "_sync/d_server.rs",
        "pub fn prepare() {} pub async fn filter() {}",
    );
    let tree = c.discover().expect("valid");
    let inspections = sync_build::inspect(&tree).expect("valid files");
    let root = tree
        .routes()
        .iter()
        .position(|r| r.pattern == "/")
        .expect("root");
    assert_eq!(
        inspections[root],
        vec![
            Inspection {
                filter_async: true,
                gate: Some(false),
                ..Inspection::default()
            },
            Inspection {
                filter_async: false,
                gate: Some(true),
                ..Inspection::default()
            },
            Inspection {
                filter_async: false,
                prepare: Some(true),
                class: true,
                ..Inspection::default()
            },
            Inspection {
                filter_async: true,
                prepare: Some(false),
                ..Inspection::default()
            },
        ]
    );
}

#[test]
fn an_async_class_is_refused_with_where_the_awaiting_goes() {
    let c = Crate::new();
    c.file("_sync/a_client.rs", "pub type Data = (); pub fn react() {}")
        .file(
            "_sync/a_server.rs",
            "pub async fn class() {} pub fn filter() {}",
        )
        .file("_sync/b_client.rs", "pub type Data = (); pub fn react() {}")
        .file(
            "_sync/b_server.rs",
            "pub struct prepare; pub fn filter() {}",
        );
    let tree = c.discover().expect("valid");
    let problems = sync_build::inspect(&tree).expect_err("an async class and a non-fn prepare");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(
        text[0].contains("a_server.rs: `class` must not be async")
            && text[0].contains("`pub async fn prepare`"),
        "{text:?}"
    );
    assert!(
        text[1].contains("b_server.rs: `prepare` in a server file must be a function"),
        "{text:?}"
    );
}

#[test]
fn compile_writes_only_when_the_output_changes() {
    let c = Crate::new();
    c.file("_sync/a_client.rs", CLIENT);
    let out = tempfile::tempdir().expect("out dir");
    let build = || {
        sync_build::configure()
            .routes_dir(c.src())
            .out_dir(out.path())
            .emit_cargo_directives(false)
    };
    // `compile` needs CARGO_MANIFEST_DIR, which cargo sets for tests too.
    let path = build().compile().expect("compiles");
    let first = std::fs::metadata(&path)
        .expect("written")
        .modified()
        .expect("mtime");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with(sync_build::HEADER));
    assert!(
        !sync_build::write_if_changed(&path, &text).expect("no write"),
        "unchanged content is not rewritten"
    );
    build().compile().expect("compiles again");
    assert_eq!(
        std::fs::metadata(&path)
            .expect("still there")
            .modified()
            .expect("mtime"),
        first
    );
    c.file("_sync/b_client.rs", CLIENT);
    build().compile().expect("compiles with a new handler");
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains("pub mod b")
    );
}

#[test]
fn each_route_s_page_rs_is_its_page_with_the_axum_path_of_its_folder() {
    let c = Crate::new();
    c.file("page.rs", "")
        .file("posts/[id]/page.rs", "")
        .file("posts/[id]/comments/[comment]/page.rs", "")
        .file("(public)/pricing/page.rs", "")
        .file("dashboard/_components/page.rs", "")
        .file("dashboard/_sync/refreshData_client.rs", CLIENT);
    let tree = c.discover().expect("valid");
    let pages: Vec<(&str, String, Option<PathBuf>)> = tree
        .routes()
        .iter()
        .map(|r| {
            (
                r.pattern.as_str(),
                r.axum_path(),
                r.page
                    .as_ref()
                    .map(|p| p.strip_prefix(c.src()).expect("under src").to_path_buf()),
            )
        })
        .collect();
    let page = |p: &str| Some(PathBuf::from(p));
    assert_eq!(
        pages,
        [
            ("/", "/".to_owned(), page("page.rs")),
            ("/dashboard", "/dashboard".to_owned(), None),
            ("/posts", "/posts".to_owned(), None),
            (
                "/posts/[id]",
                "/posts/{id}".to_owned(),
                page("posts/[id]/page.rs")
            ),
            (
                "/posts/[id]/comments",
                "/posts/{id}/comments".to_owned(),
                None
            ),
            (
                "/posts/[id]/comments/[comment]",
                "/posts/{id}/comments/{comment}".to_owned(),
                page("posts/[id]/comments/[comment]/page.rs")
            ),
            (
                "/pricing",
                "/pricing".to_owned(),
                page("(public)/pricing/page.rs")
            ),
        ]
    );
}

#[test]
fn two_pages_for_one_route_are_an_error() {
    let c = Crate::new();
    c.file("(a)/pricing/page.rs", "")
        .file("(b)/pricing/page.rs", "");
    let e = c.error();
    assert!(
        e.contains("the route `/pricing` has more than one `page.rs`"),
        "{e}"
    );
}

#[test]
fn the_generated_code_matches_the_golden_file() {
    let root = Path::new("/app/src");
    let tree = RouteTree::from_entries(
        root,
        [
            Entry::file("dashboard/_sync/refreshData_client.rs"),
            Entry::file("dashboard/_sync/refreshData_server.rs"),
            Entry::file("dashboard/_dashboardSync/announce_client.rs"),
            Entry::file("home/_sync/refreshData_client.rs"),
            Entry::file("posts/[id]/_sync/newComment_client.rs"),
            Entry::file("posts/[id]/_sync/newComment_server.rs"),
            Entry::file("_sync/hello_client.rs"),
            Entry::file("about/page.rs"),
            Entry::dir("about"),
            Entry::file("posts/[id]/page.rs"),
            Entry::file("(public)/pricing/page.rs"),
            Entry::file("dashboard/_components/page.rs"),
        ],
    )
    .expect("valid");
    let none = Inspection::default();
    let inspections: Vec<Vec<Inspection>> = tree
        .routes()
        .iter()
        .map(|route| {
            route
                .syncs
                .iter()
                .map(|sync| match (route.pattern.as_str(), sync.name.as_str()) {
                    ("/dashboard", "refreshData") => Inspection {
                        filter_async: true,
                        gate: Some(false),
                        ..none
                    },
                    ("/posts/[id]", "newComment") => Inspection {
                        filter_async: false,
                        gate: None,
                        prepare: Some(true),
                        class: true,
                    },
                    _ => none,
                })
                .collect()
        })
        .collect();
    let text = sync_build::emit(&tree, &inspections, Path::new("/app"));
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sync_routes.rs");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let expected =
        std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 creates it)");
    assert_eq!(
        text, expected,
        "generated code changed; review and rerun with UPDATE_GOLDEN=1"
    );
}
