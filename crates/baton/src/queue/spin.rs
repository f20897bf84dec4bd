//! The polling window of a blocking receive, before it sleeps.

use std::time::{Duration, Instant};

/// How many polls pass between two looks at the clock. A poll of an empty queue costs about
/// 30 ns and a clock read about as much on these machines: reading it every time doubled the
/// time between two looks at the lanes, and so the time a spinning receiver takes to see a
/// message. Every 8th poll keeps the window within a few hundred nanoseconds of its length.
const POLLS_PER_CLOCK_READ: u32 = 8;

/// A window of `spin` from now, cut short by a deadline.
pub(super) struct SpinWindow {
    /// `None`: a spin too long for the clock to add, and no deadline: poll on.
    until: Option<Instant>,
    polls: u32,
}

impl SpinWindow {
    /// The window from now: `spin` long, ending at `deadline` if that comes first.
    pub(super) fn new(spin: Duration, deadline: Option<Instant>) -> Self {
        let until = match (Instant::now().checked_add(spin), deadline) {
            (Some(end), Some(d)) => Some(end.min(d)),
            (end, d) => end.or(d),
        };
        SpinWindow { until, polls: 0 }
    }

    /// Whether to poll again: false once the window is over (seen on the first call after it
    /// ends that reads the clock: the first call always does).
    #[inline]
    pub(super) fn open(&mut self) -> bool {
        let look = self.polls % POLLS_PER_CLOCK_READ == 0;
        self.polls = self.polls.wrapping_add(1);
        !look || self.until.is_none_or(|end| Instant::now() < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_nothing_is_closed_at_once() {
        assert!(!SpinWindow::new(Duration::ZERO, None).open());
        let past = Instant::now();
        assert!(!SpinWindow::new(Duration::from_secs(1), Some(past)).open());
    }

    #[test]
    fn a_window_closes_after_its_length_and_not_long_before() {
        let start = Instant::now();
        let mut w = SpinWindow::new(Duration::from_millis(20), None);
        let mut polls = 0u64;
        while w.open() {
            polls += 1;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20), "closed after {took:?}");
        assert!(polls > 8, "polled {polls} times in {took:?}");
    }

    #[test]
    fn a_spin_longer_than_the_clock_can_add_is_cut_by_the_deadline_not_a_panic() {
        let start = Instant::now();
        let mut w = SpinWindow::new(Duration::MAX, Some(start + Duration::from_millis(5)));
        while w.open() {}
        assert!(start.elapsed() >= Duration::from_millis(5));
        let mut forever = SpinWindow::new(Duration::MAX, None);
        assert!((0..1000).all(|_| forever.open()));
    }

    #[test]
    fn a_deadline_inside_the_window_closes_it() {
        let start = Instant::now();
        let mut w = SpinWindow::new(
            Duration::from_secs(60),
            Some(start + Duration::from_millis(10)),
        );
        while w.open() {}
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(start.elapsed() >= Duration::from_millis(10));
    }
}
