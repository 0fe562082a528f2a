//! Model test: random sequences of user commands, server frames (well-formed and not), opens,
//! closes and time steps. After every step: every push ends exactly once, nothing is delivered
//! before the join reply, `poll_timeout` is never in the past after `handle_timeout`, the send
//! buffer stays within its capacity, pushes carry the current join_ref, and nothing panics.

mod driver;

use driver::{Driver, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        4 => Just(Op::Opened),
        2 => any::<u8>().prop_map(Op::Closed),
        6 => (any::<u16>(), any::<bool>()).prop_map(|(ms, long)| Op::Advance { ms: ms % 4000, long }),
        4 => any::<u8>().prop_map(Op::Join),
        6 => (any::<u8>(), any::<bool>(), proptest::option::of(0u16..5000))
            .prop_map(|(slot, binary, timeout_ms)| Op::Push { slot, binary, timeout_ms }),
        2 => any::<u8>().prop_map(Op::Leave),
        2 => any::<u8>().prop_map(Op::Cast),
        10 => (any::<u16>(), any::<u8>()).prop_map(|(idx, how)| Op::Answer { idx, how }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(slot, stale)| Op::ServerError { slot, stale }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(slot, stale)| Op::ServerClose { slot, stale }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(topic, join_ref)| Op::Broadcast { topic, join_ref }),
        1 => (any::<u8>(), 0u16..64).prop_map(|(topic, r)| Op::StrayReply { topic, r }),
        1 => (proptest::collection::vec(any::<u8>(), 0..24), any::<bool>())
            .prop_map(|(bytes, binary)| Op::Garbage { bytes, binary }),
        1 => any::<u8>().prop_map(Op::SetParam),
        3 => (any::<u8>(), any::<bool>(), any::<u8>(), any::<u8>())
            .prop_map(|(topic, state, joins, leaves)| Op::Presence { topic, state, joins, leaves }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 512 by default; PROPTEST_CASES=N for a longer hunt.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_runs_keep_every_guarantee(seed: u64, ops in proptest::collection::vec(op(), 1..120)) {
        let mut d = Driver::new(seed);
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = d.step(op) {
                prop_assert!(false, "step {i} ({op:?}): {e}");
            }
        }
        if let Err(e) = d.finish() {
            prop_assert!(false, "finish: {e}");
        }
    }
}
