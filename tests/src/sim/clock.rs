//! The virtual clock: an epoch read once from the real clock, and virtual time since.

use std::fmt;
use std::time::{Duration, Instant};

/// Virtual time. `now()` is always `epoch + elapsed`, and `elapsed` only grows; nothing in a run
/// reads the real clock except the single `Instant::now()` that may provide the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    elapsed: Duration,
}

impl Clock {
    /// A clock at `epoch`, with no time elapsed.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            elapsed: Duration::ZERO,
        }
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.epoch + self.elapsed
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The elapsed time at `at` (zero for instants before the epoch).
    pub fn since_epoch(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Moves to `at`; a time in the past leaves the clock where it is.
    pub(crate) fn advance_to(&mut self, at: Instant) {
        let to = self.since_epoch(at);
        if to > self.elapsed {
            self.elapsed = to;
        }
    }
}

/// Elapsed time as `+12.345678s` (fixed width, microseconds), as every transcript line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:>4}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_only_moves_forward_from_the_epoch() {
        let epoch = Instant::now();
        let mut c = Clock::new(epoch);
        c.advance_to(epoch + Duration::from_millis(1500));
        c.advance_to(epoch + Duration::from_millis(10));
        assert_eq!(c.elapsed(), Duration::from_millis(1500));
        assert_eq!(c.now(), epoch + Duration::from_millis(1500));
        assert_eq!(Elapsed(c.elapsed()).to_string(), "+   1.500000s");
    }
}
