//! Pending requests awaiting a reply, keyed by their wire ref.

use std::fmt;
use std::time::Instant;

use crate::channel::ChannelId;
use crate::id_map::IdMap;
use crate::payload::ByteStr;
use crate::timer::TimerHandle;

/// Identifies a push. It is also the push's wire `ref`: the server echoes it in the reply, and
/// [`crate::Event::Replied`], [`crate::Event::PushTimedOut`] and [`crate::Event::PushFailed`]
/// carry it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PushRef(pub(crate) u64);

impl PushRef {
    /// The numeric ref.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PushRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a pending ref stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingKind {
    /// A `phx_join`; its deadline is the channel's join timer.
    Join,
    /// A user `phx_leave`.
    Leave,
    /// The `phx_leave` sent after a join timed out, to undo a late server-side join. Its reply
    /// is consumed silently.
    CancelJoin,
    /// A user push; `sent` is false while it waits in the channel's buffer.
    User { sent: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) channel: ChannelId,
    pub(crate) kind: PendingKind,
    pub(crate) timer: Option<TimerHandle>,
}

impl Pending {
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timer.map(TimerHandle::at)
    }
}

/// The requests awaiting a reply, by ref: a hash map that gives its memory back. Ten thousand
/// joins issued at once fill it; once they are answered, a table still sized for them would
/// cost every idle channel dozens of bytes.
#[derive(Debug, Default)]
pub(crate) struct PendingTable(IdMap<u64, Pending>);

impl PendingTable {
    pub(crate) fn insert(&mut self, r: u64, pending: Pending) {
        self.0.insert(r, pending);
    }

    pub(crate) fn get(&self, r: &u64) -> Option<&Pending> {
        self.0.get(r)
    }

    pub(crate) fn get_mut(&mut self, r: &u64) -> Option<&mut Pending> {
        self.0.get_mut(r)
    }

    pub(crate) fn remove(&mut self, r: &u64) -> Option<Pending> {
        let pending = self.0.remove(r);
        // Halve what is left empty once three quarters are: a table that keeps refilling to
        // the same size (pushes in flight) is never reallocated.
        if self.0.capacity() > 64 && self.0.len() * 4 < self.0.capacity() {
            self.0.shrink_to(self.0.len() * 2);
        }
        pending
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &Pending)> {
        self.0.iter()
    }

    /// Empties the table, memory included; returns what it held.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (u64, Pending)> {
        std::mem::take(&mut self.0).into_iter()
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

/// Parses a ref this socket minted: exactly the decimal digits it was sent as (no sign, no
/// leading zero), as phoenix.js compares refs as strings. Read from the bytes: a ref is ASCII,
/// so it needs no UTF-8 check first.
pub(crate) fn parse_ref(s: &ByteStr) -> Option<u64> {
    let digits = s.as_bytes();
    if digits.first().is_none_or(|&d| d == b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_table_gives_memory_back_once_mostly_empty() {
        use crate::channel::{Channel, Slab};
        use crate::payload::Payload;
        let channel = Slab::default().insert(Channel::new(
            ByteStr::from("room:1"),
            Payload::empty(),
            1,
            std::time::Duration::from_secs(10),
        ));
        let pending = || Pending {
            channel,
            kind: PendingKind::Join,
            timer: None,
        };
        let mut table = PendingTable::default();
        for r in 0..10_000 {
            table.insert(r, pending());
        }
        let full = table.capacity();
        for r in 0..9_990 {
            assert!(table.remove(&r).is_some());
        }
        assert_eq!(table.len(), 10);
        assert!(
            table.capacity() <= 64,
            "{} of {full} kept",
            table.capacity()
        );
        // 100 in flight, the oldest answered as each new one goes out: never reallocated.
        for r in 10_000..10_090 {
            table.insert(r, pending());
        }
        let steady = table.capacity();
        for r in 10_090..20_000 {
            table.insert(r, pending());
            assert!(table.remove(&(r - 100)).is_some());
            assert_eq!(table.capacity(), steady);
        }
    }

    #[test]
    fn only_the_digits_a_ref_was_sent_as_parse() {
        let parse = |s: &str| parse_ref(&ByteStr::from(s));
        assert_eq!(parse("1"), Some(1));
        assert_eq!(parse("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "١",
            "18446744073709551616",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
