//! Pending requests awaiting a reply, keyed by their wire ref.

use std::fmt;
use std::time::Instant;

use crate::channel::ChannelId;
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
