//! Where a read that may be stale goes: the replica while it is close enough behind, else the
//! primary or a refusal, as configured per kind of read. Pure, so every case is a unit test.

use std::time::Duration;

/// The replica as the monitor last saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplicaState {
    /// Not measured yet (the first reading is taken at start-up).
    Unknown,
    /// Answering, this far behind the primary.
    Up { lag: Duration },
    /// Not answering, or not a replica of this primary.
    Down,
}

/// A read that may be served from slightly stale data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `GET /v1/orders`: lists and searches.
    List,
    /// `GET /v1/reports/*`.
    Report,
}

impl ReadKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Report => "report",
        }
    }
}

/// What a kind of read does while the replica is down or further behind than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhenBehind {
    /// Read from the primary instead.
    Primary,
    /// Answer 503 (`replica-lagging` or `replica-unavailable`) with Retry-After.
    Refuse,
}

/// Why a read was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behind {
    Lagging { lag: Duration },
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route {
    Replica,
    Primary,
    Refuse(Behind),
}

/// The route of one read. A lag of exactly `max_lag` is still served by the replica.
pub fn route(state: ReplicaState, max_lag: Duration, when_behind: WhenBehind) -> Route {
    let behind = match state {
        ReplicaState::Up { lag } if lag <= max_lag => return Route::Replica,
        ReplicaState::Up { lag } => Behind::Lagging { lag },
        ReplicaState::Unknown | ReplicaState::Down => Behind::Unavailable,
    };
    match when_behind {
        WhenBehind::Primary => Route::Primary,
        WhenBehind::Refuse => Route::Refuse(behind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    fn up(secs: u64) -> ReplicaState {
        ReplicaState::Up {
            lag: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_replica_within_the_bound_serves_whatever_the_policy() {
        for policy in [WhenBehind::Primary, WhenBehind::Refuse] {
            assert_eq!(route(up(0), MAX, policy), Route::Replica);
            assert_eq!(route(up(10), MAX, policy), Route::Replica);
        }
    }

    #[test]
    fn a_lagging_replica_sends_reads_to_the_primary_or_refuses_them() {
        assert_eq!(route(up(11), MAX, WhenBehind::Primary), Route::Primary);
        assert_eq!(
            route(up(11), MAX, WhenBehind::Refuse),
            Route::Refuse(Behind::Lagging {
                lag: Duration::from_secs(11)
            })
        );
    }

    #[test]
    fn a_replica_down_or_not_measured_yet_is_unavailable() {
        for state in [ReplicaState::Down, ReplicaState::Unknown] {
            assert_eq!(route(state, MAX, WhenBehind::Primary), Route::Primary);
            assert_eq!(
                route(state, MAX, WhenBehind::Refuse),
                Route::Refuse(Behind::Unavailable)
            );
        }
    }

    #[test]
    fn kinds_have_distinct_labels() {
        assert_eq!(ReadKind::List.label(), "list");
        assert_eq!(ReadKind::Report.label(), "report");
    }
}
