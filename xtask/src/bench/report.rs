//! From runs to figures: medians and spreads over rounds, the Markdown tables
//! and the JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::columns::{Column, Measured};
use super::kernel::ProgStat;
use super::worker::{Pinning, WorkerResult, Workload};

/// One run of one column in one round.
pub struct Run {
    pub column: Column,
    pub round: u32,
    pub result: Result<(WorkerResult, Measured), String>,
}

/// The runs of one (workload, pinning).
pub struct Row {
    pub workload: Workload,
    pub pinning: Pinning,
    pub columns: Vec<Column>,
    pub runs: Vec<Run>,
    /// Columns that did not run at all here, with why.
    pub missing: BTreeMap<Column, String>,
}

/// Median, min and max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

pub fn spread(values: &[f64]) -> Option<Spread> {
    let median = median(values)?;
    let finite = values.iter().copied().filter(|x| x.is_finite());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.fold(f64::NEG_INFINITY, f64::max);
    Some(Spread { median, min, max })
}

/// Per-round ratios traced/untraced of the rounds where both ran.
pub fn pair_ratios(untraced: &BTreeMap<u32, f64>, traced: &BTreeMap<u32, f64>) -> Vec<f64> {
    traced.iter().filter_map(|(r, t)| untraced.get(r).filter(|u| **u > 0.0).map(|u| t / u)).collect()
}

/// A column's figures over the rounds of a row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub rounds: usize,
    pub rounds_ok: usize,
    /// Median ops/s.
    pub rate: Option<f64>,
    pub ratio: Option<Spread>,
    pub delivered: u64,
    pub made: u64,
    /// Lines (records) the tracer wrote: every event it saw on the host.
    pub lines: u64,
    pub lost: Option<u64>,
    pub missed: u64,
    /// Totals over the rounds of the tracer's programs' run time and run count.
    pub kernel_ns: Option<(u64, u64)>,
    /// Total CPU ns by process role.
    pub cpu: Vec<(&'static str, u64)>,
    /// Medians over rounds: tree p50, tree p99, socket p50, socket p99 (ms).
    pub latency: Option<[Option<f64>; 4]>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    pub missing: Option<String>,
}

impl Summary {
    pub fn kernel_per_run(&self) -> Option<f64> {
        self.kernel_ns.filter(|(_, c)| *c > 0).map(|(t, c)| t as f64 / c as f64)
    }

    pub fn kernel_per_event(&self) -> Option<f64> {
        self.kernel_ns.filter(|_| self.delivered > 0).map(|(t, _)| t as f64 / self.delivered as f64)
    }

    pub fn cpu_per_event(&self) -> Vec<(&'static str, Option<f64>)> {
        self.cpu_per(self.delivered)
    }

    pub fn cpu_per_line(&self) -> Vec<(&'static str, Option<f64>)> {
        self.cpu_per(self.lines)
    }

    fn cpu_per(&self, n: u64) -> Vec<(&'static str, Option<f64>)> {
        self.cpu.iter().map(|(r, ns)| (*r, (n > 0).then(|| *ns as f64 / n as f64))).collect()
    }
}

fn latency_of(v: &Value) -> [Option<f64>; 4] {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
    [f("/tree/p50_ms"), f("/tree/p99_ms"), f("/socket/p50_ms"), f("/socket/p99_ms")]
}

fn rates(row: &Row, column: Column) -> BTreeMap<u32, f64> {
    row.runs
        .iter()
        .filter(|r| r.column == column)
        .filter_map(|r| r.result.as_ref().ok().map(|(w, _)| (r.round, w.rate())))
        .collect()
}

pub fn summarize(row: &Row, column: Column) -> Summary {
    let mut s = Summary { missing: row.missing.get(&column).cloned(), ..Summary::default() };
    let untraced = rates(row, Column::Untraced);
    let mine = rates(row, column);
    s.rate = median(&mine.values().copied().collect::<Vec<_>>());
    if column != Column::Untraced {
        s.ratio = spread(&pair_ratios(&untraced, &mine));
    }
    let mut lat: [Vec<f64>; 4] = Default::default();
    for run in row.runs.iter().filter(|r| r.column == column) {
        s.rounds += 1;
        let (w, m) = match &run.result {
            Ok(ok) => ok,
            Err(e) => {
                s.errors.push(format!("round {}: {e}", run.round));
                continue;
            }
        };
        s.rounds_ok += 1;
        s.made += w.ops * row.workload.events_per_op();
        s.delivered += m.delivery.delivered();
        s.lines += m.delivery.lines;
        s.missed += m.delivery.missed;
        if let Some(l) = m.lost {
            s.lost = Some(s.lost.unwrap_or(0) + l);
        }
        if let Some(progs) = &m.progs {
            let (t, c) = s.kernel_ns.unwrap_or((0, 0));
            s.kernel_ns = Some((
                t + progs.iter().map(|p| p.run_time_ns).sum::<u64>(),
                c + progs.iter().map(|p| p.run_cnt).sum::<u64>(),
            ));
        }
        for (role, ns) in &m.cpu {
            match s.cpu.iter_mut().find(|(r, _)| r == role) {
                Some((_, total)) => *total += ns,
                None => s.cpu.push((role, *ns)),
            }
        }
        if let Some(v) = &m.latency {
            for (all, x) in lat.iter_mut().zip(latency_of(v)) {
                all.extend(x);
            }
        }
        s.notes.extend(m.notes.iter().map(|n| format!("round {}: {n}", run.round)));
    }
    if column == Column::Daemon && lat.iter().any(|v| !v.is_empty()) {
        s.latency = Some([median(&lat[0]), median(&lat[1]), median(&lat[2]), median(&lat[3])]);
    }
    s
}

// -------------------------------------------------------------- formatting ----

/// An integer with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn round_ns(x: f64) -> String {
    thousands(x.round() as u64)
}

fn ms(x: Option<f64>) -> String {
    x.map_or("?".into(), |v| if v < 10.0 { format!("{v:.2}") } else { format!("{v:.1}") })
}

/// Escapes what would break a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub const TABLE_HEAD: &str = "| tracer | ops/s | traced/untraced (min–max) | events delivered/made | lost | kernel ns per run; per event | user CPU ns per event (per line) | latency p50/p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---|\n";

/// One table row of a column's summary.
pub fn table_row(column: Column, s: &Summary) -> String {
    let name = column.label();
    if s.rounds_ok == 0 {
        let why = s.missing.clone().or_else(|| s.errors.first().map(|e| format!("failed: {e}")));
        return format!("| {name} | {} | | | | | | |\n", cell(&why.unwrap_or_else(|| "missing: did not run".into())));
    }
    let rate = s.rate.map_or("?".into(), |r| thousands(r.round() as u64));
    if column == Column::Untraced {
        return format!("| {name} | {rate} | 1 | - | - | - | - | - |\n");
    }
    let ratio = s.ratio.map_or("?".into(), |r| format!("{:.3} ({:.3}–{:.3})", r.median, r.min, r.max));
    let pct = if s.made > 0 { 100.0 * s.delivered as f64 / s.made as f64 } else { f64::NAN };
    let events = format!("{} / {} ({pct:.2}%)", thousands(s.delivered), thousands(s.made));
    let mut lost = s.lost.map_or("?".into(), thousands);
    if s.missed > 0 {
        lost.push_str(&format!(" (+{} missed by the subscriber)", thousands(s.missed)));
    }
    let kernel = match (column.uses_bpf(), s.kernel_per_run()) {
        (false, _) => "-".to_owned(),
        (true, None) => "?".to_owned(),
        (true, Some(run)) => {
            format!("{}; {}", round_ns(run), s.kernel_per_event().map_or("?".into(), round_ns))
        }
    };
    let cpu = cpu_cell(s, kernel_tick_ns());
    let latency = match s.latency {
        Some([t50, t99, s50, s99]) => {
            format!("tree {}/{}, socket {}/{}", ms(t50), ms(t99), ms(s50), ms(s99))
        }
        None => "-".into(),
    };
    format!("| {name} | {rate} | {ratio} | {events} | {lost} | {kernel} | {cpu} | {latency} |\n")
}

fn kernel_tick_ns() -> u64 {
    1_000_000_000 / super::kernel::clock_ticks_per_s()
}

/// CPU ns per event delivered by role, then per line written: `daemon A +
/// subscriber B (C + D/line)`. A process that used less than a clock tick
/// over all rounds shows `<` what one tick per round would be.
fn cpu_cell(s: &Summary, tick_ns: u64) -> String {
    let fmt = |per: Vec<(&'static str, Option<f64>)>, n: u64| -> Vec<String> {
        per.iter()
            .zip(&s.cpu)
            .map(|((_, v), (_, total))| match v {
                None => "?".to_owned(),
                Some(_) if *total == 0 && n > 0 => {
                    format!("<{}", round_ns((tick_ns * s.rounds_ok as u64) as f64 / n as f64))
                }
                Some(v) => round_ns(*v),
            })
            .collect()
    };
    let per_event = fmt(s.cpu_per_event(), s.delivered);
    let per_line = fmt(s.cpu_per_line(), s.lines);
    let first: Vec<String> = if s.cpu.len() > 1 {
        s.cpu.iter().zip(&per_event).map(|((role, _), v)| format!("{role} {v}")).collect()
    } else {
        per_event
    };
    format!("{} ({}/line)", first.join(" + "), per_line.join(" + "))
}

/// The table of one row, with its heading and footnotes.
pub fn table(row: &Row, rounds: u32) -> String {
    let mut out =
        format!("### {}, {} ({})\n\n{TABLE_HEAD}", row.workload.name(), row.pinning.name(), row.workload.describe());
    let mut notes = Vec::new();
    for &c in &row.columns {
        let s = summarize(row, c);
        out.push_str(&table_row(c, &s));
        if s.rounds_ok > 0 && !s.errors.is_empty() {
            notes.push(format!("{}: {} of {rounds} rounds failed: {}", c.label(), s.errors.len(), s.errors.join("; ")));
        }
        if s.delivered > s.made && c != Column::Untraced {
            notes.push(format!(
                "{}: {} more of the worker's events than it made (duplicate records?)",
                c.label(),
                thousands(s.delivered - s.made)
            ));
        }
        for n in &s.notes {
            notes.push(format!("{}: {n}", c.label()));
        }
    }
    for n in notes {
        let _ = writeln!(out, "\n- {}", cell(&n));
    }
    out.push('\n');
    out
}

pub const LEGEND: &str = "\
ops/s: median over rounds. traced/untraced: median of the per-round ratios of a traced run's ops/s to the \
same round's untraced run (min–max of those ratios). events delivered/made: the worker's events found in the \
tracer's output over all rounds / the events its ops made (fork: fork + exit; exec: fork + exec + exit; \
thread and burst: clone + thread exit). lost: what the tracer says it lost (tracer: its `lost` count, plus \
events the daemon did not deliver to the subscriber; bpftrace: its `Lost N events`; perf: its LOST records). \
kernel ns: the tracer's BPF programs' run_time_ns over run_cnt (bpf_stats), then the same time over the \
events delivered; perf uses no BPF. user CPU ns per event: the tracer's processes' utime+stime over the run \
(/proc/PID/stat, 10 ms ticks: `<` when under one tick per run) per event delivered, and per line (record) \
written, i.e. per event of the whole host: on a busy host most lines are other processes' events, which \
the per-event figures include too. latency: the daemon's event-to-tree and event-to-socket p50/p99 \
(`tracer stats --json`), median over rounds.";

// ------------------------------------------------------------------- JSON ----

fn progs_json(progs: &[ProgStat]) -> Value {
    Value::Array(progs.iter().map(ProgStat::json).collect())
}

/// A row's runs and summaries as JSON.
pub fn row_json(row: &Row) -> Value {
    let mut columns = serde_json::Map::new();
    for &c in &row.columns {
        let s = summarize(row, c);
        let runs: Vec<Value> = row
            .runs
            .iter()
            .filter(|r| r.column == c)
            .map(|r| match &r.result {
                Err(e) => json!({"round": r.round, "error": e}),
                Ok((w, m)) => json!({
                    "round": r.round,
                    "worker_pid": w.pid,
                    "ops": w.ops,
                    "secs": w.secs,
                    "ops_per_s": w.rate(),
                    "made": w.ops * row.workload.events_per_op(),
                    "delivered": m.delivery.delivered(),
                    "delivered_by_kind": m.delivery.by_kind,
                    "lines": m.delivery.lines,
                    "unparsed_lines": m.delivery.unparsed,
                    "lost": m.lost,
                    "missed": m.delivery.missed,
                    "bpf_programs": m.progs.as_deref().map(progs_json),
                    "cpu_ns": m.cpu.iter().map(|(r, ns)| (r.to_string(), json!(ns))).collect::<serde_json::Map<_, _>>(),
                    "latency": m.latency,
                    "notes": m.notes,
                }),
            })
            .collect();
        // Programs by name, summed over the rounds.
        let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in row.runs.iter().filter(|r| r.column == c) {
            if let Ok((_, Measured { progs: Some(progs), .. })) = &r.result {
                for p in progs {
                    let e = by_name.entry(format!("{} ({})", p.name, p.kind)).or_default();
                    e.0 += p.run_time_ns;
                    e.1 += p.run_cnt;
                }
            }
        }
        let per_program: serde_json::Map<String, Value> = by_name
            .into_iter()
            .map(|(k, (t, n))| {
                let per = if n > 0 { Some(t as f64 / n as f64) } else { None };
                (k, json!({"run_time_ns": t, "run_cnt": n, "ns_per_run": per}))
            })
            .collect();
        columns.insert(
            c.key().into(),
            json!({
                "label": c.label(),
                "missing": s.missing,
                "rounds": s.rounds,
                "rounds_ok": s.rounds_ok,
                "ops_per_s_median": s.rate,
                "ratio": s.ratio.map(|r| json!({"median": r.median, "min": r.min, "max": r.max})),
                "delivered": s.delivered,
                "made": s.made,
                "lost": s.lost,
                "missed": s.missed,
                "kernel": s.kernel_ns.map(|(t, n)| json!({
                    "run_time_ns": t, "run_cnt": n,
                    "ns_per_run": s.kernel_per_run(), "ns_per_event_delivered": s.kernel_per_event(),
                    "per_program": per_program,
                })),
                "lines": s.lines,
                "cpu_ns_per_line": s.cpu_per_line().into_iter().map(|(r, v)| (r.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "cpu_ns_per_event": s.cpu_per_event().into_iter().map(|(r, v)| (r.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "cpu_ns_total": s.cpu.iter().map(|(r, v)| (r.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "latency_ms_median": s.latency.map(|[a, b, c, d]| json!({"tree": {"p50": a, "p99": b}, "socket": {"p50": c, "p99": d}})),
                "errors": s.errors,
                "notes": s.notes,
                "runs": runs,
            }),
        );
    }
    json!({
        "workload": row.workload.name(),
        "describe": row.workload.describe(),
        "pinning": row.pinning.key(),
        "columns": columns,
    })
}

// ------------------------------------------------------------------- date ----

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::count::Delivery;

    fn worker(ops: u64, secs: f64) -> WorkerResult {
        WorkerResult { pid: 1, comm: "xtask".into(), ops, secs }
    }

    fn measured(delivered: u64, lost: u64, kernel: Option<(u64, u64)>, cpu: &[(&'static str, u64)]) -> Measured {
        Measured {
            delivery: Delivery {
                by_kind: [("fork".to_owned(), delivered)].into(),
                lines: 2 * delivered,
                ..Delivery::default()
            },
            lost: Some(lost),
            progs: kernel.map(|(t, c)| {
                vec![ProgStat { id: 9, kind: "tracing".into(), name: "fork".into(), run_time_ns: t, run_cnt: c }]
            }),
            cpu: cpu.to_vec(),
            ..Measured::default()
        }
    }

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(spread(&[0.9, 0.7, 0.8]), Some(Spread { median: 0.8, min: 0.7, max: 0.9 }));
        let u = BTreeMap::from([(1, 100.0), (2, 200.0), (3, 0.0)]);
        let t = BTreeMap::from([(1, 50.0), (2, 180.0), (3, 10.0), (4, 1.0)]);
        assert_eq!(pair_ratios(&u, &t), [0.5, 0.9]);
    }

    fn sample_row() -> Row {
        Row {
            workload: Workload::Fork,
            pinning: Pinning::Unpinned,
            columns: vec![Column::Untraced, Column::Daemon, Column::Standalone, Column::Bpftrace, Column::Perf],
            runs: vec![
                Run { column: Column::Untraced, round: 1, result: Ok((worker(1000, 1.0), Measured::default())) },
                Run { column: Column::Untraced, round: 2, result: Ok((worker(2000, 1.0), Measured::default())) },
                Run {
                    column: Column::Standalone,
                    round: 1,
                    result: Ok((worker(800, 1.0), measured(1600, 0, Some((160_000, 400)), &[("tracer", 3_200_000)]))),
                },
                Run {
                    column: Column::Standalone,
                    round: 2,
                    result: Ok((worker(1800, 1.0), measured(3500, 2, Some((340_000, 600)), &[("tracer", 6_800_000)]))),
                },
                Run {
                    column: Column::Daemon,
                    round: 1,
                    result: Ok((
                        worker(500, 1.0),
                        Measured {
                            latency: Some(
                                json!({"tree": {"p50_ms": 0.5, "p99_ms": 2.0}, "socket": {"p50_ms": 0.75, "p99_ms": 12.5}}),
                            ),
                            ..measured(
                                1000,
                                0,
                                Some((100_000, 1000)),
                                &[("daemon", 2_000_000), ("subscriber", 1_000_000)],
                            )
                        },
                    )),
                },
                Run { column: Column::Daemon, round: 2, result: Err("tracer daemon exited (exit status: 1)".into()) },
                Run {
                    column: Column::Perf,
                    round: 1,
                    result: Ok((worker(900, 1.0), measured(1800, 0, None, &[("perf", 0)]))),
                },
            ],
            missing: BTreeMap::from([(Column::Bpftrace, "missing: bpftrace not installed".to_owned())]),
        }
    }

    #[test]
    fn summaries() {
        let row = sample_row();
        let s = summarize(&row, Column::Standalone);
        assert_eq!((s.rounds, s.rounds_ok, s.delivered, s.made, s.lost), (2, 2, 5100, 5200, Some(2)));
        assert_eq!(s.rate, Some(1300.0));
        let r = s.ratio.unwrap();
        assert!((r.median - 0.85).abs() < 1e-9 && (r.min - 0.8).abs() < 1e-9 && (r.max - 0.9).abs() < 1e-9, "{r:?}");
        assert_eq!(s.kernel_ns, Some((500_000, 1000)));
        assert_eq!(s.kernel_per_run(), Some(500.0));
        assert_eq!(s.kernel_per_event(), Some(500_000.0 / 5100.0));
        assert_eq!(s.cpu_per_event(), [("tracer", Some(10_000_000.0 / 5100.0))]);

        let d = summarize(&row, Column::Daemon);
        assert_eq!((d.rounds, d.rounds_ok, d.errors.len()), (2, 1, 1));
        assert_eq!(d.latency, Some([Some(0.5), Some(2.0), Some(0.75), Some(12.5)]));
        let b = summarize(&row, Column::Bpftrace);
        assert_eq!((b.rounds_ok, b.missing.as_deref()), (0, Some("missing: bpftrace not installed")));
    }

    #[test]
    fn rendering() {
        let row = sample_row();
        let t = table(&row, 2);
        let expect = "\
### fork, unpinned (fork + _exit + waitpid; an op is a process)

| tracer | ops/s | traced/untraced (min–max) | events delivered/made | lost | kernel ns per run; per event | user CPU ns per event (per line) | latency p50/p99 ms |
|---|---:|---:|---:|---:|---:|---:|---|
| untraced | 1,500 | 1 | - | - | - | - | - |
| tracer daemon + 1 subscriber | 500 | 0.500 (0.500–0.500) | 1,000 / 1,000 (100.00%) | 0 | 100; 100 | daemon 2,000 + subscriber 1,000 (1,000 + 500/line) | tree 0.50/2.00, socket 0.75/12.5 |
| tracer events --standalone | 1,300 | 0.850 (0.800–0.900) | 5,100 / 5,200 (98.08%) | 2 | 500; 98 | 1,961 (980/line) | - |
| bpftrace | missing: bpftrace not installed | | | | | | |
| perf record | 900 | 0.900 (0.900–0.900) | 1,800 / 1,800 (100.00%) | 0 | - | <5,556 (<2,778/line) | - |

- tracer daemon + 1 subscriber: 1 of 2 rounds failed: round 2: tracer daemon exited (exit status: 1)

";
        assert_eq!(t, expect);
        let failed = Summary { rounds: 1, errors: vec!["round 1: a|b".into()], ..Summary::default() };
        assert_eq!(table_row(Column::Perf, &failed), "| perf record | failed: round 1: a\\|b | | | | | | |\n");
    }

    #[test]
    fn json_shape() {
        let v = row_json(&sample_row());
        assert_eq!(v["pinning"], "unpinned");
        let sa = &v["columns"]["standalone"];
        assert_eq!(sa["delivered"], 5100);
        assert_eq!(sa["kernel"]["ns_per_run"], 500.0);
        assert_eq!(sa["kernel"]["per_program"]["fork (tracing)"]["run_cnt"], 1000);
        assert_eq!(sa["runs"][1]["bpf_programs"][0]["run_time_ns"], 340_000);
        assert_eq!(v["columns"]["daemon"]["latency_ms_median"]["socket"]["p99"], 12.5);
        assert_eq!(v["columns"]["daemon"]["runs"][1]["error"], "tracer daemon exited (exit status: 1)");
        assert_eq!(v["columns"]["bpftrace"]["missing"], "missing: bpftrace not installed");
        assert_eq!(v["columns"]["perf"]["kernel"], Value::Null);
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
