//! What each client is allowed to do, checked against what it does: the invariants.
//!
//! A [`Model`] shadows one client. The harness feeds it every frame the client writes, every
//! event it reports (with the input that caused it) and the state it exposes after each step,
//! and the model says what is wrong, if anything:
//!
//! - every push ends exactly once (`Replied`, `PushTimedOut` or `PushFailed`), never after its
//!   deadline, and a reply is the server's answer to that push (status and body as the channel
//!   defines them);
//! - nothing is delivered on a channel before the reply to its current join, nor with a stale
//!   `join_ref`, and a forged frame never changes anything a user can see;
//! - frames go out only on an open connection; refs are never reused; pushes carry the join_ref
//!   of the join the server answered on this connection, go out in issue order, at most once,
//!   and every buffered push goes out as soon as its channel joins; at most one join per
//!   channel and one heartbeat per connection are in flight;
//! - reconnect and rejoin delays follow the configured schedules, and happen when announced;
//! - a connection with no heartbeat reply for two intervals is closed, a dial that takes longer
//!   than the connect timeout is abandoned;
//! - the send buffer, the pending pushes and the presence diffs held stay within their limits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use phx_proto::presence::MAX_PENDING_DIFFS;
use phx_proto::{
    Backoff, ChannelClosed, ChannelError, ChannelId, ChannelState, ConnectionId, DisconnectReason,
    Event, Frame, Message, Payload, PushFailure, ServerSerializer, Socket, SocketState, V1Json,
    V2Json,
};
use serde_json::Value;

use super::ClientParams;
use crate::server::ConnId;

/// How the server answers a push, by event (see the server model's table).
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// A reply with this status whose response is the push's payload.
    Echo(&'static str, Payload),
    /// A reply with this status and exactly this JSON response.
    Exact(&'static str, Value),
    /// A reply `ok` carrying the payload's bytes as a binary response.
    Bytes(Payload),
    /// No reply, ever (no reply by design, or the channel stops or crashes).
    Never,
}

impl Expect {
    fn check(&self, status: &str, response: &Payload) -> Result<(), String> {
        let json = |p: &Payload| p.decode::<Value>().ok();
        let ok = match self {
            Self::Never => false,
            Self::Echo(s, sent) => {
                *s == status
                    && if sent.is_binary() {
                        response.is_binary() && response.as_bytes() == sent.as_bytes()
                    } else {
                        json(response).is_some() && json(response) == json(sent)
                    }
            }
            Self::Exact(s, v) => *s == status && json(response).as_ref() == Some(v),
            Self::Bytes(sent) => {
                status == "ok"
                    && response.is_binary()
                    && if sent.is_binary() {
                        response.as_bytes() == sent.as_bytes()
                    } else {
                        serde_json::from_slice::<Value>(response.as_bytes()).ok() == json(sent)
                    }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {self:?}, got status {status:?} and {}",
                super::transcript::payload(response)
            ))
        }
    }
}

/// What caused the events of a step.
#[derive(Debug, Clone)]
pub(crate) enum Cause {
    /// A user or application command.
    Command(&'static str),
    /// `handle_connected` for this connection.
    Opened(ConnectionId),
    /// `handle_closed` for this connection.
    Closed(ConnectionId),
    /// A frame on this connection (decoded by the harness), forged or not.
    Frame {
        conn: ConnectionId,
        msg: Option<Box<Message>>,
        hostile: bool,
    },
    /// `handle_timeout`.
    Timeout,
}

/// The effect a genuine frame must have, worked out before the client gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The reply to a push in flight on this connection resolves it.
    Replied(u64),
    /// The reply to a channel's current join joins it, or fails the join.
    JoinOutcome(ChannelId),
    /// A message for a joined channel, with its join_ref or none, is delivered.
    Delivered(ChannelId),
    /// A `phx_close` for a channel's current join closes it.
    Closed(ChannelId),
    /// A `phx_error` for a channel's current join errors it.
    Errored(ChannelId),
}

#[derive(Debug)]
pub(crate) struct Chan {
    pub(crate) topic: String,
    pub(crate) presence: bool,
    /// Default timeout of the channel's pushes.
    pub(crate) timeout: Duration,
    /// The ref of the last join the client wrote.
    pub(crate) join_ref: Option<u64>,
    /// The join whose `ok` reply the client reported as `Joined` (and has not lost since).
    joined: Option<u64>,
    ever_joined: bool,
    join_in_flight: bool,
    rejoin_tries: u32,
    rejoin_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct PushRec {
    channel: ChannelId,
    topic: String,
    event: String,
    expect: Expect,
    /// Its timeout, which starts again when it leaves the send buffer.
    timeout: Duration,
    deadline: Instant,
    sent: Option<ConnectionId>,
}

/// The current connection, as the client's frames and events show it.
#[derive(Debug)]
pub(crate) struct ConnModel {
    pub(crate) id: ConnectionId,
    pub(crate) link: ConnId,
    dialed_at: Instant,
    pub(crate) open: bool,
    /// Last proof of life: the open, then each heartbeat reply.
    proof: Instant,
    /// Last join written per topic on this connection.
    joins: BTreeMap<String, u64>,
    /// Join per topic that the client reported as joined on this connection.
    joined_ok: BTreeMap<String, u64>,
    /// Last user push written per topic on this connection.
    last_push: BTreeMap<String, u64>,
    heartbeat: Option<u64>,
}

/// The shadow of one client; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Model {
    params: ClientParams,
    pub(crate) chans: BTreeMap<ChannelId, Chan>,
    pushes: BTreeMap<u64, PushRec>,
    deadlines: BTreeSet<(Instant, u64)>,
    ended_pushes: BTreeSet<u64>,
    sent_refs: BTreeSet<u64>,
    pub(crate) conn: Option<ConnModel>,
    /// Whether the socket is connected, as its events tell (a step can change it midway).
    connected: bool,
    retries: u32,
    /// When the open connection opened: one that stays open 5 s starts the backoff over.
    open_since: Option<Instant>,
    reconnect_at: Option<Instant>,
    /// Every join ref written, per topic (to forge stale frames).
    pub(crate) join_history: BTreeMap<String, Vec<u64>>,
    /// Counters for the run summary.
    pub(crate) pushes_issued: u64,
    /// What the frame being handled must do.
    want: Option<Want>,
}

fn parse_ref(s: &str) -> Option<u64> {
    if s.starts_with('0') || s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The range a backoff delay must fall in for retry `n`: the schedule's entry give or take its
/// jitter, or `0..=ceiling` for full-jitter exponential backoff.
pub(crate) fn delay_bounds(b: &Backoff, n: u32) -> (Duration, Duration) {
    const SLACK: Duration = Duration::from_micros(2);
    let (lo, hi) = match b {
        Backoff::Schedule { delays, jitter } => {
            let i = usize::try_from(n).unwrap_or(usize::MAX);
            let base = delays.get(i).or(delays.last()).copied().unwrap_or_default();
            (
                base.mul_f64((1.0 - jitter).max(0.0)),
                base.mul_f64(1.0 + jitter),
            )
        }
        Backoff::Exponential { base, cap } => {
            let ceiling = base
                .checked_mul(2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX))
                .map_or(*cap, |d| d.min(*cap));
            (Duration::ZERO, ceiling)
        }
    };
    (lo.saturating_sub(SLACK), hi + SLACK)
}

fn check_delay(what: &str, b: &Backoff, n: u32, delay: Duration) -> Result<(), String> {
    let (lo, hi) = delay_bounds(b, n);
    if delay < lo || delay > hi {
        return Err(format!(
            "{what} delay {delay:?} for retry {n} is outside the schedule ({lo:?}..={hi:?})"
        ));
    }
    Ok(())
}

impl Model {
    pub(crate) fn new(params: ClientParams) -> Self {
        Self {
            params,
            chans: BTreeMap::new(),
            pushes: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            ended_pushes: BTreeSet::new(),
            sent_refs: BTreeSet::new(),
            conn: None,
            connected: false,
            retries: 0,
            open_since: None,
            reconnect_at: None,
            join_history: BTreeMap::new(),
            pushes_issued: 0,
            want: None,
        }
    }

    // ----- commands -----

    pub(crate) fn on_join(
        &mut self,
        id: ChannelId,
        topic: &str,
        presence: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let chan = Chan {
            topic: topic.to_owned(),
            presence,
            timeout,
            join_ref: None,
            joined: None,
            ever_joined: false,
            join_in_flight: false,
            rejoin_tries: 0,
            rejoin_at: None,
        };
        if self.chans.insert(id, chan).is_some() {
            return Err(format!("join returned {id}, which is still live"));
        }
        Ok(())
    }

    pub(crate) fn on_push(
        &mut self,
        r: u64,
        channel: ChannelId,
        event: &str,
        expect: Expect,
        now: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = now + timeout;
        let topic = self
            .chans
            .get(&channel)
            .map(|c| c.topic.clone())
            .ok_or_else(|| format!("push {r} on {channel}, which the model does not know"))?;
        if self.ended_pushes.contains(&r)
            || self.pushes.contains_key(&r)
            || self.sent_refs.contains(&r)
        {
            return Err(format!("push ref {r} was already used"));
        }
        self.pushes_issued += 1;
        self.deadlines.insert((deadline, r));
        self.pushes.insert(
            r,
            PushRec {
                channel,
                topic,
                event: event.to_owned(),
                expect,
                timeout,
                deadline,
                sent: None,
            },
        );
        Ok(())
    }

    /// `connect()` was called while the socket was in `before`.
    pub(crate) fn on_connect_command(&mut self, before: SocketState) {
        if before == SocketState::Disconnected {
            self.retries = 0;
        }
        if before == SocketState::Reconnecting {
            self.reconnect_at = None;
        }
    }

    pub(crate) fn on_disconnect_command(&mut self) {
        self.retries = 0;
        self.open_since = None;
        self.reconnect_at = None;
    }

    // ----- transport -----

    pub(crate) fn on_dial(&mut self, id: ConnectionId, link: ConnId, now: Instant) {
        self.conn = Some(ConnModel {
            id,
            link,
            dialed_at: now,
            open: false,
            proof: now,
            joins: BTreeMap::new(),
            joined_ok: BTreeMap::new(),
            last_push: BTreeMap::new(),
            heartbeat: None,
        });
    }

    pub(crate) fn on_opened(&mut self, id: ConnectionId, now: Instant) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.id == id) {
            c.open = true;
            c.proof = now;
        }
    }

    /// The connection ended, or the client dropped it.
    pub(crate) fn on_conn_end(&mut self, id: ConnectionId) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.id == id) {
            c.open = false;
        }
    }

    /// A genuine server frame is about to be handed to the client.
    pub(crate) fn on_server_frame(&mut self, id: ConnectionId, msg: &Message) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.id == id)
            && msg.topic == "phoenix"
            && msg.is_reply()
            && c.heartbeat.is_some()
            && msg.ref_.as_deref().and_then(parse_ref) == c.heartbeat
        {
            c.heartbeat = None;
        }
    }

    /// Works out what a genuine server frame on connection `id` must do, from the state before
    /// the client gets it: a frame that must not be lost sets the expectation that
    /// [`Model::check_effect`] verifies once the step is over.
    pub(crate) fn expect_effect(&mut self, id: ConnectionId, msg: &Message, socket: &Socket) {
        self.want = None;
        let current = self.conn.as_ref().is_some_and(|c| c.id == id && c.open)
            && socket.is_connected()
            && socket.connection() == Some(id);
        if !current || msg.topic == "phoenix" {
            return;
        }
        let r = msg.ref_.as_deref().and_then(parse_ref);
        let chan = socket
            .channel_by_topic(&msg.topic)
            .and_then(|ch| Some((ch, self.chans.get(&ch)?, socket.channel(ch)?.state())));
        if msg.is_reply() {
            if let Some(r) = r
                && self
                    .pushes
                    .get(&r)
                    .is_some_and(|p| p.sent == Some(id) && p.topic == msg.topic.as_str())
            {
                self.want = Some(Want::Replied(r));
            } else if let Some((ch, c, ChannelState::Joining)) = chan
                && c.join_in_flight
                && r.is_some()
                && r == c.join_ref
            {
                self.want = Some(Want::JoinOutcome(ch));
            }
            return;
        }
        let Some((ch, c, state)) = chan else { return };
        // Lifecycle events name their join in `ref` too, which is all V1 has.
        let lifecycle = msg.event == "phx_close" || msg.event == "phx_error";
        let jr = match (&msg.join_ref, lifecycle) {
            (Some(j), _) => Some(parse_ref(j)),
            (None, true) => msg.ref_.as_deref().map(parse_ref),
            (None, false) => None,
        };
        if jr.is_some() && jr != Some(c.join_ref) {
            return;
        }
        self.want = match (msg.event.as_str(), state) {
            ("phx_close", _) => Some(Want::Closed(ch)),
            ("phx_error", ChannelState::Joined | ChannelState::Joining) => Some(Want::Errored(ch)),
            ("phx_error", _) => None,
            // Presence events may only be held until the state: no visible effect is due.
            (e, _) if c.presence && (e == "presence_state" || e == "presence_diff") => None,
            (_, ChannelState::Joined) if c.joined.is_some() && c.joined == c.join_ref => {
                Some(Want::Delivered(ch))
            }
            _ => None,
        };
    }

    /// Verifies the expectation of [`Model::expect_effect`] against the step's events.
    pub(crate) fn check_effect(&mut self, events: &[Event]) -> Result<(), String> {
        let Some(want) = self.want.take() else {
            return Ok(());
        };
        let met = events.iter().any(|e| match (want, e) {
            (Want::Replied(r), Event::Replied { push_ref, .. }) => push_ref.get() == r,
            (
                Want::JoinOutcome(ch),
                Event::Joined { channel, .. } | Event::JoinFailed { channel, .. },
            ) => *channel == ch,
            (Want::Delivered(ch), Event::Message { channel, .. }) => *channel == ch,
            (Want::Closed(ch), Event::ChannelClosed { channel, .. }) => *channel == ch,
            (Want::Errored(ch), Event::ChannelErrored { channel, .. }) => *channel == ch,
            _ => false,
        });
        if met {
            Ok(())
        } else {
            Err(format!(
                "a server frame was lost: expected {want:?}, got {events:?}"
            ))
        }
    }

    /// A frame the client wrote.
    pub(crate) fn on_frame_out(
        &mut self,
        frame: &Frame,
        socket: &Socket,
        now: Instant,
    ) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut().filter(|c| c.open) else {
            return Err("frame written while no connection is open".into());
        };
        let server_side: &dyn ServerSerializer = if self.params.v1 { &V1Json } else { &V2Json };
        let msg = server_side
            .decode_from_client(frame)
            .map_err(|e| format!("the client wrote a frame the server cannot decode: {e}"))?;
        let r = match msg.ref_.as_deref() {
            Some(s) => {
                Some(parse_ref(s).ok_or_else(|| format!("ref {s:?} is not one the client mints"))?)
            }
            None => None,
        };
        if let Some(r) = r
            && !self.sent_refs.insert(r)
        {
            return Err(format!("ref {r} written twice"));
        }
        let join_ref = match msg.join_ref.as_deref() {
            Some(s) => Some(
                parse_ref(s)
                    .ok_or_else(|| format!("join_ref {s:?} is not one the client mints"))?,
            ),
            None => None,
        };
        let topic = msg.topic.as_str();
        match msg.event.as_str() {
            "heartbeat" if topic == "phoenix" => {
                if let Some(h) = conn.heartbeat {
                    return Err(format!(
                        "heartbeat {r:?} written while heartbeat {h} is unanswered"
                    ));
                }
                if join_ref.is_some() {
                    return Err("heartbeat with a join_ref".into());
                }
                conn.heartbeat = r;
            }
            "phx_join" => {
                if join_ref.is_none() || join_ref != r {
                    return Err(format!("phx_join with join_ref {join_ref:?} and ref {r:?}"));
                }
                let id = socket
                    .channel_by_topic(topic)
                    .ok_or_else(|| format!("phx_join for {topic}, which has no live channel"))?;
                let chan = self
                    .chans
                    .get_mut(&id)
                    .ok_or_else(|| format!("phx_join for unknown {id}"))?;
                if chan.join_in_flight {
                    return Err(format!(
                        "second phx_join for {topic} while one is in flight"
                    ));
                }
                chan.join_in_flight = true;
                chan.join_ref = r;
                chan.joined = None;
                chan.rejoin_at = None;
                if let Some(r) = r {
                    conn.joins.insert(topic.to_owned(), r);
                    self.join_history
                        .entry(topic.to_owned())
                        .or_default()
                        .push(r);
                }
            }
            "phx_leave" => {
                let on_conn = conn.joins.get(topic).copied();
                if join_ref.is_none() || join_ref != on_conn {
                    return Err(format!(
                        "phx_leave for {topic} with join_ref {join_ref:?}, but the last join on this connection is {on_conn:?}"
                    ));
                }
            }
            event => {
                let r = r.ok_or_else(|| format!("push {event} on {topic} without a ref"))?;
                let push = self.pushes.get_mut(&r).ok_or_else(|| {
                    format!(
                        "frame with ref {r} is not a live push: {}",
                        super::transcript::frame(frame)
                    )
                })?;
                if push.topic != topic || push.event != event {
                    return Err(format!(
                        "push {r} was {} on {}, written as {event} on {topic}",
                        push.event, push.topic
                    ));
                }
                if let Some(c) = push.sent {
                    return Err(format!("push {r} written a second time (first on {c})"));
                }
                let joined = conn.joined_ok.get(topic).copied();
                let last_join = conn.joins.get(topic).copied();
                if join_ref.is_none() || join_ref != last_join || joined != last_join {
                    return Err(format!(
                        "push {r} on {topic} with stale join_ref {join_ref:?} (last join on this connection {last_join:?}, joined {joined:?})"
                    ));
                }
                if let Some(&prev) = conn.last_push.get(topic)
                    && prev >= r
                {
                    return Err(format!(
                        "push {r} on {topic} written after push {prev}: out of order"
                    ));
                }
                conn.last_push.insert(topic.to_owned(), r);
                push.sent = Some(conn.id);
                // Sent at once or from the buffer: the server has the whole timeout from now.
                self.deadlines.remove(&(push.deadline, r));
                push.deadline = now + push.timeout;
                self.deadlines.insert((push.deadline, r));
            }
        }
        Ok(())
    }

    // ----- events -----

    /// Records the joins reported in this step before the frames of the step are checked (the
    /// pushes a join flushes are written after its `Joined` is queued).
    pub(crate) fn prescan(&mut self, events: &[Event]) {
        for e in events {
            if let Event::Joined { channel, .. } = e
                && let Some(chan) = self.chans.get(channel)
                && let (Some(conn), Some(r)) = (self.conn.as_mut(), chan.join_ref)
            {
                conn.joined_ok.insert(chan.topic.clone(), r);
            }
        }
    }

    fn end_push(&mut self, r: u64, channel: ChannelId) -> Result<PushRec, String> {
        let Some(p) = self.pushes.remove(&r) else {
            return Err(if self.ended_pushes.contains(&r) {
                format!("push {r} ended a second time")
            } else {
                format!("push {r} ended but was never issued")
            });
        };
        self.deadlines.remove(&(p.deadline, r));
        self.ended_pushes.insert(r);
        if p.channel != channel {
            return Err(format!("push {r} of {} ended on {channel}", p.channel));
        }
        Ok(p)
    }

    fn end_channel(&mut self, id: ChannelId, socket: &Socket) -> Result<Chan, String> {
        let chan = self
            .chans
            .remove(&id)
            .ok_or_else(|| format!("{id} ended but is not live"))?;
        if let Some(c) = self.conn.as_mut()
            && c.joined_ok.get(&chan.topic) == chan.join_ref.as_ref()
        {
            c.joined_ok.remove(&chan.topic);
        }
        if socket.channel(id).is_some() {
            return Err(format!("{id} ended but the socket still has it"));
        }
        if let Some((r, _)) = self.pushes.iter().find(|(_, p)| p.channel == id) {
            return Err(format!("{id} ended with push {r} unresolved"));
        }
        Ok(chan)
    }

    fn chan(&self, id: ChannelId) -> Result<&Chan, String> {
        self.chans
            .get(&id)
            .ok_or_else(|| format!("event for {id}, which is not live"))
    }

    fn lost_connection(&mut self) {
        for chan in self.chans.values_mut() {
            chan.joined = None;
            chan.join_in_flight = false;
            chan.rejoin_at = None;
        }
    }

    /// A join in flight is abandoned (timed out, or the channel broke): its ref is no longer
    /// the channel's, so nothing the server still sends under it may reach the channel.
    fn abandon_join(&mut self, id: ChannelId) {
        if let Some(chan) = self.chans.get_mut(&id)
            && chan.join_in_flight
        {
            chan.join_ref = None;
        }
    }

    /// Checks that `what` (an event about `channel`) was caused by the server's `event` frame
    /// for the channel's current join (a frame without a join ref counts as current).
    fn server_frame(
        &self,
        cause: &Cause,
        channel: ChannelId,
        event: &str,
        what: &str,
    ) -> Result<(), String> {
        let m = Self::frame(cause, what)?;
        let chan = self.chan(channel)?;
        let jr = m
            .join_ref
            .as_ref()
            .or(m.ref_.as_ref())
            .and_then(|s| parse_ref(s));
        if m.event != event
            || m.topic != chan.topic.as_str()
            || (jr.is_some() && jr != chan.join_ref)
        {
            return Err(format!(
                "{what} for {channel} caused by {}",
                super::transcript::message(m)
            ));
        }
        Ok(())
    }

    /// The frame that caused this step, if it is a genuine one on the current connection.
    fn frame<'a>(cause: &'a Cause, what: &str) -> Result<&'a Message, String> {
        match cause {
            Cause::Frame {
                msg: Some(m),
                hostile: false,
                ..
            } => Ok(m),
            other => Err(format!("{what} caused by {other:?}, not by a server frame")),
        }
    }

    fn schedule_rejoin(
        &mut self,
        id: ChannelId,
        retry_at: Option<Instant>,
        now: Instant,
        connected: bool,
    ) -> Result<(), String> {
        let rejoin = self.params.rejoin.clone();
        let chan = self
            .chans
            .get_mut(&id)
            .ok_or_else(|| format!("{id} is not live"))?;
        if let Some(c) = self.conn.as_mut() {
            c.joined_ok.remove(&chan.topic);
        }
        chan.joined = None;
        chan.join_in_flight = false;
        match retry_at {
            Some(at) => {
                if !connected {
                    return Err(format!("{id}: rejoin scheduled while disconnected"));
                }
                check_delay(
                    "rejoin",
                    &rejoin,
                    chan.rejoin_tries,
                    at.saturating_duration_since(now),
                )?;
                chan.rejoin_tries += 1;
                chan.rejoin_at = Some(at);
            }
            None if connected => return Err(format!("{id}: no rejoin scheduled while connected")),
            None => chan.rejoin_at = None,
        }
        Ok(())
    }

    /// Checks one event of a step caused by `cause`.
    pub(crate) fn on_event(
        &mut self,
        e: &Event,
        cause: &Cause,
        socket: &Socket,
        now: Instant,
    ) -> Result<(), String> {
        if matches!(cause, Cause::Frame { hostile: true, .. }) && !matches!(e, Event::Unexpected(_))
        {
            return Err("a forged frame changed what the user sees".into());
        }
        match e {
            Event::Connecting { .. } => self.reconnect_at = None,
            Event::Connected { conn } => {
                if !matches!(cause, Cause::Opened(c) if c == conn) {
                    return Err(format!("Connected {conn} caused by {cause:?}"));
                }
                self.open_since = Some(now);
                self.connected = true;
                for chan in self.chans.values_mut() {
                    chan.rejoin_tries = 0;
                    chan.rejoin_at = None;
                }
            }
            Event::Disconnected {
                reason,
                reconnect_at,
                reconnect_delay,
            } => {
                let current = self.conn.as_ref().map(|c| c.id);
                match (reason, cause) {
                    (DisconnectReason::Client, Cause::Command("disconnect"))
                    | (
                        DisconnectReason::HeartbeatTimeout | DisconnectReason::ConnectTimeout,
                        Cause::Timeout,
                    ) => {}
                    (DisconnectReason::Transport(_), Cause::Closed(c)) if Some(*c) == current => {}
                    _ => return Err(format!("Disconnected ({reason}) caused by {cause:?}")),
                }
                if self
                    .open_since
                    .take()
                    .is_some_and(|t| now.saturating_duration_since(t) >= Duration::from_secs(5))
                {
                    self.retries = 0;
                }
                match (reconnect_at, reconnect_delay) {
                    (Some(at), Some(d)) => {
                        check_delay("reconnect", &self.params.reconnect, self.retries, *d)?;
                        if *at != now + *d {
                            return Err("reconnect_at is not now + reconnect_delay".into());
                        }
                        self.retries += 1;
                        self.reconnect_at = Some(*at);
                    }
                    (None, None) => self.reconnect_at = None,
                    _ => return Err("reconnect_at and reconnect_delay disagree".into()),
                }
                self.connected = false;
                self.lost_connection();
            }
            Event::ReconnectGaveUp { attempts } => {
                let max = self.params.max_reconnect_attempts;
                if max != Some(*attempts) {
                    return Err(format!(
                        "gave up after {attempts} attempts, configured {max:?}"
                    ));
                }
            }
            Event::Heartbeat { .. } => {
                if let Some(c) = self.conn.as_mut() {
                    c.proof = now;
                }
            }
            Event::Joined {
                channel, rejoin, ..
            } => {
                let m = Self::frame(cause, "Joined")?;
                let chan = self.chan(*channel)?;
                let expected = chan.join_ref.map(|r| r.to_string());
                if !m.is_reply()
                    || m.status.as_deref() != Some("ok")
                    || m.topic != chan.topic.as_str()
                    || m.ref_.as_deref() != expected.as_deref()
                {
                    return Err(format!(
                        "{channel} Joined by {} (current join {expected:?})",
                        super::transcript::message(m)
                    ));
                }
                if *rejoin != chan.ever_joined {
                    return Err(format!(
                        "{channel} Joined with rejoin={rejoin}, but ever joined={}",
                        chan.ever_joined
                    ));
                }
                let chan = self.chans.get_mut(channel).ok_or("gone")?;
                chan.joined = chan.join_ref;
                chan.ever_joined = true;
                chan.join_in_flight = false;
                chan.rejoin_tries = 0;
                chan.rejoin_at = None;
                let conn = self.conn.as_ref().map(|c| c.id);
                if let Some((r, p)) = self
                    .pushes
                    .iter()
                    .find(|(_, p)| p.channel == *channel && p.sent != conn)
                {
                    return Err(format!(
                        "{channel} joined but push {r} ({}) was not written on this connection",
                        p.event
                    ));
                }
            }
            Event::JoinFailed {
                channel, retry_at, ..
            } => {
                let m = Self::frame(cause, "JoinFailed")?;
                let chan = self.chan(*channel)?;
                let expected = chan.join_ref.map(|r| r.to_string());
                if m.status.as_deref() == Some("ok") || m.ref_.as_deref() != expected.as_deref() {
                    return Err(format!(
                        "{channel} JoinFailed by {}",
                        super::transcript::message(m)
                    ));
                }
                self.join_ended(*channel, *retry_at, now, self.connected, socket)?;
            }
            Event::JoinTimedOut { channel, retry_at } => {
                if !matches!(cause, Cause::Timeout) {
                    return Err(format!("JoinTimedOut caused by {cause:?}"));
                }
                self.abandon_join(*channel);
                self.join_ended(*channel, *retry_at, now, self.connected, socket)?;
            }
            Event::ChannelErrored {
                channel,
                reason,
                retry_at,
            } => {
                match reason {
                    ChannelError::Server(_) => {
                        self.server_frame(cause, *channel, "phx_error", "ChannelErrored")?;
                        self.abandon_join(*channel);
                    }
                    ChannelError::ConnectionLost => {
                        if !matches!(cause, Cause::Closed(_) | Cause::Timeout) {
                            return Err(format!(
                                "{channel} lost its connection, caused by {cause:?}"
                            ));
                        }
                    }
                    other => return Err(format!("unknown channel error {other:?}")),
                }
                self.schedule_rejoin(*channel, *retry_at, now, self.connected)?;
            }
            Event::Left { channel, confirmed } => {
                if *confirmed {
                    Self::frame(cause, "a confirmed Left")?;
                }
                self.end_channel(*channel, socket)?;
            }
            Event::ChannelClosed { channel, reason } => {
                match reason {
                    ChannelClosed::Server => {
                        self.server_frame(cause, *channel, "phx_close", "ChannelClosed")?;
                    }
                    ChannelClosed::Disconnected => {
                        if !matches!(cause, Cause::Command("disconnect")) {
                            return Err(format!(
                                "{channel} closed for a disconnect caused by {cause:?}"
                            ));
                        }
                    }
                    other => return Err(format!("unknown close reason {other:?}")),
                }
                self.end_channel(*channel, socket)?;
            }
            Event::Message { channel, message } => {
                let m = Self::frame(cause, "Message")?;
                let chan = self.chan(*channel)?;
                self.check_delivery(*channel, chan, m, socket)?;
                if message.event != m.event
                    || message.topic != m.topic
                    || message.payload != m.payload
                {
                    return Err(format!(
                        "{channel} got {} from {}",
                        super::transcript::message(message),
                        super::transcript::message(m)
                    ));
                }
                if message.event.starts_with("hostile") {
                    return Err(format!("{channel} delivered a forged message"));
                }
            }
            Event::Presence { channel, .. } => {
                let m = Self::frame(cause, "Presence")?;
                let chan = self.chan(*channel)?;
                if !chan.presence {
                    return Err(format!(
                        "presence change on {channel}, joined without presence"
                    ));
                }
                self.check_delivery(*channel, chan, m, socket)?;
            }
            Event::Replied {
                channel,
                push_ref,
                status,
                response,
            } => {
                let r = push_ref.get();
                let m = Self::frame(cause, "Replied")?.clone();
                let p = self.end_push(r, *channel)?;
                let cause_conn = match cause {
                    Cause::Frame { conn, .. } => Some(*conn),
                    _ => None,
                };
                if p.sent.is_none() || p.sent != cause_conn {
                    return Err(format!(
                        "push {r} replied on {cause_conn:?} but written on {:?}",
                        p.sent
                    ));
                }
                if !m.is_reply()
                    || m.topic != p.topic.as_str()
                    || m.ref_.as_deref().and_then(parse_ref) != Some(r)
                    || m.status.as_deref() != Some(status.as_str())
                {
                    return Err(format!(
                        "push {r} resolved by {}",
                        super::transcript::message(&m)
                    ));
                }
                p.expect
                    .check(status, response)
                    .map_err(|e| format!("push {r} ({} on {}): {e}", p.event, p.topic))?;
            }
            Event::PushTimedOut { channel, push_ref } => {
                let r = push_ref.get();
                let p = self.end_push(r, *channel)?;
                if !matches!(cause, Cause::Timeout) || now < p.deadline {
                    return Err(format!("push {r} timed out at the wrong time ({cause:?})"));
                }
            }
            Event::PushFailed {
                channel,
                push_ref,
                reason,
            } => {
                let r = push_ref.get();
                let p = self.end_push(r, *channel)?;
                let ok = match reason {
                    PushFailure::ConnectionLost => {
                        p.sent.is_some() && matches!(cause, Cause::Closed(_) | Cause::Timeout)
                    }
                    PushFailure::ChannelErrored => {
                        p.sent.is_some()
                            && matches!(cause, Cause::Frame { msg: Some(m), hostile: false, .. } if m.event == "phx_error")
                    }
                    PushFailure::Disconnected => {
                        matches!(
                            cause,
                            Cause::Command("disconnect") | Cause::Closed(_) | Cause::Timeout
                        )
                    }
                    PushFailure::JoinFailed => p.sent.is_none(),
                    PushFailure::ChannelClosed => true,
                    PushFailure::Encode(_) => false,
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "push {r} failed with {reason:?}, caused by {cause:?} (written on {:?})",
                        p.sent
                    ));
                }
            }
            Event::Unexpected(_) => {}
            other => return Err(format!("unknown event {other:?}")),
        }
        Ok(())
    }

    fn join_ended(
        &mut self,
        id: ChannelId,
        retry_at: Option<Instant>,
        now: Instant,
        connected: bool,
        socket: &Socket,
    ) -> Result<(), String> {
        let ever = self.chan(id)?.ever_joined;
        match retry_at {
            None if !ever => {
                self.end_channel(id, socket)?;
                Ok(())
            }
            None if !connected => self.schedule_rejoin(id, None, now, connected),
            None => Err(format!("{id}: a rejoin failed and is not retried")),
            Some(_) if !ever => Err(format!("{id}: a first join is retried")),
            Some(at) => self.schedule_rejoin(id, Some(at), now, connected),
        }
    }

    /// Nothing reaches a channel before the reply to its current join, or for another join.
    fn check_delivery(
        &self,
        id: ChannelId,
        chan: &Chan,
        m: &Message,
        socket: &Socket,
    ) -> Result<(), String> {
        if chan.joined.is_none() || chan.joined != chan.join_ref {
            return Err(format!(
                "{id} delivered {} before the reply to its join {:?}",
                super::transcript::message(m),
                chan.join_ref
            ));
        }
        if let Some(jr) = m.join_ref.as_deref()
            && parse_ref(jr) != chan.join_ref
        {
            return Err(format!(
                "{id} delivered {} with a stale join_ref",
                super::transcript::message(m)
            ));
        }
        if socket.channel(id).map(|v| v.state()) != Some(ChannelState::Joined) {
            return Err(format!("{id} delivered a message while not joined"));
        }
        Ok(())
    }

    // ----- after each step -----

    /// The socket's own bookkeeping and the limits.
    pub(crate) fn after_step(&self, socket: &Socket) -> Result<(), String> {
        socket.check_invariants()?;
        let stats = socket.stats();
        if stats.pushes_buffered > self.params.send_buffer_capacity {
            return Err(format!(
                "send buffer holds {} pushes, capacity {}",
                stats.pushes_buffered, self.params.send_buffer_capacity
            ));
        }
        if stats.pushes_pending > self.params.max_pending_pushes {
            return Err(format!(
                "{} pushes pending, limit {}",
                stats.pushes_pending, self.params.max_pending_pushes
            ));
        }
        if stats.pushes_pending != self.pushes.len() {
            return Err(format!(
                "the socket counts {} pending pushes, {} are live",
                stats.pushes_pending,
                self.pushes.len()
            ));
        }
        let mut live = 0;
        for view in socket.channels() {
            live += 1;
            if !self.chans.contains_key(&view.id()) {
                return Err(format!(
                    "{} is live but was never joined or has ended",
                    view.id()
                ));
            }
            if let Some(p) = view.presence()
                && p.pending_diffs() > MAX_PENDING_DIFFS
            {
                return Err(format!(
                    "{} holds {} presence diffs",
                    view.id(),
                    p.pending_diffs()
                ));
            }
        }
        if live != self.chans.len() {
            return Err(format!(
                "{live} live channels, the model has {}",
                self.chans.len()
            ));
        }
        Ok(())
    }

    /// Deadlines the client must have met by `now`.
    pub(crate) fn liveness(&self, socket: &Socket, now: Instant) -> Result<(), String> {
        if let Some(&(deadline, r)) = self.deadlines.first()
            && deadline < now
        {
            return Err(format!("push {r} is still pending after its deadline"));
        }
        for (r, p) in &self.pushes {
            if let Some(c) = p.sent
                && !self
                    .conn
                    .as_ref()
                    .is_some_and(|cur| cur.id == c && cur.open)
            {
                return Err(format!(
                    "push {r} was written on {c}, which is gone, and is still pending"
                ));
            }
        }
        if let Some(c) = &self.conn
            && socket.connection() == Some(c.id)
        {
            let hb = self.params.heartbeat_interval;
            if socket.state() == SocketState::Connecting
                && c.dialed_at + self.params.connect_timeout < now
            {
                return Err(format!("{} still dialing after the connect timeout", c.id));
            }
            if c.open && socket.is_connected() && c.proof + 2 * hb < now {
                return Err(format!(
                    "{} still open {:?} after its last sign of life (heartbeat every {hb:?})",
                    c.id,
                    now - c.proof
                ));
            }
        }
        if let Some(at) = self.reconnect_at
            && at < now
            && socket.state() == SocketState::Reconnecting
        {
            return Err("the reconnect announced did not happen".into());
        }
        if socket.is_connected() {
            for (id, chan) in &self.chans {
                if let Some(at) = chan.rejoin_at
                    && at < now
                    && socket.channel(*id).map(|v| v.state()) == Some(ChannelState::Errored)
                {
                    return Err(format!(
                        "{id} ({}) did not rejoin at the announced time",
                        chan.topic
                    ));
                }
            }
        }
        Ok(())
    }

    /// After a final disconnect: nothing live, nothing armed.
    pub(crate) fn finished(&self, socket: &Socket) -> Result<(), String> {
        if let Some((r, p)) = self.pushes.iter().next() {
            return Err(format!("push {r} ({} on {}) never ended", p.event, p.topic));
        }
        if let Some((id, c)) = self.chans.iter().next() {
            return Err(format!("{id} ({}) never ended", c.topic));
        }
        if socket.channels().next().is_some() {
            return Err("channels left after disconnect".into());
        }
        if socket.poll_timeout().is_some() {
            return Err("timers armed after disconnect".into());
        }
        Ok(())
    }
}
