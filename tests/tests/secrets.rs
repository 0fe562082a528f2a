//! Secrets never leak, on the tokio adapter (the scenario is in `secrets_scenario`; the
//! async-std run is `secrets_async_std.rs`).

mod log_capture;
mod secrets_scenario;

#[test]
fn no_secret_reaches_logs_debug_or_errors() {
    let (capture, h) = secrets_scenario::setup();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let printed = rt.block_on(secrets_scenario::run::<phx_tokio::Tokio>(&h));
    secrets_scenario::check(&capture, &h, printed);
}
