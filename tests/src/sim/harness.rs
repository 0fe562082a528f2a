//! [`Sim`]: the clients, the server model and the network, on one virtual clock.

use std::fmt;
use std::time::{Duration, Instant};

use phx_proto::{
    ChannelState, CloseReason, ConnectionId, DecodeError, DisconnectReason, Event, Frame, Socket,
    SocketState, Transmit,
};

use super::clock::{Clock, Elapsed};
use super::hostile;
use super::model::{Cause, Model};
use super::net::{Dir, LinkState, Network, Packet};
use super::options::{APP_RECONNECT_DELAY, ClientParams, SimOptions};
use super::rng::SimRng;
use super::transcript::{self, Transcript, note};
use crate::server::{self, ConnId, Output, PresenceOrder, Server, ServerConfig};

/// Steps allowed at one instant before the run is declared stuck (a livelock).
const MAX_STEPS_AT_ONE_INSTANT: u64 = 20_000;
/// Steps allowed in one run.
const MAX_STEPS: u64 = 5_000_000;

/// A broken invariant (or a panic), with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The run's seed.
    pub seed: u64,
    /// Virtual time of the failure.
    pub elapsed: Duration,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// The one-line command that replays the run and prints its transcript.
    pub fn replay_command(&self) -> String {
        super::replay_command(self.seed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at {}: {}\nreplay: {}",
            self.seed,
            Elapsed(self.elapsed),
            self.message,
            self.replay_command()
        )
    }
}

impl std::error::Error for Failure {}

/// Counters of a run, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Inputs handed to a client or the server.
    pub steps: u64,
    /// Faults injected.
    pub faults: u64,
    /// Forged frames delivered to clients.
    pub hostile_frames: u64,
    /// Pushes issued.
    pub pushes: u64,
    /// Connections the clients opened.
    pub connections: u64,
    /// Of the client slowest to heal relative to its bound: the time from the heal until it was
    /// connected with every channel it wants joined (for good).
    pub heal_time: Duration,
    /// That client's heal bound.
    pub heal_bound: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    Net,
    Server,
    Client(usize),
    Unmute,
    App(usize),
    Work(usize),
    Chaos,
    Checkpoint(usize),
}

pub(super) struct Client {
    pub(super) socket: Socket,
    pub(super) model: Model,
    pub(super) params: ClientParams,
    pub(super) next_op: Option<Instant>,
    pub(super) app_connect_at: Option<Instant>,
    pub(super) user_disconnected: bool,
    pub(super) token_expired: bool,
    pub(super) checkpoint: Option<Instant>,
    pub(super) counter: u64,
    pub(super) last_close: Option<(Duration, u16, &'static str)>,
    /// Since the heal: whether the client was connected with every channel joined after the
    /// last step, and when it last became so.
    pub(super) joined_since: Option<Instant>,
    /// Messages `handle_frame_with` handed over in this step (with `params.hand_over`): they
    /// come before whatever the step queued.
    pub(super) handed: Vec<Event>,
}

impl Client {
    /// Feeds a frame received on `conn` to the socket, as `params.hand_over` says.
    fn feed(&mut self, now: Instant, conn: ConnectionId, frame: Frame) -> Result<(), DecodeError> {
        if self.params.hand_over {
            let handed = &mut self.handed;
            self.socket
                .handle_frame_with(now, conn, frame, |channel, message| {
                    handed.push(Event::Message { channel, message });
                })
        } else {
            self.socket.handle_frame(now, conn, frame)
        }
    }
}

/// A deterministic simulation: clients driving `phx_proto::Socket`s, the server model, and the
/// network between them, all on one virtual clock and one seed. See the [module docs](super).
pub struct Sim {
    pub(super) seed: u64,
    pub(crate) clock: Clock,
    pub(crate) transcript: Transcript,
    pub(super) net: Network,
    pub(super) server: Server,
    pub(super) clients: Vec<Client>,
    pub(super) options: SimOptions,
    pub(super) rng_net: SimRng,
    pub(super) rng_chaos: SimRng,
    pub(super) rng_work: SimRng,
    pub(super) rng_app: SimRng,
    pub(super) chaos_on: bool,
    pub(super) workload_on: bool,
    pub(super) next_fault: Option<Instant>,
    pub(super) unmute_at: Option<Instant>,
    pub(super) healed_at: Option<Instant>,
    pub(super) same_instant: u64,
    pub(super) last_instant: Duration,
    pub(super) stats: RunStats,
    pub(super) failure: Option<Failure>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("elapsed", &self.clock.elapsed())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

pub(super) fn c(i: usize) -> String {
    format!("c{i}")
}

pub(super) fn u(i: usize) -> String {
    format!("user{i}")
}

/// The server model's view of a client's dial.
fn upgrade_request(req: &phx_proto::ConnectRequest) -> server::ConnectRequest {
    let url = req.url();
    let target = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let r = server::ConnectRequest::new(target);
    if req.subprotocols().is_empty() {
        r
    } else {
        r.with_protocols(req.subprotocols().join(","))
    }
}

impl Sim {
    /// A simulation of `options`, with its epoch read from the real clock (the one and only
    /// read).
    pub fn new(options: SimOptions) -> Self {
        Self::with_epoch(options, Instant::now())
    }

    /// A simulation of `options` starting at `epoch`. Runs of the same options from different
    /// epochs give the same transcript.
    pub fn with_epoch(options: SimOptions, epoch: Instant) -> Self {
        let mut rng = SimRng::new(options.seed ^ 0x5111_0000_0000_0001);
        let (rng_net, rng_chaos, rng_work, rng_app) =
            (rng.fork(), rng.fork(), rng.fork(), rng.fork());
        let clock = Clock::new(epoch);
        let server = Server::new(ServerConfig {
            max_flood: 50,
            // Odd seeds get a join's presence state before the diff announcing it, as Phoenix
            // may send them (the parity leaves the random streams as they were).
            presence_order: if options.seed % 2 == 1 {
                PresenceOrder::StateFirst
            } else {
                PresenceOrder::DiffFirst
            },
            ..ServerConfig::default()
        });
        let clients = options
            .clients
            .iter()
            .map(|p| Client {
                socket: Socket::new(p.config(), epoch),
                model: Model::new(p.clone()),
                params: p.clone(),
                next_op: None,
                app_connect_at: None,
                user_disconnected: false,
                token_expired: false,
                checkpoint: None,
                counter: 0,
                last_close: None,
                joined_since: None,
                handed: Vec::new(),
            })
            .collect();
        let mut sim = Self {
            seed: options.seed,
            clock,
            transcript: Transcript::new(options.trace),
            net: Network::new(options.latency, options.jitter),
            server,
            clients,
            rng_net,
            rng_chaos,
            rng_work,
            rng_app,
            chaos_on: false,
            workload_on: false,
            next_fault: None,
            unmute_at: None,
            healed_at: None,
            same_instant: 0,
            last_instant: Duration::ZERO,
            stats: RunStats::default(),
            failure: None,
            options,
        };
        note!(
            sim,
            "sim",
            "seed {} with {} client(s)",
            sim.seed,
            sim.clients.len()
        );
        let (lat, jit) = (sim.options.latency, sim.options.jitter);
        note!(
            sim,
            "sim",
            "latency {:?}..{:?}, jitter up to {jit:?}",
            lat.0,
            lat.1
        );
        if let Some(ch) = sim.options.chaos.clone() {
            note!(sim, "sim", "chaos {ch:?}");
        }
        for i in 0..sim.clients.len() {
            let p = sim.clients[i].params.clone();
            note!(sim, c(i), "{p:?}");
        }
        sim
    }

    // ----------------------------------------------------------------- queries

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Client `i`'s socket.
    pub fn client(&self, i: usize) -> &Socket {
        &self.clients[i].socket
    }

    /// Client `i`'s settings.
    pub fn params(&self, i: usize) -> &ClientParams {
        &self.clients[i].params
    }

    /// The server model.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The transcript so far, if it is kept.
    pub fn transcript(&self) -> Option<&str> {
        self.transcript.text()
    }

    /// Takes the transcript out (it is not kept any longer).
    pub fn take_transcript(&mut self) -> Option<String> {
        self.transcript.take()
    }

    /// The run's counters.
    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// Whether client `i` has a joined channel on `topic`.
    pub fn is_joined(&self, i: usize, topic: &str) -> bool {
        self.clients[i]
            .socket
            .channel_by_topic(topic)
            .and_then(|id| self.clients[i].socket.channel(id))
            .is_some_and(|v| v.is_joined())
    }

    /// When client `i` last closed a connection itself, with the code and reason it used.
    pub fn last_close(&self, i: usize) -> Option<(Duration, u16, &'static str)> {
        self.clients[i].last_close
    }

    /// The heal bound of client `i` (see [`ClientParams::heal_bound`]).
    pub fn heal_bound(&self, i: usize) -> Duration {
        let stall = self
            .options
            .chaos
            .as_ref()
            .map_or(Duration::ZERO, |c| c.max_stall);
        self.clients[i]
            .params
            .heal_bound(self.net.max_delay(), stall)
    }

    /// The server-side id of client `i`'s current connection.
    pub fn connection(&self, i: usize) -> Option<ConnId> {
        self.clients[i].model.conn.as_ref().map(|c| c.link)
    }

    // ----------------------------------------------------------------- running

    pub(super) fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, Failure> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        f(self).map_err(|message| {
            note!(self, "check", "VIOLATION: {message}");
            let failure = Failure {
                seed: self.seed,
                elapsed: self.clock.elapsed(),
                message,
            };
            self.failure = Some(failure.clone());
            failure
        })
    }

    /// Runs for `d` of virtual time.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn run_for(&mut self, d: Duration) -> Result<(), Failure> {
        let until = self.now() + d;
        self.guard(|s| s.run_to(until, |_| false).map(drop))
    }

    /// Runs until `done` holds (checked before each step) or `limit` has passed; returns
    /// whether `done` held.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn run_until(
        &mut self,
        done: impl FnMut(&Self) -> bool,
        limit: Duration,
    ) -> Result<bool, Failure> {
        let until = self.now() + limit;
        self.guard(|s| s.run_to(until, done))
    }

    pub(super) fn next_due(&self) -> Option<(Instant, Due)> {
        let mut best: Option<(Instant, Due)> = None;
        let mut offer = |at: Option<Instant>, due: Due| {
            if let Some(at) = at
                && best.is_none_or(|b| (at, due) < b)
            {
                best = Some((at, due));
            }
        };
        offer(self.net.next_at(), Due::Net);
        offer(self.server.poll_timeout(), Due::Server);
        offer(self.unmute_at, Due::Unmute);
        if self.chaos_on {
            offer(self.next_fault, Due::Chaos);
        }
        for (i, c) in self.clients.iter().enumerate() {
            offer(c.socket.poll_timeout(), Due::Client(i));
            offer(c.app_connect_at, Due::App(i));
            if self.workload_on {
                offer(c.next_op, Due::Work(i));
            }
            offer(c.checkpoint, Due::Checkpoint(i));
        }
        best
    }

    pub(super) fn run_to(
        &mut self,
        until: Instant,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<bool, String> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let Some((at, due)) = self.next_due().filter(|(at, _)| *at <= until) else {
                self.clock.advance_to(until);
                return Ok(false);
            };
            self.clock.advance_to(at);
            self.count_step()?;
            self.dispatch(due)?;
            self.liveness()?;
            self.track_heal();
        }
    }

    pub(super) fn count_step(&mut self) -> Result<(), String> {
        self.stats.steps += 1;
        if self.clock.elapsed() == self.last_instant {
            self.same_instant += 1;
            if self.same_instant > MAX_STEPS_AT_ONE_INSTANT {
                return Err(format!(
                    "livelock: {MAX_STEPS_AT_ONE_INSTANT} steps without time passing"
                ));
            }
        } else {
            self.last_instant = self.clock.elapsed();
            self.same_instant = 0;
        }
        if self.stats.steps > MAX_STEPS {
            return Err(format!("{MAX_STEPS} steps in one run"));
        }
        Ok(())
    }

    pub(super) fn dispatch(&mut self, due: Due) -> Result<(), String> {
        let now = self.now();
        match due {
            Due::Net => self.deliver(),
            Due::Server => {
                self.server.handle_timeout(now);
                self.drain_server();
                match self.server.poll_timeout() {
                    Some(t) if t <= now => {
                        Err("server deadline not in the future after handle_timeout".into())
                    }
                    _ => Ok(()),
                }
            }
            Due::Client(i) => {
                note!(self, c(i), "timeout");
                self.clients[i].socket.handle_timeout(now);
                self.after_client(i, Cause::Timeout)?;
                match self.clients[i].socket.poll_timeout() {
                    Some(t) if t <= now => Err(format!(
                        "c{i}: poll_timeout not in the future after handle_timeout"
                    )),
                    _ => Ok(()),
                }
            }
            Due::Unmute => {
                self.unmute_at = None;
                note!(self, "chaos", "the server answers heartbeats again");
                self.server.set_answer_heartbeats(true);
                Ok(())
            }
            Due::App(i) => {
                self.clients[i].app_connect_at = None;
                let cl = &self.clients[i];
                if cl.user_disconnected || cl.socket.state() != SocketState::Disconnected {
                    return Ok(());
                }
                note!(
                    self,
                    format!("app{i}"),
                    "the socket stopped by itself: connect again"
                );
                self.cmd_connect(i)
            }
            Due::Work(i) => {
                let every = self
                    .options
                    .workload
                    .as_ref()
                    .map_or(Duration::from_secs(1), |w| w.op_every);
                let next = now + self.rng_work.every(every);
                self.clients[i].next_op = Some(next);
                self.work(i)
            }
            Due::Chaos => {
                let every = self
                    .options
                    .chaos
                    .as_ref()
                    .map_or(Duration::from_secs(5), |c| c.fault_every);
                self.next_fault = Some(now + self.rng_chaos.every(every));
                self.random_fault()
            }
            Due::Checkpoint(i) => {
                self.clients[i].checkpoint = None;
                self.check_healed(i)?;
                let (Some(healed), Some(since)) = (self.healed_at, self.clients[i].joined_since)
                else {
                    return Ok(());
                };
                // Keep the slowest heal relative to its bound, for the summary.
                let (took, bound) = (since.saturating_duration_since(healed), self.heal_bound(i));
                let ratio = |t: Duration, b: Duration| t.as_secs_f64() / b.as_secs_f64().max(1e-9);
                if self.stats.heal_bound.is_zero()
                    || ratio(took, bound) > ratio(self.stats.heal_time, self.stats.heal_bound)
                {
                    self.stats.heal_time = took;
                    self.stats.heal_bound = bound;
                }
                Ok(())
            }
        }
    }

    /// After the heal, until each client's checkpoint: when it last became fully joined.
    fn track_heal(&mut self) {
        if self.healed_at.is_none() {
            return;
        }
        let now = self.now();
        for i in 0..self.clients.len() {
            if self.clients[i].checkpoint.is_none() {
                continue;
            }
            let joined = self.client_joined(i);
            let cl = &mut self.clients[i];
            match (joined, cl.joined_since) {
                (true, None) => cl.joined_since = Some(now),
                (false, Some(_)) => cl.joined_since = None,
                _ => {}
            }
        }
    }

    /// Whether client `i` is connected with every channel it wants joined.
    pub(super) fn client_joined(&self, i: usize) -> bool {
        let s = &self.clients[i].socket;
        s.is_connected()
            && s.channels()
                .all(|v| matches!(v.state(), ChannelState::Joined | ChannelState::Leaving))
    }

    /// Time-based checks of every client.
    pub(super) fn liveness(&self) -> Result<(), String> {
        let now = self.now();
        for (i, cl) in self.clients.iter().enumerate() {
            cl.model
                .liveness(&cl.socket, now)
                .map_err(|e| format!("c{i}: {e}"))?;
            if let Some(conn) = &cl.model.conn
                && conn.open
                && cl.socket.is_connected()
                && cl.socket.connection() == Some(conn.id)
                && let Some(t) = self.net.link(conn.link).and_then(|l| l.half_open_at)
                && now > t + 2 * cl.params.heartbeat_interval
            {
                return Err(format!(
                    "c{i}: half-open connection n{} (since {}) not detected within two heartbeat intervals",
                    conn.link.0,
                    Elapsed(self.clock.since_epoch(t))
                ));
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------- the network

    pub(super) fn deliver(&mut self) -> Result<(), String> {
        let now = self.now();
        let Some(p) = self.net.pop_due(now) else {
            return Ok(());
        };
        let id = p.link;
        let Some(link) = self.net.link(id) else {
            return Ok(());
        };
        match p.dir {
            Dir::ToServer => {
                if link.server_done {
                    return Ok(());
                }
                match p.packet {
                    Packet::Connect(req) => {
                        note!(
                            self,
                            "srv",
                            "< n{} upgrade {} protocols {:?}",
                            id.0,
                            req.target,
                            req.protocols
                        );
                        match self.server.handle_connect(now, id, &req) {
                            Ok(_) => {
                                note!(self, "srv", "> n{} 101 upgraded", id.0);
                                self.net.send(
                                    now,
                                    id,
                                    Dir::ToClient,
                                    Packet::Handshake(Ok(())),
                                    &mut self.rng_net,
                                );
                            }
                            Err(r) => {
                                note!(self, "srv", "> n{} refused with HTTP {}", id.0, r.status);
                                self.net.send(
                                    now,
                                    id,
                                    Dir::ToClient,
                                    Packet::Handshake(Err(r.status)),
                                    &mut self.rng_net,
                                );
                                if let Some(l) = self.net.link_mut(id) {
                                    l.server_done = true;
                                }
                            }
                        }
                    }
                    Packet::Frame(f) => {
                        note!(self, "srv", "< n{} {}", id.0, transcript::frame(&f));
                        self.server.handle_frame(now, id, f);
                        self.drain_server();
                        self.mid_stream_death(id);
                    }
                    Packet::Close { code, reason } => {
                        note!(self, "srv", "< n{} close {code} {reason:?}", id.0);
                        self.server.handle_disconnected(now, id);
                        if let Some(l) = self.net.link_mut(id) {
                            l.server_done = true;
                        }
                    }
                    Packet::Reset(why) => {
                        note!(self, "srv", "< n{} {why}", id.0);
                        self.server.handle_disconnected(now, id);
                        if let Some(l) = self.net.link_mut(id) {
                            l.server_done = true;
                        }
                    }
                    Packet::Handshake(_) | Packet::Hostile(_) => {}
                }
                self.drain_server();
                self.net.forget_finished();
                Ok(())
            }
            Dir::ToClient => {
                if link.client_done {
                    return Ok(());
                }
                let (i, cid) = (link.client, link.conn);
                let cause = match p.packet {
                    Packet::Handshake(Ok(())) => {
                        if let Some(l) = self.net.link_mut(id)
                            && l.state == LinkState::Dialing
                        {
                            l.state = LinkState::Open;
                        }
                        note!(self, c(i), "< n{} upgraded: {cid} open", id.0);
                        let cl = &mut self.clients[i];
                        cl.socket.handle_connected(now, cid);
                        if cl.socket.is_connected() && cl.socket.connection() == Some(cid) {
                            cl.model.on_opened(cid, now);
                            self.stats.connections += 1;
                        }
                        Cause::Opened(cid)
                    }
                    Packet::Handshake(Err(status)) => {
                        self.client_done(id);
                        note!(self, c(i), "< n{} refused with HTTP {status}", id.0);
                        let cl = &mut self.clients[i];
                        cl.socket
                            .handle_closed(now, cid, CloseReason::Refused { status });
                        cl.model.on_conn_end(cid);
                        Cause::Closed(cid)
                    }
                    Packet::Frame(f) => {
                        note!(self, c(i), "< n{} {}", id.0, transcript::frame(&f));
                        let msg = self.clients[i].socket.config().serializer().decode(&f).ok();
                        let cl = &mut self.clients[i];
                        if let Some(m) = &msg {
                            cl.model.on_server_frame(cid, m);
                            cl.model.expect_effect(cid, m, &cl.socket);
                        }
                        let listening =
                            cl.socket.is_connected() && cl.socket.connection() == Some(cid);
                        if let Err(e) = cl.feed(now, cid, f)
                            && listening
                        {
                            return Err(format!(
                                "c{i} could not decode a frame of the server: {e}"
                            ));
                        }
                        Cause::Frame {
                            conn: cid,
                            msg: msg.map(Box::new),
                            hostile: false,
                        }
                    }
                    Packet::Hostile(seed) => {
                        let cl = &self.clients[i];
                        let (f, kind) = hostile::forge(seed, &cl.socket, &cl.model, cl.params.v1);
                        note!(
                            self,
                            c(i),
                            "< n{} FORGED ({kind}) {}",
                            id.0,
                            transcript::frame(&f)
                        );
                        self.stats.hostile_frames += 1;
                        let msg = self.clients[i].socket.config().serializer().decode(&f).ok();
                        let cl = &mut self.clients[i];
                        let _ = cl.feed(now, cid, f);
                        Cause::Frame {
                            conn: cid,
                            msg: msg.map(Box::new),
                            hostile: true,
                        }
                    }
                    Packet::Close { code, reason } => {
                        self.client_done(id);
                        note!(self, c(i), "< n{} close {code} {reason:?}", id.0);
                        let cl = &mut self.clients[i];
                        cl.socket
                            .handle_closed(now, cid, CloseReason::Closed { code, reason });
                        cl.model.on_conn_end(cid);
                        Cause::Closed(cid)
                    }
                    Packet::Reset(why) => {
                        self.client_done(id);
                        note!(self, c(i), "< n{} {why}", id.0);
                        let cl = &mut self.clients[i];
                        cl.socket
                            .handle_closed(now, cid, CloseReason::Error(why.to_owned()));
                        cl.model.on_conn_end(cid);
                        Cause::Closed(cid)
                    }
                    Packet::Connect(_) => return Ok(()),
                };
                let framed = matches!(cause, Cause::Frame { hostile: false, .. });
                self.after_client(i, cause)?;
                if framed {
                    self.mid_stream_death(id);
                }
                self.net.forget_finished();
                Ok(())
            }
        }
    }

    pub(super) fn client_done(&mut self, id: ConnId) {
        if let Some(l) = self.net.link_mut(id) {
            l.client_done = true;
            if l.state != LinkState::HalfOpen {
                l.state = LinkState::Broken;
            }
        }
    }

    pub(super) fn drain_server(&mut self) {
        let now = self.now();
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Frame { conn, frame } => {
                    note!(self, "srv", "> n{} {}", conn.0, transcript::frame(&frame));
                    self.net.send(
                        now,
                        conn,
                        Dir::ToClient,
                        Packet::Frame(frame),
                        &mut self.rng_net,
                    );
                }
                Output::Close { conn, code, reason } => {
                    note!(self, "srv", "> n{} close {code} {reason:?}", conn.0);
                    self.net.send(
                        now,
                        conn,
                        Dir::ToClient,
                        Packet::Close { code, reason },
                        &mut self.rng_net,
                    );
                    if let Some(l) = self.net.link_mut(conn) {
                        l.server_done = true;
                    }
                }
                Output::Abort { conn } => {
                    note!(self, "srv", "> n{} abort", conn.0);
                    let reset = Packet::Reset("connection reset by the server");
                    self.net
                        .send(now, conn, Dir::ToClient, reset, &mut self.rng_net);
                    if let Some(l) = self.net.link_mut(conn) {
                        l.server_done = true;
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------- clients

    /// Drains client `i` after an input, routes what it wrote and checks what it reported.
    pub(super) fn after_client(&mut self, i: usize, cause: Cause) -> Result<(), String> {
        let now = self.now();
        let cl = &mut self.clients[i];
        let transmits: Vec<Transmit> = std::iter::from_fn(|| cl.socket.poll_transmit()).collect();
        let mut events = std::mem::take(&mut cl.handed);
        events.extend(std::iter::from_fn(|| cl.socket.poll_event()));
        cl.model.prescan(&events);
        for t in transmits {
            self.route_transmit(i, t)
                .map_err(|e| format!("c{i}: {e}"))?;
        }
        for e in &events {
            note!(self, c(i), "event {}", transcript::event(&self.clock, e));
            let cl = &mut self.clients[i];
            cl.model
                .on_event(e, &cause, &cl.socket, now)
                .map_err(|e| format!("c{i}: {e}"))?;
            self.app_react(i, e);
        }
        let cl = &mut self.clients[i];
        cl.model
            .check_effect(&events)
            .map_err(|e| format!("c{i}: {e}"))?;
        cl.model
            .after_step(&cl.socket)
            .map_err(|e| format!("c{i}: {e}"))
    }

    pub(super) fn route_transmit(&mut self, i: usize, t: Transmit) -> Result<(), String> {
        let now = self.now();
        match t {
            Transmit::Connect { conn, request } => {
                note!(self, c(i), "dial {conn} {}", request.redacted_url());
                let leftovers: Vec<ConnId> = self
                    .net
                    .links()
                    .filter(|l| l.client == i && !l.client_done)
                    .map(|l| l.id)
                    .collect();
                for id in leftovers {
                    note!(self, c(i), "drops n{} before dialing again", id.0);
                    let reset = Packet::Reset("the client dropped the connection");
                    self.net
                        .send(now, id, Dir::ToServer, reset, &mut self.rng_net);
                    self.client_done(id);
                }
                let id = self.net.open_link(i, conn, &mut self.rng_net);
                self.clients[i].model.on_dial(conn, id, now);
                let fate = match (&self.options.chaos, self.chaos_on) {
                    (Some(ch), true) => {
                        let x = self.rng_chaos.below(10_000) as f64 / 10_000.0;
                        if x < ch.dial_refused {
                            1
                        } else if x < ch.dial_refused + ch.dial_black_hole {
                            2
                        } else {
                            0
                        }
                    }
                    _ => 0,
                };
                match fate {
                    1 => {
                        note!(self, "net", "n{} refused (nothing listens)", id.0);
                        if let Some(l) = self.net.link_mut(id) {
                            l.server_done = true;
                        }
                        self.net.cut(now, id, "connection refused");
                    }
                    2 => {
                        note!(self, "net", "n{} goes nowhere (no answer, ever)", id.0);
                        if let Some(l) = self.net.link_mut(id) {
                            l.server_done = true;
                        }
                        self.net.half_open(now, id);
                    }
                    _ => {
                        let req = Packet::Connect(upgrade_request(&request));
                        self.net
                            .send(now, id, Dir::ToServer, req, &mut self.rng_net);
                    }
                }
            }
            Transmit::Frame(f) => {
                let cl = &mut self.clients[i];
                cl.model.on_frame_out(&f, &cl.socket, now)?;
                let link = cl
                    .model
                    .conn
                    .as_ref()
                    .map(|c| c.link)
                    .ok_or("no connection")?;
                note!(self, c(i), "> n{} {}", link.0, transcript::frame(&f));
                self.net.send(
                    now,
                    link,
                    Dir::ToServer,
                    Packet::Frame(f),
                    &mut self.rng_net,
                );
            }
            Transmit::Close { conn, code, reason } => {
                let link = self
                    .net
                    .links()
                    .find(|l| l.client == i && l.conn == conn)
                    .map(|l| l.id);
                note!(self, c(i), "close {conn} {code} {reason:?}");
                self.clients[i].last_close = Some((self.clock.elapsed(), code, reason));
                self.clients[i].model.on_conn_end(conn);
                if let Some(id) = link {
                    let close = Packet::Close {
                        code,
                        reason: reason.to_owned(),
                    };
                    self.net
                        .send(now, id, Dir::ToServer, close, &mut self.rng_net);
                    self.client_done(id);
                }
            }
        }
        Ok(())
    }

    /// The application's reaction to its socket stopping by itself: connect again, a little
    /// later.
    pub(super) fn app_react(&mut self, i: usize, e: &Event) {
        let stopped = match e {
            Event::Disconnected {
                reason,
                reconnect_at: None,
                ..
            } => *reason != DisconnectReason::Client,
            Event::ReconnectGaveUp { .. } => true,
            _ => false,
        };
        if stopped && !self.clients[i].user_disconnected {
            let max = u64::try_from(APP_RECONNECT_DELAY.as_millis()).unwrap_or(2000);
            let at = self.now() + self.rng_app.ms(0, max);
            self.clients[i].app_connect_at = Some(at);
        }
    }
}
