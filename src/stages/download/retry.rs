//! When to try a failed transfer again, and how long to wait first:
//! exponential backoff over a fixed number of attempts that made no progress.

use std::time::Duration;

/// Environment variable overriding [`RetryPolicy::tries`].
pub const TRIES_ENV: &str = "MSNR_DOWNLOAD_TRIES";
/// Environment variable overriding [`RetryPolicy::base_delay`], in milliseconds.
pub const BASE_DELAY_ENV: &str = "MSNR_DOWNLOAD_RETRY_BASE_MS";

/// How persistently a download retries transient failures (connect errors,
/// timeouts, HTTP 408, 429 and 5xx, a connection closed mid-body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in a row that may fail without the partial file growing
    /// before the download gives up (at least 1).
    pub tries: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub base_delay: Duration,
    /// The longest single wait (also caps a server's `Retry-After`).
    pub max_delay: Duration,
    /// How long connecting, waiting for response headers, or one read may take.
    pub io_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            tries: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The default policy with [`TRIES_ENV`] and [`BASE_DELAY_ENV`] applied
    /// (values that are not whole numbers are ignored).
    #[must_use]
    pub fn from_env() -> Self {
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let mut policy = Self::default();
        if let Some(tries) = read(TRIES_ENV) {
            policy.tries = u32::try_from(tries.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(ms) = read(BASE_DELAY_ENV) {
            policy.base_delay = Duration::from_millis(ms);
        }
        policy
    }

    /// The wait before the next attempt after `failures` consecutive failures
    /// (1 for the first): `base * 2^(failures-1)`, at least the server's
    /// `Retry-After` when it sent one, never more than `max_delay`.
    #[must_use]
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        let backoff = self.base_delay.saturating_mul(factor);
        backoff.max(retry_after.unwrap_or_default()).min(self.max_delay)
    }
}

/// Whether an HTTP status is worth retrying: 408 Request Timeout,
/// 429 Too Many Requests, and every 5xx (RFC 9110 section 15.6).
#[must_use]
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is ignored).
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy { base_delay: Duration::from_millis(200), ..RetryPolicy::default() };
        let waits: Vec<u128> = (1..=4).map(|n| policy.delay(n, None).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600]);
        assert_eq!(policy.delay(40, None), policy.max_delay);
        assert_eq!(policy.delay(1, Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), policy.max_delay);
    }

    #[test]
    fn classifies_statuses() {
        let transient: Vec<u16> = [200, 400, 403, 404, 408, 416, 429, 500, 503, 599]
            .into_iter()
            .filter(|s| is_transient_status(*s))
            .collect();
        assert_eq!(transient, [408, 429, 500, 503, 599]);
    }

    #[test]
    fn parses_retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
