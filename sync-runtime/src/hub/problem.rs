//! Why a hub cannot be built: every problem `build` finds, each a variant callers can match.

/// Why [`SyncHubBuilder::build`] failed: every problem found, each matchable.
///
/// ```
/// use sync_runtime::{BuildProblem, SyncHub};
///
/// let error = SyncHub::builder().build().expect_err("no authenticator");
/// assert!(matches!(error.problems(), [BuildProblem::NoAuthenticator]));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the sync hub cannot be built:{}", .problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct BuildError {
    pub(super) problems: Vec<BuildProblem>,
}

impl BuildError {
    /// What is wrong, in the order found.
    pub fn problems(&self) -> &[BuildProblem] {
        &self.problems
    }
}

/// One reason a hub cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildProblem {
    /// Neither `authenticate` nor `guests` was called.
    #[error(
        "no authenticator: call `.authenticate(..)` to map requests to sessions, or `.guests()` to admit everyone"
    )]
    NoAuthenticator,
    /// A filter or gate expects another session type than the authenticator produces.
    #[error(
        "{file}: `filter` takes session type `{expected}`, but the hub's authenticator produces `{actual}`"
    )]
    SessionType {
        /// The handler file.
        file: &'static str,
        /// What the handler takes.
        expected: &'static str,
        /// What the hub has.
        actual: &'static str,
    },
    /// A filter or gate expects another functions type than the hub was given.
    #[error("{file}: `filter` takes functions type `{expected}`, but the hub was given `{actual}`")]
    FunctionsType {
        /// The handler file.
        file: &'static str,
        /// What the handler takes.
        expected: &'static str,
        /// What the hub has.
        actual: &'static str,
    },
    /// Two registrations of one sync (the route tree included by two crates).
    #[error(
        "`{name}` on `{route}` is registered twice ({file}); is the route tree included by two crates?"
    )]
    Duplicate {
        /// The route pattern.
        route: &'static str,
        /// The sync name.
        name: &'static str,
        /// Its client file.
        file: &'static str,
    },
    /// An entry of `allowed_origins` is not an origin.
    #[error("`{0}` in `allowed_origins` is not an origin: expected scheme://host[:port]")]
    BadOrigin(String),
    /// `.backplane(..)` came before `.authenticate(..)`.
    #[error(
        "`.backplane(..)` was called before `.authenticate(..)`: call it after, so that the session type it carries between nodes is the one the authenticator produces"
    )]
    BackplaneBeforeAuthenticate,
    /// A sync's data cannot cross nodes.
    #[error(
        "{file}: `Data` must implement `Serialize` to cross nodes on the backplane: add `#[derive(serde::Serialize)]`"
    )]
    DataNotSerialize {
        /// The client file declaring `Data`.
        file: &'static str,
    },
    /// The backplane's configuration cannot work (e.g. its URL).
    #[error("{0}")]
    Backplane(String),
    /// `.presence(..)` came before `.authenticate(..)`.
    #[error(
        "`.presence(..)` was called before `.authenticate(..)`: call it after, so that it maps the session type the authenticator produces"
    )]
    PresenceBeforeAuthenticate,
    /// `.admin(..)` came before `.authenticate(..)`.
    #[error(
        "`.admin(..)` was called before `.authenticate(..)`: call it after, so that its check takes the session type the authenticator produces"
    )]
    AdminBeforeAuthenticate,
    /// `build` ran outside a Tokio runtime while a backplane needs one.
    #[error(
        "the backplane starts its connections when the hub is built: call `build()` inside a Tokio runtime"
    )]
    NoRuntime,
    /// Handler files exist in the crate being run, but no sync is registered: the generated route tree
    /// is not included.
    #[error(
        "no sync is registered, but the crate has handler files ({}): add `sync_runtime::include_routes!();` at the crate root (main.rs or lib.rs)",
        .files.join(", ")
    )]
    RoutesNotIncluded {
        /// Some of the handler files found (relative to the crate).
        files: Vec<String>,
    },
}

/// Up to three handler files (`<name>_client.rs` in a folder whose name ends in `sync` or `Sync`) under
/// `crate_dir/src`, relative to `crate_dir`.
pub(super) fn handler_files(crate_dir: &std::path::Path) -> Vec<String> {
    walkdir::WalkDir::new(crate_dir.join("src"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| {
            let in_sync_folder = entry
                .path()
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("sync") || n.ends_with("Sync"));
            in_sync_folder
                && entry.file_type().is_file()
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with("_client.rs"))
        })
        .take(3)
        .map(|entry| {
            let path = entry.path();
            path.strip_prefix(crate_dir)
                .unwrap_or(path)
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_files_are_found_in_sync_folders_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in [
            "src/dashboard/_sync/refreshData_client.rs",
            "src/dashboard/_sync/refreshData_server.rs",
            "src/dashboard/page.rs",
            "src/other/not_client.rs",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, "").expect("write");
        }
        assert_eq!(
            handler_files(dir.path()),
            ["src/dashboard/_sync/refreshData_client.rs"]
        );
        let empty = tempfile::tempdir().expect("temp dir");
        assert!(handler_files(empty.path()).is_empty());
        let problem = BuildProblem::RoutesNotIncluded {
            files: handler_files(dir.path()),
        };
        assert_eq!(
            problem.to_string(),
            "no sync is registered, but the crate has handler files (src/dashboard/_sync/refreshData_client.rs): add `sync_runtime::include_routes!();` at the crate root (main.rs or lib.rs)"
        );
    }
}
