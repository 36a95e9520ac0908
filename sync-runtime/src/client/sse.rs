//! The client's SSE transport: the event stream is one long `GET`, each message one `POST` on a second,
//! kept-alive connection. HTTP/1.1 is hyper's client (the same hyper axum serves with), the event stream is
//! decoded by `sse-stream`; enough for `http://` URLs.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as ResponseBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Builder;
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use sse_stream::SseStream;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::protocol::server::ServerFrame;

use super::{ClientError, ConnectOptions, Incoming, Outgoing, connect_query};

/// The longest refusal message kept from a response body (the rest is read and dropped).
const MAX_MESSAGE: usize = 16 * 1024;

/// An `http://host[:port]/path[?query]` URL, split.
#[derive(Debug)]
struct Target {
    /// `host:port`, what the sockets connect to (port 80 when the URL has none).
    addr: String,
    /// The `Host` header: the URL's authority as written.
    host: HeaderValue,
    path: String,
    query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, ClientError> {
        let uri: Uri = url.parse().map_err(invalid_input)?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid_input(format!("not an http:// URL: {url}")));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid_input(format!("no host in {url}")))?;
        let mut addr = authority.host().to_owned();
        addr.push(':');
        addr.push_str(&authority.port_u16().unwrap_or(80).to_string());
        Ok(Target {
            addr,
            host: HeaderValue::try_from(authority.as_str()).map_err(invalid_input)?,
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
        })
    }

    /// `path?query`, the request target for this URL with `query` in place of its own.
    fn request_target(&self, query: &str) -> String {
        let mut target = String::with_capacity(self.path.len() + 1 + query.len());
        target.push_str(&self.path);
        target.push('?');
        target.push_str(query);
        target
    }

    /// A request to this URL's server: `Host`, credentials and the caller's headers.
    fn request(&self, method: Method, target: String, options: &ConnectOptions) -> Builder {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, self.host.clone());
        if let Some(token) = &options.token {
            request = request.header(header::AUTHORIZATION, super::bearer(token));
        }
        for (name, value) in &options.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    }
}

/// A bad URL or header: nothing was sent.
fn invalid_input(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ClientError {
    ClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
}

/// The connection failed (or hyper refused what it read).
fn transport(error: hyper::Error) -> ClientError {
    ClientError::Io(std::io::Error::other(error))
}

/// The task that drives one HTTP/1.1 connection; aborted (closing the socket) when dropped.
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 connection to send requests on.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    _driver: Driver,
}

impl Connection {
    async fn open(target: &Target) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(&target.addr)
            .await
            .map_err(ClientError::Io)?;
        stream.set_nodelay(true).map_err(ClientError::Io)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "sync_runtime::client", error = %e, "SSE connection failed");
            }
        });
        Ok(Connection {
            sender,
            _driver: Driver(driver),
        })
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<ResponseBody>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }
}

/// The whole response body, as text, keeping at most [`MAX_MESSAGE`] bytes of it: a refusal's reason, or
/// a `POST`'s empty answer (read to its end so the connection can take the next request).
async fn read_message(mut body: ResponseBody) -> Result<String, hyper::Error> {
    let mut message = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = MAX_MESSAGE.saturating_sub(message.len());
            message.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    Ok(String::from_utf8_lossy(&message).into_owned())
}

/// One SSE connection: the stream being read and the connection that posts.
pub(super) struct SseLink {
    target: Target,
    options: ConnectOptions,
    events: SseStream<ResponseBody>,
    /// The stream's connection: dropping the link closes it.
    _stream: Connection,
    /// The connection's resume key, from `hello`: what a `POST` names.
    key: Option<String>,
    /// The stream's first event (`hello`), read by `open` so that the link can post as soon as it is open.
    first: Option<Incoming>,
    post: Option<Connection>,
}

impl SseLink {
    /// Open the event stream: `GET url?path=…&ack=1`; `resume` goes out as
    /// `Last-Event-ID: <key>.<seq>[.<cursor>]`, as an `EventSource` sends it, and a cursor without one
    /// in the query.
    pub(super) async fn open(
        url: &str,
        options: &ConnectOptions,
        path: Option<&str>,
        resume: Option<(&str, u64)>,
        cursor: Option<&str>,
    ) -> Result<SseLink, ClientError> {
        let target = Target::parse(url)?;
        let query_cursor = if resume.is_some() { None } else { cursor };
        let query = connect_query(&target.query, path, None, query_cursor);
        let mut request = target
            .request(Method::GET, target.request_target(&query), options)
            .header(header::ACCEPT, "text/event-stream");
        if let Some((key, seq)) = resume {
            let mut id = String::with_capacity(key.len() + 21);
            id.push_str(key);
            id.push('.');
            id.push_str(&seq.to_string());
            if let Some(cursor) = cursor {
                id.push('.');
                id.push_str(cursor);
            }
            request = request.header(HeaderName::from_static("last-event-id"), id);
        }
        let request = request.body(Full::default()).map_err(invalid_input)?;
        let mut stream = Connection::open(&target).await?;
        let response = stream.send(request).await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let message = read_message(response.into_body()).await.unwrap_or_default();
            return Err(ClientError::Http {
                status: status.as_u16(),
                message,
            });
        }
        let mut link = SseLink {
            target,
            options: options.clone(),
            events: SseStream::new(response.into_body()),
            _stream: stream,
            key: None,
            first: None,
            post: None,
        };
        // Messages sent before the `hello` would have no key to name: a reconnecting client may have some
        // waiting.
        link.first = Some(link.read().await);
        Ok(link)
    }

    /// The next event's data. Cancel-safe: all state lives in the link between reads.
    pub(super) async fn next(&mut self) -> Incoming {
        match self.first.take() {
            Some(first) => first,
            None => self.read().await,
        }
    }

    /// The next event's data off the stream, noting the resume key from `hello`.
    async fn read(&mut self) -> Incoming {
        loop {
            let data = match self.events.next().await {
                Some(Ok(event)) => match event.data {
                    Some(data) => data,
                    // Comments (keepalives) are skipped by the decoder; a block without data says nothing.
                    None => continue,
                },
                Some(Err(e)) => {
                    tracing::debug!(target: "sync_runtime::client", error = %e, "event stream failed");
                    return Incoming::Dropped;
                }
                // A stream that ends without a `close` event was cut.
                None => return Incoming::Dropped,
            };
            // Frames are compact JSON with the tag first: only `hello` and `close` are looked into here.
            if data.starts_with(r#"{"t":"hello""#) || data.starts_with(r#"{"t":"close""#) {
                match serde_json::from_str::<ServerFrame>(&data) {
                    Ok(ServerFrame::Hello { resume, .. }) => self.key = resume,
                    Ok(ServerFrame::Close { code, reason }) => {
                        return Incoming::Close(Some((code, reason)));
                    }
                    _ => {}
                }
            }
            return Incoming::Text(data);
        }
    }

    /// `POST url?key=<resume key>` one message; `Err` when the connection cannot take it (the stream must
    /// be reopened).
    pub(super) async fn send(&mut self, message: Outgoing) -> Result<(), ClientError> {
        let key = self.key.as_deref().ok_or(ClientError::Closed)?;
        let (body, content_type) = match message {
            Outgoing::Text(text) => (Bytes::from(text), "text/plain; charset=utf-8"),
            Outgoing::Binary(bytes) => (Bytes::from(bytes), "application/octet-stream"),
        };
        let query = form_urlencoded::Serializer::new(self.target.query.clone())
            .append_pair("key", key)
            .finish();
        let request_target = self.target.request_target(&query);
        // A kept-alive connection the server closed meanwhile fails on first use: open one more.
        for attempt in 0..2 {
            let request = self
                .target
                .request(Method::POST, request_target.clone(), &self.options)
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(body.clone()))
                .map_err(invalid_input)?;
            let post = match &mut self.post {
                Some(post) => post,
                None => self.post.insert(Connection::open(&self.target).await?),
            };
            let answer = async {
                let response = post.send(request).await?;
                let status = response.status();
                let message = read_message(response.into_body()).await?;
                Ok::<_, hyper::Error>((status, message))
            }
            .await;
            match answer {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, message)) => {
                    self.post = None;
                    return Err(ClientError::Http {
                        status: status.as_u16(),
                        message,
                    });
                }
                Err(e) => {
                    self.post = None;
                    if attempt == 1 {
                        return Err(transport(e));
                    }
                }
            }
        }
        Err(ClientError::Closed)
    }

    /// Say goodbye (the server then forgets the connection at once instead of keeping it for a resume)
    /// and read the stream to its end: the server ends it only after forgetting the connection, so the
    /// connection is off every route when this returns. The caller bounds the wait.
    pub(super) async fn close(&mut self) {
        let bye = serde_json::to_string(&super::ClientFrame::Bye).expect("bye is a tag only");
        if self.send(Outgoing::Text(bye)).await.is_err() {
            return;
        }
        // What is still on its way (reactions, the `close` event) is dropped: the user is gone.
        while self.events.next().await.is_some_and(|event| event.is_ok()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_host_path_and_query() {
        let t = Target::parse("http://127.0.0.1:3000/_sync/sse?x=1").expect("a URL");
        assert_eq!(
            (
                t.addr.as_str(),
                t.host.to_str().expect("ASCII"),
                t.path.as_str(),
                t.query.as_str()
            ),
            ("127.0.0.1:3000", "127.0.0.1:3000", "/_sync/sse", "x=1")
        );
        assert_eq!(t.request_target("x=1&key=k"), "/_sync/sse?x=1&key=k");
        let t = Target::parse("http://example.com").expect("a URL");
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("example.com:80", "/"));
        assert!(Target::parse("ws://x/").is_err());
    }

    #[test]
    fn requests_carry_host_credentials_and_the_callers_headers() {
        let t = Target::parse("http://127.0.0.1:3000/_sync/sse").expect("a URL");
        let options = ConnectOptions::new()
            .token("alice")
            .header("Origin", "http://app.example");
        let request = t
            .request(Method::GET, t.request_target("ack=1"), &options)
            .body(())
            .expect("a valid request");
        assert_eq!(request.uri(), "/_sync/sse?ack=1");
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:3000");
        assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer alice");
        assert_eq!(request.headers()[header::ORIGIN], "http://app.example");
    }

    #[test]
    fn a_header_that_cannot_be_sent_is_an_error_not_a_broken_request() {
        let t = Target::parse("http://127.0.0.1:3000/_sync/sse").expect("a URL");
        let options = ConnectOptions::new().header("X-Bad", "line\r\nInjected: yes");
        let request = t
            .request(Method::GET, t.request_target("ack=1"), &options)
            .body(());
        assert!(request.is_err());
    }
}
