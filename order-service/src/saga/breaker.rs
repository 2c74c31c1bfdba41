//! A circuit breaker per participant. Written here rather than taken from a crate: the Rust
//! breakers on crates.io are young or unmaintained, and this one needs two things they do not
//! offer together: its state read by the metrics, and time passed in so tests can drive it.
//!
//! Closed: calls pass; `failure_threshold` consecutive failures open it. Open: calls are refused
//! at once for `open_for`. Then half-open: one probe at a time passes; a success closes the
//! breaker, a failure opens it again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    failure_threshold: u32,
    open_for: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

/// May a call go out now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Allowed,
    /// Refused; the breaker is open for about this long still.
    Refused(Duration),
}

impl Breaker {
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
            failures: 0,
            opened_at: None,
            probing: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(at) if now.duration_since(at) < self.open_for => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    pub fn permit(&mut self, now: Instant) -> Permit {
        match (self.state(now), self.opened_at) {
            (BreakerState::Closed, _) => Permit::Allowed,
            (BreakerState::Open, Some(at)) => {
                Permit::Refused(self.open_for.saturating_sub(now.duration_since(at)))
            }
            (BreakerState::HalfOpen, _) if !self.probing => {
                self.probing = true;
                Permit::Allowed
            }
            // A probe is out: the others wait for its verdict.
            _ => Permit::Refused(self.open_for / 4),
        }
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.probing = false;
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.probing || self.failures >= self.failure_threshold {
            self.opened_at = Some(now);
        }
        self.probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_when_half_open_and_closes_on_success() {
        let start = Instant::now();
        let mut breaker = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert_eq!(breaker.permit(start), Permit::Allowed);
            breaker.failed(start);
        }
        assert_eq!(breaker.state(start), BreakerState::Closed);
        breaker.failed(start);
        assert_eq!(breaker.state(start), BreakerState::Open);
        let later = start + Duration::from_secs(4);
        assert_eq!(
            breaker.permit(later),
            Permit::Refused(Duration::from_secs(6))
        );

        let half_open = start + Duration::from_secs(10);
        assert_eq!(breaker.state(half_open), BreakerState::HalfOpen);
        assert_eq!(breaker.permit(half_open), Permit::Allowed, "one probe");
        assert!(
            matches!(breaker.permit(half_open), Permit::Refused(_)),
            "only one"
        );
        breaker.failed(half_open);
        assert_eq!(
            breaker.state(half_open),
            BreakerState::Open,
            "a failed probe reopens"
        );

        let again = half_open + Duration::from_secs(10);
        assert_eq!(breaker.permit(again), Permit::Allowed);
        breaker.succeeded();
        assert_eq!(breaker.state(again), BreakerState::Closed);
        assert_eq!(breaker.permit(again), Permit::Allowed);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(1));
        breaker.failed(now);
        breaker.succeeded();
        breaker.failed(now);
        assert_eq!(breaker.state(now), BreakerState::Closed);
    }
}
