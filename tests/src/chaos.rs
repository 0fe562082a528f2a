//! A fault-injecting TCP proxy for chaos runs over real sockets: put it between a client and
//! the test server, then cut connections, blackhole them (half-open: bytes vanish, nothing
//! closes), delay or throttle them, or refuse new ones.
//!
//! It runs on a tokio runtime thread of its own, so clients on any executor can use it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it forwards, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything at once.
    #[default]
    None,
    /// Swallow every byte and keep the connections open: a half-open link.
    Blackhole,
    /// Hold each chunk this long before forwarding it.
    Delay(Duration),
    /// Forward at most this many bytes per second.
    Throttle {
        /// The rate.
        bytes_per_sec: u64,
    },
}

#[derive(Debug)]
struct State {
    fault: Mutex<Fault>,
    refuse: Mutex<bool>,
    open: AtomicUsize,
    accepted: AtomicUsize,
    /// Bumped by `cut`: every connection alive at that moment closes.
    cut: watch::Sender<u64>,
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy; see the [module docs](self).
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ChaosProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `upstream`.
    ///
    /// # Panics
    /// When no runtime can be built or no loopback port bound.
    pub fn start(upstream: SocketAddr) -> Self {
        let (cut, _) = watch::channel(0);
        let state = Arc::new(State {
            fault: Mutex::new(Fault::None),
            refuse: Mutex::new(false),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            cut,
        });
        let shared = state.clone();
        let (runtime, addr) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("phx-chaos-proxy")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot build the proxy's runtime: {e}"));
            let listener = runtime
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .unwrap_or_else(|e| panic!("cannot bind the chaos proxy: {e}"));
            let addr = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("proxy address: {e}"));
            runtime.spawn(accept_loop(listener, upstream, shared));
            (runtime, addr)
        })
        .join()
        .unwrap_or_else(|_| panic!("the chaos proxy failed to start"));
        Self {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `ws://` URL through the proxy for the mount path `mount` (such as `/socket`).
    pub fn url(&self, mount: &str) -> String {
        format!("ws://{}{mount}", self.addr)
    }

    /// Sets the fault applied from now on, to existing and new connections.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Closes every connection open now (both sides see the TCP connection end).
    pub fn cut(&self) {
        self.state.cut.send_modify(|g| *g += 1);
    }

    /// While `refuse` is true, new connections are accepted and closed at once.
    pub fn refuse(&self, refuse: bool) {
        *self.state.refuse.lock().unwrap_or_else(|e| e.into_inner()) = refuse;
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        if *state.refuse.lock().unwrap_or_else(|e| e.into_inner()) {
            drop(client);
            continue;
        }
        tokio::spawn(proxy(client, upstream, state.clone()));
    }
}

async fn proxy(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    state.open.fetch_add(1, Ordering::SeqCst);
    let mut cut = state.cut.subscribe();
    cut.mark_unchanged();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pipe(cr, sw, &state) => {}
        _ = pipe(sr, cw, &state) => {}
        _ = cut.changed() => {}
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one direction, applying the current fault to every chunk.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: &State) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else {
            return;
        };
        match state.fault() {
            Fault::None => {}
            Fault::Blackhole => continue,
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Throttle { bytes_per_sec } => {
                let secs = n as f64 / bytes_per_sec.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
