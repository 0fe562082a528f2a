//! Arbitrary bytes into every decoder, as text and as binary frames: a typed error or a message,
//! never a panic. A message that decodes must re-encode and decode to the same message, and a
//! decode that defers the payload check, then runs it, must agree with a full decode; and a text
//! frame must decode as it does with a space after its first `[` (which turns the compact
//! envelope path off).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use phx_proto::{Frame, Serializer, ServerSerializer, V1Json, V2Json};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    for frame in [Frame::Text(bytes.clone()), Frame::Binary(bytes)] {
        if let Ok(msg) = V2Json.decode(&frame) {
            if let Ok(again) = V2Json.encode_to_client(&msg) {
                let back = V2Json
                    .decode(&again)
                    .expect("re-encoded server frame decodes");
                assert_eq!(back.topic, msg.topic);
                assert_eq!(back.payload, msg.payload);
                assert_eq!(back.status, msg.status);
            }
        }
        let deferred = V2Json.decode_deferred(&frame).and_then(|mut msg| {
            msg.payload.check()?;
            Ok(msg)
        });
        assert_eq!(deferred.ok(), V2Json.decode(&frame).ok());
        if let Ok(msg) = V2Json.decode_from_client(&frame) {
            if let Ok(again) = V2Json.encode(&msg) {
                let back = V2Json
                    .decode_from_client(&again)
                    .expect("re-encoded client frame decodes");
                assert_eq!(back.topic, msg.topic);
                assert_eq!(back.event, msg.event);
                assert_eq!(back.payload, msg.payload);
            }
        }
        if let Ok(msg) = V1Json.decode(&frame) {
            if let Ok(again) = V1Json.encode_to_client(&msg) {
                let back = V1Json.decode(&again).expect("re-encoded V1 frame decodes");
                assert_eq!(back.payload, msg.payload);
            }
        }
        let _ = V1Json.decode_from_client(&frame);
    }
    if let Some(at) = data.iter().position(|&b| b == b'[') {
        let spaced = [&data[..=at], b" ", &data[at + 1..]].concat();
        let (compact, general) = (
            Frame::Text(Bytes::copy_from_slice(data)),
            Frame::Text(Bytes::from(spaced)),
        );
        assert_eq!(V2Json.decode(&compact).ok(), V2Json.decode(&general).ok());
        assert_eq!(
            V2Json.decode_deferred(&compact).ok(),
            V2Json.decode_deferred(&general).ok()
        );
    }
});
