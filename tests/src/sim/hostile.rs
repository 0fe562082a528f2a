//! Frames the network forges for a client. Each one is something a client must refuse without
//! any visible effect: bytes that do not decode, messages for topics it has no channel for,
//! replies to refs it never sent (or spelled so that a lax parser would match a real one),
//! messages and lifecycle events carrying the join_ref of an earlier join, and messages that
//! arrive before the join reply. They are built when they arrive, from the client's state then,
//! so that "stale" and "early" are true at delivery.

use bytes::Bytes;
use phx_proto::{ChannelState, Frame, Socket};

use super::model::Model;
use super::rng::SimRng;

/// A join ref no client of a run ever mints (runs mint a few thousand refs at most).
const NEVER_MINTED: u64 = 987_654_321;

/// Text frames that are not V2 messages.
const JUNK: [&str; 10] = [
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

fn text(s: String) -> Frame {
    Frame::Text(Bytes::from(s))
}

/// Builds a forged frame for the client of `socket`, and names what kind it is.
pub(crate) fn forge(seed: u64, socket: &Socket, model: &Model) -> (Frame, &'static str) {
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
    };
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
                (text(rng.pick(&JUNK).to_string()), "malformed text")
            }
        }
        1 => {
            // A kind byte, then lengths that claim more bytes than the frame holds.
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
            text(format!("[\"1\",null,\"hostile:{n}\",\"hostile\",{{}}]")),
            "unknown topic",
        ),
        3 => (
            text(format!(
                "[null,\"{}\",\"{topic}\",\"phx_reply\",{{\"status\":\"ok\",\"response\":{{}}}}]",
                1_000_000_000_000 + n
            )),
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
                text(format!(
                    "[null,\"0{r}\",\"{topic}\",\"phx_reply\",{{\"status\":\"ok\",\"response\":{{}}}}]"
                )),
                "reply to a zero-padded ref",
            )
        }
        5 => (
            text(format!(
                "[\"{stale}\",null,\"{topic}\",\"hostile_stale\",{{\"n\":{n}}}]"
            )),
            "stale message",
        ),
        6 => {
            let event = *rng.pick(&["phx_close", "phx_error"]);
            (
                text(format!(
                    "[\"{stale}\",\"{stale}\",\"{topic}\",\"{event}\",{{}}]"
                )),
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
            (
                text(format!("[\"{stale}\",null,\"{topic}\",\"{event}\",{body}]")),
                "stale presence",
            )
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
                    text(format!(
                        "[\"{stale}\",null,\"{topic}\",\"hostile_stale\",{{}}]"
                    )),
                    "stale message",
                )
            } else {
                let t = rng.pick(&waiting);
                (
                    text(format!(
                        "[null,null,\"{t}\",\"hostile_early\",{{\"n\":{n}}}]"
                    )),
                    "message before the join reply",
                )
            }
        }
        9 => (
            text(format!(
                "[\"{stale}\",\"{stale}\",\"{topic}\",\"phx_reply\",{{\"status\":\"ok\",\"response\":{{}}}}]"
            )),
            "reply to an old join",
        ),
        _ => (
            text(format!(
                "[null,\"{}\",\"phoenix\",\"phx_reply\",{{\"status\":\"ok\",\"response\":{{}}}}]",
                2_000_000_000_000 + n
            )),
            "heartbeat reply to a ref never sent",
        ),
    }
}

#[cfg(test)]
mod tests {
    use phx_proto::{Serializer, V2Json};

    use super::*;

    #[test]
    fn junk_never_decodes() {
        for j in JUNK {
            let f = text(j.to_owned());
            assert!(V2Json.decode(&f).is_err(), "{j} decodes");
        }
    }
}
