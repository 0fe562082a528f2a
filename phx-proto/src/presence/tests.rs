use proptest::prelude::*;
use serde_json::json;

use super::*;

fn payload(v: Value) -> Payload {
    Payload::json(&v).unwrap()
}

fn meta(r: &str) -> Value {
    json!({ "phx_ref": r, "online_at": 1 })
}

fn changes(p: &mut Presence) -> Vec<PresenceChange> {
    std::iter::from_fn(|| p.poll_change()).collect()
}

fn keys(p: &Presence) -> Vec<(String, Vec<String>)> {
    p.list()
        .map(|(k, e)| (k.to_owned(), e.phx_refs().map(str::to_owned).collect()))
        .collect()
}

#[test]
fn the_recorded_sequence_with_a_diff_before_the_state() {
    // traces/presence.txt: join reply, alice's own diff (before the state), the state, then
    // bob joins and leaves.
    let mut p = Presence::new(PresenceEvents::default());
    let alice = json!({"alice": {"metas": [meta("A1")]}});
    assert!(
        p.handle(
            "presence_diff",
            &payload(json!({"joins": alice, "leaves": {}})),
            Some("5")
        )
        .unwrap()
    );
    assert_eq!(p.pending_diffs(), 1, "held until the state");
    assert!(p.is_empty());
    assert!(changes(&mut p).is_empty());
    p.handle("presence_state", &payload(alice.clone()), Some("5"))
        .unwrap();
    assert_eq!(keys(&p), [("alice".to_owned(), vec!["A1".to_owned()])]);
    let c = changes(&mut p);
    assert!(matches!(&c[0], PresenceChange::Join { key, current: None, .. } if key == "alice"));
    assert_eq!(c.last(), Some(&PresenceChange::Sync));
    let bob = json!({"bob": {"metas": [meta("B1")]}});
    p.handle(
        "presence_diff",
        &payload(json!({"joins": bob, "leaves": {}})),
        Some("5"),
    )
    .unwrap();
    assert_eq!(p.len(), 2);
    p.handle(
        "presence_diff",
        &payload(json!({"joins": {}, "leaves": bob})),
        Some("5"),
    )
    .unwrap();
    assert_eq!(keys(&p), [("alice".to_owned(), vec!["A1".to_owned()])]);
    let c = changes(&mut p);
    assert!(
        matches!(&c[2], PresenceChange::Leave { key, current, .. } if key == "bob" && current.metas.is_empty())
    );
}

#[test]
fn diffs_held_under_an_earlier_join_do_not_outlive_the_next_state() {
    // Join "5": alice's own join diff arrives, then the connection dies before the state. The
    // server drops that meta (A1) and tells the subscribers it still has, not this channel.
    // Rejoin "9": the new meta A2, then the state, which has A2 only.
    let mut p = Presence::new(PresenceEvents::default());
    let diff = |r: &str| payload(json!({"joins": {"alice": {"metas": [meta(r)]}}, "leaves": {}}));
    p.handle("presence_diff", &diff("A1"), Some("5")).unwrap();
    p.handle("presence_diff", &diff("A2"), Some("9")).unwrap();
    assert_eq!(p.pending_diffs(), 2);
    let state = json!({"alice": {"metas": [meta("A2")]}});
    p.handle("presence_state", &payload(state), Some("9"))
        .unwrap();
    assert_eq!(keys(&p), [("alice".to_owned(), vec!["A2".to_owned()])]);
    assert_eq!(p.pending_diffs(), 0);
}

#[test]
fn an_update_joins_before_it_leaves_so_the_key_never_disappears() {
    let mut p = Presence::new(PresenceEvents::default());
    p.handle(
        "presence_state",
        &payload(json!({"u": {"metas": [meta("1")]}})),
        Some("1"),
    )
    .unwrap();
    changes(&mut p);
    let diff = json!({
        "joins": {"u": {"metas": [{"phx_ref": "2", "phx_ref_prev": "1", "status": "away"}]}},
        "leaves": {"u": {"metas": [meta("1")]}},
    });
    p.handle("presence_diff", &payload(diff), Some("1"))
        .unwrap();
    assert_eq!(keys(&p), [("u".to_owned(), vec!["2".to_owned()])]);
    let c = changes(&mut p);
    match &c[..] {
        [
            PresenceChange::Join {
                current: Some(before),
                ..
            },
            PresenceChange::Leave { current, .. },
            PresenceChange::Sync,
        ] => {
            assert_eq!(before.metas.len(), 1);
            assert_eq!(current.phx_refs().collect::<Vec<_>>(), ["2"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_leave_for_an_unknown_key_does_nothing() {
    let mut p = Presence::new(PresenceEvents::default());
    p.handle("presence_state", &payload(json!({})), Some("1"))
        .unwrap();
    changes(&mut p);
    p.handle(
        "presence_diff",
        &payload(json!({"joins": {}, "leaves": {"ghost": {"metas": [meta("9")]}}})),
        Some("1"),
    )
    .unwrap();
    assert_eq!(changes(&mut p), [PresenceChange::Sync]);
}

#[test]
fn a_state_after_a_rejoin_reports_who_came_and_went() {
    let mut p = Presence::new(PresenceEvents::default());
    p.handle(
        "presence_state",
        &payload(json!({"a": {"metas": [meta("a1")]}, "b": {"metas": [meta("b1"), meta("b2")]}})),
        Some("1"),
    )
    .unwrap();
    changes(&mut p);
    // After a rejoin (join ref 7) a diff arrives before the new state: held.
    p.handle(
        "presence_diff",
        &payload(json!({"joins": {"c": {"metas": [meta("c1")]}}, "leaves": {}})),
        Some("7"),
    )
    .unwrap();
    assert!(p.is_pending(Some("7")));
    assert_eq!(p.len(), 2, "the old view is kept until the new state");
    p.handle(
        "presence_state",
        &payload(json!({"b": {"metas": [meta("b2"), meta("b3")]}, "d": {"metas": [meta("d1")]}})),
        Some("7"),
    )
    .unwrap();
    let c = changes(&mut p);
    let summary: Vec<String> = c
        .iter()
        .map(|c| match c {
            PresenceChange::Join { key, joined, .. } => {
                format!("+{key}:{}", joined.phx_refs().collect::<Vec<_>>().join(","))
            }
            PresenceChange::Leave { key, left, .. } => {
                format!("-{key}:{}", left.phx_refs().collect::<Vec<_>>().join(","))
            }
            _ => "sync".to_owned(),
        })
        .collect();
    assert_eq!(
        summary,
        ["+b:b3", "+d:d1", "-a:a1", "-b:b1", "+c:c1", "sync"]
    );
    assert_eq!(
        keys(&p),
        [
            ("b".to_owned(), vec!["b2".to_owned(), "b3".to_owned()]),
            ("c".to_owned(), vec!["c1".to_owned()]),
            ("d".to_owned(), vec!["d1".to_owned()]),
        ]
    );
}

#[test]
fn custom_event_names_and_fetch_fields_are_kept() {
    let mut p = Presence::new(PresenceEvents {
        state: "who".into(),
        diff: "who_diff".into(),
    });
    assert!(
        !p.handle("presence_state", &payload(json!({})), Some("1"))
            .unwrap()
    );
    p.handle(
        "who",
        &payload(json!({"u": {"metas": [meta("1")], "user": {"name": "Ann"}}})),
        Some("1"),
    )
    .unwrap();
    let e = p.get("u").unwrap();
    assert_eq!(e.extra["user"]["name"], "Ann");
    assert_eq!(e.to_value()["metas"][0]["phx_ref"], "1");
    #[derive(serde::Deserialize)]
    struct Meta {
        online_at: u64,
    }
    assert_eq!(e.decode_metas::<Meta>().unwrap()[0].online_at, 1);
    changes(&mut p);
    // A new state replaces "1" with "2" and the fetched fields: the leave carries the fields
    // the leaving meta was listed with, the join the new ones (phoenix.js's syncState).
    p.handle(
        "who",
        &payload(json!({"u": {"metas": [meta("2")], "user": {"name": "Bo"}}})),
        Some("1"),
    )
    .unwrap();
    let c = changes(&mut p);
    let name = |e: &PresenceEntry| e.extra["user"]["name"].clone();
    assert!(c.iter().any(|c| matches!(c,
        PresenceChange::Join { joined, .. } if name(joined) == "Bo")));
    assert!(c.iter().any(|c| matches!(c,
        PresenceChange::Leave { left, .. } if name(left) == "Ann")));
    assert_eq!(name(p.get("u").unwrap()), "Bo");
}

#[test]
fn malformed_payloads_change_nothing() {
    let mut p = Presence::new(PresenceEvents::default());
    p.handle(
        "presence_state",
        &payload(json!({"u": {"metas": [meta("1")]}})),
        Some("1"),
    )
    .unwrap();
    changes(&mut p);
    for (event, bad) in [
        ("presence_state", json!([1, 2])),
        ("presence_state", json!({"u": {"no_metas": []}})),
        ("presence_diff", json!({"joins": {"u": {"metas": 5}}})),
        ("presence_diff", json!("x")),
    ] {
        assert!(p.handle(event, &payload(bad), Some("1")).is_err());
    }
    assert!(
        p.handle("presence_diff", &Payload::binary(vec![1u8]), Some("1"))
            .is_err()
    );
    assert_eq!(keys(&p), [("u".to_owned(), vec!["1".to_owned()])]);
    assert!(changes(&mut p).is_empty());
}

#[test]
fn held_diffs_are_bounded() {
    let mut p = Presence::new(PresenceEvents::default());
    let d = payload(json!({"joins": {}, "leaves": {}}));
    for _ in 0..MAX_PENDING_DIFFS {
        p.handle("presence_diff", &d, Some("1")).unwrap();
    }
    assert_eq!(
        p.handle("presence_diff", &d, Some("1")),
        Err(PresenceError::PendingOverflow { dropped: 1 })
    );
    assert_eq!(p.pending_diffs(), MAX_PENDING_DIFFS);
}

#[test]
fn held_diffs_are_bounded_by_their_bytes_and_the_newest_is_kept() {
    let mut p = Presence::new(PresenceEvents::default());
    p.max_pending_bytes = 1000;
    let diff = |user: &str, pad: usize| {
        payload(json!({
            "joins": {user: {"metas": [{"phx_ref": user, "pad": "x".repeat(pad)}]}},
            "leaves": {},
        }))
    };
    let (a, b, c) = (diff("a", 350), diff("b", 350), diff("c", 350));
    let size = a.as_bytes().len();
    assert!(2 * size <= 1000 && 3 * size > 1000, "{size} bytes a diff");
    p.handle("presence_diff", &a, Some("1")).unwrap();
    p.handle("presence_diff", &b, Some("1")).unwrap();
    assert_eq!(
        p.handle("presence_diff", &c, Some("1")),
        Err(PresenceError::PendingOverflow { dropped: 1 })
    );
    assert_eq!(p.pending_diffs(), 2);
    // One diff larger than the whole budget is still held, alone.
    let huge = diff("d", 5000);
    assert_eq!(
        p.handle("presence_diff", &huge, Some("1")),
        Err(PresenceError::PendingOverflow { dropped: 2 })
    );
    assert_eq!(p.pending_diffs(), 1);
    p.handle("presence_state", &payload(json!({})), Some("1"))
        .unwrap();
    assert_eq!(keys(&p), [("d".to_owned(), vec!["d".to_owned()])]);
    // The state emptied the hold and its count: after a rejoin, two diffs fit again.
    assert_eq!(p.pending_bytes, 0);
    p.handle("presence_diff", &a, Some("2")).unwrap();
    p.handle("presence_diff", &b, Some("2")).unwrap();
    assert_eq!(p.pending_diffs(), 2);
}

/// A server-side model of one topic's presence: keys with metas, each with a unique ref.
#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    Leave(u8, u8),
    Update(u8, u8),
}

fn apply_server(state: &mut BTreeMap<String, Vec<String>>, op: &Op, next: &mut u32) -> Value {
    let mut fresh = || {
        *next += 1;
        format!("r{next}")
    };
    let (mut joins, mut leaves) = (Map::new(), Map::new());
    match *op {
        Op::Join(k) => {
            let key = format!("k{}", k % 5);
            let r = fresh();
            state.entry(key.clone()).or_default().push(r.clone());
            joins.insert(key, json!({"metas": [meta(&r)]}));
        }
        Op::Leave(k, i) | Op::Update(k, i) => {
            let key = format!("k{}", k % 5);
            let Some(metas) = state.get_mut(&key) else {
                return json!({"joins": {}, "leaves": {}});
            };
            let old = metas.remove(usize::from(i) % metas.len());
            leaves.insert(key.clone(), json!({"metas": [meta(&old)]}));
            if matches!(op, Op::Update(..)) {
                let r = fresh();
                metas.push(r.clone());
                joins.insert(key.clone(), json!({"metas": [meta(&r)]}));
            }
            if metas.is_empty() {
                state.remove(&key);
            }
        }
    }
    json!({"joins": joins, "leaves": leaves})
}

fn server_state(state: &BTreeMap<String, Vec<String>>) -> Value {
    let obj: Map<String, Value> = state
        .iter()
        .map(|(k, refs)| {
            (
                k.clone(),
                json!({"metas": refs.iter().map(|r| meta(r)).collect::<Vec<_>>()}),
            )
        })
        .collect();
    Value::Object(obj)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::Join),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(k, i)| Op::Leave(k, i)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(k, i)| Op::Update(k, i)),
    ]
}

proptest! {
    /// Whatever the server does, a client that got a state (with any suffix of the earlier
    /// diffs arriving before it) and then every later diff ends with the server's view.
    #[test]
    fn diffs_after_a_state_converge_to_the_servers_view(
        before in proptest::collection::vec(op(), 0..30),
        early in 0usize..30,
        after in proptest::collection::vec(op(), 0..30),
    ) {
        let mut server = BTreeMap::new();
        let mut next = 0;
        let diffs: Vec<Value> = before.iter().map(|o| apply_server(&mut server, o, &mut next)).collect();
        let snapshot = server_state(&server);
        let mut p = Presence::new(PresenceEvents::default());
        // Diffs that raced ahead of the state (a suffix of the earlier ones).
        for d in &diffs[diffs.len().saturating_sub(early)..] {
            p.handle("presence_diff", &payload(d.clone()), Some("1")).unwrap();
        }
        p.handle("presence_state", &payload(snapshot), Some("1")).unwrap();
        for o in &after {
            let d = apply_server(&mut server, o, &mut next);
            p.handle("presence_diff", &payload(d), Some("1")).unwrap();
        }
        let want: Vec<(String, Vec<String>)> = server.into_iter().collect();
        let mut got = keys(&p);
        for (_, refs) in &mut got { refs.sort(); }
        let mut want = want;
        for (_, refs) in &mut want { refs.sort(); }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn refs_compare_as_phoenix_js_compares_them_even_when_missing_or_not_strings() {
    // Phoenix always sends string refs; a server that does not still gets phoenix.js's rules:
    // a missing ref matches a missing ref, and any other value matches an equal value.
    let mut p = Presence::new(PresenceEvents::default());
    let state = json!({
        "u": {"metas": [{"online_at": 1}, {"phx_ref": 7, "online_at": 2}]}
    });
    p.handle("presence_state", &payload(state.clone()), Some("1"))
        .unwrap();
    changes(&mut p);
    // The same state again: nobody came or went.
    p.handle("presence_state", &payload(state), Some("1"))
        .unwrap();
    assert_eq!(changes(&mut p), [PresenceChange::Sync]);
    // A leave of a meta without a ref removes the one without a ref (a ghost otherwise: it
    // could never be removed), and a numeric ref removes the meta with that number.
    let leave = |m: Value| payload(json!({"joins": {}, "leaves": {"u": {"metas": [m]}}}));
    p.handle("presence_diff", &leave(json!({"online_at": 1})), Some("1"))
        .unwrap();
    assert_eq!(
        p.list().map(|(_, e)| e.metas.clone()).collect::<Vec<_>>(),
        [vec![json!({"phx_ref": 7, "online_at": 2})]]
    );
    p.handle("presence_diff", &leave(json!({"phx_ref": 7})), Some("1"))
        .unwrap();
    assert!(p.is_empty());
}

/// Any JSON value a server might put in `phx_ref` (or none), with many near-equal pairs:
/// `0` and `0.0` and `-0.0`, `1` and `1.0`, equal objects written in another key order.
fn a_ref() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => (0u8..3).prop_map(|n| json!(n)),
        1 => Just(json!(-1)),
        3 => prop::sample::select(vec![0.0, -0.0, 1.0, -1.0]).prop_map(|f| json!(f)),
        1 => "[ab]{0,1}".prop_map(Value::from),
    ];
    let value = prop_oneof![
        6 => leaf.clone(),
        1 => prop::collection::vec(leaf.clone(), 0..3).prop_map(Value::Array),
        1 => prop::collection::vec(("[xy]", leaf), 0..3)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ];
    prop::option::weighted(0.9, value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The sorted ref set finds exactly the refs a linear search with `==` finds.
    #[test]
    fn the_ref_set_agrees_with_a_linear_search(
        refs in proptest::collection::vec(a_ref(), 0..12),
        probes in proptest::collection::vec(a_ref(), 0..12),
    ) {
        let meta = |r: &Option<Value>| match r {
            Some(v) => json!({ "phx_ref": v }),
            None => json!({}),
        };
        let entry = PresenceEntry { metas: refs.iter().map(meta).collect(), extra: Map::new() };
        let set = RefSet::of(&entry);
        for probe in probes.iter().chain(&refs) {
            let m = meta(probe);
            let key = ref_key(&m);
            let linear = entry.metas.iter().any(|x| ref_key(x) == key);
            prop_assert_eq!(set.contains(key), linear, "probe {:?} in {:?}", probe, refs);
        }
    }
}

#[test]
fn a_key_with_thousands_of_metas_resyncs_by_its_refs() {
    // One key, 5,000 metas; the next state renames 500 of them: 500 join, 500 leave, and the
    // rest are matched by ref (the `presence` bench measures how long that takes).
    let state = |renamed: usize| {
        let metas: Vec<Value> = (0..5_000)
            .map(|i| {
                meta(&if i < renamed {
                    format!("new{i}")
                } else {
                    format!("r{i}")
                })
            })
            .collect();
        payload(json!({ "anon": { "metas": metas } }))
    };
    let mut p = Presence::new(PresenceEvents::default());
    p.handle("presence_state", &state(0), Some("1")).unwrap();
    changes(&mut p);
    p.handle("presence_state", &state(500), Some("1")).unwrap();
    let c = changes(&mut p);
    let count = |f: fn(&PresenceChange) -> Option<usize>| c.iter().filter_map(f).sum::<usize>();
    assert_eq!(
        count(|c| match c {
            PresenceChange::Join { joined, .. } => Some(joined.metas.len()),
            _ => None,
        }),
        500
    );
    assert_eq!(
        count(|c| match c {
            PresenceChange::Leave { left, .. } => Some(left.metas.len()),
            _ => None,
        }),
        500
    );
    assert_eq!(p.get("anon").unwrap().metas.len(), 5_000);
}
