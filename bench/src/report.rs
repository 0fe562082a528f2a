//! Figures of one benchmark run, the tables printed and written to `BENCHMARKS.md`, the target
//! checks, and the SVG chart.

use std::fmt::Write as _;

/// A measurement, or why there is none.
pub type Outcome<T> = Result<T, String>;

/// A receive-throughput figure.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    /// Broadcasts delivered per second (median of the repeats that completed).
    pub fps: f64,
    /// Broadcasts the client dropped (reported as lag) in the median repeat.
    pub lagged: u64,
    /// Repeats run.
    pub runs: usize,
    /// The slowest and fastest of the repeats that completed, when more than one did: a
    /// median far from either shows a machine that changed speed during the run.
    pub spread: Option<(f64, f64)>,
    /// Why each repeat that did not complete failed (a client crashing now and then still
    /// gets its figure, with the crashes shown beside it).
    pub failures: Vec<String>,
}

/// One client's receive throughput, text and binary.
#[derive(Debug, Clone)]
pub struct RecvRow {
    /// Short label: a, a', b...
    pub id: String,
    /// What the client is.
    pub name: String,
    /// V2 JSON text frames.
    pub json: Outcome<Rate>,
    /// V2 binary frames.
    pub binary: Outcome<Rate>,
}

/// Push → reply round-trip percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Lat {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// One client's latency, sequential and with pushes in flight.
#[derive(Debug, Clone)]
pub struct LatRow {
    /// Short label.
    pub id: String,
    /// What the client is.
    pub name: String,
    /// One push at a time.
    pub seq: Outcome<Lat>,
    /// `inflight` pushes outstanding.
    pub par: Outcome<Lat>,
}

/// Scale figures (phx-tokio).
#[derive(Debug, Clone)]
pub struct Scale {
    /// Channels joined on one socket.
    pub channels: usize,
    /// Time to join them all, and heap per joined channel.
    pub join: Outcome<(f64, f64)>,
    /// Receive throughput (JSON) with 1 channel joined and with `channels` joined.
    pub route: (Outcome<Rate>, Outcome<Rate>),
    /// Sockets opened in one process.
    pub sockets: usize,
    /// RSS and heap per idle socket (one joined channel each), and the read buffer used.
    pub per_socket: Outcome<(f64, f64, usize)>,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Receive throughput per client.
    pub recv: Vec<RecvRow>,
    /// Latency per client.
    pub lat: Vec<LatRow>,
    /// Scale figures.
    pub scale: Scale,
    /// Pushes in flight in the concurrent latency workload.
    pub inflight: usize,
    /// Load average (1 min) at the start and the end of the run.
    pub load: (String, String),
    /// Wall time of the run, seconds.
    pub secs: f64,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// An error message fit for a table cell: one line, no cell separators, at most 90
/// characters.
fn short(e: &str) -> String {
    let e = e.replace('|', "¦");
    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
    let e = e.trim();
    if e.chars().count() > 90 {
        format!("{}…", e.chars().take(90).collect::<String>())
    } else {
        e.to_owned()
    }
}

fn rate_cells(r: &Outcome<Rate>, a: Option<f64>, a2: Option<f64>) -> [String; 3] {
    match r {
        Ok(rate) => {
            let ratio =
                |base: Option<f64>| base.map_or("–".into(), |b| format!("{:.2}", rate.fps / b));
            let lag = if rate.lagged > 0 {
                format!(" ({} lost)", rate.lagged)
            } else {
                String::new()
            };
            let failed = match rate.failures.first() {
                Some(why) => format!(
                    " ({} of {} runs failed: {})",
                    rate.failures.len(),
                    rate.runs,
                    short(why)
                ),
                None => String::new(),
            };
            let spread = match rate.spread {
                Some((lo, hi)) => format!(" [{}–{}]", si(lo), si(hi)),
                None => String::new(),
            };
            [
                format!("{}/s{spread}{lag}{failed}", si(rate.fps)),
                ratio(a),
                ratio(a2),
            ]
        }
        Err(e) => [format!("failed: {}", short(e)), "–".into(), "–".into()],
    }
}

fn fps(rows: &[RecvRow], id: &str, binary: bool) -> Option<f64> {
    let row = rows.iter().find(|r| r.id == id)?;
    let r = if binary { &row.binary } else { &row.json };
    r.as_ref().ok().map(|r| r.fps)
}

/// The receive-throughput table (markdown).
pub fn recv_table(run: &Run) -> String {
    let mut s = String::from(
        "| | client | V2 JSON | ÷ (a) | ÷ (a') | V2 binary | ÷ (a) | ÷ (a') |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &run.recv {
        let j = rate_cells(
            &row.json,
            fps(&run.recv, "a", false),
            fps(&run.recv, "a'", false),
        );
        let b = rate_cells(
            &row.binary,
            fps(&run.recv, "a", true),
            fps(&run.recv, "a'", true),
        );
        let _ = writeln!(
            s,
            "| ({}) | {} | {} | {} | {} | {} | {} | {} |",
            row.id, row.name, j[0], j[1], j[2], b[0], b[1], b[2]
        );
    }
    s
}

fn lat_cells(l: &Outcome<Lat>) -> String {
    match l {
        Ok(l) => format!("{:.0} / {:.0} / {:.0}", l.p50, l.p99, l.p999),
        Err(e) => format!("failed: {}", short(e)),
    }
}

/// The echo row a latency row is compared with: the one run the same way (in `block_on`, or
/// in a spawned task).
fn echo_for(id: &str) -> &'static str {
    if id.ends_with("-task") {
        "echo-task"
    } else {
        "echo"
    }
}

fn p99_of(rows: &[LatRow], id: &str, par: bool) -> Option<f64> {
    let row = rows.iter().find(|r| r.id == id)?;
    let l = if par { &row.par } else { &row.seq };
    l.as_ref().ok().map(|l| l.p99)
}

/// The latency table (markdown).
pub fn lat_table(run: &Run) -> String {
    let mut s = format!(
        "| | client | sequential p50 / p99 / p99.9 (µs) | p99 ÷ echo | {} in flight p50 / p99 / p99.9 (µs) | p99 ÷ echo |\n|---|---|---:|---:|---:|---:|\n",
        run.inflight
    );
    for row in &run.lat {
        let ratio = |par: bool| match (
            p99_of(&run.lat, &row.id, par),
            p99_of(&run.lat, echo_for(&row.id), par),
        ) {
            (Some(x), Some(e)) => format!("{:.2}", x / e),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| ({}) | {} | {} | {} | {} | {} |",
            row.id,
            row.name,
            lat_cells(&row.seq),
            ratio(false),
            lat_cells(&row.par),
            ratio(true)
        );
    }
    s
}

/// The scale table (markdown).
pub fn scale_table(run: &Run) -> String {
    let sc = &run.scale;
    let mut s = String::from("| phx-tokio | figure |\n|---|---:|\n");
    match &sc.join {
        Ok((secs, heap)) => {
            let _ = writeln!(
                s,
                "| join {} channels on one socket | {:.3} s |",
                sc.channels, secs
            );
            let _ = writeln!(s, "| client heap per joined channel | {heap:.0} B |");
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "| join {} channels | failed: {} |",
                sc.channels,
                short(e)
            );
        }
    }
    let route = |r: &Outcome<Rate>| match r {
        Ok(r) => format!("{}/s", si(r.fps)),
        Err(e) => format!("failed: {}", short(e)),
    };
    let _ = writeln!(
        s,
        "| receive throughput, 1 channel joined | {} |",
        route(&sc.route.0)
    );
    let _ = writeln!(
        s,
        "| receive throughput, {} channels joined | {} |",
        sc.channels,
        route(&sc.route.1)
    );
    match &sc.per_socket {
        Ok((rss, heap, rb)) => {
            let _ = writeln!(
                s,
                "| RSS per idle socket ({} sockets, one channel each, read buffer {}) | {:.1} KiB |",
                sc.sockets,
                if *rb == 0 {
                    "default".to_string()
                } else {
                    format!("{rb} B")
                },
                rss / 1024.0
            );
            let _ = writeln!(s, "| heap per idle socket | {:.1} KiB |", heap / 1024.0);
        }
        Err(e) => {
            let _ = writeln!(s, "| {} sockets | failed: {} |", sc.sockets, short(e));
        }
    }
    s
}

/// One target: what, the figure, and whether it was met.
#[derive(Debug, Clone)]
pub struct Check {
    /// The target.
    pub target: String,
    /// The measured figure.
    pub figure: String,
    /// Met, missed, or not measured (`None`).
    pub met: Option<bool>,
}

/// Checks the targets against a run.
pub fn checks(run: &Run) -> Vec<Check> {
    let mut out = Vec::new();
    fn ratio_check(
        out: &mut Vec<Check>,
        target: &str,
        x: Option<f64>,
        base: Option<f64>,
        ok: &dyn Fn(f64) -> bool,
    ) {
        let (figure, met) = match (x, base) {
            (Some(x), Some(b)) if b > 0.0 => (format!("{:.2}x", x / b), Some(ok(x / b))),
            _ => ("not measured".into(), None),
        };
        out.push(Check {
            target: target.into(),
            figure,
            met,
        });
    }
    for (binary, kind) in [(false, "JSON"), (true, "binary")] {
        let b = fps(&run.recv, "b", binary);
        ratio_check(
            &mut out,
            &format!("phx-tokio ≥ 0.75 × (a') ({kind})"),
            b,
            fps(&run.recv, "a'", binary),
            &|r| r >= 0.75,
        );
        ratio_check(
            &mut out,
            &format!("phx-tokio ≥ 3 × phoenix.js ({kind})"),
            b,
            fps(&run.recv, "d", binary),
            &|r| r >= 3.0,
        );
        ratio_check(
            &mut out,
            &format!("phx-async-std within 20% of phx-tokio ({kind})"),
            fps(&run.recv, "c", binary),
            b,
            &|r| r >= 0.8,
        );
    }
    let others: Vec<&RecvRow> = run.recv.iter().filter(|r| r.id.starts_with('e')).collect();
    for o in others {
        let other = o.json.as_ref().ok().map(|r| r.fps);
        let b = fps(&run.recv, "b", false);
        let (figure, met) = match (b, other, &o.json) {
            (Some(b), Some(x), _) => (format!("{:.1}x", b / x), Some(b > x)),
            (Some(_), None, Err(e)) => (format!("{} did not run: {}", o.name, short(e)), None),
            _ => ("not measured".into(), None),
        };
        out.push(Check {
            target: format!("phx-tokio ahead of {} (JSON)", o.name),
            figure,
            met,
        });
    }
    for (par, mode) in [(false, "sequential"), (true, "in flight")] {
        for (id, name) in [
            ("b", "phx-tokio"),
            ("c", "phx-async-std"),
            ("b-task", "phx-tokio in a spawned task"),
        ] {
            let echo = if echo_for(id) == "echo-task" {
                "raw echo in a spawned task"
            } else {
                "raw echo"
            };
            ratio_check(
                &mut out,
                &format!("{name} p99 ≤ 1.5 × {echo} p99 ({mode})"),
                p99_of(&run.lat, id, par),
                p99_of(&run.lat, echo_for(id), par),
                &|r| r <= 1.5,
            );
        }
    }
    let sc = &run.scale;
    let (r1, rn) = (
        sc.route.0.as_ref().ok().map(|r| r.fps),
        sc.route.1.as_ref().ok().map(|r| r.fps),
    );
    ratio_check(
        &mut out,
        &format!(
            "routing flat: throughput with {} channels ≥ 0.9 × with 1",
            sc.channels
        ),
        rn,
        r1,
        &|r| r >= 0.9,
    );
    let (figure, met) = match &sc.join {
        Ok((_, heap)) => (format!("{heap:.0} B"), Some(*heap < 512.0)),
        Err(e) => (short(e), None),
    };
    out.push(Check {
        target: "heap per idle channel < 512 B".into(),
        figure,
        met,
    });
    let (figure, met) = match &sc.per_socket {
        Ok((rss, _, _)) => (
            format!("{:.1} KiB", rss / 1024.0),
            Some(*rss < 48.0 * 1024.0),
        ),
        Err(e) => (short(e), None),
    };
    out.push(Check {
        target: "RSS per idle socket < 48 KiB".into(),
        figure,
        met,
    });
    out
}

/// The target table (markdown).
pub fn checks_table(run: &Run) -> String {
    let mut s = String::from("| target | measured | |\n|---|---:|---|\n");
    for c in checks(run) {
        let verdict = match c.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {} |", c.target, c.figure, verdict);
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of receive throughput (JSON and binary) per client.
pub fn svg_chart(run: &Run, title: &str) -> String {
    let rows: Vec<(&RecvRow, f64, f64)> = run
        .recv
        .iter()
        .map(|r| {
            let f = |o: &Outcome<Rate>| o.as_ref().map_or(0.0, |r| r.fps);
            (r, f(&r.json), f(&r.binary))
        })
        .collect();
    let max = rows
        .iter()
        .map(|(_, j, b)| j.max(*b))
        .fold(1.0f64, f64::max);
    let (label_w, bar_w, row_h, top) = (330.0, 520.0, 46.0, 56.0);
    let height = top + rows.len() as f64 * row_h + 30.0;
    let width = label_w + bar_w + 110.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <rect x=\"{label_w}\" y=\"32\" width=\"12\" height=\"12\" fill=\"#3b6fb6\"/><text x=\"{}\" y=\"43\">V2 JSON</text>\n\
         <rect x=\"{}\" y=\"32\" width=\"12\" height=\"12\" fill=\"#e0913a\"/><text x=\"{}\" y=\"43\">V2 binary</text>\n",
        esc(title),
        label_w + 16.0,
        label_w + 100.0,
        label_w + 116.0
    );
    for (i, (row, j, b)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{}\">({}) {}</text>",
            y + 24.0,
            esc(&row.id),
            esc(&row.name)
        );
        for (k, (v, color)) in [(j, "#3b6fb6"), (b, "#e0913a")].into_iter().enumerate() {
            let by = y + 4.0 + k as f64 * 18.0;
            let w = (v / max * bar_w).max(1.0);
            let label = if *v > 0.0 {
                format!("{}/s", si(*v))
            } else {
                "n/a".into()
            };
            let _ = writeln!(
                s,
                "<rect x=\"{label_w}\" y=\"{by}\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\">{label}</text>",
                label_w + w + 6.0,
                by + 13.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(fps: f64) -> Outcome<Rate> {
        Ok(Rate {
            fps,
            ..Rate::default()
        })
    }

    #[test]
    fn a_figure_shows_the_runs_that_failed_beside_it() {
        let r = Ok(Rate {
            fps: 191_000.0,
            lagged: 5,
            runs: 3,
            spread: Some((190_000.0, 2_500_000.0)),
            failures: vec!["panicked: called after complete (oneshot.rs:1291:13)".into()],
        });
        let [cell, ratio, _] = rate_cells(&r, Some(1_910_000.0), None);
        assert_eq!(
            cell,
            "191k/s [190k–2.50M] (5 lost) (1 of 3 runs failed: panicked: called after complete (oneshot.rs:1291:13))"
        );
        assert_eq!(ratio, "0.10");
    }

    #[test]
    fn ratios_and_targets_come_from_the_figures() {
        let row = |id: &str, fps: f64| RecvRow {
            id: id.into(),
            name: id.into(),
            json: rate(fps),
            binary: rate(fps),
        };
        let lat = |id: &str, p99: f64| LatRow {
            id: id.into(),
            name: id.into(),
            seq: Ok(Lat {
                p50: 1.0,
                p99,
                p999: p99,
            }),
            par: Ok(Lat {
                p50: 1.0,
                p99,
                p999: p99,
            }),
        };
        let run = Run {
            recv: vec![
                row("a", 8.0),
                row("a'", 4.0),
                row("b", 3.2),
                row("c", 3.0),
                row("d", 1.0),
            ],
            lat: vec![
                lat("echo", 10.0),
                lat("b", 14.0),
                lat("c", 16.0),
                lat("echo-task", 2.0),
                lat("b-task", 5.0),
            ],
            scale: Scale {
                channels: 10,
                join: Ok((0.1, 300.0)),
                route: (rate(3.0), rate(2.9)),
                sockets: 10,
                per_socket: Ok((40.0 * 1024.0, 1.0, 0)),
            },
            inflight: 100,
            load: ("0".into(), "0".into()),
            secs: 1.0,
        };
        let table = recv_table(&run);
        assert!(table.contains("| (b) | b | 3/s | 0.40 | 0.80 |"), "{table}");
        let checks = checks(&run);
        let get = |t: &str| checks.iter().find(|c| c.target.starts_with(t)).unwrap().met;
        assert_eq!(get("phx-tokio ≥ 0.75"), Some(true));
        assert_eq!(get("phx-tokio ≥ 3"), Some(true));
        assert_eq!(get("phx-async-std within"), Some(true));
        assert_eq!(get("phx-tokio p99"), Some(true));
        assert_eq!(get("phx-async-std p99"), Some(false));
        // Compared with the echo run the same way (2.5 ×), not with the `block_on` one.
        assert_eq!(get("phx-tokio in a spawned task p99"), Some(false));
        assert!(lat_table(&run).contains("| (b-task) | b-task | 1 / 5 / 5 | 2.50 |"));
        assert_eq!(get("RSS"), Some(true));
        assert!(svg_chart(&run, "t").starts_with("<svg"));
    }
}
