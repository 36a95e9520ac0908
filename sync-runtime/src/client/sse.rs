//! The client's SSE transport: the event stream is one long `GET` (chunked), each message one `POST` on a
//! second, kept-alive connection. Plain HTTP/1.1 over `TcpStream`, enough for `http://` URLs.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{ClientError, ConnectOptions, Incoming, encode};

/// The largest response head or chunk-size line accepted.
const MAX_HEAD: usize = 16 * 1024;

/// An `http://host[:port]/path` URL, split.
struct Target {
    host: String,
    path: String,
    query: String,
}

fn target(url: &str) -> Result<Target, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Http {
            status: 0,
            message: format!("not an http:// URL: {url}"),
        })?;
    let (authority, path_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (path, query) = path_query
        .split_once('?')
        .map_or((path_query, ""), |(p, q)| (p, q));
    let host = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        host,
        path: if path.is_empty() { "/" } else { path }.to_owned(),
        query: query.to_owned(),
    })
}

/// The request head lines every request carries: `Host`, credentials and the caller's headers.
fn common_headers(target: &Target, options: &ConnectOptions) -> String {
    let mut head = format!("Host: {}\r\n", target.host);
    if let Some(token) = &options.token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in &options.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

/// A response head: the status and whether the body is chunked.
struct Head {
    status: u16,
    chunked: bool,
    length: Option<usize>,
}

async fn read_head(stream: &mut BufReader<TcpStream>) -> std::io::Result<Head> {
    let mut line = String::new();
    let mut head = Head {
        status: 0,
        chunked: false,
        length: None,
    };
    let mut total = 0;
    loop {
        line.clear();
        let n = stream.read_line(&mut line).await?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end();
        if head.status == 0 {
            head.status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {text}")))?;
            continue;
        }
        if text.is_empty() {
            return Ok(head);
        }
        if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                head.length = value.parse().ok();
            }
        }
    }
}

/// A whole (short) response body: the refusal message of a non-200 answer, or a `POST`'s empty one.
async fn read_body(stream: &mut BufReader<TcpStream>, head: &Head) -> std::io::Result<String> {
    let mut body = Vec::new();
    if let Some(length) = head.length {
        body.resize(length.min(MAX_HEAD), 0);
        stream.read_exact(&mut body).await?;
    } else if head.chunked {
        let mut decoder = Chunks::default();
        while !decoder.done && body.len() < MAX_HEAD {
            let mut raw = [0u8; 1024];
            let n = stream.read(&mut raw).await?;
            if n == 0 {
                break;
            }
            decoder.raw.extend_from_slice(&raw[..n]);
            decoder.decode(&mut body)?;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Chunked transfer decoding, incremental: raw bytes in, body bytes out.
#[derive(Default)]
struct Chunks {
    raw: Vec<u8>,
    /// Body bytes left in the current chunk (and then its CRLF).
    left: usize,
    in_chunk: bool,
    done: bool,
}

impl Chunks {
    fn decode(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut at = 0;
        // After the last chunk only trailers follow: nothing of the body.
        while !self.done {
            if self.in_chunk {
                let take = self.left.min(self.raw.len() - at);
                out.extend_from_slice(&self.raw[at..at + take]);
                at += take;
                self.left -= take;
                if self.left > 0 {
                    break;
                }
                // The chunk's trailing CRLF.
                if self.raw.len() - at < 2 {
                    break;
                }
                at += 2;
                self.in_chunk = false;
            } else {
                let Some(end) = self.raw[at..].windows(2).position(|w| w == b"\r\n") else {
                    if self.raw.len() - at > MAX_HEAD {
                        return Err(std::io::Error::other("chunk size line too long"));
                    }
                    break;
                };
                let line = std::str::from_utf8(&self.raw[at..at + end]).unwrap_or("");
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
                at += end + 2;
                if size == 0 {
                    self.done = true;
                    break;
                }
                self.left = size;
                self.in_chunk = true;
            }
        }
        self.raw.drain(..at);
        Ok(())
    }
}

/// One SSE connection: the stream being read and the connection that posts.
pub(super) struct SseLink {
    target: Target,
    options: ConnectOptions,
    stream: BufReader<TcpStream>,
    chunks: Option<Chunks>,
    /// Decoded body bytes not yet parsed into events.
    body: Vec<u8>,
    /// The connection's resume key, from `hello`: what a `POST` names.
    key: Option<String>,
    post: Option<BufReader<TcpStream>>,
}

impl SseLink {
    /// Open the event stream. `resume` goes out as `Last-Event-ID: <key>.<seq>`.
    pub(super) async fn open(
        url: &str,
        options: &ConnectOptions,
        path: Option<&str>,
        resume: Option<(&str, u64)>,
    ) -> Result<SseLink, ClientError> {
        let target = target(url)?;
        let io = ClientError::Io;
        let stream = TcpStream::connect(&target.host).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut stream = BufReader::new(stream);
        let mut query = target.query.clone();
        let mut param = |key: &str, value: &str| {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(key);
            query.push('=');
            query.push_str(&encode(value));
        };
        if let Some(path) = path {
            param("path", path);
        }
        param("ack", "1");
        let mut request = format!(
            "GET {}?{query} HTTP/1.1\r\n{}Accept: text/event-stream\r\n",
            target.path,
            common_headers(&target, options)
        );
        if let Some((key, seq)) = resume {
            request.push_str(&format!("Last-Event-ID: {key}.{seq}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(io)?;
        let head = read_head(&mut stream).await.map_err(io)?;
        if head.status != 200 {
            let message = read_body(&mut stream, &head).await.unwrap_or_default();
            return Err(ClientError::Http {
                status: head.status,
                message,
            });
        }
        Ok(SseLink {
            target,
            options: options.clone(),
            stream,
            chunks: head.chunked.then(Chunks::default),
            body: Vec::new(),
            key: None,
            post: None,
        })
    }

    /// The next event's data. Cancel-safe: all state lives in `self` between reads.
    pub(super) async fn next(&mut self) -> Incoming {
        loop {
            if let Some(data) = self.event() {
                if data.starts_with(r#"{"t":"hello""#) {
                    #[derive(serde::Deserialize)]
                    struct Hello {
                        resume: String,
                    }
                    if let Ok(hello) = serde_json::from_str::<Hello>(&data) {
                        self.key = Some(hello.resume);
                    }
                }
                if data.contains(r#""t":"close""#) {
                    #[derive(serde::Deserialize)]
                    struct Close {
                        t: String,
                        code: u16,
                        reason: String,
                    }
                    match serde_json::from_str::<Close>(&data) {
                        Ok(close) if close.t == "close" => {
                            return Incoming::Close(Some((close.code, close.reason)));
                        }
                        _ => {}
                    }
                }
                return Incoming::Text(data);
            }
            let mut raw = [0u8; 4096];
            let n = match self.stream.read(&mut raw).await {
                Ok(0) | Err(_) => return Incoming::Dropped,
                Ok(n) => n,
            };
            match &mut self.chunks {
                Some(chunks) => {
                    chunks.raw.extend_from_slice(&raw[..n]);
                    if chunks.decode(&mut self.body).is_err() || chunks.done {
                        // A stream that ends without a `close` event was cut.
                        if self.event_pending() {
                            continue;
                        }
                        return Incoming::Dropped;
                    }
                }
                None => self.body.extend_from_slice(&raw[..n]),
            }
        }
    }

    fn event_pending(&self) -> bool {
        self.body.windows(2).any(|w| w == b"\n\n")
    }

    /// One complete event's `data`, if the body holds one (comments and `id:` lines skipped).
    fn event(&mut self) -> Option<String> {
        loop {
            let end = self.body.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                return Some(data.join("\n"));
            }
        }
    }

    /// `POST` one message; `Err` when the connection cannot take it (the stream must be reopened).
    pub(super) async fn send(&mut self, body: &[u8], binary: bool) -> Result<(), ClientError> {
        let key = self.key.clone().ok_or(ClientError::Closed)?;
        let content_type = if binary {
            "application/octet-stream"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut request = format!(
            "POST {}?key={} HTTP/1.1\r\n{}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.target.path,
            encode(&key),
            common_headers(&self.target, &self.options),
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        // A kept-alive connection the server closed meanwhile fails on first use: open one more.
        for attempt in 0..2 {
            if self.post.is_none() {
                let stream = TcpStream::connect(&self.target.host)
                    .await
                    .map_err(ClientError::Io)?;
                stream.set_nodelay(true).map_err(ClientError::Io)?;
                self.post = Some(BufReader::new(stream));
            }
            let post = self.post.as_mut().expect("just opened");
            let answer = async {
                post.get_mut().write_all(&request).await?;
                let head = read_head(post).await?;
                let message = read_body(post, &head).await?;
                Ok::<_, std::io::Error>((head.status, message))
            }
            .await;
            match answer {
                Ok((202, _)) => return Ok(()),
                Ok((status, message)) => {
                    self.post = None;
                    return Err(ClientError::Http { status, message });
                }
                Err(e) => {
                    self.post = None;
                    if attempt == 1 {
                        return Err(ClientError::Io(e));
                    }
                }
            }
        }
        Err(ClientError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_arbitrary_splits() {
        let raw = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let mut chunks = Chunks::default();
            let mut out = Vec::new();
            chunks.raw.extend_from_slice(&raw[..split]);
            chunks.decode(&mut out).expect("valid");
            chunks.raw.extend_from_slice(&raw[split..]);
            chunks.decode(&mut out).expect("valid");
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(chunks.done);
        }
    }

    #[test]
    fn urls_split_into_host_path_and_query() {
        let t = target("http://127.0.0.1:3000/_sync/sse?x=1").expect("a URL");
        assert_eq!(
            (t.host.as_str(), t.path.as_str(), t.query.as_str()),
            ("127.0.0.1:3000", "/_sync/sse", "x=1")
        );
        assert_eq!(
            target("http://example.com").expect("a URL").host,
            "example.com:80"
        );
        assert!(target("ws://x/").is_err());
    }
}
