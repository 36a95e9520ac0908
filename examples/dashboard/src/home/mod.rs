//! `/home`: a live wall for everyone on the page. Posting goes straight from the browser
//! (`<form data-sync="refreshData">`); `/home`'s `refreshData` has nothing to do with `/dashboard`'s.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use sync_runtime::Functions;

use crate::{App, current_user, layout};

/// `GET /home`.
pub async fn show(Functions(app): Functions<App>, headers: HeaderMap) -> Response {
    let Some(user) = current_user(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let body = r##"<h1>Home</h1>
<div class="card"><h2>Live wall</h2>
<p><small>Everyone on this page sees new posts as they happen (they are not stored).</small></p>
<ul id="wall"></ul>
<form data-sync="refreshData"><input name="text" placeholder="Say something to everyone here" required maxlength="280"><button>Post</button></form></div>
<script type="module">
  window.addEventListener("sync:result", () => document.querySelector("#wall + form").reset());
</script>"##;
    layout("Home", &user, body, None)
}
