//! The dashboard page and adding a task (the page's team switch posts to `/team`, see `login`).

use axum::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sync_runtime::prelude::*;

use crate::syncs::dashboard::refreshData;
use crate::{App, current_user, escape, layout};

/// `GET /dashboard`.
pub async fn show(Functions(app): Functions<App>, hub: SyncHub, headers: HeaderMap) -> Response {
    let Some(user) = current_user(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    // Where /dashboard's history stands before its tasks are read: the page connects from there, so a task
    // added between this read and the page's connect still reaches it (at worst twice: the page shows what
    // the read found, then the reaction; `refreshData` replaces the list, so twice is harmless).
    let cursor = hub.cursor("/dashboard").await.ok();
    let body = format!(
        r##"<h1>{greeting}</h1>
<div class="card"><h2>Team <span class="team">{team}</span> tasks</h2>
<ul id="tasks">{tasks}</ul>
<form id="add-task"><input name="text" placeholder="A new task for your team" required maxlength="200"><button>Add</button></form></div>
<p><small>Open this page as another member of your team in a second window: new tasks appear there without a reload.
Members of other teams see nothing.</small></p>
<form id="switch-team" class="compact" method="post" action="/team"><small>Moved to another team?</small><select name="team" aria-label="Team">{teams}</select><button>Switch</button></form>
<script type="module">
  const form = document.querySelector("#add-task");
  form.addEventListener("submit", async (e) => {{
    e.preventDefault();
    await fetch("/dashboard/tasks", {{ method: "POST", body: new URLSearchParams(new FormData(form)) }});
    form.reset();
  }});
</script>"##,
        greeting = crate::login::greeting(&user.name),
        team = escape(&user.team),
        tasks = app.tasks_html(&user.team),
        teams = ["red", "blue"]
            .map(|team| {
                let selected = if team == user.team { " selected" } else { "" };
                format!(r#"<option value="{team}"{selected}>team {team}</option>"#)
            })
            .concat(),
    );
    layout("Dashboard", &user, &body, cursor.as_ref())
}

/// The add-task form.
#[derive(serde::Deserialize)]
pub struct NewTask {
    text: String,
}

/// `POST /dashboard/tasks`: store the task, then refresh the team's lists everywhere.
pub async fn add_task(
    Functions(app): Functions<App>,
    headers: HeaderMap,
    Form(task): Form<NewTask>,
) -> Response {
    let Some(user) = current_user(&app, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let text = task.text.trim();
    if text.is_empty() || text.len() > 200 {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    app.add_task(&user.team, text, &user.name);
    // Every user on /dashboard is considered; the filter keeps the team's members only.
    let outcome = sync_request!("refreshData", refreshData::Data { team: user.team }).await;
    match outcome {
        Ok(o) => axum::Json(serde_json::json!({ "delivered": o.delivered, "matched": o.matched }))
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
