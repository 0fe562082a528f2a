//! Pending requests awaiting a reply, keyed by their wire ref.

use std::fmt;
use std::time::Instant;

use crate::channel::ChannelId;
use crate::id_map::IdTable;
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

/// The requests awaiting a reply, by ref.
pub(crate) type PendingTable = IdTable<u64, Pending>;

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
