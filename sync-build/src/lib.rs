//! Build-time half of the sync framework: discovers the `_sync` folders under a crate's routes root and
//! generates the code that registers every handler under its route.
//!
//! In `build.rs`'s `main`:
//!
//! ```no_run
//! sync_build::compile().unwrap_or_else(|e| panic!("{e}"));
//! ```
//!
//! and once, at the crate root: `sync_runtime::include_routes!();`.
//!
//! It also writes the TypeScript declarations of every route's syncs, `sync_types.d.ts`, beside the
//! generated code; the hub serves them at `<prefix>/types.d.ts` (see [`declarations`]).
//!
//! The rules (SPEC section 2): every folder under the root is a path segment, except `_folders` (their
//! content belongs to the enclosing route), `(group)` folders (no segment) and `[param]` folders (a dynamic
//! segment). A folder whose name ends in `sync` or `Sync` is a sync folder of the enclosing route and may
//! hold only `<name>_client.rs` (required) and `<name>_server.rs` (optional).

mod emit;
mod inspect;
mod model;
mod typescript;

use std::fmt;
use std::path::{Path, PathBuf};

pub use emit::{HEADER, emit};
pub use inspect::{Inspection, inspect};
pub use model::{Entry, Problem, Route, RouteRef, RouteTree, SyncHandler, is_valid_name};
pub use typescript::{CLIENT_MODULE, Declarations, TYPES_FILE, Warning, declarations};

/// The generated file's name in the output folder.
pub const OUTPUT_FILE: &str = "sync_routes.rs";

/// Why the route tree could not be compiled.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The tree breaks the rules; every problem found, each with its files and fix.
    Invalid(Vec<Problem>),
    /// A file or folder could not be read or written.
    Io {
        /// Which one.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A required environment variable (set by cargo for build scripts) is missing.
    MissingEnv(&'static str),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The problems, when the tree is invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(problems) => {
                writeln!(
                    f,
                    "sync-build found {} problem(s) in the route tree:",
                    problems.len()
                )?;
                for p in problems {
                    writeln!(f, "- {p}")?;
                }
                Ok(())
            }
            Error::Io { path, source } => write!(
                f,
                "sync-build could not access {}: {source}",
                path.display()
            ),
            Error::MissingEnv(var) => write!(
                f,
                "sync-build: `{var}` is not set; call it from a build script (build.rs)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Configures the discovery and generation. Start with [`configure`].
#[derive(Debug, Clone)]
pub struct Builder {
    routes_dir: PathBuf,
    out_dir: Option<PathBuf>,
    emit_cargo_directives: bool,
    pages: bool,
}

/// Start configuring: `sync_build::configure().routes_dir("app").compile()`.
pub fn configure() -> Builder {
    Builder {
        routes_dir: PathBuf::from("src"),
        out_dir: None,
        emit_cargo_directives: true,
        pages: true,
    }
}

/// Discover the routes under `src/` and generate the registration code: `configure().compile()`.
pub fn compile() -> Result<(), Error> {
    configure().compile().map(|_| ())
}

impl Builder {
    /// The routes root. Default: `src` (relative paths are relative to the crate's `CARGO_MANIFEST_DIR`).
    pub fn routes_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.routes_dir = dir.into();
        self
    }

    /// Where `sync_routes.rs` is written. Default: `$OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for the routes root, and `cargo:rustc-env` for
    /// `SYNC_ROUTES_DIR` (which `sync_request!` reads) and `SYNC_ROUTES_FILE` (which `include_routes!`
    /// reads). Default: `true`.
    pub fn emit_cargo_directives(mut self, on: bool) -> Self {
        self.emit_cargo_directives = on;
        self
    }

    /// Whether every route's `page.rs` is included as `pages::<route>` (with `PATH`, the route's path
    /// in axum's syntax), so that a page under `[param]` or `(group)` folders needs no `#[path]`. Turn it
    /// off in a crate that declares its page modules itself (a `page.rs` must not be compiled twice).
    /// Default: `true`.
    pub fn pages(mut self, on: bool) -> Self {
        self.pages = on;
        self
    }

    /// Discover, validate, inspect and write `sync_routes.rs` and the TypeScript declarations
    /// `sync_types.d.ts` beside it (each only if its content changed); every part of a type the
    /// declarations cannot see is a `cargo:warning`. Returns the path of `sync_routes.rs`.
    pub fn compile(&self) -> Result<PathBuf, Error> {
        let manifest_dir = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .ok_or(Error::MissingEnv("CARGO_MANIFEST_DIR"))?,
        );
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => PathBuf::from(std::env::var_os("OUT_DIR").ok_or(Error::MissingEnv("OUT_DIR"))?),
        };
        let root = manifest_dir.join(&self.routes_dir);
        let root = root.canonicalize().map_err(|e| Error::io(&root, e))?;
        if self.emit_cargo_directives {
            // Cargo rescans a folder given here for any change below it, so adding, renaming or removing a
            // handler reruns this script with a plain `cargo build`.
            println!("cargo:rerun-if-changed={}", root.display());
            println!("cargo:rustc-env=SYNC_ROUTES_DIR={}", root.display());
        }
        let mut tree = RouteTree::discover(&root)?;
        if !self.pages {
            tree = tree.without_pages();
        }
        let inspections = inspect(&tree).map_err(Error::Invalid)?;
        let text = emit(&tree, &inspections, &manifest_dir);
        let path = out_dir.join(OUTPUT_FILE);
        // Before the Rust file, which includes it.
        let types = declarations(&tree);
        if self.emit_cargo_directives {
            for warning in &types.warnings {
                println!("cargo:warning={warning}");
            }
        }
        write_if_changed(&out_dir.join(TYPES_FILE), &types.text)?;
        write_if_changed(&path, &text)?;
        if self.emit_cargo_directives {
            // Where `include_routes!()` finds it (also when `out_dir` moved it).
            println!("cargo:rustc-env=SYNC_ROUTES_FILE={}", path.display());
        }
        Ok(path)
    }
}

/// Write `text` to `path` unless it already holds exactly that (keeps mtimes, and so rebuilds, minimal).
pub fn write_if_changed(path: &Path, text: &str) -> Result<bool, Error> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
    Ok(true)
}
