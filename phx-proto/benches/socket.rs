//! Socket figures: the cost of routing one received broadcast to its channel with 1 and with
//! 10,000 joined channels (target: within 1.5x), and the heap held per idle joined channel
//! (target: under 512 B), counted by a counting global allocator; and the core's share of a
//! push → reply round trip with 100 pushes in flight (encode the push, decode and match its
//! reply), with the heap allocations it makes per push.
//!
//! Run: `cargo bench -p phx-proto --bench socket`

#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use phx_proto::{Config, ConnectionId, Frame, Payload, Socket, Transmit};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn topic(i: usize) -> String {
    format!("room:{i}")
}

fn open_socket(now: Instant) -> (Socket, ConnectionId) {
    open_socket_with(now, false)
}

/// An open socket; `deferred`: payload checks left to the consumer, as phx-client's driver
/// asks.
fn open_socket_with(now: Instant, deferred: bool) -> (Socket, ConnectionId) {
    let config = Config::builder("ws://bench.example/socket")
        .unwrap()
        .defer_payload_checks(deferred)
        .build()
        .unwrap();
    let mut s = Socket::new(config, now);
    s.connect(now);
    let conn = loop {
        match s.poll_transmit() {
            Some(Transmit::Connect { conn, .. }) => break conn,
            Some(_) => {}
            None => panic!("no connect"),
        }
    };
    s.handle_connected(now, conn);
    drain(&mut s);
    (s, conn)
}

fn drain(s: &mut Socket) {
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
}

/// Joins `n` channels on an open socket and answers every join with ok.
fn join_all(s: &mut Socket, conn: ConnectionId, now: Instant, n: usize) {
    join_range(s, conn, now, 0..n);
}

fn join_range(s: &mut Socket, conn: ConnectionId, now: Instant, range: std::ops::Range<usize>) {
    for i in range {
        let id = s.join(now, &topic(i), Payload::empty()).unwrap();
        drain(s);
        let jr = s.channel(id).unwrap().join_ref().unwrap();
        let reply = format!(
            r#"["{jr}","{jr}","{}","phx_reply",{{"response":{{}},"status":"ok"}}]"#,
            topic(i)
        );
        s.handle_frame(now, conn, Frame::Text(reply.into()))
            .unwrap();
        drain(s);
    }
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_broadcast");
    for n in [1usize, 10_000] {
        let now = Instant::now();
        let (mut s, conn) = open_socket(now);
        join_all(&mut s, conn, now, n);
        // Spread the traffic over the channels so the 10k case is not one hot entry.
        let frames: Vec<Frame> = (0..1024)
            .map(|k| {
                let t = topic((k * 7919) % n);
                Frame::Text(
                    format!(
                        r#"[null,null,"{t}","new_msg",{{"user":"alice","body":"hello there"}}]"#
                    )
                    .into(),
                )
            })
            .collect();
        let mut k = 0;
        g.bench_function(format!("{n}_channels"), |b| {
            b.iter(|| {
                let f = frames[k & 1023].clone();
                k += 1;
                s.handle_frame(now, conn, f).unwrap();
                while let Some(e) = s.poll_event() {
                    black_box(e);
                }
            })
        });
    }
    g.finish();
}

/// What phx-client's driver asks of the core for each broadcast of a flood: decode it with the
/// payload check deferred, route it, and take the message out (into a batch, as the driver
/// does).
fn deliver(c: &mut Criterion) {
    let now = Instant::now();
    let (mut s, conn) = open_socket_with(now, true);
    join_all(&mut s, conn, now, 1);
    let frame = Frame::Text(
        format!(
            r#"[null,null,"{}","msg",{{"user":"alice","body":"hello there, a benchmark message","id":12345,"ts":1795433193,"ok":true}}]"#,
            topic(0)
        )
        .into(),
    );
    let mut batch = std::collections::VecDeque::with_capacity(256);
    c.bench_function("deliver_broadcast", |b| {
        b.iter(|| {
            s.handle_frame(now, conn, frame.clone()).unwrap();
            while s.poll_message_with(|m| batch.push_back(m)) {}
            if batch.len() == 256 {
                batch.clear();
            }
        })
    });
    // As phx-client's driver does it: handed over at once, as nothing else waits.
    c.bench_function("deliver_broadcast_handed", |b| {
        b.iter(|| {
            s.handle_frame_with(now, conn, frame.clone(), |_, m| batch.push_back(m))
                .unwrap();
            if batch.len() == 256 {
                batch.clear();
            }
        })
    });
}

fn memory() {
    const N: usize = 10_000;
    let now = Instant::now();
    let (mut s, conn) = open_socket(now);
    let region = Region::new(GLOBAL);
    join_all(&mut s, conn, now, N);
    let st = region.change();
    if std::env::var_os("PHX_MEM_DEBUG").is_some() {
        eprintln!("{st:?}");
        for step in 0..3 {
            let r = Region::new(GLOBAL);
            join_range(&mut s, conn, now, N + step..N + step + 1);
            eprintln!("one more channel (#{step}): {:?}", r.change());
        }
    }
    // stats_alloc counts the growth of a realloc in bytes_allocated (and its shrink in
    // bytes_deallocated) already; bytes_reallocated is the same delta again.
    let net = st.bytes_allocated as isize - st.bytes_deallocated as isize;
    println!(
        "heap per idle joined channel: {} B ({} B for {N} channels; target < 512 B)",
        net / N as isize,
        net
    );
    black_box(&s);
}

/// Pushes outstanding in the push → reply figures.
const IN_FLIGHT: u64 = 100;

/// The replies to pushes `first_ref..first_ref + n`, in order.
fn replies(topic: &str, join_ref: &str, first_ref: u64, n: u64) -> Vec<Frame> {
    // Each frame is taken once: cloning a `Bytes` made from a `String` would allocate.
    (first_ref..first_ref + n)
        .map(|r| {
            Frame::Text(
                format!(
                    r#"["{join_ref}","{r}","{topic}","phx_reply",{{"response":{{"n":{r}}},"status":"ok"}}]"#
                )
                .into(),
            )
        })
        .collect()
}

/// Opens a socket, joins one channel and puts `IN_FLIGHT` pushes in flight.
fn pushing_socket(now: Instant) -> (Socket, ConnectionId, phx_proto::ChannelId, u64) {
    let (mut s, conn) = open_socket(now);
    join_all(&mut s, conn, now, 1);
    let id = s.channel_by_topic(&topic(0)).unwrap();
    let mut first = None;
    for _ in 0..IN_FLIGHT {
        let r = push_one(&mut s, now, id);
        first.get_or_insert(r);
    }
    (s, conn, id, first.unwrap())
}

/// Pushes one message and takes its frame.
fn push_one(s: &mut Socket, now: Instant, id: phx_proto::ChannelId) -> u64 {
    let payload = Payload::from_json(Bytes::from_static(br#"{"n":1}"#)).unwrap();
    let r = s.push(now, id, "ping", payload, None).unwrap();
    while let Some(t) = s.poll_transmit() {
        let _ = black_box(t);
    }
    r.get()
}

/// One round trip with `IN_FLIGHT` pushes outstanding: a push is encoded and taken, and the
/// oldest one's reply is decoded and matched.
fn round_trip(
    s: &mut Socket,
    now: Instant,
    conn: ConnectionId,
    id: phx_proto::ChannelId,
    reply: Frame,
) {
    push_one(s, now, id);
    s.handle_frame(now, conn, reply).unwrap();
    while let Some(e) = s.poll_event() {
        black_box(e);
    }
}

fn push_reply(c: &mut Criterion) {
    c.bench_function("push_reply_100_in_flight", |b| {
        // A fresh socket per batch, its replies made before the clock starts.
        b.iter_custom(|iters| {
            let now = Instant::now();
            let (mut s, conn, id, first) = pushing_socket(now);
            let jr = s.channel(id).unwrap().join_ref().unwrap().to_string();
            let frames = replies(&topic(0), &jr, first, iters);
            let start = Instant::now();
            for f in frames {
                round_trip(&mut s, now, conn, id, f);
            }
            start.elapsed()
        })
    });
}

/// Heap allocations the core makes per push → reply round trip (the reply frame given).
fn push_allocations() {
    const N: u64 = 10_000;
    let now = Instant::now();
    let (mut s, conn, id, first) = pushing_socket(now);
    let jr = s.channel(id).unwrap().join_ref().unwrap().to_string();
    let frames = replies(&topic(0), &jr, first, N);
    let region = Region::new(GLOBAL);
    for f in frames {
        round_trip(&mut s, now, conn, id, f);
    }
    let st = region.change();
    println!(
        "allocations per push -> reply round trip (100 in flight): {:.2}",
        st.allocations as f64 / N as f64
    );
}

fn main() {
    memory();
    push_allocations();
    let mut c = Criterion::default().configure_from_args();
    routing(&mut c);
    deliver(&mut c);
    push_reply(&mut c);
    c.final_summary();
}
