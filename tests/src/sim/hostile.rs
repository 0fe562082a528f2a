//! Frames the network forges for a client. Each one is something a client must refuse without
//! any visible effect: bytes that do not decode, messages for topics it has no channel for,
//! replies to refs it never sent (or spelled so that a lax parser would match a real one),
//! messages and lifecycle events carrying the join_ref of an earlier join, and messages that
//! arrive before the join reply. They are built when they arrive, from the client's state then,
//! so that "stale" and "early" are true at delivery, and in the client's wire format.

use bytes::Bytes;
use phx_proto::{ChannelState, Frame, Socket};

use super::model::Model;
use super::rng::SimRng;

/// A join ref no client of a run ever mints (runs mint a few thousand refs at most).
const NEVER_MINTED: u64 = 987_654_321;

/// Text frames that are not V2 messages.
const JUNK_V2: [&str; 10] = [
    "",
    "[",
    "[1,2",
    "{}",
    "nope",
    "[null,null]",
    "[null,null,\"room:a\",\"hostile\",{},1]",
    "[null,null,\"room:a\",\"hostile\",{}] trailing",
    "[1,null,\"room:a\",\"hostile\",{}]",
    "[null,null,\"room:a\",\"phx_reply\",{\"status\":1,\"response\":{}}]",
];

/// Text frames that are not V1 messages.
const JUNK_V1: [&str; 8] = [
    "",
    "{",
    "[null,null,\"room:a\",\"hostile\",{}]",
    "nope",
    "{\"topic\":\"room:a\",\"event\":\"hostile\",\"payload\":{}}",
    "{\"topic\":1,\"event\":\"hostile\",\"payload\":{},\"ref\":null}",
    "{\"topic\":\"room:a\",\"event\":\"hostile\",\"payload\":{},\"ref\":null} x",
    "{\"topic\":\"room:a\",\"topic\":\"room:b\",\"event\":\"hostile\",\"payload\":{},\"ref\":null}",
];

/// Writes messages in the client's format: V2 arrays, or V1 objects (with a `join_ref` key
/// when there is one, which the V1 decoder reads).
struct Wire {
    v1: bool,
}

impl Wire {
    fn msg(
        &self,
        join_ref: Option<&str>,
        r: Option<&str>,
        topic: &str,
        event: &str,
        payload: &str,
    ) -> Frame {
        let q = |s: Option<&str>| s.map_or("null".to_owned(), |s| format!("\"{s}\""));
        let text = if self.v1 {
            format!(
                "{{\"join_ref\":{},\"ref\":{},\"topic\":\"{topic}\",\"event\":\"{event}\",\"payload\":{payload}}}",
                q(join_ref),
                q(r)
            )
        } else {
            format!(
                "[{},{},\"{topic}\",\"{event}\",{payload}]",
                q(join_ref),
                q(r)
            )
        };
        Frame::Text(Bytes::from(text))
    }

    fn ok_reply(&self, join_ref: Option<&str>, r: &str, topic: &str) -> Frame {
        let ok = "{\"status\":\"ok\",\"response\":{}}";
        self.msg(join_ref, Some(r), topic, "phx_reply", ok)
    }
}

/// Builds a forged frame for the client of `socket` (which speaks V1 when `v1`), and names
/// what kind it is.
pub(crate) fn forge(seed: u64, socket: &Socket, model: &Model, v1: bool) -> (Frame, &'static str) {
    let w = Wire { v1 };
    let mut rng = SimRng::new(seed);
    let topics: Vec<String> = model.chans.values().map(|c| c.topic.clone()).collect();
    let topic = if topics.is_empty() {
        "room:a".to_owned()
    } else {
        rng.pick(&topics).clone()
    };
    // A join ref of `topic` that is not the current join of any live channel.
    let live_refs: Vec<u64> = socket.channels().filter_map(|v| v.join_ref()).collect();
    let old: Vec<u64> = model
        .join_history
        .get(&topic)
        .map(|refs| {
            refs.iter()
                .copied()
                .filter(|r| !live_refs.contains(r))
                .collect()
        })
        .unwrap_or_default();
    let stale = if old.is_empty() {
        NEVER_MINTED
    } else {
        *rng.pick(&old)
    }
    .to_string();
    let old_ref = stale.as_str();
    let stale = Some(old_ref);
    let n = rng.below(1_000_000);
    match rng.below(11) {
        0 => {
            if rng.chance(0.2) {
                let mut bytes: Vec<u8> = (0..rng.range(1, 12))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                bytes.push(0xff); // never UTF-8
                (Frame::Text(Bytes::from(bytes)), "garbage text")
            } else {
                let junk = if v1 {
                    rng.pick(&JUNK_V1)
                } else {
                    rng.pick(&JUNK_V2)
                };
                (Frame::Text(Bytes::from(junk.to_string())), "malformed text")
            }
        }
        1 => {
            // A kind byte, then lengths that claim more bytes than the frame holds (and V1 has
            // no binary frames at all).
            let kind = *rng.pick(&[0u8, 1, 2, 3, 9]);
            let mut bytes = vec![kind];
            bytes.extend((0..4).map(|_| 200 + rng.below(50) as u8));
            bytes.extend((0..rng.below(8)).map(|_| rng.below(256) as u8));
            if rng.chance(0.1) {
                bytes.clear();
            }
            (Frame::Binary(Bytes::from(bytes)), "malformed binary")
        }
        2 => (
            w.msg(Some("1"), None, &format!("hostile:{n}"), "hostile", "{}"),
            "unknown topic",
        ),
        3 => (
            w.ok_reply(None, &(1_000_000_000_000 + n).to_string(), &topic),
            "reply to a ref never sent",
        ),
        4 => {
            // "0" + a ref the client did mint: equal as a number, not as a ref.
            let r = if live_refs.is_empty() {
                model
                    .join_history
                    .values()
                    .flatten()
                    .last()
                    .copied()
                    .unwrap_or(1)
            } else {
                *rng.pick(&live_refs)
            };
            (
                w.ok_reply(None, &format!("0{r}"), &topic),
                "reply to a zero-padded ref",
            )
        }
        5 => (
            w.msg(
                stale,
                None,
                &topic,
                "hostile_stale",
                &format!("{{\"n\":{n}}}"),
            ),
            "stale message",
        ),
        6 => {
            // On V1 the stale join ref travels in `ref` only, as Phoenix's V1 frames carry it.
            let event = *rng.pick(&["phx_close", "phx_error"]);
            let jr = if v1 { None } else { stale };
            (
                w.msg(jr, stale, &topic, event, "{}"),
                "stale lifecycle event",
            )
        }
        7 => {
            let (event, body) = if rng.chance(0.5) {
                (
                    "presence_state",
                    "{\"mallory\":{\"metas\":[{\"phx_ref\":\"forged\"}]}}",
                )
            } else {
                (
                    "presence_diff",
                    "{\"joins\":{\"mallory\":{\"metas\":[{\"phx_ref\":\"forged\"}]}},\"leaves\":{}}",
                )
            };
            (w.msg(stale, None, &topic, event, body), "stale presence")
        }
        8 => {
            // A broadcast (no join_ref) for a channel that is not joined: never delivered.
            let waiting: Vec<String> = socket
                .channels()
                .filter(|v| matches!(v.state(), ChannelState::Joining | ChannelState::Errored))
                .map(|v| v.topic().to_owned())
                .collect();
            if waiting.is_empty() {
                (
                    w.msg(stale, None, &topic, "hostile_stale", "{}"),
                    "stale message",
                )
            } else {
                let t = rng.pick(&waiting);
                let body = format!("{{\"n\":{n}}}");
                (
                    w.msg(None, None, t, "hostile_early", &body),
                    "message before the join reply",
                )
            }
        }
        9 => (w.ok_reply(stale, old_ref, &topic), "reply to an old join"),
        _ => (
            w.ok_reply(None, &(2_000_000_000_000 + n).to_string(), "phoenix"),
            "heartbeat reply to a ref never sent",
        ),
    }
}

#[cfg(test)]
mod tests {
    use phx_proto::{Serializer, V1Json, V2Json};

    use super::*;

    #[test]
    fn junk_never_decodes() {
        for j in JUNK_V2 {
            assert!(
                V2Json.decode(&Frame::Text(j.into())).is_err(),
                "{j} decodes as V2"
            );
        }
        for j in JUNK_V1 {
            assert!(
                V1Json.decode(&Frame::Text(j.into())).is_err(),
                "{j} decodes as V1"
            );
        }
    }

    #[test]
    fn forged_messages_decode_in_both_formats() {
        for v1 in [false, true] {
            let w = Wire { v1 };
            let ser: &dyn Serializer = if v1 { &V1Json } else { &V2Json };
            let m = ser
                .decode(&w.msg(Some("7"), None, "room:a", "hostile", "{}"))
                .unwrap();
            assert_eq!(
                (m.join_ref.as_deref(), m.event.as_str()),
                (Some("7"), "hostile")
            );
            let r = ser.decode(&w.ok_reply(None, "07", "room:a")).unwrap();
            assert_eq!(
                (r.ref_.as_deref(), r.status.as_deref()),
                (Some("07"), Some("ok"))
            );
        }
    }
}
