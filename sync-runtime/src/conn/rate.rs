//! A token bucket: the rate limit of a connection's (and a user's) messages.

use std::time::Instant;

/// `rate` messages per second, up to `burst` at once.
#[derive(Debug)]
pub(crate) struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimit {
            tokens: f64::from(burst),
            rate: f64::from(per_sec),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Take a token if there is one.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_and_the_next_message_waits_for_a_token() {
        let mut limit = RateLimit::new(1, 3);
        assert!((0..3).all(|_| limit.allow()));
        assert!(!limit.allow());
    }
}
