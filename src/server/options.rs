//! How long the server waits for slow clients, how many it holds at once, and how it drains.
//!
//! Every value here bounds something a client controls, so none of them can hold the
//! webhook: a client that never finishes TLS, sends its headers a byte at a time, uploads
//! its body slowly or opens thousands of connections is cut off, while other requests go on.

use std::time::Duration;

/// Limits, timeouts and the shutdown schedule of the HTTPS listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a request's headers. hyper's same timer
    /// also closes a keep-alive connection idle that long, so it must exceed the API server's
    /// 90 s idle timeout: a server that closes first races the client's next POST, which Go
    /// does not retry. An HTTP/2 connection with no request in flight for this long is closed
    /// with GOAWAY (see [`super::idle`]).
    pub header_read_timeout: Duration,
    /// The answer deadline when the API server sends no `?timeout=` hint.
    pub request_timeout: Duration,
    /// The share of the API server's `?timeout=` we may use (answering first lets the
    /// API server report our error instead of a generic timeout).
    pub request_timeout_percent: u8,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long the listener keeps accepting after shutdown begins (while `/readyz` is
    /// already 503), so clients still routed here are served until endpoints update.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish once accepting stops.
    pub drain_timeout: Duration,
    /// Reviews whose body is larger than this many bytes are parsed, injected and answered on
    /// tokio's blocking pool, so they do not stall the async workers (the server's `blocking` module).
    pub blocking_threshold_bytes: usize,
    /// How many such reviews run on the blocking pool at once; more wait for a turn.
    pub blocking_permits: usize,
}

/// The default [`ServeOptions::blocking_threshold_bytes`]: 256 KiB, above any everyday pod.
pub const DEFAULT_BLOCKING_THRESHOLD_BYTES: usize = 256 * 1024;

/// The default [`ServeOptions::blocking_permits`]: one per CPU this process may use.
pub fn default_blocking_permits() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for ServeOptions {
    /// Safe for a cluster, except `drain_delay`, which is 0 so tests and benchmarks stop at once.
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(8),
            request_timeout_percent: 80,
            max_connections: 1024,
            drain_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(20),
            blocking_threshold_bytes: DEFAULT_BLOCKING_THRESHOLD_BYTES,
            blocking_permits: default_blocking_permits(),
        }
    }
}

// === impl ServeOptions ===

impl ServeOptions {
    /// The deadline for one request: `request_timeout_percent` of the API server's
    /// `timeout` query parameter when it sends one we can read, else `request_timeout`.
    pub fn request_deadline(&self, query: Option<&str>) -> Duration {
        let hint = query.and_then(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == "timeout")
                .and_then(|(_, value)| parse_go_duration(value))
        });
        match hint {
            Some(timeout) if !timeout.is_zero() => timeout * u32::from(self.request_timeout_percent.min(100)) / 100,
            _ => self.request_timeout,
        }
    }
}

/// The longest Go duration text read. It keeps every sum [`kube_core::Duration`] makes far
/// below `std::time::Duration::MAX` (16 characters are at most 10^15 hours), so its
/// arithmetic cannot overflow.
const GO_DURATION_MAX_LEN: usize = 16;

/// Parses the Go duration strings the API server writes (`10s`, `1m30s`, `1.5s`, `500ms`)
/// with [`kube_core::Duration`]; `None` for anything else, for a negative duration, or for
/// anything over an hour.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    // kube-core panics on a negative term after the first (`1s-5s`) and on overflow, so
    // only an optional leading sign, digits, dots and unit letters get through, briefly.
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let plain = unsigned
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '\u{b5}' || c == '\u{3bc}');
    if text.is_empty() || text.len() > GO_DURATION_MAX_LEN || !plain {
        return None;
    }
    let parsed: kube_core::Duration = text.parse().ok()?;
    let duration = Duration::from(parsed);
    (!parsed.is_negative() && duration <= Duration::from_secs(3600)).then_some(duration)
}

/// Parses a flag's duration: Go style (`5s`, `100ms`, `1m`) or plain seconds (`5`).
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    parse_go_duration(text).ok_or_else(|| format!("{text:?} is not a duration (examples: 5s, 100ms, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("2us"), Some(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("2µs"), Some(Duration::from_micros(2)));
        for bad in [
            "",
            "10",
            "s",
            "1e9s",
            "-1s",
            "10x",
            "2h",
            "1s-5s",
            "1s+5s",
            "99999999999999999999h",
            "9999999999999h",
            "nan",
            "infs",
            "1..5s",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn go_duration_parsing_never_panics(text in "[-+0-9.eµnsumh ]{0,24}") {
            if let Some(duration) = parse_go_duration(&text) {
                proptest::prop_assert!(duration <= Duration::from_secs(3600));
            }
        }
    }

    #[test]
    fn deadline_is_a_share_of_the_api_server_timeout() {
        let options = ServeOptions::default();
        assert_eq!(options.request_deadline(Some("timeout=10s")), Duration::from_secs(8));
        assert_eq!(
            options.request_deadline(Some("a=b&timeout=1s")),
            Duration::from_millis(800)
        );
        assert_eq!(options.request_deadline(Some("timeout=bogus")), Duration::from_secs(8));
        assert_eq!(options.request_deadline(Some("timeout=0s")), Duration::from_secs(8));
        assert_eq!(options.request_deadline(Some("timeout=-10s")), Duration::from_secs(8));
        assert_eq!(options.request_deadline(Some("timeout=1s-5s")), Duration::from_secs(8));
        assert_eq!(options.request_deadline(None), Duration::from_secs(8));
    }

    #[test]
    fn flag_durations_accept_seconds_or_units() {
        assert_eq!(parse_flag_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_flag_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_flag_duration("soon").unwrap_err().contains("soon"));
    }
}
