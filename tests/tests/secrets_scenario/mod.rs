//! The secrets scenario, run on each adapter (each in a test binary of its own, since each
//! installs its own global tracing subscriber): secret params, the auth token (and its base64
//! form in the subprotocol) and secret headers appear in no tracing output (captured at TRACE
//! level), no `Debug` or `Display` output, and no error, across connects, reconnects, refusals,
//! a TLS failure and a credentials callback.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use phx_client::{Event, Runtime, Socket};
use phx_tests::server::ws::BackgroundServer;
use phx_tests::server::{ConnectAuth, ServerConfig};
use phx_tests::tls::TestCa;
use serde_json::json;

use super::log_capture::Capture;

const PARAM: &str = "param-SECRET-4f1c9a";
const TOKEN: &str = "token-SECRET-77ab02";
const HEADER: &str = "header-SECRET-e19d3c";
const FRESH: &str = "fresh-SECRET-0c55aa";

fn base64(s: &str) -> String {
    // The auth token travels as unpadded standard base64; search for that form too.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Installs the log capture and starts the server the scenario needs.
pub(crate) fn setup() -> (Capture, BackgroundServer) {
    let capture = Capture::install(tracing::Level::TRACE);
    let h = BackgroundServer::start(ServerConfig {
        auth: ConnectAuth::Custom(Arc::new(|info| {
            info.param("token") == Some(PARAM)
                || info.param("token") == Some(FRESH)
                || info.auth_token.as_deref() == Some(TOKEN.as_bytes())
        })),
        ..ServerConfig::default()
    });
    (capture, h)
}

/// Runs every path that handles a secret on runtime `R`, returning what it printed with
/// `Debug` and `Display`.
pub(crate) async fn run<R: Runtime + Default>(h: &BackgroundServer) -> String {
    let mut printed = String::new();
    let socket = Socket::<R>::builder(&h.url())
        .secret_param("token", PARAM)
        .auth_token(TOKEN)
        .header("Authorization", format!("Bearer {HEADER}"))
        .heartbeat(Duration::from_millis(100))
        .connect()
        .await
        .expect("connects");
    printed += &format!("{socket:?}\n");
    let mut events = socket.events();
    let (lobby, reply) = socket.channel("room:lobby").join().await.unwrap();
    printed += &format!("{lobby:?} {reply:?}\n");
    lobby.push("ping", &json!({"n": 1})).await.unwrap();
    // A reconnect, with its logs and events.
    h.restart().await;
    while let Some(Ok(e)) = events.next().await {
        printed += &format!("{e:?}\n");
        if matches!(e, Event::Joined { rejoin: true, .. }) {
            break;
        }
    }
    printed += &format!("{:?}\n", socket.stats().await.unwrap());
    socket.disconnect().await.unwrap();

    // A refused connect: the error and its Display.
    let refused = Socket::<R>::builder(&h.url())
        .secret_param("token", "wrong-but-still-secret")
        .auth_token(format!("{TOKEN}-expired"))
        .connect()
        .await
        .unwrap_err();
    printed += &format!("{refused:?} {refused}\n");

    // A credentials callback.
    let fresh = Socket::<R>::builder(&h.url())
        .credentials(|| async {
            Ok::<_, String>(phx_client::Credentials {
                params: vec![("token".into(), FRESH.into())],
                auth_token: Some(TOKEN.into()),
            })
        })
        .connect()
        .await
        .unwrap();
    printed += &format!("{fresh:?}\n");
    printed += &format!(
        "{:?}\n",
        phx_client::Credentials {
            params: vec![("token".into(), FRESH.into())],
            auth_token: Some(TOKEN.into()),
        }
    );
    fresh.disconnect().await.unwrap();

    // A TLS failure: a server whose certificate nothing vouches for.
    let ca = TestCa::new();
    let tls = BackgroundServer::start_tls(ServerConfig::default(), ca.server_config());
    let untrusted = Socket::<R>::builder(&tls.url())
        .secret_param("token", PARAM)
        .auth_token(TOKEN)
        .connect()
        .await
        .unwrap_err();
    printed += &format!("{untrusted:?} {untrusted}\n");
    printed
}

/// Checks that no secret reached the logs or what was printed.
pub(crate) fn check(capture: &Capture, h: &BackgroundServer, mut printed: String) {
    // The core's own types.
    let config = phx_proto::Config::builder(&h.url())
        .unwrap()
        .secret_param("token", PARAM)
        .auth_token(TOKEN)
        .header("Authorization", HEADER)
        .build()
        .unwrap();
    let core = phx_proto::Socket::new(config.clone(), std::time::Instant::now());
    printed += &format!(
        "{config:?} {:?} {}\n",
        core.connect_request(),
        config.redacted_url()
    );

    let logs = capture.text();
    assert!(
        logs.contains("connected") && logs.contains("disconnected") && logs.contains("<redacted>"),
        "the capture holds the socket's logs:\n{logs}"
    );
    for secret in [PARAM, TOKEN, HEADER, FRESH, "wrong-but-still-secret"] {
        for form in [secret.to_owned(), base64(secret)] {
            assert!(
                !logs.contains(&form),
                "{form} found in the tracing output:\n{logs}"
            );
            assert!(
                !printed.contains(&form),
                "{form} found in Debug/Display output:\n{printed}"
            );
        }
    }
}
