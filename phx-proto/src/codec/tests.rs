use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::payload::PayloadKind;

fn text(s: &str) -> Frame {
    Frame::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn hex(s: &str) -> Frame {
    let clean: String = s.split_whitespace().collect();
    let bytes = (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    Frame::Binary(Bytes::from(bytes))
}

fn s(v: &str) -> Option<ByteStr> {
    Some(ByteStr::from(v))
}

// PROTOCOL.md §3.5, worked bytes.
const C2S_PUSH: &str = "00 01 01 06 04 31 32 72 6f 6f 6d 3a 31 70 69 6e 67 01 02";
const S2C_PUSH: &str = "00 01 06 04 31 72 6f 6f 6d 3a 31 62 6c 6f 62 ff";
const S2C_REPLY: &str = "01 01 01 06 02 31 32 72 6f 6f 6d 3a 31 6f 6b 00 ff";
const S2C_BCAST: &str = "02 06 04 72 6f 6f 6d 3a 31 62 6c 6f 62 ab";

#[test]
fn binary_client_push_matches_the_protocol_bytes() {
    let msg = Message::new(
        s("1"),
        s("2"),
        "room:1",
        "ping",
        Payload::binary(vec![1u8, 2]),
    );
    assert_eq!(V2Json.encode(&msg).unwrap(), hex(C2S_PUSH));
    assert_eq!(V2Json.decode_from_client(&hex(C2S_PUSH)).unwrap(), msg);
}

#[test]
fn binary_server_push_has_no_ref() {
    let msg = V2Json.decode(&hex(S2C_PUSH)).unwrap();
    assert_eq!(msg.join_ref, s("1"));
    assert_eq!(msg.ref_, None);
    assert_eq!(msg.topic, "room:1");
    assert_eq!(msg.event, "blob");
    assert_eq!(msg.payload, Payload::binary(vec![0xffu8]));
    assert_eq!(V2Json.encode_to_client(&msg).unwrap(), hex(S2C_PUSH));
}

#[test]
fn binary_reply_carries_status_in_the_event_slot() {
    let msg = V2Json.decode(&hex(S2C_REPLY)).unwrap();
    assert_eq!(
        (msg.join_ref.as_deref(), msg.ref_.as_deref()),
        (Some("1"), Some("2"))
    );
    assert_eq!(msg.event, PHX_REPLY);
    assert_eq!(msg.status.as_deref(), Some("ok"));
    assert_eq!(msg.payload, Payload::binary(vec![0u8, 0xff]));
    assert_eq!(V2Json.encode_to_client(&msg).unwrap(), hex(S2C_REPLY));
}

#[test]
fn binary_broadcast_has_no_refs() {
    let msg = V2Json.decode(&hex(S2C_BCAST)).unwrap();
    assert_eq!((msg.join_ref.clone(), msg.ref_.clone()), (None, None));
    assert_eq!((msg.topic.as_str(), msg.event.as_str()), ("room:1", "blob"));
    assert_eq!(
        V2Json
            .encode_broadcast("room:1", "blob", &Payload::binary(vec![0xabu8]))
            .unwrap(),
        hex(S2C_BCAST)
    );
}

#[test]
fn binary_fields_are_utf8_bytes_not_chars() {
    // "é" is two UTF-8 bytes: the length prefix must say 2 per field.
    let msg = Message::new(s("1"), s("2"), "salle:é", "é", Payload::binary(vec![7u8]));
    let Frame::Binary(b) = V2Json.encode(&msg).unwrap() else {
        panic!("binary payload must give a binary frame")
    };
    assert_eq!(&b[..5], &[0, 1, 1, 8, 2]);
    assert_eq!(V2Json.decode_from_client(&Frame::Binary(b)).unwrap(), msg);
}

#[test]
fn zero_length_join_ref_is_absent_from_a_server_but_empty_from_a_client() {
    // Server push with J=0.
    let from_server = V2Json.decode(&hex("00 00 01 01 74 65 ff")).unwrap();
    assert_eq!(from_server.join_ref, None);
    // Client push with J=0, R=0: Phoenix reads "" (not nil).
    let from_client = V2Json
        .decode_from_client(&hex("00 00 00 01 01 74 65 ff"))
        .unwrap();
    assert_eq!(from_client.join_ref, s(""));
    assert_eq!(from_client.ref_, s(""));
}

#[test]
fn binary_field_over_255_bytes_is_an_encode_error() {
    let long = "t".repeat(256);
    let msg = Message::new(s("1"), s("2"), long.as_str(), "e", Payload::binary(vec![]));
    assert_eq!(
        V2Json.encode(&msg),
        Err(EncodeError::FieldTooLong {
            field: "topic",
            len: 256
        })
    );
    let ok = Message::new(
        s("1"),
        s("2"),
        "t".repeat(255).as_str(),
        "e",
        Payload::binary(vec![]),
    );
    assert!(V2Json.encode(&ok).is_ok());
    assert_eq!(
        V2Json.encode_broadcast("r", &"e".repeat(300), &Payload::binary(vec![])),
        Err(EncodeError::FieldTooLong {
            field: "event",
            len: 300
        })
    );
}

#[test]
fn binary_decode_errors_name_the_fault() {
    assert_eq!(
        V2Json.decode(&hex("07 00")),
        Err(DecodeError::BinaryKind {
            kind: 7,
            expected: "0, 1 or 2"
        })
    );
    assert_eq!(
        V2Json.decode(&hex("01 01 01")),
        Err(DecodeError::Truncated {
            field: "header",
            needed: 5,
            len: 3
        })
    );
    assert_eq!(
        V2Json.decode(&hex("02 09 01 72 6f")),
        Err(DecodeError::Truncated {
            field: "topic",
            needed: 12,
            len: 5
        })
    );
    assert_eq!(
        V2Json.decode(&hex("02 01 01 ff 65")),
        Err(DecodeError::InvalidUtf8 { field: "topic" })
    );
    assert_eq!(
        V2Json.decode_from_client(&hex("02 01 01 72 65")),
        Err(DecodeError::BinaryKind {
            kind: 2,
            expected: "0"
        })
    );
    assert_eq!(
        V2Json.decode(&Frame::Binary(Bytes::new())),
        Err(DecodeError::Empty)
    );
}

#[test]
fn v2_text_examples_from_the_protocol_decode() {
    let msg = V2Json
        .decode(&text(
            r#"["3","4","room:lobby","phx_reply",{"status":"ok","response":{"id":9}}]"#,
        ))
        .unwrap();
    assert_eq!(msg.status.as_deref(), Some("ok"));
    assert_eq!(msg.payload.as_bytes().as_ref(), br#"{"id":9}"#);

    let bcast = V2Json
        .decode(&text(r#"[null,null,"room:lobby","new_msg",{"body":"hi"}]"#))
        .unwrap();
    assert_eq!((bcast.join_ref, bcast.ref_), (None, None));
    assert_eq!(bcast.payload.as_bytes().as_ref(), br#"{"body":"hi"}"#);
    assert_eq!(bcast.status, None);

    let close = V2Json
        .decode(&text(r#"["3","3","room:lobby","phx_close",{}]"#))
        .unwrap();
    assert_eq!(close.ref_, s("3"));
    assert!(!close.is_reply());
}

#[test]
fn v2_payload_and_long_fields_are_slices_of_the_frame_not_copies() {
    let topic = "room:a-topic-longer-than-23-bytes";
    let frame = text(&format!(r#"["1",null,"{topic}","e",{{"big":[1,2,3]}}]"#));
    let msg = V2Json.decode(&frame).unwrap();
    let payload = msg.payload.as_bytes();
    let base = frame.as_bytes().as_ptr() as usize;
    let at = payload.as_ptr() as usize;
    assert!(at >= base && at + payload.len() <= base + frame.len());
    assert_eq!(msg.topic, topic);
    assert_eq!(msg.topic.as_bytes().as_ptr() as usize, base + 11);
    // Short fields are copied (cheaper than a reference to the frame).
    assert_eq!(msg.event, "e");
    assert_ne!(
        msg.event.as_bytes().as_ptr() as usize,
        base + 14 + topic.len()
    );
}

#[test]
fn v2_escaped_strings_are_unescaped() {
    let msg = V2Json
        .decode(&text(r#"[null,null,"room:\"q\"","ev\u00e9nt",{}]"#))
        .unwrap();
    assert_eq!(msg.topic, "room:\"q\"");
    assert_eq!(msg.event, "evént");
    // and written back identically to JSON.stringify
    let out = V2Json.encode(&msg).unwrap();
    assert_eq!(out, text(r#"[null,null,"room:\"q\"","evént",{}]"#));
}

#[test]
fn v2_text_decode_errors_name_the_fault() {
    let cases: &[(&str, DecodeError)] = &[
        ("", DecodeError::Empty),
        (
            "{}",
            DecodeError::NotEnvelope {
                expected: "a JSON array",
                found: "an object",
            },
        ),
        ("[]", DecodeError::Arity { found: 0 }),
        (r#"[null,null,"t","e"]"#, DecodeError::Arity { found: 4 }),
        (
            r#"[null,null,"t","e",{},1,2]"#,
            DecodeError::Arity { found: 7 },
        ),
        (
            r#"[null,null,5,"e",{}]"#,
            DecodeError::FieldType {
                field: "topic",
                expected: "a string",
                found: "a number",
                offset: 11,
            },
        ),
        (
            r#"[1,null,"t","e",{}]"#,
            DecodeError::FieldType {
                field: "join_ref",
                expected: "a string or null",
                found: "a number",
                offset: 1,
            },
        ),
        (
            r#"[null,null,"t","phx_reply",{"response":{}}]"#,
            DecodeError::MissingField { field: "status" },
        ),
        (
            r#"[null,null,"t","phx_reply",[]]"#,
            DecodeError::FieldType {
                field: "payload",
                expected: "a reply object",
                found: "an array",
                offset: 27,
            },
        ),
        (
            r#"[null,null,"t","e",{}] x"#,
            DecodeError::Trailing { offset: 23 },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&V2Json.decode(&text(input)).unwrap_err(), want, "{input}");
    }
    assert!(matches!(
        V2Json.decode(&text(r#"[null,null,"t","e",{"a":}]"#)),
        Err(DecodeError::Syntax { .. })
    ));
    assert!(matches!(
        V2Json.decode(&Frame::Text(Bytes::from_static(
            b"[null,null,\"\xff\",\"e\",{}]"
        ))),
        Err(DecodeError::InvalidUtf8 { field: "topic" })
    ));
}

/// Decodes with the payload check deferred, then checks: what a consumer of such a message
/// ends up with.
fn decode_then_check(frame: &Frame) -> Result<Message, DecodeError> {
    let mut msg = V2Json.decode_deferred(frame)?;
    msg.payload.check()?;
    Ok(msg)
}

#[test]
fn v2_envelopes_with_white_space_decode_as_compact_ones_do() {
    let compact = V2Json
        .decode(&text(r#"["1","2","t","e",{"a":1}]"#))
        .unwrap();
    for spaced in [
        r#" ["1","2","t","e",{"a":1}]"#,
        r#"[ "1","2","t","e",{"a":1}]"#,
        " \n[ \"1\" ,\"2\", \"t\",\t\"e\" , {\"a\":1} ] ",
    ] {
        assert_eq!(V2Json.decode(&text(spaced)).unwrap(), compact, "{spaced:?}");
    }
}

#[test]
fn v2_deferred_decode_delimits_the_payload_and_the_check_reads_it() {
    let msg = V2Json
        .decode_deferred(&text(r#"[null,null,"t","e", {"a":[1,2]} ]"#))
        .unwrap();
    assert!(!msg.payload.is_checked());
    assert_eq!(msg.payload.as_bytes().as_ref(), br#"{"a":[1,2]}"#);
    let mut checked = msg.clone();
    checked.payload.check().unwrap();
    assert!(checked.payload.is_checked());
    assert_eq!(checked, msg, "checking changes nothing but the flag");
    // Replies are read whole: their status and response are needed at once.
    let reply = V2Json
        .decode_deferred(&text(
            r#"["1","2","t","phx_reply",{"response":{},"status":"ok"}]"#,
        ))
        .unwrap();
    assert!(reply.payload.is_checked());
    // Binary frames carry no JSON.
    assert!(
        V2Json
            .decode_deferred(&hex(S2C_BCAST))
            .unwrap()
            .payload
            .is_checked()
    );
    // What a full decode refuses in the payload, the check refuses.
    for bad in [
        r#"[null,null,"t","e",{"a":}]"#,
        r#"[null,null,"t","e",{},1,2]"#,
        r#"[null,null,"t","e",{"a":"]"]"#,
        r#"[null,null,"t","e",[[]]]]"#,
    ] {
        assert!(V2Json.decode(&text(bad)).is_err(), "{bad}");
        let mut msg = V2Json.decode_deferred(&text(bad)).unwrap();
        assert!(msg.payload.check().is_err(), "{bad}");
        assert!(!msg.payload.is_checked(), "{bad}");
    }
    // The envelope is checked at once, with the errors of a full decode.
    for bad in [
        "",
        "{}",
        r#"[null,null,5,"e",{}]"#,
        r#"[null,null,"t","e"]"#,
        r#"[null,null,"t","e",]"#,
        r#"[null,null,"t","e", ]"#,
        r#"[null,null,"t","e",{}] x"#,
        r#"[null,null,"t","e",{}"#,
        r#"[null,null,"t","phx_reply",{"response":{}}]"#,
    ] {
        assert_eq!(
            V2Json.decode_deferred(&text(bad)).unwrap_err(),
            V2Json.decode(&text(bad)).unwrap_err(),
            "{bad}"
        );
    }
}

#[test]
fn reply_status_may_be_any_string() {
    let msg = V2Json
        .decode(&text(
            r#"[null,"9","t","phx_reply",{"response":null,"extra":1,"status":"custom"}]"#,
        ))
        .unwrap();
    assert_eq!(msg.status.as_deref(), Some("custom"));
    assert_eq!(msg.payload.as_bytes().as_ref(), b"null");
}

#[test]
fn v2_client_frames_are_written_as_phoenix_js_writes_them() {
    let msg = Message::new(None, s("10"), "phoenix", "heartbeat", Payload::empty());
    assert_eq!(
        V2Json.encode(&msg).unwrap(),
        text(r#"[null,"10","phoenix","heartbeat",{}]"#)
    );
    let reply = Message::reply(s("1"), s("2"), "t", "ok", Payload::empty());
    assert_eq!(V2Json.encode(&reply), Err(EncodeError::ClientReply));
    assert_eq!(
        V2Json.encode_to_client(&reply).unwrap(),
        text(r#"["1","2","t","phx_reply",{"response":{},"status":"ok"}]"#)
    );
}

#[test]
fn v1_objects_decode_in_any_key_order() {
    let msg = V1Json
        .decode(&text(
            r#"{"event":"phx_reply","payload":{"response":{"a":1},"status":"ok"},"ref":"6","topic":"room:lobby"}"#,
        ))
        .unwrap();
    assert_eq!(msg.ref_, s("6"));
    assert_eq!(msg.join_ref, None);
    assert_eq!(msg.status.as_deref(), Some("ok"));
    assert_eq!(msg.payload.as_bytes().as_ref(), br#"{"a":1}"#);

    let close = V1Json
        .decode(&text(
            r#"{"topic":"t","ref":null,"payload":{},"event":"phx_close"}"#,
        ))
        .unwrap();
    assert_eq!(close.event, "phx_close");
    assert_eq!(close.ref_, None);
}

#[test]
fn v1_encodes_as_the_trace_shows_and_refuses_binary() {
    let msg = Message::new(None, s("5"), "room:lobby", "phx_join", Payload::empty());
    assert_eq!(
        V1Json.encode(&msg).unwrap(),
        text(r#"{"topic":"room:lobby","event":"phx_join","payload":{},"ref":"5"}"#)
    );
    let with_join_ref = Message::new(s("5"), s("6"), "t", "e", Payload::empty());
    assert_eq!(
        V1Json.encode(&with_join_ref).unwrap(),
        text(r#"{"topic":"t","event":"e","payload":{},"ref":"6","join_ref":"5"}"#)
    );
    let bin = Message::new(None, s("1"), "t", "e", Payload::binary(vec![1u8]));
    assert!(matches!(
        V1Json.encode(&bin),
        Err(EncodeError::BinaryUnsupported { .. })
    ));
    assert!(matches!(
        V1Json.decode(&hex("02 01 01 72 65")),
        Err(DecodeError::BinaryUnsupported { .. })
    ));
}

#[test]
fn v1_decode_errors_name_the_fault() {
    let cases: &[(&str, DecodeError)] = &[
        (
            "[]",
            DecodeError::NotEnvelope {
                expected: "a JSON object",
                found: "an array",
            },
        ),
        (
            r#"{"topic":"t","event":"e","payload":{}}"#,
            DecodeError::MissingField { field: "ref" },
        ),
        (
            r#"{"topic":"t","topic":"u","event":"e","payload":{},"ref":null}"#,
            DecodeError::DuplicateField {
                field: "topic",
                offset: 13,
            },
        ),
        (
            r#"{"topic":1,"event":"e","payload":{},"ref":null}"#,
            DecodeError::FieldType {
                field: "topic",
                expected: "a string",
                found: "a number",
                offset: 9,
            },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&V1Json.decode(&text(input)).unwrap_err(), want, "{input}");
    }
}

fn arb_str(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

/// Any char string whose UTF-8 encoding fits a binary length byte.
fn arb_field() -> impl Strategy<Value = String> {
    arb_str(40).prop_filter("fits 255 bytes", |s| s.len() <= 255)
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        arb_str(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(arb_str(8), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        arb_json().prop_map(|v| Payload::json(&v).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Payload::binary),
    ]
}

/// An envelope field: plain ASCII, as Phoenix's topics, events and refs nearly always are,
/// or any string.
fn envelope_field() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9:_/ -]{0,16}", 1 => arb_field()]
}

fn opt_field() -> impl Strategy<Value = Option<ByteStr>> {
    proptest::option::of(arb_field().prop_map(ByteStr::from))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v2_client_messages_round_trip(
        join_ref in opt_field(), ref_ in opt_field(),
        topic in arb_field(), event in arb_field(), payload in arb_payload(),
    ) {
        let msg = Message::new(join_ref, ref_, topic.as_str(), event.as_str(), payload.clone());
        let frame = V2Json.encode(&msg).unwrap();
        let back = V2Json.decode_from_client(&frame).unwrap();
        prop_assert_eq!(&back.topic, &msg.topic);
        prop_assert_eq!(&back.event, &msg.event);
        prop_assert_eq!(&back.payload, &payload);
        if payload.kind() == PayloadKind::Binary {
            // Binary frames have no null: absent refs come back as "".
            prop_assert_eq!(back.join_ref.unwrap_or_default(), msg.join_ref.unwrap_or_default());
            prop_assert_eq!(back.ref_.unwrap_or_default(), msg.ref_.unwrap_or_default());
        } else {
            prop_assert_eq!(back.join_ref, msg.join_ref);
            prop_assert_eq!(back.ref_, msg.ref_);
        }
    }

    #[test]
    fn outgoing_messages_encode_as_the_same_message_does(
        join_ref in proptest::option::of(any::<u64>()), ref_ in any::<u64>(),
        topic in arb_str(300), event in arb_str(300), payload in arb_payload(),
    ) {
        let topic = ByteStr::from(topic.as_str());
        let out = Outgoing { join_ref, ref_, topic: &topic, event: &event, payload: &payload };
        let msg = out.to_message();
        prop_assert_eq!(msg.ref_.as_ref().map(ToString::to_string), Some(ref_.to_string()));
        prop_assert_eq!(msg.join_ref.as_ref().map(ToString::to_string), join_ref.map(|r| r.to_string()));
        prop_assert_eq!(V2Json.encode_outgoing(&out), V2Json.encode(&msg));
        prop_assert_eq!(V1Json.encode_outgoing(&out), V1Json.encode(&msg));
    }

    #[test]
    fn v2_server_messages_round_trip(
        join_ref in opt_field(), ref_ in opt_field(), topic in arb_field(),
        event in arb_field(), status in proptest::option::of(arb_field()), payload in arb_payload(),
    ) {
        // A server push has no ref in binary form; a non-empty join_ref survives.
        let join_ref = join_ref.filter(|j| !j.is_empty());
        let ref_ = ref_.filter(|r| !r.is_empty());
        let msg = match status {
            Some(status) => Message::reply(join_ref, ref_, topic.as_str(), status.as_str(), payload),
            None => {
                let ref_ = if payload.is_binary() { None } else { ref_ };
                let event = if event == PHX_REPLY { "not_a_reply".to_owned() } else { event };
                Message::new(join_ref, ref_, topic.as_str(), event.as_str(), payload)
            }
        };
        let frame = V2Json.encode_to_client(&msg).unwrap();
        prop_assert_eq!(V2Json.decode(&frame).unwrap(), msg);
    }

    #[test]
    fn v2_broadcasts_round_trip(topic in arb_field(), event in arb_field(), payload in arb_payload()) {
        prop_assume!(event != PHX_REPLY);
        let frame = V2Json.encode_broadcast(&topic, &event, &payload).unwrap();
        let msg = V2Json.decode(&frame).unwrap();
        prop_assert_eq!(msg, Message::new(None, None, topic.as_str(), event.as_str(), payload));
    }

    #[test]
    fn v1_messages_round_trip_both_ways(
        join_ref in opt_field(), ref_ in opt_field(), topic in arb_field(),
        event in arb_field(), status in proptest::option::of(arb_field()), value in arb_json(),
    ) {
        let payload = Payload::json(&value).unwrap();
        let msg = Message::new(join_ref, ref_.clone(), topic.as_str(), event.as_str(), payload.clone());
        let frame = V1Json.encode(&msg).unwrap();
        prop_assert_eq!(V1Json.decode_from_client(&frame).unwrap(), msg);

        let server_msg = match status {
            Some(status) => Message::reply(None, ref_, topic.as_str(), status.as_str(), payload),
            None => {
                let event = if event == PHX_REPLY { "x".to_owned() } else { event };
                Message::new(None, ref_, topic.as_str(), event.as_str(), payload)
            }
        };
        let frame = V1Json.encode_to_client(&server_msg).unwrap();
        prop_assert_eq!(V1Json.decode(&frame).unwrap(), server_msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let b = Bytes::from(bytes);
        for frame in [Frame::Text(b.clone()), Frame::Binary(b)] {
            let _ = V2Json.decode(&frame);
            prop_assert_eq!(V2Json.decode(&frame).ok(), decode_then_check(&frame).ok());
            let _ = V2Json.decode_from_client(&frame);
            let _ = V1Json.decode(&frame);
            let _ = V1Json.decode_from_client(&frame);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        value in arb_json(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let payload = Payload::json(&value).unwrap();
        for frame in [
            V2Json.encode_to_client(&Message::reply(None, Some("1".into()), "t", "ok", payload.clone())).unwrap(),
            V1Json.encode_to_client(&Message::reply(None, Some("1".into()), "t", "ok", payload.clone())).unwrap(),
        ] {
            let bytes = frame.as_bytes();
            let mut v = bytes.to_vec();
            let i = flip.index(v.len());
            v[i] = byte;
            v.truncate(cut.index(v.len() + 1));
            let f = Frame::Text(Bytes::from(v));
            let _ = V2Json.decode(&f);
            let _ = V1Json.decode(&f);
        }
    }

    #[test]
    fn a_deferred_check_fails_exactly_when_a_full_decode_does(
        value in arb_json(),
        event in prop_oneof![Just("e"), Just("phx_reply")],
        tail in prop_oneof![Just(""), Just(" "), Just(",1"), Just("]"), Just("}"), Just(" ,{}")],
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in prop_oneof![
            Just(b'['), Just(b']'), Just(b'{'), Just(b'}'), Just(b','), Just(b'"'),
            Just(b' '), Just(b':'), Just(b'\\'), any::<u8>(),
        ],
        mutate in 0..3u8,
    ) {
        let payload = Payload::json(&value).unwrap();
        let body = if event == "phx_reply" {
            format!(r#"{{"response":{},"status":"ok"}}"#, payload.as_json_str().unwrap())
        } else {
            payload.as_json_str().unwrap().to_owned()
        };
        let mut v = format!(r#"["1","2","t","{event}",{body}{tail}]"#).into_bytes();
        if mutate > 0 {
            let i = flip.index(v.len());
            v[i] = byte;
        }
        if mutate > 1 {
            v.truncate(cut.index(v.len() + 1));
        }
        let frame = Frame::Text(Bytes::from(v));
        let full = V2Json.decode(&frame);
        let deferred = decode_then_check(&frame);
        prop_assert_eq!(full.is_ok(), deferred.is_ok(), "{:?}: {:?} / {:?}", frame, full, deferred);
        if let (Ok(a), Ok(b)) = (full, deferred) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn the_compact_envelope_path_agrees_with_the_general_one(
        join_ref in proptest::option::of(envelope_field()),
        ref_ in proptest::option::of(envelope_field()),
        topic in envelope_field(),
        event in envelope_field(),
        value in arb_json(), flip in any::<prop::sample::Index>(),
        byte in prop_oneof![
            Just(b'"'), Just(b','), Just(b'n'), Just(b'\\'), Just(b' '), Just(b']'), Just(0x80u8),
            any::<u8>(),
        ],
        mutate in any::<bool>(),
    ) {
        // Phoenix writes envelopes without white space, which the compact path reads; one
        // space after the `[` sends the same frame down the general path.
        let payload = Payload::json(&value).unwrap();
        let msg = Message::new(
            join_ref.map(ByteStr::from),
            ref_.map(ByteStr::from),
            topic.as_str(),
            event.as_str(),
            payload.clone(),
        );
        let mut v = V2Json.encode(&msg).unwrap().as_bytes().to_vec();
        if mutate {
            // Somewhere in the envelope, before the payload.
            let envelope = v.len() - payload.as_bytes().len() - 1;
            v[1 + flip.index(envelope - 1)] = byte;
        }
        let spaced = [&b"[ "[..], &v[1..]].concat();
        // White space before the `[` leaves either path where it was.
        for lead in [&b" "[..], b"\n\t "] {
            let compact = Frame::Text(Bytes::from([lead, &v[..]].concat()));
            let general = Frame::Text(Bytes::from([lead, &spaced[..]].concat()));
            prop_assert_eq!(V2Json.decode(&compact).ok(), V2Json.decode(&general).ok());
        }
        let compact = Frame::Text(Bytes::from(v));
        let general = Frame::Text(Bytes::from(spaced));
        prop_assert_eq!(V2Json.decode(&compact).ok(), V2Json.decode(&general).ok());
        prop_assert_eq!(decode_then_check(&compact).ok(), decode_then_check(&general).ok());
        if !mutate && event != PHX_REPLY {
            prop_assert_eq!(V2Json.decode(&compact).map(|m| m.topic), Ok(msg.topic));
        }
    }

    #[test]
    fn decoded_payloads_always_decode_with_serde(value in arb_json()) {
        let payload = Payload::json(&value).unwrap();
        let frame = V2Json.encode_broadcast("t", "e", &payload).unwrap();
        let msg = V2Json.decode(&frame).unwrap();
        prop_assert_eq!(&msg.payload, &payload);
        // (Compared loosely: serde_json's default float parsing is not exact.)
        prop_assert!(msg.payload.decode::<serde_json::Value>().is_ok());
    }
}
