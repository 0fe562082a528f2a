//! What the driver asks of its runtime per operation, on both adapters.
//!
//! - Timers: arming one costs a registration with the runtime and often a wake-up of its timer
//!   thread, and every push moves the core's next deadline (its own timeout) later, so the
//!   driver keeps the timer it armed until it fires, then arms the real deadline. A deadline
//!   behind an earlier armed timer must still fire on time.
//! - Reads: once the WebSocket's stream has returned `Pending` it holds the driver's waker, and
//!   polling it again in the same turn only repeats a read that finds nothing (on async-io, a
//!   `recv` system call each time).
//! - Wake-ups: a push made from the driver's executor while the driver is idle is written from
//!   the caller's task; the driver task wakes only for the reply, not for the command too (on a
//!   multi-threaded runtime, each wake-up is a hop to another thread). Where the runtime asks
//!   for it (async-std, whose `block_on` runs the reactor), the caller of a lone push reads the
//!   reply too, and the driver task does not wake at all; a caller that gives up hands the
//!   socket back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::io::{AsyncRead, AsyncWrite};

use phx_client::{Builder, Event, Payload, PushError, Runtime};
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use serde_json::json;

/// A runtime that counts the timers the driver arms, the reads that find nothing and the
/// polls of the tasks it spawns (the driver's). Its clock can be moved on (`skew`), and the
/// tasks it spawns held (`hold`).
#[derive(Clone, Default)]
struct Counting<R> {
    inner: R,
    armed: Arc<AtomicUsize>,
    empty_reads: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    skew_ms: Arc<AtomicU64>,
    hold: Arc<Hold>,
}

/// Holds the spawned tasks back while closed: their polls return `Pending` until it opens.
#[derive(Default)]
struct Hold {
    closed: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Hold {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        for w in self.wakers.lock().unwrap().drain(..) {
            w.wake();
        }
    }
}

/// A future that counts its polls, and waits while its [`Hold`] is closed.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
    hold: Arc<Hold>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.hold.closed.load(Ordering::SeqCst) {
            self.hold.wakers.lock().unwrap().push(cx.waker().clone());
            return Poll::Pending;
        }
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// A TCP stream that counts the reads that return `Pending` (the WebSocket asks its stream for
/// bytes only once it holds no whole frame, so these are the WebSocket's empty reads).
struct CountingTcp<T> {
    inner: T,
    empty_reads: Arc<AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingTcp<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_pending() {
            self.empty_reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingTcp<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<R: Runtime> Runtime for Counting<R> {
    type Tcp = CountingTcp<R::Tcp>;
    type Sleep = R::Sleep;

    fn now(&self) -> Instant {
        self.inner.now() + Duration::from_millis(self.skew_ms.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.armed.fetch_add(1, Ordering::Relaxed);
        self.inner.sleep_until(deadline)
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(CountPolls {
            inner: Box::pin(future),
            polls: self.polls.clone(),
            hold: self.hold.clone(),
        });
    }

    fn shares_thread(&self) -> bool {
        self.inner.shares_thread()
    }

    fn context(&self) -> Option<u64> {
        self.inner.context()
    }

    fn reads_on_caller(&self) -> bool {
        self.inner.reads_on_caller()
    }

    fn yield_now(&self, cx: &mut Context<'_>) {
        self.inner.yield_now(cx);
    }

    fn connect_tcp(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Tcp>> + Send + 'static {
        let dial = self.inner.connect_tcp(host, port);
        let empty_reads = self.empty_reads.clone();
        async move {
            Ok(CountingTcp {
                inner: dial.await?,
                empty_reads,
            })
        }
    }
}

const PUSHES: usize = 300;

fn builder<R: Runtime + Default>(h: &BackgroundServer, rt: Counting<R>) -> Builder<Counting<R>> {
    Builder::new(&h.url(), rt)
        .secret_param("token", "secret")
        .heartbeat(Duration::from_secs(30))
        .timeout(Duration::from_secs(10))
}

/// Sequential pushes, each moving the core's deadline later: a handful of timers in all, not
/// one per push. The pushes run in rounds and the reads and polls are judged by the best
/// round: a thread of the test's executor held up by the machine's other work costs the
/// driver extra turns in one round (up to 600 in 300 pushes on async-std), not in all.
async fn sequential_pushes_rearm_no_timer_and_repeat_no_empty_read<R: Runtime + Default>() {
    const ROUNDS: usize = 3;
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let (armed, empty_reads, polls) = (rt.armed.clone(), rt.empty_reads.clone(), rt.polls.clone());
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let before = armed.load(Ordering::Relaxed);
    let (mut empty, mut polled) = (usize::MAX, usize::MAX);
    for _ in 0..ROUNDS {
        let empty_before = empty_reads.load(Ordering::Relaxed);
        let polls_before = polls.load(Ordering::Relaxed);
        for i in 0..PUSHES / ROUNDS {
            let reply = lobby.push("ping", &json!({ "i": i })).await.unwrap();
            assert!(reply.is_ok());
        }
        empty = empty.min(empty_reads.load(Ordering::Relaxed) - empty_before);
        polled = polled.min(polls.load(Ordering::Relaxed) - polls_before);
    }
    let during = armed.load(Ordering::Relaxed) - before;
    assert!(
        during <= 5,
        "{during} timers armed for {PUSHES} sequential pushes"
    );
    let per_round = PUSHES / ROUNDS;
    // Per push the driver wakes for the reply, reads it and finds nothing more: one empty
    // read, and now and then another (measured: 100 in every round of 100 on tokio, 100-107 on
    // async-std; 200-220 when the driver also woke for each command, 370-380 when it polled
    // again in each round of a turn, and up to 171 when a caller was woken inside the
    // driver's turn and found the socket taken).
    assert!(
        empty <= per_round * 3 / 2,
        "{empty} reads found nothing in the best round of {per_round} sequential pushes"
    );
    // The pushes were written from this task: the driver was polled for the replies only
    // (measured: as many as the empty reads), and not even for those where the caller reads
    // its own reply.
    let limit = if R::default().reads_on_caller() {
        per_round / 10
    } else {
        per_round * 3 / 2
    };
    assert!(
        polled <= limit,
        "the driver was polled {polled} times in the best round of {per_round} sequential pushes"
    );
}

/// A future whose waker, once it has woken the task, holds the waking thread a while: as if
/// the OS took that thread's core away right after the wake-up.
struct SlowWake<F> {
    inner: Pin<Box<F>>,
}

struct SlowWaker(Waker);

impl std::task::Wake for SlowWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl<F: Future> Future for SlowWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(SlowWaker(cx.waker().clone())));
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// A caller woken by its reply finds the driver idle, however long the driver's thread takes
/// after the wake-up: it is woken once the driver has let go of the socket, so its next push
/// takes the shortcut instead of the command queue and a wake-up of the driver's task. The
/// driver is polled once per reply.
///
/// On tokio, where the caller (here `block_on`'s thread) and the driver run on different
/// threads. A caller on async-std reads its own reply, on its own thread (see
/// `sequential_pushes_rearm_no_timer_and_repeat_no_empty_read`); a waker that holds up the
/// thread that wakes it would hold up async-std's reactor there, not the driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_woken_by_its_reply_finds_the_driver_idle() {
    const SEQUENTIAL: usize = 50;
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<phx_tokio::Tokio>::default();
    let polls = rt.polls.clone();
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let before = polls.load(Ordering::Relaxed);
    for i in 0..SEQUENTIAL {
        let payload = json!({ "i": i });
        let reply = SlowWake {
            inner: Box::pin(lobby.push("ping", &payload)),
        }
        .await
        .unwrap();
        assert!(reply.is_ok());
    }
    let polled = polls.load(Ordering::Relaxed) - before;
    // Measured: exactly one per push. Woken inside the driver's turn instead, each caller
    // found the socket taken and queued its next push: 98-99 polls for 50 pushes.
    assert!(
        polled <= SEQUENTIAL + SEQUENTIAL / 5,
        "the driver was polled {polled} times for {SEQUENTIAL} sequential pushes"
    );
}

/// A push timeout that lies behind an earlier armed timer (left by a push that was answered at
/// once) still fires on time: the early timer fires, finds nothing due, and the real deadline
/// is armed.
async fn a_later_deadline_behind_an_armed_timer_fires_on_time<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let clock = rt.clone();
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let answered = lobby
        .push_payload("ping", Payload::empty(), Some(Duration::from_millis(150)))
        .await
        .unwrap();
    assert!(answered.is_ok());
    let start = clock.now();
    let r = lobby
        .push_payload(
            "noreply",
            Payload::empty(),
            Some(Duration::from_millis(400)),
        )
        .await;
    let waited = clock.now() - start;
    assert_eq!(r, Err(PushError::Timeout));
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "timed out after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_sequential_pushes_rearm_no_timer_and_repeat_no_empty_read() {
    sequential_pushes_rearm_no_timer_and_repeat_no_empty_read::<phx_tokio::Tokio>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_later_deadline_behind_an_armed_timer_fires_on_time() {
    a_later_deadline_behind_an_armed_timer_fires_on_time::<phx_tokio::Tokio>().await;
}

#[test]
fn async_std_sequential_pushes_rearm_no_timer_and_repeat_no_empty_read() {
    async_std::task::block_on(sequential_pushes_rearm_no_timer_and_repeat_no_empty_read::<
        phx_async_std::AsyncStd,
    >());
}

#[test]
fn async_std_a_later_deadline_behind_an_armed_timer_fires_on_time() {
    async_std::task::block_on(a_later_deadline_behind_an_armed_timer_fires_on_time::<
        phx_async_std::AsyncStd,
    >());
}

/// A handle used from another tokio runtime does not take the shortcut: a timer made there
/// would belong to that runtime and die with it, and the driver, which polls it, with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_from_another_runtime_leaves_the_timers_to_the_driver() {
    let h = BackgroundServer::start(ServerConfig::default());
    let socket = builder(&h, Counting::<phx_tokio::Tokio>::default())
        .connect()
        .await
        .unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let elsewhere = lobby.clone();
    // Its timeout is the core's earliest deadline: the timer for it is armed now.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reply = rt.block_on(elsewhere.push_payload(
            "ping",
            Payload::empty(),
            Some(Duration::from_secs(5)),
        ));
        assert!(reply.unwrap().is_ok());
    })
    .join()
    .unwrap();
    // That runtime is gone; the driver and its timers carry on.
    let late = lobby
        .push_payload(
            "noreply",
            Payload::empty(),
            Some(Duration::from_millis(300)),
        )
        .await;
    assert_eq!(late, Err(PushError::Timeout));
    assert!(lobby.push("ping", &json!({})).await.unwrap().is_ok());
}

/// PROTOCOL.md §10.4, rule 6: a reply already received beats its deadline. A command carried
/// out on a caller's task reads no frames, so it leaves a due deadline to the driver, which
/// reads first. Here the reply to a leave waits unread (the driver is held) while the clock
/// passes the leave's timeout, and a cast is made meanwhile.
async fn a_shortcut_leaves_a_due_deadline_to_the_driver_which_reads_first<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let (skew_ms, hold) = (rt.skew_ms.clone(), rt.hold.clone());
    let socket = builder(&h, rt).connect().await.unwrap();
    let mut events = socket.events();
    let (a, _) = socket.channel("room:a").join().await.unwrap();
    let (b, _) = socket.channel("room:b").join().await.unwrap();
    hold.close();
    // The driver is idle: the leave is written from the task that asks for it.
    R::default().spawn(async move { a.leave().await.unwrap() });
    pause::<R>().await;
    skew_ms.store(11_000, Ordering::SeqCst);
    b.cast("noreply", &json!({})).await.unwrap();
    hold.open();
    loop {
        match events.next().await {
            Some(Ok(Event::Left { confirmed, .. })) => {
                assert!(
                    confirmed,
                    "the leave's reply, already received, lost to its deadline"
                );
                break;
            }
            Some(_) => {}
            None => panic!("the event stream ended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_shortcut_leaves_a_due_deadline_to_the_driver_which_reads_first() {
    a_shortcut_leaves_a_due_deadline_to_the_driver_which_reads_first::<phx_tokio::Tokio>().await;
}

#[test]
fn async_std_a_shortcut_leaves_a_due_deadline_to_the_driver_which_reads_first() {
    async_std::task::block_on(
        a_shortcut_leaves_a_due_deadline_to_the_driver_which_reads_first::<phx_async_std::AsyncStd>(
        ),
    );
}

/// PROTOCOL.md §10.4, rule 6, in the driver's own turn: when more frames are waiting than it
/// reads in one round, it reads them in the next round before it fires a due deadline. Here
/// a push's reply arrives behind 300 messages while the driver is held, and the clock passes
/// the push's timeout before the driver runs.
async fn a_reply_behind_a_full_read_batch_beats_its_deadline<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let (skew_ms, hold) = (rt.skew_ms.clone(), rt.hold.clone());
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    hold.close();
    let (tx, rx) = futures::channel::oneshot::channel();
    // The driver is idle: the push is written from the task that makes it.
    R::default().spawn(async move {
        let _ = tx.send(lobby.push("flood", &json!({ "n": 300 })).await);
    });
    pause::<R>().await;
    skew_ms.store(11_000, Ordering::SeqCst);
    hold.open();
    let reply = rx.await.unwrap().unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    for _ in 0..300 {
        messages.next().await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_reply_behind_a_full_read_batch_beats_its_deadline() {
    a_reply_behind_a_full_read_batch_beats_its_deadline::<phx_tokio::Tokio>().await;
}

#[test]
fn async_std_a_reply_behind_a_full_read_batch_beats_its_deadline() {
    async_std::task::block_on(a_reply_behind_a_full_read_batch_beats_its_deadline::<
        phx_async_std::AsyncStd,
    >());
}

/// A lone push's caller that gave up after the socket woke it, before reading what arrived,
/// hands the reading back to the driver: the message that woke it is delivered. On async-std
/// the caller held the socket: the message woke the caller, not the driver.
async fn a_caller_that_gives_up_holding_the_socket_hands_it_back<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let polls = rt.polls.clone();
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let mut messages = lobby.messages();
    // Settle: everything before the push is read and done with.
    let _ = lobby.push("ping", &json!({})).await.unwrap();
    pause::<R>().await;
    // The server answers a shout with a broadcast to the channel and no reply.
    let body = json!({ "shout": 1 });
    let mut push = Box::pin(lobby.push("shout", &body));
    assert!(futures::poll!(&mut push).is_pending());
    let before = polls.load(Ordering::SeqCst);
    pause::<R>().await;
    if R::default().reads_on_caller() {
        assert_eq!(
            polls.load(Ordering::SeqCst),
            before,
            "the broadcast woke the caller, not the driver"
        );
    }
    drop(push);
    let next = futures::future::select(messages.next(), Box::pin(pause::<R>())).await;
    match next {
        futures::future::Either::Left((Some(Ok(msg)), _)) => assert_eq!(msg.event, "shout"),
        futures::future::Either::Left((other, _)) => panic!("expected the shout, got {other:?}"),
        futures::future::Either::Right(_) => panic!("the broadcast was never read"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_caller_that_gives_up_holding_the_socket_hands_it_back() {
    a_caller_that_gives_up_holding_the_socket_hands_it_back::<phx_tokio::Tokio>().await;
}

#[test]
fn async_std_a_caller_that_gives_up_holding_the_socket_hands_it_back() {
    async_std::task::block_on(a_caller_that_gives_up_holding_the_socket_hands_it_back::<
        phx_async_std::AsyncStd,
    >());
}

/// Long enough for a reply to arrive and wait unread while the driver is held.
fn pause<R: Runtime + Default>() -> R::Sleep {
    let rt = R::default();
    rt.sleep_until(rt.now() + Duration::from_millis(300))
}
