//! The bundled Phoenix-compatible test server.
//!
//! Two layers:
//!
//! - [`Server`], a sans-IO model of a Phoenix 1.8.12 endpoint with one socket (`/socket`) and
//!   the channels of the server the golden traces were recorded from. It never reads a clock,
//!   opens a socket or draws randomness: time is an argument, and the same inputs give the same
//!   outputs, byte for byte. The simulation harness drives it directly.
//! - [`ws::TestServer`], the same model behind a real WebSocket listener (tokio +
//!   tokio-tungstenite), for end-to-end tests, examples, the demo and benchmarks.
//!
//! # Driving contract
//!
//! After every input (`handle_*` or a fault hook), drain [`Server::poll_output`] until it returns
//! `None`, then wait for the earliest of [`Server::poll_timeout`], a new connection, a frame or
//! a disconnect. [`Server::handle_timeout`] called early does nothing.
//!
//! # How the model maps Phoenix's processes
//!
//! In Phoenix, one process per connection decodes frames, answers heartbeats, runs joins
//! synchronously and forwards everything else to one process per channel, which answers on its
//! own schedule. The model keeps that split. [`Server::handle_frame`] does the connection
//! process's part at once (heartbeat replies, join replies, `unmatched topic`, the join_ref
//! check, duplicate-join handling) and queues the channel's part (event handlers, `phx_leave`,
//! presence tracking after a join, the `phx_close` a duplicate join queues to itself) in one
//! FIFO run queue. [`Server::poll_output`] runs that queue. So frames fed without polling in
//! between behave like frames that reached Phoenix in one read: the connection routes all of
//! them before any channel runs. This is what makes a `phx_leave` immediately followed by a
//! `phx_join` of the same topic get no leave reply (`duplicate_join.txt`). Feed frames one at a
//! time, polling after each, to get the other, equally legal, interleaving.
//!
//! # Server under test
//!
//! Connect: path [`ServerConfig::path`]; `vsn` absent or `1.0.x` selects V1, `2.0.x` V2, anything
//! else is 403; [`ServerConfig::auth`] decides the rest (default: `token` param or auth token
//! equal to `"secret"`). Topics `room:*` and `presence:*` have channels; any other join gets
//! `unmatched topic`.
//!
//! `room:*`: joining `room:forbidden` fails with `{"reason":"unauthorized"}`; other joins reply
//! `{"joined": topic, "params": params}`. Events:
//!
//! | event | payload | effect |
//! |---|---|---|
//! | `ping` | any | reply ok with the payload (binary stays binary) |
//! | `error_reply` | any | reply error `{"reason":"nope"}` |
//! | `custom_status` | any | reply with status `custom` and the payload |
//! | `noreply` | any | nothing, ever |
//! | `slow` | `{"ms": N}` | reply ok with the payload after N ms (model time) |
//! | `shout` | object or binary | broadcast it as `shout` to every subscriber, no reply |
//! | `broadcast_from` | `{"event": E, "payload"?: object}` | broadcast to every other subscriber, reply ok `{}` |
//! | `push_me` | `{"event": E, "payload"?: object}` | push it to this client, reply ok `{}` |
//! | `flood` | `{"n": N, "event"?: E}` | push `{"i": 1}` … `{"i": N}` as E (default `flood`), reply ok `{"n": N}` |
//! | `bin` | any | reply ok with a binary: the bytes, or the JSON text |
//! | `bin_push` | any | push that binary as `bin_push`, reply ok `{}` |
//! | `bin_shout` | any | broadcast that binary as `bin_shout`, reply ok `{}` |
//! | `crash` | any | the channel crashes: `phx_error`, no reply |
//! | `stop` | any | the channel stops normally: `phx_close`, no reply |
//! | `disconnect_me` | any | `disconnect` broadcast to the socket id: connections close with 1001 |
//! | anything else | | crash, as a Phoenix channel without a catch-all clause |
//!
//! A push or broadcast payload must be an object (Phoenix's encoder raises otherwise), so a
//! `shout`, `push_me` or `broadcast_from` with another JSON value crashes the channel, as does a
//! missing or mistyped field. A reply or push that cannot be encoded (binary on V1, a binary
//! frame field over 255 bytes) crashes the channel, because Phoenix encodes them in the channel
//! process. A join reply that cannot be encoded (binary join params) closes the connection with
//! 1011, because Phoenix encodes it in the connection process.
//!
//! `presence:*`: the join needs a string `user` param (else the join crashes: `join crashed`)
//! and replies `{"joined": topic}`. After the reply the user is tracked with meta
//! `{"online_at": <unix seconds>, "phx_ref": <ref>}`, a `presence_diff` with the join goes to
//! every subscriber, then `presence_state` is pushed to the joiner. The `update` event replaces
//! the meta with its payload object (plus a new `phx_ref` and `phx_ref_prev`), broadcasts the
//! diff and replies ok `{}`. When a tracked channel ends, for whatever reason, the remaining
//! subscribers get a `presence_diff` with the leave. Any other event crashes the channel.
//!
//! A broadcast that a subscriber's serializer cannot encode (binary on V1, a binary frame field
//! over 255 bytes) is skipped for that subscriber (Phoenix would crash the broadcasting process
//! instead).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phx_proto::{ByteStr, DecodeError, Frame, Message, Payload};
use serde_json::Value;

mod channel;
mod config;
mod connect;
mod json;
mod presence;
pub mod ws;

#[cfg(test)]
mod tests;

pub use config::{ConnectAuth, JoinRefRule, PresenceOrder, ServerConfig, SocketIdMode};
pub use connect::{
    AUTH_TOKEN_PREFIX, Accepted, ConnectInfo, ConnectRequest, Param, Refused, Vsn, encode_base64,
};

use presence::Presences;

/// Identifies one connection; chosen by the driver, unique among open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What the driver must do to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this frame.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame, already encoded.
        frame: Frame,
    },
    /// Send a close frame with this code and reason, then end the connection. The model has
    /// already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason (often empty).
        reason: String,
    },
    /// End the connection without a close frame (the client sees an abnormal close, 1006).
    Abort {
        /// The connection.
        conn: ConnId,
    },
}

impl Output {
    /// The connection this output is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Self::Frame { conn, .. } | Self::Close { conn, .. } | Self::Abort { conn } => *conn,
        }
    }
}

/// Server-wide counters, for tests to assert what the server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Handshakes accepted.
    pub connections_accepted: u64,
    /// Handshakes refused.
    pub connections_refused: u64,
    /// Data frames received on open connections.
    pub frames_received: u64,
    /// Frames that closed their connection because they were malformed (1011).
    pub malformed_frames: u64,
    /// Heartbeats received (answered or not).
    pub heartbeats: u64,
    /// Successful joins, all topics.
    pub joins: u64,
}

/// A message payload, decoded once.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Binary(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Room,
    Presence,
}

fn route_topic(topic: &str) -> Option<Kind> {
    if topic.starts_with("room:") {
        Some(Kind::Room)
    } else if topic.starts_with("presence:") {
        Some(Kind::Presence)
    } else {
        None
    }
}

/// One joined channel on one connection.
#[derive(Debug)]
struct Channel {
    /// Unique over the server's life; identifies this instance in queued work.
    id: u64,
    kind: Kind,
    /// The join_ref the join carried: the stale check and `phx_close`/`phx_error` use it.
    join_ref: Option<ByteStr>,
    /// `join_ref || ref` of the join: what pushes and replies carry.
    reply_join_ref: Option<ByteStr>,
    /// The presence key (`user` param) of a `presence:*` channel.
    presence_key: Option<String>,
}

#[derive(Debug)]
struct Conn {
    /// Unique over the server's life, so queued work cannot reach a later connection that
    /// reuses the id.
    serial: u64,
    vsn: Vsn,
    socket_id: Option<String>,
    channels: BTreeMap<String, Channel>,
    idle_deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct ConnStats {
    frames: u64,
    recorded: Vec<Frame>,
}

/// Work for a channel "process", run by `poll_output` in FIFO order.
#[derive(Debug)]
enum Task {
    Deliver {
        conn: ConnId,
        topic: String,
        chan: u64,
        msg: ChanMsg,
    },
    /// A frame the connection process sent to its own mailbox.
    SocketPush {
        conn: ConnId,
        serial: u64,
        frame: Frame,
    },
    /// The presence tracker noticing that a channel instance is gone.
    Untrack { topic: String, chan: u64 },
}

#[derive(Debug)]
enum ChanMsg {
    In {
        ref_: Option<ByteStr>,
        event: ByteStr,
        body: Body,
    },
    AfterJoin,
    SlowReply {
        ref_: Option<ByteStr>,
        response: Value,
    },
}

/// A sans-IO model of a Phoenix 1.8.12 server; see the [module docs](self).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    start: Option<Instant>,
    now: Option<Instant>,
    conns: BTreeMap<ConnId, Conn>,
    subs: BTreeMap<String, BTreeSet<ConnId>>,
    presences: Presences,
    run_queue: VecDeque<Task>,
    timers: BTreeMap<(Instant, u64), Task>,
    idle: BTreeSet<(Instant, ConnId)>,
    out: VecDeque<Output>,
    next_id: u64,
    answer_heartbeats: bool,
    refuse_until: Option<Instant>,
    stats: ServerStats,
    per_conn: BTreeMap<ConnId, ConnStats>,
    joins: BTreeMap<String, u64>,
}

impl Server {
    /// A server with no connections.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            start: None,
            now: None,
            conns: BTreeMap::new(),
            subs: BTreeMap::new(),
            presences: Presences::default(),
            run_queue: VecDeque::new(),
            timers: BTreeMap::new(),
            idle: BTreeSet::new(),
            out: VecDeque::new(),
            next_id: 0,
            answer_heartbeats: true,
            refuse_until: None,
            stats: ServerStats::default(),
            per_conn: BTreeMap::new(),
            joins: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    // ----- inputs -----

    /// A client asks to upgrade; decides as Phoenix would and, when accepted, opens `conn`.
    ///
    /// # Errors
    /// [`Refused`] with the HTTP status to answer.
    pub fn handle_connect(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &ConnectRequest,
    ) -> Result<Accepted, Refused> {
        let now = self.tick(now);
        let result = if self.refuse_until.is_some_and(|until| now < until) {
            Err(Refused { status: 503 })
        } else if self.conns.contains_key(&conn) {
            Err(Refused { status: 500 })
        } else {
            connect::check(&self.config, req)
        };
        let accepted = match result {
            Ok(a) => a,
            Err(r) => {
                self.stats.connections_refused += 1;
                return Err(r);
            }
        };
        self.stats.connections_accepted += 1;
        let socket_id = match &self.config.socket_id {
            SocketIdMode::None => None,
            SocketIdMode::Shared(id) => Some(id.clone()),
            SocketIdMode::PerConnection => Some(format!("user_socket:{}", conn.0)),
        };
        let serial = self.next_id();
        self.conns.insert(
            conn,
            Conn {
                serial,
                vsn: accepted.vsn,
                socket_id,
                channels: BTreeMap::new(),
                idle_deadline: None,
            },
        );
        self.per_conn.entry(conn).or_default();
        self.touch(now, conn);
        Ok(accepted)
    }

    /// A data frame arrived on `conn`. Frames for unknown or closed connections are ignored.
    /// Never panics, whatever the bytes: a malformed frame closes the connection with 1011,
    /// invalid UTF-8 in a text frame with 1007, an oversized frame with 1009.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let now = self.tick(now);
        let Some(vsn) = self.conns.get(&conn).map(|c| c.vsn) else {
            return;
        };
        self.stats.frames_received += 1;
        let st = self.per_conn.entry(conn).or_default();
        st.frames += 1;
        if self.config.record_frames {
            st.recorded.push(frame.clone());
        }
        self.touch(now, conn);
        if frame.len() > self.config.max_frame_size {
            self.close(conn, 1009, "");
            return;
        }
        if let Frame::Text(b) = &frame
            && std::str::from_utf8(b).is_err()
        {
            self.close(conn, 1007, "");
            return;
        }
        let decoded = decode(vsn, &frame).ok().and_then(|msg| {
            let body = if msg.payload.is_binary() {
                Body::Binary(msg.payload.as_bytes().clone())
            } else {
                Body::Json(serde_json::from_slice(msg.payload.as_bytes()).ok()?)
            };
            Some((msg, body))
        });
        match decoded {
            Some((msg, body)) => self.route(conn, msg, body),
            None => {
                self.stats.malformed_frames += 1;
                self.close(conn, 1011, "");
            }
        }
    }

    /// A WebSocket ping or pong arrived: it counts as received data for the idle timeout.
    pub fn handle_keepalive(&mut self, now: Instant, conn: ConnId) {
        let now = self.tick(now);
        if self.conns.contains_key(&conn) {
            self.touch(now, conn);
        }
    }

    /// The connection ended (client close, network loss). Its channels stop; presence leaves
    /// go to the other subscribers.
    pub fn handle_disconnected(&mut self, now: Instant, conn: ConnId) {
        self.tick(now);
        self.forget_conn(conn, None);
    }

    /// Fires everything due at `now`: idle timeouts and delayed replies, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        loop {
            let idle = self.idle.first().copied();
            let timer = self.timers.first_key_value().map(|(&key, _)| key);
            match (idle, timer) {
                (Some((at, conn)), next) if at <= now && next.is_none_or(|(t, _)| at <= t) => {
                    self.idle.remove(&(at, conn));
                    let code = self.config.idle_close_code;
                    self.close(conn, code, "");
                }
                (_, Some(key)) if key.0 <= now => {
                    if let Some(task) = self.timers.remove(&key) {
                        self.run_queue.push_back(task);
                    }
                }
                _ => break,
            }
        }
    }

    // ----- outputs -----

    /// The next thing to do to a connection. Runs queued channel work when nothing is
    /// waiting, so drain it after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(o) = self.out.pop_front() {
                return Some(o);
            }
            let task = self.run_queue.pop_front()?;
            self.run(task);
        }
    }

    /// The earliest deadline: an idle timeout or a delayed reply. Changes after any input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.idle.first().map(|&(at, _)| at);
        let timer = self.timers.first_key_value().map(|(&(at, _), _)| at);
        match (idle, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- fault hooks -----

    /// The server process dies and comes back: every connection ends without a close frame,
    /// and all channels, presences, queued work and timers are forgotten. Counters are kept.
    pub fn restart(&mut self, now: Instant) {
        self.tick(now);
        let conns = std::mem::take(&mut self.conns);
        for conn in conns.into_keys() {
            if !self.config.record_frames {
                self.per_conn.remove(&conn);
            }
            self.out.push_back(Output::Abort { conn });
        }
        self.subs.clear();
        self.presences.clear();
        self.run_queue.clear();
        self.timers.clear();
        self.idle.clear();
    }

    /// Ends one connection without a close frame. Returns whether it was open.
    pub fn drop_connection(&mut self, conn: ConnId) -> bool {
        self.forget_conn(conn, Some(Output::Abort { conn }))
    }

    /// Closes one connection with a close frame. Returns whether it was open.
    pub fn close_connection(&mut self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.close(conn, code, reason)
    }

    /// Whether heartbeats get a reply (default true). Unanswered heartbeats still count as
    /// received data.
    pub fn set_answer_heartbeats(&mut self, answer: bool) {
        self.answer_heartbeats = answer;
    }

    /// Refuses every handshake with HTTP 503 until `until` (as a server that is down behind a
    /// proxy would). 503 is used rather than 403 so tests can tell it from an auth failure.
    pub fn refuse_connects_until(&mut self, until: Instant) {
        self.refuse_until = Some(until);
    }

    /// Crashes every channel on `topic`: each joiner gets `phx_error`. Returns how many.
    pub fn crash_channel(&mut self, topic: &str) -> usize {
        self.end_topic(topic, End::Error)
    }

    /// Stops every channel on `topic` normally: each joiner gets `phx_close`. Returns how many.
    pub fn stop_channel(&mut self, topic: &str) -> usize {
        self.end_topic(topic, End::Close)
    }

    /// Broadcasts to every connection joined to `topic` (fastlane: null join_ref and ref),
    /// encoded once per serializer. Returns how many connections it went to.
    pub fn broadcast(&mut self, topic: &str, event: &str, payload: &Payload) -> usize {
        self.fanout(topic, event, payload, None)
    }

    /// Pushes a message to one connection's channel on `topic`, as the channel's `push/3`
    /// would. Returns whether the channel exists and the push could be encoded.
    pub fn push(&mut self, conn: ConnId, topic: &str, event: &str, payload: Payload) -> bool {
        let Some(ch) = self.conns.get(&conn).and_then(|c| c.channels.get(topic)) else {
            return false;
        };
        let msg = Message::new(
            ch.reply_join_ref.clone(),
            None,
            ByteStr::from(topic),
            ByteStr::from(event),
            payload,
        );
        self.send(conn, &msg).is_ok()
    }

    /// Sends `frame` as it is, well-formed or not, to one connection (a hostile server for
    /// tests). Returns whether the connection is open.
    pub fn send_raw(&mut self, conn: ConnId, frame: Frame) -> bool {
        if !self.conns.contains_key(&conn) {
            return false;
        }
        self.out.push_back(Output::Frame { conn, frame });
        true
    }

    /// Closes every connection as a `disconnect` broadcast would (1001 by default). Returns
    /// how many.
    pub fn disconnect_all(&mut self) -> usize {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        let code = self.config.disconnect_close_code;
        for &conn in &conns {
            self.close(conn, code, "");
        }
        conns.len()
    }

    // ----- queries -----

    /// Server-wide counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Successful joins of `topic` so far (rejoins count again).
    pub fn joins(&self, topic: &str) -> u64 {
        self.joins.get(topic).copied().unwrap_or(0)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether `conn` is open.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The open connections, in id order.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Data frames received on `conn` (open or closed).
    /// (For a closed connection, only while [`ServerConfig::record_frames`] is on.)
    pub fn frames_received_on(&self, conn: ConnId) -> u64 {
        self.per_conn.get(&conn).map_or(0, |s| s.frames)
    }

    /// Every frame `conn` sent, when [`ServerConfig::record_frames`] is on.
    pub fn received(&self, conn: ConnId) -> &[Frame] {
        self.per_conn.get(&conn).map_or(&[], |s| &s.recorded)
    }

    /// The topics `conn` has joined, sorted.
    pub fn channels(&self, conn: ConnId) -> Vec<String> {
        self.conns
            .get(&conn)
            .map(|c| c.channels.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many connections are joined to `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.subs.get(topic).map_or(0, BTreeSet::len)
    }

    /// `Presence.list(topic)`: `{key: {"metas": [...]}}`.
    pub fn presence_list(&self, topic: &str) -> Value {
        self.presences.list(topic)
    }

    /// Whether heartbeats are answered.
    pub fn answers_heartbeats(&self) -> bool {
        self.answer_heartbeats
    }

    // ----- internals -----

    /// Clamps time so it never runs backwards, and remembers the first instant.
    fn tick(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        self.start.get_or_insert(now);
        now
    }

    fn since_start(&self) -> Duration {
        match (self.start, self.now) {
            (Some(s), Some(n)) => n.saturating_duration_since(s),
            _ => Duration::ZERO,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Data arrived: push the idle deadline back.
    fn touch(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(old) = c.idle_deadline.take() {
            self.idle.remove(&(old, conn));
        }
        if let Some(at) = self.config.idle_timeout.and_then(|t| now.checked_add(t)) {
            c.idle_deadline = Some(at);
            self.idle.insert((at, conn));
        }
    }

    /// Closes with a close frame; returns whether the connection was open.
    fn close(&mut self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.forget_conn(
            conn,
            Some(Output::Close {
                conn,
                code,
                reason: reason.to_owned(),
            }),
        )
    }

    /// Removes a connection, emits `output` for it, stops its channels and sends the presence
    /// leaves to the remaining subscribers. Returns whether it was open.
    fn forget_conn(&mut self, conn: ConnId, output: Option<Output>) -> bool {
        let Some(c) = self.conns.remove(&conn) else {
            return false;
        };
        // Recordings outlive their connection (tests read them after the close); counters of a
        // closed connection do not, so a long-running server stays bounded.
        if !self.config.record_frames {
            self.per_conn.remove(&conn);
        }
        if let Some(at) = c.idle_deadline {
            self.idle.remove(&(at, conn));
        }
        if let Some(o) = output {
            self.out.push_back(o);
        }
        for (topic, ch) in c.channels {
            self.unsubscribe(&topic, conn);
            self.untrack(&topic, ch.id);
        }
        true
    }

    fn unsubscribe(&mut self, topic: &str, conn: ConnId) {
        if let Some(set) = self.subs.get_mut(topic) {
            set.remove(&conn);
            if set.is_empty() {
                self.subs.remove(topic);
            }
        }
    }

    /// Encodes `msg` for `conn` and queues it.
    fn send(&mut self, conn: ConnId, msg: &Message) -> Result<(), phx_proto::EncodeError> {
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        let frame = c.vsn.serializer().encode_to_client(msg)?;
        self.out.push_back(Output::Frame { conn, frame });
        Ok(())
    }

    /// A reply from the connection process itself; one it cannot encode kills the connection.
    fn socket_reply(
        &mut self,
        conn: ConnId,
        join_ref: Option<ByteStr>,
        ref_: Option<ByteStr>,
        topic: ByteStr,
        status: &'static str,
        response: Payload,
    ) {
        let msg = Message::reply(join_ref, ref_, topic, status, response);
        if self.send(conn, &msg).is_err() {
            self.close(conn, 1011, "");
        }
    }

    fn unmatched(&mut self, conn: ConnId, ref_: Option<ByteStr>, topic: ByteStr) {
        let reason = reason("unmatched topic");
        self.socket_reply(conn, None, ref_, topic, "error", reason);
    }

    /// The connection process's routing of one decoded message (PROTOCOL.md §4.2).
    fn route(&mut self, conn: ConnId, msg: Message, body: Body) {
        let Message {
            join_ref,
            ref_,
            topic,
            event,
            ..
        } = msg;
        if topic == "phoenix" && event == "heartbeat" {
            self.stats.heartbeats += 1;
            if self.answer_heartbeats {
                self.socket_reply(conn, None, ref_, topic, "ok", Payload::empty());
            }
            return;
        }
        if event == "phx_join" {
            self.join(conn, join_ref, ref_, topic, body);
            return;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Some(ch) = c.channels.get(topic.as_str()) {
            let is_leave = event == "phx_leave";
            if self.config.join_ref_rule.accepts(
                ch.join_ref.as_deref(),
                join_ref.as_deref(),
                is_leave,
            ) {
                let chan = ch.id;
                self.run_queue.push_back(Task::Deliver {
                    conn,
                    topic: topic.to_string(),
                    chan,
                    msg: ChanMsg::In { ref_, event, body },
                });
            }
        } else if event == "phx_leave" {
            self.socket_reply(conn, join_ref, ref_, topic, "ok", Payload::empty());
        } else {
            self.unmatched(conn, ref_, topic);
        }
    }

    /// A `phx_join`: duplicate handling, the channel limit, then the channel's `join/3`,
    /// synchronously.
    fn join(
        &mut self,
        conn: ConnId,
        join_ref: Option<ByteStr>,
        ref_: Option<ByteStr>,
        topic: ByteStr,
        body: Body,
    ) {
        let Some(kind) = route_topic(&topic) else {
            self.unmatched(conn, ref_, topic);
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(old) = c.channels.remove(topic.as_str()) {
            // Duplicate join: the old channel is shut down (its queued work is lost), and the
            // connection sends itself the old join's phx_close, which goes out after the new
            // join's reply.
            let close = Message::new(
                old.join_ref.clone(),
                old.join_ref,
                topic.clone(),
                "phx_close",
                Payload::empty(),
            );
            if let Ok(frame) = c.vsn.serializer().encode_to_client(&close) {
                self.run_queue.push_back(Task::SocketPush {
                    conn,
                    serial: c.serial,
                    frame,
                });
            }
            self.run_queue.push_back(Task::Untrack {
                topic: topic.to_string(),
                chan: old.id,
            });
            self.unsubscribe(&topic, conn);
        }
        let held = self.conns.get(&conn).map_or(0, |c| c.channels.len());
        if held >= self.config.max_channels_per_transport {
            let reason = reason("too many channels joined");
            self.socket_reply(conn, join_ref, ref_, topic, "error", reason);
            return;
        }
        match channel::join(kind, &topic, &body) {
            channel::JoinResult::Ok {
                response,
                presence_key,
            } => {
                let id = self.next_id();
                let reply = Message::reply(
                    join_ref.clone(),
                    ref_.clone(),
                    topic.clone(),
                    "ok",
                    response,
                );
                if self.send(conn, &reply).is_err() {
                    self.close(conn, 1011, "");
                    return;
                }
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.channels.insert(
                    topic.to_string(),
                    Channel {
                        id,
                        kind,
                        reply_join_ref: join_ref.clone().or(ref_),
                        join_ref,
                        presence_key,
                    },
                );
                self.subs.entry(topic.to_string()).or_default().insert(conn);
                *self.joins.entry(topic.to_string()).or_default() += 1;
                self.stats.joins += 1;
                if kind == Kind::Presence {
                    self.run_queue.push_back(Task::Deliver {
                        conn,
                        topic: topic.to_string(),
                        chan: id,
                        msg: ChanMsg::AfterJoin,
                    });
                }
            }
            channel::JoinResult::Error(response) => {
                self.socket_reply(conn, join_ref, ref_, topic, "error", response);
            }
            channel::JoinResult::Unencodable => {
                self.close(conn, 1011, "");
            }
        }
    }

    fn run(&mut self, task: Task) {
        match task {
            Task::SocketPush {
                conn,
                serial,
                frame,
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.serial == serial) {
                    self.out.push_back(Output::Frame { conn, frame });
                }
            }
            Task::Untrack { topic, chan } => self.untrack(&topic, chan),
            Task::Deliver {
                conn,
                topic,
                chan,
                msg,
            } => {
                if self.channel_id(conn, &topic) == Some(chan) {
                    self.handle_channel(channel::Ctx { conn, topic, chan }, msg);
                }
            }
        }
    }

    fn channel_id(&self, conn: ConnId, topic: &str) -> Option<u64> {
        self.conns.get(&conn)?.channels.get(topic).map(|ch| ch.id)
    }

    /// Ends every channel on a topic.
    fn end_topic(&mut self, topic: &str, end: End) -> usize {
        let conns: Vec<ConnId> = self
            .subs
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut n = 0;
        for conn in conns {
            if let Some(chan) = self.channel_id(conn, topic) {
                self.end_channel(conn, topic, chan, end);
                n += 1;
            }
        }
        n
    }

    /// Removes a channel instance; sends `phx_close` or `phx_error` (with `ref = join_ref`);
    /// untracks its presence.
    fn end_channel(&mut self, conn: ConnId, topic: &str, chan: u64, end: End) {
        if self.channel_id(conn, topic) != Some(chan) {
            return;
        }
        let Some(ch) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.channels.remove(topic))
        else {
            return;
        };
        self.unsubscribe(topic, conn);
        let (event, payload) = match end {
            End::Close => ("phx_close", Payload::empty()),
            End::Error if self.config.channel_crash_reason => {
                ("phx_error", reason("channel_crash"))
            }
            End::Error => ("phx_error", Payload::empty()),
        };
        let msg = Message::new(
            ch.join_ref.clone(),
            ch.join_ref,
            ByteStr::from(topic),
            event,
            payload,
        );
        if self.send(conn, &msg).is_err() {
            self.close(conn, 1011, "");
        }
        self.untrack(topic, chan);
    }

    /// Drops what a channel instance tracked and tells the topic's subscribers.
    fn untrack(&mut self, topic: &str, chan: u64) {
        let gone = self.presences.untrack(topic, chan);
        if !gone.is_empty() {
            let diff = json::payload(&presence::diff(&[], &gone));
            self.fanout(topic, "presence_diff", &diff, None);
        }
    }

    /// Sends a fastlane broadcast to the topic's subscribers, except `except`.
    fn fanout(
        &mut self,
        topic: &str,
        event: &str,
        payload: &Payload,
        except: Option<ConnId>,
    ) -> usize {
        let Some(subs) = self.subs.get(topic) else {
            return 0;
        };
        // One encoding per serializer, shared by every subscriber (the frames share memory).
        let mut v1: Option<Option<Frame>> = None;
        let mut v2: Option<Option<Frame>> = None;
        let mut n = 0;
        for &conn in subs {
            if Some(conn) == except {
                continue;
            }
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let slot = match c.vsn {
                Vsn::V1 => &mut v1,
                Vsn::V2 => &mut v2,
            };
            let frame = slot.get_or_insert_with(|| {
                c.vsn
                    .serializer()
                    .encode_broadcast(topic, event, payload)
                    .ok()
            });
            if let Some(frame) = frame {
                self.out.push_back(Output::Frame {
                    conn,
                    frame: frame.clone(),
                });
                n += 1;
            }
        }
        n
    }
}

/// `{"reason": text}`, the payload of Phoenix's error replies and of `phx_error`.
fn reason(text: &str) -> Payload {
    let mut map = serde_json::Map::new();
    map.insert("reason".to_owned(), Value::from(text));
    json::payload(&Value::Object(map))
}

/// How a channel ends, as its joiner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Normal stop: `phx_close`.
    Close,
    /// Crash: `phx_error`.
    Error,
}

/// Decodes a client frame. Phoenix's V2 decoder takes the first five array elements and
/// ignores any more; the codec refuses extra elements, so such a frame is cut to five first.
fn decode(vsn: Vsn, frame: &Frame) -> Result<Message, DecodeError> {
    let ser = vsn.serializer();
    match ser.decode_from_client(frame) {
        Err(DecodeError::Arity { found }) if found > 5 && vsn == Vsn::V2 => {
            let err = DecodeError::Arity { found };
            let items: Vec<Value> =
                serde_json::from_slice(frame.as_bytes()).map_err(|_| err.clone())?;
            let head = serde_json::to_vec(items.get(..5).ok_or(err.clone())?).map_err(|_| err)?;
            ser.decode_from_client(&Frame::Text(Bytes::from(head)))
        }
        other => other,
    }
}
