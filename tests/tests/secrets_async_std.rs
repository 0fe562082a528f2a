//! Secrets never leak, on the async-std adapter (its own dial and TLS paths included).

mod log_capture;
mod secrets_scenario;

#[test]
fn no_secret_reaches_logs_debug_or_errors() {
    let (capture, h) = secrets_scenario::setup();
    let printed = async_std::task::block_on(secrets_scenario::run::<phx_async_std::AsyncStd>(&h));
    secrets_scenario::check(&capture, &h, printed);
}
