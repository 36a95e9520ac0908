//! The example app: team task lists on `/dashboard`, a live wall on `/home`, boards on `/boards/[id]`,
//! and on every page a live list of who is on it.
//!
//! * `App` is the app's `functions`: an SQLite database (rusqlite, bundled) every filter can query.
//! * `User` is the session: found from the `sid` cookie, by the hub's authenticator and by page handlers.
//!   Switching teams (`POST /team`) hands the new one to the user's live connections, so filters trust it.
//! * Each page's syncs are in its `_sync` folder; page handlers request them with `sync_request!`.
//! * Others see a user's name and team (the hub's presence view): `layout` lists them with markup only.
//! * [`serve`] serves the router with a header-read and an idle timeout (which `axum::serve` lacks).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use sync_runtime::{Backplane, Cursor, Identity, Refusal, SyncHub};

sync_runtime::include_routes!();

pub mod home;
pub mod login;
mod serving;

pub use serving::{Timeouts, serve};

/// The session: who is logged in on a connection or request. Serializable, so that it can travel with a
/// trigger (or a team switch) to the other processes when several share a Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The team, from the database.
    pub team: String,
}

/// The app's backend helpers, shared by page handlers and sync filters: the database.
#[derive(Clone)]
pub struct App {
    db: Arc<Mutex<rusqlite::Connection>>,
    /// How many times a task list was read (`tasks_html`).
    list_reads: Arc<std::sync::atomic::AtomicU64>,
}

impl App {
    /// An in-memory database with three users and a few tasks.
    pub fn seeded() -> App {
        let db = rusqlite::Connection::open_in_memory().expect("SQLite opens in memory");
        Self::seed(db)
    }

    /// A database file that several processes share (seeded on first use): what the app's processes use
    /// when they run behind one Redis, so that a page served by any of them shows the same data.
    pub fn open(path: &str) -> App {
        let db = rusqlite::Connection::open(path)
            .unwrap_or_else(|e| panic!("cannot open the database {path}: {e}"));
        // Several processes write: wait for each other's locks instead of failing.
        db.busy_timeout(std::time::Duration::from_secs(5))
            .expect("a busy timeout can be set");
        Self::seed(db)
    }

    fn seed(db: rusqlite::Connection) -> App {
        db.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, team TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (sid TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name));
             CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, team TEXT NOT NULL, text TEXT NOT NULL, author TEXT NOT NULL);
             INSERT OR IGNORE INTO users VALUES ('alice', 'red'), ('bob', 'red'), ('carol', 'blue');
             INSERT INTO tasks (team, text, author) SELECT * FROM (VALUES
               ('red', 'Ship the sync framework', 'alice'),
               ('red', 'Write the release notes', 'bob'),
               ('blue', 'Plan the offsite', 'carol'))
             WHERE NOT EXISTS (SELECT 1 FROM tasks);
             COMMIT;",
        )
        .expect("the seed is valid SQL");
        App {
            db: Arc::new(Mutex::new(db)),
            list_reads: Arc::default(),
        }
    }

    fn db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // Never held across `.await`: every method here is synchronous.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log `name` in (creating the user on `team` if new); returns the session id for the cookie.
    pub fn login(&self, name: &str, team: &str) -> String {
        let db = self.db();
        let _ = db.execute("INSERT OR IGNORE INTO users VALUES (?1, ?2)", (name, team));
        let sid = login::session_id();
        let _ = db.execute("INSERT INTO sessions VALUES (?1, ?2)", (&sid, name));
        sid
    }

    /// The user of session `sid`.
    pub fn session(&self, sid: &str) -> Option<User> {
        self.db()
            .query_row(
                "SELECT users.name, users.team FROM sessions JOIN users USING (name) WHERE sid = ?1",
                [sid],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        team: r.get(1)?,
                    })
                },
            )
            .ok()
    }

    /// Move `name` to `team`; their user as it is now, `None` for an unknown name.
    pub fn set_team(&self, name: &str, team: &str) -> Option<User> {
        let changed = self
            .db()
            .execute("UPDATE users SET team = ?2 WHERE name = ?1", (name, team))
            .unwrap_or(0);
        (changed == 1).then(|| User {
            name: name.to_owned(),
            team: team.to_owned(),
        })
    }

    /// How many times a task list was read from the database, since the app opened it.
    pub fn list_reads(&self) -> u64 {
        self.list_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Add a task to `team`'s list.
    pub fn add_task(&self, team: &str, text: &str, author: &str) {
        let _ = self.db().execute(
            "INSERT INTO tasks (team, text, author) VALUES (?1, ?2, ?3)",
            (team, text, author),
        );
    }

    /// `team`'s task list as HTML (the fragment the dashboard swaps in).
    pub fn tasks_html(&self, team: &str) -> String {
        self.list_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT text, author FROM tasks WHERE team = ?1 ORDER BY id")
            .expect("a valid query");
        let rows = stmt
            .query_map([team], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map(|rows| rows.flatten().collect::<Vec<_>>())
            .unwrap_or_default();
        rows.iter()
            .map(|(text, author)| {
                format!(
                    "<li>{} <small>by {}</small></li>",
                    escape(text),
                    escape(author)
                )
            })
            .collect()
    }
}

/// Escape text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The `sid` cookie's user, if logged in.
pub fn current_user(app: &App, headers: &HeaderMap) -> Option<User> {
    let cookies = headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
    let sid = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "sid")?
        .1;
    app.session(sid)
}

/// Whether `user` may see the live admin page (`/_sync/admin`): the example's one admin is the user
/// named `admin`.
pub fn is_admin(user: &User) -> bool {
    user.name == "admin"
}

/// The hub: the `sid` cookie authenticates a WebSocket, the database is every filter's `functions`; it
/// keeps Prometheus metrics, served at `/metrics`.
pub fn hub(app: App) -> SyncHub {
    hub_with(app, None)
}

/// The hub, sharing triggers with the app's other processes through `backplane` when given (call inside
/// a Tokio runtime then).
///
/// Everyone on a page sees who else is there by name and team (the presence view); the session id never
/// leaves the server. The user named `admin` also gets the live admin page at `/_sync/admin`.
pub fn hub_with(app: App, backplane: Option<Backplane>) -> SyncHub {
    let auth_app = app.clone();
    let builder = SyncHub::builder()
        .authenticate(move |req| {
            let user = req.cookie("sid").and_then(|sid| auth_app.session(sid));
            async move {
                let user = user.ok_or_else(|| Refusal::new("log in first"))?;
                Ok(Identity::new(user.name.clone(), user))
            }
        })
        .presence(|user: &User| serde_json::json!({ "name": user.name, "team": user.team }))
        // The live admin page at /_sync/admin, for the user named `admin` (the example has no passwords:
        // a real app checks a role its own database grants).
        .admin(is_admin)
        .metrics()
        .functions(app);
    match backplane {
        Some(backplane) => builder.backplane(backplane),
        None => builder,
    }
    .build()
    .expect("every handler uses User and App")
}

/// The app's routes, with the sync endpoints and the hub in scope for `sync_request!`. Page handlers
/// take the database as the hub's `Functions<App>`, and the hub itself, as extractors; the pages with
/// syncs are `pages::<route>`, each with the `PATH` of its folder.
pub fn router(hub: &SyncHub) -> Router {
    hub.attach(
        Router::new()
            .route("/", get(|| async { Redirect::to("/dashboard") }))
            .route("/login", get(login::form).post(login::submit))
            .route("/logout", get(login::logout))
            .route("/team", axum::routing::post(login::switch_team))
            .route(pages::dashboard::PATH, get(pages::dashboard::show))
            .route(
                "/dashboard/tasks",
                axum::routing::post(pages::dashboard::add_task),
            )
            .route("/home", get(home::show))
            .route(pages::boards__id::PATH, get(pages::boards__id::show))
            // Prometheus scrapes the hub's series here (docs/METRICS.md); a public deployment would put
            // it behind its own guard or on an internal port.
            .route("/metrics", hub.metrics_route()),
    )
}

/// A full page around `body`: navigation, the connection indicator, who is here, and the sync client.
/// With a `cursor` (its path's position, taken before the page's data was read), the sync client connects
/// from it: a change between this render and the connect still reaches the page.
///
/// "Here now" is markup only: the sync client fills `data-sync-presence` with one copy of its template
/// per user on this page (however many tabs or servers they are on) and `data-sync-presence-count` with
/// the count, from the hub's presence view (`name`, `team`), as text, never as HTML.
pub fn layout(title: &str, user: &User, body: &str, cursor: Option<&Cursor>) -> Response {
    let cursor = cursor.map(Cursor::meta).unwrap_or_default();
    Html(format!(
        r##"<!doctype html>
<html lang="en" data-sync-state="connecting">
<head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{cursor}
<title>{title} · sync example</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }}
  nav {{ display: flex; gap: 1.2rem; align-items: center; padding: .8rem 1.5rem; background: #1d2330; }}
  nav a {{ color: #dfe3ea; text-decoration: none; }} nav a:hover {{ color: #fff; }}
  nav .who {{ margin-left: auto; color: #9aa3b2; }}
  .conn::before {{ content: "●"; margin-right: .35rem; }}
  .conn::after {{ content: "connecting"; }}
  html[data-sync-state="open"] .conn {{ color: #3ccf7a; }} html[data-sync-state="open"] .conn::after {{ content: "live"; }}
  html[data-sync-state="reconnecting"] .conn {{ color: #f2b33d; }} html[data-sync-state="reconnecting"] .conn::after {{ content: "reconnecting"; }}
  html[data-sync-state="closed"] .conn {{ color: #e5534b; }} html[data-sync-state="closed"] .conn::after {{ content: "offline"; }}
  main {{ max-width: 44rem; margin: 2rem auto; padding: 0 1.5rem; }}
  .card {{ background: #fff; border-radius: 10px; padding: 1.2rem 1.5rem; box-shadow: 0 1px 3px #0001; margin-bottom: 1.2rem; }}
  h1 {{ font-size: 1.5rem; margin: 0 0 1rem; }} h2 {{ font-size: 1.1rem; margin: 0 0 .6rem; }}
  ul {{ padding-left: 1.2rem; margin: 0; }} li {{ margin: .25rem 0; }} small {{ color: #7a8394; }}
  form {{ display: flex; gap: .5rem; margin-top: 1rem; }}
  input, select {{ flex: 1; padding: .5rem .7rem; border: 1px solid #cdd3dd; border-radius: 6px; font: inherit; }}
  button {{ padding: .5rem 1rem; border: 0; border-radius: 6px; background: #3b6df0; color: #fff; font: inherit; cursor: pointer; }}
  form.compact {{ width: fit-content; align-items: center; font-size: .9rem; }} form.compact select {{ flex: none; }}
  .team {{ display: inline-block; padding: 0 .5rem; border-radius: 4px; background: #e8edfb; color: #3b6df0; }}
  .here {{ display: flex; flex-wrap: wrap; align-items: center; gap: .5rem .8rem; margin-bottom: 1.2rem; font-size: .9rem; }}
  .here h2 {{ margin: 0; font-size: .9rem; color: #7a8394; }}
  .here h2 b {{ display: inline-block; min-width: 1.3rem; margin-left: .35rem; border-radius: 999px; background: #3ccf7a; color: #fff; text-align: center; }}
  .here ul {{ display: flex; flex-wrap: wrap; gap: .4rem; padding: 0; list-style: none; }}
  .here li {{ display: flex; align-items: center; gap: .4rem; margin: 0; padding: .15rem .55rem .15rem .15rem; border-radius: 999px; background: #fff; box-shadow: 0 1px 3px #0001; }}
  .here .team {{ font-size: .8rem; }}
  /* The circle shows the name's first letter only: the rest of the name is there at size 0. */
  .avatar {{ display: inline-block; width: 1.6rem; height: 1.6rem; border-radius: 50%; overflow: hidden; background: #7a8394; color: #fff; font-size: 0; line-height: 1.6rem; text-align: center; white-space: nowrap; }}
  .avatar::first-letter {{ font-size: .85rem; font-weight: 600; text-transform: uppercase; }}
  .avatar[data-team="red"] {{ background: #e5534b; }} .avatar[data-team="blue"] {{ background: #3b6df0; }}
</style>
</head>
<body>
<nav><a href="/dashboard">Dashboard</a><a href="/home">Home</a><a href="/boards/1">Board 1</a><a href="/boards/2">Board 2</a>
{admin}<span class="who">{name} <span class="team">{team}</span> · <a href="/logout">log out</a></span><span class="conn"></span></nav>
<main>
<aside class="here" aria-label="Who is on this page"><h2>Here now<b data-sync-presence-count>0</b></h2>
<ul data-sync-presence><template><li><span class="avatar" aria-hidden="true" data-sync-field="name" data-sync-attr="data-team:team"></span><span data-sync-field="name"></span><span class="team" data-sync-field="team"></span></li></template></ul></aside>
{body}</main>
<script type="module">
  import {{ sync }} from "/_sync/client.js";
  window.syncClient = sync();
</script>
</body>
</html>"##,
        name = escape(&user.name),
        team = escape(&user.team),
        admin = if is_admin(user) {
            r#"<a href="/_sync/admin" class="admin">Admin</a>"#
        } else {
            ""
        },
    ))
    .into_response()
}
