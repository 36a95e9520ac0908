//! The publisher task: appends triggers to their paths' histories and publishes notes and heartbeats,
//! reconnecting with backoff; what it cannot take is refused to its sender.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;

pub(super) async fn publish_loop<T: Transport>(
    transport: Arc<T>,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Outgoing>,
    heartbeat: Duration,
) {
    let mut health = Health::new("publisher", transport.service());
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut publisher = match transport.connect().await {
            Ok(publisher) => publisher,
            Err(e) => {
                health.failed(transport.place(), &e);
                // Whatever waits now would be taken late: refuse it, so that its sender knows.
                while let Ok(item) = rx.try_recv() {
                    shared.given_up(item, "the backplane cannot be reached");
                }
                if (rx.is_closed() && rx.is_empty())
                    || !wait_refusing(&mut backoff, &mut rx, &shared).await
                {
                    return;
                }
                continue;
            }
        };
        health.up(transport.place());
        backoff = Backoff::new();
        shared.publishing.store(true, Ordering::Release);
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Refusals are logged once per streak: the connection works, each trigger would log again.
        let mut refusing = false;
        let error = loop {
            let mut notes = Vec::new();
            let mut triggers = Vec::new();
            let mut ids = Vec::new();
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        shared.publishing.store(false, Ordering::Release);
                        return;
                    }
                    for item in batch.drain(..) {
                        match item {
                            Outgoing::Trigger { id, trigger } => {
                                triggers.push((Arc::from(trigger.path.as_str()), encode(&trigger)));
                                ids.push(id);
                            }
                            Outgoing::Note(note) => {
                                if let Some(v) = note.version() {
                                    shared.pv.fetch_max(v, Ordering::AcqRel);
                                }
                                notes.push(Envelope {
                                    node: shared.node,
                                    note: Some(note),
                                    pv: Some(shared.pv.load(Ordering::Acquire)),
                                }.encode());
                            }
                        }
                    }
                }
                _ = beat.tick() => {
                    notes.push(Envelope {
                        node: shared.node,
                        note: None,
                        pv: Some(shared.pv.load(Ordering::Acquire)),
                    }.encode());
                }
            }
            let mut broke = None;
            if !triggers.is_empty() {
                match transport.append(&mut publisher, &triggers).await {
                    Ok(results) => {
                        let inbox = shared.inbox();
                        for (id, result) in ids.iter().zip(results) {
                            match &result {
                                Ok(_) => shared.published.fetch_add(1, Ordering::Relaxed),
                                Err(_) => shared.dropped.fetch_add(1, Ordering::Relaxed),
                            };
                            if let Some(inbox) = &inbox {
                                inbox.published(*id, result);
                            }
                        }
                    }
                    Err(e) => {
                        shared
                            .dropped
                            .fetch_add(ids.len() as u64, Ordering::Relaxed);
                        if let Some(inbox) = shared.inbox() {
                            for id in &ids {
                                inbox.published(*id, Err(e.to_string()));
                            }
                        }
                        broke = Some(e);
                    }
                }
            }
            if broke.is_none() && !notes.is_empty() {
                broke = transport.publish(&mut publisher, &notes).await.err();
            }
            match broke {
                None => {
                    if refusing {
                        tracing::warn!(target: "sync_runtime::backplane", place = transport.place(), "{} accepts publishes again", transport.service());
                        refusing = false;
                    }
                }
                Some(e @ TransportError::Refused(_)) => {
                    if !refusing {
                        tracing::error!(target: "sync_runtime::backplane", place = transport.place(), error = %e, "{} refused a publish; triggers are refused until it accepts", transport.service());
                        refusing = true;
                    }
                }
                Some(e @ TransportError::Broken(_)) => break e,
            }
        };
        shared.publishing.store(false, Ordering::Release);
        health.failed(transport.place(), &error);
        if !wait_refusing(&mut backoff, &mut rx, &shared).await {
            return;
        }
    }
}

/// Wait out a reconnect delay, refusing every trigger that arrives meanwhile (as the failed connect
/// refused those already queued). False when the engine is gone.
async fn wait_refusing(
    backoff: &mut Backoff,
    rx: &mut mpsc::Receiver<Outgoing>,
    shared: &Shared,
) -> bool {
    let delay = backoff.wait();
    tokio::pin!(delay);
    loop {
        tokio::select! {
            () = &mut delay => return true,
            item = rx.recv() => match item {
                Some(item) => shared.given_up(item, "the backplane cannot be reached"),
                None => return false,
            },
        }
    }
}
