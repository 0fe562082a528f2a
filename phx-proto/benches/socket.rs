//! Socket figures: the cost of routing one received broadcast to its channel with 1 and with
//! 10,000 joined channels (target: within 1.5x), and the heap held per idle joined channel
//! (target: under 512 B), counted by a counting global allocator.
//!
//! Run: `cargo bench -p phx-proto --bench socket`

#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use phx_proto::{Config, ConnectionId, Frame, Payload, Socket, Transmit};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn topic(i: usize) -> String {
    format!("room:{i}")
}

fn open_socket(now: Instant) -> (Socket, ConnectionId) {
    let config = Config::builder("ws://bench.example/socket")
        .unwrap()
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

fn main() {
    memory();
    let mut c = Criterion::default().configure_from_args();
    routing(&mut c);
    c.final_summary();
}
