//! Log in by name (the example has no passwords); the session lives in a `sid` cookie. A logged-in user
//! can switch teams, and their open pages follow without reconnecting.

use axum::Form;
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse, Redirect, Response};
use sync_runtime::{Functions, SyncHub};

use crate::{App, current_user, escape};

/// The login form's fields.
#[derive(serde::Deserialize)]
pub struct Login {
    name: String,
    team: String,
}

/// `GET /login`.
pub async fn form() -> Html<&'static str> {
    Html(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in · sync example</title>
<style>body{font:16px/1.5 system-ui,sans-serif;background:#f6f7f9;display:grid;place-items:center;height:100vh;margin:0}
form{background:#fff;padding:2rem;border-radius:10px;box-shadow:0 1px 3px #0001;display:grid;gap:.8rem;width:18rem}
input,select,button{padding:.5rem .7rem;border:1px solid #cdd3dd;border-radius:6px;font:inherit}
button{background:#3b6df0;color:#fff;border:0}</style></head>
<body><form method="post" action="/login"><h1 style="margin:0;font-size:1.3rem">Log in</h1>
<input name="name" placeholder="alice, bob or carol (or anyone new; admin sees /_sync/admin)" required autofocus>
<select name="team"><option value="red">team red</option><option value="blue">team blue</option></select>
<button>Log in</button><small>Existing users keep their team.</small></form></body></html>"##,
    )
}

/// `POST /login`: set the session cookie and go to the dashboard.
pub async fn submit(Functions(app): Functions<App>, Form(login): Form<Login>) -> Response {
    let name = login.name.trim();
    if name.is_empty() || name.len() > 40 {
        return Redirect::to("/login").into_response();
    }
    let sid = app.login(name, &login.team);
    (
        [(
            SET_COOKIE,
            format!("sid={sid}; Path=/; HttpOnly; SameSite=Lax"),
        )],
        Redirect::to("/dashboard"),
    )
        .into_response()
}

/// The team switch's field.
#[derive(serde::Deserialize)]
pub struct TeamSwitch {
    team: String,
}

/// `POST /team`: move the user to another team, in the database and in every live connection they have
/// (on every process): the dashboard's filter reads the team from the connection's session, so the
/// user's next update is their new team's, and the others' "here now" lists show the new team.
pub async fn switch_team(
    Functions(app): Functions<App>,
    hub: SyncHub,
    headers: HeaderMap,
    Form(switch): Form<TeamSwitch>,
) -> Response {
    let Some(user) = current_user(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let team = switch.team.trim();
    if team.is_empty() || team.len() > 40 {
        return Redirect::to("/dashboard").into_response();
    }
    if let Some(moved) = app.set_team(&user.name, team) {
        hub.update_session(&user.name, moved)
            .expect("`User` is the session type the hub's authenticator produces");
    }
    Redirect::to("/dashboard").into_response()
}

/// `GET /logout`.
pub async fn logout() -> Response {
    (
        [(SET_COOKIE, "sid=; Path=/; Max-Age=0".to_owned())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// A new session id: 128 bits from the OS's random source, as 32 lowercase hex digits. Whoever guesses
/// one is logged in as its user, so it must not be derivable from anything an attacker sees or can time
/// (a hasher's seed, a counter, the clock).
pub fn session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS's random source is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Used by pages for the user's name in headings.
pub fn greeting(name: &str) -> String {
    format!("Hello, {}", escape(name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_ids_are_random_32_hex_digits() {
        let (a, b) = (super::session_id(), super::session_id());
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
    }

    #[test]
    fn each_login_gets_its_own_session() {
        let app = crate::App::seeded();
        let (first, second) = (app.login("alice", "red"), app.login("alice", "red"));
        assert_ne!(first, second);
        for sid in [&first, &second] {
            assert_eq!(app.session(sid).expect("a session").name, "alice");
        }
    }
}
