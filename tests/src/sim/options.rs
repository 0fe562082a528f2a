//! What a run is made of: the clients' settings, the network, the faults and the workload,
//! either chosen by hand (targeted scenarios) or drawn from the seed (the sweep).

use std::time::Duration;

use phx_proto::{Backoff, Config, V1Json};

use super::rng::SimRng;

/// The longest the simulated application waits before calling `connect()` again after the
/// socket stopped on its own (a server close with 1000, or giving up after
/// `max_reconnect_attempts`).
pub const APP_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Every topic the workload uses: `room:*` channels of the server model and `presence:*`
/// channels joined with presence tracking.
pub const TOPICS: [&str; 5] = ["room:a", "room:b", "room:c", "presence:x", "presence:y"];

/// Presence keys (`user` join param); clients may share one, so a key can hold several metas.
pub const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// The settings of one simulated client.
#[derive(Debug, Clone)]
pub struct ClientParams {
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Join, push and leave timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reconnect schedule.
    pub reconnect: Backoff,
    /// Rejoin schedule.
    pub rejoin: Backoff,
    /// Give up after this many failed attempts in a row (the application then reconnects).
    pub max_reconnect_attempts: Option<u32>,
    /// Reconnect by itself after a server close with 1000 (otherwise the application does).
    pub reconnect_on_normal_close: bool,
    /// Send buffer capacity.
    pub send_buffer_capacity: usize,
    /// Most pushes pending at once.
    pub max_pending_pushes: usize,
    /// Send the token in `Sec-WebSocket-Protocol` (Phoenix 1.8's `auth_token`) rather than in
    /// a `token` connect param.
    pub auth_token: bool,
    /// Speak V1 JSON (`vsn=1.0.0`: no binary frames, no join_ref from the server) instead of V2.
    pub v1: bool,
    /// Seed of the socket's jitter PRNG.
    pub rng_seed: u64,
    /// Topics this client's user is interested in (the workload joins and leaves them).
    pub topics: Vec<String>,
    /// Presence key of this client's user.
    pub user: String,
    /// Feed frames through `Socket::handle_frame_with`, as phx-client's driver does, taking
    /// the messages it hands over, rather than through `handle_frame`.
    pub hand_over: bool,
}

impl Default for ClientParams {
    /// phoenix.js schedules, a 5 s heartbeat, 10 s timeouts, every topic, user `alice`.
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect: Backoff::phoenix_reconnect(),
            rejoin: Backoff::phoenix_rejoin(),
            max_reconnect_attempts: None,
            reconnect_on_normal_close: false,
            send_buffer_capacity: 64,
            max_pending_pushes: 256,
            auth_token: false,
            v1: false,
            rng_seed: 0,
            topics: TOPICS.iter().map(|t| (*t).to_owned()).collect(),
            user: USERS[0].to_owned(),
            hand_over: false,
        }
    }
}

impl ClientParams {
    /// The socket configuration: endpoint `ws://phx.sim/socket`, token `secret` (as a param or
    /// as the auth token).
    pub fn config(&self) -> Config {
        let mut b = Config::builder("ws://phx.sim/socket").expect("a valid endpoint");
        b = if self.auth_token {
            b.auth_token("secret")
        } else {
            b.param("token", "secret")
        };
        b = b
            .heartbeat_interval(self.heartbeat_interval)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .reconnect(self.reconnect.clone())
            .rejoin(self.rejoin.clone())
            .reconnect_on_normal_close(self.reconnect_on_normal_close)
            .send_buffer_capacity(self.send_buffer_capacity)
            .max_pending_pushes(self.max_pending_pushes)
            .rng_seed(self.rng_seed);
        if let Some(n) = self.max_reconnect_attempts {
            b = b.max_reconnect_attempts(n);
        }
        if self.v1 {
            b = b.serializer(V1Json);
        }
        b.build().expect("valid client parameters")
    }

    /// How long after the network heals every channel this client still wants must be joined
    /// again. It adds up every wait that can stand between the heal and a joined channel,
    /// each at its longest:
    ///
    /// - noticing that the connection is dead: two heartbeat intervals (half-open), the connect
    ///   timeout (a dial into the void), the join timeout (a join stuck behind a stall), or the
    ///   longest stall for a close still on its way;
    /// - waiting to retry: the longest reconnect delay, the longest rejoin delay, and the
    ///   application's own delay after the socket stopped by itself;
    /// - the trips themselves: dial, upgrade answer, join and its reply, twice over.
    pub fn heal_bound(&self, max_net_delay: Duration, max_stall: Duration) -> Duration {
        2 * self.heartbeat_interval
            + self.connect_timeout
            + self.timeout
            + max_stall
            + self.reconnect.max_delay()
            + self.rejoin.max_delay()
            + APP_RECONNECT_DELAY
            + 8 * max_net_delay
    }

    /// Settings drawn from `rng`.
    pub(crate) fn random(rng: &mut SimRng) -> Self {
        let ms = Duration::from_millis;
        let reconnect = match rng.below(3) {
            0 => Backoff::phoenix_reconnect(),
            1 => Backoff::phoenix_reconnect().with_jitter(rng.range(1, 50) as f64 / 100.0),
            _ => Backoff::exponential(rng.ms(10, 200), rng.ms(1000, 8000)),
        };
        let rejoin = match rng.below(3) {
            0 => Backoff::phoenix_rejoin(),
            1 => Backoff::phoenix_rejoin().with_jitter(rng.range(1, 50) as f64 / 100.0),
            _ => Backoff::exponential(rng.ms(100, 1000), rng.ms(2000, 12_000)),
        };
        let mut topics: Vec<String> = TOPICS
            .iter()
            .filter(|_| rng.chance(0.7))
            .map(|t| (*t).to_owned())
            .collect();
        if topics.is_empty() {
            topics.push(rng.pick(&TOPICS).to_string());
        }
        let mut params = Self {
            heartbeat_interval: *rng.pick(&[ms(2000), ms(5000), ms(10_000), ms(30_000)]),
            timeout: *rng.pick(&[ms(1000), ms(3000), ms(10_000)]),
            connect_timeout: *rng.pick(&[ms(1000), ms(3000), ms(10_000)]),
            reconnect,
            rejoin,
            max_reconnect_attempts: rng.chance(0.3).then(|| rng.range(2, 8) as u32),
            reconnect_on_normal_close: rng.chance(0.5),
            send_buffer_capacity: *rng.pick(&[2, 8, 64]),
            max_pending_pushes: *rng.pick(&[6, 16, 256]),
            auth_token: rng.chance(0.3),
            v1: rng.chance(0.15),
            rng_seed: rng.u64(),
            topics,
            user: rng.pick(&USERS).to_string(),
            hand_over: false,
        };
        // From a draw already made, so that every seed's run is otherwise what it was.
        params.hand_over = params.rng_seed % 2 == 1;
        params
    }
}

/// The faults of a run, injected until the network heals.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// How long faults are injected; the network heals after that.
    pub duration: Duration,
    /// Mean time between faults.
    pub fault_every: Duration,
    /// Probability that a dial is refused by the network.
    pub dial_refused: f64,
    /// Probability that a dial goes nowhere (no answer at all).
    pub dial_black_hole: f64,
    /// Longest stall of one direction of a connection.
    pub max_stall: Duration,
    /// Probability that a connection dies right after delivering a frame (cut or half-open),
    /// so that bursts (a join reply and what follows it) get split.
    pub mid_stream_death: f64,
}

/// The random workload of a run, issued until the network heals.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Mean time between two operations of one client.
    pub op_every: Duration,
}

/// Everything a [`super::Sim`] is made of.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The seed every random choice of the run comes from.
    pub seed: u64,
    /// The clients.
    pub clients: Vec<ClientParams>,
    /// One-way base latency of a connection, drawn from this range per connection.
    pub latency: (Duration, Duration),
    /// Extra delay of each frame, uniform up to this.
    pub jitter: Duration,
    /// Random faults, if any.
    pub chaos: Option<Chaos>,
    /// Random workload, if any.
    pub workload: Option<Workload>,
    /// Keep a transcript.
    pub trace: bool,
}

impl SimOptions {
    /// A calm run for scripted scenarios: `clients` clients with [`ClientParams::default`]
    /// (user `alice`, `bob`, …), 5–40 ms latency with up to 10 ms jitter, no random faults, no
    /// random workload, a transcript.
    pub fn scripted(seed: u64, clients: usize) -> Self {
        Self {
            seed,
            clients: (0..clients)
                .map(|i| ClientParams {
                    user: USERS[i % USERS.len()].to_owned(),
                    rng_seed: seed.wrapping_add(i as u64),
                    ..ClientParams::default()
                })
                .collect(),
            latency: (Duration::from_millis(5), Duration::from_millis(40)),
            jitter: Duration::from_millis(10),
            chaos: None,
            workload: None,
            trace: true,
        }
    }

    /// Everything drawn from `seed`: one to three clients with random settings and interests,
    /// a random network, 20–80 s of faults and workload, then the heal.
    pub fn random(seed: u64) -> Self {
        let mut rng = SimRng::new(seed);
        let clients = (0..rng.range(1, 3))
            .map(|_| ClientParams::random(&mut rng))
            .collect();
        let lo = rng.ms(0, 20);
        let latency = (lo, lo + rng.ms(0, 150));
        Self {
            seed,
            clients,
            latency,
            jitter: rng.ms(0, 40),
            chaos: Some(Chaos {
                duration: rng.ms(20_000, 80_000),
                fault_every: rng.ms(1000, 10_000),
                dial_refused: rng.range(0, 30) as f64 / 100.0,
                dial_black_hole: rng.range(0, 10) as f64 / 100.0,
                max_stall: rng.ms(0, 10_000),
                mid_stream_death: rng.range(0, 20) as f64 / 1000.0,
            }),
            workload: Some(Workload {
                op_every: rng.ms(50, 1000),
            }),
            trace: false,
        }
    }

    /// The same run with the transcript on or off.
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
}
