//! Plain HTTP requests to the app under test (a login form, a page), over hyper's HTTP/1.1 client: what
//! a test needs to get a session cookie the way a browser does.

use axum::http::{HeaderMap, Method, Request, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::TestServer;

/// An answer from the app: status, headers and body.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text (invalid UTF-8 replaced).
    pub body: String,
}

impl TestResponse {
    /// The cookie `name` the response sets, as the `name=value` pair a request sends back (what
    /// [`Connect::cookie`](super::Connect::cookie) takes).
    ///
    /// ```no_run
    /// # use sync_runtime::testing::TestServer;
    /// # async fn test(app: TestServer) {
    /// let login = app.post_form("/login", &[("name", "alice")], None).await;
    /// let sid = login.cookie("sid").expect("logged in");
    /// let mut alice = app.connect("/dashboard").cookie(sid).await;
    /// # }
    /// ```
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.split_once('=').is_some_and(|(k, _)| k.trim() == name))
            .map(|pair| pair.trim().to_owned())
    }
}

impl TestServer {
    /// `GET path`, with the cookies in `cookie` (`"sid=…"`) when given.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> TestResponse {
        self.send(Method::GET, path, cookie, None).await
    }

    /// `POST path` with `form` URL-encoded (what an HTML form sends), with the cookies in `cookie` when
    /// given.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> TestResponse {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(Method::POST, path, cookie, Some(body)).await
    }

    /// One request on a connection of its own; fails the test if there is no answer in time.
    async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: Option<String>,
    ) -> TestResponse {
        let what = format!("{method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.endpoint.addr.to_string());
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .unwrap_or_else(|e| panic!("{what}: not a request: {e}"));
        let addr = self.endpoint.addr;
        let exchange = async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok::<_, std::io::Error>(TestResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match self.endpoint.within(exchange).await {
            Some(Ok(response)) => response,
            Some(Err(e)) => panic!("{what} failed: {e}"),
            None => panic!("{what}: no answer within {:?}", self.endpoint.timeout),
        }
    }
}
