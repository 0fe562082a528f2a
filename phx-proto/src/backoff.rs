//! Retry schedules for reconnecting and rejoining, and the seeded PRNG behind their jitter.

use std::time::Duration;

/// How long to wait before retry number `n` (counting from 0).
///
/// ```
/// use phx_proto::Backoff;
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// let mut rng = phx_proto::Rng::new(1);
/// let reconnect = Backoff::phoenix_reconnect();
/// let waits: Vec<_> = (0..11).map(|n| reconnect.delay(n, &mut rng)).collect();
/// assert_eq!(waits, [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000].map(ms));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// A fixed list of delays; the last repeats forever. `jitter` in `0.0..=1.0` spreads each
    /// delay uniformly over `delay × (1 ± jitter)`.
    Schedule {
        /// The delays, in order.
        delays: Vec<Duration>,
        /// Relative jitter; 0 gives the exact schedule.
        jitter: f64,
    },
    /// Exponential backoff with full jitter: retry `n` waits a uniform random time in
    /// `0..=min(cap, base × 2ⁿ)`.
    Exponential {
        /// The first ceiling.
        base: Duration,
        /// The largest ceiling.
        cap: Duration,
    },
}

impl Backoff {
    /// phoenix.js `reconnectAfterMs`: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s.
    pub fn phoenix_reconnect() -> Self {
        Self::schedule_ms(&[10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000])
    }

    /// phoenix.js `rejoinAfterMs`: 1, 2, 5 s, then 10 s.
    pub fn phoenix_rejoin() -> Self {
        Self::schedule_ms(&[1000, 2000, 5000, 10_000])
    }

    fn schedule_ms(ms: &[u64]) -> Self {
        Self::Schedule {
            delays: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            jitter: 0.0,
        }
    }

    /// Exponential backoff with full jitter.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        Self::Exponential { base, cap }
    }

    /// The same schedule with relative jitter (`0.0..=1.0`); no effect on `Exponential`, which is
    /// fully jittered already.
    pub fn with_jitter(self, ratio: f64) -> Self {
        match self {
            Self::Schedule { delays, .. } => Self::Schedule {
                delays,
                jitter: ratio,
            },
            other => other,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        match self {
            Self::Schedule { delays, jitter } => {
                if delays.is_empty() {
                    return Err("the schedule needs at least one delay");
                }
                if !(0.0..=1.0).contains(jitter) {
                    return Err("jitter must be between 0 and 1");
                }
            }
            Self::Exponential { base, cap } => {
                if base.is_zero() {
                    return Err("the base delay must be positive");
                }
                if cap < base {
                    return Err("the cap must be at least the base delay");
                }
            }
        }
        Ok(())
    }

    /// The delay before retry `n` (0 for the first retry).
    pub fn delay(&self, n: u32, rng: &mut Rng) -> Duration {
        match self {
            Self::Schedule { delays, jitter } => {
                let i = usize::try_from(n).unwrap_or(usize::MAX);
                let base = delays.get(i).or(delays.last()).copied().unwrap_or_default();
                if *jitter == 0.0 {
                    return base;
                }
                let factor = 1.0 + jitter * (2.0 * rng.next_f64() - 1.0);
                scale(base, factor.max(0.0))
            }
            Self::Exponential { base, cap } => {
                let ceiling = base
                    .checked_mul(2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX))
                    .map_or(*cap, |d| d.min(*cap));
                ceiling.mul_f64(rng.next_f64())
            }
        }
    }

    /// The longest delay this schedule can produce.
    pub fn max_delay(&self) -> Duration {
        match self {
            Self::Schedule { delays, jitter } => {
                let longest = delays.iter().max().copied().unwrap_or_default();
                scale(longest, 1.0 + jitter)
            }
            Self::Exponential { cap, .. } => *cap,
        }
    }
}

/// A small deterministic PRNG (SplitMix64). The core's only source of randomness, seeded through
/// [`crate::ConfigBuilder::rng_seed`], so the same seed always gives the same schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `d × factor`, or the longest `Duration` where that overflows (`mul_f64` would panic on a
/// schedule of huge delays).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Backoff, Duration, Rng};
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_schedule_of_huge_delays_saturates_instead_of_panicking() {
        let max = Backoff::Schedule {
            delays: vec![Duration::MAX],
            jitter: 0.5,
        };
        assert!(max.validate().is_ok());
        assert_eq!(max.max_delay(), Duration::MAX);
        let mut rng = Rng::new(0);
        for n in 0..64 {
            let _ = max.delay(n, &mut rng);
        }
    }

    #[test]
    fn rejoin_schedule_matches_phoenix_js() {
        let mut rng = Rng::new(0);
        let b = Backoff::phoenix_rejoin();
        let got: Vec<_> = (0..6).map(|n| b.delay(n, &mut rng)).collect();
        assert_eq!(got, [1000, 2000, 5000, 10_000, 10_000, 10_000].map(MS));
    }

    #[test]
    fn huge_retry_counts_do_not_overflow() {
        let mut rng = Rng::new(0);
        let e = Backoff::exponential(MS(100), Duration::from_secs(30));
        assert!(e.delay(u32::MAX, &mut rng) <= Duration::from_secs(30));
        assert_eq!(
            Backoff::phoenix_reconnect().delay(u32::MAX, &mut rng),
            MS(5000)
        );
    }

    #[test]
    fn invalid_schedules_are_refused() {
        assert!(
            Backoff::Schedule {
                delays: vec![],
                jitter: 0.0
            }
            .validate()
            .is_err()
        );
        assert!(
            Backoff::phoenix_reconnect()
                .with_jitter(1.5)
                .validate()
                .is_err()
        );
        assert!(Backoff::exponential(MS(0), MS(10)).validate().is_err());
        assert!(Backoff::exponential(MS(20), MS(10)).validate().is_err());
    }

    proptest! {
        #[test]
        fn exponential_stays_under_its_rising_ceiling(seed: u64, base in 1u64..1000, cap in 1000u64..100_000) {
            let b = Backoff::exponential(MS(base), MS(cap));
            let mut rng = Rng::new(seed);
            for n in 0..40u32 {
                let ceiling = MS(base.saturating_mul(1u64 << n.min(40)).min(cap));
                let d = b.delay(n, &mut rng);
                prop_assert!(d <= ceiling, "retry {n}: {d:?} > {ceiling:?}");
            }
        }

        #[test]
        fn jittered_schedule_stays_in_bounds_and_replays_by_seed(seed: u64, ratio in 0.0f64..=1.0) {
            let b = Backoff::phoenix_reconnect().with_jitter(ratio);
            let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
            let mut prev_base = Duration::ZERO;
            for n in 0..12u32 {
                let base = Backoff::phoenix_reconnect().delay(n, &mut Rng::new(0));
                prop_assert!(base >= prev_base, "base schedule rises monotonically");
                prev_base = base;
                let d = b.delay(n, &mut r1);
                prop_assert!(d >= base.mul_f64(1.0 - ratio) && d <= base.mul_f64(1.0 + ratio) + Duration::from_nanos(1));
                prop_assert_eq!(d, b.delay(n, &mut r2));
            }
        }
    }
}
