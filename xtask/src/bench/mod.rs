//! `cargo xtask bench`: what tracing costs a process-churning workload, next
//! to the other ways of watching the same events, and whether every event
//! gets through. The comparison to run before trusting tracer on a busy host.
//!
//! Each workload (fork, exec, thread, burst; see [`worker`]) runs unpinned and
//! pinned to CPU 0, for `--rounds` rounds of `--secs` seconds per column:
//! untraced, `tracer daemon` with one subscriber, `tracer events --standalone`,
//! bpftrace and `perf record` (see [`columns`]). Rounds are interleaved: each
//! round runs every column once, in an order rotated from round to round, so
//! that drift (thermal, other load) hits all alike.
//!
//! Measured per run: the worker's ops/s; the worker's events found in the
//! output out of those it made; what the tracer says it lost; the tracer's BPF
//! programs' run time and run count (kernel.bpf_stats_enabled=1 for the bench,
//! restored after); its processes' CPU time. Then the start-up tree with
//! 10,000 threads alive and the engine benchmark (see [`extras`]). The soak
//! (one million processes through a daemon, see [`soak`]) runs only when
//! `--only` names it.
//!
//! Output: Markdown tables on stdout and in target/bench/bench.md, every
//! figure in target/bench/bench.json; each column's last output file stays in
//! target/bench/.

mod columns;
mod count;
mod extras;
mod kernel;
mod procs;
mod report;
mod soak;
mod worker;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

pub use columns::Column;
pub use worker::{Workload, hold_threads, worker};

use crate::util::{self, is_root};
use columns::Ctx;
use report::{Row, Run};
use worker::Pinning;

/// What `--only` can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Part {
    Fork,
    Exec,
    Thread,
    Burst,
    /// The start-up tree with 10,000 threads alive.
    Startup,
    /// The engine benchmark (cargo bench --bench engine).
    Engine,
    /// One million processes through a daemon, its memory read as they go
    /// (minutes: only when `--only` names it).
    Soak,
}

impl Part {
    fn workload(self) -> Option<Workload> {
        match self {
            Part::Fork => Some(Workload::Fork),
            Part::Exec => Some(Workload::Exec),
            Part::Thread => Some(Workload::Thread),
            Part::Burst => Some(Workload::Burst),
            Part::Startup | Part::Engine | Part::Soak => None,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seconds per run (one workload, one pinning, one column, one round).
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Rounds; each runs every column once, interleaved.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Only these parts (default: all but soak): workloads fork, exec, thread,
    /// burst; startup (the start-up tree); engine (the engine benchmark); soak
    /// (1,000,000 processes through a daemon, its RSS as they go; minutes).
    #[arg(long, value_delimiter = ',', value_name = "PART[,..]")]
    pub only: Vec<Part>,
    /// Only these tracers (default: all; the untraced baseline always runs):
    /// daemon, standalone, bpftrace, perf.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub tracers: Vec<Column>,
}

impl Args {
    fn parts(&self) -> Vec<Part> {
        use clap::ValueEnum;
        if self.only.is_empty() {
            Part::value_variants().iter().copied().filter(|p| *p != Part::Soak).collect()
        } else {
            self.only.clone()
        }
    }

    fn workloads(&self) -> Vec<Workload> {
        let mut w: Vec<Workload> = self.parts().iter().filter_map(|p| p.workload()).collect();
        w.sort();
        w.dedup();
        w
    }

    fn columns(&self) -> Vec<Column> {
        let mut c: Vec<Column> = if self.tracers.is_empty() { Column::ALL.to_vec() } else { self.tracers.clone() };
        c.push(Column::Untraced);
        c.sort();
        c.dedup();
        c
    }
}

/// The columns in the order of `round` (rotated by one each round).
fn round_order(columns: &[Column], round: u32) -> Vec<Column> {
    let mut v = columns.to_vec();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left((round as usize - 1) % n);
    }
    v
}

/// How each column is faring: disabled after two failed starts in a row.
#[derive(Default)]
struct Health {
    failed_starts: BTreeMap<Column, u32>,
    disabled: BTreeMap<Column, String>,
}

pub fn bench(args: &Args) -> Result<()> {
    ensure!(args.secs.is_finite() && args.secs > 0.0, "bench: --secs must be > 0");
    ensure!(args.rounds >= 1, "bench: --rounds must be at least 1");
    if !is_root() {
        bail!(
            "bench: it loads BPF programs and sets kernel.bpf_stats_enabled, which needs root; run `cargo xtask bench` as root"
        );
    }
    let started = Instant::now();
    let parts = args.parts();
    let workloads = args.workloads();
    let columns = args.columns();
    crate::setup::setup(crate::setup::Purpose::Bench)?;
    // The peers, installed here only (not in `cargo xtask setup`); a failure is
    // reported in their column.
    let peers_setup = crate::setup::bench_packages().err().map(|e| format!("{e:#}"));
    let tracer = crate::build(false)?;
    let dir = util::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("bench: creating {}", dir.display()))?;
    worker::prepare(&dir)?;
    procs::catch_interrupts();

    let (cpu_model, cpus) = kernel::cpu_model(&fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let mut rep = Report {
        date: report::utc(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
        release: kernel::release(),
        cpu_model,
        cpus,
        args: args.clone(),
        columns: columns.clone(),
        rows_planned: workloads.len() * Pinning::ALL.len(),
        stats_old: None,
        peers_setup: peers_setup.clone(),
        started,
        steal0: kernel::cpu_steal(),
        rows: Vec::new(),
        startup: None,
        engine: None,
        soak: None,
        done: false,
    };
    if !workloads.is_empty() {
        kernel::check_bpftool()?;
        let guard = kernel::BpfStatsGuard::enable()?;
        rep.stats_old = Some(guard.old().to_owned());
        let mut health = Health::default();
        for c in &columns {
            if let Some(prog) = c.program()
                && util::which(prog).is_none()
            {
                let why = match &peers_setup {
                    Some(e) => format!("missing: {prog} not installed ({e})"),
                    None => format!("missing: {prog} not on PATH"),
                };
                health.disabled.insert(*c, why);
            }
        }
        let ctx = Ctx { tracer: tracer.clone(), dir: dir.clone(), secs: args.secs };
        println!(
            "bench: {} x {} pinnings x {} rounds x {} s per column ({}), interleaved; outputs in {}",
            workloads.iter().map(|w| w.name()).collect::<Vec<_>>().join(", "),
            Pinning::ALL.len(),
            args.rounds,
            args.secs,
            columns.iter().map(|c| c.key()).collect::<Vec<_>>().join(", "),
            dir.display()
        );
        for &workload in &workloads {
            for pinning in Pinning::ALL {
                let row = bench_row(&ctx, workload, pinning, &columns, args.rounds, &mut health)?;
                println!();
                print!("{}", report::table(&row, args.rounds));
                std::io::stdout().flush().ok();
                rep.rows.push(row);
                // What is done so far stays, should a later part fail.
                rep.write(&dir)?;
            }
        }
        drop(guard);
    }

    // The start-up tree and the engine: a failure is reported, and the rest kept.
    if parts.contains(&Part::Startup) {
        procs::check_interrupted()?;
        let s = extras::startup(&tracer, extras::STARTUP_THREADS, args.rounds.max(3));
        procs::check_interrupted()?;
        if let Ok(s) = &s {
            println!();
            print!("{}", s.markdown());
        }
        rep.startup = Some(s.map_err(|e| format!("{e:#}")));
    }
    if parts.contains(&Part::Engine) {
        procs::check_interrupted()?;
        let e = extras::engine();
        procs::check_interrupted()?;
        rep.engine = Some(e.map_err(|e| format!("{e:#}")));
    }
    if parts.contains(&Part::Soak) {
        procs::check_interrupted()?;
        let s = soak::soak(&tracer, &dir);
        procs::check_interrupted()?;
        rep.soak = Some(s.map_err(|e| format!("{e:#}")));
    }
    rep.done = true;
    let (md_path, json_path) = rep.write(&dir)?;
    println!();
    println!("{}", "=".repeat(80));
    print!("{}", rep.markdown());
    println!(
        "bench: written {} and {} ({:.0} s)",
        md_path.display(),
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<&str> = [
        rep.startup.as_ref().and_then(|r| r.as_ref().err()),
        rep.engine.as_ref().and_then(|r| r.as_ref().err()),
        rep.soak.as_ref().and_then(|r| r.as_ref().err()),
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .collect();
    if !failed.is_empty() {
        bail!("{} (the other results are in {})", failed.join("; "), md_path.display());
    }
    Ok(())
}

/// Everything the bench found; written after each row and at the end.
struct Report {
    date: String,
    release: String,
    cpu_model: String,
    cpus: usize,
    args: Args,
    columns: Vec<Column>,
    rows_planned: usize,
    stats_old: Option<String>,
    peers_setup: Option<String>,
    started: Instant,
    /// (steal, total) CPU ticks when the runs began.
    steal0: Option<(u64, u64)>,
    rows: Vec<Row>,
    startup: Option<Result<extras::Startup, String>>,
    engine: Option<Result<extras::Engine, String>>,
    soak: Option<Result<soak::Soak, String>>,
    /// All parts ran (else the report is partial).
    done: bool,
}

impl Report {
    /// CPU time the hypervisor took from this VM while the bench ran: noise.
    fn steal(&self) -> Option<f64> {
        self.steal0
            .zip(kernel::cpu_steal())
            .and_then(|((s0, t0), (s1, t1))| (t1 > t0).then(|| 100.0 * s1.saturating_sub(s0) as f64 / (t1 - t0) as f64))
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "# tracer bench{}\n\n- date: {}\n- kernel: {}\n- CPU: {}, {} CPUs\n",
            if self.done {
                String::new()
            } else {
                format!(" (partial: {} of {} tables so far)", self.rows.len(), self.rows_planned)
            },
            self.date,
            self.release,
            self.cpu_model,
            self.cpus
        );
        if !self.rows.is_empty() {
            md.push_str(&format!(
                "- runs: {} rounds x {} s per (workload, pinning, column), columns interleaved round-robin; \
                 kernel.bpf_stats_enabled=1 during the runs\n",
                self.args.rounds, self.args.secs
            ));
        }
        md.push_str(&format!(
            "- CPU steal (time the hypervisor took) while the bench ran: {}\n- took: {:.0} s\n\n",
            self.steal().map_or("?".into(), |s| format!("{s:.1}%")),
            self.started.elapsed().as_secs_f64()
        ));
        if !self.rows.is_empty() {
            md.push_str("## Cost of tracing, per workload\n\n");
            md.push_str(report::LEGEND);
            md.push_str("\n\n");
            for row in &self.rows {
                md.push_str(&report::table(row, self.args.rounds));
            }
        }
        match &self.startup {
            Some(Ok(s)) => md.push_str(&s.markdown()),
            Some(Err(e)) => md.push_str(&format!("## Start-up tree\n\nfailed: {e}\n\n")),
            None => {}
        }
        match &self.engine {
            Some(Ok(e)) => md.push_str(&e.markdown()),
            Some(Err(e)) => md.push_str(&format!("## Engine\n\nfailed: {e}\n\n")),
            None => {}
        }
        match &self.soak {
            Some(Ok(s)) => md.push_str(&s.markdown()),
            Some(Err(e)) => md.push_str(&format!("## Soak\n\nfailed: {e}\n\n")),
            None => {}
        }
        md
    }

    fn json(&self) -> serde_json::Value {
        let part = |r: Option<Result<serde_json::Value, &String>>| match r {
            None => serde_json::Value::Null,
            Some(Ok(v)) => v,
            Some(Err(e)) => json!({"error": e}),
        };
        json!({
            "partial": !self.done,
            "date": self.date,
            "kernel": self.release,
            "cpu_model": self.cpu_model,
            "cpus": self.cpus,
            "secs": self.args.secs,
            "rounds": self.args.rounds,
            "columns": self.columns.iter().map(|c| json!({"key": c.key(), "label": c.label()})).collect::<Vec<_>>(),
            "bpf_stats_enabled_before": self.stats_old,
            "peers_setup_error": self.peers_setup,
            "took_s": self.started.elapsed().as_secs_f64(),
            "cpu_steal_percent": self.steal(),
            "rows": self.rows.iter().map(report::row_json).collect::<Vec<_>>(),
            "startup": part(self.startup.as_ref().map(|r| r.as_ref().map(extras::Startup::json))),
            "engine": part(self.engine.as_ref().map(|r| r.as_ref().map(extras::Engine::json))),
            "soak": part(self.soak.as_ref().map(|r| r.as_ref().map(soak::Soak::json))),
        })
    }

    /// Writes bench.md and bench.json into `dir`; returns their paths.
    fn write(&self, dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let md_path = dir.join("bench.md");
        let json_path = dir.join("bench.json");
        fs::write(&md_path, self.markdown()).with_context(|| format!("bench: writing {}", md_path.display()))?;
        fs::write(&json_path, serde_json::to_string_pretty(&self.json())? + "\n")
            .with_context(|| format!("bench: writing {}", json_path.display()))?;
        Ok((md_path, json_path))
    }
}

/// Every round of one (workload, pinning).
fn bench_row(
    ctx: &Ctx,
    workload: Workload,
    pinning: Pinning,
    columns: &[Column],
    rounds: u32,
    health: &mut Health,
) -> Result<Row> {
    let mut row = Row { workload, pinning, columns: columns.to_vec(), runs: Vec::new(), missing: BTreeMap::new() };
    for round in 1..=rounds {
        for column in round_order(columns, round) {
            procs::check_interrupted()?;
            if health.disabled.contains_key(&column) {
                continue;
            }
            let tag = format!("{} {} round {round}/{rounds} {}", workload.name(), pinning.key(), column.key());
            let result = if column == Column::Untraced {
                // No baseline, no ratios: the machine cannot run the workload.
                let w = worker::run_worker(workload, ctx.secs, pinning)?;
                Ok((w, columns::Measured::default()))
            } else {
                match columns::measure(column, ctx, workload, pinning) {
                    Ok(ok) => {
                        health.failed_starts.remove(&column);
                        Ok(ok)
                    }
                    Err(f) => {
                        procs::check_interrupted()?;
                        let msg = format!("{:#}", f.error);
                        if f.at_start {
                            let n = health.failed_starts.entry(column).or_default();
                            *n += 1;
                            if *n >= 2 {
                                health.disabled.insert(column, format!("missing: {msg}"));
                            }
                        }
                        Err(msg)
                    }
                }
            };
            println!("{tag}: {}", progress(workload, &result));
            std::io::stdout().flush().ok();
            row.runs.push(Run { column, round, result });
        }
    }
    for c in columns {
        if let Some(why) = health.disabled.get(c)
            && !row.runs.iter().any(|r| r.column == *c && r.result.is_ok())
        {
            row.missing.insert(*c, why.clone());
        }
    }
    Ok(row)
}

/// One line per run while the bench goes.
fn progress(workload: Workload, result: &Result<(worker::WorkerResult, columns::Measured), String>) -> String {
    match result {
        Err(e) => format!("FAILED: {e}"),
        Ok((w, m)) => {
            let mut s = format!("{:.0} ops/s (worker pid {})", w.rate(), w.pid);
            if m.delivery.lines > 0 || m.progs.is_some() || !m.cpu.is_empty() {
                let made = w.ops * workload.events_per_op();
                s.push_str(&format!(
                    ", events {}/{made}, lost {}",
                    m.delivery.delivered(),
                    m.lost.map_or("?".into(), |n| n.to_string())
                ));
                if m.delivery.missed > 0 {
                    s.push_str(&format!(", missed {}", m.delivery.missed));
                }
                if let Some(p) = &m.progs {
                    let (t, n) = p.iter().fold((0u64, 0u64), |(t, n), p| (t + p.run_time_ns, n + p.run_cnt));
                    if n > 0 {
                        s.push_str(&format!(", kernel {:.0} ns/run", t as f64 / n as f64));
                    }
                }
                let cpu: u64 = m.cpu.iter().map(|(_, ns)| ns).sum();
                s.push_str(&format!(", cpu {:.0} ms", cpu as f64 / 1e6));
            }
            for n in &m.notes {
                s.push_str(&format!(" [{n}]"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn args() {
        let a = Cli::try_parse_from(["x"]).unwrap().args;
        assert_eq!((a.secs, a.rounds), (2.0, 3));
        assert_eq!(a.workloads(), [Workload::Fork, Workload::Exec, Workload::Thread, Workload::Burst]);
        assert_eq!(a.columns(), Column::ALL);
        assert_eq!(a.parts().len(), 6);
        assert!(!a.parts().contains(&Part::Soak), "the soak takes minutes: only on demand");
        let a = Cli::try_parse_from(["x", "--only", "soak"]).unwrap().args;
        assert_eq!(a.parts(), [Part::Soak]);
        assert!(a.workloads().is_empty());
        let a = Cli::try_parse_from(["x", "--only", "exec,fork", "--tracers", "perf,daemon", "--secs", "0.5"])
            .unwrap()
            .args;
        assert_eq!(a.workloads(), [Workload::Fork, Workload::Exec]);
        assert_eq!(a.columns(), [Column::Untraced, Column::Daemon, Column::Perf]);
        assert!(!a.parts().contains(&Part::Engine));
        let a = Cli::try_parse_from(["x", "--only", "engine"]).unwrap().args;
        assert!(a.workloads().is_empty());
        assert!(Cli::try_parse_from(["x", "--only", "nope"]).is_err());
        assert!(Cli::try_parse_from(["x", "--tracers", "strace"]).is_err());
    }

    #[test]
    fn rotation() {
        let c = [Column::Untraced, Column::Daemon, Column::Perf];
        assert_eq!(round_order(&c, 1), c);
        assert_eq!(round_order(&c, 2), [Column::Daemon, Column::Perf, Column::Untraced]);
        assert_eq!(round_order(&c, 4), c);
    }
}
