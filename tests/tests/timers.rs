//! The driver's use of runtime timers. Arming a timer costs a registration with the runtime and
//! often a wake-up of its timer thread, and every push moves the core's next deadline (its own
//! timeout) later: the driver keeps the timer it armed until it fires, then arms the real
//! deadline. These tests hold it to that on both adapters, and check that a deadline behind an
//! earlier armed timer still fires on time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;
use std::time::{Duration, Instant};

use phx_client::{Builder, Payload, PushError, Runtime, TlsConnector, WebSocketConfig};
use phx_tests::server::ServerConfig;
use phx_tests::server::ws::BackgroundServer;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// A runtime that counts the timers the driver arms.
#[derive(Clone, Default)]
struct Counting<R> {
    inner: R,
    armed: Arc<AtomicUsize>,
}

impl<R: Runtime> Runtime for Counting<R> {
    type WebSocket = R::WebSocket;
    type Sleep = R::Sleep;

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.armed.fetch_add(1, Ordering::Relaxed);
        self.inner.sleep_until(deadline)
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(future);
    }

    fn shares_thread(&self) -> bool {
        self.inner.shares_thread()
    }

    fn yield_now(&self, cx: &mut Context<'_>) {
        self.inner.yield_now(cx);
    }

    fn connect(
        &self,
        request: Request,
        config: WebSocketConfig,
        tls: Option<TlsConnector>,
    ) -> impl Future<Output = Result<Self::WebSocket, WsError>> + Send + 'static {
        self.inner.connect(request, config, tls)
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
/// one per push.
async fn sequential_pushes_do_not_rearm_the_timer<R: Runtime + Default>() {
    let h = BackgroundServer::start(ServerConfig::default());
    let rt = Counting::<R>::default();
    let armed = rt.armed.clone();
    let socket = builder(&h, rt).connect().await.unwrap();
    let (lobby, _) = socket.channel("room:lobby").join().await.unwrap();
    let before = armed.load(Ordering::Relaxed);
    for i in 0..PUSHES {
        let reply = lobby.push("ping", &json!({ "i": i })).await.unwrap();
        assert!(reply.is_ok());
    }
    let during = armed.load(Ordering::Relaxed) - before;
    assert!(
        during <= 5,
        "{during} timers armed for {PUSHES} sequential pushes"
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
async fn tokio_sequential_pushes_do_not_rearm_the_timer() {
    sequential_pushes_do_not_rearm_the_timer::<phx_tokio::Tokio>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_later_deadline_behind_an_armed_timer_fires_on_time() {
    a_later_deadline_behind_an_armed_timer_fires_on_time::<phx_tokio::Tokio>().await;
}

#[test]
fn async_std_sequential_pushes_do_not_rearm_the_timer() {
    async_std::task::block_on(sequential_pushes_do_not_rearm_the_timer::<
        phx_async_std::AsyncStd,
    >());
}

#[test]
fn async_std_a_later_deadline_behind_an_armed_timer_fires_on_time() {
    async_std::task::block_on(a_later_deadline_behind_an_armed_timer_fires_on_time::<
        phx_async_std::AsyncStd,
    >());
}
