//! Golden vectors: every frame recorded from Phoenix 1.8.12 and phoenix.js decodes, and every
//! frame re-encoded from its decoded fields is byte-identical to the recording.

use phx_proto::{Message, Serializer, ServerSerializer, V1Json, V2Json};
use phx_tests::traces::{self, Dir, Entry, Trace};

fn serializers(trace: &Trace) -> (&'static dyn Serializer, &'static dyn ServerSerializer) {
    if trace.name.starts_with("v1_") {
        (&V1Json, &V1Json)
    } else {
        (&V2Json, &V2Json)
    }
}

#[test]
fn every_trace_is_present_and_parses() {
    let all = traces::load_all().expect("traces load from ../shared/traces");
    assert!(
        all.len() >= 12,
        "expected the 12 recorded traces, found {}",
        all.len()
    );
    let frames: usize = all.iter().map(|t| t.frames().count()).sum();
    assert!(frames > 80, "only {frames} frames found");
}

#[test]
fn every_frame_decodes() {
    for trace in traces::load_all().unwrap() {
        let (client, server) = serializers(&trace);
        for (dir, frame, line) in trace.frames() {
            let result = match dir {
                Dir::ToClient => client.decode(frame),
                Dir::ToServer => server.decode_from_client(frame),
            };
            if let Err(e) = result {
                panic!("{}:{line}: {e} in {frame:?}", trace.name);
            }
        }
    }
}

/// Rebuilds a message from its decoded fields only, so the encoder cannot reuse the frame.
fn rebuild(msg: &Message) -> Message {
    let fresh = |s: &phx_proto::ByteStr| phx_proto::ByteStr::from(s.as_str().to_owned());
    let payload = if msg.payload.is_binary() {
        phx_proto::Payload::binary(msg.payload.as_bytes().to_vec())
    } else {
        phx_proto::Payload::from_json(msg.payload.as_bytes().to_vec()).unwrap()
    };
    match &msg.status {
        Some(status) => Message::reply(
            msg.join_ref.as_ref().map(fresh),
            msg.ref_.as_ref().map(fresh),
            fresh(&msg.topic),
            fresh(status),
            payload,
        ),
        None => Message::new(
            msg.join_ref.as_ref().map(fresh),
            msg.ref_.as_ref().map(fresh),
            fresh(&msg.topic),
            fresh(&msg.event),
            payload,
        ),
    }
}

#[test]
fn client_frames_reencode_byte_identical_to_phoenix_js() {
    let mut checked = 0;
    for trace in traces::load_all().unwrap() {
        let (client, server) = serializers(&trace);
        for (dir, frame, line) in trace.frames() {
            if dir != Dir::ToServer {
                continue;
            }
            let msg = rebuild(&server.decode_from_client(frame).unwrap());
            let again = client.encode(&msg).unwrap();
            assert_eq!(&again, frame, "{}:{line}", trace.name);
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} client frames checked");
}

#[test]
fn server_frames_reencode_byte_identical_to_phoenix() {
    let mut checked = 0;
    for trace in traces::load_all().unwrap() {
        let (client, server) = serializers(&trace);
        for (dir, frame, line) in trace.frames() {
            if dir != Dir::ToClient {
                continue;
            }
            let msg = rebuild(&client.decode(frame).unwrap());
            // Broadcasts (no refs, not a reply) take the fastlane encoder, which owns kind 2.
            let again = if msg.join_ref.is_none() && msg.ref_.is_none() && !msg.is_reply() {
                server.encode_broadcast(&msg.topic, &msg.event, &msg.payload)
            } else {
                server.encode_to_client(&msg)
            }
            .unwrap();
            assert_eq!(&again, frame, "{}:{line}", trace.name);
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} server frames checked");
}

#[test]
fn annotations_are_understood() {
    let auth = traces::load_named("auth_token").unwrap();
    assert!(auth.entries.contains(&Entry::Connect {
        target: "/socket/websocket?vsn=2.0.0".into(),
        protocols: Some("phoenix,base64url.bearer.phx.c2VjcmV0".into()),
    }));
    assert!(auth.entries.contains(&Entry::Handshake {
        status: 101,
        protocol: Some("phoenix".into()),
    }));
    let refused = traces::load_named("connect_refused").unwrap();
    assert!(refused.entries.contains(&Entry::Handshake {
        status: 403,
        protocol: None
    }));
    let disconnect = traces::load_named("disconnect").unwrap();
    assert!(disconnect.entries.contains(&Entry::Close {
        dir: Dir::ToClient,
        code: 1001
    }));
}

/// The recorded presence session, replayed into the core with presence tracking: the joiner's
/// own diff arrives before the state and is held, then bob joins and leaves; the view and the
/// reported changes follow the official client. (The trace's refs come from phoenix.js's
/// counter; they are mapped to the refs this client minted.)
#[test]
fn recorded_presence_session_through_the_core() {
    use phx_proto::{Config, Event, Frame, JoinOptions, Payload, PresenceChange, Socket, Transmit};
    use std::collections::BTreeMap;
    use std::time::Instant;

    let trace = traces::load_named("presence").unwrap();
    let now = Instant::now();
    let config = Config::builder("ws://localhost/socket")
        .unwrap()
        .build()
        .unwrap();
    let mut socket = Socket::new(config, now);
    socket.connect(now);
    let Some(Transmit::Connect { conn, .. }) = socket.poll_transmit() else {
        panic!("no connect")
    };
    socket.handle_connected(now, conn);
    let id = socket
        .join_with_options(
            now,
            "presence:lobby",
            Payload::from_json(r#"{"user":"alice"}"#).unwrap(),
            JoinOptions::default().presence(),
        )
        .unwrap();
    let our_join = match socket.poll_transmit() {
        Some(Transmit::Frame(f)) => V2Json.decode_from_client(&f).unwrap(),
        other => panic!("expected the join, got {other:?}"),
    };
    let mut refs = BTreeMap::new();
    let mut changes = Vec::new();
    for (dir, frame, line) in trace.frames() {
        let msg = match dir {
            Dir::ToServer => {
                let m = V2Json.decode_from_client(frame).unwrap();
                if m.event == "phx_join" {
                    refs.insert(m.ref_.unwrap().to_string(), our_join.ref_.clone().unwrap());
                }
                continue;
            }
            Dir::ToClient => V2Json.decode(frame).unwrap(),
        };
        if msg.event == "phx_close" || msg.is_reply() && msg.ref_.as_deref() != Some("5") {
            continue; // the leave at the end is not part of this replay
        }
        let map = |r: &Option<phx_proto::ByteStr>| {
            r.as_ref()
                .map(|r| refs.get(r.as_str()).cloned().unwrap_or_else(|| r.clone()))
        };
        let mut mapped = msg.clone();
        mapped.join_ref = map(&msg.join_ref);
        mapped.ref_ = map(&msg.ref_);
        let frame: Frame = V2Json.encode_to_client(&mapped).unwrap();
        socket
            .handle_frame(now, conn, frame)
            .unwrap_or_else(|e| panic!("line {line}: {e}"));
        while let Some(e) = socket.poll_event() {
            if let Event::Presence { change, .. } = e {
                changes.push(match change {
                    PresenceChange::Join { key, current, .. } => {
                        format!("join {key} (was present: {})", current.is_some())
                    }
                    PresenceChange::Leave { key, current, .. } => {
                        format!("leave {key} (metas left: {})", current.metas.len())
                    }
                    PresenceChange::Sync => "sync".to_owned(),
                    _ => "other".to_owned(),
                });
            }
        }
    }
    assert_eq!(
        changes,
        [
            // The state, then alice's own diff that was held for it (a join that adds nothing
            // new still fires, as in presence.js).
            "join alice (was present: false)",
            "join alice (was present: true)",
            "sync",
            "join bob (was present: false)",
            "sync",
            "leave bob (metas left: 0)",
            "sync",
        ]
    );
    let view = socket.channel(id).unwrap().presence().unwrap();
    let list: Vec<(&str, usize)> = view.list().map(|(k, e)| (k, e.metas.len())).collect();
    assert_eq!(list, [("alice", 1)]);
}
