//! The driver: one task that owns the core, the WebSocket and the timer, and moves bytes,
//! commands and events between them. It holds no protocol rule: every decision is the core's.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{Sink, Stream};
use phx_proto::{
    ChannelId, CloseReason, Config, ConfigError, ConnectionId, Event, Frame, IdTable, JoinOptions,
    Message, Payload, PresenceChange, PresenceEntry, PushFailure, PushRef, Stats, Transmit,
};
use tracing::{debug, info, trace, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::burst::Burst;
use crate::error::{ConnectError, JoinError, LeaveError, PushError};
use crate::inbox::{self, Batch, Inbox};
use crate::oneshot;
use crate::reader::Received;
use crate::route::Route;
use crate::runtime::Runtime;
use crate::socket::{ChannelShared, Credentials, ExtraSubs, Options, Registry, Reply, Subscriber};
use crate::tls::TlsConnector;
use crate::transport;
use crate::websocket::{self, Incoming, MaybeTlsStream};

/// Frames read per round, at most, before the driver looks at commands and timers again and
/// hands what it read to the consumers. Each hand-over may wake a consumer, a system call and
/// often a hop to another core, so a flood is handed over in large batches; a round reads at
/// most a quarter of a channel's stream capacity (and frames of at most a quarter of its byte
/// budget), so a consumer on another thread that keeps up within three rounds loses nothing.
/// 4,096 rather than 1,024 woke the consumer of a binary flood a third as often (`perf stat`:
/// 1,400-2,000 context switches per 3,000,000 broadcasts instead of 3,800-6,300).
const READ_BATCH: usize = 4096;
/// Frames read per turn, at most, when the driver shares its thread with the application
/// ([`Runtime::shares_thread`]): the application's other tasks wait while it reads.
const SHARED_TURN_READS: usize = 1024;
/// Frames read per turn, at most, before the driver yields to the executor.
const TURN_READS: usize = 8192;
/// Commands carried out per round, at most.
const COMMAND_BATCH: usize = 256;
/// Frames waiting for the socket above which user commands wait (backpressure on callers).
const OUTBOX_HIGH: usize = 4096;
/// Rounds per poll before yielding to the executor.
const MAX_ROUNDS: usize = 32;

/// What handles ask of the driver.
pub(crate) enum Command {
    Join {
        params: Payload,
        options: JoinOptions,
        shared: Arc<ChannelShared>,
        reply: JoinReply,
    },
    Push {
        channel: ChannelId,
        event: String,
        payload: Payload,
        timeout: Option<Duration>,
        reply: Option<oneshot::Sender<Result<Reply, PushError>>>,
        accepted: Option<oneshot::Sender<Result<(), PushError>>>,
    },
    Leave {
        channel: ChannelId,
        reply: oneshot::Sender<Result<(), LeaveError>>,
    },
    SetJoinParams {
        channel: ChannelId,
        params: Payload,
        reply: oneshot::Sender<Result<(), phx_proto::JoinError>>,
    },
    SetParam {
        key: String,
        value: String,
        secret: bool,
    },
    SetAuthToken(Option<String>),
    PresenceList {
        channel: ChannelId,
        reply: oneshot::Sender<Vec<(String, PresenceEntry)>>,
    },
    Stats(oneshot::Sender<Stats>),
    Disconnect(oneshot::Sender<()>),
    Connect,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// The connection a runtime's TCP stream carries.
type WebSocket<R> = websocket::WebSocket<MaybeTlsStream<<R as Runtime>::Tcp>>;
type JoinReply = oneshot::Sender<Result<(ChannelId, Reply), JoinError>>;

enum Dial<R: Runtime> {
    Credentials(ConnectionId, BoxFuture<Result<Credentials, String>>),
    Connecting(ConnectionId, BoxFuture<Result<WebSocket<R>, WsError>>),
}

struct Conn<R: Runtime> {
    id: ConnectionId,
    ws: WebSocket<R>,
    needs_flush: bool,
    /// Set once the core has closed this connection: flush, then drop it (or give up at the
    /// deadline).
    closing: Option<Pin<Box<R::Sleep>>>,
}

struct ChannelEntry {
    shared: Arc<ChannelShared>,
    /// The driver's copy of the extra subscribers, made once a handle adds one: most channels
    /// never have any, and an idle channel should cost little.
    cache: Option<Box<SubsCache>>,
}

struct SubsCache {
    subs: ExtraSubs,
    version: u64,
}

impl ChannelEntry {
    /// Refreshes the copy of the extra subscribers if a handle added one (the version starts
    /// at 0 and only grows).
    fn refresh(&mut self) {
        let version = self.shared.version.load(Ordering::Acquire);
        if version != self.cache.as_ref().map_or(0, |c| c.version) {
            self.reload(version);
        }
    }

    fn reload(&mut self, version: u64) {
        let subs = self.shared.extra();
        self.cache = Some(Box::new(SubsCache { subs, version }));
    }

    /// Whether the channel's stream is its only reader, as of the latest subscribers.
    fn read_by_stream_alone(&mut self) -> bool {
        self.refresh();
        self.subscribers().is_empty()
    }

    fn subscribers(&self) -> &[Subscriber] {
        self.cache.as_deref().map_or(&[], |c| &c.subs.messages)
    }

    fn presence_subscribers(&self) -> &[Weak<Inbox<PresenceChange>>] {
        self.cache.as_deref().map_or(&[], |c| &c.subs.presence)
    }
}

enum PushWaiter {
    Reply(oneshot::Sender<Result<Reply, PushError>>),
}

/// Runs a socket: must be spawned (or polled) for anything to happen. Returned by
/// [`crate::Builder::into_driver`]; `connect` and `connect_lazy` spawn it for you. It completes
/// once every handle is dropped and the WebSocket is closed.
#[must_use = "the driver does nothing unless it is spawned or polled"]
pub struct Driver<R: Runtime> {
    state: Arc<Mutex<State<R>>>,
}

/// The handles' shortcut into an idle driver: the command is carried out on the caller's task,
/// its frames written from there, instead of waking the driver's task to do it. On a
/// multi-threaded runtime that wake-up is a hop to another thread (an `eventfd` write and a
/// worker leaving `epoll_wait`), paid on every push.
pub(crate) trait Direct: Send + Sync {
    /// Carries out `cmd` now if the driver is idle and its timers can be set from this thread;
    /// otherwise hands it back, for the command queue.
    ///
    /// With `holder`, the waker of a task that will wait for the reply to the push in `cmd`:
    /// if the push is the only one waiting, the runtime wants callers to read their replies
    /// and the driver has nothing left to read, that task becomes the socket's holder
    /// ([`Route`]) before the push is written, so the reply wakes it rather than the driver; it
    /// reads it in [`Direct::holder_turn`]. Returns the route and the holder's ticket then.
    fn try_apply(&self, cmd: Command, holder: Option<&Waker>) -> Result<Option<Held>, Command>;

    /// The holder's turn after the socket woke it: a driver turn on the caller's task. If the
    /// driver is busy, it is woken to read instead.
    fn holder_turn(&self, route: &Route, ticket: u64);
}

impl<R: Runtime> Direct for Mutex<State<R>> {
    fn try_apply(&self, cmd: Command, holder: Option<&Waker>) -> Result<Option<Held>, Command> {
        // Never wait for the driver: when it is running, it reads the queue soon anyway.
        match self.try_lock() {
            Ok(mut state) => {
                let applied = state.apply_direct(cmd, holder);
                unlock(state);
                applied
            }
            Err(_) => Err(cmd),
        }
    }

    fn holder_turn(&self, route: &Route, ticket: u64) {
        match self.try_lock() {
            Ok(mut state) => {
                if route.take_woken(ticket) {
                    state.holder_turn();
                }
                unlock(state);
            }
            // The driver is running; it reads what woke the holder on its next turn.
            Err(_) => route.wake_driver(),
        }
    }
}

/// Ends a section holding the driver's lock: the task answered last in it is woken only once
/// the lock is released. It is usually about to send the next request, and finding the lock
/// taken would send that through the command queue and wake the driver's task for it, where
/// an idle driver lets the caller write it at once ([`Direct`]).
fn unlock<R: Runtime>(mut state: MutexGuard<'_, State<R>>) {
    let answered = state.answered.take();
    drop(state);
    if let Some(w) = answered {
        w.wake();
    }
}

/// What a read round ([`State::poll_read`]) did.
struct RoundRead {
    /// Frames read.
    read: usize,
    /// Their bytes.
    bytes: usize,
    /// The connection ended.
    ended: bool,
    /// Its stream returned `Pending` (so it will wake the driver when more arrives).
    waiting: bool,
    /// The round stopped at its frame or byte limit: more may be waiting.
    full: bool,
}

/// A task's hold on the socket ([`Direct::try_apply`]): the route and the holder's ticket.
pub(crate) type Held = (Arc<Route>, u64);

/// Whether a turn fires the core's due deadlines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timers {
    /// The driver's own turn, which has read the frames waiting before it gets here.
    Fire,
    /// A turn that has not read everything waiting (a caller's task reads nothing; the
    /// driver's round may have stopped at a full batch): a due deadline waits.
    LeaveDue,
}

/// What the timer did in a turn.
enum TimerTurn {
    /// Nothing due.
    Idle,
    /// Due deadlines were fired.
    Fired,
    /// A deadline is due and was left for the driver.
    Due,
}

struct State<R: Runtime> {
    rt: R,
    tls: Option<TlsConnector>,
    core: phx_proto::Socket,
    options: Options,
    commands: mpsc::Receiver<Command>,
    registry: Arc<Registry>,
    span: tracing::Span,
    started: bool,
    /// Every waiter has been answered and every stream ended ([`State::finish`]).
    finished: bool,
    dial: Option<Dial<R>>,
    conn: Option<Conn<R>>,
    outbox: VecDeque<WsMessage>,
    sleep: Option<Pin<Box<R::Sleep>>>,
    sleep_at: Option<Instant>,
    channels: IdTable<ChannelId, ChannelEntry>,
    joins: IdTable<ChannelId, JoinReply>,
    pushes: IdTable<PushRef, PushWaiter>,
    leaves: IdTable<ChannelId, oneshot::Sender<Result<(), LeaveError>>>,
    disconnects: Vec<oneshot::Sender<()>>,
    connect_waiter: Option<oneshot::Sender<Result<(), ConnectError>>>,
    credentials_error: Option<String>,
    events_cache: Vec<Weak<Inbox<Event>>>,
    events_version: u64,
    wake: Vec<Waker>,
    /// The task a reply went to in this locked section, woken once it ends ([`unlock`]).
    answered: Option<Waker>,
    /// Where small received frames are copied (see [`transport::FrameArena`]).
    arena: transport::FrameArena,
    /// Messages for `batch_channel`'s stream, queued in one go by `flush_messages`.
    batch: Batch<Message>,
    batch_channel: Option<ChannelId>,
    /// Whether the last read found the connection with nothing more to read (or none open).
    read_dry: bool,
    /// Whether the connection is quiet (see [`crate::burst`]): buffers sized for a burst go
    /// back.
    quiet: bool,
    /// Tells the end of a burst from a pause inside it.
    burst: Burst,
    /// Channels handed a batch since the connection was last quiet; told once it is.
    unsettled: Vec<ChannelId>,
    /// A stream fed in this turn is at least half full: its reader may be waiting for this very
    /// thread, so the turn ends early (see `poll_drive`).
    consumer_behind: bool,
    shutting_down: bool,
    /// Whether the runtime runs the driver on the application's thread (asked once, from
    /// inside the runtime).
    shares_thread: Option<bool>,
    /// The driver task's waker, from its last poll: what the shortcut ([`Direct`]) registers
    /// with the WebSocket, the timer and the command queue, so that whatever happens next
    /// wakes the driver, not the caller. `None` until the first poll and after the end.
    waker: Option<Waker>,
    /// The executor the driver runs in ([`Runtime::context`]), from its first poll.
    context: Option<u64>,
    /// Where the WebSocket's wake-ups go (the driver, or a caller reading its own reply).
    route: Arc<Route>,
    /// The waker every poll of the WebSocket registers: the route's.
    io_waker: Waker,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        rt: R,
        tls: Option<TlsConnector>,
        config: Config,
        options: Options,
        commands: mpsc::Receiver<Command>,
        registry: Arc<Registry>,
        seed: u64,
    ) -> Self {
        let now = rt.now();
        let span = tracing::info_span!("phx.socket", url = %config.redacted_url(), seed);
        let route = Arc::new(Route::default());
        let io_waker = Waker::from(route.clone());
        Self {
            state: Arc::new(Mutex::new(State {
                core: phx_proto::Socket::new(config, now),
                rt,
                tls,
                options,
                commands,
                registry,
                span,
                started: false,
                finished: false,
                dial: None,
                conn: None,
                outbox: VecDeque::new(),
                sleep: None,
                sleep_at: None,
                channels: IdTable::default(),
                joins: IdTable::default(),
                pushes: IdTable::default(),
                leaves: IdTable::default(),
                disconnects: Vec::new(),
                connect_waiter: None,
                credentials_error: None,
                events_cache: Vec::new(),
                events_version: u64::MAX,
                wake: Vec::new(),
                answered: None,
                arena: transport::FrameArena::default(),
                batch: Batch::default(),
                batch_channel: None,
                read_dry: true,
                quiet: true,
                burst: Burst::default(),
                unsettled: Vec::new(),
                consumer_behind: false,
                shutting_down: false,
                shares_thread: None,
                waker: None,
                context: None,
                route,
                io_waker,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // Every section that holds the lock leaves the state consistent between its steps.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn connect_waiter(&mut self, tx: oneshot::Sender<Result<(), ConnectError>>) {
        self.lock().connect_waiter = Some(tx);
    }

    /// Whether the connect request this driver will dial can be sent at all (see
    /// [`transport::check_url`]).
    pub(crate) fn check_url(&self) -> Result<(), ConfigError> {
        transport::check_url(&self.lock().core.connect_request())
    }

    /// The handles' shortcut into this driver's state.
    pub(crate) fn direct(&self) -> Weak<dyn Direct> {
        let state: Arc<dyn Direct> = self.state.clone();
        Arc::downgrade(&state)
    }
}

/// A driver dropped before it finished (its runtime shut down, its owner stopped polling it,
/// or it panicked) still ends every stream and answers every waiter.
impl<R: Runtime> Drop for State<R> {
    fn drop(&mut self) {
        self.finish();
        // Left by a section that panicked before it could end with `unlock`.
        if let Some(w) = self.answered.take() {
            w.wake();
        }
    }
}

impl<R: Runtime> Future for Driver<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
            state.route.set_driver(cx.waker());
        }
        let span = state.span.clone();
        let entered = span.enter();
        let poll = state.poll_drive(cx);
        if poll.is_ready() {
            state.waker = None;
        }
        drop(entered);
        unlock(guard);
        poll
    }
}

impl<R: Runtime> State<R> {
    /// The shortcut's turn ([`Direct`]): everything a driver poll does but reading, on the
    /// caller's task with the driver's waker. Queued commands go first, so a handle's commands
    /// keep their order whichever way each one comes. The driver is woken only if the turn
    /// left it something to start (a dial, a close).
    ///
    /// Taken only while no push awaits its reply: a lone request saves a thread hop, while
    /// pipelined pushes are left to the driver, which writes a whole batch with one system
    /// call where the shortcut would make one per push.
    fn apply_direct(
        &mut self,
        cmd: Command,
        holder: Option<&Waker>,
    ) -> Result<Option<Held>, Command> {
        let Some(waker) = self.waker.clone() else {
            return Err(cmd);
        };
        if self.shutting_down
            || !self.pushes.is_empty()
            || !self.outbox.is_empty()
            || self.context.is_none()
            || self.rt.context() != self.context
        {
            return Err(cmd);
        }
        let span = self.span.clone();
        let _entered = span.enter();
        let mut cx = Context::from_waker(&waker);
        let before = self.lifecycle();
        let (_, drained) = self.poll_commands(&mut cx);
        // With commands still queued, this one joins them at the back (the driver is woken to
        // go on); otherwise it is next.
        let back = if drained {
            self.apply(cmd);
            None
        } else {
            Some(cmd)
        };
        // Before the push is written: its reply cannot come before the holder is in place.
        let held = match holder {
            Some(waker) if back.is_none() && self.may_hold() => self
                .route
                .hold(waker)
                .map(|ticket| (self.route.clone(), ticket)),
            _ => None,
        };
        // Due deadlines are left to the driver, which reads waiting frames first: a reply
        // already received beats its push's deadline (PROTOCOL.md §10.4, rule 6).
        let (_, due) = self.settle(&mut cx, Timers::LeaveDue);
        // The outputs may have set a deadline the timer was not armed for (a dial that failed
        // at once schedules the next attempt): arm it now, or leave it to the driver if due.
        let due = due | matches!(self.poll_timer(&mut cx, Timers::LeaveDue), TimerTurn::Due);
        if back.is_some() || due || self.lifecycle() != before {
            waker.wake();
        }
        match back {
            Some(cmd) => Err(cmd),
            None => Ok(held),
        }
    }

    /// Whether the caller of the push just applied may hold the socket and read its reply
    /// itself (see [`Direct::try_apply`]; `apply_direct` has checked that the caller runs in
    /// the driver's executor): the runtime asks for it, the push is the only one waiting, the
    /// connection is open and the last read found nothing more (what arrives next wakes the
    /// holder).
    fn may_hold(&self) -> bool {
        self.rt.reads_on_caller()
            && self.read_dry
            && self.pushes.len() == 1
            && self.conn.as_ref().is_some_and(|c| c.closing.is_none())
    }

    /// A driver turn on the holder's task, with the driver's waker for its timer and command
    /// queue (the socket's wake-ups keep going through the route). The driver is woken if the
    /// turn leaves it something only its own task does (a dial, a close, the end) or more to
    /// read than a turn takes.
    fn holder_turn(&mut self) {
        let Some(waker) = self.waker.clone() else {
            return;
        };
        let span = self.span.clone();
        let _entered = span.enter();
        let before = self.lifecycle();
        let mut cx = Context::from_waker(&waker);
        if self.poll_drive(&mut cx).is_ready() || self.lifecycle() != before {
            waker.wake();
        }
    }

    /// The rest of a turn, once frames are read and commands taken: the timer, the core's
    /// outputs and the writes, then the wake-ups they left for consumers. Whether anything
    /// happened, and whether a deadline is due that `timers` left alone.
    fn settle(&mut self, cx: &mut Context<'_>, timers: Timers) -> (bool, bool) {
        let (mut progress, due) = match self.poll_timer(cx, timers) {
            TimerTurn::Idle => (false, false),
            TimerTurn::Fired => (true, false),
            TimerTurn::Due => (false, true),
        };
        progress |= self.process_outputs();
        progress |= self.poll_write(cx);
        progress |= self.process_outputs();
        for w in self.wake.drain(..) {
            w.wake();
        }
        (progress, due)
    }

    /// What only the driver's own poll moves on: the dial, the connection and its closing.
    fn lifecycle(&self) -> (bool, Option<(ConnectionId, bool)>, bool) {
        (
            self.dial.is_some(),
            self.conn.as_ref().map(|c| (c.id, c.closing.is_some())),
            self.shutting_down,
        )
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.started {
            self.started = true;
            self.context = self.rt.context();
            let now = self.rt.now();
            self.core.connect(now);
        }
        let shares_thread = *self
            .shares_thread
            .get_or_insert_with(|| self.rt.shares_thread());
        // A reader on the same thread only runs once the driver yields: reading more than its
        // stream holds in one go would overrun it.
        let quarter = (self.options.channel_capacity / 4).max(1);
        let mut reads_left = if shares_thread {
            quarter.min(SHARED_TURN_READS)
        } else {
            TURN_READS
        };
        let read_batch = quarter.min(READ_BATCH);
        // The same by bytes (what a frame holds is at least its payload's weight): a round
        // reads at most a quarter of a stream's byte budget, and a turn on the reader's thread
        // no more than that, or a round of large messages would overrun a stream whose reader
        // keeps up.
        let byte_quarter = (self.options.channel_capacity_bytes / 4).max(1);
        let mut bytes_left = if shares_thread {
            byte_quarter
        } else {
            usize::MAX
        };
        // The connection whose stream last returned `Pending` in this turn: it holds our waker,
        // so polling it again before the turn ends would only repeat a read that finds
        // nothing (a `recv` system call each time on async-io).
        let mut read_waiting = None;
        let mut behind = false;
        for _ in 0..MAX_ROUNDS {
            let mut progress = false;
            // Frames still waiting after a full batch are read in the next round before any
            // deadline fires: a reply received first wins (PROTOCOL.md §10.4, rule 6). The
            // last round of a turn fires them whatever is waiting, so a flood cannot hold
            // timeouts back.
            let mut timers = Timers::Fire;
            let current = self.conn.as_ref().map(|c| c.id);
            if current.is_none() || current != read_waiting {
                let round =
                    self.poll_read(reads_left.min(read_batch), bytes_left.min(byte_quarter));
                reads_left -= round.read;
                bytes_left = bytes_left.saturating_sub(round.bytes);
                progress |= round.read > 0 || round.ended;
                read_waiting = if round.waiting { current } else { None };
                if round.full && reads_left > 0 && bytes_left > 0 {
                    timers = Timers::LeaveDue;
                }
            }
            progress |= self.poll_dial(cx);
            progress |= self.poll_commands(cx).0;
            progress |= self.settle(cx, timers).0;
            if self.shutting_down && self.conn.is_none() && self.dial.is_none() {
                self.finish();
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
            behind = std::mem::take(&mut self.consumer_behind);
            if behind && matches!(timers, Timers::LeaveDue) {
                // The turn ends here rather than after its last round: fire what this round
                // left due, as that round would have.
                self.settle(cx, Timers::Fire);
            }
            if reads_left == 0 || bytes_left == 0 || behind {
                break;
            }
        }
        // Plenty of work: let other tasks run, then continue. A reader that is behind may be
        // waiting for this thread in any of the executor's queues, so the runtime's own yield
        // lets them all run first: on tokio, a task woken from another thread waits in a queue
        // that a worker with local work looks at only every few dozen tasks.
        if shares_thread || behind {
            self.rt.yield_now(cx);
        } else {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Reads up to `limit` frames from the open connection and feeds them to the core, then
    /// carries out what they produced, in order. Draining the core once per round rather
    /// than after each frame moves the round's messages into their batch in one tight loop,
    /// with none of a read's atomic operations between them (each of which waits for the
    /// stores before it, here into cache lines the consumer's core last held); see the
    /// README's "Benchmarks" for what it gained.
    /// Stops after `limit` frames or once they hold `byte_limit` bytes.
    fn poll_read(&mut self, limit: usize, byte_limit: usize) -> RoundRead {
        // A copy (once per round), so that each frame can be handed to `self.handle_frame`.
        let waker = self.io_waker.clone();
        let cx = &mut Context::from_waker(&waker);
        let (mut read, mut bytes) = (0, 0usize);
        let mut ended = None;
        let mut waiting = false;
        let now = self.rt.now();
        while read < limit && bytes < byte_limit {
            let Some(conn) = self.conn.as_mut().filter(|c| c.closing.is_none()) else {
                break;
            };
            let id = conn.id;
            let (burst, arena) = (&mut self.burst, &mut self.arena);
            let mut keep = |payload: Received<'_>| arena.keep(payload, burst.read());
            match conn.ws.poll_message(cx, &mut keep) {
                Poll::Ready(Some(Ok(incoming))) => {
                    read += 1;
                    match incoming {
                        Incoming::Frame(frame) => {
                            trace!(len = frame.len(), "frame in");
                            bytes = bytes.saturating_add(frame.len());
                            self.handle_frame(now, id, frame);
                        }
                        Incoming::Control => {}
                        Incoming::Close(frame) => {
                            ended = Some((id, transport::close_frame(frame)));
                            break;
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    ended = Some((id, transport::close_reason(&e)));
                    break;
                }
                Poll::Ready(None) => {
                    ended = Some((
                        id,
                        CloseReason::Error("the connection ended without a close frame".into()),
                    ));
                    break;
                }
                Poll::Pending => {
                    waiting = true;
                    break;
                }
            }
        }
        let full = !waiting && ended.is_none() && (read >= limit || bytes >= byte_limit);
        self.read_dry = !full;
        let quiet = if waiting {
            self.burst.dry(now)
        } else if ended.is_some() || self.read_dry {
            // The connection ended, or none is open: nothing to wait for.
            self.burst.reset();
            true
        } else {
            // A full round: no pause at all.
            false
        };
        self.set_quiet(quiet);
        self.drain_outputs();
        let closed = ended.is_some();
        if let Some((id, reason)) = ended {
            if self.conn.as_ref().is_some_and(|c| c.id == id) {
                self.conn = None;
            }
            self.core.handle_closed(self.rt.now(), id, reason);
        }
        // An ended round broke off before any `Pending`, and `full` excludes it.
        RoundRead {
            read,
            bytes,
            ended: closed,
            waiting,
            full,
        }
    }

    /// Feeds a received frame to the core. A message the core hands over at once (nothing
    /// else waiting) goes straight into the open batch when it is for the batch's channel
    /// and read by its stream alone (as `batch_for` checks it); any other one is queued as
    /// `take_message` would have.
    fn handle_frame(&mut self, now: Instant, conn: ConnectionId, frame: Frame) {
        let (batch, channels, open) = (&mut self.batch, &mut self.channels, self.batch_channel);
        let mut other = None;
        let handled = self
            .core
            .handle_frame_with(now, conn, frame, |channel, message| {
                let plain = Some(channel) == open
                    && channels
                        .get_mut(&channel)
                        .is_some_and(ChannelEntry::read_by_stream_alone);
                if plain {
                    batch.push(message);
                } else {
                    other = Some((channel, message));
                }
            });
        if let Err(e) = handled {
            debug!(error = %e, "ignored a malformed frame");
        }
        if let Some((channel, message)) = other
            && let Some(plain) = self.batch_for(channel)
        {
            self.queue_message(channel, message, plain);
        }
    }

    /// Records whether the connection is quiet; a quiet one gives the frame arena's chunks
    /// back at once, and the other buffers sized for a burst as its outputs are processed.
    fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
        if quiet {
            self.arena.release();
            if let Some(conn) = self.conn.as_mut() {
                conn.ws.shrink();
            }
        }
    }

    fn poll_dial(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(dial) = self.dial.as_mut() else {
            return false;
        };
        match dial {
            Dial::Credentials(conn, fut) => {
                let conn = *conn;
                let Poll::Ready(result) = fut.as_mut().poll(cx) else {
                    return false;
                };
                self.dial = None;
                match result {
                    Ok(credentials) => {
                        for (k, v) in &credentials.params {
                            self.core.set_secret_param(k, v);
                        }
                        if credentials.auth_token.is_some() {
                            self.core.set_auth_token(credentials.auth_token);
                        }
                        self.credentials_error = None;
                        let request = self.core.connect_request();
                        self.start_connect(conn, &request);
                    }
                    Err(e) => {
                        warn!(error = %e, "credentials callback failed");
                        self.credentials_error = Some(e.clone());
                        self.core.handle_closed(
                            self.rt.now(),
                            conn,
                            CloseReason::Error(format!("credentials: {e}")),
                        );
                    }
                }
                true
            }
            Dial::Connecting(conn, fut) => {
                let conn = *conn;
                let Poll::Ready(result) = fut.as_mut().poll(cx) else {
                    return false;
                };
                self.dial = None;
                let now = self.rt.now();
                match result {
                    Ok(ws) => {
                        self.conn = Some(Conn {
                            id: conn,
                            ws,
                            needs_flush: false,
                            closing: None,
                        });
                        self.core.handle_connected(now, conn);
                    }
                    Err(e) => self
                        .core
                        .handle_closed(now, conn, transport::close_reason(&e)),
                }
                true
            }
        }
    }

    fn start_connect(&mut self, conn: ConnectionId, request: &phx_proto::ConnectRequest) {
        match transport::build_request(request) {
            Ok(req) => {
                let fut = websocket::connect(
                    self.rt.clone(),
                    req,
                    self.options.websocket,
                    self.tls.clone(),
                );
                self.dial = Some(Dial::Connecting(conn, Box::pin(fut)));
            }
            Err(e) => {
                warn!(error = %e, "cannot build the upgrade request");
                self.core
                    .handle_closed(self.rt.now(), conn, transport::close_reason(&e));
            }
        }
    }

    /// Carries out queued commands, a batch at most. Returns whether there were any, and whether
    /// the queue was found empty (rather than left with commands for the next turn).
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> (bool, bool) {
        if self.shutting_down || self.outbox.len() > OUTBOX_HIGH {
            return (false, false);
        }
        let mut progress = false;
        for _ in 0..COMMAND_BATCH {
            match Pin::new(&mut self.commands).poll_next(cx) {
                Poll::Ready(Some(cmd)) => {
                    progress = true;
                    self.apply(cmd);
                }
                Poll::Ready(None) => {
                    debug!("every handle dropped: shutting down");
                    self.shutting_down = true;
                    self.core.disconnect(self.rt.now());
                    return (true, false);
                }
                Poll::Pending => return (progress, true),
            }
        }
        (progress, false)
    }

    fn apply(&mut self, cmd: Command) {
        let now = self.rt.now();
        match cmd {
            Command::Join {
                params,
                options,
                shared,
                reply,
            } => match self
                .core
                .join_with_options(now, &shared.topic, params, options)
            {
                Ok(id) => {
                    debug!(topic = shared.topic, channel = %id, "joining");
                    self.channels.insert(
                        id,
                        ChannelEntry {
                            shared,
                            cache: None,
                        },
                    );
                    self.joins.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(JoinError::Invalid(e)));
                }
            },
            Command::Push {
                channel,
                event,
                payload,
                timeout,
                reply,
                accepted,
            } => {
                let result = match reply {
                    Some(reply) => match self.core.push(now, channel, &event, payload, timeout) {
                        Ok(push_ref) => {
                            self.pushes.insert(push_ref, PushWaiter::Reply(reply));
                            Ok(())
                        }
                        Err(e) => {
                            let _ = reply.send(Err(PushError::Refused(e.clone())));
                            Err(e)
                        }
                    },
                    // Nobody waits for a cast's outcome, so the core does not track one.
                    None => self.core.cast(now, channel, &event, payload),
                };
                if let Some(accepted) = accepted {
                    let _ = accepted.send(result.map_err(PushError::Refused));
                }
            }
            Command::Leave { channel, reply } => match self.core.leave(now, channel) {
                Ok(()) => {
                    self.leaves.insert(channel, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(LeaveError::Refused(e)));
                }
            },
            Command::SetJoinParams {
                channel,
                params,
                reply,
            } => {
                let _ = reply.send(self.core.set_join_params(channel, params));
            }
            Command::SetParam { key, value, secret } => {
                if secret {
                    self.core.set_secret_param(&key, &value);
                } else {
                    self.core.set_param(&key, &value);
                }
            }
            Command::SetAuthToken(token) => self.core.set_auth_token(token),
            Command::PresenceList { channel, reply } => {
                let list = self
                    .core
                    .channel(channel)
                    .and_then(|c| {
                        c.presence()
                            .map(|p| p.list().map(|(k, e)| (k.to_owned(), e.clone())).collect())
                    })
                    .unwrap_or_default();
                let _ = reply.send(list);
            }
            Command::Stats(reply) => {
                let mut stats = self.core.stats();
                stats.invalid_frames += self.registry.invalid_payloads.load(Ordering::Relaxed);
                let _ = reply.send(stats);
            }
            Command::Disconnect(reply) => {
                self.core.disconnect(now);
                self.disconnects.push(reply);
            }
            Command::Connect => self.core.connect(now),
        }
    }

    /// Fires the core's deadlines, and ends a burst's grace period ([`crate::burst`]). The
    /// runtime's sleep wakes the task; the clock is checked directly, so an elapsed deadline is
    /// never missed even if the sleep future lags.
    fn poll_timer(&mut self, cx: &mut Context<'_>, timers: Timers) -> TimerTurn {
        // The end of a burst's grace period is no protocol deadline: any turn may take it.
        if self.burst.deadline().is_some() {
            self.end_of_grace(self.rt.now());
        }
        let next = self
            .core
            .poll_timeout()
            .into_iter()
            .chain(self.burst.deadline());
        let Some(deadline) = next.min() else {
            self.sleep = None;
            self.sleep_at = None;
            return TimerTurn::Idle;
        };
        let now = self.rt.now();
        // Only the core's deadline can have passed: the grace period's was taken above.
        if now >= deadline {
            if timers == Timers::LeaveDue {
                return TimerTurn::Due;
            }
            self.core.handle_timeout(now);
            return TimerTurn::Fired;
        }
        // A later deadline keeps the armed timer: it fires early, the core finds nothing due,
        // and the timer is armed again for the real deadline. Each push moves the core's
        // deadline later (its own timeout), and arming a new timer costs a registration and
        // often a wake-up of the runtime's timer thread, once per push.
        if self.sleep_at.is_none_or(|at| deadline < at) {
            self.sleep = Some(Box::pin(self.rt.sleep_until(deadline)));
            self.sleep_at = Some(deadline);
        }
        if let Some(sleep) = self.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            self.sleep = None;
            self.sleep_at = None;
            if timers == Timers::LeaveDue {
                // The driver arms the timer again on its turn.
                return TimerTurn::Due;
            }
            let now = self.rt.now();
            self.end_of_grace(now);
            self.core.handle_timeout(now);
            return TimerTurn::Fired;
        }
        TimerTurn::Idle
    }

    /// If a burst's grace period has ended by `now`, the connection is quiet unless its last
    /// read filled a whole round (it is reading on, and its next dry spell decides).
    fn end_of_grace(&mut self, now: Instant) {
        if self.burst.timeout(now) {
            self.set_quiet(self.read_dry);
        }
    }

    /// Writes queued frames; drops a closing connection once its close frame is out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            self.outbox.clear();
            return false;
        };
        let io = &mut Context::from_waker(&self.io_waker);
        let mut wrote = false;
        let mut failed = None;
        while !self.outbox.is_empty() {
            match Pin::new(&mut conn.ws).poll_ready(io) {
                Poll::Ready(Ok(())) => {
                    if let Some(msg) = self.outbox.pop_front()
                        && let Err(e) = Pin::new(&mut conn.ws).start_send(msg)
                    {
                        failed = Some(e);
                        break;
                    }
                    wrote = true;
                    conn.needs_flush = true;
                }
                Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        if failed.is_none() && conn.needs_flush {
            match Pin::new(&mut conn.ws).poll_flush(io) {
                Poll::Ready(Ok(())) => conn.needs_flush = false,
                Poll::Ready(Err(e)) => failed = Some(e),
                Poll::Pending => {}
            }
        }
        let id = conn.id;
        if let Some(closing) = conn.closing.as_mut() {
            let flushed = self.outbox.is_empty() && !conn.needs_flush;
            if flushed || failed.is_some() || closing.as_mut().poll(cx).is_ready() {
                self.conn = None;
                self.outbox.clear();
                return true;
            }
        } else if let Some(e) = failed {
            self.conn = None;
            self.outbox.clear();
            self.core
                .handle_closed(self.rt.now(), id, transport::close_reason(&e));
            return true;
        }
        wrote
    }

    /// Carries out the core's transmits and dispatches its events; whether there were any.
    fn process_outputs(&mut self) -> bool {
        let any = self.drain_outputs();
        self.flush_messages(self.quiet);
        any
    }

    /// As `process_outputs`, but messages may stay batched for their stream.
    fn drain_outputs(&mut self) -> bool {
        let mut any = false;
        while let Some(t) = self.core.poll_transmit() {
            any = true;
            match t {
                Transmit::Connect { conn, request } => {
                    self.conn = None;
                    self.outbox.clear();
                    // A `connect()` right after a `disconnect()`: the connection the latter
                    // closed is gone, and it must not wait for this new one to end.
                    self.answer_disconnects();
                    info!(url = request.redacted_url(), %conn, "connecting");
                    match self.options.credentials.clone() {
                        Some(credentials) => {
                            self.dial = Some(Dial::Credentials(conn, credentials()));
                        }
                        None => self.start_connect(conn, &request),
                    }
                }
                Transmit::Frame(frame) => {
                    if self.conn.as_ref().is_some_and(|c| c.closing.is_none()) {
                        trace!(len = frame.len(), "frame out");
                        self.outbox.push_back(transport::to_ws(frame));
                    }
                }
                Transmit::Close { conn, code, reason } => {
                    if matches!(&self.dial, Some(Dial::Connecting(c, _) | Dial::Credentials(c, _)) if *c == conn)
                    {
                        self.dial = None;
                    }
                    if let Some(c) = self.conn.as_mut().filter(|c| c.id == conn) {
                        debug!(code, reason, "closing the connection");
                        self.outbox.push_back(WsMessage::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        })));
                        let deadline = self.rt.now() + self.options.close_timeout;
                        c.closing = Some(Box::pin(self.rt.sleep_until(deadline)));
                    }
                }
            }
        }
        loop {
            if let Some(channel) = self.core.peek_message() {
                self.take_message(channel);
            } else if let Some(event) = self.core.poll_event() {
                // Messages before the event reach their streams before it.
                self.flush_messages(false);
                self.dispatch(event);
            } else {
                break;
            }
            any = true;
        }
        if self.conn.is_none() && self.dial.is_none() {
            self.answer_disconnects();
        }
        any
    }

    /// Carries out one event. Messages normally arrive through `drain_outputs`, which batches
    /// them for their streams.
    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Message { channel, message } => {
                if let Some(plain) = self.batch_for(channel) {
                    self.queue_message(channel, message, plain);
                }
                self.flush_messages(self.quiet);
                return;
            }
            Event::Presence { channel, change } => {
                self.deliver_presence(channel, change);
                return;
            }
            Event::Replied {
                push_ref,
                status,
                response,
                ..
            } => {
                if let Some(PushWaiter::Reply(tx)) = self.pushes.remove(&push_ref) {
                    let reply = Reply { status, response };
                    let _ = self.answer(
                        tx,
                        if reply.is_ok() {
                            Ok(reply)
                        } else {
                            Err(PushError::Rejected(reply))
                        },
                    );
                }
                return;
            }
            _ => {}
        }
        // Subscribers first: a stream created after a waiter resolves never sees the event
        // that resolved it.
        self.broadcast_event(event.clone());
        match event {
            Event::PushTimedOut { push_ref, .. } => {
                if let Some(PushWaiter::Reply(tx)) = self.pushes.remove(&push_ref) {
                    let _ = self.answer(tx, Err(PushError::Timeout));
                }
            }
            Event::PushFailed {
                push_ref, reason, ..
            } => {
                if let Some(PushWaiter::Reply(tx)) = self.pushes.remove(&push_ref) {
                    let _ = self.answer(tx, Err(PushError::Failed(reason)));
                }
            }
            Event::Connecting { attempt, .. } => debug!(attempt, "connection attempt"),
            Event::Connected { conn } => {
                info!(%conn, "connected");
                if let Some(tx) = self.connect_waiter.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::Disconnected {
                reason,
                reconnect_delay,
                ..
            } => {
                info!(%reason, ?reconnect_delay, "disconnected");
                if let Some(tx) = self.connect_waiter.take() {
                    let err = match self.credentials_error.take() {
                        Some(e) => ConnectError::Credentials(e),
                        None => ConnectError::from_disconnect(&reason),
                    };
                    let _ = tx.send(Err(err));
                    self.shutting_down = true;
                    self.core.disconnect(self.rt.now());
                }
            }
            Event::ReconnectGaveUp { attempts } => warn!(attempts, "gave up reconnecting"),
            Event::Joined {
                channel,
                response,
                rejoin,
            } => {
                debug!(%channel, rejoin, "joined");
                if let Some(tx) = self.joins.remove(&channel) {
                    let reply = Reply {
                        status: "ok".into(),
                        response,
                    };
                    if self.answer(tx, Ok((channel, reply))).is_err() {
                        // The join's caller has gone (its future was dropped, say by a
                        // timeout): nobody holds the channel to leave it, so it would stay
                        // joined, rejoin after every reconnect and keep its topic taken.
                        debug!(%channel, "join abandoned by its caller; leaving");
                        let _ = self.core.leave(self.rt.now(), channel);
                    }
                }
            }
            Event::JoinFailed {
                channel,
                status,
                response,
                retry_at,
            } => {
                debug!(%channel, %status, "join refused");
                if retry_at.is_none() {
                    let reply = Reply { status, response };
                    self.end_channel(channel, JoinError::Rejected(reply));
                }
            }
            Event::JoinTimedOut { channel, retry_at } => {
                debug!(%channel, "join timed out");
                if retry_at.is_none() {
                    self.end_channel(channel, JoinError::Timeout);
                }
            }
            Event::ChannelErrored {
                channel, reason, ..
            } => debug!(%channel, ?reason, "channel errored"),
            Event::Left { channel, .. } | Event::ChannelClosed { channel, .. } => {
                debug!(%channel, "channel ended");
                self.end_channel(channel, JoinError::Closed);
            }
            Event::Heartbeat { rtt } => trace!(?rtt, "heartbeat"),
            Event::Unexpected(u) => debug!(?u, "ignored input"),
            _ => {}
        }
    }

    /// Takes the core's next event, a message for `channel`, into the channel's batch:
    /// consecutive messages of one channel reach its stream in one batch (one lock, one
    /// wake-up). A message for a channel read by its stream alone moves straight from the
    /// core's queue into the batch.
    fn take_message(&mut self, channel: ChannelId) {
        match self.batch_for(channel) {
            Some(true) => {
                let batch = &mut self.batch;
                self.core.poll_message_with(|m| batch.push(m));
            }
            Some(false) => {
                let mut taken = None;
                self.core.poll_message_with(|m| taken = Some(m));
                if let Some(message) = taken {
                    self.queue_message(channel, message, false);
                }
            }
            None => {
                self.core.poll_message_with(drop);
            }
        }
    }

    /// Queues `message` for the batch `batch_for` made `channel`'s, handing it first to the
    /// channel's extra subscribers unless the stream is its only reader (`plain`); moved
    /// rather than cloned into the batch.
    fn queue_message(&mut self, channel: ChannelId, mut message: Message, plain: bool) {
        if !plain {
            // A message for several streams is checked once, here, so that a malformed one
            // is counted and reported once; a channel's only stream checks its own.
            if !self.registry.admit(&mut message) {
                return;
            }
            let Some(entry) = self.channels.get(&channel) else {
                return;
            };
            for (filter, sub) in entry.subscribers() {
                if filter
                    .as_deref()
                    .is_none_or(|f| f == message.event.as_str())
                    && let Some(inbox) = sub.upgrade()
                    && let Some(w) = inbox.push(message.clone())
                {
                    self.wake.push(w);
                }
            }
        }
        self.batch.push(message);
    }

    /// Makes the batch `channel`'s (handing over another channel's first). `None` if the
    /// channel is gone; otherwise whether its stream is its only reader, so that a message
    /// goes nowhere but into the batch.
    fn batch_for(&mut self, channel: ChannelId) -> Option<bool> {
        if self.batch_channel != Some(channel) {
            self.flush_messages(false);
        }
        let entry = self.channels.get_mut(&channel)?;
        let alone = entry.read_by_stream_alone();
        self.batch_channel = Some(channel);
        Some(alone)
    }

    /// Queues the batched messages on their channel's stream. `settled`: the connection has
    /// nothing more to read for now, so buffers sized for a burst may go back.
    fn flush_messages(&mut self, settled: bool) {
        // The batch may be empty: `batch_for` names its channel before the message is taken.
        if let Some(channel) = self.batch_channel.take()
            && !self.batch.is_empty()
        {
            match self.channels.get(&channel) {
                Some(entry) => {
                    let (waker, behind) = entry.shared.inbox.push_batch(&mut self.batch, settled);
                    if let Some(w) = waker {
                        self.wake.push(w);
                    }
                    self.consumer_behind |= behind;
                    if !settled && self.unsettled.last() != Some(&channel) {
                        self.unsettled.push(channel);
                    }
                }
                None => self.batch.clear(),
            }
        }
        if settled {
            for channel in self.unsettled.drain(..) {
                if let Some(w) = self
                    .channels
                    .get(&channel)
                    .and_then(|entry| entry.shared.inbox.settle())
                {
                    self.wake.push(w);
                }
            }
            self.batch.trim();
            self.core.shrink_queues();
        }
    }

    fn deliver_presence(&mut self, channel: ChannelId, change: PresenceChange) {
        let Some(entry) = self.channels.get_mut(&channel) else {
            return;
        };
        entry.refresh();
        let subs = entry
            .presence_subscribers()
            .iter()
            .filter_map(Weak::upgrade);
        // A change may carry a key's whole entry (thousands of metas): the last stream gets
        // it moved, the others a clone.
        let mut inboxes = entry.shared.presence.iter().cloned().chain(subs).peekable();
        let mut change = Some(change);
        while let Some(inbox) = inboxes.next() {
            let item = if inboxes.peek().is_some() {
                change.clone()
            } else {
                change.take()
            };
            if let Some(item) = item
                && let Some(w) = inbox.push(item)
            {
                self.wake.push(w);
            }
        }
    }

    fn broadcast_event(&mut self, event: Event) {
        let version = self.registry.events_version.load(Ordering::Acquire);
        if version != self.events_version {
            self.events_cache = self.registry.event_subscribers();
            self.events_version = version;
        }
        inbox::offer(&self.events_cache, &event, |w| self.wake.push(w));
    }

    /// Sends a join's or a push's outcome; its task is woken when the locked section ends
    /// ([`unlock`]). A second answer in one section wakes the task of the first at once. The
    /// value back if nobody waits for it any more.
    fn answer<T>(&mut self, tx: oneshot::Sender<T>, value: T) -> Result<(), T> {
        if let Some(waker) = tx.send_unwoken(value)?
            && let Some(earlier) = self.answered.replace(waker)
        {
            earlier.wake();
        }
        Ok(())
    }

    /// A channel's life is over: resolve its waiters and end its message streams.
    fn end_channel(&mut self, channel: ChannelId, join_error: JoinError) {
        if let Some(tx) = self.joins.remove(&channel) {
            let _ = tx.send(Err(join_error));
        }
        if let Some(tx) = self.leaves.remove(&channel) {
            let _ = tx.send(Ok(()));
        }
        if let Some(mut entry) = self.channels.remove(&channel) {
            // The main inbox closes first: a stream added after the reload below finds it
            // closed and ends itself. Whatever was added before must end here.
            self.wake.extend(entry.shared.inbox.close());
            entry.reload(entry.shared.version.load(Ordering::Acquire));
            if let Some(p) = &entry.shared.presence {
                self.wake.extend(p.close());
            }
            for (_, sub) in entry.subscribers() {
                if let Some(inbox) = sub.upgrade() {
                    self.wake.extend(inbox.close());
                }
            }
            for sub in entry.presence_subscribers() {
                if let Some(inbox) = sub.upgrade() {
                    self.wake.extend(inbox.close());
                }
            }
        }
    }

    /// Resolves every `disconnect()` waiting for its connection to be gone.
    fn answer_disconnects(&mut self) {
        for tx in self.disconnects.drain(..) {
            let _ = tx.send(());
        }
    }

    /// The driver stops: every waiter learns that the socket is closed, every stream ends.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        info!("socket stopped");
        if let Some(tx) = self.connect_waiter.take() {
            let _ = tx.send(Err(ConnectError::Shutdown));
        }
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            self.end_channel(id, JoinError::SocketClosed);
        }
        for (_, PushWaiter::Reply(tx)) in self.pushes.take_all() {
            let _ = tx.send(Err(PushError::Failed(PushFailure::Disconnected)));
        }
        self.answer_disconnects();
        let list = self
            .registry
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.registry.events_closed.store(true, Ordering::Relaxed);
        for sub in list.iter() {
            if let Some(inbox) = sub.upgrade() {
                self.wake.extend(inbox.close());
            }
        }
        drop(list);
        for w in self.wake.drain(..) {
            w.wake();
        }
    }
}
