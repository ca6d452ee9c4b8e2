//! Idle HTTP/2 connections: closed with GOAWAY when no request has been in flight for a while.
//!
//! hyper's header read timeout only covers HTTP/1.1. Without this, an HTTP/2 client could
//! finish TLS and then send nothing (or only pings) and hold one of the limited connection
//! slots for ever. GOAWAY is safe to send to an idle connection: a client that races it with
//! a new request is told the stream was refused and retries on a new connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

/// What one connection is doing: requests in flight and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last ended (0: none yet).
    last_ended_ms: AtomicU64,
}

/// Counts a request as in flight until dropped, however the request ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        activity.last_ended_ms.store(now, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

// === impl Activity ===

impl Activity {
    /// A connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
        })
    }

    /// How long until the connection will have been idle for `limit`; zero when it already
    /// has, and `limit` while a request is in flight (look again then).
    pub fn idle_deadline(&self, limit: Duration) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return limit;
        }
        let idle_since = Duration::from_millis(self.last_ended_ms.load(Ordering::SeqCst));
        let idle_for = self.opened.elapsed().saturating_sub(idle_since);
        limit.saturating_sub(idle_for)
    }

    /// Middleware that marks each request in flight while it runs.
    pub async fn track(activity: Arc<Activity>, request: Request, next: Next) -> Response {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(activity);
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_last_request() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(activity.idle_deadline(limit), Duration::from_secs(6));
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        let request = InFlight(activity.clone());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(activity.idle_deadline(limit), limit, "busy connections are not idle");
        drop(request);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(activity.idle_deadline(limit), Duration::from_secs(7));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(activity.idle_deadline(limit), Duration::ZERO);
    }
}
