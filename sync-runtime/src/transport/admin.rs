//! `GET <prefix>/admin`: the admin page, to the sessions the app's check accepts (see
//! [`SyncHubBuilder::admin`](crate::SyncHubBuilder::admin)). The page is one self-contained file; its data
//! comes over the framework's own connection, from the admin route's `live` sync (`crate::admin`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::authenticate;
use crate::SyncHub;

/// The page: inline CSS, a module script that imports `<prefix>/client.js`, no other asset.
const ADMIN_HTML: &str = include_str!("../../client/admin.html");

/// Where the page learns the prefix (HTML-escaped into a `<meta>`; never into the script).
const PREFIX_SLOT: &str = "{{prefix}}";

#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    token: Option<String>,
}

/// What neither a browser nor a proxy may keep, and no other site may frame.
fn private(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn forbidden(reason: impl Into<String>) -> Response {
    private(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        reason.into(),
    )
}

/// The app's authenticator on the request, then its admin check: the page, or `403` with the reason.
pub(super) async fn page(
    State(hub): State<SyncHub>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let inner = &hub.inner;
    let Some(admin) = &inner.admin else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let who = match authenticate(inner, headers, uri, query.token).await {
        Ok((who, _token)) => who,
        Err(refused) => return forbidden(format!("forbidden: {}", refused.message)),
    };
    if !admin.allows(&who.session) {
        tracing::warn!(target: "sync_runtime::admin", user = %who.user, "refused the admin page: the app's check said no");
        return forbidden("forbidden: the admin page is for admins only");
    }
    let page = ADMIN_HTML.replace(PREFIX_SLOT, &escape(&inner.config.prefix));
    private(StatusCode::OK, "text/html; charset=utf-8", page)
}

/// `text` safe inside an HTML attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_self_contained_and_has_one_prefix_slot() {
        let page = super::ADMIN_HTML;
        assert_eq!(page.matches(super::PREFIX_SLOT).count(), 1);
        for external in ["http://", "https://", "<link", "src=\""] {
            assert!(!page.contains(external), "the page loads `{external}`");
        }
        assert_eq!(super::escape(r#"/a"><x>"#), "/a&quot;&gt;&lt;x&gt;");
    }
}
