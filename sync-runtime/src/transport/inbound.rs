//! One message from a client, whatever carried it (a WebSocket frame, an SSE `POST`): the rate limits
//! first, for every message whatever its kind or validity, then the size limit, then the message.

use std::sync::Arc;

use crate::conn::{Conn, Outbound};
use crate::fanout::{Reply, Sender};
use crate::hub::HubInner;
use crate::protocol::ErrorCode;
use crate::protocol::client::{ClientFrame, parse_client_frame};
use crate::protocol::server::{PONG, error_frame};
use crate::roster::Here;
use crate::stats::Counters;
use crate::trigger::{Payload, Target};

/// A message as a transport received it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Inbound<'a> {
    Text(&'a str),
    /// A binary WebSocket frame, or a `POST` of `application/octet-stream`.
    Binary,
    /// A `POST` body that is not UTF-8.
    NotUtf8,
}

/// Handle one message. The connection's inbound lock is held throughout, so one connection's messages
/// are handled one at a time, in order, whichever way they came.
///
/// Boxed: handling a message (the lock, a gate, a deadline, waiting for room in a lane) is a large future,
/// and a reader that kept it inline would hold that much memory for every idle connection; a message is
/// rare next to the reactions going out.
pub(crate) fn receive<'a>(
    hub: &'a Arc<HubInner>,
    conn: &'a Arc<Conn>,
    message: Inbound<'a>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(receive_inline(hub, conn, message))
}

async fn receive_inline(hub: &Arc<HubInner>, conn: &Arc<Conn>, message: Inbound<'_>) {
    let mut limit = conn.inbound.lock().await;
    // An acknowledgement that moves the window costs nothing: it is bounded by the reactions sent.
    if let Inbound::Text(text) = message
        && text.len() <= 64
        && let Ok(ClientFrame::Ack { seq }) = parse_client_frame(text)
        && conn.ack(seq)
    {
        return;
    }
    let user_allows = conn
        .user_limit
        .lock()
        .expect("rate lock is never poisoned")
        .allow();
    if !limit.allow() || !user_allows {
        Counters::bump(&hub.counters.rate_limited);
        return reject(
            hub,
            conn,
            None,
            ErrorCode::RateLimited,
            "too many messages; this one was dropped",
        );
    }
    let text = match message {
        Inbound::Text(text) => text,
        Inbound::Binary => {
            return reject(
                hub,
                conn,
                None,
                ErrorCode::BinaryUnsupported,
                "binary messages are not part of the protocol",
            );
        }
        Inbound::NotUtf8 => {
            return reject(
                hub,
                conn,
                None,
                ErrorCode::Malformed,
                "the message is not UTF-8",
            );
        }
    };
    if text.len() > hub.config.max_message_bytes {
        let message = format!(
            "message of {} bytes exceeds the limit of {}",
            text.len(),
            hub.config.max_message_bytes
        );
        return reject(hub, conn, None, ErrorCode::TooLarge, &message);
    }
    handle(hub, conn, text).await;
    drop(limit);
}

/// Answer with an error code, and count it.
pub(crate) fn reject(
    hub: &HubInner,
    conn: &Arc<Conn>,
    id: Option<u64>,
    code: ErrorCode,
    message: &str,
) {
    Counters::bump(&hub.counters.rejected_messages);
    hub.conns
        .push(conn, Outbound::control(error_frame(id, code, message)));
}

async fn handle(hub: &Arc<HubInner>, conn: &Arc<Conn>, text: &str) {
    let frame = match parse_client_frame(text) {
        Ok(frame) => frame,
        Err((code, message)) => return reject(hub, conn, None, code, &message),
    };
    match frame {
        // One that moved the window was taken by `receive`; a repeated one is harmless.
        ClientFrame::Ack { seq } => {
            if seq > conn.sent_seq() {
                reject(
                    hub,
                    conn,
                    None,
                    ErrorCode::Malformed,
                    "`ack` acknowledges a reaction that was never sent",
                );
            }
        }
        ClientFrame::Bye => {
            // The writer sends the close (frame or event), and the connection is forgotten, not parked.
            hub.conns.close(conn, 1000, "closed");
        }
        ClientFrame::Refresh { token } => super::refresh(hub, conn, token.into_owned()).await,
        ClientFrame::Ping => {
            hub.conns.push(conn, Outbound::control(PONG));
        }
        ClientFrame::Nav { path, cursor } => match crate::routes::normalize(&path) {
            Some(path) => super::report_location(hub, conn, path, cursor).await,
            None => reject(
                hub,
                conn,
                None,
                ErrorCode::BadPath,
                "`path` must be an absolute path of at most 2048 bytes",
            ),
        },
        ClientFrame::Req {
            id,
            name,
            data,
            echo,
        } => {
            let Some(location) = conn.current_location() else {
                return reject(
                    hub,
                    conn,
                    id,
                    ErrorCode::NoLocation,
                    "report a location (`nav`) before requesting",
                );
            };
            let json = data.map_or("null", |d| d.get());
            let accepted = match hub.accept(
                Target::Location(location.clone()),
                &name,
                Payload::Json(json),
            ) {
                Ok(accepted) => accepted,
                Err(e) => return reject(hub, conn, id, e.code, &e.message),
            };
            let peer = conn.peer(location);
            if let Some(gate) = &accepted.entry.sync.0.gate {
                let verdict = tokio::time::timeout(
                    hub.config.filter_deadline,
                    futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(gate(
                        &accepted.data,
                        &peer,
                        &hub.functions,
                        &Here::new(hub.roster.clone(), peer.location.path_arc().clone()),
                    ))),
                )
                .await;
                let refusal = match verdict {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(refusal))) => Some(refusal.message().to_owned()),
                    Ok(Err(_panic)) => Some("the origin gate failed".to_owned()),
                    Err(_elapsed) => Some("the origin gate overran its deadline".to_owned()),
                };
                if let Some(message) = refusal {
                    return reject(hub, conn, id, ErrorCode::GateRefused, &message);
                }
            }
            let reply = match id {
                Some(id) => Reply::Frame {
                    conn: conn.clone(),
                    id,
                },
                None => Reply::None,
            };
            let sender = Sender {
                conn: Some(conn.clone()),
                peer,
                echo,
            };
            hub.submit_from(accepted, sender, reply).await;
        }
    }
}
