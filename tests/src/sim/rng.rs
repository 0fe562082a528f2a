//! The run's randomness: one seed, split into independent streams.

use std::time::Duration;

/// A seeded PRNG, phx-proto's SplitMix64 [`phx_proto::Rng`] under a sim-friendly API. Every
/// random choice of a run comes from the run's seed through one of these; nothing reads OS
/// randomness.
#[derive(Debug, Clone)]
pub(crate) struct SimRng(phx_proto::Rng);

impl SimRng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(phx_proto::Rng::new(seed))
    }

    /// An independent stream seeded from this one, so that one part of a run (say the
    /// workload) draws the same numbers however much another part (the network) draws.
    pub(crate) fn fork(&mut self) -> Self {
        Self::new(self.u64())
    }

    /// 64 random bits.
    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: no modulo bias worth caring about at these sizes, and no loop.
        ((u128::from(self.u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// An index into a slice of length `len` (0 when empty).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.0.next_f64() < p
    }

    /// Whole milliseconds, uniform in `lo..=hi`.
    pub(crate) fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// A wait until the next occurrence of something that happens every `mean` on average
    /// (uniform in `0..=2·mean`, whole milliseconds).
    pub(crate) fn every(&mut self, mean: Duration) -> Duration {
        let mean_ms = u64::try_from(mean.as_millis()).unwrap_or(u64::MAX / 4);
        self.ms(0, mean_ms.saturating_mul(2))
    }

    /// One of `items` (which must not be empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.index(items.len());
        &items[i]
    }

    /// One of `items`, each drawn with its weight.
    pub(crate) fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (w, item) in items {
            let w = u64::from(*w);
            if x < w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SimRng {
        fn fork_then<T>(mut self, f: impl FnOnce(&mut Self) -> T) -> T {
            let _ = self.fork();
            f(&mut self)
        }
    }

    #[test]
    fn same_seed_same_numbers_and_forks_do_not_follow_the_parent() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let mut fa = a.fork();
        let mut fb = b.fork();
        let _ = b.u64(); // more draws on one parent do not change its fork
        assert_eq!((fa.u64(), fa.u64()), (fb.u64(), fb.u64()));
        assert_eq!(a.range(3, 9), SimRng::new(7).fork_then(|r| r.range(3, 9)));
    }

    #[test]
    fn ranges_and_weights_stay_in_bounds() {
        let mut r = SimRng::new(1);
        for _ in 0..1000 {
            let x = r.range(5, 8);
            assert!((5..=8).contains(&x));
            assert!(r.below(3) < 3);
            assert!(r.every(Duration::from_millis(10)) <= Duration::from_millis(20));
            assert_ne!(r.weighted(&[(0, 'a'), (1, 'b'), (0, 'c')]), 'a');
        }
        assert_eq!(r.below(0), 0);
    }
}
