//! Codec throughput: phx-proto's envelope decode against the naive baseline of parsing the whole
//! frame into a `serde_json::Value`, on the same input.
//!
//! Run: `cargo bench -p phx-proto --bench codec`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phx_proto::{ByteStr, Frame, Message, Payload, Serializer, ServerSerializer, V2Json};

/// A broadcast like a chat message: about 100 bytes in all.
fn small_frame() -> Bytes {
    let f = r#"[null,null,"room:lobby","new_msg",{"user":"alice","body":"hello there","id":12345,"ts":1795433193}]"#;
    Bytes::from_static(f.as_bytes())
}

/// A ~4 KB payload of mixed JSON: objects, arrays, strings with escapes, numbers.
fn large_payload() -> String {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"id":{i},"name":"user \"{i}\"","score":{}.{},"tags":["a","bc","def"],"active":{},"meta":{{"x":null,"y":[1,2,3]}}}}"#,
            i * 37,
            i % 10,
            i % 2 == 0
        );
        items.push(item);
        i += 1;
        let len: usize = items.iter().map(|s| s.len() + 1).sum();
        if len > 4000 {
            break;
        }
    }
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

fn large_frame() -> Bytes {
    Bytes::from(format!(
        r#"["7",null,"room:lobby","snapshot",{}]"#,
        large_payload()
    ))
}

fn binary_broadcast() -> (Bytes, Bytes) {
    let payload = Payload::binary(vec![0xabu8; 64]);
    let bin = V2Json
        .encode_broadcast("room:lobby", "blob", &payload)
        .unwrap();
    // The same broadcast as JSON, for the baseline (serde_json cannot read binary frames).
    let json = V2Json
        .encode_broadcast(
            "room:lobby",
            "blob",
            &Payload::json(&vec![0xabu8; 64]).unwrap(),
        )
        .unwrap();
    (bin.as_bytes().clone(), json.as_bytes().clone())
}

fn decode_text(c: &mut Criterion, name: &str, frame: Bytes) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(frame.len() as u64));
    let f = Frame::Text(frame.clone());
    g.bench_function("phx_decode", |b| {
        b.iter(|| V2Json.decode(black_box(&f)).unwrap())
    });
    g.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&frame)).unwrap())
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let small = small_frame();
    let large = large_frame();
    eprintln!(
        "frame sizes: small {} B, large {} B",
        small.len(),
        large.len()
    );
    decode_text(c, "decode_v2_text_100B", small);
    decode_text(c, "decode_v2_text_4KB", large);

    let (bin, json) = binary_broadcast();
    let mut g = c.benchmark_group("decode_binary_broadcast");
    let f = Frame::Binary(bin);
    g.bench_function("phx_decode", |b| {
        b.iter(|| V2Json.decode(black_box(&f)).unwrap())
    });
    g.bench_function("baseline_serde_json_value_of_json_equivalent", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)).unwrap())
    });
    g.finish();

    // The flood benchmark's broadcast: its envelope decoded with the payload check deferred,
    // and that check on its own (the half a channel stream's consumer pays).
    let flood = Frame::Text(Bytes::from_static(
        br#"[null,null,"room:lobby","msg",{"user":"alice","body":"hello there, a benchmark message","id":12345,"ts":1795433193,"ok":true}]"#,
    ));
    let mut g = c.benchmark_group("flood_broadcast");
    g.bench_function("decode_deferred", |b| {
        b.iter(|| V2Json.decode_deferred(black_box(&flood)).unwrap())
    });
    let deferred = V2Json.decode_deferred(&flood).unwrap().payload;
    g.bench_function("payload_check", |b| {
        b.iter(|| black_box(deferred.clone()).check().unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("encode_push");
    let payload = Payload::from_json(r#"{"body":"hello there","n":1}"#).unwrap();
    let msg = Message::new(
        Some(ByteStr::from_static("5")),
        Some(ByteStr::from_static("42")),
        "room:lobby",
        "new_msg",
        payload,
    );
    g.bench_function("phx_encode", |b| {
        b.iter(|| V2Json.encode(black_box(&msg)).unwrap())
    });
    let value =
        serde_json::json!(["5", "42", "room:lobby", "new_msg", {"body": "hello there", "n": 1}]);
    g.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
