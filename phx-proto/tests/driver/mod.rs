//! Drives a `phx_proto::Socket` with a sequence of arbitrary operations (user commands, server
//! frames well-formed or not, opens, closes, time steps) and checks the user-visible guarantees
//! after every step. Shared by the proptest model test and the `socket_inputs` fuzz target.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phx_proto::{
    Backoff, ChannelId, ChannelState, CloseReason, Config, ConnectionId, Event, Frame, JoinOptions,
    Message, Payload, PushRef, ServerSerializer, Socket, Transmit, V2Json,
};

const TOPICS: [&str; 4] = ["room:0", "room:1", "room:2", "room:3"];
const BUFFER: usize = 8;

/// One step of a run.
#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    Connect,
    Disconnect,
    /// The current connection attempt succeeds.
    Opened,
    /// The current connection ends: 0 error, 1 close 1000, 2 close 1011, 3 HTTP 403.
    Closed(u8),
    /// Time passes (milliseconds, scaled by 16 when `long`).
    Advance {
        ms: u16,
        long: bool,
    },
    Join(u8),
    Push {
        slot: u8,
        binary: bool,
        timeout_ms: Option<u16>,
    },
    /// A cast (fire and forget) on the channel in a slot.
    Cast(u8),
    Leave(u8),
    /// The server answers the `idx`-th unanswered client request: 0 ok, 1 error, 2 custom status.
    Answer {
        idx: u16,
        how: u8,
    },
    /// The server sends `phx_error` for a channel (with its current join_ref, or a stale one).
    ServerError {
        slot: u8,
        stale: bool,
    },
    /// The server sends `phx_close` for a channel.
    ServerClose {
        slot: u8,
        stale: bool,
    },
    /// A broadcast or push to a topic: join_ref 0 null, 1 current, 2 stale.
    Broadcast {
        topic: u8,
        join_ref: u8,
    },
    /// A reply to a ref the client may or may not have used.
    StrayReply {
        topic: u8,
        r: u16,
    },
    /// Raw bytes from the server, as a text (or binary) frame.
    Garbage {
        bytes: Vec<u8>,
        binary: bool,
    },
    SetParam(u8),
    /// Presence on a topic (room:2 and room:3 track it): a full state (with the current join
    /// ref) or a diff (null join ref), over keys and metas picked by the bits.
    Presence {
        topic: u8,
        state: bool,
        joins: u8,
        leaves: u8,
    },
}

/// The run's state and the guarantees it checks.
pub struct Driver {
    socket: Socket,
    now: Instant,
    conn: Option<ConnectionId>,
    open: bool,
    /// Client requests on the current connection that the server has not answered.
    unanswered: Vec<Message>,
    /// Channel per topic slot, as created by the user.
    slots: [Option<ChannelId>; 4],
    /// Pushes that have been issued and have not ended.
    live_pushes: BTreeMap<PushRef, ChannelId>,
    ended_pushes: BTreeSet<PushRef>,
    joined: BTreeSet<ChannelId>,
    created: BTreeSet<ChannelId>,
    ended_channels: BTreeSet<ChannelId>,
    /// Join refs each topic has used, to forge stale frames.
    join_refs: BTreeMap<String, Vec<String>>,
    disconnected_by_user: bool,
    /// Feed frames through `handle_frame_with` (as phx-client does) rather than
    /// `handle_frame`, taking the messages it hands over into `handed`.
    hand_over: bool,
    handed: Vec<Event>,
    /// `Event::Message`s seen, handed over or polled.
    messages: u64,
}

impl Driver {
    pub fn new(seed: u64) -> Self {
        let now = Instant::now();
        let config = Config::builder("ws://sim.example/socket")
            .unwrap()
            .heartbeat_interval(Duration::from_secs(5))
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(3))
            .send_buffer_capacity(BUFFER)
            .max_pending_pushes(32)
            .reconnect(Backoff::phoenix_reconnect().with_jitter(0.3))
            .rejoin(Backoff::exponential(
                Duration::from_millis(50),
                Duration::from_secs(4),
            ))
            .rng_seed(seed)
            // Half the runs leave channel payloads unchecked, as phx-client does.
            .defer_payload_checks(seed % 2 == 1)
            .build()
            .unwrap();
        Self {
            socket: Socket::new(config, now),
            now,
            conn: None,
            open: false,
            unanswered: Vec::new(),
            slots: [None; 4],
            live_pushes: BTreeMap::new(),
            ended_pushes: BTreeSet::new(),
            joined: BTreeSet::new(),
            created: BTreeSet::new(),
            ended_channels: BTreeSet::new(),
            join_refs: BTreeMap::new(),
            disconnected_by_user: false,
            hand_over: (seed >> 1) % 2 == 1,
            handed: Vec::new(),
            messages: 0,
        }
    }

    /// Feeds a received frame, through `handle_frame_with` in half the runs.
    fn feed(&mut self, now: Instant, conn: ConnectionId, frame: Frame) {
        if self.hand_over {
            let handed = &mut self.handed;
            let _ = self
                .socket
                .handle_frame_with(now, conn, frame, |channel, message| {
                    handed.push(Event::Message { channel, message });
                });
        } else {
            let _ = self.socket.handle_frame(now, conn, frame);
        }
    }

    fn slot(&self, i: u8) -> Option<ChannelId> {
        self.slots[usize::from(i) % 4].filter(|id| !self.ended_channels.contains(id))
    }

    fn server_frame(&mut self, msg: &Message) -> Result<(), String> {
        let Some(conn) = self.conn.filter(|_| self.open) else {
            return Ok(());
        };
        let frame = V2Json.encode_to_client(msg).map_err(|e| e.to_string())?;
        self.feed(self.now, conn, frame);
        Ok(())
    }

    /// Applies one operation and checks every guarantee.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        let now = self.now;
        match op {
            Op::Connect => {
                self.disconnected_by_user = false;
                self.socket.connect(now);
            }
            Op::Disconnect => {
                self.disconnected_by_user = true;
                self.socket.disconnect(now);
            }
            Op::Opened => {
                if let Some(conn) = self.conn.filter(|_| !self.open) {
                    self.socket.handle_connected(now, conn);
                    self.open = self.socket.is_connected();
                }
            }
            Op::Closed(kind) => {
                if let Some(conn) = self.conn {
                    let reason = match kind % 4 {
                        0 => CloseReason::Error("reset".into()),
                        1 => CloseReason::Closed {
                            code: 1000,
                            reason: String::new(),
                        },
                        2 => CloseReason::Closed {
                            code: 1011,
                            reason: String::new(),
                        },
                        _ => CloseReason::Refused { status: 403 },
                    };
                    self.socket.handle_closed(now, conn, reason);
                    self.conn = None;
                    self.open = false;
                    self.unanswered.clear();
                }
            }
            Op::Advance { ms, long } => {
                let ms = u64::from(*ms) * if *long { 16 } else { 1 };
                self.now += Duration::from_millis(ms);
                self.socket.handle_timeout(self.now);
                if let Some(t) = self.socket.poll_timeout()
                    && t <= self.now
                {
                    return Err(format!("poll_timeout {t:?} not after now {:?}", self.now));
                }
            }
            Op::Join(i) => {
                let topic = TOPICS[usize::from(*i) % 4];
                let before = self.socket.channel_by_topic(topic);
                let options = if usize::from(*i) % 4 >= 2 {
                    JoinOptions::default().presence()
                } else {
                    JoinOptions::default()
                };
                match self
                    .socket
                    .join_with_options(now, topic, Payload::empty(), options)
                {
                    Ok(id) => {
                        if before.is_some() {
                            return Err(format!("second live channel for {topic}"));
                        }
                        self.slots[usize::from(*i) % 4] = Some(id);
                        self.created.insert(id);
                    }
                    Err(_) if before.is_some() => {}
                    Err(e) => return Err(format!("join {topic} refused: {e}")),
                }
            }
            Op::Push {
                slot,
                binary,
                timeout_ms,
            } => {
                if let Some(ch) = self.slot(*slot) {
                    let payload = if *binary {
                        Payload::binary(vec![1u8, 2, 3])
                    } else {
                        Payload::from_json(r#"{"n":1}"#).unwrap()
                    };
                    let timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t) + 1));
                    if let Ok(r) = self.socket.push(now, ch, "ev", payload, timeout)
                        && self.live_pushes.insert(r, ch).is_some()
                    {
                        return Err(format!("push ref {r} issued twice"));
                    }
                }
            }
            Op::Cast(i) => {
                if let Some(ch) = self.slot(*i) {
                    let _ = self.socket.cast(now, ch, "cast", Payload::empty());
                }
            }
            Op::Leave(i) => {
                if let Some(ch) = self.slot(*i) {
                    let _ = self.socket.leave(now, ch);
                }
            }
            Op::Answer { idx, how } => {
                if !self.unanswered.is_empty() {
                    let req = self
                        .unanswered
                        .remove(usize::from(*idx) % self.unanswered.len());
                    let status = match how % 3 {
                        0 => "ok",
                        1 => "error",
                        _ => "custom",
                    };
                    let status = if req.topic == "phoenix" { "ok" } else { status };
                    let reply = Message::reply(
                        req.join_ref.clone(),
                        req.ref_.clone(),
                        req.topic.clone(),
                        status,
                        Payload::empty(),
                    );
                    self.server_frame(&reply)?;
                    if req.event == "phx_leave" && status == "ok" {
                        let close = Message::new(
                            req.join_ref.clone(),
                            req.join_ref.clone(),
                            req.topic.clone(),
                            "phx_close",
                            Payload::empty(),
                        );
                        self.server_frame(&close)?;
                    }
                }
            }
            Op::ServerError { slot, stale } | Op::ServerClose { slot, stale } => {
                let event = if matches!(op, Op::ServerError { .. }) {
                    "phx_error"
                } else {
                    "phx_close"
                };
                let topic = TOPICS[usize::from(*slot) % 4];
                let jr = self.pick_join_ref(topic, *stale);
                if let Some(jr) = jr {
                    let msg = Message::new(
                        Some(jr.as_str().into()),
                        Some(jr.as_str().into()),
                        topic,
                        event,
                        Payload::empty(),
                    );
                    self.server_frame(&msg)?;
                }
            }
            Op::Broadcast { topic, join_ref } => {
                let topic = TOPICS[usize::from(*topic) % 4];
                let jr = match join_ref % 3 {
                    0 => None,
                    1 => self.pick_join_ref(topic, false),
                    _ => self.pick_join_ref(topic, true),
                };
                let msg = Message::new(
                    jr.map(|j| j.as_str().into()),
                    None,
                    topic,
                    "news",
                    Payload::empty(),
                );
                self.server_frame(&msg)?;
            }
            Op::StrayReply { topic, r } => {
                let topic = TOPICS[usize::from(*topic) % 4];
                let reply = Message::reply(
                    None,
                    Some(r.to_string().into()),
                    topic,
                    "ok",
                    Payload::empty(),
                );
                self.server_frame(&reply)?;
            }
            Op::Garbage { bytes, binary } => {
                if let Some(conn) = self.conn.filter(|_| self.open) {
                    let b = Bytes::copy_from_slice(bytes);
                    let frame = if *binary {
                        Frame::Binary(b)
                    } else {
                        Frame::Text(b)
                    };
                    self.feed(now, conn, frame);
                }
            }
            Op::SetParam(v) => self.socket.set_param("v", &v.to_string()),
            Op::Presence {
                topic,
                state,
                joins,
                leaves,
            } => {
                let topic = TOPICS[usize::from(*topic) % 4];
                // Keys k0..k3, each with metas whose phx_ref is picked by the bits.
                let entries = |bits: u8| {
                    let mut obj = serde_json::Map::new();
                    for k in 0..4u8 {
                        if bits & (1 << k) != 0 {
                            let r = format!("r{}", (bits >> 4) ^ k);
                            obj.insert(
                                format!("k{k}"),
                                serde_json::json!({"metas": [{"phx_ref": r}]}),
                            );
                        }
                    }
                    serde_json::Value::Object(obj)
                };
                let (event, payload, join_ref) = if *state {
                    (
                        "presence_state",
                        entries(*joins),
                        self.pick_join_ref(topic, false),
                    )
                } else {
                    let diff =
                        serde_json::json!({"joins": entries(*joins), "leaves": entries(*leaves)});
                    ("presence_diff", diff, None)
                };
                let msg = Message::new(
                    join_ref.map(|j| j.as_str().into()),
                    None,
                    topic,
                    event,
                    Payload::json(&payload).unwrap(),
                );
                self.server_frame(&msg)?;
            }
        }
        self.drain()
    }

    fn pick_join_ref(&self, topic: &str, stale: bool) -> Option<String> {
        let current = self
            .socket
            .channel_by_topic(topic)
            .and_then(|id| self.socket.channel(id))
            .and_then(|c| c.join_ref().map(|r| r.to_string()));
        if stale {
            let refs = self.join_refs.get(topic)?;
            refs.iter().find(|r| Some(*r) != current.as_ref()).cloned()
        } else {
            current
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        while let Some(t) = self.socket.poll_transmit() {
            match t {
                Transmit::Connect { conn, .. } => {
                    if self.disconnected_by_user {
                        return Err("dialed after a user disconnect".into());
                    }
                    self.conn = Some(conn);
                    self.open = false;
                    self.unanswered.clear();
                }
                Transmit::Close { conn, .. } => {
                    if Some(conn) == self.conn {
                        self.conn = None;
                        self.open = false;
                        self.unanswered.clear();
                    }
                }
                Transmit::Frame(frame) => self.client_frame(&frame)?,
            }
        }
        // Handed over when nothing else waited: before whatever is queued.
        for e in std::mem::take(&mut self.handed) {
            self.event(e)?;
        }
        while let Some(e) = self.socket.poll_event() {
            self.event(e)?;
        }
        self.socket.check_invariants()?;
        let stats = self.socket.stats();
        if stats.messages != self.messages {
            return Err(format!(
                "socket counts {} messages delivered, {} came out",
                stats.messages, self.messages
            ));
        }
        if stats.pushes_buffered > BUFFER {
            return Err(format!("send buffer holds {}", stats.pushes_buffered));
        }
        if stats.pushes_pending != self.live_pushes.len() {
            return Err(format!(
                "socket reports {} pending pushes, {} are live",
                stats.pushes_pending,
                self.live_pushes.len()
            ));
        }
        Ok(())
    }

    fn client_frame(&mut self, frame: &Frame) -> Result<(), String> {
        if !self.open {
            return Err(format!("frame written while not connected: {frame:?}"));
        }
        let msg = V2Json
            .decode_from_client(frame)
            .map_err(|e| format!("client sent an undecodable frame: {e}"))?;
        let event = msg.event.as_str();
        if event == "phx_join" {
            if msg.join_ref != msg.ref_ {
                return Err("join with join_ref != ref".into());
            }
            let jr = msg
                .join_ref
                .as_ref()
                .map(|j| j.to_string())
                .unwrap_or_default();
            self.join_refs
                .entry(msg.topic.to_string())
                .or_default()
                .push(jr);
        } else if msg.topic != "phoenix" && event != "phx_leave" {
            // A user push: only for a joined channel, stamped with its current join_ref.
            let id = self
                .socket
                .channel_by_topic(&msg.topic)
                .ok_or_else(|| format!("push for {} with no channel", msg.topic))?;
            let ch = self.socket.channel(id).ok_or("dead channel")?;
            if ch.state() != ChannelState::Joined {
                return Err(format!("push sent while {:?}", ch.state()));
            }
            if msg.join_ref.as_deref() != ch.join_ref().map(|r| r.to_string()).as_deref() {
                return Err(format!(
                    "push with stale join_ref {:?} (current {:?})",
                    msg.join_ref,
                    ch.join_ref()
                ));
            }
        }
        if msg.ref_.is_some() {
            self.unanswered.push(msg);
        }
        Ok(())
    }

    fn end_push(&mut self, r: PushRef, ch: ChannelId) -> Result<(), String> {
        match self.live_pushes.remove(&r) {
            Some(owner) if owner == ch => {
                self.ended_pushes.insert(r);
                Ok(())
            }
            Some(owner) => Err(format!("push {r} of {owner} ended on {ch}")),
            None if self.ended_pushes.contains(&r) => Err(format!("push {r} ended twice")),
            None => Err(format!("unknown push {r} ended")),
        }
    }

    fn end_channel(&mut self, ch: ChannelId) -> Result<(), String> {
        self.joined.remove(&ch);
        if !self.ended_channels.insert(ch) {
            return Err(format!("{ch} ended twice"));
        }
        if self.socket.channel(ch).is_some() {
            return Err(format!("{ch} ended but still live"));
        }
        if let Some((r, _)) = self.live_pushes.iter().find(|(_, c)| **c == ch) {
            return Err(format!("{ch} ended with push {r} unresolved"));
        }
        Ok(())
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::Replied {
                channel, push_ref, ..
            }
            | Event::PushTimedOut { channel, push_ref }
            | Event::PushFailed {
                channel, push_ref, ..
            } => self.end_push(push_ref, channel)?,
            Event::Joined { channel, .. } => {
                if self.ended_channels.contains(&channel) {
                    return Err(format!("{channel} joined after it ended"));
                }
                self.joined.insert(channel);
            }
            Event::Message { channel, .. } if !self.joined.contains(&channel) => {
                return Err(format!(
                    "message delivered to {channel} before its join reply"
                ));
            }
            Event::Message { .. } => self.messages += 1,
            Event::Presence { channel, .. } if !self.joined.contains(&channel) => {
                return Err(format!(
                    "presence change on {channel} before its join reply"
                ));
            }
            Event::ChannelErrored { channel, .. } => {
                self.joined.remove(&channel);
            }
            Event::JoinFailed {
                channel,
                retry_at: None,
                ..
            }
            | Event::JoinTimedOut {
                channel,
                retry_at: None,
            }
            | Event::Left { channel, .. }
            | Event::ChannelClosed { channel, .. } => self.end_channel(channel)?,
            Event::JoinFailed { channel, .. } | Event::JoinTimedOut { channel, .. } => {
                self.joined.remove(&channel);
            }
            _ => {}
        }
        Ok(())
    }

    /// Disconnects and checks that everything pending has ended and nothing else happens.
    pub fn finish(&mut self) -> Result<(), String> {
        self.step(&Op::Disconnect)?;
        self.step(&Op::Advance {
            ms: u16::MAX,
            long: true,
        })?;
        if let Some((r, ch)) = self.live_pushes.iter().next() {
            return Err(format!("push {r} on {ch} never ended"));
        }
        for id in &self.created {
            if !self.ended_channels.contains(id) {
                return Err(format!("{id} never ended"));
            }
        }
        if self.socket.poll_timeout().is_some() {
            return Err("timers armed after disconnect".into());
        }
        Ok(())
    }
}
