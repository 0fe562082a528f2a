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
