//! What each handler file defines, read with `syn`: so the generated glue calls `filter` and `gate` the
//! right way (async or not), and a missing item is a build error naming the file rather than a type error
//! in generated code.

use std::path::Path;

use crate::model::{Problem, RouteTree, SyncHandler};

/// What a sync's files define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inspection {
    /// `filter` is an `async fn` (only meaningful with a server file).
    pub filter_async: bool,
    /// The server file defines `gate`; `Some(true)` when it is async.
    pub gate: Option<bool>,
    /// The server file defines the once-per-trigger `prepare`; `Some(true)` when it is async.
    pub prepare: Option<bool>,
    /// The server file defines `class`: the filter runs once per class of recipients.
    pub class: bool,
}

enum Found {
    Fn { is_async: bool },
    Other,
}

fn find(file: &syn::File, name: &str) -> Option<Found> {
    file.items.iter().find_map(|item| match item {
        syn::Item::Fn(f) if f.sig.ident == name => Some(Found::Fn {
            is_async: f.sig.asyncness.is_some(),
        }),
        syn::Item::Struct(s) if s.ident == name => Some(Found::Other),
        syn::Item::Enum(e) if e.ident == name => Some(Found::Other),
        syn::Item::Type(t) if t.ident == name => Some(Found::Other),
        syn::Item::Union(u) if u.ident == name => Some(Found::Other),
        syn::Item::Use(u) if use_names(&u.tree, name) => Some(Found::Other),
        _ => None,
    })
}

/// Whether a `use` tree brings `name` into scope (`use a::Data;`, `use a::X as Data;`, `use a::{Data, ..}`).
fn use_names(tree: &syn::UseTree, name: &str) -> bool {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, name),
        syn::UseTree::Name(n) => n.ident == name,
        syn::UseTree::Rename(r) => r.rename == name,
        syn::UseTree::Group(g) => g.items.iter().any(|t| use_names(t, name)),
        syn::UseTree::Glob(_) => false,
    }
}

fn parse(path: &Path, problems: &mut Vec<Problem>) -> Option<syn::File> {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(e) => {
            problems.push(Problem {
                files: vec![path.to_path_buf()],
                message: format!("cannot read it: {e}"),
                fix: "check the file's permissions and encoding (UTF-8)".to_owned(),
            });
            return None;
        }
    };
    match syn::parse_file(&source) {
        Ok(file) => Some(file),
        Err(e) => {
            let start = e.span().start();
            problems.push(Problem {
                files: vec![path.to_path_buf()],
                message: format!("does not parse at {}:{}: {e}", start.line, start.column + 1),
                fix: "fix the syntax error".to_owned(),
            });
            None
        }
    }
}

/// Check one client file's items.
pub fn check_client(path: &Path, file: &syn::File, problems: &mut Vec<Problem>) {
    match find(file, "react") {
        Some(Found::Fn { .. }) => {}
        _ => problems.push(Problem {
            files: vec![path.to_path_buf()],
            message: "a client file must define `pub fn react`".to_owned(),
            fix: "add `pub fn react(cx: sync_runtime::ClientCx<Data, ()>) -> sync_runtime::Reaction { .. }`".to_owned(),
        }),
    }
    if find(file, "Data").is_none() {
        problems.push(Problem {
            files: vec![path.to_path_buf()],
            message: "a client file must declare the sync's data type `Data`".to_owned(),
            fix: "add `#[derive(serde::Deserialize)] pub struct Data { .. }` (or `pub type Data = ..;`, or `pub use path::Type as Data;`)".to_owned(),
        });
    }
}

/// The function named `name` in `file`.
pub(crate) fn function<'a>(file: &'a syn::File, name: &str) -> Option<&'a syn::ItemFn> {
    file.items.iter().find_map(|item| match item {
        syn::Item::Fn(f) if f.sig.ident == name => Some(f),
        _ => None,
    })
}

/// The last segment of a path type as written, and its type arguments: `ClientCx` and `[Data, T]` for
/// `sync_runtime::ClientCx<Data, T>`.
pub(crate) fn type_arguments(ty: &syn::Type) -> Option<(&syn::Ident, Vec<&syn::Type>)> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let types = match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&last.ident, types))
}

/// The server data type `react` takes, as written: `T` of its `ClientCx<Data, T>` parameter.
fn react_server_type(file: &syn::File) -> Option<&syn::Type> {
    let Some(syn::FnArg::Typed(arg)) = function(file, "react")?.sig.inputs.first() else {
        return None;
    };
    let (ident, types) = type_arguments(&arg.ty)?;
    if ident != "ClientCx" {
        return None;
    }
    types.get(1).copied()
}

/// A sync without a server file delivers `()` to every recipient: a `react` that takes other server data
/// would be a type error in the generated code, far from the file and naming neither route nor sync.
fn check_without_server(
    route: &str,
    sync: &SyncHandler,
    file: &syn::File,
    problems: &mut Vec<Problem>,
) {
    let Some(ty) = react_server_type(file) else {
        return;
    };
    if matches!(ty, syn::Type::Tuple(t) if t.elems.is_empty()) {
        return;
    }
    let written = quote::ToTokens::to_token_stream(ty).to_string();
    problems.push(Problem {
        files: vec![sync.client_file.clone()],
        message: format!(
            "`{}` on `{route}`: `react` takes server data `{written}`, but there is no `{}_server.rs` to deliver it (without one, every recipient gets `()`)",
            sync.name, sync.name
        ),
        fix: format!(
            "add `{}_server.rs` beside it with a `filter` returning `Filter<{written}>`, or take `ClientCx<Data, ()>` in `react`",
            sync.name
        ),
    });
}

/// Check one server file's items; what the glue needs to know.
pub fn check_server(path: &Path, file: &syn::File, problems: &mut Vec<Problem>) -> Inspection {
    let filter_async = match find(file, "filter") {
        Some(Found::Fn { is_async }) => is_async,
        _ => {
            problems.push(Problem {
                files: vec![path.to_path_buf()],
                message: "a server file must define `pub fn filter` (or `pub async fn filter`)".to_owned(),
                fix: "add `pub async fn filter(cx: sync_runtime::ServerCx<super::Data, Session, Functions>) -> sync_runtime::Filter<T> { .. }`".to_owned(),
            });
            false
        }
    };
    let gate = optional_fn(
        path,
        file,
        "gate",
        "pub fn gate(cx: sync_runtime::GateCx<..>) -> Result<(), sync_runtime::Refusal>",
        problems,
    );
    let prepare = optional_fn(
        path,
        file,
        "prepare",
        "pub async fn prepare(cx: sync_runtime::PrepareCx<..>) -> Result<T, E>",
        problems,
    );
    let class = match optional_fn(
        path,
        file,
        "class",
        "pub fn class(cx: &sync_runtime::ServerCx<..>) -> K",
        problems,
    ) {
        Some(true) => {
            problems.push(Problem {
                files: vec![path.to_path_buf()],
                message: "`class` must not be async: it runs for every recipient, to group them before any filter".to_owned(),
                fix: "make it `pub fn class(cx: &sync_runtime::ServerCx<..>) -> K` and do the awaiting once per trigger in `pub async fn prepare`, whose result `class` reads as `cx.prepared`".to_owned(),
            });
            false
        }
        Some(false) => true,
        None => false,
    };
    Inspection {
        filter_async,
        gate,
        prepare,
        class,
    }
}

/// An optional function of a server file: `Some(is_async)` when defined; a problem when the name is taken
/// by something else.
fn optional_fn(
    path: &Path,
    file: &syn::File,
    name: &str,
    signature: &str,
    problems: &mut Vec<Problem>,
) -> Option<bool> {
    match find(file, name) {
        Some(Found::Fn { is_async }) => Some(is_async),
        Some(Found::Other) => {
            problems.push(Problem {
                files: vec![path.to_path_buf()],
                message: format!("`{name}` in a server file must be a function"),
                fix: format!("define `{signature}` or rename the item"),
            });
            None
        }
        None => None,
    }
}

/// Read every handler file of the tree; one inspection per sync, in the tree's order.
pub fn inspect(tree: &RouteTree) -> Result<Vec<Vec<Inspection>>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for route in tree.routes() {
        let mut per_route = Vec::new();
        for sync in &route.syncs {
            if let Some(file) = parse(&sync.client_file, &mut problems) {
                check_client(&sync.client_file, &file, &mut problems);
                if sync.server_file.is_none() {
                    check_without_server(&route.pattern, sync, &file, &mut problems);
                }
            }
            let inspection = match &sync.server_file {
                Some(path) => match parse(path, &mut problems) {
                    Some(file) => check_server(path, &file, &mut problems),
                    None => Inspection::default(),
                },
                None => Inspection::default(),
            };
            per_route.push(inspection);
        }
        out.push(per_route);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}
