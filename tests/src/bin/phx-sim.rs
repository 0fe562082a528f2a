//! Runs the deterministic simulation (`phx_tests::sim`) over as many seeds as asked: the long
//! soak that complements the 2,000 seeds of `cargo test`.
//!
//! ```text
//! cargo run --release -p phx-tests --bin phx-sim -- --seeds 100000 [--start N] [--threads T]
//! cargo run --release -p phx-tests --bin phx-sim -- --seed S --trace
//! ```
//!
//! Prints the rate in seeds per second, and every failure with the command that replays it.
//! Exits with status 1 if any seed failed.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phx_tests::sim::{self, RunReport, RunStats};

const USAGE: &str = "usage: phx-sim [--seeds N] [--start S] [--threads T] [--max-failures F]
       phx-sim --seed S [--trace]
  --seeds N         how many seeds to run (default 10000)
  --start S         first seed (default 0)
  --threads T       worker threads (default: every core)
  --max-failures F  stop after F failing seeds (default 10; 1 stops at the first)
  --seed S          run one seed
  --trace           with --seed: print the seed's transcript";

struct Args {
    seeds: u64,
    start: u64,
    threads: usize,
    max_failures: usize,
    one: Option<u64>,
    trace: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        seeds: 10_000,
        start: 0,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_failures: 10,
        one: None,
        trace: false,
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seeds" => a.seeds = num("--seeds", args.next())?,
            "--start" => a.start = num("--start", args.next())?,
            "--threads" => a.threads = num::<usize>("--threads", args.next())?.max(1),
            "--max-failures" => {
                a.max_failures = num::<usize>("--max-failures", args.next())?.max(1)
            }
            "--seed" => a.one = Some(num("--seed", args.next())?),
            "--trace" => a.trace = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(a)
}

fn print_failure(r: &RunReport) {
    if let Err(f) = &r.result {
        eprintln!("FAIL {f}");
        eprintln!(
            "      or: cargo run --release -p phx-tests --bin phx-sim -- --seed {} --trace",
            r.seed
        );
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("phx-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.one {
        let report = sim::run_seed(seed, args.trace);
        if let Some(t) = &report.transcript {
            print!("{t}");
        }
        return match &report.result {
            Ok(()) => {
                println!(
                    "seed {seed}: ok ({:?} of virtual time, {:?})",
                    report.elapsed, report.stats
                );
                ExitCode::SUCCESS
            }
            Err(_) => {
                print_failure(&report);
                ExitCode::FAILURE
            }
        };
    }

    let next = AtomicU64::new(args.start);
    let end = args.start.saturating_add(args.seeds);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let totals = Mutex::new((Duration::ZERO, RunStats::default()));
    // Wall time, only to report the rate; runs never read it.
    let began = Instant::now();
    println!(
        "phx-sim: seeds {}..{end} on {} thread(s)",
        args.start, args.threads
    );
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let report = sim::run_seed(seed, false);
                    if let Ok(mut t) = totals.lock() {
                        t.0 += report.elapsed;
                        let s = &mut t.1;
                        s.steps += report.stats.steps;
                        s.faults += report.stats.faults;
                        s.hostile_frames += report.stats.hostile_frames;
                        s.pushes += report.stats.pushes;
                        s.connections += report.stats.connections;
                        // The slowest heal, relative to its bound.
                        let ratio = |st: &RunStats| {
                            st.heal_time.as_secs_f64() / st.heal_bound.as_secs_f64().max(1e-9)
                        };
                        if ratio(&report.stats) > ratio(s) {
                            s.heal_time = report.stats.heal_time;
                            s.heal_bound = report.stats.heal_bound;
                        }
                    }
                    if report.result.is_err() {
                        print_failure(&report);
                        let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                        f.push(report);
                        if f.len() >= args.max_failures {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Progress, every ten seconds.
        scope.spawn(|| {
            let mut last = Instant::now();
            while done.load(Ordering::Relaxed) + args.start < end && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    let n = done.load(Ordering::Relaxed);
                    println!(
                        "  {n} seeds, {:.0} seeds/s",
                        n as f64 / began.elapsed().as_secs_f64()
                    );
                }
            }
        });
    });
    let took = began.elapsed();
    let n = done.load(Ordering::Relaxed);
    let (simulated, t) = totals.into_inner().unwrap_or_default();
    println!(
        "{n} seeds in {took:.1?}: {:.0} seeds/s ({:.0} h of virtual time)",
        n as f64 / took.as_secs_f64(),
        simulated.as_secs_f64() / 3600.0
    );
    println!(
        "  {} steps, {} faults, {} forged frames, {} pushes, {} connections opened",
        t.steps, t.faults, t.hostile_frames, t.pushes, t.connections
    );
    println!(
        "  slowest heal: every channel joined {:.1?} after the heal, bound {:.1?}",
        t.heal_time, t.heal_bound
    );
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|r| r.seed);
    match failures.first() {
        None => ExitCode::SUCCESS,
        Some(first) => {
            let seeds: Vec<u64> = failures.iter().map(|r| r.seed).collect();
            println!(
                "{} failing seed(s): {seeds:?}; first: {} (seed #{} of the run)",
                seeds.len(),
                first.seed,
                first.seed - args.start + 1
            );
            ExitCode::FAILURE
        }
    }
}
