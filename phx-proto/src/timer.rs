//! The core's one timer table: every deadline, ordered by time and then by arming order, so
//! deadlines due at the same instant fire in a deterministic order.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::channel::ChannelId;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKey {
    HeartbeatSend,
    HeartbeatDeadline,
    Reconnect,
    ConnectTimeout,
    /// A channel's join (or rejoin) attempt times out.
    Join(ChannelId),
    /// An errored channel's rejoin is due.
    Rejoin(ChannelId),
    /// A pending push, leave or join cancellation times out (by ref).
    Pending(u64),
}

/// Identifies an armed deadline so it can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerHandle {
    at: Instant,
    seq: u64,
}

impl TimerHandle {
    pub(crate) fn at(self) -> Instant {
        self.at
    }
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: BTreeMap<(Instant, u64), TimerKey>,
    seq: u64,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, key: TimerKey) -> TimerHandle {
        self.seq += 1;
        self.armed.insert((at, self.seq), key);
        TimerHandle { at, seq: self.seq }
    }

    pub(crate) fn cancel(&mut self, handle: Option<TimerHandle>) {
        if let Some(h) = handle {
            self.armed.remove(&(h.at, h.seq));
        }
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.armed.first_key_value().map(|((at, _), _)| *at)
    }

    /// Removes and returns the earliest deadline at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (&(at, _), _) = self.armed.first_key_value()?;
        if at > now {
            return None;
        }
        self.armed.pop_first().map(|(_, key)| key)
    }

    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}
