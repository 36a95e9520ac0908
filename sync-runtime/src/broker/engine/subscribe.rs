//! The subscriber task: the deployment's channel and the paths this node follows, each followed from
//! its position read first; re-subscribes (and catches every path up) after any break.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use super::*;

/// Follow (or leave) `paths` on `subscription`: for each path followed, its position is read first and
/// handed to the hub with the confirmation, so that what was published in between is caught up.
async fn apply<T: Transport>(
    transport: &T,
    shared: &Shared,
    subscription: &mut T::Subscription,
    paths: Vec<Arc<str>>,
    on: bool,
) -> Result<(), TransportError> {
    if paths.is_empty() {
        return Ok(());
    }
    if !on {
        transport.follow(subscription, &paths, false).await?;
        let mut following = shared.following.lock().expect("following lock");
        for path in &paths {
            following.remove(path);
        }
        return Ok(());
    }
    let mut before = Vec::with_capacity(paths.len());
    for path in &paths {
        before.push(transport.top(path).await.ok());
    }
    transport.follow(subscription, &paths, true).await?;
    shared
        .following
        .lock()
        .expect("following lock")
        .extend(paths.iter().cloned());
    if let Some(inbox) = shared.inbox() {
        for (path, before) in paths.into_iter().zip(before) {
            inbox.followed(path, before);
        }
    }
    Ok(())
}

/// The changes to following asked for since the last call, against what is followed now: paths to
/// follow, paths to leave.
fn changes(shared: &Shared, followed: &HashSet<Arc<str>>) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let wanted = std::mem::take(&mut *shared.wanted.lock().expect("wanted lock"));
    let (mut join, mut leave) = (Vec::new(), Vec::new());
    for (path, on) in wanted {
        match (on, followed.contains(&path)) {
            (true, false) => join.push(path),
            (false, true) => leave.push(path),
            _ => {}
        }
    }
    (join, leave)
}

pub(super) async fn subscribe_loop<T: Transport>(
    transport: Arc<T>,
    shared: Arc<Shared>,
    heartbeat: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut health = Health::new("subscriber", transport.service());
    let mut backoff = Backoff::new();
    // Five missed heartbeats: the subscription is dead even if the connection does not say so.
    let silence = heartbeat * SILENT_HEARTBEATS;
    // What this subscriber follows (or is to follow again after a reconnect).
    let mut followed: HashSet<Arc<str>> = HashSet::new();
    loop {
        if shared.inbox().is_none() {
            return;
        }
        let attempt = tokio::select! {
            attempt = transport.subscribe() => attempt,
            _ = &mut stop => return,
        };
        let mut subscription = match attempt {
            Ok(subscription) => subscription,
            Err(e) => {
                health.failed(transport.place(), &e);
                tokio::select! {
                    () = backoff.wait() => continue,
                    _ = &mut stop => return,
                }
            }
        };
        // Everything followed before is followed again, caught up from its position.
        let (join, leave) = changes(&shared, &followed);
        for path in leave {
            followed.remove(&path);
        }
        followed.extend(join);
        let again: Vec<Arc<str>> = followed.iter().cloned().collect();
        if let Err(e) = apply(&*transport, &shared, &mut subscription, again, true).await {
            health.failed(transport.place(), &e);
            tokio::select! {
                () = backoff.wait() => continue,
                _ = &mut stop => return,
            }
        }
        health.up(transport.place());
        backoff = Backoff::new();
        shared.subscribed.store(true, Ordering::Release);
        let error = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(silence, transport.next(&mut subscription)) => next,
                () = shared.changed.notified() => {
                    let (join, leave) = changes(&shared, &followed);
                    for path in &leave {
                        followed.remove(path);
                    }
                    followed.extend(join.iter().cloned());
                    let applied = match apply(&*transport, &shared, &mut subscription, leave, false).await {
                        Ok(()) => apply(&*transport, &shared, &mut subscription, join, true).await,
                        Err(e) => Err(e),
                    };
                    match applied {
                        Ok(()) => continue,
                        Err(e) => break e,
                    }
                }
                _ = &mut stop => {
                    shared.subscribed.store(false, Ordering::Release);
                    return;
                }
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => break TransportError::Broken("the subscription ended".to_owned()),
                Err(_) => {
                    break TransportError::Broken(format!(
                        "nothing heard for {silence:?}, not even this node's own heartbeat"
                    ));
                }
            };
            let Some(inbox) = shared.inbox() else {
                shared.subscribed.store(false, Ordering::Release);
                return;
            };
            match message {
                Message::Path(payload) => match read_path_message(&payload) {
                    Some((at, trigger)) => {
                        shared.received.fetch_add(1, Ordering::Relaxed);
                        inbox.trigger(trigger, at);
                    }
                    None => {
                        tracing::warn!(target: "sync_runtime::backplane", "unreadable trigger on a path's channel; ignored");
                    }
                },
                Message::Node(payload) => match serde_json::from_slice::<Envelope>(&payload) {
                    Ok(envelope) if envelope.node != shared.node => {
                        if let Some(note) = envelope.note {
                            inbox.note(envelope.node, note);
                        }
                        inbox.heard(envelope.node, envelope.pv.unwrap_or(0));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target: "sync_runtime::backplane", error = %e, "unreadable message on the deployment's channel; ignored");
                    }
                },
            }
        };
        shared.subscribed.store(false, Ordering::Release);
        shared.following.lock().expect("following lock").clear();
        health.failed(transport.place(), &error);
        tokio::select! {
            () = backoff.wait() => {}
            _ = &mut stop => return,
        }
    }
}
