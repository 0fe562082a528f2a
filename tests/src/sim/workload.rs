//! The user's side: commands on a client (by hand or from the random workload), each checked
//! for the answer the socket must give, and the random workload itself.

use std::time::Duration;

use phx_proto::{ChannelId, ChannelState, JoinError, JoinOptions, Payload, PushError, PushRef};
use serde_json::{Value, json};

use super::harness::{Failure, Sim, u};
use super::model::{Cause, Expect};
use super::rng::SimRng;
use super::transcript::{self, note};

#[derive(Debug, Clone, Copy)]
enum Op {
    Join,
    Leave,
    Push,
    Broadcast,
    Disconnect,
    SetParam,
    Token,
    JoinParams,
}

fn payload(v: &Value) -> Payload {
    Payload::json(v).unwrap_or_default()
}

/// What the server channel does with `event` (see the server model's table).
/// V1 cannot carry binary, so on a V1 connection a binary reply or push crashes the channel.
fn expect_for(topic: &str, event: &str, body: &Payload, v1: bool) -> Expect {
    let empty = json!({});
    if topic.starts_with("presence:") {
        return match event {
            "update" if !body.is_binary() => Expect::Exact("ok", empty),
            _ => Expect::Never,
        };
    }
    match event {
        "ping" | "slow" => Expect::Echo("ok", body.clone()),
        "custom_status" => Expect::Echo("custom", body.clone()),
        "error_reply" => Expect::Exact("error", json!({"reason": "nope"})),
        "bin" | "bin_push" if v1 => Expect::Never,
        "push_me" | "bin_push" | "broadcast_from" => Expect::Exact("ok", empty),
        "flood" => match body
            .decode::<Value>()
            .ok()
            .and_then(|v| v.get("n").cloned())
        {
            Some(n) => Expect::Exact("ok", json!({ "n": n })),
            None => Expect::Never,
        },
        "bin" => Expect::Bytes(body.clone()),
        _ => Expect::Never,
    }
}

impl Sim {
    pub(super) fn cmd_connect(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        note!(self, u(i), "connect");
        let cl = &mut self.clients[i];
        let before = cl.socket.state();
        cl.socket.connect(now);
        cl.model.on_connect_command(before);
        cl.user_disconnected = false;
        self.after_client(i, Cause::Command("connect"))
    }

    pub(super) fn cmd_disconnect(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        note!(self, u(i), "disconnect");
        let cl = &mut self.clients[i];
        cl.socket.disconnect(now);
        cl.model.on_disconnect_command();
        cl.user_disconnected = true;
        cl.app_connect_at = None;
        self.after_client(i, Cause::Command("disconnect"))
    }

    pub(super) fn cmd_join(
        &mut self,
        i: usize,
        topic: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<ChannelId>, String> {
        let now = self.now();
        let cl = &mut self.clients[i];
        cl.counter += 1;
        let presence = topic.starts_with("presence:");
        let params = if presence {
            json!({ "user": cl.params.user })
        } else {
            json!({ "client": i, "n": cl.counter })
        };
        let mut opts = JoinOptions::default();
        if presence {
            opts = opts.presence();
        }
        if let Some(t) = timeout {
            opts = opts.timeout(t);
        }
        let existing = cl.socket.channel_by_topic(topic);
        let result = cl
            .socket
            .join_with_options(now, topic, payload(&params), opts);
        let id = match result {
            Ok(id) => {
                if existing.is_some() {
                    return Err(format!("a second live channel for {topic}"));
                }
                let t = timeout.unwrap_or(cl.params.timeout);
                cl.model.on_join(id, topic, presence, t)?;
                note!(self, u(i), "join {topic} {params} -> {id}");
                Some(id)
            }
            Err(JoinError::AlreadyJoined { .. }) if existing.is_some() => {
                note!(self, u(i), "join {topic}: already joined");
                None
            }
            Err(e) => return Err(format!("join {topic} refused: {e}")),
        };
        self.after_client(i, Cause::Command("join"))?;
        Ok(id)
    }

    pub(super) fn cmd_push(
        &mut self,
        i: usize,
        ch: ChannelId,
        event: &str,
        body: Payload,
        timeout: Option<Duration>,
    ) -> Result<Option<PushRef>, String> {
        let now = self.now();
        let cl = &mut self.clients[i];
        let stats = cl.socket.stats();
        let view = cl
            .socket
            .channel(ch)
            .ok_or_else(|| format!("push on {ch}, which has ended"))?;
        let (state, topic) = (view.state(), view.topic().to_owned());
        let chan_timeout = cl
            .model
            .chans
            .get(&ch)
            .map_or(cl.params.timeout, |c| c.timeout);
        let expect = expect_for(&topic, event, &body, cl.params.v1);
        let shown = transcript::payload(&body);
        let r = match cl.socket.push(now, ch, event, body, timeout) {
            Ok(r) => {
                let timeout = timeout.unwrap_or(chan_timeout);
                cl.model.on_push(r.get(), ch, event, expect, now, timeout)?;
                self.stats.pushes += 1;
                note!(
                    self,
                    u(i),
                    "push {topic} {event} {shown} timeout {timeout:?} -> ref {r}"
                );
                Some(r)
            }
            Err(e) => {
                let cap = cl.params.send_buffer_capacity;
                let max = cl.params.max_pending_pushes;
                let fine = match &e {
                    PushError::BufferFull { limit } => {
                        *limit == cap && stats.pushes_buffered >= cap
                    }
                    PushError::TooManyPending { limit } => {
                        *limit == max && stats.pushes_pending >= max
                    }
                    PushError::Leaving(_) => state == ChannelState::Leaving,
                    _ => false,
                };
                if !fine {
                    return Err(format!(
                        "push {event} on {topic} refused: {e} ({} buffered, {} pending, {state:?})",
                        stats.pushes_buffered, stats.pushes_pending
                    ));
                }
                note!(self, u(i), "push {topic} {event} {shown}: refused ({e})");
                None
            }
        };
        self.after_client(i, Cause::Command("push"))?;
        Ok(r)
    }

    pub(super) fn cmd_leave(&mut self, i: usize, ch: ChannelId) -> Result<(), String> {
        let now = self.now();
        let cl = &mut self.clients[i];
        let state = cl.socket.channel(ch).map(|v| v.state());
        match cl.socket.leave(now, ch) {
            Ok(()) => note!(self, u(i), "leave {ch}"),
            Err(phx_proto::LeaveError::AlreadyLeaving(_))
                if state == Some(ChannelState::Leaving) =>
            {
                note!(self, u(i), "leave {ch}: already leaving");
            }
            Err(e) => return Err(format!("leave {ch} refused: {e}")),
        }
        self.after_client(i, Cause::Command("leave"))
    }

    /// Client `i` connects.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn connect(&mut self, i: usize) -> Result<(), Failure> {
        self.guard(|s| s.cmd_connect(i))
    }

    /// Client `i` disconnects (its channels end).
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn disconnect(&mut self, i: usize) -> Result<(), Failure> {
        self.guard(|s| s.cmd_disconnect(i))
    }

    /// Client `i` joins `topic` (`presence:*` topics with its `user` and presence tracking);
    /// `None` if it already has a live channel there.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn join(&mut self, i: usize, topic: &str) -> Result<Option<ChannelId>, Failure> {
        self.guard(|s| s.cmd_join(i, topic, None))
    }

    /// Client `i` pushes `event` with a JSON body on `channel`; `None` if the push was refused
    /// (a full buffer, too many pending, a leaving channel).
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn push(
        &mut self,
        i: usize,
        channel: ChannelId,
        event: &str,
        body: &Value,
    ) -> Result<Option<PushRef>, Failure> {
        self.guard(|s| s.cmd_push(i, channel, event, payload(body), None))
    }

    /// Client `i` leaves `channel`.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn leave(&mut self, i: usize, channel: ChannelId) -> Result<(), Failure> {
        self.guard(|s| s.cmd_leave(i, channel))
    }

    /// Client `i`'s credentials expire (the server then refuses it with 403) or are renewed,
    /// in a connect param or in the auth token, as the client sends them.
    pub(super) fn set_token(&mut self, i: usize, expired: bool) -> Result<(), String> {
        let cl = &mut self.clients[i];
        cl.token_expired = expired;
        let token = if expired { "expired" } else { "secret" };
        if cl.params.auth_token {
            cl.socket.set_auth_token(Some(token.to_owned()));
            note!(self, u(i), "set_auth_token {token}");
        } else {
            cl.socket.set_param("token", token);
            note!(self, u(i), "set_param token={token}");
        }
        self.after_client(i, Cause::Command("set_token"))
    }

    pub(super) fn work(&mut self, i: usize) -> Result<(), String> {
        if self.clients[i].user_disconnected && self.rng_work.chance(0.3) {
            return self.cmd_connect(i);
        }
        if self.clients[i].token_expired && self.rng_work.chance(0.1) {
            return self.set_token(i, false);
        }
        let op = self.rng_work.weighted(&[
            (20, Op::Join),
            (5, Op::Leave),
            (50, Op::Push),
            (5, Op::Broadcast),
            (1, Op::Disconnect),
            (2, Op::SetParam),
            (1, Op::Token),
            (2, Op::JoinParams),
        ]);
        let live: Vec<(ChannelId, String, ChannelState)> = self.clients[i]
            .socket
            .channels()
            .map(|v| (v.id(), v.topic().to_owned(), v.state()))
            .collect();
        match op {
            Op::Join => {
                let free: Vec<String> = self.clients[i]
                    .params
                    .topics
                    .iter()
                    .filter(|t| self.clients[i].socket.channel_by_topic(t).is_none())
                    .cloned()
                    .collect();
                // Sometimes join a topic that is already live, to see it refused.
                let topic = if free.is_empty() || self.rng_work.chance(0.05) {
                    self.rng_work.pick(&self.clients[i].params.topics).clone()
                } else {
                    self.rng_work.pick(&free).clone()
                };
                // Never shorter than the slowest round trip, or the channel could never
                // join, even once the network is healthy again.
                let slowest = 2 * (self.options.latency.1 + self.options.jitter);
                let timeout = self.rng_work.chance(0.2).then(|| {
                    self.rng_work
                        .ms(300, 10_000)
                        .max(slowest + Duration::from_millis(50))
                });
                self.cmd_join(i, &topic, timeout).map(drop)
            }
            Op::Leave => {
                let Some(&(id, _, _)) = (!live.is_empty()).then(|| self.rng_work.pick(&live))
                else {
                    return Ok(());
                };
                self.cmd_leave(i, id)
            }
            Op::Push => {
                let Some((id, topic, _)) =
                    (!live.is_empty()).then(|| self.rng_work.pick(&live).clone())
                else {
                    return Ok(());
                };
                let v1 = self.clients[i].params.v1;
                let (event, body) = self.random_push(&topic, v1);
                let timeout = self
                    .rng_work
                    .chance(0.3)
                    .then(|| self.rng_work.ms(200, 6000));
                self.cmd_push(i, id, event, body, timeout).map(drop)
            }
            Op::Broadcast => {
                let topic = self.rng_work.pick(&self.clients[i].params.topics).clone();
                let n = self.rng_work.below(1000);
                let sent = self
                    .server
                    .broadcast(&topic, "news", &payload(&json!({ "n": n })));
                note!(
                    self,
                    format!("app{i}"),
                    "server broadcasts news to {topic} ({sent} subscriber(s))"
                );
                self.drain_server();
                Ok(())
            }
            Op::Disconnect => self.cmd_disconnect(i),
            Op::SetParam => {
                let v = self.rng_work.below(100).to_string();
                note!(self, u(i), "set_param v={v}");
                self.clients[i].socket.set_param("v", &v);
                self.after_client(i, Cause::Command("set_param"))
            }
            Op::Token => {
                let expired = !self.clients[i].token_expired;
                self.set_token(i, expired)
            }
            Op::JoinParams => {
                let Some((id, topic, _)) =
                    (!live.is_empty()).then(|| self.rng_work.pick(&live).clone())
                else {
                    return Ok(());
                };
                let cl = &mut self.clients[i];
                cl.counter += 1;
                let params = if topic.starts_with("presence:") {
                    json!({ "user": cl.params.user, "v": cl.counter })
                } else {
                    json!({ "client": i, "n": cl.counter })
                };
                cl.socket
                    .set_join_params(id, payload(&params))
                    .map_err(|e| format!("set_join_params on {id}: {e}"))?;
                note!(self, u(i), "set_join_params {id} {params}");
                self.after_client(i, Cause::Command("set_join_params"))
            }
        }
    }

    /// An event of the server's channels and a body for it; binary bodies only on V2.
    pub(super) fn random_push(&mut self, topic: &str, v1: bool) -> (&'static str, Payload) {
        let r = &mut self.rng_work;
        let n = r.below(10_000);
        if topic.starts_with("presence:") {
            return if r.chance(0.95) {
                let status = *r.pick(&["online", "away", "busy"]);
                ("update", payload(&json!({ "status": status, "n": n })))
            } else {
                ("ping", payload(&json!({ "n": n })))
            };
        }
        let event = r.weighted(&[
            (25, "ping"),
            (5, "error_reply"),
            (3, "custom_status"),
            (3, "noreply"),
            (8, "slow"),
            (6, "shout"),
            (5, "push_me"),
            (3, "flood"),
            (3, "bin"),
            (2, "bin_push"),
            (3, "broadcast_from"),
            (2, "crash"),
            (1, "stop"),
            (1, "bogus"),
            (1, "disconnect_me"),
        ]);
        let binary = |r: &mut SimRng| {
            let bytes: Vec<u8> = (0..r.range(1, 16)).map(|_| r.below(256) as u8).collect();
            Payload::binary(bytes)
        };
        let body = match event {
            "ping" | "shout" | "bin" if !v1 && r.chance(0.3) => binary(r),
            "slow" => payload(&json!({ "ms": r.below(3000) })),
            "push_me" => payload(&json!({ "event": "note", "payload": { "n": n } })),
            "broadcast_from" => payload(&json!({ "event": "echo", "payload": { "n": n } })),
            "flood" => payload(&json!({ "n": r.range(1, 5) })),
            _ => payload(&json!({ "n": n })),
        };
        (event, body)
    }
}
