//! The error a request's caller gets.

use crate::protocol::ErrorCode;

/// A request's failure: a stable [`ErrorCode`] to match on and a message for people.
///
/// ```no_run
/// # async fn f(hub: sync_runtime::SyncHub) {
/// use sync_runtime::ErrorCode;
///
/// match hub.request("/dashboard", "refreshData", serde_json::json!({})).await {
///     Ok(outcome) => println!("delivered to {}", outcome.delivered),
///     Err(e) if e.code == ErrorCode::Overloaded => println!("try later: {e}"),
///     Err(e) => println!("refused: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SyncError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl SyncError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SyncError {
            code,
            message: message.into(),
        }
    }
}
