//! 100 server restarts (PHX_CHAOS_RESTARTS for a long run) with 100 joined channels and a push
//! per channel in flight at each restart, on both adapters: every channel rejoins after every
//! restart, every push ends exactly once, and the heap does not grow across the run.
//!
//! One test in its own binary: it counts every allocation of the process, so nothing else may
//! run beside it.

mod chaos;

use std::alloc::System;
use std::future::Future;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn heap_now(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Runs the restart scenario and checks the heap after the warm-up round against the end.
fn run_one<F: Future<Output = chaos::Round>>(
    name: &str,
    block_on: impl FnOnce(F) -> chaos::Round,
    scenario: impl FnOnce(Box<dyn FnMut(u64)>) -> F,
) {
    let rounds = chaos::restarts();
    let region = Region::new(GLOBAL);
    // Preallocated, so the samples themselves do not show up as growth.
    let samples = std::rc::Rc::new(std::cell::RefCell::new(Vec::with_capacity(
        rounds as usize + 1,
    )));
    let sink = samples.clone();
    let region_ref: &'static Region<'static, System> = Box::leak(Box::new(region));
    let round = block_on(scenario(Box::new(move |n| {
        sink.borrow_mut().push((n, heap_now(region_ref)));
    })));
    let samples = samples.borrow();
    if std::env::var_os("PHX_CHAOS_CURVE").is_some() {
        for (n, b) in samples.iter().filter(|(n, _)| n % 25 == 0) {
            println!("{name} round {n}: {b} B");
        }
    }
    let at = |round: u64| samples.iter().find(|(n, _)| *n == round).map_or(0, |s| s.1);
    let (first, mid, last) = (at(10), at(rounds / 2 + 5), at(rounds));
    println!(
        "{name}: {rounds} restarts, {} pushes ({} ok, {} ended by the restart); heap at rounds 10 / {} / {rounds}: {first} / {mid} / {last} B",
        round.pushes,
        round.ok,
        round.failed,
        rounds / 2 + 5
    );
    assert_eq!(round.pushes, rounds * 100);
    assert_eq!(round.ok + round.failed, round.pushes);
    // Tables and queues grow in occasional one-time steps until they reach their high-water
    // mark; a leak grows in every round. So at least one half of the run must stay flat (a leak
    // of 1 byte per push would add 5 KB per half), and the whole run stays small.
    let halves = ((mid - first), (last - mid));
    assert!(
        halves.0.min(halves.1) < 4096,
        "{name}: the heap grew in both halves of the run ({halves:?} B): a leak"
    );
    assert!(
        last - first < 256 * 1024,
        "{name}: heap grew by {} B",
        last - first
    );
}

#[test]
fn restarts_with_pushes_in_flight_on_both_adapters() {
    run_one("tokio", phx_tests::support::block_on_tokio, |heap| {
        chaos::restart_run::<phx_tokio::Tokio>(chaos::restarts(), 100, heap)
    });
    run_one("async-std", async_std::task::block_on, |heap| {
        chaos::restart_run::<phx_async_std::AsyncStd>(chaos::restarts(), 100, heap)
    });
}
