//! A hub's limits and timings, each with its default (set through [`SyncHubBuilder`](crate::SyncHubBuilder)).

use std::time::Duration;

/// Limits and timings of a hub. Every field has a safe default; set them through [`SyncHubBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub prefix: String,
    pub filter_deadline: Duration,
    pub filter_concurrency: usize,
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    pub lane_queue: usize,
    pub lane_idle: Duration,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub allowed_origins: Vec<String>,
    pub resume_grace: Duration,
    pub replay_frames: usize,
    pub history: crate::history::HistoryLimits,
    pub max_connections_per_user: usize,
    pub parked_frames: usize,
    pub parked_bytes: usize,
    pub max_parked: usize,
    pub max_parked_per_user: usize,
    pub max_parked_bytes: usize,
    pub socket_read_buffer: usize,
    pub socket_write_buffer: usize,
    pub user_rate_per_sec: u32,
    pub user_rate_burst: u32,
    pub sse_keepalive: Duration,
    pub presence_limit: usize,
    pub presence_window: Duration,
    #[cfg(feature = "metrics")]
    pub metrics: super::metrics::MetricsConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            prefix: "/_sync".to_owned(),
            filter_deadline: Duration::from_secs(2),
            filter_concurrency: 64,
            outbound_queue: 4096,
            outbound_queue_bytes: 4 << 20,
            lane_queue: 4096,
            lane_idle: Duration::from_secs(10),
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 1024 * 1024,
            rate_per_sec: 200,
            rate_burst: 2000,
            allowed_origins: Vec::new(),
            resume_grace: Duration::from_secs(120),
            replay_frames: 64,
            history: crate::history::HistoryLimits::default(),
            max_connections_per_user: 64,
            parked_frames: 1024,
            parked_bytes: 256 * 1024,
            max_parked: 10_000,
            max_parked_per_user: 16,
            max_parked_bytes: 64 << 20,
            socket_read_buffer: 512,
            socket_write_buffer: 16 * 1024,
            user_rate_per_sec: 500,
            user_rate_burst: 5000,
            sse_keepalive: Duration::from_secs(30),
            presence_limit: 100,
            presence_window: Duration::from_millis(100),
            #[cfg(feature = "metrics")]
            metrics: super::metrics::MetricsConfig::default(),
        }
    }
}
