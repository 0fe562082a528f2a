//! Client-side Phoenix Presence: the state/diff synchronisation of phoenix.js, as plain data.
//!
//! A [`Presence`] is fed the `presence_state` and `presence_diff` messages of one channel with
//! the channel's current join ref, and yields [`PresenceChange`]s. The rules are the official
//! client's:
//! - a diff that arrives before the first state of the current join is held, and applied after
//!   that state (in arrival order); diffs still held from an earlier join are dropped instead
//!   (phoenix.js replays them too): the new state already covers them, and the leave that may
//!   have followed one of them was sent while this channel was not subscribed, so replaying it
//!   would bring back someone who is gone;
//! - a state replaces the view, reported as the joins and leaves that turn the old view into
//!   the new one (so a rejoin after an outage reports who came and went meanwhile);
//! - in a diff, joins are applied before leaves (an update is a join and a leave of the same key
//!   with different `phx_ref`s); a leave for an unknown key does nothing.
//!
//! [`crate::Socket`] runs one per channel joined with [`crate::JoinOptions::presence`], and
//! reports its changes as [`crate::Event::Presence`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::payload::Payload;

/// Most diffs held while waiting for a state; beyond it the oldest are dropped (and reported).
pub const MAX_PENDING_DIFFS: usize = 4096;

/// Most payload bytes of the diffs held while waiting for a state; beyond it the oldest are
/// dropped (and reported), though the newest diff is always held, whatever its size.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// The event names carrying presence (Phoenix's defaults, or the app's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvents {
    /// The full-state event (`presence_state`).
    pub state: String,
    /// The diff event (`presence_diff`).
    pub diff: String,
}

impl Default for PresenceEvents {
    fn default() -> Self {
        Self {
            state: "presence_state".to_owned(),
            diff: "presence_diff".to_owned(),
        }
    }
}

/// One key's presence: its metas (one per tracked process, each with a `phx_ref`), plus any
/// fields the server's `fetch/2` added beside `metas`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceEntry {
    /// The metas, oldest first.
    pub metas: Vec<Value>,
    /// Other fields of the presence object.
    pub extra: Map<String, Value>,
}

impl PresenceEntry {
    fn from_value(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let metas = obj.get("metas")?.as_array()?.clone();
        let extra = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "metas")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(Self { metas, extra })
    }

    /// The `phx_ref` of each meta.
    pub fn phx_refs(&self) -> impl Iterator<Item = &str> {
        self.metas.iter().filter_map(phx_ref)
    }

    /// The metas as the application's type.
    ///
    /// # Errors
    /// serde's error when a meta does not fit `T`.
    pub fn decode_metas<T: DeserializeOwned>(&self) -> Result<Vec<T>, serde_json::Error> {
        self.metas
            .iter()
            .map(|m| serde_json::from_value(m.clone()))
            .collect()
    }

    /// The entry as a JSON object, as the server sends it.
    pub fn to_value(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert("metas".to_owned(), Value::Array(self.metas.clone()));
        Value::Object(obj)
    }
}

fn phx_ref(meta: &Value) -> Option<&str> {
    meta.get("phx_ref").and_then(Value::as_str)
}

/// A meta's `phx_ref` as the sync rules compare it: whatever JSON value it is, and a missing
/// one matches a missing one (as in phoenix.js, where both are `undefined`). Phoenix always
/// sends a string; this only matters with a server that does not.
fn ref_key(meta: &Value) -> Option<&Value> {
    meta.get("phx_ref")
}

/// The `phx_ref`s of one entry's metas, sorted, so that matching the metas of another entry
/// against them costs O(n log n), not O(n·m): one key may hold thousands of metas (an app that
/// tracks every anonymous visitor under one key), and a whole state is matched on every rejoin.
struct RefSet<'a>(Vec<Option<&'a Value>>);

impl<'a> RefSet<'a> {
    fn of(entry: &'a PresenceEntry) -> Self {
        let mut refs: Vec<Option<&Value>> = entry.metas.iter().map(ref_key).collect();
        refs.sort_by(|a, b| ref_order(*a, *b));
        Self(refs)
    }

    fn contains(&self, key: Option<&Value>) -> bool {
        let start = self
            .0
            .partition_point(|r| ref_order(*r, key) == Ordering::Less);
        self.0
            .iter()
            .skip(start)
            .take_while(|r| ref_order(**r, key) == Ordering::Equal)
            .any(|r| *r == key)
    }
}

/// A total preorder on refs under which equal refs compare `Equal`: strings (what Phoenix
/// sends) by content, booleans and numbers by value, other JSON values only by their type.
/// `RefSet::contains` confirms with `==` among the refs this order cannot tell apart.
fn ref_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None => 0,
            Some(Value::Null) => 1,
            Some(Value::Bool(_)) => 2,
            Some(Value::Number(_)) => 3,
            Some(Value::String(_)) => 4,
            Some(Value::Array(_)) => 5,
            Some(Value::Object(_)) => 6,
        }
    }
    // Numbers equal under `==` have the same value as f64 (0.0 and -0.0 are equal, so they
    // are made one); numbers that differ may still share one, which `==` then settles.
    fn number_key(n: &Number) -> f64 {
        match n.as_f64() {
            // A float pattern compares with `==`: this arm takes -0.0 too.
            Some(0.0) => 0.0,
            Some(f) => f,
            None => f64::NAN,
        }
    }
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => number_key(x).total_cmp(&number_key(y)),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A change to a presence view.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PresenceChange {
    /// Metas joined under `key`.
    Join {
        /// The key (often a user id).
        key: String,
        /// The key's presence before the join, if it had one.
        current: Option<PresenceEntry>,
        /// What joined.
        joined: PresenceEntry,
    },
    /// Metas left `key`.
    Leave {
        /// The key.
        key: String,
        /// What remains under the key (no metas when the key is gone).
        current: PresenceEntry,
        /// What left.
        left: PresenceEntry,
    },
    /// A state or diff has been fully applied: the view is consistent.
    Sync,
}

/// Why a presence message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The payload is not the expected JSON shape.
    #[error("malformed {event}: {reason}")]
    Malformed {
        /// `state` or `diff`.
        event: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Diffs waited too long for a state; the oldest were dropped.
    #[error("{dropped} presence diffs dropped while waiting for a state")]
    PendingOverflow {
        /// How many.
        dropped: usize,
    },
}

type Diff = (
    BTreeMap<String, PresenceEntry>,
    BTreeMap<String, PresenceEntry>,
);

/// The presence view of one channel; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Presence {
    events: PresenceEvents,
    state: BTreeMap<String, PresenceEntry>,
    /// Diffs waiting for a state, each with the join ref it arrived under and the size of its
    /// payload.
    pending: VecDeque<Held>,
    /// The payload bytes of `pending`.
    pending_bytes: usize,
    /// [`MAX_PENDING_BYTES`], but for tests.
    max_pending_bytes: usize,
    state_join_ref: Option<String>,
    changes: VecDeque<PresenceChange>,
}

/// A diff held for the next state.
#[derive(Debug, Clone)]
struct Held {
    join_ref: Option<String>,
    diff: Diff,
    bytes: usize,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            events: PresenceEvents::default(),
            state: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_pending_bytes: MAX_PENDING_BYTES,
            state_join_ref: None,
            changes: VecDeque::new(),
        }
    }
}

impl Presence {
    /// An empty view listening for `events`.
    pub fn new(events: PresenceEvents) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// The event names this view consumes.
    pub fn events(&self) -> &PresenceEvents {
        &self.events
    }

    /// Whether `event` is one this view consumes.
    pub fn handles(&self, event: &str) -> bool {
        event == self.events.state || event == self.events.diff
    }

    /// Whether diffs are being held: no state has arrived since the join `join_ref`.
    pub fn is_pending(&self, join_ref: Option<&str>) -> bool {
        self.state_join_ref.is_none() || self.state_join_ref.as_deref() != join_ref
    }

    /// Applies a presence message received while the channel's current join ref is
    /// `join_ref`. Returns whether `event` was a presence event.
    ///
    /// # Errors
    /// [`PresenceError`] for a malformed payload (the view is unchanged) or when held diffs
    /// overflowed (the message was still applied).
    pub fn handle(
        &mut self,
        event: &str,
        payload: &Payload,
        join_ref: Option<&str>,
    ) -> Result<bool, PresenceError> {
        if event == self.events.state {
            let state = parse_state(payload, "state")?;
            self.state_join_ref = join_ref.map(str::to_owned);
            self.sync_state(state);
            self.pending_bytes = 0;
            for held in std::mem::take(&mut self.pending) {
                if held.join_ref.as_deref() == join_ref {
                    self.sync_diff(held.diff.0, held.diff.1);
                }
            }
            self.changes.push_back(PresenceChange::Sync);
            Ok(true)
        } else if event == self.events.diff {
            let diff = parse_diff(payload)?;
            if self.is_pending(join_ref) {
                let bytes = payload.as_bytes().len();
                self.pending.push_back(Held {
                    join_ref: join_ref.map(str::to_owned),
                    diff,
                    bytes,
                });
                self.pending_bytes = self.pending_bytes.saturating_add(bytes);
                let mut dropped = 0;
                while self.pending.len() > MAX_PENDING_DIFFS
                    || (self.pending_bytes > self.max_pending_bytes && self.pending.len() > 1)
                {
                    if let Some(oldest) = self.pending.pop_front() {
                        self.pending_bytes -= oldest.bytes;
                        dropped += 1;
                    }
                }
                if dropped > 0 {
                    return Err(PresenceError::PendingOverflow { dropped });
                }
            } else {
                self.sync_diff(diff.0, diff.1);
                self.changes.push_back(PresenceChange::Sync);
            }
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The next change, in order.
    pub fn poll_change(&mut self) -> Option<PresenceChange> {
        self.changes.pop_front()
    }

    /// Every key's presence, by key.
    pub fn list(&self) -> impl Iterator<Item = (&str, &PresenceEntry)> {
        self.state.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// One key's presence.
    pub fn get(&self, key: &str) -> Option<&PresenceEntry> {
        self.state.get(key)
    }

    /// Number of keys present.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Diffs held for the next state.
    pub fn pending_diffs(&self) -> usize {
        self.pending.len()
    }

    /// Replaces the view with `new`, reporting the difference as joins and leaves.
    fn sync_state(&mut self, new: BTreeMap<String, PresenceEntry>) {
        let mut joins = BTreeMap::new();
        let mut leaves = BTreeMap::new();
        for (key, current) in &self.state {
            if !new.contains_key(key) {
                leaves.insert(key.clone(), current.clone());
            }
        }
        for (key, incoming) in new {
            match self.state.get(&key) {
                Some(current) => {
                    let new_refs = RefSet::of(&incoming);
                    let cur_refs = RefSet::of(current);
                    let joined: Vec<Value> = incoming
                        .metas
                        .iter()
                        .filter(|m| !cur_refs.contains(ref_key(m)))
                        .cloned()
                        .collect();
                    let left: Vec<Value> = current
                        .metas
                        .iter()
                        .filter(|m| !new_refs.contains(ref_key(m)))
                        .cloned()
                        .collect();
                    if !joined.is_empty() {
                        joins.insert(
                            key.clone(),
                            PresenceEntry {
                                metas: joined,
                                extra: incoming.extra.clone(),
                            },
                        );
                    }
                    if !left.is_empty() {
                        leaves.insert(
                            key.clone(),
                            PresenceEntry {
                                metas: left,
                                extra: current.extra.clone(),
                            },
                        );
                    }
                }
                None => {
                    joins.insert(key, incoming);
                }
            }
        }
        self.sync_diff(joins, leaves);
    }

    /// Applies joins, then leaves.
    fn sync_diff(
        &mut self,
        joins: BTreeMap<String, PresenceEntry>,
        leaves: BTreeMap<String, PresenceEntry>,
    ) {
        for (key, joined) in joins {
            // Taken out rather than cloned: the change reports it, and the new entry is built
            // from the metas of it that stay.
            let current = self.state.remove(&key);
            let mut entry = joined.clone();
            if let Some(cur) = &current {
                let joined_refs = RefSet::of(&joined);
                let mut metas: Vec<Value> = cur
                    .metas
                    .iter()
                    .filter(|m| !joined_refs.contains(ref_key(m)))
                    .cloned()
                    .collect();
                metas.extend(entry.metas);
                entry.metas = metas;
            }
            self.state.insert(key.clone(), entry);
            self.changes.push_back(PresenceChange::Join {
                key,
                current,
                joined,
            });
        }
        for (key, left) in leaves {
            let Some(cur) = self.state.get_mut(&key) else {
                continue;
            };
            let left_refs = RefSet::of(&left);
            cur.metas.retain(|m| !left_refs.contains(ref_key(m)));
            let current = cur.clone();
            if current.metas.is_empty() {
                self.state.remove(&key);
            }
            self.changes
                .push_back(PresenceChange::Leave { key, current, left });
        }
    }
}

fn json_of(payload: &Payload, event: &'static str) -> Result<Value, PresenceError> {
    payload
        .decode::<Value>()
        .map_err(|_| PresenceError::Malformed {
            event,
            reason: "not a JSON payload",
        })
}

fn entries(
    value: &Value,
    event: &'static str,
) -> Result<BTreeMap<String, PresenceEntry>, PresenceError> {
    let obj = value.as_object().ok_or(PresenceError::Malformed {
        event,
        reason: "expected an object of presences",
    })?;
    obj.iter()
        .map(|(k, v)| {
            PresenceEntry::from_value(v)
                .map(|e| (k.clone(), e))
                .ok_or(PresenceError::Malformed {
                    event,
                    reason: "a presence needs a `metas` array",
                })
        })
        .collect()
}

fn parse_state(
    payload: &Payload,
    event: &'static str,
) -> Result<BTreeMap<String, PresenceEntry>, PresenceError> {
    entries(&json_of(payload, event)?, event)
}

fn parse_diff(payload: &Payload) -> Result<Diff, PresenceError> {
    let v = json_of(payload, "diff")?;
    if !v.is_object() {
        return Err(PresenceError::Malformed {
            event: "diff",
            reason: "expected an object with `joins` and `leaves`",
        });
    }
    let empty = Value::Object(Map::new());
    let joins = entries(v.get("joins").unwrap_or(&empty), "diff")?;
    let leaves = entries(v.get("leaves").unwrap_or(&empty), "diff")?;
    Ok((joins, leaves))
}

#[cfg(test)]
mod tests;
