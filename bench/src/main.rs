//! `phx-bench`: starts the bench server in its own process, runs every workload in a child
//! process (raw WebSocket baselines, phx-tokio, phx-async-std, phoenix.js under node, the other
//! Rust clients), prints the tables and writes `BENCHMARKS.md` with an SVG chart.
//!
//! `cargo run --release -p phx-bench` (about five minutes), or `-- --quick` for a smoke run.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use phx_bench::report::{self, Lat, LatRow, Outcome, Rate, RecvRow, Run, Scale};
use phx_bench::rounds;
use phx_bench::{print_result, workers};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(
    about = "Benchmarks phx against the raw WebSocket limit, phoenix.js and other Rust clients"
)]
struct Cli {
    #[command(subcommand)]
    worker: Option<Worker>,
    /// Broadcasts per receive-throughput measurement.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Pushes per latency measurement.
    #[arg(long, default_value_t = 100_000)]
    pushes: u64,
    /// Pushes outstanding in the concurrent latency measurement.
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Channels joined on one socket (scale).
    #[arg(long, default_value_t = 10_000)]
    channels: usize,
    /// Sockets opened in one process (scale).
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// WebSocket read buffer of each socket in the sockets workload, in bytes (0: phx's
    /// default).
    #[arg(long, default_value_t = 0)]
    read_buffer: usize,
    /// Whole-suite runs, each reported.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Repeats of each latency measurement (the run with the median p99 is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Repeats of each receive-throughput measurement (the median is reported). A flood takes
    /// a fraction of a second, and phx's figure, from two threads beside the server on a
    /// shared machine, scatters more than the raw loop's: five cost little and steady it.
    #[arg(long, default_value_t = 5)]
    recv_repeat: usize,
    /// A smoke run: 100k frames, 10k pushes, 1,000 channels and sockets, one run, nothing
    /// written unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Where to write the report (default: BENCHMARKS.md at the workspace root; not with
    /// --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print only; write nothing.
    #[arg(long)]
    no_write: bool,
    /// Only these sections: recv, latency, scale (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these clients in the receive and latency sections (labels: a, a', b, c, d, e1,
    /// e2, echo, echo-as, echo-task, b-task; comma-separated).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Worker {
    /// Runs one workload (used by the orchestrator).
    #[command(hide = true)]
    Worker {
        kind: String,
        url: String,
        n: u64,
        #[arg(long)]
        binary: bool,
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        #[arg(long, default_value_t = 1)]
        channels: usize,
    },
}

/// The outcome of a measurement that did not run (a section or client left out).
fn not_run<T>() -> Outcome<T> {
    Err("not run".into())
}

fn run_worker(kind: &str, url: &str, n: u64, binary: bool, inflight: usize, channels: usize) {
    use phx_async_std::AsyncStd;
    use phx_tokio::Tokio;
    let tokio_rt = || {
        // For experiments only (PHX_BENCH_CURRENT_THREAD): the report uses tokio's default.
        if std::env::var_os("PHX_BENCH_CURRENT_THREAD").is_some() {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        } else {
            tokio::runtime::Runtime::new().expect("tokio runtime")
        }
    };
    // With PHX_BENCH_SPAWN (the latency section's "in a spawned task" rows), a tokio workload
    // runs as a task on the runtime's workers instead of in `block_on` on this thread.
    let spawned = std::env::var_os("PHX_BENCH_SPAWN").is_some();
    let on_tokio = |workload: Pin<Box<dyn Future<Output = workers::Outcome> + Send>>| {
        let rt = tokio_rt();
        if spawned {
            rt.block_on(async {
                tokio::spawn(workload)
                    .await
                    .unwrap_or_else(|e| Err(e.into()))
            })
        } else {
            rt.block_on(workload)
        }
    };
    let owned = url.to_owned();
    let result = match kind {
        "raw" => on_tokio(Box::pin(async move {
            workers::raw_recv(&owned, n, binary, false).await
        })),
        "raw-decode" => on_tokio(Box::pin(async move {
            workers::raw_recv(&owned, n, binary, true).await
        })),
        "phx-tokio" => on_tokio(Box::pin(async move {
            workers::phx_recv::<Tokio>(&owned, n, binary, channels).await
        })),
        "phx-async-std" => {
            async_std::task::block_on(workers::phx_recv::<AsyncStd>(url, n, binary, channels))
        }
        "echo-latency" => on_tokio(Box::pin(async move {
            workers::raw_echo_latency(&owned, n, inflight).await
        })),
        "echo-async-std-latency" => {
            async_std::task::block_on(workers::raw_echo_latency_async_std(url, n, inflight))
        }
        "phx-tokio-latency" => on_tokio(Box::pin(async move {
            workers::phx_latency::<Tokio>(&owned, n, inflight).await
        })),
        "phx-async-std-latency" => {
            async_std::task::block_on(workers::phx_latency::<AsyncStd>(url, n, inflight))
        }
        // Decode cost alone, in a tight loop (for profiling; not part of the report).
        "decode-phx" | "decode-cheap" => {
            let frame = phx_bench::server::flood_frame(workers::TOPIC, binary);
            let start = Instant::now();
            let mut sum = 0usize;
            for _ in 0..n {
                sum += if kind == "decode-phx" {
                    phx_proto::Serializer::decode(&phx_proto::V2Json, &frame)
                        .map_or(0, |m| m.payload.as_bytes().len())
                } else if binary {
                    phx_bench::envelope::decode_binary(frame.as_bytes())
                        .map_or(0, |e| e.payload.len())
                } else {
                    std::str::from_utf8(frame.as_bytes())
                        .ok()
                        .and_then(phx_bench::envelope::decode_text)
                        .map_or(0, |e| e.payload.len())
                };
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(serde_json::json!({ "ns_per_decode": secs * 1e9 / n as f64, "sum": sum }))
        }
        other => Err(format!("unknown worker {other}").into()),
    };
    print_result(result);
    std::process::exit(0);
}

/// Paths of everything the orchestrator runs.
struct Env {
    root: PathBuf,
    bin_dir: PathBuf,
    others: Result<PathBuf, String>,
    js: Result<(), String>,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The last lines of a failed command's output that say what went wrong.
fn error_summary(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    // A panic: its message and where (the file, not the whole registry path).
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at ")) {
        let place = lines[i].rsplit("panicked at ").next().unwrap_or_default();
        let file = place
            .trim_end_matches(':')
            .rsplit('/')
            .next()
            .unwrap_or(place);
        let message = lines.get(i + 1).map_or("", |l| l.trim());
        return format!("panicked: {message} ({file})");
    }
    let first_error = lines
        .iter()
        .position(|l| l.starts_with("error"))
        .unwrap_or(lines.len().saturating_sub(8));
    lines[first_error..]
        .iter()
        .take(6)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn prepare(cli: &Cli) -> Env {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let exe = std::env::current_exe().expect("current exe");
    let bin_dir = exe.parent().expect("bin dir").to_path_buf();
    eprintln!("building the bench binaries…");
    let status = Command::new(cargo())
        .args(["build", "--release", "-p", "phx-bench", "--bins"])
        .current_dir(&root)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("could not build phx-bench's binaries");
        std::process::exit(1);
    }
    let wants = |id: &str| cli.clients.is_empty() || cli.clients.iter().any(|c| c == id);
    let others = if wants("e1") || wants("e2") {
        eprintln!("building the other Rust clients (bench/others)…");
        let target = bin_dir
            .parent()
            .map_or_else(|| root.join("target"), Path::to_path_buf)
            .join("others");
        let out = Command::new(cargo())
            .args(["build", "--release"])
            .current_dir(root.join("bench/others"))
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(target.join("release/phx-bench-others")),
            Ok(o) => Err(error_summary(&String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("cargo: {e}")),
        }
    } else {
        Err("not selected".into())
    };
    let js = if wants("d") {
        eprintln!("installing phoenix.js (tests/js/install.sh)…");
        match Command::new("bash")
            .arg(root.join("tests/js/install.sh"))
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(error_summary(&String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("bash: {e}")),
        }
    } else {
        Err("not selected".into())
    };
    Env {
        root,
        bin_dir,
        others,
        js,
    }
}

/// Runs a child to completion (or `timeout`) and returns its `RESULT` figures.
fn run_child(mut cmd: Command, timeout: Duration) -> Outcome<Value> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let timed_out = loop {
        if child.try_wait().ok().flatten().is_some() {
            break false;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    for line in out.lines() {
        if let Some(json) = line.strip_prefix("RESULT ") {
            return serde_json::from_str(json).map_err(|e| format!("bad result: {e}"));
        }
        if let Some(e) = line.strip_prefix("ERROR ") {
            return Err(e.to_owned());
        }
    }
    if timed_out {
        return Err(format!("no result within {} s", timeout.as_secs()));
    }
    Err(format!("no result; {}", error_summary(&err)))
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(bin_dir: &Path) -> Self {
        let mut child = Command::new(bin_dir.join("phx-bench-server"))
            .arg("0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start phx-bench-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("server output");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .expect("LISTENING <port>");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socket", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

struct Bench<'a> {
    cli: &'a Cli,
    env: &'a Env,
    url: String,
}

impl Bench<'_> {
    fn wants(&self, id: &str) -> bool {
        self.cli.clients.is_empty() || self.cli.clients.iter().any(|c| c == id)
    }

    fn section(&self, name: &str) -> bool {
        self.cli.only.is_empty() || self.cli.only.iter().any(|c| c == name)
    }

    fn worker(&self, kind: &str, n: u64, extra: &[String]) -> Command {
        // Not current_exe(): the build in `prepare` may have replaced this very binary.
        let mut cmd = Command::new(self.env.bin_dir.join("phx-bench"));
        cmd.args(["worker", kind, &self.url, &n.to_string()])
            .args(extra);
        cmd
    }

    fn node(&self, args: &[String]) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(self.env.root.join("bench/js/bench.js"))
            .args(args)
            .env("NODE_PATH", self.env.root.join("tests/js/node_modules"));
        cmd
    }

    /// The receive command for client `id`, or why it cannot run.
    fn recv_command(&self, id: &str, binary: bool, channels: usize) -> Outcome<Command> {
        let n = self.cli.frames;
        let mut extra = vec![format!("--channels={channels}")];
        if binary {
            extra.push("--binary".into());
        }
        Ok(match id {
            "a" => self.worker("raw", n, &extra),
            "a'" => self.worker("raw-decode", n, &extra),
            "b" => self.worker("phx-tokio", n, &extra),
            "c" => self.worker("phx-async-std", n, &extra),
            "d" => {
                self.env.js.clone()?;
                self.node(&[
                    "recv".into(),
                    self.url.clone(),
                    n.to_string(),
                    if binary { "1" } else { "0" }.into(),
                ])
            }
            "e1" | "e2" => {
                let bin = self
                    .env
                    .others
                    .clone()
                    .map_err(|e| format!("did not build: {e}"))?;
                let mut cmd = Command::new(bin);
                cmd.args([
                    if id == "e1" { "pcc" } else { "phyllo" },
                    &self.url,
                    &n.to_string(),
                    if binary { "1" } else { "0" },
                ]);
                cmd
            }
            _ => return Err(format!("unknown client {id}")),
        })
    }

    /// Receive rates for `cases` (client, binary, channels), repeated in rounds
    /// ([`rounds::run`]): the median of each case's repeats.
    fn recv(&self, cases: &[(&str, bool, usize)]) -> Vec<Outcome<Rate>> {
        let runs = self.cli.recv_repeat.max(1);
        let repeats = rounds::run(cases, runs, |&(id, binary, channels)| {
            self.recv_once(id, binary, channels)
        });
        repeats
            .into_iter()
            .zip(cases)
            .map(|(repeats, &(id, binary, channels))| {
                let spread = (repeats.ok.len() > 1).then(|| {
                    let fps = repeats.ok.iter().map(|r| r.fps);
                    (
                        fps.clone().fold(f64::INFINITY, f64::min),
                        fps.fold(0.0, f64::max),
                    )
                });
                let (median, failures) = repeats.median_by(|a, b| a.fps.total_cmp(&b.fps))?;
                let median = Rate {
                    runs,
                    spread,
                    failures,
                    ..median
                };
                eprintln!(
                    "  recv ({id}) {} channels={channels}: {:.0} frames/s",
                    if binary { "binary" } else { "json" },
                    median.fps
                );
                Ok(median)
            })
            .collect()
    }

    /// One receive run.
    fn recv_once(&self, id: &str, binary: bool, channels: usize) -> Outcome<Rate> {
        let v = run_child(
            self.recv_command(id, binary, channels)?,
            Duration::from_secs(300),
        )?;
        let frames = v["frames"].as_u64().unwrap_or(0);
        let lagged = v["lagged"].as_u64().unwrap_or(0);
        let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
        if frames + lagged < self.cli.frames {
            return Err(format!("only {frames} of {} frames", self.cli.frames));
        }
        Ok(Rate {
            fps: frames as f64 / secs,
            lagged,
            ..Rate::default()
        })
    }

    /// Latency for `cases` (client, pushes in flight), repeated in rounds ([`rounds::run`]):
    /// of each case, the repeat with the median p99, as one run's tail is at the mercy of
    /// whatever else the machine schedules.
    fn latency(&self, cases: &[(&str, usize)]) -> Vec<Outcome<Lat>> {
        let repeats = rounds::run(cases, self.cli.repeat.max(1), |&(id, inflight)| {
            self.latency_once(id, inflight)
        });
        repeats
            .into_iter()
            .zip(cases)
            .map(|(repeats, &(id, inflight))| {
                let (lat, _) = repeats.median_by(|a, b| a.p99.total_cmp(&b.p99))?;
                eprintln!(
                    "  latency ({id}) inflight={inflight}: p50 {:.1} p99 {:.1} p99.9 {:.1} µs",
                    lat.p50, lat.p99, lat.p999
                );
                Ok(lat)
            })
            .collect()
    }

    /// One latency run.
    fn latency_once(&self, id: &str, inflight: usize) -> Outcome<Lat> {
        let n = self.cli.pushes;
        let extra = [format!("--inflight={inflight}")];
        let spawned = |kind: &str| {
            let mut cmd = self.worker(kind, n, &extra);
            cmd.env("PHX_BENCH_SPAWN", "1");
            cmd
        };
        let cmd = match id {
            "echo" => self.worker("echo-latency", n, &extra),
            "echo-as" => self.worker("echo-async-std-latency", n, &extra),
            "echo-task" => spawned("echo-latency"),
            "b" => self.worker("phx-tokio-latency", n, &extra),
            "b-task" => spawned("phx-tokio-latency"),
            "c" => self.worker("phx-async-std-latency", n, &extra),
            "d" => {
                self.env.js.clone()?;
                self.node(&[
                    "latency".into(),
                    self.url.clone(),
                    n.to_string(),
                    inflight.to_string(),
                ])
            }
            _ => return Err(format!("unknown client {id}")),
        };
        let v = run_child(cmd, Duration::from_secs(600))?;
        Ok(Lat {
            p50: v["p50_us"].as_f64().unwrap_or(f64::NAN),
            p99: v["p99_us"].as_f64().unwrap_or(f64::NAN),
            p999: v["p999_us"].as_f64().unwrap_or(f64::NAN),
        })
    }

    fn scale_child(&self, args: &[String]) -> Outcome<Value> {
        // 10,000 sockets need as many descriptors: raise the soft limit for the child.
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg("ulimit -n $(ulimit -Hn) 2>/dev/null; exec \"$@\"")
            .arg("phx-bench-scale")
            .arg(self.env.bin_dir.join("phx-bench-scale"))
            .args(args);
        run_child(cmd, Duration::from_secs(300))
    }

    fn run(&self) -> Run {
        let start = Instant::now();
        let load_start = load_average();
        let names = [
            ("a", "raw tokio-tungstenite read loop (framing limit)"),
            ("a'", "raw loop + cheapest V2 envelope decode"),
            ("b", "phx-tokio"),
            ("c", "phx-async-std"),
            ("d", "phoenix.js 1.8.16 (node)"),
            ("e1", "phoenix_channels_client 0.1.2"),
            ("e2", "phyllo 0.3.0"),
        ];
        let mut recv = Vec::new();
        if self.section("recv") {
            let names: Vec<_> = names.into_iter().filter(|(id, _)| self.wants(id)).collect();
            let cases: Vec<_> = names
                .iter()
                .flat_map(|&(id, _)| [(id, false, 1), (id, true, 1)])
                .collect();
            let mut rates = self.recv(&cases).into_iter();
            for (id, name) in names {
                recv.push(RecvRow {
                    id: id.into(),
                    name: name.into(),
                    json: rates.next().unwrap_or_else(not_run),
                    binary: rates.next().unwrap_or_else(not_run),
                });
            }
        }
        let mut lat = Vec::new();
        if self.section("latency") {
            let names = [
                ("echo", "raw WebSocket echo (tokio-tungstenite)"),
                (
                    "echo-as",
                    "raw WebSocket echo (async-tungstenite on async-std)",
                ),
                ("b", "phx-tokio"),
                ("c", "phx-async-std"),
                ("d", "phoenix.js 1.8.16 (node)"),
                (
                    "echo-task",
                    "raw WebSocket echo (tokio-tungstenite), in a spawned task",
                ),
                ("b-task", "phx-tokio, in a spawned task"),
            ];
            let names: Vec<_> = names.into_iter().filter(|(id, _)| self.wants(id)).collect();
            let cases: Vec<_> = names
                .iter()
                .flat_map(|&(id, _)| [(id, 1), (id, self.cli.inflight)])
                .collect();
            let mut lats = self.latency(&cases).into_iter();
            for (id, name) in names {
                lat.push(LatRow {
                    id: id.into(),
                    name: name.into(),
                    seq: lats.next().unwrap_or_else(not_run),
                    par: lats.next().unwrap_or_else(not_run),
                });
            }
        }
        let mut scale = Scale {
            channels: self.cli.channels,
            join: not_run(),
            route: (not_run(), not_run()),
            sockets: self.cli.sockets,
            per_socket: not_run(),
        };
        if self.section("scale") {
            scale.join = self
                .scale_child(&[
                    "channels".into(),
                    self.url.clone(),
                    self.cli.channels.to_string(),
                ])
                .map(|v| {
                    (
                        v["secs"].as_f64().unwrap_or(f64::NAN),
                        v["heap_per_channel"].as_f64().unwrap_or(f64::NAN),
                    )
                });
            eprintln!("  join: {:?}", scale.join);
            let mut route = self
                .recv(&[("b", false, 1), ("b", false, self.cli.channels)])
                .into_iter();
            scale.route = (
                route.next().unwrap_or_else(not_run),
                route.next().unwrap_or_else(not_run),
            );
            scale.per_socket = self
                .scale_child(&[
                    "sockets".into(),
                    self.url.clone(),
                    self.cli.sockets.to_string(),
                    self.cli.read_buffer.to_string(),
                ])
                .map(|v| {
                    (
                        v["rss_per_socket"].as_f64().unwrap_or(f64::NAN),
                        v["heap_per_socket"].as_f64().unwrap_or(f64::NAN),
                        v["read_buffer"].as_u64().unwrap_or(0) as usize,
                    )
                });
            eprintln!("  sockets: {:?}", scale.per_socket);
        }
        Run {
            recv,
            lat,
            scale,
            inflight: self.cli.inflight,
            load: (load_start, load_average()),
            secs: start.elapsed().as_secs_f64(),
        }
    }
}

fn first_line_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| format!("{cmd}: not found"))
}

/// `name version` of the packages in a Cargo.lock.
fn lock_versions(lock: &Path, names: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take()
            && names.contains(&n.as_str())
        {
            out.push(format!("{n} {}", v.trim_matches('"')));
        }
    }
    out
}

fn npm_versions(lock: &Path, names: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    names
        .iter()
        .filter_map(|n| {
            v["packages"][format!("node_modules/{n}")]["version"]
                .as_str()
                .map(|ver| format!("{n} {ver}"))
        })
        .collect()
}

fn machine(env: &Env) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut versions = lock_versions(
        &env.root.join("Cargo.lock"),
        &[
            "tokio",
            "tokio-tungstenite",
            "tungstenite",
            "async-std",
            "async-tungstenite",
        ],
    );
    versions.sort();
    versions.dedup();
    let mut others = lock_versions(
        &env.root.join("bench/others/Cargo.lock"),
        &["phoenix_channels_client", "phyllo", "tokio-tungstenite"],
    );
    others.sort();
    others.dedup();
    let js = npm_versions(
        &env.root.join("tests/js/package-lock.json"),
        &["phoenix", "ws"],
    );
    format!(
        "- CPU: {cpu}, {cores} cores, {mem} memory; Linux {}\n- {}; node {}\n\
         - phx {} with {}\n- phoenix.js: {}\n- other Rust clients (bench/others/Cargo.lock): {}\n",
        kernel.trim(),
        first_line_of("rustc", &["-V"]),
        first_line_of("node", &["--version"]),
        env!("CARGO_PKG_VERSION"),
        versions.join(", "),
        js.join(", "),
        if others.is_empty() {
            "not built".into()
        } else {
            others.join(", ")
        },
    )
}

fn command_line(cli: &Cli) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = cli;
    if args.is_empty() {
        "cargo run --release -p phx-bench".into()
    } else {
        format!("cargo run --release -p phx-bench -- {}", args.join(" "))
    }
}

fn main() {
    let mut cli = Cli::parse();
    if let Some(Worker::Worker {
        kind,
        url,
        n,
        binary,
        inflight,
        channels,
    }) = &cli.worker
    {
        run_worker(kind, url, *n, *binary, *inflight, *channels);
    }
    if cli.quick {
        cli.frames = cli.frames.min(100_000);
        cli.pushes = cli.pushes.min(10_000);
        cli.channels = cli.channels.min(1_000);
        cli.sockets = cli.sockets.min(1_000);
        cli.runs = 1;
    }
    let env = prepare(&cli);
    let server = Server::start(&env.bin_dir);
    let bench = Bench {
        cli: &cli,
        env: &env,
        url: server.url(),
    };
    eprintln!("load average before: {}", load_average());
    let mut runs = Vec::new();
    for i in 1..=cli.runs {
        eprintln!("== run {i} of {}", cli.runs);
        let run = bench.run();
        print_run(i, &run);
        runs.push(run);
    }
    drop(server);
    let write = !cli.no_write && (!cli.quick || cli.out.is_some());
    if write {
        let out = cli
            .out
            .clone()
            .unwrap_or_else(|| env.root.join("BENCHMARKS.md"));
        let chart_dir = out.parent().unwrap_or(Path::new(".")).join("bench/results");
        let _ = std::fs::create_dir_all(&chart_dir);
        let mut md = markdown_head(&cli, &env);
        for (i, run) in runs.iter().enumerate() {
            let chart = format!("throughput-run{}.svg", i + 1);
            let title = format!(
                "Receive throughput, {} broadcasts of ~100 B (run {})",
                cli.frames,
                i + 1
            );
            let _ = std::fs::write(chart_dir.join(&chart), report::svg_chart(run, &title));
            md.push_str(&run_markdown(i + 1, run, &format!("bench/results/{chart}")));
        }
        std::fs::write(&out, md).expect("write the report");
        eprintln!("wrote {}", out.display());
    }
}

fn print_run(i: usize, run: &Run) {
    println!(
        "\n== run {i}: {:.0} s, load average {} → {}\n",
        run.secs, run.load.0, run.load.1
    );
    println!("{}", report::recv_table(run));
    println!("{}", report::lat_table(run));
    println!("{}", report::scale_table(run));
    println!("{}", report::checks_table(run));
}

fn markdown_head(cli: &Cli, env: &Env) -> String {
    format!(
        "# Benchmarks\n\n\
         Written by `phx-bench` (the `bench/` crate); every figure below comes from the run it \
         describes. Re-run with:\n\n```sh\n{}\n```\n\n\
         ## Machine and versions\n\n{}\n\
         ## Workloads\n\n\
         The bench server (`phx-bench-server`) runs in its own process on one runtime thread. \
         A flood writes one buffer of {} pre-encoded WebSocket frames (built once) to the TCP \
         stream again and again, so the server is never the client's bottleneck. Every client \
         runs in a process of its own, on its runtime's default (multi-threaded) scheduler.\n\n\
         - **Receive throughput**: the client joins `bench:0` and asks for {} broadcasts \
         (event `msg`, a {}-byte JSON payload, or 100 bytes in a V2 binary frame); the time \
         from the request to the last broadcast read; median of {} repeats, with the slowest and \
         fastest in brackets. (a) only counts \
         WebSocket frames; (a') also decodes every envelope (borrowed topic and event, payload \
         left as raw JSON, its end found by a structural skip); phx reads `channel.messages()` \
         and each payload's bytes; the other clients use their own subscription API. A client \
         that drops messages (a full queue) shows how many it lost: phx reports them in the \
         stream as `Lagged(n)`, phyllo as broadcast lag, and phoenix_channels_client drops them \
         silently (lost = sent − received).\n\
         - **Latency**: {} `ping` pushes answered by the server with the payload, one at a \
         time and {} in flight, the run with the median p99 of {} repeats; the raw baseline sends \
         the same frame to an echo endpoint. Every \
         client drives its pushes from the main task (`block_on`, as `#[tokio::main]` code \
         does); the rows marked \"in a spawned task\" run the same code in a task on tokio's \
         workers (`tokio::spawn`, as a server's code does), where a task woken by the driver \
         runs on the driver's worker, and are compared with the echo run the same way.\n\
         - **Scale**: {} channels joined on one socket (all joins issued at once; heap counted \
         by a counting allocator, channel handles held); receive throughput with that many \
         channels joined against one; {} phx-tokio sockets with one channel each in one process \
         (RSS from /proc/self/status).\n\n\
         Ratios divide a client's figure by (a) or (a') of the same run. Repeats run in \
         rounds: each round runs every client once (starting one client further on each \
         time), so a change in the machine's background load falls on all clients alike rather \
         than on whichever ran then. The machine is shared: the load average at the start and \
         end of each run is shown with it.\n\n",
        command_line(cli),
        machine(env),
        phx_bench::server::FLOOD_CHUNK,
        cli.frames,
        phx_bench::server::FLOOD_JSON.len(),
        cli.recv_repeat,
        cli.pushes,
        cli.inflight,
        cli.repeat,
        cli.channels,
        cli.sockets,
    )
}

fn run_markdown(i: usize, run: &Run, chart: &str) -> String {
    format!(
        "## Run {i}\n\n{:.0} s; load average {} at the start, {} at the end.\n\n\
         ### Receive throughput\n\n![receive throughput, run {i}]({chart})\n\n{}\n\
         ### Push → reply latency\n\n{}\n### Scale\n\n{}\n### Targets\n\n{}\n",
        run.secs,
        run.load.0,
        run.load.1,
        report::recv_table(run),
        report::lat_table(run),
        report::scale_table(run),
        report::checks_table(run),
    )
}

#[cfg(test)]
mod tests {
    use super::error_summary;

    #[test]
    fn a_panic_is_summed_up_by_its_message_and_file() {
        let stderr = "\nthread 'main' (12362) panicked at /root/.cargo/registry/src/x/tokio-1.54.1/src/sync/oneshot.rs:1291:13:\ncalled after complete\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            error_summary(stderr),
            "panicked: called after complete (oneshot.rs:1291:13)"
        );
    }
}
