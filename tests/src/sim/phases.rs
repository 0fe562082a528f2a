//! The phases of a run: start, chaos, heal (and its bound), settling (and the agreement between
//! the clients and the server), and the final disconnect.

use std::collections::BTreeMap;
use std::time::Duration;

use phx_proto::{ChannelState, ConnectionId};
use serde_json::Value;

use super::harness::{Failure, Sim};
use super::transcript::note;
use crate::server::ServerConfig;

impl Sim {
    /// Starts the random plan: every client connects and joins some of its topics; faults and
    /// the workload begin.
    pub(super) fn start(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.clients.len() {
            self.cmd_connect(i)?;
            for topic in self.clients[i].params.topics.clone() {
                if self.rng_work.chance(0.6) {
                    self.cmd_join(i, &topic, None)?;
                }
            }
            if let Some(w) = &self.options.workload {
                let every = w.op_every;
                self.clients[i].next_op = Some(now + self.rng_work.every(every));
                self.workload_on = true;
            }
        }
        if let Some(ch) = &self.options.chaos {
            let every = ch.fault_every;
            self.next_fault = Some(now + self.rng_chaos.every(every));
            self.chaos_on = true;
        }
        Ok(())
    }

    pub(super) fn heal_now(&mut self) -> Result<(), String> {
        let now = self.now();
        note!(
            self,
            "sim",
            "HEAL: no more faults or workload; the network is healthy from now on"
        );
        self.chaos_on = false;
        self.workload_on = false;
        self.next_fault = None;
        self.unmute_at = None;
        self.server.set_answer_heartbeats(true);
        self.server.refuse_connects_until(now);
        self.healed_at = Some(now);
        for i in 0..self.clients.len() {
            self.clients[i].next_op = None;
            if self.clients[i].token_expired {
                self.set_token(i, false)?;
            }
            if self.clients[i].user_disconnected {
                self.cmd_connect(i)?;
                for topic in self.clients[i].params.topics.clone() {
                    self.cmd_join(i, &topic, None)?;
                }
            }
            let bound = self.heal_bound(i);
            note!(
                self,
                "sim",
                "c{i} must have every channel joined within {bound:?}"
            );
            self.clients[i].checkpoint = Some(now + bound);
        }
        Ok(())
    }

    /// Ends the faults and the workload: from now on the network is healthy. Each client must
    /// then be connected with every channel it still wants joined within its heal bound,
    /// checked when that time comes.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn heal(&mut self) -> Result<(), Failure> {
        self.guard(Self::heal_now)
    }

    pub(super) fn check_healed(&self, i: usize) -> Result<(), String> {
        let bound = self.heal_bound(i);
        let cl = &self.clients[i];
        if !cl.socket.is_connected() {
            return Err(format!(
                "c{i} is {:?}, not connected, {bound:?} after the heal",
                cl.socket.state()
            ));
        }
        for v in cl.socket.channels() {
            if !matches!(v.state(), ChannelState::Joined | ChannelState::Leaving) {
                return Err(format!(
                    "c{i}: {} ({}) is {:?}, not joined, {bound:?} after the heal",
                    v.id(),
                    v.topic(),
                    v.state()
                ));
            }
        }
        Ok(())
    }

    /// Why the run has not settled yet (`None` once it has): frames in flight, a client not
    /// connected, a channel not joined, a presence view waiting for its state, or a
    /// connection the server still holds that no client uses.
    pub(super) fn unsettled(&self) -> Option<String> {
        if self.net.in_flight() > 0 {
            return Some(format!("{} packet(s) in flight", self.net.in_flight()));
        }
        let mut used = Vec::new();
        for (i, cl) in self.clients.iter().enumerate() {
            if !cl.socket.is_connected() {
                return Some(format!("c{i} is {:?}", cl.socket.state()));
            }
            if let Some(conn) = &cl.model.conn {
                used.push(conn.link);
            }
            for v in cl.socket.channels() {
                if v.state() != ChannelState::Joined {
                    return Some(format!(
                        "c{i}: {} ({}) is {:?}",
                        v.id(),
                        v.topic(),
                        v.state()
                    ));
                }
                let jr = v.join_ref().map(|r| r.to_string());
                if let Some(p) = v.presence()
                    && p.is_pending(jr.as_deref())
                {
                    return Some(format!("c{i}: {} waits for its presence state", v.topic()));
                }
            }
        }
        used.sort();
        let held = self.server.connections();
        if held != used {
            return Some(format!(
                "the server holds {held:?}, the clients use {used:?}"
            ));
        }
        None
    }

    /// After the heal: runs until nothing is in flight, every client is connected with every
    /// channel joined and the server holds exactly the clients' connections (or `limit`
    /// passes), then checks that the server and the clients agree: the same channels on each
    /// connection, and presence views equal to the server's.
    ///
    /// # Errors
    /// The first broken invariant, or a run that does not settle.
    pub fn settle(&mut self, limit: Duration) -> Result<(), Failure> {
        self.guard(|s| s.settle_now(limit))
    }

    pub(super) fn settle_now(&mut self, limit: Duration) -> Result<(), String> {
        let until = self.now() + limit;
        if !self.run_to(until, |s| s.unsettled().is_none())? {
            let why = self.unsettled().unwrap_or_default();
            return Err(format!("not settled {limit:?} after the heal: {why}"));
        }
        note!(self, "sim", "settled");
        self.check_agreement()
    }

    /// The server and the clients agree on channels and presence.
    pub(crate) fn check_agreement(&self) -> Result<(), String> {
        for (i, cl) in self.clients.iter().enumerate() {
            let Some(conn) = &cl.model.conn else { continue };
            let mut mine: Vec<String> = cl
                .socket
                .channels()
                .filter(|v| v.is_joined())
                .map(|v| v.topic().to_owned())
                .collect();
            mine.sort();
            let theirs = self.server.channels(conn.link);
            if mine != theirs {
                return Err(format!(
                    "c{i} is joined to {mine:?}, the server has {theirs:?} on n{}",
                    conn.link.0
                ));
            }
            for v in cl.socket.channels() {
                let Some(p) = v.presence() else { continue };
                let client: BTreeMap<String, Vec<String>> = p
                    .list()
                    .map(|(k, e)| {
                        let mut metas: Vec<String> = e.metas.iter().map(canonical).collect();
                        metas.sort();
                        if !e.extra.is_empty() {
                            metas.push(format!(
                                "extra {}",
                                canonical(&Value::Object(e.extra.clone()))
                            ));
                        }
                        (k.to_owned(), metas)
                    })
                    .collect();
                let server_view = self.server.presence_list(v.topic());
                let server: BTreeMap<String, Vec<String>> = server_view
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, e)| {
                                let mut metas: Vec<String> = e
                                    .get("metas")
                                    .and_then(Value::as_array)
                                    .map(|m| m.iter().map(canonical).collect())
                                    .unwrap_or_default();
                                metas.sort();
                                (k.clone(), metas)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if client != server {
                    return Err(format!(
                        "c{i}: presence of {} is {client:?}, the server's is {server:?}",
                        v.topic()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every client disconnects; then every push and channel must have ended, no timer may be
    /// armed, and the server must hold no connection.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn finish(&mut self) -> Result<(), Failure> {
        self.guard(Self::finish_now)
    }

    pub(super) fn finish_now(&mut self) -> Result<(), String> {
        self.chaos_on = false;
        self.workload_on = false;
        for i in 0..self.clients.len() {
            self.clients[i].checkpoint = None;
            self.cmd_disconnect(i)?;
        }
        let until = self.now() + Duration::from_secs(120);
        self.run_to(until, |s| {
            s.net.in_flight() == 0 && s.server.open_connections() == 0
        })?;
        for (i, cl) in self.clients.iter().enumerate() {
            cl.model
                .finished(&cl.socket)
                .map_err(|e| format!("c{i}: {e}"))?;
        }
        let malformed = self.server.stats().malformed_frames;
        if malformed != 0 {
            return Err(format!(
                "the server closed {malformed} connection(s) over a malformed client frame"
            ));
        }
        if self.server.open_connections() != 0 {
            return Err(format!(
                "the server still holds {:?} after every client disconnected",
                self.server.connections()
            ));
        }
        note!(self, "sim", "finished: {:?}", self.stats);
        Ok(())
    }

    /// The whole random plan of [`super::SimOptions::random`]: start, faults and workload until the
    /// heal, the heal bound checks, settling with the agreement checks, and the final
    /// disconnect.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn run_plan(&mut self) -> Result<(), Failure> {
        self.guard(Self::plan)
    }

    pub(super) fn plan(&mut self) -> Result<(), String> {
        self.start()?;
        let chaos_for = self
            .options
            .chaos
            .as_ref()
            .map_or(Duration::ZERO, |c| c.duration);
        let heal_at = self.now() + chaos_for;
        self.run_to(heal_at, |_| false)?;
        self.heal_now()?;
        let last = (0..self.clients.len())
            .map(|i| self.heal_bound(i))
            .max()
            .unwrap_or_default();
        self.run_to(self.now() + last, |_| false)?;
        if let Some(i) = self.clients.iter().position(|c| c.checkpoint.is_some()) {
            return Err(format!("c{i}: heal checkpoint never ran"));
        }
        let idle = ServerConfig::default().idle_timeout.unwrap_or_default();
        self.settle_now(idle + Duration::from_secs(30))?;
        self.finish_now()
    }
}

/// A JSON value with object keys sorted, as text.
fn canonical(v: &Value) -> String {
    pub(super) fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let m: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(m.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// Debugging aid for targeted scenarios: the state of each client's channels.
impl Sim {
    /// `topic: state` for each live channel of client `i`, in creation order.
    pub fn channel_states(&self, i: usize) -> Vec<(String, ChannelState)> {
        self.clients[i]
            .socket
            .channels()
            .map(|v| (v.topic().to_owned(), v.state()))
            .collect()
    }

    /// The connection the client is using, as the client names it.
    pub fn client_connection(&self, i: usize) -> Option<ConnectionId> {
        self.clients[i].socket.connection()
    }
}
