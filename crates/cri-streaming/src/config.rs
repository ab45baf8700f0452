//! Streaming server configuration and its kubelet-like defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of [`crate::Server`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:0`.
    pub bind_addr: SocketAddr,
    /// Base of the returned URLs (`http://host:port`), when the listener is reached through
    /// another name; default: derived from the bound address.
    pub base_url: Option<String>,
    /// A stream with no traffic for this long is closed. Default 4 h (kubelet's default).
    pub stream_idle_timeout: Duration,
    /// How long a SPDY client has to create all streams of a request. Default 30 s.
    pub stream_creation_timeout: Duration,
    /// Lifetime of a token. Default 1 min.
    pub request_ttl: Duration,
    /// Maximum number of outstanding tokens; the oldest is evicted when full. Default 1000.
    pub request_cache_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            stream_idle_timeout: Duration::from_secs(4 * 60 * 60),
            stream_creation_timeout: Duration::from_secs(30),
            request_ttl: Duration::from_secs(60),
            request_cache_size: 1000,
        }
    }
}
