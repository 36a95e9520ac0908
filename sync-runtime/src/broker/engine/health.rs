//! Reconnect backoff, and logging an outage once when it starts and once when it ends.

use std::fmt::Display;
use std::time::Duration;

/// Reconnect delays: 100 ms doubling to 2 s.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// Logs an outage once when it starts and once when it ends.
pub(super) struct Health {
    role: &'static str,
    service: &'static str,
    /// Connected at least once: a failure is then an outage, not a failed start.
    ever_up: bool,
    down: bool,
}

impl Health {
    pub(super) fn new(role: &'static str, service: &'static str) -> Self {
        Health {
            role,
            service,
            ever_up: false,
            down: false,
        }
    }

    pub(super) fn failed(&mut self, place: &str, error: &dyn Display) {
        let (role, service) = (self.role, self.service);
        if self.down {
            tracing::debug!(target: "sync_runtime::backplane", place, error = %error, "{role} still cannot reach {service}");
        } else if self.ever_up {
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} lost {service}; triggers are refused until it is back, reconnecting");
        } else {
            tracing::warn!(target: "sync_runtime::backplane", place, error = %error, "{role} could not connect to {service}; triggers are refused until it is reached, retrying");
        }
        self.down = true;
    }

    pub(super) fn up(&mut self, place: &str) {
        let (role, service) = (self.role, self.service);
        match (self.down, self.ever_up) {
            (true, true) => {
                tracing::warn!(target: "sync_runtime::backplane", place, "{role} reconnected to {service}");
            }
            // At the level of the failures it ends.
            (true, false) => {
                tracing::warn!(target: "sync_runtime::backplane", place, "{role} connected to {service} at last");
            }
            (false, _) => {
                tracing::info!(target: "sync_runtime::backplane", place, "{role} connected to {service}");
            }
        }
        self.down = false;
        self.ever_up = true;
    }
}
