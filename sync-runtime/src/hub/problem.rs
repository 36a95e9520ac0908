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
    /// `build` ran outside a Tokio runtime while a backplane needs one.
    #[error(
        "the backplane starts its connections when the hub is built: call `build()` inside a Tokio runtime"
    )]
    NoRuntime,
}
