//! The channels of the server under test: `room:*` and `presence:*` (table in the
//! [module docs](super)).

use std::time::Duration;

use bytes::Bytes;
use phx_proto::{ByteStr, Message, Payload};
use serde_json::{Map, Value};

use super::presence::{self, Tracked};
use super::{Body, ChanMsg, Channel, ConnId, End, Kind, PresenceOrder, Server, Task, json, reason};

/// Identifies the channel instance a piece of work is for.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) conn: ConnId,
    pub(super) topic: String,
    pub(super) chan: u64,
}

/// What a channel's `join/3` answered.
pub(super) enum JoinResult {
    /// `{:ok, response, socket}`.
    Ok {
        response: Payload,
        presence_key: Option<String>,
    },
    /// `{:error, response}`, or a crash during the join (`join crashed`).
    Error(Payload),
    /// The reply cannot be encoded as JSON (binary params echoed back).
    Unencodable,
}

fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The channel's `join/3`.
pub(super) fn join(kind: Kind, topic: &str, body: &Body) -> JoinResult {
    match kind {
        Kind::Room if topic == "room:forbidden" => JoinResult::Error(reason("unauthorized")),
        Kind::Room => match body {
            Body::Json(params) => JoinResult::Ok {
                response: json::payload(&object([
                    ("joined", Value::from(topic)),
                    ("params", params.clone()),
                ])),
                presence_key: None,
            },
            Body::Binary(_) => JoinResult::Unencodable,
        },
        Kind::Presence => match body {
            Body::Json(Value::Object(params)) => match params.get("user") {
                Some(Value::String(user)) => JoinResult::Ok {
                    response: json::payload(&object([("joined", Value::from(topic))])),
                    presence_key: Some(user.clone()),
                },
                _ => JoinResult::Error(reason("join crashed")),
            },
            _ => JoinResult::Error(reason("join crashed")),
        },
    }
}

/// The payload echoed back: JSON re-encoded, binary as is.
fn echo(body: &Body) -> Payload {
    match body {
        Body::Json(v) => json::payload(v),
        Body::Binary(b) => Payload::binary(b.clone()),
    }
}

/// The bytes of a payload: binary as is, JSON as its encoded text.
fn bytes_of(body: &Body) -> Bytes {
    match body {
        Body::Json(v) => json::to_bytes(v),
        Body::Binary(b) => b.clone(),
    }
}

/// A payload a push or broadcast can carry: an object or binary.
fn pushable(body: &Body) -> Option<Payload> {
    match body {
        Body::Json(v @ Value::Object(_)) => Some(json::payload(v)),
        Body::Json(_) => None,
        Body::Binary(b) => Some(Payload::binary(b.clone())),
    }
}

fn field<'a>(body: &'a Body, name: &str) -> Option<&'a Value> {
    match body {
        Body::Json(Value::Object(m)) => m.get(name),
        _ => None,
    }
}

/// `{"event": E, "payload"?: object}`.
fn event_and_payload(body: &Body) -> Option<(String, Payload)> {
    let event = field(body, "event")?.as_str()?.to_owned();
    let payload = match field(body, "payload") {
        None => Payload::empty(),
        Some(v @ Value::Object(_)) => json::payload(v),
        Some(_) => return None,
    };
    Some((event, payload))
}

impl Server {
    fn chan(&self, ctx: &Ctx) -> Option<&Channel> {
        self.conns
            .get(&ctx.conn)?
            .channels
            .get(&ctx.topic)
            .filter(|ch| ch.id == ctx.chan)
    }

    fn crash(&mut self, ctx: &Ctx) {
        self.end_channel(ctx.conn, &ctx.topic, ctx.chan, End::Error);
    }

    /// Replies to `ref_` from the channel (join_ref = the channel's). A reply that cannot be
    /// encoded crashes the channel.
    fn reply(&mut self, ctx: &Ctx, ref_: Option<ByteStr>, status: &str, payload: Payload) {
        let Some(join_ref) = self.chan(ctx).map(|ch| ch.reply_join_ref.clone()) else {
            return;
        };
        let msg = Message::reply(join_ref, ref_, ctx.topic.as_str(), status, payload);
        if self.send(ctx.conn, &msg).is_err() {
            self.crash(ctx);
        }
    }

    /// Pushes to this channel's client (join_ref set, ref null). A push that cannot be
    /// encoded crashes the channel.
    fn push_event(&mut self, ctx: &Ctx, event: &str, payload: Payload) {
        let Some(join_ref) = self.chan(ctx).map(|ch| ch.reply_join_ref.clone()) else {
            return;
        };
        let msg = Message::new(join_ref, None, ctx.topic.as_str(), event, payload);
        if self.send(ctx.conn, &msg).is_err() {
            self.crash(ctx);
        }
    }

    /// Runs one message in a channel "process".
    pub(super) fn handle_channel(&mut self, ctx: Ctx, msg: ChanMsg) {
        let Some(kind) = self.chan(&ctx).map(|ch| ch.kind) else {
            return;
        };
        match msg {
            ChanMsg::AfterJoin => self.after_join(&ctx),
            ChanMsg::SlowReply { ref_, response } => {
                self.reply(&ctx, ref_, "ok", json::payload(&response));
            }
            ChanMsg::In { ref_, event, body } => {
                if event == "phx_leave" {
                    self.reply(&ctx, ref_, "ok", Payload::empty());
                    self.end_channel(ctx.conn, &ctx.topic, ctx.chan, End::Close);
                    return;
                }
                let handled = match kind {
                    Kind::Room => self.room_event(&ctx, ref_, &event, body),
                    Kind::Presence => self.presence_event(&ctx, ref_, &event, body),
                };
                if handled.is_none() {
                    self.crash(&ctx);
                }
            }
        }
    }

    /// `handle_in/3` of `room:*`; `None` means no clause matched (the channel crashes).
    fn room_event(
        &mut self,
        ctx: &Ctx,
        ref_: Option<ByteStr>,
        event: &str,
        body: Body,
    ) -> Option<()> {
        match event {
            "ping" => self.reply(ctx, ref_, "ok", echo(&body)),
            "error_reply" => self.reply(ctx, ref_, "error", reason("nope")),
            "custom_status" => self.reply(ctx, ref_, "custom", echo(&body)),
            "noreply" => {}
            "slow" => {
                let ms = field(&body, "ms")?.as_u64()?;
                let Body::Json(response) = body else {
                    return None;
                };
                // A deadline past the end of time never fires.
                if let Some(at) = self
                    .now
                    .and_then(|now| now.checked_add(Duration::from_millis(ms)))
                {
                    let seq = self.next_id();
                    let task = Task::Deliver {
                        conn: ctx.conn,
                        topic: ctx.topic.clone(),
                        chan: ctx.chan,
                        msg: ChanMsg::SlowReply { ref_, response },
                    };
                    self.timers.insert((at, seq), task);
                }
            }
            "shout" => {
                let payload = pushable(&body)?;
                self.fanout(&ctx.topic, "shout", &payload, None);
            }
            "broadcast_from" => {
                let (event, payload) = event_and_payload(&body)?;
                self.fanout(&ctx.topic, &event, &payload, Some(ctx.conn));
                self.reply(ctx, ref_, "ok", Payload::empty());
            }
            "push_me" => {
                let (event, payload) = event_and_payload(&body)?;
                self.push_event(ctx, &event, payload);
                self.reply(ctx, ref_, "ok", Payload::empty());
            }
            "flood" => {
                let n = field(&body, "n")?.as_u64()?;
                if n > self.config.max_flood {
                    return None;
                }
                let event = match field(&body, "event") {
                    None => "flood".to_owned(),
                    Some(Value::String(e)) => e.clone(),
                    Some(_) => return None,
                };
                for i in 1..=n {
                    let payload = Payload::from_json(format!("{{\"i\":{i}}}")).ok()?;
                    self.push_event(ctx, &event, payload);
                    if self.chan(ctx).is_none() {
                        return Some(());
                    }
                }
                let response = json::payload(&object([("n", Value::from(n))]));
                self.reply(ctx, ref_, "ok", response);
            }
            "bin" => self.reply(ctx, ref_, "ok", Payload::binary(bytes_of(&body))),
            "bin_push" => {
                self.push_event(ctx, "bin_push", Payload::binary(bytes_of(&body)));
                self.reply(ctx, ref_, "ok", Payload::empty());
            }
            "bin_shout" => {
                let payload = Payload::binary(bytes_of(&body));
                self.fanout(&ctx.topic, "bin_shout", &payload, None);
                self.reply(ctx, ref_, "ok", Payload::empty());
            }
            "stop" => self.end_channel(ctx.conn, &ctx.topic, ctx.chan, End::Close),
            "disconnect_me" => self.disconnect_socket(ctx.conn),
            _ => return None,
        }
        Some(())
    }

    /// `handle_in/3` of `presence:*`.
    fn presence_event(
        &mut self,
        ctx: &Ctx,
        ref_: Option<ByteStr>,
        event: &str,
        body: Body,
    ) -> Option<()> {
        match event {
            "update" => {
                let Body::Json(Value::Object(mut meta)) = body else {
                    return None;
                };
                let Some(old) = self.presences.get_mut(&ctx.topic, ctx.chan).cloned() else {
                    self.reply(ctx, ref_, "error", reason("not tracked"));
                    return Some(());
                };
                let phx_ref = self.mint_ref();
                meta.insert("phx_ref".to_owned(), Value::from(phx_ref));
                let prev = old.meta.get("phx_ref").cloned().unwrap_or(Value::Null);
                meta.insert("phx_ref_prev".to_owned(), prev);
                let new = Tracked {
                    chan: old.chan,
                    key: old.key.clone(),
                    meta,
                };
                if let Some(t) = self.presences.get_mut(&ctx.topic, ctx.chan) {
                    *t = new.clone();
                }
                let diff = json::payload(&presence::diff(&[new], &[old]));
                self.fanout(&ctx.topic, "presence_diff", &diff, None);
                self.reply(ctx, ref_, "ok", Payload::empty());
                Some(())
            }
            _ => None,
        }
    }

    fn mint_ref(&mut self) -> String {
        let nanos = u64::try_from(self.since_start().as_nanos()).unwrap_or(u64::MAX);
        self.presences.mint_ref(nanos)
    }

    /// The `:after_join` of `presence:*`: track, broadcast the join, push the state.
    fn after_join(&mut self, ctx: &Ctx) {
        let Some(key) = self.chan(ctx).and_then(|ch| ch.presence_key.clone()) else {
            return;
        };
        let online_at = self
            .config
            .unix_time_at_start
            .saturating_add(self.since_start().as_secs());
        let phx_ref = self.mint_ref();
        let mut meta = Map::new();
        meta.insert("online_at".to_owned(), Value::from(online_at));
        meta.insert("phx_ref".to_owned(), Value::from(phx_ref));
        let tracked = Tracked {
            chan: ctx.chan,
            key,
            meta,
        };
        self.presences.track(&ctx.topic, tracked.clone());
        let diff = json::payload(&presence::diff(&[tracked], &[]));
        let state = json::payload(&self.presences.list(&ctx.topic));
        match self.config.presence_order {
            PresenceOrder::DiffFirst => {
                self.fanout(&ctx.topic, "presence_diff", &diff, None);
                self.push_event(ctx, "presence_state", state);
            }
            PresenceOrder::StateFirst => {
                self.push_event(ctx, "presence_state", state);
                self.fanout(&ctx.topic, "presence_diff", &diff, None);
            }
        }
    }

    /// A `disconnect` broadcast to the socket id of `conn`: every connection with that id
    /// closes.
    fn disconnect_socket(&mut self, conn: ConnId) {
        let Some(id) = self.conns.get(&conn).and_then(|c| c.socket_id.clone()) else {
            return;
        };
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.socket_id.as_deref() == Some(id.as_str()))
            .map(|(&k, _)| k)
            .collect();
        let code = self.config.disconnect_close_code;
        for target in targets {
            self.close(target, code, "");
        }
    }
}
