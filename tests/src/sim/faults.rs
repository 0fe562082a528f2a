//! Faults: what the network and the server can suffer, by hand ([`Sim::fault`]) or at random
//! during the chaos phase.

use std::time::Duration;

use super::harness::{Failure, Sim};
use super::net::{Dir, LinkState, Packet};
use super::transcript::note;
use crate::server::ConnId;

/// A fault the network or the server can suffer, injected at random during a run's chaos phase
/// or by hand with [`Sim::fault`]. Faults aimed at a client hit its current connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection dies abruptly: frames in flight are lost, both ends see a reset.
    Cut {
        /// The client.
        client: usize,
    },
    /// The connection goes half-open: nothing arrives any more in either direction, and
    /// nobody is told.
    HalfOpen {
        /// The client.
        client: usize,
    },
    /// The server closes the connection cleanly, with a close frame.
    Close {
        /// The client.
        client: usize,
        /// The close code.
        code: u16,
    },
    /// One direction of the connection stalls: frames queue up, in order, until it ends.
    Stall {
        /// The client.
        client: usize,
        /// Which direction: client to server, or the other way.
        to_server: bool,
        /// How long.
        duration: Duration,
    },
    /// The network forges frames to the client.
    Hostile {
        /// The client.
        client: usize,
        /// How many.
        count: u32,
    },
    /// The server refuses every handshake (HTTP 503) for a while.
    RefuseConnects {
        /// How long.
        duration: Duration,
    },
    /// The server restarts: every connection aborts, every channel and presence is lost.
    RestartServer,
    /// Every channel of a topic crashes (`phx_error`).
    CrashChannel {
        /// The topic.
        topic: String,
    },
    /// Every channel of a topic stops (`phx_close`).
    StopChannel {
        /// The topic.
        topic: String,
    },
    /// The server stops answering heartbeats for a while.
    MuteHeartbeats {
        /// How long.
        duration: Duration,
    },
    /// The server closes every connection (a `disconnect` broadcast, 1001).
    DisconnectAll,
}

impl Sim {
    /// During the chaos phase, a connection may die right after a frame went through.
    pub(super) fn mid_stream_death(&mut self, id: ConnId) {
        let p = match (&self.options.chaos, self.chaos_on) {
            (Some(ch), true) => ch.mid_stream_death,
            _ => return,
        };
        if p == 0.0 || !self.rng_chaos.chance(p) || !self.net.link(id).is_some_and(|l| l.is_live())
        {
            return;
        }
        let now = self.now();
        self.stats.faults += 1;
        if self.rng_chaos.chance(0.5) {
            let lost = self.net.cut(now, id, "connection reset");
            note!(
                self,
                "chaos",
                "n{} dies mid-stream (cut): {lost} packet(s) in flight lost",
                id.0
            );
        } else {
            let lost = self.net.half_open(now, id);
            note!(
                self,
                "chaos",
                "n{} dies mid-stream (half-open): {lost} packet(s) in flight lost",
                id.0
            );
        }
    }

    /// Injects a fault now.
    ///
    /// # Errors
    /// The first broken invariant (faults make clients and the server react at once).
    pub fn fault(&mut self, fault: Fault) -> Result<(), Failure> {
        self.guard(|s| s.apply_fault(fault).map(drop))
    }

    /// The link a fault aimed at client `i` hits: its current one, unless it is already dead.
    pub(super) fn target(&self, i: usize) -> Option<ConnId> {
        let link = self.clients.get(i)?.model.conn.as_ref()?.link;
        let l = self.net.link(link)?;
        (matches!(l.state, LinkState::Dialing | LinkState::Open) && !l.client_done).then_some(link)
    }

    /// Applies a fault; returns whether it hit anything.
    pub(super) fn apply_fault(&mut self, fault: Fault) -> Result<bool, String> {
        let now = self.now();
        note!(self, "chaos", "{fault:?}");
        self.stats.faults += 1;
        match fault {
            Fault::Cut { client } => {
                let Some(id) = self.target(client) else {
                    return Ok(false);
                };
                let lost = self.net.cut(now, id, "connection reset");
                note!(
                    self,
                    "net",
                    "n{} cut: {lost} packet(s) in flight lost",
                    id.0
                );
            }
            Fault::HalfOpen { client } => {
                let Some(id) = self.target(client) else {
                    return Ok(false);
                };
                let lost = self.net.half_open(now, id);
                note!(
                    self,
                    "net",
                    "n{} half-open: {lost} packet(s) in flight lost",
                    id.0
                );
            }
            Fault::Close { client, code } => {
                let Some(id) = self.target(client) else {
                    return Ok(false);
                };
                if !self.server.close_connection(id, code, "") {
                    return Ok(false);
                }
                self.drain_server();
            }
            Fault::Stall {
                client,
                to_server,
                duration,
            } => {
                let Some(id) = self.target(client) else {
                    return Ok(false);
                };
                let dir = if to_server {
                    Dir::ToServer
                } else {
                    Dir::ToClient
                };
                self.net.hold(id, dir, now + duration);
            }
            Fault::Hostile { client, count } => {
                let live = |id: &ConnId| self.net.link(*id).is_some_and(|l| l.is_live());
                let Some(id) = self.target(client).filter(live) else {
                    return Ok(false);
                };
                for _ in 0..count {
                    let seed = self.rng_chaos.u64();
                    self.net.send(
                        now,
                        id,
                        Dir::ToClient,
                        Packet::Hostile(seed),
                        &mut self.rng_net,
                    );
                }
            }
            Fault::RefuseConnects { duration } => self.server.refuse_connects_until(now + duration),
            Fault::RestartServer => {
                self.server.restart(now);
                self.drain_server();
            }
            Fault::CrashChannel { topic } => {
                self.server.crash_channel(&topic);
                self.drain_server();
            }
            Fault::StopChannel { topic } => {
                self.server.stop_channel(&topic);
                self.drain_server();
            }
            Fault::MuteHeartbeats { duration } => {
                self.server.set_answer_heartbeats(false);
                let until = now + duration;
                self.unmute_at = Some(self.unmute_at.map_or(until, |u| u.max(until)));
            }
            Fault::DisconnectAll => {
                self.server.disconnect_all();
                self.drain_server();
            }
        }
        self.net.forget_finished();
        Ok(true)
    }

    pub(super) fn random_fault(&mut self) -> Result<(), String> {
        let Some(chaos) = self.options.chaos.clone() else {
            return Ok(());
        };
        let r = &mut self.rng_chaos;
        let client = r.index(self.clients.len());
        let topic = r.pick(&super::options::TOPICS).to_string();
        let stall_ms = u64::try_from(chaos.max_stall.as_millis()).unwrap_or(0);
        let fault = match r.weighted(&[
            (15, 0),
            (10, 1),
            (10, 2),
            (15, 3),
            (20, 4),
            (6, 5),
            (4, 6),
            (10, 7),
            (3, 8),
            (3, 9),
            (2, 10),
        ]) {
            0 => Fault::Cut { client },
            1 => Fault::HalfOpen { client },
            2 => Fault::Close {
                client,
                code: *r.pick(&[1000, 1001, 1002, 1011, 1012]),
            },
            3 => Fault::Stall {
                client,
                to_server: r.chance(0.5),
                duration: r.ms(0, stall_ms),
            },
            4 => Fault::Hostile {
                client,
                count: r.range(1, 4) as u32,
            },
            5 => Fault::RefuseConnects {
                duration: r.ms(500, 20_000),
            },
            6 => Fault::RestartServer,
            7 => Fault::CrashChannel { topic },
            8 => Fault::StopChannel { topic },
            9 => Fault::MuteHeartbeats {
                duration: r.ms(1000, 60_000),
            },
            _ => Fault::DisconnectAll,
        };
        self.apply_fault(fault).map(drop)
    }
}
