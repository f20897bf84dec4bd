//! The escalation policy, as a pure state machine over time (no processes here, so every path
//! is tested with made-up clocks).
//!
//! | what happened | within `retry_interval` | step |
//! |---|---|---|
//! | the component's process tree ended, or a probe scored so that the scores of the window add up to 100 | fewer than `retry_count` restarts so far | restart in place (after `restart_backoff`, doubled per restart in the window) |
//! | the same | `retry_count` restarts already | fail over to a standby (the failed one is restarted as a standby) |
//! | a probe scored 201 (Sun Cluster's immediate failover) | any | fail over at once |
//! | a failover | `failover_limit` failovers within `failover_window` already, or no standby passes `monitor_check` | give over: stop, run the `give_over` program, report |
//!
//! This is Sun Cluster's process monitor and fault monitor (`Retry_count` restarts within
//! `Retry_interval`, probe scores 0 / 50 / 100 summed over the interval, 201 to fail over at
//! once) and SA-Forum AMF's escalation in the csa104 demo (component restart, then failover to
//! the standby, then a node-level action).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A probe score that fails the component over at once.
pub const IMMEDIATE_FAILOVER: u32 = 201;
/// A complete failure.
pub const COMPLETE_FAILURE: u32 = 100;

/// What to do next with a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing (a partial failure, not yet adding up).
    Continue,
    /// Restart it in place, after this wait.
    Restart {
        /// The back-off.
        after: Duration,
    },
    /// Fail it over to a standby.
    Failover,
}

/// One component's failure history.
#[derive(Debug, Clone, Default)]
pub struct Escalation {
    restarts: VecDeque<Instant>,
    scores: VecDeque<(Instant, u32)>,
}

/// A component's limits, as the policy needs them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Restarts in place allowed within `retry_interval`.
    pub retry_count: u32,
    /// The window.
    pub retry_interval: Duration,
    /// The first restart's wait.
    pub restart_backoff: Duration,
}

impl Escalation {
    /// The component's process tree ended (or it must be counted as failed completely).
    pub fn failed(&mut self, now: Instant, l: &Limits) -> Step {
        self.forget(now, l);
        self.scores.clear();
        if (self.restarts.len() as u32) < l.retry_count {
            let doublings = self.restarts.len().min(16) as u32;
            self.restarts.push_back(now);
            Step::Restart {
                after: l.restart_backoff.saturating_mul(1 << doublings),
            }
        } else {
            Step::Failover
        }
    }

    /// A probe's score (0 healthy, 1 to 100 a failure of that weight, 201 fail over now; a
    /// probe that timed out is given 100).
    pub fn probed(&mut self, now: Instant, score: u32, l: &Limits) -> Step {
        if score >= IMMEDIATE_FAILOVER {
            self.scores.clear();
            return Step::Failover;
        }
        if score == 0 {
            return Step::Continue;
        }
        self.forget(now, l);
        self.scores.push_back((now, score.min(COMPLETE_FAILURE)));
        let sum: u32 = self.scores.iter().map(|&(_, s)| s).sum();
        if sum >= COMPLETE_FAILURE {
            self.failed(now, l)
        } else {
            Step::Continue
        }
    }

    /// Restarts within the window now.
    pub fn restarts_in_window(&mut self, now: Instant, l: &Limits) -> u32 {
        self.forget(now, l);
        self.restarts.len() as u32
    }

    /// The sum of the scores within the window now.
    pub fn score_in_window(&mut self, now: Instant, l: &Limits) -> u32 {
        self.forget(now, l);
        self.scores.iter().map(|&(_, s)| s).sum()
    }

    /// A restart recorded before (the supervisor's state file), at `at`.
    pub fn replay_restart(&mut self, at: Instant) {
        self.restarts.push_back(at);
    }

    /// After a failover the history starts again (the component runs as a standby now).
    pub fn reset(&mut self) {
        self.restarts.clear();
        self.scores.clear();
    }

    fn forget(&mut self, now: Instant, l: &Limits) {
        let old = |t: &Instant| now.saturating_duration_since(*t) >= l.retry_interval;
        while self.restarts.front().is_some_and(old) {
            self.restarts.pop_front();
        }
        while self.scores.front().is_some_and(|(t, _)| old(t)) {
            self.scores.pop_front();
        }
    }
}

/// The supervisor's failovers within its window.
#[derive(Debug, Clone, Default)]
pub struct Failovers {
    times: VecDeque<Instant>,
}

impl Failovers {
    /// Whether one more failover is allowed now (`limit` within `window`); counts it if so.
    pub fn allow(&mut self, now: Instant, limit: u32, window: Duration) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.times.pop_front();
        }
        if self.times.len() as u32 >= limit {
            return false;
        }
        self.times.push_back(now);
        true
    }

    /// Failovers within the window now.
    pub fn in_window(&self) -> usize {
        self.times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        retry_count: 2,
        retry_interval: Duration::from_secs(60),
        restart_backoff: Duration::from_millis(100),
    };

    #[test]
    fn restarts_up_to_the_count_then_fails_over_and_the_window_forgets() {
        let t0 = Instant::now();
        let mut e = Escalation::default();
        assert_eq!(
            e.failed(t0, &L),
            Step::Restart {
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            e.failed(t0 + Duration::from_secs(1), &L),
            Step::Restart {
                after: Duration::from_millis(200)
            }
        );
        assert_eq!(e.failed(t0 + Duration::from_secs(2), &L), Step::Failover);
        // A minute after the first two, they no longer count.
        assert_eq!(
            e.failed(t0 + Duration::from_secs(62), &L),
            Step::Restart {
                after: Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn partial_scores_add_up_within_the_interval_and_201_fails_over_at_once() {
        let t0 = Instant::now();
        let mut e = Escalation::default();
        assert_eq!(e.probed(t0, 50, &L), Step::Continue);
        assert_eq!(e.probed(t0 + Duration::from_secs(1), 0, &L), Step::Continue);
        // 50 + 50 = 100: a complete failure, the first restart.
        assert!(matches!(
            e.probed(t0 + Duration::from_secs(2), 50, &L),
            Step::Restart { .. }
        ));
        assert_eq!(e.score_in_window(t0 + Duration::from_secs(2), &L), 0);
        // 50 now, 50 after the window: never 100 together.
        assert_eq!(
            e.probed(t0 + Duration::from_secs(3), 50, &L),
            Step::Continue
        );
        assert_eq!(
            e.probed(t0 + Duration::from_secs(70), 50, &L),
            Step::Continue
        );
        assert_eq!(
            e.probed(t0 + Duration::from_secs(71), 201, &L),
            Step::Failover
        );
    }

    #[test]
    fn failovers_are_limited_within_their_window() {
        let t0 = Instant::now();
        let mut f = Failovers::default();
        let w = Duration::from_secs(60);
        assert!(f.allow(t0, 2, w));
        assert!(f.allow(t0 + Duration::from_secs(1), 2, w));
        assert!(!f.allow(t0 + Duration::from_secs(2), 2, w));
        assert!(f.allow(t0 + Duration::from_secs(61), 2, w));
    }
}
