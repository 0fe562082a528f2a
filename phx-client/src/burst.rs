//! When a burst of received frames is over, so that the buffers sized for it (the frame
//! arena's chunks, the driver's batch, the core's queues, a stream's queue) may go back.
//!
//! A flood rarely arrives as one unbroken stream: the connection runs dry for a moment every
//! few hundred or thousand frames, whenever the reader gets ahead of the network. Taking each
//! such moment for the end made every one of them free the burst's buffers and the next frames
//! allocate them again, fresh pages and all (on a current-thread runtime, 2,000,000 broadcasts
//! cost over 70,000 page faults and 2,300 `brk` calls that way; see the README's
//! "Benchmarks"). So a connection that runs dry after a burst counts as quiet only once it has
//! stayed dry for [`GRACE`]; one that runs dry after a few frames (a reply, a broadcast now and
//! then) is quiet at once.

use std::time::{Duration, Instant};

/// Frames read since the connection last ran dry beyond which they make a burst.
pub(crate) const BURST: usize = 256;

/// How long a connection that ran dry after a burst stays dry before the burst is over.
pub(crate) const GRACE: Duration = Duration::from_millis(50);

/// Tells a connection gone quiet from one pausing inside a burst. Time is an argument.
#[derive(Debug, Default)]
pub(crate) struct Burst {
    /// Frames read since the connection last ran dry.
    spell: usize,
    /// The end of the grace period that began when a burst last ran dry.
    until: Option<Instant>,
}

impl Burst {
    /// Counts a frame read; whether a burst is under way (more than [`BURST`] frames since the
    /// connection last ran dry).
    pub(crate) fn read(&mut self) -> bool {
        self.spell += 1;
        self.spell > BURST
    }

    /// The connection has nothing more to read at `now`. Whether it is quiet: it read no burst
    /// since it last ran dry and no grace period is running. A burst starts (or restarts) the
    /// grace period; [`Burst::deadline`] says when to look again.
    pub(crate) fn dry(&mut self, now: Instant) -> bool {
        if std::mem::take(&mut self.spell) > BURST {
            self.until = Some(now + GRACE);
            return false;
        }
        if self.until.is_some_and(|until| now < until) {
            return false;
        }
        self.until = None;
        true
    }

    /// When the grace period ends, if one is running.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Whether the grace period ended by `now` (it is then over; the burst is if the connection
    /// has stayed dry since).
    pub(crate) fn timeout(&mut self, now: Instant) -> bool {
        if self.until.is_some_and(|until| now >= until) {
            self.until = None;
            return true;
        }
        false
    }

    /// The connection is gone (or none is open): no burst, no grace period.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(burst: &mut Burst, frames: usize) -> bool {
        let mut under_way = false;
        for _ in 0..frames {
            under_way = burst.read();
        }
        under_way
    }

    #[test]
    fn a_few_frames_then_dry_is_quiet_at_once() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        assert!(
            !read(&mut burst, BURST),
            "a burst starts after BURST frames"
        );
        assert!(burst.dry(t0));
        assert_eq!(burst.deadline(), None);
        assert!(
            !read(&mut burst, 1),
            "the count starts again after a dry spell"
        );
    }

    #[test]
    fn pauses_inside_a_burst_are_not_quiet_until_the_grace_period_passes_dry() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        assert!(read(&mut burst, BURST + 1));
        assert!(!burst.dry(t0), "a burst that runs dry is not over yet");
        assert_eq!(burst.deadline(), Some(t0 + GRACE));

        // More of the flood, a few frames this time, inside the grace period: still a pause.
        read(&mut burst, 10);
        assert!(!burst.dry(t0 + GRACE / 2));
        assert!(!burst.dry(t0 + GRACE / 2), "dry again, nothing read");
        assert!(!burst.timeout(t0 + GRACE / 2), "too early");

        // A long spell again moves the grace period on.
        read(&mut burst, BURST + 1);
        let t1 = t0 + GRACE / 2;
        assert!(!burst.dry(t1));
        assert!(
            !burst.timeout(t0 + GRACE),
            "the first grace period no longer counts"
        );
        assert!(burst.timeout(t1 + GRACE));
        assert_eq!(burst.deadline(), None);
        assert!(burst.dry(t1 + GRACE), "quiet once the grace period is over");
    }

    #[test]
    fn a_short_spell_after_the_grace_period_is_quiet_at_once() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        read(&mut burst, BURST + 1);
        assert!(!burst.dry(t0));
        read(&mut burst, 3);
        assert!(
            burst.dry(t0 + GRACE),
            "the grace period passed without the timer"
        );
        assert_eq!(burst.deadline(), None);
    }

    #[test]
    fn reset_forgets_the_burst() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        read(&mut burst, BURST + 1);
        assert!(!burst.dry(t0));
        read(&mut burst, BURST + 1);
        burst.reset();
        assert_eq!(burst.deadline(), None);
        assert!(!read(&mut burst, 1));
        assert!(burst.dry(t0));
    }
}
