//! Per-topic channel records, their ids and the read-only view users get.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::payload::{ByteStr, Payload};
use crate::timer::TimerHandle;

/// Names a channel of a [`crate::Socket`]. `Copy`; holds a slot index and a generation, so an id
/// kept after its channel ended never reaches a newer channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId {
    index: u32,
    generation: u32,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch#{}.{}", self.index, self.generation)
    }
}

/// The lifecycle state of a channel (phoenix.js's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// A join is in flight, or waits for the connection.
    Joining,
    /// Joined: messages are delivered and pushes go out at once.
    Joined,
    /// Broken (server crash, lost connection, refused rejoin); a rejoin is scheduled.
    Errored,
    /// A leave is in flight.
    Leaving,
}

/// A push waiting in a channel's buffer for the join.
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub(crate) ref_: u64,
    pub(crate) event: ByteStr,
    pub(crate) payload: Payload,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) topic: ByteStr,
    pub(crate) params: Payload,
    pub(crate) state: ChannelState,
    /// Creation order, for deterministic rejoin order.
    pub(crate) seq: u64,
    /// The current join ref, as sent; stamped on every frame of this channel.
    pub(crate) join_ref: Option<ByteStr>,
    /// The ref of the join in flight, if any.
    pub(crate) join_push: Option<u64>,
    pub(crate) join_timer: Option<TimerHandle>,
    pub(crate) rejoin_timer: Option<TimerHandle>,
    pub(crate) rejoin_tries: u32,
    pub(crate) ever_joined: bool,
    pub(crate) timeout: Duration,
    pub(crate) buffer: VecDeque<Buffered>,
    pub(crate) in_flight: BTreeSet<u64>,
    pub(crate) leave_ref: Option<u64>,
}

impl Channel {
    pub(crate) fn new(topic: ByteStr, params: Payload, seq: u64, timeout: Duration) -> Self {
        Self {
            topic,
            params,
            state: ChannelState::Joining,
            seq,
            join_ref: None,
            join_push: None,
            join_timer: None,
            rejoin_timer: None,
            rejoin_tries: 0,
            ever_joined: false,
            timeout,
            buffer: VecDeque::new(),
            in_flight: BTreeSet::new(),
            leave_ref: None,
        }
    }
}

/// A read-only view of a channel, from [`crate::Socket::channel`].
#[derive(Debug, Clone, Copy)]
pub struct ChannelView<'a> {
    pub(crate) id: ChannelId,
    pub(crate) channel: &'a Channel,
}

impl ChannelView<'_> {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.channel.topic
    }

    /// The state.
    pub fn state(&self) -> ChannelState {
        self.channel.state
    }

    /// Whether the channel is joined.
    pub fn is_joined(&self) -> bool {
        self.channel.state == ChannelState::Joined
    }

    /// The join ref of the current (or last) join, as sent on the wire.
    pub fn join_ref(&self) -> Option<&str> {
        self.channel.join_ref.as_deref()
    }

    /// The join params sent with every (re)join.
    pub fn params(&self) -> &Payload {
        &self.channel.params
    }

    /// Whether the channel has been joined at least once.
    pub fn ever_joined(&self) -> bool {
        self.channel.ever_joined
    }

    /// Pushes waiting in this channel's buffer.
    pub fn buffered(&self) -> usize {
        self.channel.buffer.len()
    }

    /// Pushes sent and awaiting a reply.
    pub fn in_flight(&self) -> usize {
        self.channel.in_flight.len()
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    channel: Option<Channel>,
}

/// Channel storage: slots reused through a free list, each reuse bumping the generation.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    pub(crate) fn insert(&mut self, channel: Channel) -> ChannelId {
        self.len += 1;
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.generation = slot.generation.wrapping_add(1);
            slot.channel = Some(channel);
            return ChannelId {
                index,
                generation: slot.generation,
            };
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            channel: Some(channel),
        });
        ChannelId {
            index,
            generation: 0,
        }
    }

    pub(crate) fn get(&self, id: ChannelId) -> Option<&Channel> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.channel.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.channel.as_mut())
    }

    pub(crate) fn remove(&mut self, id: ChannelId) -> Option<Channel> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        let channel = slot.channel.take()?;
        self.free.push(id.index);
        self.len -= 1;
        Some(channel)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ChannelId, &Channel)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.channel.as_ref().map(|c| {
                (
                    ChannelId {
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        generation: s.generation,
                    },
                    c,
                )
            })
        })
    }

    /// Ids in creation order.
    pub(crate) fn ids_in_order(&self) -> Vec<ChannelId> {
        let mut ids: Vec<(u64, ChannelId)> = self.iter().map(|(id, c)| (c.seq, id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
