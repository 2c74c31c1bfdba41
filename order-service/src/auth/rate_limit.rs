//! Rate limits per caller (keyed GCRA): the token's subject, or the client address without a
//! valid token. The set of tracked callers is bounded: idle ones are forgotten on a timer, and
//! past the cap the callers share one limit until they are.
//!
//! The headers follow draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "default";q=..;w=..`
//! and `RateLimit: "default";r=..;t=..`, with `Retry-After` on a 429.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::config::RateLimitConfig;

/// Whom a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Subject(String),
    Address(IpAddr),
    /// Any caller while the tracked set is full.
    Overflow,
}

type Limiter = RateLimiter<
    CallerKey,
    DefaultKeyedStateStore<CallerKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// How often idle callers are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(10);

pub struct RateLimits {
    limiter: Limiter,
    quota: Quota,
    max_callers: usize,
    /// Milliseconds since `started` of the last inline clean-up, so a full set is swept at
    /// most once a second by requests.
    last_sweep_ms: AtomicU64,
    started: std::time::Instant,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32, reset_secs: u64 },
    Throttled { retry_after_secs: u64 },
}

impl RateLimits {
    /// `None` when limits are off (`--rate-limit-per-second 0`).
    pub fn new(config: &RateLimitConfig) -> Option<Self> {
        let rate = NonZeroU32::new(config.rate_limit_per_second)?;
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            quota,
            max_callers: config.rate_limit_max_callers.max(1),
            last_sweep_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// Counts one request of `key`.
    pub fn check(&self, key: CallerKey) -> Decision {
        let key = if self.limiter.len() >= self.max_callers && !self.sweep_if_full() {
            CallerKey::Overflow
        } else {
            key
        };
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.quota.burst_size().get().saturating_sub(remaining);
                let reset = self.quota.replenish_interval() * used;
                Decision::Allowed {
                    remaining,
                    reset_secs: ceil_secs(reset),
                }
            }
            Err(not_until) => Decision::Throttled {
                retry_after_secs: ceil_secs(not_until.wait_time_from(self.limiter.clock().now()))
                    .max(1),
            },
        }
    }

    /// Forgets idle callers when the set is full (at most once a second); whether there is
    /// room now.
    fn sweep_if_full(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.forget_idle();
        }
        self.limiter.len() < self.max_callers
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Callers tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets idle callers every few seconds until `stopping`.
    pub async fn run(self: Arc<Self>, stopping: CancellationToken) {
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(FORGET_EVERY) => self.forget_idle(),
            }
        }
    }

    /// `RateLimit-Policy` and `RateLimit` for a decision.
    pub fn headers(&self, decision: &Decision) -> HeaderMap {
        let burst = self.quota.burst_size().get();
        let window = ceil_secs(self.quota.burst_size_replenished_in()).max(1);
        let (remaining, reset) = match decision {
            Decision::Allowed {
                remaining,
                reset_secs,
            } => (*remaining, *reset_secs),
            Decision::Throttled { retry_after_secs } => (0, *retry_after_secs),
        };
        let mut headers = HeaderMap::new();
        if let Ok(policy) = HeaderValue::from_str(&format!("\"default\";q={burst};w={window}")) {
            headers.insert("ratelimit-policy", policy);
        }
        if let Ok(state) = HeaderValue::from_str(&format!("\"default\";r={remaining};t={reset}")) {
            headers.insert("ratelimit", state);
        }
        headers
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32, max_callers: usize) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            rate_limit_per_second: per_second,
            rate_limit_burst: burst,
            rate_limit_max_callers: max_callers,
        })
        .expect("limits on")
    }

    #[test]
    fn zero_turns_limits_off() {
        assert!(RateLimits::new(&RateLimitConfig {
            rate_limit_per_second: 0,
            rate_limit_burst: 10,
            rate_limit_max_callers: 10,
        })
        .is_none());
    }

    #[test]
    fn a_caller_gets_its_burst_then_waits() {
        let limits = limits(1, 3, 100);
        let alice = CallerKey::Subject("alice".into());
        for left in (0..3).rev() {
            match limits.check(alice.clone()) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, left),
                other => panic!("allowed expected, got {other:?}"),
            }
        }
        let throttled = limits.check(alice);
        assert_eq!(
            throttled,
            Decision::Throttled {
                retry_after_secs: 1
            }
        );
        let headers = limits.headers(&throttled);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=3;w=3");
        assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");
        // Another caller has its own budget.
        assert!(matches!(
            limits.check(CallerKey::Subject("bob".into())),
            Decision::Allowed { .. }
        ));
    }

    #[test]
    fn past_the_cap_new_callers_share_one_limit() {
        let limits = limits(1, 1, 2);
        for n in 0..2 {
            let address = IpAddr::from([10, 0, 0, n]);
            assert!(matches!(
                limits.check(CallerKey::Address(address)),
                Decision::Allowed { .. }
            ));
        }
        // The set is full and nobody is idle yet: the next two share the overflow limit.
        assert!(matches!(
            limits.check(CallerKey::Address(IpAddr::from([10, 0, 0, 9]))),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limits.check(CallerKey::Address(IpAddr::from([10, 0, 0, 10]))),
            Decision::Throttled { .. }
        ));
        assert!(limits.tracked() <= 3);
    }
}
