//! The one retry policy of the workspace: exponential backoff with full jitter (the
//! delay before attempt `n` is uniform in `[0, min(max_delay, base_delay · 2ⁿ⁻¹)]`), as
//! AWS's architecture blog recommends for competing clients, and as Quickwit's
//! `RetryParams` does.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first delay.
    pub base_delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// Attempts in all, the first included; `None`: until the operation succeeds or fails
    /// for good (the caller stops it through cancellation).
    pub max_attempts: Option<u32>,
}

impl RetryPolicy {
    /// A policy with these bounds.
    pub const fn new(base_delay: Duration, max_delay: Duration, max_attempts: Option<u32>) -> Self {
        RetryPolicy {
            base_delay,
            max_delay,
            max_attempts,
        }
    }

    /// The ceiling of the delay before retry number `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// The delay before retry number `retry`: uniform in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        if ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// Whether another attempt may follow attempt number `attempt` (1 for the first).
    pub fn may_retry(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max)
    }

    /// Runs `operation` until it succeeds, fails with an error `retryable` refuses, or the
    /// attempts run out; sleeps [`delay`](Self::delay) between attempts. `operation` gets
    /// the attempt number (1 for the first).
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut operation: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match operation(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) && self.may_retry(attempt) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(2), Some(6));

    #[test]
    fn ceilings_double_up_to_the_maximum() {
        let ceilings: Vec<u128> = (1..=7).map(|n| POLICY.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let delays: Vec<Duration> = (0..200).map(|_| POLICY.delay(4)).collect();
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_millis(800))
        );
        // Full jitter: not all the same, and some well below the ceiling.
        assert!(
            delays
                .iter()
                .any(|delay| *delay < Duration::from_millis(400))
        );
        assert!(delays.iter().any(|delay| *delay != delays[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_within_the_backoff_bound() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        // Paused time advances at once whenever every task sleeps.
        let result: Result<u32, &str> = POLICY
            .retry(
                |attempt| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if attempt < 4 {
                            Err("busy")
                        } else {
                            Ok(attempt)
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Ok(4));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Three sleeps, bounded by 100 + 200 + 400 ms.
        assert!(started.elapsed() <= Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_attempt_limit_and_on_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = POLICY
            .retry(
                |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err("busy") }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Err("busy"));
        assert_eq!(calls.load(Ordering::SeqCst), 6);

        let permanent = AtomicU32::new(0);
        let result: Result<(), &str> = POLICY
            .retry(
                |_| {
                    permanent.fetch_add(1, Ordering::SeqCst);
                    async { Err("denied") }
                },
                |error| *error != "denied",
            )
            .await;
        assert_eq!(result, Err("denied"));
        assert_eq!(permanent.load(Ordering::SeqCst), 1);
    }
}
