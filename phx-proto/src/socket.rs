//! [`Socket`]: the sans-IO Phoenix client state machine.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use crate::backoff::Rng;
use crate::channel::{Buffered, Channel, ChannelId, ChannelState, ChannelView, Slab, TopicIndex};
use crate::codec::{DecodeError, EncodeError, Frame, Message, Outgoing};
use crate::config::{Config, ConfigError, Endpoint, Param};
use crate::error::{JoinError, LeaveError, PushError};
use crate::event::{ChannelClosed, ChannelError, DisconnectReason, Event, PushFailure, Unexpected};
use crate::payload::{ByteStr, Payload};
use crate::presence::{Presence, PresenceEvents};
use crate::push::{Pending, PendingKind, PendingTable, PushRef, parse_ref};
use crate::stats::{ChannelCounts, Stats};
use crate::timer::{TimerHandle, TimerKey, Timers};
use crate::transmit::{CloseReason, ConnectRequest, ConnectionId, Transmit};

const PHOENIX: &str = "phoenix";
const PHOENIX_TOPIC: ByteStr = ByteStr::from_static(PHOENIX);
const HEARTBEAT: &str = "heartbeat";
const PHX_JOIN: &str = "phx_join";
const PHX_LEAVE: &str = "phx_leave";
const PHX_CLOSE: &str = "phx_close";
const PHX_ERROR: &str = "phx_error";

/// Options of one channel, for [`Socket::join_with_options`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinOptions {
    /// Timeout of this channel's joins, and default timeout of its pushes (the socket's
    /// [`crate::ConfigBuilder::timeout`] otherwise).
    pub timeout: Option<Duration>,
    /// Track presence on this channel: its presence messages feed a [`Presence`] view
    /// (reported as [`Event::Presence`]) instead of being delivered as messages.
    pub presence: Option<PresenceEvents>,
}

impl JoinOptions {
    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Tracks presence with Phoenix's default event names.
    #[must_use]
    pub fn presence(self) -> Self {
        self.presence_events(PresenceEvents::default())
    }

    /// Tracks presence with custom event names.
    #[must_use]
    pub fn presence_events(mut self, events: PresenceEvents) -> Self {
        self.presence = Some(events);
        self
    }
}

/// The connection state of a [`Socket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// Not connected and not trying: before [`Socket::connect`], after
    /// [`Socket::disconnect`], after a server close that is not retried, or after giving up.
    Disconnected,
    /// A connection attempt is in progress.
    Connecting,
    /// The WebSocket is open.
    Connected,
    /// Waiting for the next reconnect attempt.
    Reconnecting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    Connecting(ConnectionId),
    Open(ConnectionId),
    Waiting,
}

#[derive(Debug, Default)]
struct Heartbeat {
    /// Ref and send time of the heartbeat awaiting its reply.
    pending: Option<(u64, Instant)>,
    send: Option<TimerHandle>,
    deadline: Option<TimerHandle>,
}

/// The Phoenix client state machine: one WebSocket, many channels.
///
/// # Driving contract
///
/// The socket never performs IO and never reads a clock. Every input takes `now`:
/// - transport: [`Socket::handle_connected`], [`Socket::handle_frame`] (or
///   [`Socket::handle_frame_with`]), [`Socket::handle_closed`];
/// - time: [`Socket::handle_timeout`] (calling it early, or twice, does nothing);
/// - commands: [`Socket::connect`], [`Socket::disconnect`], [`Socket::join`],
///   [`Socket::push`], [`Socket::leave`] and the setters.
///
/// After **each** input, drain [`Socket::poll_transmit`] (carry out every order: dial, write,
/// close) and [`Socket::poll_event`] until both return `None`, then wait until the earliest of
/// [`Socket::poll_timeout`], a frame from the transport, or a user command. Feed frames that
/// have arrived before calling [`Socket::handle_timeout`]: a reply that is processed first wins
/// over its push's deadline.
///
/// The same inputs at the same instants always give the same outputs: the only randomness is
/// backoff jitter from [`crate::ConfigBuilder::rng_seed`].
///
/// ```
/// use phx_proto::{Config, Event, Frame, Payload, Socket, Transmit};
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// let config = Config::builder("ws://localhost:4000/socket")?.build()?;
/// let mut socket = Socket::new(config, start);
/// socket.connect(start);
/// let Some(Transmit::Connect { conn, request }) = socket.poll_transmit() else { panic!() };
/// assert_eq!(request.url(), "ws://localhost:4000/socket/websocket?vsn=2.0.0");
///
/// let lobby = socket.join(start, "room:lobby", Payload::empty())?;
/// socket.handle_connected(start, conn);
/// let Some(Transmit::Frame(join)) = socket.poll_transmit() else { panic!() };
/// assert_eq!(join, Frame::Text(r#"["1","1","room:lobby","phx_join",{}]"#.into()));
///
/// let reply = r#"["1","1","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#;
/// socket.handle_frame(start, conn, Frame::Text(reply.into()))?;
/// let events: Vec<Event> = std::iter::from_fn(|| socket.poll_event()).collect();
/// assert!(events.iter().any(|e| matches!(e, Event::Joined { channel, .. } if *channel == lobby)));
/// assert_eq!(socket.poll_timeout(), Some(start + Duration::from_secs(30))); // next heartbeat
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Socket {
    config: Config,
    now: Instant,
    rng: Rng,
    phase: Phase,
    conn_counter: u64,
    /// Reconnects scheduled since the last connection that stayed open `STABLE` (the backoff
    /// index).
    retries: u32,
    /// When the open connection opened.
    opened_at: Option<Instant>,
    /// Consecutive failed connection attempts since the last successful open.
    failures: u32,
    ref_counter: u64,
    channel_seq: u64,
    heartbeat: Heartbeat,
    reconnect_timer: Option<TimerHandle>,
    connect_timer: Option<TimerHandle>,
    channels: Slab,
    topics: TopicIndex,
    /// Channels whose leave is in flight; no longer in `topics`, so a new join may take the topic.
    leaving: Vec<ChannelId>,
    pending: PendingTable,
    pending_user: usize,
    buffered: usize,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Refs of the latest casts sent, whose replies are dropped quietly.
    recent_casts: VecDeque<u64>,
    stats: Stats,
}

/// Entries an empty output queue keeps room for ([`Socket::shrink_queues`]).
const QUEUE_KEEP: usize = 64;

/// How many cast refs [`Socket`] remembers.
const RECENT_CASTS: usize = 64;

/// How long a connection must stay open for the reconnect backoff to start over when it ends.
/// phoenix.js starts over on every open, so a server that accepts and closes at once is
/// redialled every 10 ms forever (PROTOCOL.md §9 item 23).
const STABLE: Duration = Duration::from_secs(5);

impl Socket {
    /// A socket in the [`SocketState::Disconnected`] state; call [`Socket::connect`] to dial.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            rng: Rng::new(config.rng_seed),
            config,
            now,
            phase: Phase::Disconnected,
            conn_counter: 0,
            retries: 0,
            opened_at: None,
            failures: 0,
            ref_counter: 0,
            channel_seq: 0,
            heartbeat: Heartbeat::default(),
            reconnect_timer: None,
            connect_timer: None,
            channels: Slab::default(),
            topics: TopicIndex::default(),
            leaving: Vec::new(),
            pending: PendingTable::default(),
            pending_user: 0,
            buffered: 0,
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            recent_casts: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---------------------------------------------------------------- queries

    /// The configuration in use (including updates made through the setters).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connection state.
    pub fn state(&self) -> SocketState {
        match self.phase {
            Phase::Disconnected => SocketState::Disconnected,
            Phase::Connecting(_) => SocketState::Connecting,
            Phase::Open(_) => SocketState::Connected,
            Phase::Waiting => SocketState::Reconnecting,
        }
    }

    /// Whether the WebSocket is open.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The current connection (open or being dialed).
    pub fn connection(&self) -> Option<ConnectionId> {
        match self.phase {
            Phase::Connecting(c) | Phase::Open(c) => Some(c),
            _ => None,
        }
    }

    /// A read-only view of a live channel; `None` once it has ended.
    pub fn channel(&self, id: ChannelId) -> Option<ChannelView<'_>> {
        self.channels
            .get(id)
            .map(|channel| ChannelView { id, channel })
    }

    /// The live channel for `topic`, if any (a leaving channel does not count).
    pub fn channel_by_topic(&self, topic: &str) -> Option<ChannelId> {
        self.topics.get(&self.channels, topic.as_bytes())
    }

    /// Every live channel, in creation order.
    pub fn channels(&self) -> impl Iterator<Item = ChannelView<'_>> {
        self.channels
            .ids_in_order()
            .into_iter()
            .filter_map(|id| self.channel(id))
    }

    /// A snapshot of counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        let mut counts = ChannelCounts::default();
        for (_, c) in self.channels.iter() {
            match c.state {
                ChannelState::Joining => counts.joining += 1,
                ChannelState::Joined => counts.joined += 1,
                ChannelState::Errored => counts.errored += 1,
                ChannelState::Leaving => counts.leaving += 1,
            }
        }
        stats.channels = counts;
        stats.pushes_pending = self.pending_user;
        stats.pushes_buffered = self.buffered;
        stats
    }

    /// The connect request the next attempt will use (URL with current params and token).
    /// Adapters that refresh credentials before each attempt rebuild it after the update.
    pub fn connect_request(&self) -> ConnectRequest {
        self.config.connect_request()
    }

    /// Checks the socket's internal bookkeeping and says what is inconsistent. Meant for
    /// tests, simulations and fuzzers, which call it after every step; it never fails unless
    /// phx-proto has a bug.
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut buffered = 0;
        for (id, ch) in self.channels.iter() {
            buffered += ch.buffered();
            if let Some(r) = ch.join_push()
                && self.pending.get(&r).map(|p| (p.channel, p.kind))
                    != Some((id, PendingKind::Join))
            {
                return Err(format!("{id}: join {r} is not pending"));
            }
            for b in ch.buffer().filter(|b| b.timeout.is_some()) {
                let p = self.pending.get(&b.ref_).map(|p| (p.channel, p.kind));
                if p != Some((id, PendingKind::User { sent: false })) {
                    return Err(format!("{id}: buffered push {} is {p:?}", b.ref_));
                }
            }
            for r in ch.in_flight() {
                let p = self.pending.get(&r).map(|p| (p.channel, p.kind));
                if p != Some((id, PendingKind::User { sent: true })) {
                    return Err(format!("{id}: in-flight push {r} is {p:?}"));
                }
            }
            let indexed = self.topics.get(&self.channels, ch.topic.as_bytes()) == Some(id);
            if indexed == (ch.state == ChannelState::Leaving) {
                return Err(format!(
                    "{id}: topic index disagrees with state {:?}",
                    ch.state
                ));
            }
            if ch.state == ChannelState::Joined && !self.is_connected() {
                return Err(format!("{id}: joined while the socket is not open"));
            }
            if ch.state == ChannelState::Leaving && !self.leaving.contains(&id) {
                return Err(format!("{id}: leaving but not in the leaving list"));
            }
        }
        if buffered != self.buffered {
            return Err(format!("buffered count {} != {buffered}", self.buffered));
        }
        if self.buffered > self.config.send_buffer_capacity {
            return Err(format!("send buffer over capacity: {}", self.buffered));
        }
        let users = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.kind, PendingKind::User { .. }))
            .count();
        if users != self.pending_user {
            return Err(format!(
                "pending user count {} != {users}",
                self.pending_user
            ));
        }
        for (r, p) in self.pending.iter() {
            if matches!(
                p.kind,
                PendingKind::User { .. } | PendingKind::Leave | PendingKind::Join
            ) && self.channels.get(p.channel).is_none()
            {
                return Err(format!("pending {r} ({:?}) of a dead channel", p.kind));
            }
            if matches!(
                p.kind,
                PendingKind::User { .. } | PendingKind::Leave | PendingKind::CancelJoin
            ) && p.deadline().is_none()
                && self.now.checked_add(self.config.timeout).is_some()
            {
                return Err(format!("pending {r} has no deadline"));
            }
        }
        if self.heartbeat.pending.is_some() && !self.is_connected() {
            return Err("heartbeat pending while not connected".into());
        }
        // Every armed timer belongs to a live owner: at most 4 socket timers, 2 per channel and
        // one per pending entry.
        let bound = 4 + 2 * self.channels.len() + self.pending.len();
        if self.timers.len() > bound {
            return Err(format!(
                "{} timers armed, at most {bound} owners",
                self.timers.len()
            ));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- outputs

    /// The next order for the transport. Drain after every input, or after a batch of them
    /// (the frames read in one go): orders wait in the order they were made.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application. Drain after every input, or after a batch of them,
    /// as for [`Socket::poll_transmit`].
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The channel of the next event, if that event is an [`Event::Message`]: lets a driver
    /// that hands messages on in batches decide where the message goes before taking it with
    /// [`Socket::poll_message_with`].
    #[must_use]
    pub fn peek_message(&self) -> Option<ChannelId> {
        match self.events.front() {
            Some(Event::Message { channel, .. }) => Some(*channel),
            _ => None,
        }
    }

    /// Takes the next event if it is an [`Event::Message`] and hands its message to `put`;
    /// returns whether it did. Any other event stays for [`Socket::poll_event`].
    ///
    /// A `Message` is 224 bytes: inlined with `put`, it is moved once, from the queue to
    /// wherever `put` stores it, where `poll_event` moves it out of the queue, then out of the
    /// event.
    #[inline]
    pub fn poll_message_with(&mut self, put: impl FnOnce(Message)) -> bool {
        if self.peek_message().is_none() {
            return false;
        }
        match self.events.pop_front() {
            Some(Event::Message { message, .. }) => {
                put(message);
                true
            }
            _ => false,
        }
    }

    /// Frees the output queues' buffers if they are empty and were sized for a burst (more
    /// than 64 entries). A driver that drains the queues once per batch of frames lets them
    /// grow to a batch; it calls this once the connection has nothing more to read, so that a
    /// socket that took a burst and went quiet holds what an idle one does.
    pub fn shrink_queues(&mut self) {
        fn shrink<T>(queue: &mut VecDeque<T>) {
            if queue.is_empty() && queue.capacity() > QUEUE_KEEP {
                *queue = VecDeque::new();
            }
        }
        shrink(&mut self.transmits);
        shrink(&mut self.events);
    }

    /// The earliest deadline; call [`Socket::handle_timeout`] when it passes. `None` when
    /// nothing is scheduled.
    ///
    /// Every input can change the answer: [`Socket::connect`], [`Socket::disconnect`],
    /// [`Socket::join`], [`Socket::push`], [`Socket::leave`], [`Socket::handle_connected`],
    /// [`Socket::handle_frame`], [`Socket::handle_frame_with`], [`Socket::handle_closed`] and
    /// [`Socket::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---------------------------------------------------------------- commands

    /// Starts connecting, unless already connected or connecting. While waiting to reconnect,
    /// dials at once. After giving up, starts a new series of attempts.
    pub fn connect(&mut self, now: Instant) {
        self.tick(now);
        match self.phase {
            Phase::Disconnected => {
                self.failures = 0;
                self.retries = 0;
                self.start_attempt();
            }
            Phase::Waiting => {
                self.timers.cancel(self.reconnect_timer.take());
                self.start_attempt();
            }
            Phase::Connecting(_) | Phase::Open(_) => {}
        }
    }

    /// Leaves every channel (a `phx_leave` for each joined one), closes the WebSocket with
    /// code 1000 and stops reconnecting. Every pending push and join ends at once
    /// ([`PushFailure::Disconnected`], [`ChannelClosed::Disconnected`]). A later
    /// [`Socket::connect`] starts afresh with no channels.
    pub fn disconnect(&mut self, now: Instant) {
        self.tick(now);
        let conn = self.connection();
        if let Phase::Open(_) = self.phase {
            for id in self.channels.ids_in_order() {
                let Some(ch) = self.channels.get(id) else {
                    continue;
                };
                let on_server = ch.state == ChannelState::Joined
                    || (ch.state == ChannelState::Joining && ch.join_push().is_some());
                if on_server {
                    let (join_ref, topic) = (ch.join_ref_number(), ch.topic.clone());
                    if let (_, Ok(frame)) = self.leave_frame(join_ref, &topic) {
                        self.send_frame(frame);
                    }
                }
            }
        }
        if let Some(conn) = conn {
            self.transmits.push_back(Transmit::Close {
                conn,
                code: 1000,
                reason: "client disconnect",
            });
        }
        let was = self.phase;
        self.phase = Phase::Disconnected;
        self.stop_socket_timers();
        self.failures = 0;
        self.retries = 0;
        self.opened_at = None;
        if was != Phase::Disconnected {
            self.events.push_back(Event::Disconnected {
                reason: DisconnectReason::Client,
                reconnect_at: None,
                reconnect_delay: None,
            });
        }
        for id in self.channels.ids_in_order() {
            let leaving = self
                .channels
                .get(id)
                .is_some_and(|c| c.state == ChannelState::Leaving);
            self.end_channel(id, PushFailure::Disconnected);
            self.events.push_back(if leaving {
                Event::Left {
                    channel: id,
                    confirmed: false,
                }
            } else {
                Event::ChannelClosed {
                    channel: id,
                    reason: ChannelClosed::Disconnected,
                }
            });
        }
        // Join cancellations and anything else tied to the closed connection.
        for (_, p) in self.pending.take_all() {
            self.timers.cancel(p.timer);
        }
    }

    /// Joins `topic` with `params` (sent again on every rejoin), with the configured timeout.
    ///
    /// The join goes out now if the socket is open, else as soon as it opens. Its timeout runs
    /// from this call. The outcome arrives as [`Event::Joined`], or [`Event::JoinFailed`] /
    /// [`Event::JoinTimedOut`] (a first join is not retried: the channel ends). Once joined,
    /// the channel rejoins by itself after errors and reconnects.
    ///
    /// # Errors
    /// [`JoinError::AlreadyJoined`] if the topic has a live channel on this socket,
    /// [`JoinError::InvalidTopic`], [`JoinError::ZeroTimeout`], or [`JoinError::Encode`] if the
    /// join cannot be encoded (params that are not well-formed JSON included).
    pub fn join(
        &mut self,
        now: Instant,
        topic: &str,
        params: Payload,
    ) -> Result<ChannelId, JoinError> {
        let timeout = self.config.timeout;
        self.join_with_timeout(now, topic, params, timeout)
    }

    /// As [`Socket::join`], with a timeout for this channel's joins, and the default timeout of
    /// its pushes.
    ///
    /// # Errors
    /// As [`Socket::join`].
    pub fn join_with_timeout(
        &mut self,
        now: Instant,
        topic: &str,
        params: Payload,
        timeout: Duration,
    ) -> Result<ChannelId, JoinError> {
        self.join_with_options(now, topic, params, JoinOptions::default().timeout(timeout))
    }

    /// As [`Socket::join`], with per-channel [`JoinOptions`] (timeout, presence tracking).
    ///
    /// # Errors
    /// As [`Socket::join`].
    pub fn join_with_options(
        &mut self,
        now: Instant,
        topic: &str,
        params: Payload,
        options: JoinOptions,
    ) -> Result<ChannelId, JoinError> {
        let timeout = options.timeout.unwrap_or(self.config.timeout);
        self.tick(now);
        if timeout.is_zero() {
            return Err(JoinError::ZeroTimeout);
        }
        if topic.is_empty() {
            return Err(JoinError::InvalidTopic {
                topic: topic.to_owned(),
                reason: "the topic is empty",
            });
        }
        if topic == PHOENIX {
            return Err(JoinError::InvalidTopic {
                topic: topic.to_owned(),
                reason: "`phoenix` is reserved for socket heartbeats",
            });
        }
        if let Some(channel) = self.topics.get(&self.channels, topic.as_bytes()) {
            return Err(JoinError::AlreadyJoined {
                topic: ByteStr::from(topic),
                channel,
            });
        }
        let topic = ByteStr::from(topic);
        // Validate first, so a refused join changes nothing.
        let params = checked(params)?;
        self.dry_run(&topic, PHX_JOIN, &params)?;
        self.channel_seq += 1;
        let mut channel = Channel::new(topic.clone(), params, self.channel_seq, timeout);
        channel.presence = options
            .presence
            .map(|events| Box::new(Presence::new(events)));
        let id = self.channels.insert(channel);
        self.topics.insert(topic.as_bytes(), id);
        let timer = self.arm(timeout, TimerKey::Join(id));
        if let Some(ch) = self.channels.get_mut(id) {
            ch.set_join_timer(timer);
        }
        if self.is_connected() {
            self.send_join(id);
        }
        Ok(id)
    }

    /// Replaces the params a channel sends with its next (re)join, so a rejoin can carry fresh
    /// state such as the last message id seen.
    ///
    /// # Errors
    /// [`JoinError::UnknownChannel`] for a channel that has ended, [`JoinError::Encode`] if
    /// the join would no longer encode.
    pub fn set_join_params(
        &mut self,
        channel: ChannelId,
        params: Payload,
    ) -> Result<(), JoinError> {
        let topic = self
            .channels
            .get(channel)
            .map(|c| c.topic.clone())
            .ok_or(JoinError::UnknownChannel(channel))?;
        let params = checked(params)?;
        self.dry_run(&topic, PHX_JOIN, &params)?;
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.params = params;
        }
        Ok(())
    }

    /// Pushes `event` with `payload` on a channel; `timeout` defaults to the channel's.
    ///
    /// Sent at once if the channel is joined and the socket open; otherwise it waits in the
    /// send buffer and goes out, in order, after the (re)join succeeds. The timeout runs from
    /// this call; a push whose timeout runs out in the buffer is never sent, and one that is
    /// sent from the buffer gets its whole timeout again from then, so the server always has
    /// the full timeout to answer (as in phoenix.js). The outcome arrives as exactly one of
    /// [`Event::Replied`], [`Event::PushTimedOut`] or [`Event::PushFailed`].
    ///
    /// # Errors
    /// [`PushError::BufferFull`] when it would have to wait and the buffer is full,
    /// [`PushError::TooManyPending`], [`PushError::UnknownChannel`], [`PushError::Leaving`],
    /// [`PushError::ReservedEvent`], [`PushError::ZeroTimeout`], [`PushError::Encode`] (also for
    /// a received payload passed on whose deferred check fails: [`EncodeError::InvalidJson`]).
    /// Nothing changes on error.
    pub fn push(
        &mut self,
        now: Instant,
        channel: ChannelId,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<PushRef, PushError> {
        self.tick(now);
        self.send_push(channel, event, payload, Some(timeout))
            .map(PushRef)
    }

    /// Pushes `event` with `payload` on a channel without tracking an outcome: fire and forget.
    ///
    /// Sent, or buffered, exactly like [`Socket::push`] (in order with the channel's pushes),
    /// but no timer runs and no outcome event follows: a reply to one of the latest 64 casts is
    /// dropped without a word (a reply to an older one is counted and reported as
    /// [`Unexpected::UnknownRef`]), a cast that cannot be sent (the channel ends first) is
    /// dropped with the buffer. It does not count toward
    /// [`crate::ConfigBuilder::max_pending_pushes`].
    ///
    /// # Errors
    /// As [`Socket::push`], except [`PushError::TooManyPending`].
    pub fn cast(
        &mut self,
        now: Instant,
        channel: ChannelId,
        event: &str,
        payload: Payload,
    ) -> Result<(), PushError> {
        self.tick(now);
        self.send_push(channel, event, payload, None).map(drop)
    }

    /// A push (`timeout: Some`, tracked to its outcome) or a cast (`None`): sent now or
    /// buffered. Returns its ref.
    fn send_push(
        &mut self,
        channel: ChannelId,
        event: &str,
        payload: Payload,
        timeout: Option<Option<Duration>>,
    ) -> Result<u64, PushError> {
        let ch = self
            .channels
            .get(channel)
            .ok_or(PushError::UnknownChannel(channel))?;
        if ch.state == ChannelState::Leaving {
            return Err(PushError::Leaving(channel));
        }
        if event == PHX_JOIN || event == PHX_LEAVE {
            return Err(PushError::ReservedEvent(event.to_owned()));
        }
        if timeout.flatten().is_some_and(|t| t.is_zero()) {
            return Err(PushError::ZeroTimeout);
        }
        let tracked = timeout.is_some();
        if tracked && self.pending_user >= self.config.max_pending_pushes {
            return Err(PushError::TooManyPending {
                limit: self.config.max_pending_pushes,
            });
        }
        let send_now = self.is_connected() && ch.state == ChannelState::Joined;
        if !send_now && self.buffered >= self.config.send_buffer_capacity {
            return Err(PushError::BufferFull {
                limit: self.config.send_buffer_capacity,
            });
        }
        let payload = checked(payload)?;
        let timeout = timeout.map(|t| t.unwrap_or(ch.timeout));
        let r = self.ref_counter + 1;
        let msg = Outgoing {
            join_ref: ch.join_ref.map(NonZeroU64::get),
            ref_: r,
            topic: &ch.topic,
            event,
            payload: &payload,
        };
        let frame = if send_now {
            Some(self.encode(&msg)?)
        } else {
            self.dry_run(&ch.topic, event, &payload)?;
            None
        };
        self.ref_counter = r;
        if let Some(timeout) = timeout {
            let timer = self.arm(timeout, TimerKey::Pending(r));
            self.pending_user += 1;
            self.pending.insert(
                r,
                Pending {
                    channel,
                    kind: PendingKind::User {
                        sent: frame.is_some(),
                    },
                    timer,
                },
            );
        }
        let Some(ch) = self.channels.get_mut(channel) else {
            return Ok(r);
        };
        match frame {
            Some(frame) => {
                if tracked {
                    ch.add_in_flight(r);
                } else {
                    self.note_cast(r);
                }
                self.send_frame(frame);
            }
            None => {
                ch.push_buffered(Buffered {
                    ref_: r,
                    event: ByteStr::from(event),
                    payload,
                    timeout,
                });
                self.buffered += 1;
            }
        }
        Ok(r)
    }

    /// Remembers the ref of a cast just sent, so that a reply to it is dropped quietly rather
    /// than reported as a reply to nothing. Only the latest few are kept.
    fn note_cast(&mut self, r: u64) {
        if self.recent_casts.len() == RECENT_CASTS {
            self.recent_casts.pop_front();
        }
        self.recent_casts.push_back(r);
    }

    /// Leaves a channel. If the server holds it, sends `phx_leave` and completes on the reply,
    /// on `phx_close`, or after the channel timeout; otherwise completes at once. Either way
    /// the end arrives as [`Event::Left`], and the topic is free for a new join right away.
    /// Buffered pushes fail with [`PushFailure::ChannelClosed`].
    ///
    /// # Errors
    /// [`LeaveError::UnknownChannel`], [`LeaveError::AlreadyLeaving`].
    pub fn leave(&mut self, now: Instant, channel: ChannelId) -> Result<(), LeaveError> {
        self.tick(now);
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or(LeaveError::UnknownChannel(channel))?;
        if ch.state == ChannelState::Leaving {
            return Err(LeaveError::AlreadyLeaving(channel));
        }
        let on_server = ch.state == ChannelState::Joined
            || (ch.state == ChannelState::Joining && ch.join_push().is_some());
        let (join_timer, rejoin_timer) = (ch.take_join_timer(), ch.take_rejoin_timer());
        let buffered = ch.take_buffer();
        let topic = ch.topic.clone();
        self.timers.cancel(join_timer);
        self.timers.cancel(rejoin_timer);
        self.topics.remove(topic.as_bytes(), channel);
        for b in buffered {
            self.buffered -= 1;
            self.fail_push(channel, b.ref_, PushFailure::ChannelClosed);
        }
        if on_server && self.is_connected() {
            let Some(ch) = self.channels.get_mut(channel) else {
                return Ok(());
            };
            ch.state = ChannelState::Leaving;
            let join_ref = ch.join_ref_number();
            let (r, frame) = self.leave_frame(join_ref, &topic);
            let timeout = self
                .channels
                .get(channel)
                .map_or(self.config.timeout, |c| c.timeout);
            let timer = self.arm(timeout, TimerKey::Pending(r));
            self.pending.insert(
                r,
                Pending {
                    channel,
                    kind: PendingKind::Leave,
                    timer,
                },
            );
            if let Some(ch) = self.channels.get_mut(channel) {
                ch.set_leave_ref(r);
            }
            self.leaving.push(channel);
            match frame {
                Ok(frame) => self.send_frame(frame),
                Err(_) => self.finish_leave(channel, false),
            }
        } else {
            self.end_channel(channel, PushFailure::ChannelClosed);
            self.events.push_back(Event::Left {
                channel,
                confirmed: false,
            });
        }
        Ok(())
    }

    /// Sets (or replaces) a connect parameter, used from the next connection attempt on.
    ///
    /// Like the other connect settings (`set_secret_param`, `remove_param`, `set_auth_token`,
    /// `set_endpoint`), it takes no `now`: it changes nothing until the next connect, which
    /// does take one.
    pub fn set_param(&mut self, key: &str, value: &str) {
        self.put_param(key, value, None);
    }

    /// Sets (or replaces) a connect parameter whose value is never logged.
    pub fn set_secret_param(&mut self, key: &str, value: &str) {
        self.put_param(key, value, Some(true));
    }

    fn put_param(&mut self, key: &str, value: &str, secret: Option<bool>) {
        if key.is_empty() || key == "vsn" {
            return;
        }
        match self.config.params.iter_mut().find(|p| p.key == key) {
            Some(p) => {
                p.value = value.to_owned();
                if let Some(s) = secret {
                    p.secret = s;
                }
            }
            None => self.config.params.push(Param {
                key: key.to_owned(),
                value: value.to_owned(),
                secret: secret.unwrap_or(false),
            }),
        }
    }

    /// Removes a connect parameter.
    pub fn remove_param(&mut self, key: &str) {
        self.config.params.retain(|p| p.key != key);
    }

    /// Sets or clears the auth token sent on the next connection attempts.
    pub fn set_auth_token(&mut self, token: Option<String>) {
        self.config.auth_token = token;
    }

    /// Points the next connection attempts at another endpoint.
    ///
    /// # Errors
    /// [`ConfigError::Endpoint`]; the endpoint is unchanged then.
    pub fn set_endpoint(&mut self, endpoint: &str) -> Result<(), ConfigError> {
        self.config.endpoint = Endpoint::parse(endpoint)?;
        Ok(())
    }

    // ---------------------------------------------------------------- transport inputs

    /// The WebSocket of attempt `conn` is open. Ignored for any other attempt.
    ///
    /// Starts heartbeats and (re)joins every channel that waits for the connection, in creation
    /// order. The reconnect backoff starts over if this connection stays open 5 s or more.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnectionId) {
        self.tick(now);
        if self.phase != Phase::Connecting(conn) {
            return;
        }
        self.timers.cancel(self.connect_timer.take());
        self.phase = Phase::Open(conn);
        // The core's clock, not `now`: an input stamped earlier than the last one must not make
        // the connection look older than it is (and reset the backoff too soon).
        self.opened_at = Some(self.now);
        self.failures = 0;
        self.stats.connects += 1;
        if let Some(interval) = self.config.heartbeat_interval {
            self.heartbeat.send = self.arm(interval, TimerKey::HeartbeatSend);
        }
        self.events.push_back(Event::Connected { conn });
        for id in self.channels.ids_in_order() {
            let Some(ch) = self.channels.get_mut(id) else {
                continue;
            };
            let waiting = match ch.state {
                ChannelState::Errored => true,
                ChannelState::Joining => ch.join_push().is_none(),
                ChannelState::Joined | ChannelState::Leaving => false,
            };
            if waiting {
                ch.rejoin_tries = 0;
                let t = ch.take_rejoin_timer();
                self.timers.cancel(t);
                self.send_join(id);
            }
        }
    }

    /// A frame arrived on connection `conn`. Frames of any other connection are ignored.
    ///
    /// # Errors
    /// The frame's [`DecodeError`]. The frame is dropped, counted and reported as
    /// [`Event::Unexpected`]; the socket carries on.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: Frame,
    ) -> Result<(), DecodeError> {
        self.take_frame(now, conn, frame, None)
    }

    /// As [`Socket::handle_frame`], except that a message for a joined channel is handed to
    /// `deliver` at once, instead of queued as an [`Event::Message`], when no other event is
    /// waiting to be polled. When one is, the message is queued behind it as usual, so that
    /// what comes out of the socket keeps its order either way.
    ///
    /// For a driver that gathers a channel's messages into batches: each message then moves
    /// once, from the decoder to where `deliver` puts it, rather than into the event queue and
    /// out of it again (a `Message` is 224 bytes).
    ///
    /// # Errors
    /// As [`Socket::handle_frame`].
    pub fn handle_frame_with(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: Frame,
        mut deliver: impl FnMut(ChannelId, Message),
    ) -> Result<(), DecodeError> {
        self.take_frame(now, conn, frame, Some(&mut deliver))
    }

    fn take_frame(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: Frame,
        deliver: Option<&mut dyn FnMut(ChannelId, Message)>,
    ) -> Result<(), DecodeError> {
        self.tick(now);
        if self.phase != Phase::Open(conn) {
            return Ok(());
        }
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let decoded = self
            .config
            .serializer
            .decode_owned(frame, self.config.defer_payload_checks);
        // Where a channel's own message goes is read from it where the decoder left it: read
        // once it is moved out of the `Result`, its fields stall on the stores of the copy (a
        // store forward fails), about 10 ns a frame.
        let plain = match &decoded {
            Ok(msg) if !msg.is_reply() => self.plain_target(msg),
            _ => None,
        };
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => return Err(self.invalid_frame(e)),
        };
        if let Some(id) = plain {
            self.deliver_message(id, msg, deliver);
        } else if msg.is_reply() {
            self.route_reply(msg);
        } else {
            return self.route_message(msg, deliver);
        }
        Ok(())
    }

    /// The channel a message goes straight to, if it is a joined channel's own message of its
    /// current join (not a phx_close or phx_error, nor a presence event the channel's view
    /// takes). `None` for every other message, which `route_message` sorts out.
    fn plain_target(&mut self, msg: &Message) -> Option<ChannelId> {
        if msg.event == PHX_CLOSE || msg.event == PHX_ERROR {
            return None;
        }
        let id = self.topics.route(&self.channels, msg.topic.as_bytes())?;
        let ch = self.channels.get(id)?;
        let plain = ch.state == ChannelState::Joined
            && msg.join_ref.as_ref().is_none_or(|j| ch.is_current(j))
            && !ch.presence.as_ref().is_some_and(|p| p.handles(&msg.event));
        plain.then_some(id)
    }

    /// Hands a joined channel's message to `deliver` if there is one and no event waits, else
    /// queues it as an event.
    fn deliver_message(
        &mut self,
        id: ChannelId,
        msg: Message,
        deliver: Option<&mut dyn FnMut(ChannelId, Message)>,
    ) {
        self.stats.messages += 1;
        match deliver {
            Some(deliver) if self.events.is_empty() => deliver(id, msg),
            _ => self.events.push_back(Event::Message {
                channel: id,
                message: msg,
            }),
        }
    }

    /// Counts and reports a frame that failed to decode.
    fn invalid_frame(&mut self, e: DecodeError) -> DecodeError {
        self.stats.invalid_frames += 1;
        self.events
            .push_back(Event::Unexpected(Unexpected::InvalidFrame(e.clone())));
        e
    }

    /// Connection `conn` ended, or its attempt failed. Ignored for any other connection.
    ///
    /// Joined channels become errored and rejoin after reconnecting; pushes that were in
    /// flight fail with [`PushFailure::ConnectionLost`] (their replies can never arrive);
    /// buffered pushes keep waiting. A reconnect is scheduled on the backoff, after a server
    /// close with code 1000 too unless [`crate::ConfigBuilder::reconnect_on_normal_close`] is
    /// off.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnectionId, reason: CloseReason) {
        self.tick(now);
        let was_open = match self.phase {
            Phase::Open(c) if c == conn => true,
            Phase::Connecting(c) if c == conn => false,
            _ => return,
        };
        let reconnect = !(was_open
            && matches!(reason, CloseReason::Closed { code: 1000, .. })
            && !self.config.reconnect_on_normal_close);
        self.transport_lost(DisconnectReason::Transport(reason), reconnect);
    }

    /// Fires every deadline at or before `now`, in deadline order. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(key) = self.timers.pop_due(self.now) {
            self.fire(key);
        }
    }

    // ---------------------------------------------------------------- internals

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn mint_ref(&mut self) -> u64 {
        self.ref_counter += 1;
        self.ref_counter
    }

    /// Arms a deadline `after` from now; `None` if it would overflow (it then never fires).
    fn arm(&mut self, after: Duration, key: TimerKey) -> Option<TimerHandle> {
        let at = self.now.checked_add(after)?;
        Some(self.timers.arm(at, key))
    }

    fn send_frame(&mut self, frame: Frame) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.transmits.push_back(Transmit::Frame(frame));
    }

    /// Encodes a client message, enforcing the frame size limit.
    fn encode(&self, msg: &Outgoing<'_>) -> Result<Frame, EncodeError> {
        let frame = self.config.serializer.encode_outgoing(msg)?;
        if frame.len() > self.config.max_frame_size {
            return Err(EncodeError::FrameTooLarge {
                size: frame.len(),
                max: self.config.max_frame_size,
            });
        }
        Ok(frame)
    }

    /// A `phx_leave` for the channel instance `join_ref` of `topic`, with a fresh ref.
    fn leave_frame(
        &mut self,
        join_ref: Option<u64>,
        topic: &ByteStr,
    ) -> (u64, Result<Frame, EncodeError>) {
        let r = self.mint_ref();
        let msg = Outgoing {
            join_ref,
            ref_: r,
            topic,
            event: PHX_LEAVE,
            payload: &Payload::empty(),
        };
        (r, self.encode(&msg))
    }

    /// Checks that a channel message with these fields would encode, whatever its refs.
    fn dry_run(&self, topic: &ByteStr, event: &str, payload: &Payload) -> Result<(), EncodeError> {
        self.encode(&Outgoing {
            join_ref: Some(u64::MAX),
            ref_: u64::MAX,
            topic,
            event,
            payload,
        })
        .map(drop)
    }

    fn start_attempt(&mut self) {
        self.conn_counter += 1;
        let conn = ConnectionId(self.conn_counter);
        self.phase = Phase::Connecting(conn);
        self.stats.connect_attempts += 1;
        self.connect_timer = self.arm(self.config.connect_timeout, TimerKey::ConnectTimeout);
        self.transmits.push_back(Transmit::Connect {
            conn,
            request: self.config.connect_request(),
        });
        self.events.push_back(Event::Connecting {
            conn,
            attempt: self.failures.saturating_add(1),
        });
    }

    fn stop_socket_timers(&mut self) {
        self.timers.cancel(self.connect_timer.take());
        self.timers.cancel(self.reconnect_timer.take());
        self.timers.cancel(self.heartbeat.send.take());
        self.timers.cancel(self.heartbeat.deadline.take());
        self.heartbeat.pending = None;
    }

    fn send_join(&mut self, id: ChannelId) {
        let r = self.mint_ref();
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        ch.state = ChannelState::Joining;
        ch.join_ref = NonZeroU64::new(r);
        ch.set_join_push(r);
        let (topic, params, timeout) = (ch.topic.clone(), ch.params.clone(), ch.timeout);
        let needs_timer = ch.join_timer().is_none();
        if needs_timer {
            let timer = self.arm(timeout, TimerKey::Join(id));
            if let Some(ch) = self.channels.get_mut(id) {
                ch.set_join_timer(timer);
            }
        }
        self.pending.insert(
            r,
            Pending {
                channel: id,
                kind: PendingKind::Join,
                timer: None,
            },
        );
        let msg = Outgoing {
            join_ref: Some(r),
            ref_: r,
            topic: &topic,
            event: PHX_JOIN,
            payload: &params,
        };
        match self.encode(&msg) {
            Ok(frame) => self.send_frame(frame),
            // Params were validated when set; only a custom serializer can get here.
            Err(_) => {
                self.close_failed_join(id, ByteStr::from_static("encode_error"), Payload::empty())
            }
        }
    }

    fn fire(&mut self, key: TimerKey) {
        match key {
            TimerKey::HeartbeatSend => {
                self.heartbeat.send = None;
                self.send_heartbeat();
            }
            TimerKey::HeartbeatDeadline => {
                self.heartbeat.deadline = None;
                if self.heartbeat.pending.is_some()
                    && let Phase::Open(conn) = self.phase
                {
                    self.stats.heartbeat_timeouts += 1;
                    self.transmits.push_back(Transmit::Close {
                        conn,
                        code: 1000,
                        reason: "heartbeat timeout",
                    });
                    self.transport_lost(DisconnectReason::HeartbeatTimeout, true);
                }
            }
            TimerKey::Reconnect => {
                self.reconnect_timer = None;
                if self.phase == Phase::Waiting {
                    self.stats.reconnects += 1;
                    self.start_attempt();
                }
            }
            TimerKey::ConnectTimeout => {
                self.connect_timer = None;
                if let Phase::Connecting(conn) = self.phase {
                    self.transmits.push_back(Transmit::Close {
                        conn,
                        code: 1000,
                        reason: "connect timeout",
                    });
                    self.transport_lost(DisconnectReason::ConnectTimeout, true);
                }
            }
            TimerKey::Join(id) => self.join_timed_out(id),
            TimerKey::Rejoin(id) => {
                let due = match self.channels.get_mut(id) {
                    Some(ch) => {
                        ch.set_rejoin_timer(None);
                        ch.state == ChannelState::Errored
                    }
                    None => false,
                };
                if due && self.is_connected() {
                    self.send_join(id);
                }
            }
            TimerKey::Pending(r) => self.pending_timed_out(r),
        }
    }

    fn send_heartbeat(&mut self) {
        if !self.is_connected() {
            return;
        }
        let Some(interval) = self.config.heartbeat_interval else {
            return;
        };
        let r = self.mint_ref();
        let msg = Outgoing {
            join_ref: None,
            ref_: r,
            topic: &PHOENIX_TOPIC,
            event: HEARTBEAT,
            payload: &Payload::empty(),
        };
        if let Ok(frame) = self.encode(&msg) {
            self.send_frame(frame);
        }
        self.heartbeat.pending = Some((r, self.now));
        self.heartbeat.deadline = self.arm(interval, TimerKey::HeartbeatDeadline);
    }

    fn join_timed_out(&mut self, id: ChannelId) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        ch.set_join_timer(None);
        if !matches!(ch.state, ChannelState::Joining | ChannelState::Errored) {
            return;
        }
        let old_join_ref = ch.join_ref_number();
        let timed_out = ch.abandon_join();
        let ever_joined = ch.ever_joined;
        let (topic, timeout) = (ch.topic.clone(), ch.timeout);
        if let Some(r) = timed_out {
            self.pending.remove(&r);
            // Undo a join the server may still complete late (as phoenix.js does).
            if self.is_connected()
                && let (c, Ok(frame)) = self.leave_frame(old_join_ref, &topic)
            {
                let timer = self.arm(timeout, TimerKey::Pending(c));
                self.pending.insert(
                    c,
                    Pending {
                        channel: id,
                        kind: PendingKind::CancelJoin,
                        timer,
                    },
                );
                self.send_frame(frame);
            }
        }
        if ever_joined {
            if let Some(ch) = self.channels.get_mut(id) {
                ch.state = ChannelState::Errored;
            }
            let retry_at = self.schedule_rejoin(id);
            self.events.push_back(Event::JoinTimedOut {
                channel: id,
                retry_at,
            });
        } else {
            self.end_channel(id, PushFailure::JoinFailed);
            self.events.push_back(Event::JoinTimedOut {
                channel: id,
                retry_at: None,
            });
        }
    }

    /// Schedules a rejoin on the rejoin backoff if the socket is open; otherwise the channel
    /// rejoins when it opens.
    fn schedule_rejoin(&mut self, id: ChannelId) -> Option<Instant> {
        if !self.is_connected() {
            return None;
        }
        let ch = self.channels.get_mut(id)?;
        let delay = self.config.rejoin.delay(ch.rejoin_tries, &mut self.rng);
        ch.rejoin_tries = ch.rejoin_tries.saturating_add(1);
        let old = ch.take_rejoin_timer();
        self.timers.cancel(old);
        let timer = self.arm(delay, TimerKey::Rejoin(id));
        if let Some(ch) = self.channels.get_mut(id) {
            ch.set_rejoin_timer(timer);
        }
        timer.map(TimerHandle::at)
    }

    fn pending_timed_out(&mut self, r: u64) {
        let Some(p) = self.pending.remove(&r) else {
            return;
        };
        match p.kind {
            PendingKind::User { sent } => {
                self.pending_user -= 1;
                if let Some(ch) = self.channels.get_mut(p.channel) {
                    if sent {
                        ch.remove_in_flight(r);
                    } else if ch.remove_buffered(r) {
                        self.buffered -= 1;
                    }
                }
                self.stats.push_timeouts += 1;
                self.events.push_back(Event::PushTimedOut {
                    channel: p.channel,
                    push_ref: PushRef(r),
                });
            }
            PendingKind::Leave => {
                // Put the entry back so finish_leave sees a consistent table.
                self.finish_leave(p.channel, false);
            }
            PendingKind::CancelJoin | PendingKind::Join => {}
        }
    }

    fn route_reply(&mut self, msg: Message) {
        if msg.topic == PHOENIX
            && let Some((hb, sent_at)) = self.heartbeat.pending
            && msg.ref_.as_ref().and_then(parse_ref) == Some(hb)
        {
            let rtt = self.now.saturating_duration_since(sent_at);
            self.heartbeat.pending = None;
            self.timers.cancel(self.heartbeat.deadline.take());
            if let Some(interval) = self.config.heartbeat_interval {
                self.timers.cancel(self.heartbeat.send.take());
                self.heartbeat.send = self.arm(interval, TimerKey::HeartbeatSend);
            }
            self.stats.last_rtt = Some(rtt);
            self.events.push_back(Event::Heartbeat { rtt });
            return;
        }
        let r = msg.ref_.as_ref().and_then(parse_ref);
        let pending = r.and_then(|r| {
            let p = self.pending.get(&r)?;
            // A buffered push has its ref but was never sent: nothing can answer it yet.
            let sent = p.kind != PendingKind::User { sent: false };
            // The leave that cancels a first join outlives its channel: its ref alone is
            // enough to consume the reply.
            let topic_matches = match self.channels.get(p.channel) {
                Some(c) => c.topic == msg.topic,
                None => p.kind == PendingKind::CancelJoin,
            };
            (sent && topic_matches).then_some((r, p.channel, p.kind))
        });
        let Some((r, channel, kind)) = pending else {
            if let Some(i) = r.and_then(|r| self.recent_casts.iter().position(|&c| c == r)) {
                // The reply to a cast: nobody asked for it.
                self.recent_casts.remove(i);
                return;
            }
            self.stats.unknown_refs += 1;
            self.events
                .push_back(Event::Unexpected(Unexpected::UnknownRef {
                    topic: msg.topic,
                    ref_: msg.ref_,
                }));
            return;
        };
        let status = msg.status.unwrap_or_default();
        match kind {
            PendingKind::Join => self.on_join_reply(channel, r, status, msg.payload),
            PendingKind::Leave => self.finish_leave(channel, true),
            PendingKind::CancelJoin => {
                if let Some(p) = self.pending.remove(&r) {
                    self.timers.cancel(p.timer);
                }
            }
            PendingKind::User { .. } => {
                if let Some(p) = self.pending.remove(&r) {
                    self.timers.cancel(p.timer);
                }
                self.pending_user -= 1;
                if let Some(ch) = self.channels.get_mut(channel) {
                    ch.remove_in_flight(r);
                }
                self.events.push_back(Event::Replied {
                    channel,
                    push_ref: PushRef(r),
                    status,
                    response: msg.payload,
                });
            }
        }
    }

    fn on_join_reply(&mut self, id: ChannelId, r: u64, status: ByteStr, response: Payload) {
        self.pending.remove(&r);
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if ch.join_push() != Some(r) {
            return;
        }
        let _ = ch.take_join_push();
        if ch.state == ChannelState::Leaving {
            // The leave in flight decides the channel's fate.
            return;
        }
        let join_timer = ch.take_join_timer();
        self.timers.cancel(join_timer);
        if status == "ok" {
            let Some(ch) = self.channels.get_mut(id) else {
                return;
            };
            ch.state = ChannelState::Joined;
            ch.rejoin_tries = 0;
            let rejoin = ch.ever_joined;
            ch.ever_joined = true;
            let buffered = ch.take_buffer();
            let (topic, join_ref) = (ch.topic.clone(), ch.join_ref_number());
            self.events.push_back(Event::Joined {
                channel: id,
                response,
                rejoin,
            });
            for b in buffered {
                self.buffered -= 1;
                let msg = Outgoing {
                    join_ref,
                    ref_: b.ref_,
                    topic: &topic,
                    event: &b.event,
                    payload: &b.payload,
                };
                match (self.encode(&msg), b.timeout) {
                    (Ok(frame), None) => {
                        self.note_cast(b.ref_);
                        self.send_frame(frame);
                    }
                    (Ok(frame), Some(timeout)) => {
                        // The wait in the buffer is over: the server gets the whole timeout
                        // to answer, as in phoenix.js (PROTOCOL.md §5.4).
                        if let Some(old) = self.pending.get(&b.ref_).map(|p| p.timer) {
                            self.timers.cancel(old);
                            let timer = self.arm(timeout, TimerKey::Pending(b.ref_));
                            if let Some(p) = self.pending.get_mut(&b.ref_) {
                                p.kind = PendingKind::User { sent: true };
                                p.timer = timer;
                            }
                        }
                        if let Some(ch) = self.channels.get_mut(id) {
                            ch.add_in_flight(b.ref_);
                        }
                        self.send_frame(frame);
                    }
                    (Err(e), _) => self.fail_push(id, b.ref_, PushFailure::Encode(e)),
                }
            }
        } else if ch.ever_joined {
            ch.state = ChannelState::Errored;
            let retry_at = self.schedule_rejoin(id);
            self.events.push_back(Event::JoinFailed {
                channel: id,
                status,
                response,
                retry_at,
            });
        } else {
            self.close_failed_join(id, status, response);
        }
    }

    fn close_failed_join(&mut self, id: ChannelId, status: ByteStr, response: Payload) {
        self.end_channel(id, PushFailure::JoinFailed);
        self.events.push_back(Event::JoinFailed {
            channel: id,
            status,
            response,
            retry_at: None,
        });
    }

    fn route_message(
        &mut self,
        mut msg: Message,
        deliver: Option<&mut dyn FnMut(ChannelId, Message)>,
    ) -> Result<(), DecodeError> {
        // With deferred checks, only a channel's own messages travel unchecked: the socket
        // acts on lifecycle payloads itself (presence payloads go through serde, which checks).
        let lifecycle = msg.event == PHX_CLOSE || msg.event == PHX_ERROR;
        if lifecycle && let Err(e) = msg.payload.check() {
            return Err(self.invalid_frame(e));
        }
        self.route_to_channel(msg, lifecycle, deliver);
        Ok(())
    }

    /// Routes a message that is not a reply; `lifecycle` says whether it is a phx_close or a
    /// phx_error. A channel's message goes to `deliver` if there is one and no event waits.
    fn route_to_channel(
        &mut self,
        msg: Message,
        lifecycle: bool,
        deliver: Option<&mut dyn FnMut(ChannelId, Message)>,
    ) {
        // V1 servers send no join_ref, but phx_close/phx_error carry ref == join_ref.
        let join_ref = match (&msg.join_ref, lifecycle) {
            (Some(j), _) => Some(j),
            (None, true) => msg.ref_.as_ref(),
            (None, false) => None,
        };
        let current = self.topics.route(&self.channels, msg.topic.as_bytes());
        let target = match current {
            Some(id) => {
                let matches = match (join_ref, self.channels.get(id)) {
                    (Some(j), Some(ch)) => ch.is_current(j),
                    _ => true,
                };
                matches.then_some(id)
            }
            None => None,
        };
        let Some(id) = target else {
            // Maybe the close of a channel that is leaving.
            if let Some(j) = join_ref
                && let Some(&leaving) = self.leaving.iter().find(|&&l| {
                    self.channels
                        .get(l)
                        .is_some_and(|c| c.topic == msg.topic && c.is_current(j))
                })
            {
                if lifecycle {
                    self.finish_leave(leaving, msg.event == PHX_CLOSE);
                } else {
                    // A message of the channel being left: no longer delivered, still counted.
                    self.report_stale(leaving, msg.event);
                }
                return;
            }
            match current {
                Some(channel) => self.report_stale(channel, msg.event),
                None => {
                    self.stats.unknown_topics += 1;
                    self.events
                        .push_back(Event::Unexpected(Unexpected::UnknownTopic {
                            topic: msg.topic,
                            event: msg.event,
                        }));
                }
            }
            return;
        };
        let Some(state) = self.channels.get(id).map(|c| c.state) else {
            return;
        };
        if msg.event == PHX_CLOSE {
            self.end_channel(id, PushFailure::ChannelClosed);
            self.events.push_back(Event::ChannelClosed {
                channel: id,
                reason: ChannelClosed::Server,
            });
        } else if msg.event == PHX_ERROR {
            if matches!(state, ChannelState::Joined | ChannelState::Joining) {
                self.channel_errored(id, ChannelError::Server(msg.payload));
            } else {
                // Already errored (or leaving): nothing more to break, but it is reported.
                self.report_stale(id, msg.event);
            }
        } else if state == ChannelState::Joined {
            // A presence event, in practice: `take_frame` delivers the channel's other
            // messages before they get here.
            if !self.feed_presence(id, &msg) {
                self.deliver_message(id, msg, deliver);
            }
        } else {
            self.stats.not_joined += 1;
            self.events
                .push_back(Event::Unexpected(Unexpected::NotJoined {
                    channel: id,
                    event: msg.event,
                }));
        }
    }

    /// Counts and reports a message the channel no longer acts on.
    fn report_stale(&mut self, channel: ChannelId, event: ByteStr) {
        self.stats.stale += 1;
        self.events
            .push_back(Event::Unexpected(Unexpected::Stale { channel, event }));
    }

    /// Feeds a presence message to the channel's view; whether it was one.
    fn feed_presence(&mut self, id: ChannelId, msg: &Message) -> bool {
        let Some(ch) = self.channels.get_mut(id) else {
            return false;
        };
        let Some(presence) = ch.presence.as_mut().filter(|p| p.handles(&msg.event)) else {
            return false;
        };
        // Only for presence events: every other message skips this allocation.
        let join_ref = ch.join_ref.map(|r| r.to_string());
        if let Err(error) = presence.handle(&msg.event, &msg.payload, join_ref.as_deref()) {
            self.stats.invalid_presence += 1;
            self.events
                .push_back(Event::Unexpected(Unexpected::Presence {
                    channel: id,
                    error,
                }));
        }
        while let Some(change) = presence.poll_change() {
            self.events.push_back(Event::Presence {
                channel: id,
                change,
            });
        }
        true
    }

    /// A joined (or joining) channel broke while the socket stays open.
    fn channel_errored(&mut self, id: ChannelId, reason: ChannelError) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if let Some(r) = ch.abandon_join() {
            self.pending.remove(&r);
        }
        ch.state = ChannelState::Errored;
        let ever_joined = ch.ever_joined;
        if ever_joined {
            let t = ch.take_join_timer();
            self.timers.cancel(t);
        }
        let in_flight = ch.take_in_flight();
        for r in in_flight {
            self.fail_push(id, r, PushFailure::ChannelErrored);
        }
        let retry_at = self.schedule_rejoin(id);
        self.events.push_back(Event::ChannelErrored {
            channel: id,
            reason,
            retry_at,
        });
    }

    fn finish_leave(&mut self, id: ChannelId, confirmed: bool) {
        if let Some(r) = self.channels.get(id).and_then(|c| c.leave_ref())
            && let Some(p) = self.pending.remove(&r)
        {
            self.timers.cancel(p.timer);
        }
        self.end_channel(id, PushFailure::ChannelClosed);
        self.events.push_back(Event::Left {
            channel: id,
            confirmed,
        });
    }

    /// Removes a channel: fails its buffered and in-flight pushes with `failure`, cancels its
    /// timers and forgets its refs. The caller emits the channel's final event.
    fn end_channel(&mut self, id: ChannelId, failure: PushFailure) {
        let Some(mut ch) = self.channels.remove(id) else {
            return;
        };
        self.topics.remove(ch.topic.as_bytes(), id);
        self.leaving.retain(|&l| l != id);
        self.timers.cancel(ch.take_join_timer());
        self.timers.cancel(ch.take_rejoin_timer());
        for r in ch.join_push().into_iter().chain(ch.leave_ref()) {
            if let Some(p) = self.pending.remove(&r) {
                self.timers.cancel(p.timer);
            }
        }
        let mut refs = ch.take_in_flight();
        let buffer = ch.take_buffer();
        self.buffered -= buffer.len();
        refs.extend(buffer.into_iter().map(|b| b.ref_));
        refs.sort_unstable();
        for r in refs {
            self.fail_push(id, r, failure.clone());
        }
    }

    /// Ends a user push with `PushFailed`. The caller has already taken it out of the
    /// channel's buffer or in-flight set.
    fn fail_push(&mut self, channel: ChannelId, r: u64, reason: PushFailure) {
        if let Some(p) = self.pending.remove(&r) {
            self.timers.cancel(p.timer);
            self.pending_user -= 1;
            self.events.push_back(Event::PushFailed {
                channel,
                push_ref: PushRef(r),
                reason,
            });
        }
    }

    /// The transport is gone (closed, failed, timed out, or declared dead).
    fn transport_lost(&mut self, reason: DisconnectReason, reconnect: bool) {
        let was_open = matches!(self.phase, Phase::Open(_));
        if self
            .opened_at
            .take()
            .is_some_and(|at| self.now.saturating_duration_since(at) >= STABLE)
        {
            self.retries = 0;
        }
        self.stop_socket_timers();
        if !was_open {
            self.failures = self.failures.saturating_add(1);
        }
        let give_up = !was_open
            && self
                .config
                .max_reconnect_attempts
                .is_some_and(|max| self.failures >= max);
        if reconnect && !give_up {
            let delay = self.config.reconnect.delay(self.retries, &mut self.rng);
            self.retries = self.retries.saturating_add(1);
            self.phase = Phase::Waiting;
            self.reconnect_timer = self.arm(delay, TimerKey::Reconnect);
            self.events.push_back(Event::Disconnected {
                reason,
                reconnect_at: self.reconnect_timer.map(TimerHandle::at),
                reconnect_delay: Some(delay),
            });
        } else {
            self.phase = Phase::Disconnected;
            self.events.push_back(Event::Disconnected {
                reason,
                reconnect_at: None,
                reconnect_delay: None,
            });
            if give_up {
                self.events.push_back(Event::ReconnectGaveUp {
                    attempts: self.failures,
                });
            }
        }
        if was_open {
            for id in self.channels.ids_in_order() {
                self.channel_lost_transport(id);
            }
            // Join cancellations belong to the dead connection.
            let stale: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| p.kind == PendingKind::CancelJoin)
                .map(|(&r, _)| r)
                .collect();
            for r in stale {
                if let Some(p) = self.pending.remove(&r) {
                    self.timers.cancel(p.timer);
                }
            }
        }
        if give_up {
            // Nothing will send the buffered pushes: end them now.
            for id in self.channels.ids_in_order() {
                let Some(ch) = self.channels.get_mut(id) else {
                    continue;
                };
                let buffered = ch.take_buffer();
                for b in buffered {
                    self.buffered -= 1;
                    self.fail_push(id, b.ref_, PushFailure::Disconnected);
                }
            }
        }
    }

    fn channel_lost_transport(&mut self, id: ChannelId) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        let state = ch.state;
        if state == ChannelState::Leaving {
            // The server forgets the channel with the connection: the leave is done.
            self.finish_leave(id, false);
            return;
        }
        // A join in flight is reset, as phoenix.js resets its join push on an error while
        // joining: the channel has no join ref until the next join is sent.
        if let Some(r) = ch.abandon_join() {
            self.pending.remove(&r);
        }
        let in_flight = ch.take_in_flight();
        let ever_joined = ch.ever_joined;
        match state {
            ChannelState::Joined => ch.state = ChannelState::Errored,
            ChannelState::Joining if ever_joined => {
                ch.state = ChannelState::Errored;
                let t = ch.take_join_timer();
                self.timers.cancel(t);
            }
            // A first join keeps its deadline and is sent again on the next connection.
            ChannelState::Joining => {}
            ChannelState::Errored => {
                let t = ch.take_rejoin_timer();
                self.timers.cancel(t);
            }
            ChannelState::Leaving => {}
        }
        for r in in_flight {
            self.fail_push(id, r, PushFailure::ConnectionLost);
        }
        if state == ChannelState::Joined || (state == ChannelState::Joining && ever_joined) {
            self.events.push_back(Event::ChannelErrored {
                channel: id,
                reason: ChannelError::ConnectionLost,
                retry_at: None,
            });
        }
    }
}

/// `payload`, checked if its check was deferred: the encoders copy a JSON payload's bytes as
/// they are, so a malformed one passed on from a received message must be refused here.
fn checked(mut payload: Payload) -> Result<Payload, EncodeError> {
    payload.check().map_err(EncodeError::InvalidJson)?;
    Ok(payload)
}

#[cfg(test)]
mod tests;
