//! The task that owns a client's transport (and its successors, when reconnecting): it sends commands,
//! dispatches frames, acknowledges reactions and reconnects with backoff.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::Outcome;
use crate::protocol::server::ServerFrame;

use super::*;

/// The task that owns the socket (and its successors, when reconnecting).
pub(super) struct Pump {
    pub(super) url: String,
    pub(super) options: ConnectOptions,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) reactions: mpsc::Sender<ReceivedReaction>,
    pub(super) errors: mpsc::Sender<ErrorReply>,
    pub(super) navs: VecDeque<oneshot::Sender<Located>>,
    /// `ping`s waiting for their `pong`, in the order they were sent; `None` for one sent as a raw frame.
    pub(super) pings: VecDeque<Option<oneshot::Sender<()>>>,
    pub(super) close: Arc<Mutex<Option<(u16, String)>>>,
    pub(super) status: watch::Sender<Status>,
    pub(super) sockets: u64,
    pub(super) resume: Option<String>,
    pub(super) last_seq: u64,
    /// Reactions the server lets us leave unacknowledged (0: no acknowledgements).
    pub(super) window: u64,
    /// The last `seq` acknowledged.
    pub(super) acked: u64,
    pub(super) location: Option<String>,
    /// The path and position in its history up to which reactions were processed: sent when
    /// reconnecting, so that any node can catch up from it.
    pub(super) cursor: Option<(String, String)>,
    /// A command taken while reconnecting (to notice a close), sent first on the next socket.
    pub(super) held: Option<Command>,
}

/// How one socket ended.
enum SocketEnd {
    /// The user closed the client, or it was dropped.
    User,
    /// The server sent a close frame with this code.
    Server(u16),
    /// The socket died without a close frame.
    Dropped,
}

impl Pump {
    pub(super) async fn run(mut self, mut socket: Link, hello: oneshot::Sender<String>) {
        let mut hello = Some(hello);
        loop {
            let end = self.serve(&mut socket, &mut hello).await;
            let again = match end {
                SocketEnd::User => false,
                SocketEnd::Server(code) => {
                    code == crate::close_code::GOING_AWAY
                        || code == crate::close_code::SLOW_CONSUMER
                }
                SocketEnd::Dropped => true,
            };
            if !(again && self.options.reconnect) {
                return;
            }
            // Requests and navigations in flight on the dead socket cannot be answered any more.
            self.navs.clear();
            self.pings.clear();
            match self.reopen().await {
                Some(next) => socket = next,
                None => return,
            }
        }
    }

    /// Reconnect with exponential backoff (50 ms doubling to 2 s, at most 60 tries), resuming; `None`
    /// when giving up, or when the user closes the client meanwhile.
    async fn reopen(&mut self) -> Option<Link> {
        let mut delay = Duration::from_millis(50);
        for _ in 0..60 {
            let backoff = tokio::time::sleep(delay);
            tokio::pin!(backoff);
            loop {
                tokio::select! {
                    () = &mut backoff => break,
                    // Commands wait for the next socket, except a close, which ends the wait now (the one
                    // taken out of the queue to see it goes first on the next socket).
                    command = self.commands.recv(), if self.held.is_none() => match command {
                        Some(Command::Close(_)) | None => return None,
                        Some(command) => self.held = Some(command),
                    },
                }
            }
            let resume = self.resume.as_deref().map(|key| (key, self.last_seq));
            let path = self.location.as_deref().or(self.options.path.as_deref());
            let cursor = self
                .cursor
                .as_ref()
                .filter(|(at, _)| Some(at.as_str()) == path)
                .map(|(_, cursor)| cursor.as_str());
            match open(&self.url, &self.options, path, resume, cursor).await {
                Ok(socket) => return Some(socket),
                Err(e) => {
                    tracing::debug!(target: "sync_runtime::client", error = %e, "reconnect failed; retrying")
                }
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        None
    }

    async fn serve(
        &mut self,
        socket: &mut Link,
        hello: &mut Option<oneshot::Sender<String>>,
    ) -> SocketEnd {
        let mut requests: HashMap<u64, oneshot::Sender<Result<Outcome, ErrorReply>>> =
            HashMap::new();
        if let Some(command) = self.held.take()
            && let Some(end) = self.obey(socket, Some(command), &mut requests).await
        {
            return end;
        }
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    if let Some(end) = self.obey(socket, command, &mut requests).await {
                        return end;
                    }
                }
                message = socket.next() => {
                    let text = match message {
                        Incoming::Text(text) => text,
                        Incoming::Close(frame) => {
                            let code = frame.as_ref().map_or(1005, |f| f.0);
                            *self.close.lock().expect("close lock is never poisoned") = frame;
                            return SocketEnd::Server(code);
                        }
                        Incoming::Dropped => return SocketEnd::Dropped,
                    };
                    if !self.dispatch(&text, hello, &mut requests).await {
                        return SocketEnd::User;
                    }
                    // Acknowledge every half window, so the server never waits on us while we keep up.
                    if self.window > 0
                        && self.last_seq - self.acked >= (self.window / 2).max(1)
                        && !self.send_ack(socket).await
                    {
                        return SocketEnd::Dropped;
                    }
                }
                // And whatever is left once the reactions pause.
                () = tokio::time::sleep(ACK_DELAY), if self.window > 0 && self.last_seq > self.acked => {
                    if !self.send_ack(socket).await {
                        return SocketEnd::Dropped;
                    }
                }
            }
        }
    }

    /// Carry out one of the user's commands (`None`: the client was dropped); `Some` when the socket ended.
    async fn obey(
        &mut self,
        socket: &mut Link,
        command: Option<Command>,
        requests: &mut HashMap<u64, oneshot::Sender<Result<Outcome, ErrorReply>>>,
    ) -> Option<SocketEnd> {
        let message = match command {
            Some(Command::Raw(message)) => {
                // A `pong` answers it too: it must not pass for the answer to a later `ping()`.
                if let Outgoing::Text(text) = &message
                    && let Ok(crate::protocol::client::ClientFrame::Ping) =
                        crate::protocol::client::parse_client_frame(text)
                {
                    self.pings.push_back(None);
                }
                message
            }
            Some(Command::Ping(tx)) => {
                self.pings.push_back(Some(tx));
                Outgoing::Text(
                    serde_json::to_string(&ClientFrame::Ping).expect("a ping is a tag only"),
                )
            }
            Some(Command::Nav(path, tx)) => {
                self.navs.push_back(tx);
                Outgoing::Text(serde_json::json!({ "t": "nav", "path": path }).to_string())
            }
            Some(Command::Req(id, frame, tx)) => {
                requests.insert(id, tx);
                Outgoing::Text(frame)
            }
            Some(Command::Close(done)) => {
                socket.close().await;
                let _ = done.send(());
                return Some(SocketEnd::User);
            }
            None => {
                socket.close().await;
                return Some(SocketEnd::User);
            }
        };
        if socket.send(message).await.is_err() {
            return Some(SocketEnd::Dropped);
        }
        None
    }

    async fn send_ack(&mut self, socket: &mut Link) -> bool {
        self.acked = self.last_seq;
        let frame = serde_json::to_string(&ClientFrame::Ack { seq: self.acked })
            .expect("an ack is a tag and an integer");
        socket.send(Outgoing::Text(frame)).await.is_ok()
    }

    /// Handle one frame; false when the client side is gone.
    async fn dispatch(
        &mut self,
        text: &str,
        hello: &mut Option<oneshot::Sender<String>>,
        requests: &mut HashMap<u64, oneshot::Sender<Result<Outcome, ErrorReply>>>,
    ) -> bool {
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Hello {
                conn,
                resume,
                resumed,
                window,
                expires_in,
            }) => {
                if !resumed {
                    // A new connection numbers its reactions from 1 again.
                    self.last_seq = 0;
                }
                // Resuming after `last_seq` acknowledged it.
                self.acked = self.last_seq;
                self.window = window.unwrap_or(0);
                self.resume = resume.clone();
                self.sockets += 1;
                let reconnects = self.sockets - 1;
                self.status.send_modify(|s| {
                    s.reconnects = reconnects;
                    s.resume_key = resume;
                    s.expires_in = expires_in;
                });
                if let Some(tx) = hello.take() {
                    let _ = tx.send(conn);
                }
            }
            Ok(ServerFrame::Resync) => self.status.send_modify(|s| s.resyncs += 1),
            Ok(ServerFrame::Located { path, route }) => {
                let located = Located { path, route };
                self.location = Some(located.path.clone());
                if self
                    .cursor
                    .as_ref()
                    .is_some_and(|(at, _)| *at != located.path)
                {
                    self.cursor = None;
                }
                self.status.send_modify(|s| {
                    s.located += 1;
                    // A new page's list starts empty: the previous page's users are not here.
                    if s.presence.as_ref().is_none_or(|p| p.path != located.path) {
                        s.presence = None;
                    }
                });
                if let Some(tx) = self.navs.pop_front() {
                    let _ = tx.send(located);
                }
            }
            Ok(ServerFrame::Reaction {
                seq,
                cursor,
                path,
                route,
                name,
                reaction,
            }) => {
                if let Some(cursor) = &cursor
                    && self.location.as_deref() == Some(path.as_str())
                {
                    self.cursor = Some((path.clone(), cursor.clone()));
                }
                let reaction = ReceivedReaction {
                    seq,
                    path,
                    route,
                    name,
                    reaction,
                    cursor,
                };
                self.last_seq = reaction.seq;
                if self.reactions.send(reaction).await.is_err() {
                    return false;
                }
            }
            Ok(ServerFrame::Result { id, outcome }) => {
                if let Some(tx) = requests.remove(&id) {
                    let _ = tx.send(Ok(outcome));
                }
            }
            Ok(ServerFrame::Error { id, code, message }) => {
                match id.and_then(|id| requests.remove(&id)) {
                    Some(tx) => {
                        let _ = tx.send(Err(ErrorReply { id, code, message }));
                    }
                    None => {
                        let _ = self.errors.try_send(ErrorReply { id, code, message });
                    }
                }
            }
            Ok(ServerFrame::Presence { path, count, users }) => {
                if self.location.as_deref() == Some(path.as_str()) {
                    let users = users.into_iter().map(|e| (e.user, e.view)).collect();
                    self.status.send_modify(|s| {
                        s.presence = Some(PresenceList { path, count, users });
                    });
                }
            }
            Ok(ServerFrame::PresenceDiff {
                path,
                count,
                join,
                leave,
            }) => {
                self.status.send_modify(|s| {
                    let Some(list) = s.presence.as_mut().filter(|p| p.path == path) else {
                        return;
                    };
                    list.users.retain(|(u, _)| !leave.contains(u));
                    for entry in join {
                        match list.users.iter_mut().find(|(u, _)| *u == entry.user) {
                            Some(listed) => listed.1 = entry.view,
                            None => list.users.push((entry.user, entry.view)),
                        }
                    }
                    list.count = count;
                });
            }
            Ok(ServerFrame::Refreshed { expires_in }) => self.status.send_modify(|s| {
                s.refreshed += 1;
                s.expires_in = expires_in;
            }),
            Ok(ServerFrame::Pong) => {
                if let Some(Some(tx)) = self.pings.pop_front() {
                    let _ = tx.send(());
                }
            }
            Ok(ServerFrame::Cursor { path, cursor }) => {
                if self.location.as_deref() == Some(path.as_str()) {
                    self.cursor = Some((path, cursor));
                }
            }
            // The SSE link ends its stream on a `close` event before it reaches here.
            Ok(ServerFrame::Close { .. }) => {}
            Err(e) => {
                tracing::warn!(target: "sync_runtime::client", error = %e, "unreadable frame from server");
            }
        }
        true
    }
}
