//! A connection's credential while it lives: renewed by a `refresh` or a resume, and watched until it
//! expires.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, Uri};

use super::inbound;
use crate::auth::{AuthRequest, Who};
use crate::conn::{Conn, Outbound, Phase};
use crate::hub::HubInner;
use crate::membership::millis_until;
use crate::protocol::server::Refreshed;
use crate::protocol::{ErrorCode, close_code};
use crate::roster::View;

/// A connection's new credential (a `refresh`, a resume): its session, view, token and expiry.
pub(super) fn renew(hub: &HubInner, conn: &Conn, who: &Who, view: View, token: Option<Arc<str>>) {
    conn.update_credentials(|c| {
        c.session = who.session.clone();
        c.view = view.clone();
        c.token = token;
        c.expires = who.expires;
    });
    hub.roster.revise(conn.user(), &view);
}

/// A `refresh`: the authenticator runs on the new token (with no headers: the connection's own request
/// is long gone) and must name the same user; the connection then carries on with the new session and
/// expiry. Otherwise `refresh_refused`, and the old credential stays until it expires.
pub(crate) async fn refresh(hub: &Arc<HubInner>, conn: &Arc<Conn>, token: String) {
    let uri = Uri::try_from(format!("{}/ws", hub.config.prefix)).unwrap_or_default();
    let request = AuthRequest {
        headers: HeaderMap::new(),
        uri,
        token: Some(token.clone()),
    };
    let refused = match (hub.auth)(request).await {
        Ok(who) if who.user == *conn.user() && !who.guest => {
            renew(
                hub,
                conn,
                &who,
                hub.view_of(&who.session),
                Some(Arc::from(token)),
            );
            let frame = serde_json::to_string(&Refreshed {
                t: "refreshed",
                expires_in: who.expires.map(millis_until),
            })
            .expect("refreshed has only integers");
            hub.conns.push(conn, Outbound::control(frame));
            watch_expiry(hub, conn);
            return;
        }
        Ok(_) => "the token belongs to another user".to_owned(),
        Err(refusal) => refusal.message().to_owned(),
    };
    inbound::reject(hub, conn, None, ErrorCode::RefreshRefused, &refused);
}

/// Close `conn` with `TOKEN_EXPIRED` once its credential expires unrefreshed. One task per connection
/// with an expiry, holding it weakly, waking at least every minute to let go of a connection gone.
pub(super) fn watch_expiry(hub: &Arc<HubInner>, conn: &Arc<Conn>) {
    if conn.credentials().expires.is_none() || conn.watching_expiry.swap(true, Ordering::AcqRel) {
        return;
    }
    let (hub, conn) = (Arc::downgrade(hub), Arc::downgrade(conn));
    tokio::spawn(async move {
        loop {
            let Some(c) = conn.upgrade().filter(|c| c.phase() != Phase::Gone) else {
                return;
            };
            let Some(at) = c.credentials().expires else {
                c.watching_expiry.store(false, Ordering::Release);
                return;
            };
            drop(c);
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            if !left.is_zero() {
                tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
                continue;
            }
            if let (Some(c), Some(hub)) = (conn.upgrade(), hub.upgrade()) {
                tracing::debug!(target: "sync_runtime::transport", conn = %c.id, "credential expired; closing");
                hub.conns
                    .close(&c, close_code::TOKEN_EXPIRED, "token expired");
            }
            return;
        }
    });
}
