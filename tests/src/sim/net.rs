//! The simulated network between the clients and the server: one link per connection attempt,
//! each direction a FIFO with a delivery time per packet.
//!
//! Faults keep TCP's promise: on one connection, packets arrive once and in order, or the
//! connection dies. Delays only ever push a packet (and so everything behind it) later; a dead
//! connection loses everything in flight at once, and either both ends hear about it
//! (`cut`: a reset after the usual latency) or neither does (`half_open`: packets vanish in both
//! directions until an end gives up on its own).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use phx_proto::{ConnectionId, Frame};

use super::rng::SimRng;
use crate::server::{ConnId, ConnectRequest};

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    ToServer,
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }
}

/// What travels on a link.
#[derive(Debug, Clone)]
pub(crate) enum Packet {
    /// The upgrade request (to the server).
    Connect(ConnectRequest),
    /// The upgrade answer (to the client): accepted, or refused with an HTTP status.
    Handshake(Result<(), u16>),
    /// A WebSocket data frame.
    Frame(Frame),
    /// A frame the network forges for the client; built when it arrives, from this seed and
    /// the client's state then.
    Hostile(u64),
    /// A close frame, after which the sender has dropped the connection.
    Close { code: u16, reason: String },
    /// The connection ended without a close frame (reset, refused dial, end of stream).
    Reset(&'static str),
}

/// A link's state, as the network sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// The upgrade request or its answer is on the way.
    Dialing,
    /// The client has the upgrade answer.
    Open,
    /// Nothing gets through any more, and nobody is told.
    HalfOpen,
    /// Dead; only the reset notices already sent are still on their way.
    Broken,
}

/// One connection attempt of one client.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: ConnId,
    pub(crate) client: usize,
    pub(crate) conn: ConnectionId,
    pub(crate) state: LinkState,
    /// When the link went half-open.
    pub(crate) half_open_at: Option<Instant>,
    latency: Duration,
    /// Delivery time of the last packet queued in each direction (FIFO: nothing overtakes it).
    last: [Option<Instant>; 2],
    /// Nothing is delivered in that direction before this instant (a stall).
    hold: [Option<Instant>; 2],
    /// The client has dropped the connection (or heard that it ended): nothing more reaches it.
    pub(crate) client_done: bool,
    /// The server model has forgotten the connection (or never had it).
    pub(crate) server_done: bool,
}

impl Link {
    /// Whether both ends can use the link: open and not faulted.
    pub(crate) fn is_live(&self) -> bool {
        self.state == LinkState::Open && !self.client_done && !self.server_done
    }
}

/// A packet on its way.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) link: ConnId,
    pub(crate) dir: Dir,
    pub(crate) packet: Packet,
}

/// Every link and every packet in flight.
#[derive(Debug)]
pub(crate) struct Network {
    links: BTreeMap<ConnId, Link>,
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    next_id: u64,
    /// One-way base latency of a new link, drawn uniformly from this range.
    latency: (Duration, Duration),
    /// Extra delay of each packet, uniform in `0..=jitter`.
    jitter: Duration,
}

impl Network {
    pub(crate) fn new(latency: (Duration, Duration), jitter: Duration) -> Self {
        Self {
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_id: 0,
            latency,
            jitter,
        }
    }

    /// The longest one-way delay a packet gets on a link that is not stalled.
    pub(crate) fn max_delay(&self) -> Duration {
        self.latency.1 + self.jitter
    }

    /// A new link for `conn` of `client`, in the `Dialing` state.
    pub(crate) fn open_link(
        &mut self,
        client: usize,
        conn: ConnectionId,
        rng: &mut SimRng,
    ) -> ConnId {
        self.next_id += 1;
        let id = ConnId(self.next_id);
        let (lo, hi) = self.latency;
        let latency = lo + Duration::from_micros(rng.below(span_us(hi.saturating_sub(lo)) + 1));
        self.links.insert(
            id,
            Link {
                id,
                client,
                conn,
                state: LinkState::Dialing,
                half_open_at: None,
                latency,
                last: [None; 2],
                hold: [None; 2],
                client_done: false,
                server_done: false,
            },
        );
        id
    }

    pub(crate) fn link(&self, id: ConnId) -> Option<&Link> {
        self.links.get(&id)
    }

    pub(crate) fn link_mut(&mut self, id: ConnId) -> Option<&mut Link> {
        self.links.get_mut(&id)
    }

    /// Links not yet forgotten by both ends, in id order.
    pub(crate) fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// Queues `packet`; returns false when the link swallows it (half-open, broken, or the
    /// receiving end is gone).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        id: ConnId,
        dir: Dir,
        packet: Packet,
        rng: &mut SimRng,
    ) -> bool {
        let jitter = Duration::from_micros(rng.below(span_us(self.jitter) + 1));
        let Some(link) = self.links.get_mut(&id) else {
            return false;
        };
        let receiver_gone = match dir {
            Dir::ToServer => link.server_done,
            Dir::ToClient => link.client_done,
        };
        if receiver_gone || matches!(link.state, LinkState::HalfOpen | LinkState::Broken) {
            return false;
        }
        let d = dir.index();
        let mut at = now + link.latency + jitter;
        for floor in [link.last[d], link.hold[d]].into_iter().flatten() {
            at = at.max(floor);
        }
        link.last[d] = Some(at);
        self.push(
            at,
            InFlight {
                link: id,
                dir,
                packet,
            },
        );
        true
    }

    fn push(&mut self, at: Instant, p: InFlight) {
        self.seq += 1;
        self.queue.insert((at, self.seq), p);
    }

    /// When the next packet arrives.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(&(at, _), _)| at)
    }

    /// The next packet due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        let (&key, _) = self.queue.first_key_value()?;
        if key.0 > now {
            return None;
        }
        self.queue.remove(&key)
    }

    /// Packets in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Drops everything in flight on a link; returns how many packets were lost.
    fn drop_in_flight(&mut self, id: ConnId) -> usize {
        let before = self.queue.len();
        self.queue.retain(|_, p| p.link != id);
        before - self.queue.len()
    }

    /// From now on nothing gets through in either direction, and nobody is told. Returns the
    /// packets lost in flight.
    pub(crate) fn half_open(&mut self, now: Instant, id: ConnId) -> usize {
        let lost = self.drop_in_flight(id);
        if let Some(link) = self.links.get_mut(&id) {
            link.state = LinkState::HalfOpen;
            link.half_open_at.get_or_insert(now);
        }
        lost
    }

    /// The connection dies: everything in flight is lost and each end that still uses it gets
    /// a reset after the link's latency. Returns the packets lost.
    pub(crate) fn cut(&mut self, now: Instant, id: ConnId, why: &'static str) -> usize {
        let lost = self.drop_in_flight(id);
        let Some(link) = self.links.get_mut(&id) else {
            return lost;
        };
        link.state = LinkState::Broken;
        let at = now + link.latency;
        let notices: Vec<Dir> = [
            (Dir::ToServer, link.server_done),
            (Dir::ToClient, link.client_done),
        ]
        .into_iter()
        .filter(|(_, done)| !done)
        .map(|(d, _)| d)
        .collect();
        for dir in notices {
            self.push(
                at,
                InFlight {
                    link: id,
                    dir,
                    packet: Packet::Reset(why),
                },
            );
        }
        lost
    }

    /// Delays everything sent in direction `dir` until at least `until` (a stall; later
    /// packets queue up behind it, in order).
    pub(crate) fn hold(&mut self, id: ConnId, dir: Dir, until: Instant) {
        if let Some(link) = self.links.get_mut(&id) {
            let h = &mut link.hold[dir.index()];
            *h = Some(h.map_or(until, |old| old.max(until)));
        }
    }

    /// Forgets links both ends are done with.
    pub(crate) fn forget_finished(&mut self) {
        let done: Vec<ConnId> = self
            .links
            .values()
            .filter(|l| l.client_done && l.server_done)
            .map(|l| l.id)
            .collect();
        for id in done {
            self.links.remove(&id);
            self.drop_in_flight(id);
        }
    }
}

fn span_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Packet {
        Packet::Frame(Frame::Text(vec![b'0' + n].into()))
    }

    fn n(p: &Packet) -> u8 {
        match p {
            Packet::Frame(f) => f.as_bytes()[0] - b'0',
            _ => 255,
        }
    }

    /// Only the core mints `ConnectionId`s: take the first one of a throwaway socket.
    fn conn() -> ConnectionId {
        let config = phx_proto::Config::builder("ws://h/socket")
            .unwrap()
            .build()
            .unwrap();
        let now = Instant::now();
        let mut s = phx_proto::Socket::new(config, now);
        s.connect(now);
        match s.poll_transmit() {
            Some(phx_proto::Transmit::Connect { conn, .. }) => conn,
            other => panic!("expected a dial, got {other:?}"),
        }
    }

    #[test]
    fn each_direction_is_fifo_whatever_the_jitter_and_stalls() {
        let t0 = Instant::now();
        let mut rng = SimRng::new(3);
        let mut net = Network::new(
            (Duration::from_millis(5), Duration::from_millis(50)),
            Duration::from_millis(40),
        );
        let id = net.open_link(0, conn(), &mut rng);
        for i in 0..10u8 {
            let now = t0 + Duration::from_millis(u64::from(i));
            if i == 4 {
                net.hold(id, Dir::ToClient, now + Duration::from_secs(3));
            }
            assert!(net.send(now, id, Dir::ToClient, frame(i), &mut rng));
        }
        let mut got = Vec::new();
        let end = t0 + Duration::from_secs(10);
        while let Some(p) = net.pop_due(end) {
            got.push(n(&p.packet));
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn half_open_loses_everything_silently_and_cut_tells_both_ends() {
        let t0 = Instant::now();
        let mut rng = SimRng::new(4);
        let mut net = Network::new(
            (Duration::from_millis(5), Duration::from_millis(5)),
            Duration::ZERO,
        );
        let a = net.open_link(0, conn(), &mut rng);
        let b = net.open_link(1, conn(), &mut rng);
        for id in [a, b] {
            assert!(net.send(t0, id, Dir::ToServer, frame(1), &mut rng));
        }
        assert_eq!(net.half_open(t0, a), 1);
        assert!(!net.send(t0, a, Dir::ToClient, frame(2), &mut rng));
        assert_eq!(net.cut(t0, b, "reset"), 1);
        let mut got = Vec::new();
        while let Some(p) = net.pop_due(t0 + Duration::from_secs(1)) {
            got.push((p.link, p.dir, matches!(p.packet, Packet::Reset(_))));
        }
        assert_eq!(got, [(b, Dir::ToServer, true), (b, Dir::ToClient, true)]);
    }
}
