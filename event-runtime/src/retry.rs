//! Retry policy: a few immediate retries, then exponential backoff with jitter, then the
//! dead-letter queue.

use std::time::Duration;

/// When to try a transiently failing handler again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries without waiting, after the first attempt.
    pub immediate: u32,
    /// Retries with backoff, after the immediate ones.
    pub backoff: u32,
    /// The first backoff delay.
    pub initial_delay: Duration,
    /// The largest backoff delay.
    pub max_delay: Duration,
    /// Growth factor per backoff retry.
    pub multiplier: f64,
    /// Random spread, 0.0..=1.0: a delay `d` becomes uniform in `d * (1 - jitter) ..= d`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 2 immediate retries, then 3 with backoff from 100 ms doubling up to 5 s, 20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            immediate: 2,
            backoff: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first transient failure dead-letters.
    pub fn none() -> Self {
        RetryPolicy {
            immediate: 0,
            backoff: 0,
            ..RetryPolicy::default()
        }
    }

    /// Total attempts allowed, the first included.
    pub fn max_attempts(&self) -> u32 {
        1 + self.immediate + self.backoff
    }

    /// The wait before attempt `next` (2 for the first retry), or `None` when attempts are
    /// exhausted. `random` is a uniform sample in `0.0..1.0` for the jitter.
    pub fn delay_before(&self, next: u32, random: f64) -> Option<Duration> {
        if next < 2 || next > self.max_attempts() {
            return None;
        }
        let retry = next - 1;
        if retry <= self.immediate {
            return Some(Duration::ZERO);
        }
        let step = retry - self.immediate - 1;
        let base = self.initial_delay.as_secs_f64() * self.multiplier.powi(step as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        Some(Duration::from_secs_f64(
            capped * (1.0 - jitter * random.clamp(0.0, 1.0)),
        ))
    }
}

/// How a publish rides out an engine outage: an attempt that fails with
/// [`TransportErrorKind::Unavailable`](crate::transport::TransportErrorKind::Unavailable) is
/// tried again, with the same records (the same CloudEvents ids, so the engine's or the
/// consumers' dedupe drops a copy an earlier attempt stored after all), after a backoff doubling
/// from `first_backoff` to `max_backoff`, while less than `give_up_after` has passed since the
/// first attempt. Then the publish fails with the last error, its message stating how many
/// attempts were made over how long. A publish thus ends within `give_up_after` plus one
/// attempt's own duration, which the engine bounds: on NATS the request timeout; on Kafka up to
/// a few request timeouts (a metadata call, `message.timeout.ms`, and for a new topic its
/// creation). Other errors (a message too large, an authorization failure) fail at once.
///
/// Memory stays bounded: a publish holds only its own records while it waits, and the engine
/// clients' own buffers are bounded (async-nats' command channel, librdkafka's
/// `queue.buffering.max.messages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRetry {
    /// How long a publish may keep trying; zero tries once.
    pub give_up_after: Duration,
    /// The first wait between attempts.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for PublishRetry {
    /// Up to 10 s, waits from 50 ms doubling up to 1 s.
    fn default() -> Self {
        PublishRetry {
            give_up_after: Duration::from_secs(10),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl PublishRetry {
    /// One attempt: an unavailable engine fails the publish at once.
    pub fn none() -> Self {
        PublishRetry {
            give_up_after: Duration::ZERO,
            ..PublishRetry::default()
        }
    }

    /// Keeps trying for up to `give_up_after` (the default backoff).
    pub fn for_up_to(give_up_after: Duration) -> Self {
        PublishRetry {
            give_up_after,
            ..PublishRetry::default()
        }
    }

    /// Runs `attempt` under this policy (see the type's docs).
    pub(crate) async fn run<R, F, Fut>(
        &self,
        mut attempt: F,
    ) -> Result<R, crate::publish::PublishError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, crate::publish::PublishError>>,
    {
        use crate::publish::PublishError;
        use crate::transport::TransportErrorKind;
        let started = std::time::Instant::now();
        let mut backoff = self.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match attempt().await {
                Err(PublishError::Transport(mut err))
                    if err.kind == TransportErrorKind::Unavailable =>
                {
                    let elapsed = started.elapsed();
                    if elapsed >= self.give_up_after {
                        if !self.give_up_after.is_zero() {
                            let plural = if attempts == 1 { "" } else { "s" };
                            err.message = format!(
                                "{} (gave up after {attempts} attempt{plural} over {:.1} s)",
                                err.message,
                                elapsed.as_secs_f64()
                            );
                        }
                        return Err(PublishError::Transport(err));
                    }
                    tokio::time::sleep(backoff.min(self.give_up_after - elapsed)).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                other => return other,
            }
        }
    }
}

/// A cheap uniform sample in `0.0..1.0` for jitter (not for anything that needs real randomness).
pub(crate) fn jitter_sample() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(crate::transport::now_ms() as u64);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_exponential_then_exhausted() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.max_attempts(), 6);
        assert_eq!(policy.delay_before(1, 0.5), None);
        assert_eq!(policy.delay_before(2, 0.5), Some(Duration::ZERO));
        assert_eq!(policy.delay_before(3, 0.5), Some(Duration::ZERO));
        assert_eq!(
            policy.delay_before(4, 0.5),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            policy.delay_before(5, 0.5),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            policy.delay_before(6, 0.5),
            Some(Duration::from_millis(400))
        );
        assert_eq!(policy.delay_before(7, 0.5), None);
        let capped = RetryPolicy {
            backoff: 20,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(capped.delay_before(22, 0.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn jitter_only_shortens_within_its_spread() {
        let policy = RetryPolicy::default();
        let full = policy.delay_before(4, 0.0).unwrap();
        let most = policy.delay_before(4, 1.0).unwrap();
        assert_eq!(full, Duration::from_millis(100));
        assert_eq!(most, Duration::from_millis(80));
        for _ in 0..100 {
            let sample = jitter_sample();
            assert!((0.0..1.0).contains(&sample));
        }
    }
}
