//! `Phoenix.Presence` for `presence:*` topics: who is tracked, `presence_state` and
//! `presence_diff` payloads, and deterministic `phx_ref`s.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::connect::encode_base64url;

/// One tracked meta: a channel instance under a key.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    /// The channel instance that tracked it; it is untracked when that instance ends.
    pub(super) chan: u64,
    /// The presence key (the `user` join param).
    pub(super) key: String,
    /// The meta, including `phx_ref` (and `phx_ref_prev` after an update).
    pub(super) meta: Map<String, Value>,
}

/// Presence state of every topic.
#[derive(Debug, Default)]
pub(super) struct Presences {
    topics: BTreeMap<String, Vec<Tracked>>,
    refs_minted: u32,
}

impl Presences {
    /// Forgets everything (a server restart).
    pub(super) fn clear(&mut self) {
        self.topics.clear();
    }

    /// A fresh `phx_ref`: like Phoenix's, URL-safe base64 of 12 bytes whose first 8 are a
    /// nanosecond time, here the model's time since start, and whose last 4 count up.
    pub(super) fn mint_ref(&mut self, nanos_since_start: u64) -> String {
        self.refs_minted = self.refs_minted.wrapping_add(1);
        let mut raw = [0u8; 12];
        raw[..8].copy_from_slice(&nanos_since_start.to_be_bytes());
        raw[8..].copy_from_slice(&self.refs_minted.to_be_bytes());
        encode_base64url(&raw)
    }

    /// Tracks a meta.
    pub(super) fn track(&mut self, topic: &str, tracked: Tracked) {
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .push(tracked);
    }

    /// The meta tracked by a channel instance.
    pub(super) fn get_mut(&mut self, topic: &str, chan: u64) -> Option<&mut Tracked> {
        self.topics
            .get_mut(topic)?
            .iter_mut()
            .find(|t| t.chan == chan)
    }

    /// Removes what a channel instance tracked, returning it.
    pub(super) fn untrack(&mut self, topic: &str, chan: u64) -> Vec<Tracked> {
        let Some(list) = self.topics.get_mut(topic) else {
            return Vec::new();
        };
        let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|t| t.chan == chan);
        if kept.is_empty() {
            self.topics.remove(topic);
        } else {
            *list = kept;
        }
        gone
    }

    /// `Presence.list/1`: `{key: {"metas": [meta, ...]}}`, metas in tracking order.
    pub(super) fn list(&self, topic: &str) -> Value {
        group(self.topics.get(topic).into_iter().flatten())
    }
}

/// Groups metas by key into the `{key: {"metas": [...]}}` shape.
pub(super) fn group<'a>(items: impl IntoIterator<Item = &'a Tracked>) -> Value {
    let mut out = Map::new();
    for t in items {
        let entry = out
            .entry(t.key.clone())
            .or_insert_with(|| serde_json::json!({ "metas": [] }));
        if let Some(Value::Array(metas)) = entry.get_mut("metas") {
            metas.push(Value::Object(t.meta.clone()));
        }
    }
    Value::Object(out)
}

/// A `presence_diff` payload.
pub(super) fn diff(joins: &[Tracked], leaves: &[Tracked]) -> Value {
    let mut out = Map::new();
    out.insert("joins".to_owned(), group(joins));
    out.insert("leaves".to_owned(), group(leaves));
    Value::Object(out)
}
