//! How far behind the primary the replica's data is, as a duration.
//!
//! `now() - pg_last_xact_replay_timestamp()` alone reads an idle, caught-up replica as hours
//! behind (the last replayed commit is old) and hides a replica stuck behind a burst until the
//! next commit is replayed. So the monitor samples the primary's WAL position on every tick;
//! the lag is the age of the oldest sample the replica has not replayed yet: the primary had
//! written data that long ago which the replica still lacks. Written by hand: no crate measures
//! replica staleness; it is a dozen lines over a bounded deque.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The primary's WAL positions over time, bounded: the oldest samples go first.
#[derive(Debug)]
pub struct LagClock {
    /// `(position, first seen)`, positions strictly increasing.
    samples: VecDeque<(u64, Instant)>,
    capacity: usize,
}

impl LagClock {
    /// Keeps at most `capacity` samples; a replica behind all of them reads as at least as old
    /// as the oldest.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    /// Notes that the primary had written up to `position` at `at`. A position already seen
    /// keeps the time it was first seen.
    pub fn record_primary(&mut self, position: u64, at: Instant) {
        if self
            .samples
            .back()
            .is_some_and(|&(last, _)| position <= last)
        {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((position, at));
    }

    /// The lag of a replica that has replayed up to `replayed`, as of `now`; samples it has
    /// replayed are forgotten (it never goes back).
    pub fn lag(&mut self, replayed: u64, now: Instant) -> Duration {
        while self
            .samples
            .front()
            .is_some_and(|&(position, _)| position <= replayed)
        {
            self.samples.pop_front();
        }
        self.samples.front().map_or(Duration::ZERO, |&(_, seen)| {
            now.saturating_duration_since(seen)
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_replica_that_replayed_everything_has_no_lag() {
        let t = Instant::now();
        let mut clock = LagClock::new(10);
        clock.record_primary(100, t);
        clock.record_primary(200, at(t, 1));
        assert!(!clock.is_empty());
        assert_eq!(clock.lag(200, at(t, 5)), Duration::ZERO);
        assert_eq!(clock.lag(250, at(t, 5)), Duration::ZERO);
        assert!(clock.is_empty());
    }

    #[test]
    fn the_lag_is_the_age_of_the_oldest_position_not_replayed() {
        let t = Instant::now();
        let mut clock = LagClock::new(10);
        clock.record_primary(100, t);
        clock.record_primary(200, at(t, 1));
        clock.record_primary(300, at(t, 2));
        // Replayed 100 but not 200 (written by 1 s): 9 s behind at 10 s.
        assert_eq!(clock.lag(150, at(t, 10)), Duration::from_secs(9));
        // Still there next time, and growing.
        assert_eq!(clock.lag(150, at(t, 12)), Duration::from_secs(11));
        assert_eq!(clock.len(), 2);
        // Exactly at a sampled position counts as replayed.
        assert_eq!(clock.lag(200, at(t, 12)), Duration::from_secs(10));
        assert_eq!(clock.len(), 1);
    }

    #[test]
    fn an_idle_primary_adds_no_samples_and_keeps_the_first_time_a_position_was_seen() {
        let t = Instant::now();
        let mut clock = LagClock::new(10);
        clock.record_primary(100, t);
        clock.record_primary(100, at(t, 5));
        clock.record_primary(90, at(t, 6));
        assert_eq!(clock.len(), 1);
        assert_eq!(clock.lag(50, at(t, 10)), Duration::from_secs(10));
    }

    #[test]
    fn the_samples_are_bounded_and_a_replica_behind_all_of_them_reads_as_the_oldest() {
        let t = Instant::now();
        let mut clock = LagClock::new(3);
        for i in 0..10 {
            clock.record_primary(100 * (i + 1), at(t, i));
        }
        assert_eq!(clock.len(), 3);
        // Positions 800..1000 remain, seen at 7..9 s.
        assert_eq!(clock.lag(0, at(t, 20)), Duration::from_secs(13));
    }

    #[test]
    fn a_clock_of_capacity_zero_still_holds_one_sample() {
        let t = Instant::now();
        let mut clock = LagClock::new(0);
        clock.record_primary(100, t);
        clock.record_primary(200, at(t, 1));
        assert_eq!(clock.len(), 1);
        assert_eq!(clock.lag(0, at(t, 4)), Duration::from_secs(3));
    }
}
