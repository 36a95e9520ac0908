//! Who is asking: the request an authenticator sees, the identity it returns, and the `Origin` check that
//! runs before it. Admission (the per-user connection cap) counts in `conns`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderMap, Uri, header};

use crate::Refusal;
use crate::handler::{AnyArc, BoxFuture};

/// What an authenticator sees of an upgrade request.
///
/// The token is taken from `Authorization: Bearer <token>`, else from the `token` query parameter (browsers
/// cannot set headers on a WebSocket; cookies work as usual through [`AuthRequest::cookie`]).
#[derive(Clone)]
pub struct AuthRequest {
    pub(crate) headers: HeaderMap,
    pub(crate) uri: Uri,
    pub(crate) token: Option<String>,
}

impl fmt::Debug for AuthRequest {
    // Credentials never reach a log through `Debug`: the token, the query (which may carry `token=`),
    // and the `Authorization` and `Cookie` headers are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let redact =
                    k == axum::http::header::AUTHORIZATION || k == axum::http::header::COOKIE;
                (
                    k.as_str(),
                    if redact {
                        "<redacted>"
                    } else {
                        v.to_str().unwrap_or("<binary>")
                    },
                )
            })
            .collect();
        f.debug_struct("AuthRequest")
            .field("path", &self.uri.path())
            .field("headers", &headers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AuthRequest {
    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The presented token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The value of cookie `name`, if the request carries it.
    ///
    /// ```
    /// # use sync_runtime::AuthRequest;
    /// # fn f(req: &AuthRequest) -> Option<&str> {
    /// req.cookie("session")
    /// # }
    /// ```
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Who a connection belongs to: a stable user key and the app's session value.
///
/// The identity is bound to the connection when it opens and never re-derived per request: a resume and
/// every SSE `POST` act for the connection's own identity.
#[derive(Debug, Clone)]
pub struct Identity<S> {
    user: String,
    session: S,
    guest: bool,
    expires: Option<std::time::SystemTime>,
}

impl<S> Identity<S> {
    /// `user` groups connections (two tabs of one user); `session` is what handlers see.
    pub fn new(user: impl Into<String>, session: S) -> Self {
        Identity {
            user: user.into(),
            session,
            guest: false,
            expires: None,
        }
    }

    /// The credential stops being valid at `at` (a JWT's `exp`): the connection is closed with
    /// [`TOKEN_EXPIRED`](crate::close_code::TOKEN_EXPIRED) then, unless its client refreshes it over the
    /// live connection first (a `refresh` message, which runs the authenticator again with the new token).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sync_runtime::Identity;
    ///
    /// let identity = Identity::new("alice", ()).expires_at(SystemTime::now() + Duration::from_secs(900));
    /// # drop(identity);
    /// ```
    pub fn expires_at(mut self, at: std::time::SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// An anonymous visitor: a user key of its own (`guest-` and 128 random bits), so each guest
    /// connection is its own user. Its resume key alone proves a later request is the same visitor, as a
    /// guest has no credential to present again.
    ///
    /// ```
    /// use sync_runtime::{Identity, SyncHub};
    ///
    /// // Logged-in users by their token, everyone else as a guest.
    /// let hub = SyncHub::builder()
    ///     .authenticate(|req| {
    ///         let identity = match req.token() {
    ///             Some(name) => Identity::new(name, Some(name.to_owned())),
    ///             None => Identity::guest(None),
    ///         };
    ///         async move { Ok(identity) }
    ///     })
    ///     .build()
    ///     .expect("a hub");
    /// # drop(hub);
    /// ```
    pub fn guest(session: S) -> Self {
        Identity {
            user: format!("guest-{}", crate::random::hex128()),
            session,
            guest: true,
            expires: None,
        }
    }
}

/// What the hub keeps of an [`Identity`] once the session's type is erased.
#[derive(Clone)]
pub(crate) struct Who {
    pub user: Arc<str>,
    pub session: AnyArc,
    pub guest: bool,
    /// When the credential expires, if it does.
    pub expires: Option<std::time::SystemTime>,
}

pub(crate) type AuthFn = Arc<dyn Fn(AuthRequest) -> BoxFuture<Result<Who, Refusal>> + Send + Sync>;

/// Erase an authenticator's session type.
pub(crate) fn erase<S, Fut>(auth: impl Fn(AuthRequest) -> Fut + Send + Sync + 'static) -> AuthFn
where
    S: Send + Sync + 'static,
    Fut: Future<Output = Result<Identity<S>, Refusal>> + Send + 'static,
{
    Arc::new(move |req| {
        let fut = auth(req);
        Box::pin(async move {
            let id = fut.await?;
            Ok(Who {
                user: Arc::from(id.user),
                session: Arc::new(id.session) as AnyArc,
                guest: id.guest,
                expires: id.expires,
            })
        })
    })
}

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// A web origin: scheme, host and port, compared the way browsers do (SPEC 7: the same scheme, host and
/// port, with the scheme's default port filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]`, nothing after it; `None` for anything else (including the opaque `null`).
    pub fn parse(text: &str) -> Option<Origin> {
        let uri: Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || uri.path_and_query().is_some_and(|p| p != "/") {
            return None;
        }
        let default = match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        Some(Origin {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().or(default),
            scheme,
        })
    }
}

/// Which browser origins may connect: the server's own (its `Host`, with the scheme the request came in
/// on) and those listed with [`allowed_origins`](crate::SyncHubBuilder::allowed_origins).
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
    pub allowed: Vec<Origin>,
}

impl OriginPolicy {
    /// Whether a request with these headers may go on. Requests without an `Origin` are not from a
    /// browser and pass; the check stops cross-site WebSocket hijacking (and cross-site posts to the SSE
    /// endpoint) with the victim's cookies.
    ///
    /// The server's own scheme is `X-Forwarded-Proto` when a proxy that terminates TLS sets it (a browser
    /// cannot set that header on a WebSocket upgrade or an `EventSource`), else `http`: a server that
    /// terminates TLS itself lists its `https://` origin in `allowed_origins`.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            return false;
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map_or("http", str::trim);
        let own = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|host| Origin::parse(&format!("{scheme}://{host}")));
        own.is_some_and(|own| own == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, v.parse().expect("a header value"));
        }
        headers
    }

    #[test]
    fn an_origin_with_another_scheme_is_refused() {
        let policy = OriginPolicy::default();
        let from = |origin| headers(&[("host", "app.test:3000"), ("origin", origin)]);
        assert!(policy.allows(&from("http://app.test:3000")));
        assert!(policy.allows(&from("HTTP://App.Test:3000")));
        assert!(!policy.allows(&from("https://app.test:3000")));
        assert!(!policy.allows(&from("evil://app.test:3000")));
        assert!(!policy.allows(&from("http://app.test:3001")));
        assert!(!policy.allows(&from("http://evil.test:3000")));
        assert!(!policy.allows(&from("null")));
        assert!(
            policy.allows(&headers(&[("host", "app.test")])),
            "no Origin: not a browser"
        );
    }

    #[test]
    fn default_ports_and_forwarded_scheme_are_understood() {
        let policy = OriginPolicy::default();
        assert!(policy.allows(&headers(&[
            ("host", "app.test"),
            ("origin", "http://app.test:80")
        ])));
        let behind_tls = headers(&[
            ("host", "app.test"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://app.test"),
        ]);
        assert!(policy.allows(&behind_tls));
        let downgraded = headers(&[
            ("host", "app.test"),
            ("x-forwarded-proto", "https"),
            ("origin", "http://app.test"),
        ]);
        assert!(!policy.allows(&downgraded));
    }

    #[test]
    fn listed_origins_match_exactly() {
        let policy = OriginPolicy {
            allowed: vec![Origin::parse("https://app.example.com").expect("an origin")],
        };
        let from = |origin| headers(&[("host", "api.example.com"), ("origin", origin)]);
        assert!(policy.allows(&from("https://app.example.com")));
        assert!(policy.allows(&from("https://app.example.com:443")));
        assert!(!policy.allows(&from("http://app.example.com")));
        assert!(Origin::parse("https://a.test/path").is_none());
        assert!(Origin::parse("https://user@a.test").is_none());
    }
}
