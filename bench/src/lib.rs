//! Benchmarks of phx against the raw WebSocket limit, the official JavaScript client and the
//! other Rust Phoenix clients. `cargo run --release -p phx-bench` runs them all and writes
//! `BENCHMARKS.md` with the figures of that run.

pub mod envelope;
pub mod report;
pub mod rounds;
pub mod server;
pub mod workers;

/// Prints a worker's figures as the one line the orchestrator reads.
pub fn print_result(result: Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>>) {
    match result {
        Ok(v) => println!("RESULT {v}"),
        Err(e) => {
            println!("ERROR {}", e.to_string().replace('\n', " "));
            std::process::exit(1);
        }
    }
}

/// The resident set size of this process, in bytes (from `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
