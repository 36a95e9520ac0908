//! One board's page.

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use sync_runtime::Functions;

use crate::{App, current_user, layout};

/// `GET /boards/{id}`.
pub async fn show(
    Functions(app): Functions<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    let Some(user) = current_user(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let body = format!(
        r##"<h1>Board {id}</h1>
<div class="card"><h2>Who is here</h2>
<p><small>Waves reach the people looking at board {id} only.</small></p>
<ul id="waves"></ul>
<form><button type="button" data-sync="wave" data-sync-data="null">Wave 👋</button></form></div>"##
    );
    layout(&format!("Board {id}"), &user, &body, None)
}
