//! Presence figures: the cost of applying a `presence_state` to a view that already holds the
//! same key, when that key has many metas (one per tracked process: an app that tracks every
//! anonymous visitor under one key has thousands). Every meta is matched by its `phx_ref`
//! against the view's, so the cost should grow with the number of metas, not with its square.
//!
//! Run: `cargo bench -p phx-proto --bench presence`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use phx_proto::{Payload, Presence, PresenceEvents};
use serde_json::{Value, json};

/// A state with one key holding `n` metas; `shift` renames the first `shift` refs, so that
/// applying it after the unshifted state reports `shift` joins and `shift` leaves.
fn state(n: usize, shift: usize) -> Payload {
    let metas: Vec<Value> = (0..n)
        .map(|i| {
            let r = if i < shift {
                format!("new-{i}")
            } else {
                format!("F{i:08x}")
            };
            json!({ "phx_ref": r, "online_at": 1_700_000_000 })
        })
        .collect();
    Payload::json(&json!({ "anonymous": { "metas": metas } })).unwrap()
}

fn resync(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence_resync");
    for n in [100, 1_000, 10_000] {
        let first = state(n, 0);
        let second = state(n, n / 10);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched(
                || {
                    let mut p = Presence::new(PresenceEvents::default());
                    p.handle("presence_state", &first, Some("1")).unwrap();
                    while p.poll_change().is_some() {}
                    p
                },
                |mut p| {
                    p.handle("presence_state", black_box(&second), Some("1"))
                        .unwrap();
                    p
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    resync(&mut c);
    c.final_summary();
}
