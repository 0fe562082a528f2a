//! Maps keyed by the small integers a socket mints itself (channel ids, push refs).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

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

/// An [`IdMap`] that gives its memory back. Ten thousand joins or pushes issued at once fill
/// a table of waiters; once they are answered, a table still sized for them would cost every
/// idle channel dozens of bytes. It halves what is left empty once three quarters are (above
/// 64 slots), so a table that keeps refilling to the same size (pushes in flight) is never
/// reallocated.
#[derive(Debug, Clone)]
pub struct IdTable<K, V>(IdMap<K, V>);

impl<K, V> Default for IdTable<K, V> {
    fn default() -> Self {
        Self(IdMap::default())
    }
}

impl<K: Hash + Eq, V> IdTable<K, V> {
    /// Adds or replaces the entry for `key`, returning the one replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.insert(key, value)
    }

    /// The entry for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.0.get(key)
    }

    /// The entry for `key`, to change in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.get_mut(key)
    }

    /// Takes the entry for `key` out, shrinking the table once it is mostly empty.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let value = self.0.remove(key);
        if self.0.capacity() > 64 && self.0.len() * 4 < self.0.capacity() {
            self.0.shrink_to(self.0.len() * 2);
        }
        value
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter()
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }

    /// Empties the table, memory included; returns what it held.
    pub fn take_all(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        std::mem::take(&mut self.0).into_iter()
    }

    /// How many entries it has room for without reallocating.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::{IdHasher, IdTable};

    #[test]
    fn a_table_gives_memory_back_once_mostly_empty_and_not_while_refilled() {
        let mut table = IdTable::default();
        for r in 0u64..10_000 {
            table.insert(r, r);
        }
        let full = table.capacity();
        for r in 0..9_990 {
            assert_eq!(table.remove(&r), Some(r));
        }
        assert_eq!(table.len(), 10);
        assert!(
            table.capacity() <= 64,
            "{} of {full} kept",
            table.capacity()
        );
        // 100 in flight, the oldest answered as each new one goes out: never reallocated.
        for r in 10_000..10_090 {
            table.insert(r, r);
        }
        let steady = table.capacity();
        for r in 10_090..20_000 {
            table.insert(r, r);
            assert_eq!(table.remove(&(r - 100)), Some(r - 100));
            assert_eq!(table.capacity(), steady);
        }
        let held: Vec<u64> = table.take_all().map(|(k, _)| k).collect();
        assert_eq!(held.len(), 100);
        assert_eq!(table.capacity(), 0);
    }

    #[test]
    fn consecutive_ids_differ_in_the_high_bits_hashbrown_tags_with() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let tags: std::collections::HashSet<u64> =
            (1u64..=128).map(|n| build.hash_one(n) >> 57).collect();
        // 128 ids over 128 possible tags: a hash that left the high bits alone would give 1.
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
    }
}
