//! The writer: drains a connection's queue into a transport's [`Sink`], numbering reactions, keeping
//! them for replay and holding to the acknowledgement window, until the connection is closed or detached
//! or the transport fails.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;

use super::Conn;
use super::outbox::Taken;
use crate::protocol::server::{REACTION_HEAD, write_reaction};

/// Where a connection's frames go: a WebSocket, an SSE response body, or a test's channel.
pub(crate) trait Sink: Send {
    /// Add one frame. `seq` is the reaction's number (or, for `hello`, the last one the client has),
    /// for transports that label frames (SSE's `id:`). An error means the client is gone.
    fn feed(
        &mut self,
        seq: Option<u64>,
        text: Utf8Bytes,
    ) -> impl Future<Output = Result<(), ()>> + Send;
    /// Push what was fed out to the client.
    fn flush(&mut self) -> impl Future<Output = Result<(), ()>> + Send;
    /// The last frame: the close (a WebSocket close frame, an SSE `close` event).
    fn close(&mut self, code: u16, reason: &'static str) -> impl Future<Output = ()> + Send;
}

/// What a transport's reading side shares with its writer: whether it saw the client go.
#[derive(Default)]
pub(crate) struct ReadSide {
    dropped: AtomicBool,
}

impl ReadSide {
    /// The client went away without a goodbye: wake the writer so it ends.
    pub fn dropped(&self, conn: &Conn) {
        self.dropped.store(true, Ordering::Release);
        conn.attention.wake();
    }
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// The connection was closed (its close went out, if the client still reads).
    Closed,
    /// A resume took the connection to another transport.
    Detached,
    /// The transport failed: the client is gone without a goodbye.
    Dropped,
}

/// Whatever ends the writer's wait, if anything has happened.
fn interruption(conn: &Conn, side: &ReadSide) -> Option<WriteEnd> {
    if conn.is_closed() {
        Some(WriteEnd::Closed)
    } else if conn.detach_requested() {
        Some(WriteEnd::Detached)
    } else if side.dropped.load(Ordering::Acquire) {
        Some(WriteEnd::Dropped)
    } else {
        None
    }
}

/// Resolves with `ready`'s value once it has one, or with the interruption (which wins). The task waits
/// in the connection's `attention` waker: registered first, then everything looked at once, so that a push
/// or a close after the look wakes it. Registering on every poll costs a compare of wakers; looking first
/// and again after registering cost a second look (the outbox lock) on every wait of an idle writer.
fn attend<'a, T>(
    conn: &'a Conn,
    side: &'a ReadSide,
    mut ready: impl FnMut() -> Option<T> + 'a,
) -> impl Future<Output = Result<T, WriteEnd>> + 'a {
    std::future::poll_fn(move |cx| {
        conn.attention.register(cx.waker());
        if let Some(end) = interruption(conn, side) {
            return std::task::Poll::Ready(Err(end));
        }
        match ready() {
            Some(value) => std::task::Poll::Ready(Ok(value)),
            None => std::task::Poll::Pending,
        }
    })
}

/// Resolves when the connection is closed, detached or its reader saw the client go.
async fn interrupted(conn: &Conn, side: &ReadSide) -> WriteEnd {
    match attend(conn, side, || None::<std::convert::Infallible>).await {
        Err(end) => end,
        Ok(never) => match never {},
    }
}

/// Drain the queue into `sink`, after `preamble` (hello, then the replay or `resync`), until interrupted.
///
/// A close must win even while a write is blocked on a stalled client, so both the wait for frames and
/// the write itself race against it; the close frame gets a short deadline for the same reason.
///
/// Reactions are numbered and kept for replay *before* they are written, so that a transport dying
/// mid-batch loses nothing a resume cannot restore.
pub(crate) async fn write(
    conn: &Conn,
    sink: &mut impl Sink,
    preamble: Vec<(Option<u64>, String)>,
    side: &ReadSide,
) -> WriteEnd {
    // Grows to the batches this connection sees: an idle one keeps it tiny (64 slots up front were 3.5 KB
    // per connection). Two to start with: `hello` and `located`, then one reaction at a time, fit without
    // the four slots a first push would make room for.
    let mut frames: Vec<(Option<u64>, Utf8Bytes)> = Vec::with_capacity(2);
    // Reaction frames are written into this buffer and handed to the transport as slices of it: once it
    // has copied them out, the space is reused, so a busy connection allocates nothing per frame.
    let mut scratch = bytes::BytesMut::new();
    let mut first = Some(preamble);
    let end = loop {
        if let Some(preamble) = first.take() {
            frames.extend(
                preamble
                    .into_iter()
                    .map(|(seq, text)| (seq, Utf8Bytes::from(text))),
            );
        } else {
            // With acknowledged delivery, at most `window` reactions are in flight: the rest wait in the
            // queue, where a dying transport cannot lose them.
            let window = conn.window.load(Ordering::Acquire);
            let room = loop {
                if window == 0 {
                    break Ok(64);
                }
                let in_flight = conn.in_flight();
                if in_flight < window {
                    break Ok((window - in_flight).min(64) as usize);
                }
                tokio::select! {
                    biased;
                    end = interrupted(conn, side) => break Err(end),
                    () = conn.acked_signal.notified() => {}
                }
            };
            let room = match room {
                Ok(room) => room,
                Err(end) => break end,
            };
            // Taken, numbered, kept for replay and formatted in one lock, straight into `frames`.
            let taken = attend(conn, side, || {
                conn.with_outbox(|outbox, keep| {
                    if !outbox.has_queued() {
                        return None;
                    }
                    // Room for the whole batch at once: one allocation at most, none once reused.
                    scratch.reserve(outbox.reaction_bytes(room));
                    outbox.take(room, keep, |taken| {
                        frames.push(match taken {
                            Taken::Reaction(seq, tail) => {
                                (Some(seq), reaction_text(&mut scratch, seq, tail))
                            }
                            Taken::Control(text) => (None, text),
                        });
                    });
                    Some(())
                })
            });
            if let Err(end) = taken.await {
                break end;
            }
        }
        let send = async {
            for (seq, text) in frames.drain(..) {
                sink.feed(seq, text).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            end = interrupted(conn, side) => break end,
            sent = send => if sent.is_err() { break WriteEnd::Dropped },
        }
        // An idle connection keeps no more than a small buffer.
        if scratch.capacity() > 4096 && !conn.has_queued() {
            scratch = bytes::BytesMut::new();
        }
    };
    if end == WriteEnd::Closed
        && let Some((code, reason)) = conn.close_reason()
    {
        // Boxed, like anything rare and large here: the future stays small for idle connections.
        let closing =
            tokio::time::timeout(std::time::Duration::from_secs(1), sink.close(code, reason));
        let _ = Box::pin(closing).await;
    }
    end
}

/// A reaction frame in `scratch`'s spare room (see `write`).
fn reaction_text(scratch: &mut bytes::BytesMut, seq: u64, tail: &str) -> Utf8Bytes {
    struct Buf<'a>(&'a mut bytes::BytesMut);
    impl std::fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    scratch.reserve(REACTION_HEAD + tail.len());
    write_reaction(&mut Buf(scratch), seq, tail);
    Utf8Bytes::try_from(scratch.split().freeze()).expect("a frame made of UTF-8 pieces is UTF-8")
}
