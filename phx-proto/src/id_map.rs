//! Maps keyed by the small integers a socket mints itself (channel ids, push refs).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes the ids a socket mints ([`crate::ChannelId`], [`crate::PushRef`], refs): small
/// integers nobody else chooses, so a multiply-rotate spreads them well enough, at a fraction
/// of SipHash's cost on every reply and routed message. Not for keys an attacker controls.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` keyed by socket-minted ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::IdHasher;

    #[test]
    fn consecutive_ids_differ_in_the_high_bits_hashbrown_tags_with() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let tags: std::collections::HashSet<u64> =
            (1u64..=128).map(|n| build.hash_one(n) >> 57).collect();
        // 128 ids over 128 possible tags: a hash that left the high bits alone would give 1.
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
    }
}
