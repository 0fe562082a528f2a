//! Per-topic channel records, their ids and the read-only view users get.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU64;
use std::time::Duration;

use crate::payload::{ByteStr, Payload};
use crate::presence::Presence;
use crate::push::parse_ref;
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

/// The lifecycle state of a channel (phoenix.js's names). phoenix.js's fifth state, `closed`,
/// has no variant: a closed channel (left, closed by the server, or whose first join failed)
/// is gone from the socket, so [`crate::Socket::channel`] returns `None` for it and its id is
/// never reused.
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
    /// The timeout of a push tracked to its outcome (pending, with a timer); `None` for a
    /// cast. It starts again when the push is sent.
    pub(crate) timeout: Option<Duration>,
}

/// The parts of a channel that only exist while something is going on (a timer armed, pushes
/// buffered or in flight). Boxed, so an idle joined channel stays small.
#[derive(Debug, Default)]
pub(crate) struct Busy {
    /// The ref of the join in flight, if any.
    join_push: Option<NonZeroU64>,
    /// The ref of the leave in flight, if any.
    leave_ref: Option<NonZeroU64>,
    join_timer: Option<TimerHandle>,
    rejoin_timer: Option<TimerHandle>,
    buffer: VecDeque<Buffered>,
    /// Refs of pushes sent and awaiting their replies, in ref order.
    in_flight: VecDeque<u64>,
}

impl Busy {
    fn is_idle(&self) -> bool {
        self.join_push.is_none()
            && self.leave_ref.is_none()
            && self.join_timer.is_none()
            && self.rejoin_timer.is_none()
            && self.buffer.is_empty()
            && self.in_flight.is_empty()
    }
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) topic: ByteStr,
    pub(crate) params: Payload,
    /// The current join ref (the ref of the last join sent); stamped on every frame.
    pub(crate) join_ref: Option<NonZeroU64>,
    /// Creation order, for deterministic rejoin order.
    pub(crate) seq: u64,
    pub(crate) timeout: Duration,
    pub(crate) rejoin_tries: u32,
    pub(crate) state: ChannelState,
    pub(crate) ever_joined: bool,
    busy: Option<Box<Busy>>,
    pub(crate) presence: Option<Box<Presence>>,
}

impl Channel {
    pub(crate) fn new(topic: ByteStr, params: Payload, seq: u64, timeout: Duration) -> Self {
        Self {
            topic,
            params,
            join_ref: None,
            seq,
            timeout,
            rejoin_tries: 0,
            state: ChannelState::Joining,
            ever_joined: false,
            busy: None,
            presence: None,
        }
    }

    fn busy_mut(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// Drops the busy part once nothing is going on.
    fn tidy(&mut self) {
        if self.busy.as_ref().is_some_and(|b| b.is_idle()) {
            self.busy = None;
        }
    }

    /// The current join ref as sent on the wire.
    pub(crate) fn join_ref_number(&self) -> Option<u64> {
        self.join_ref.map(NonZeroU64::get)
    }

    /// Whether `join_ref` (as received) names this channel's current join: exactly the decimal
    /// string it was sent as (no sign, no leading zero), as phoenix.js compares strings.
    pub(crate) fn is_current(&self, join_ref: &ByteStr) -> bool {
        self.join_ref
            .is_some_and(|r| parse_ref(join_ref) == Some(r.get()))
    }

    /// The ref of the join in flight, if any.
    pub(crate) fn join_push(&self) -> Option<u64> {
        self.busy
            .as_ref()
            .and_then(|b| b.join_push)
            .map(NonZeroU64::get)
    }

    pub(crate) fn set_join_push(&mut self, r: u64) {
        match NonZeroU64::new(r) {
            Some(r) => self.busy_mut().join_push = Some(r),
            None => {
                let _ = self.take_join_push();
            }
        }
    }

    pub(crate) fn take_join_push(&mut self) -> Option<u64> {
        let r = self.busy.as_mut().and_then(|b| b.join_push.take());
        self.tidy();
        r.map(NonZeroU64::get)
    }

    /// Gives up the join in flight, if any, and returns its ref. The channel no longer owns that
    /// join (phoenix.js resets the join push, so its join ref becomes null): whatever the server
    /// still sends under it, a late reply or the `phx_close` answering a cancelling leave, is
    /// stale.
    pub(crate) fn abandon_join(&mut self) -> Option<u64> {
        let r = self.take_join_push()?;
        self.join_ref = None;
        Some(r)
    }

    /// The ref of the leave in flight, if any.
    pub(crate) fn leave_ref(&self) -> Option<u64> {
        self.busy
            .as_ref()
            .and_then(|b| b.leave_ref)
            .map(NonZeroU64::get)
    }

    pub(crate) fn set_leave_ref(&mut self, r: u64) {
        if let Some(r) = NonZeroU64::new(r) {
            self.busy_mut().leave_ref = Some(r);
        }
    }

    pub(crate) fn join_timer(&self) -> Option<TimerHandle> {
        self.busy.as_ref().and_then(|b| b.join_timer)
    }

    pub(crate) fn set_join_timer(&mut self, t: Option<TimerHandle>) {
        match t {
            Some(_) => self.busy_mut().join_timer = t,
            None => {
                let _ = self.take_join_timer();
            }
        }
    }

    pub(crate) fn take_join_timer(&mut self) -> Option<TimerHandle> {
        let t = self.busy.as_mut().and_then(|b| b.join_timer.take());
        self.tidy();
        t
    }

    pub(crate) fn set_rejoin_timer(&mut self, t: Option<TimerHandle>) {
        match t {
            Some(_) => self.busy_mut().rejoin_timer = t,
            None => {
                let _ = self.take_rejoin_timer();
            }
        }
    }

    pub(crate) fn take_rejoin_timer(&mut self) -> Option<TimerHandle> {
        let t = self.busy.as_mut().and_then(|b| b.rejoin_timer.take());
        self.tidy();
        t
    }

    pub(crate) fn buffer(&self) -> impl Iterator<Item = &Buffered> {
        self.busy.iter().flat_map(|b| b.buffer.iter())
    }

    pub(crate) fn buffered(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.buffer.len())
    }

    pub(crate) fn push_buffered(&mut self, b: Buffered) {
        self.busy_mut().buffer.push_back(b);
    }

    pub(crate) fn take_buffer(&mut self) -> VecDeque<Buffered> {
        let b = self
            .busy
            .as_mut()
            .map(|b| std::mem::take(&mut b.buffer))
            .unwrap_or_default();
        self.tidy();
        b
    }

    /// Removes a buffered push; whether it was there.
    pub(crate) fn remove_buffered(&mut self, r: u64) -> bool {
        let Some(busy) = self.busy.as_mut() else {
            return false;
        };
        let found = match busy.buffer.iter().position(|b| b.ref_ == r) {
            Some(i) => busy.buffer.remove(i).is_some(),
            None => false,
        };
        self.tidy();
        found
    }

    pub(crate) fn in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.busy.iter().flat_map(|b| b.in_flight.iter().copied())
    }

    pub(crate) fn in_flight_len(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.in_flight.len())
    }

    pub(crate) fn add_in_flight(&mut self, r: u64) {
        let refs = &mut self.busy_mut().in_flight;
        // Refs are minted in order, so this is nearly always the back.
        match refs.back() {
            Some(&last) if last >= r => {
                if let Err(i) = refs.binary_search(&r) {
                    refs.insert(i, r);
                }
            }
            _ => refs.push_back(r),
        }
    }

    pub(crate) fn remove_in_flight(&mut self, r: u64) {
        if let Some(b) = self.busy.as_mut() {
            // Replies mostly come in order, so this is nearly always the front.
            if b.in_flight.front() == Some(&r) {
                b.in_flight.pop_front();
            } else if let Ok(i) = b.in_flight.binary_search(&r) {
                b.in_flight.remove(i);
            }
        }
        self.tidy();
    }

    /// Takes the in-flight refs, in ref order.
    pub(crate) fn take_in_flight(&mut self) -> Vec<u64> {
        let refs = self
            .busy
            .as_mut()
            .map(|b| std::mem::take(&mut b.in_flight).into_iter().collect())
            .unwrap_or_default();
        self.tidy();
        refs
    }
}

/// A read-only view of a channel, from [`crate::Socket::channel`].
#[derive(Debug, Clone, Copy)]
pub struct ChannelView<'a> {
    pub(crate) id: ChannelId,
    pub(crate) channel: &'a Channel,
}

impl<'a> ChannelView<'a> {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The topic.
    pub fn topic(&self) -> &'a str {
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

    /// The join ref of the current (or last) join (sent on the wire as its decimal string);
    /// `None` before the first join is sent and after a join attempt was abandoned (timed out
    /// or broken while in flight), as in phoenix.js.
    pub fn join_ref(&self) -> Option<u64> {
        self.channel.join_ref.map(NonZeroU64::get)
    }

    /// The join params sent with every (re)join.
    pub fn params(&self) -> &'a Payload {
        &self.channel.params
    }

    /// Whether the channel has been joined at least once.
    pub fn ever_joined(&self) -> bool {
        self.channel.ever_joined
    }

    /// Pushes waiting in this channel's buffer.
    pub fn buffered(&self) -> usize {
        self.channel.buffered()
    }

    /// The channel's presence view, when it was joined with presence tracking
    /// ([`crate::JoinOptions::presence`]).
    pub fn presence(&self) -> Option<&'a Presence> {
        self.channel.presence.as_deref()
    }

    /// Pushes sent and awaiting a reply.
    pub fn in_flight(&self) -> usize {
        self.channel.in_flight_len()
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
        if self.slots.len() == self.slots.capacity() {
            // Grow by a quarter rather than double: a slot is large, and with thousands of
            // channels doubling leaves up to one unused slot per channel. Still geometric, so
            // still amortised O(1).
            self.slots.reserve_exact((self.slots.len() / 4).max(4));
        }
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

/// Finds the live channel of a topic. Keyed by a fixed hash of the topic rather than by the
/// topic itself, so an entry costs 16 bytes and no second copy of the string; every hit is
/// confirmed against the channel's own topic, and the (astronomically rare) channels whose hash
/// another topic already holds go to a short overflow list.
#[derive(Debug, Default)]
pub(crate) struct TopicIndex {
    by_hash: HashMap<u64, ChannelId, BuildHasherDefault<PrehashedHasher>>,
    overflow: Vec<ChannelId>,
    /// The channel the last routed message went to: messages come in runs on one topic, and a
    /// run then costs one comparison per message instead of a hash and a probe.
    last: Option<ChannelId>,
}

/// The keys are already hashes: pass them through.
#[derive(Debug, Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A fixed, fast 64-bit hash (FxHash's word step, then a final mix so the high bits hashbrown
/// uses depend on every byte). Every hit is confirmed against the topic, so the hash only
/// needs to spread the client's own topics; it runs once per received message.
fn topic_hash(topic: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = topic.len() as u64;
    let mut chunks = topic.chunks_exact(8);
    for c in &mut chunks {
        let word = <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    for (t, b) in tail.iter_mut().zip(chunks.remainder()) {
        *t = *b;
    }
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 29;
    h = h.wrapping_mul(K);
    h ^ (h >> 32)
}

/// Whether `id` is a channel of `slab` with topic `topic`.
fn has_topic(slab: &Slab, id: ChannelId, topic: &[u8]) -> bool {
    slab.get(id).is_some_and(|c| c.topic.as_bytes() == topic)
}

impl TopicIndex {
    /// As [`TopicIndex::get`], for a received message: tries the last channel routed to first.
    pub(crate) fn route(&mut self, slab: &Slab, topic: &[u8]) -> Option<ChannelId> {
        if let Some(id) = self.last
            && has_topic(slab, id, topic)
        {
            return Some(id);
        }
        let found = self.get(slab, topic);
        if found.is_some() {
            self.last = found;
        }
        found
    }

    pub(crate) fn get(&self, slab: &Slab, topic: &[u8]) -> Option<ChannelId> {
        match self.by_hash.get(&topic_hash(topic)) {
            Some(&id) if has_topic(slab, id, topic) => Some(id),
            _ => self
                .overflow
                .iter()
                .find(|&&id| has_topic(slab, id, topic))
                .copied(),
        }
    }

    /// Adds a channel whose topic has no live channel yet.
    pub(crate) fn insert(&mut self, topic: &[u8], id: ChannelId) {
        self.insert_hashed(topic_hash(topic), id);
    }

    fn insert_hashed(&mut self, hash: u64, id: ChannelId) {
        match self.by_hash.entry(hash) {
            Entry::Vacant(v) => {
                v.insert(id);
            }
            Entry::Occupied(_) => self.overflow.push(id),
        }
    }

    pub(crate) fn remove(&mut self, topic: &[u8], id: ChannelId) {
        // A channel out of the index may live on (leaving) with the same topic as a new one.
        if self.last == Some(id) {
            self.last = None;
        }
        let h = topic_hash(topic);
        if self.by_hash.get(&h) == Some(&id) {
            self.by_hash.remove(&h);
        } else {
            self.overflow.retain(|&o| o != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(topic: &str) -> Channel {
        Channel::new(
            ByteStr::from(topic),
            Payload::empty(),
            0,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn topic_index_confirms_hits_and_handles_hash_collisions() {
        let mut slab = Slab::default();
        let mut index = TopicIndex::default();
        let a = slab.insert(channel("room:a"));
        let b = slab.insert(channel("room:b"));
        index.insert(b"room:a", a);
        // Force b under a's hash, as a real collision would place it.
        index.insert_hashed(topic_hash(b"room:a"), b);
        assert_eq!(index.get(&slab, b"room:a"), Some(a));
        assert_eq!(index.get(&slab, b"room:b"), Some(b));
        assert_eq!(index.get(&slab, b"room:c"), None);
        index.remove(b"room:a", a);
        slab.remove(a);
        assert_eq!(index.get(&slab, b"room:a"), None);
        assert_eq!(index.get(&slab, b"room:b"), Some(b));
        index.remove(b"room:b", b);
        assert_eq!(index.get(&slab, b"room:b"), None);
    }

    #[test]
    fn routing_remembers_the_last_channel_until_it_leaves_the_index() {
        let mut slab = Slab::default();
        let mut index = TopicIndex::default();
        let old = slab.insert(channel("room:a"));
        let b = slab.insert(channel("room:b"));
        index.insert(b"room:a", old);
        index.insert(b"room:b", b);
        assert_eq!(index.route(&slab, b"room:a"), Some(old));
        assert_eq!(index.route(&slab, b"room:a"), Some(old));
        assert_eq!(index.route(&slab, b"room:b"), Some(b));
        assert_eq!(index.route(&slab, b"room:c"), None);
        assert_eq!(index.route(&slab, b"room:a"), Some(old));
        // The old channel leaves (still in the slab, its leave unconfirmed) and a new one
        // takes the topic: messages go to the new one.
        index.remove(b"room:a", old);
        let new = slab.insert(channel("room:a"));
        index.insert(b"room:a", new);
        assert_eq!(index.route(&slab, b"room:a"), Some(new));
        assert_eq!(index.route(&slab, b"room:a"), Some(new));
    }

    #[test]
    fn slab_ids_of_ended_channels_never_reach_new_ones() {
        let mut slab = Slab::default();
        let a = slab.insert(channel("x"));
        slab.remove(a);
        let b = slab.insert(channel("y"));
        assert_ne!(a, b);
        assert!(slab.get(a).is_none());
        assert_eq!(slab.get(b).map(|c| c.topic.as_str()), Some("y"));
    }

    #[test]
    fn an_idle_channel_holds_no_busy_box() {
        let mut c = channel("x");
        c.add_in_flight(3);
        assert!(c.busy.is_some());
        c.remove_in_flight(3);
        assert!(c.busy.is_none());
        assert!(size_of::<Channel>() <= 144, "{}", size_of::<Channel>());
    }
}
