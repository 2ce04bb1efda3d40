//! The two other parts of the bench: the time to a consistent start-up tree
//! with 10,000 threads alive, and the engine's own benchmark.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::procs;
use super::report::median;
use crate::util::{self, cargo};

/// Threads kept alive while start-up is timed.
pub const STARTUP_THREADS: usize = 10_000;

pub struct Startup {
    pub tasks: usize,
    pub threads: usize,
    pub runs: u32,
    pub tracer_ms: Vec<f64>,
    pub ps_ms: Vec<f64>,
}

/// The thread holder, ended (stdin closed, then killed) on every path.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        if matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if matches!(self.0.try_wait(), Ok(None)) {
                self.0.kill().ok();
            }
        }
        self.0.wait().ok();
    }
}

/// Times a consistent start-up tree (`tracer ps --standalone -L`: load, attach,
/// walk, merge, print) against `ps -eLf`, with `threads` extra threads alive.
pub fn startup(tracer: &Path, threads: usize, runs: u32) -> Result<Startup> {
    let exe = std::env::current_exe().context("bench: locating xtask")?;
    let mut cmd = Command::new(exe);
    cmd.args(["hold-threads", &threads.to_string()]).stdin(Stdio::piped()).stdout(Stdio::piped());
    procs::own_group_and_die_with_us(&mut cmd);
    let mut holder = Holder(cmd.spawn().context("bench: starting the thread holder")?);
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().context("holder stdout")?).read_line(&mut line)?;
    ensure!(line.trim() == "ready", "bench: the thread holder did not start its {threads} threads (ulimit -u?)");
    let time = |cmd: &mut Command| -> Result<f64> {
        procs::check_interrupted()?;
        let t = Instant::now();
        let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        ensure!(st.success(), "bench: `{}` failed: {st}; run it by hand to see why", util::display(cmd));
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(time(Command::new(tracer).args(["ps", "--standalone", "-L"]))?);
        theirs.push(time(Command::new("ps").arg("-eLf"))?);
    }
    let tasks = String::from_utf8_lossy(&Command::new("ps").arg("-eLf").output()?.stdout).lines().count() - 1;
    drop(holder);
    Ok(Startup { tasks, threads, runs, tracer_ms: ours, ps_ms: theirs })
}

impl Startup {
    pub fn markdown(&self) -> String {
        let m = |v: &[f64]| median(v).map_or("?".into(), |x| format!("{x:.1}"));
        format!(
            "## Start-up tree\n\n{} tasks alive ({} of them one process's idle threads), median of {} runs:\n\n\
             | command | ms |\n|---|---:|\n\
             | `tracer ps --standalone -L` (load + attach programs, task iterator walk, merge, print) | {} |\n\
             | `ps -eLf` | {} |\n\n",
            self.tasks,
            self.threads,
            self.runs,
            m(&self.tracer_ms),
            m(&self.ps_ms)
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "tasks": self.tasks, "idle_threads": self.threads, "runs": self.runs,
            "tracer_ps_ms": self.tracer_ms, "ps_eLf_ms": self.ps_ms,
            "tracer_ps_ms_median": median(&self.tracer_ms), "ps_eLf_ms_median": median(&self.ps_ms),
        })
    }
}

/// The engine benchmark's output, and the lines the report quotes.
pub struct Engine {
    pub command: String,
    pub lines: Vec<String>,
}

/// The engine's own benchmark, the full one (10M events per throughput case,
/// 1,000,000 processes of churn); its output is echoed as it comes.
pub fn engine() -> Result<Engine> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "tracer", "--bench", "engine"]);
    let command = util::display(&cmd);
    println!();
    println!("==> {command}");
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("bench: running the engine benchmark")?;
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().context("engine bench stdout")?).lines() {
        let line = line?;
        println!("{line}");
        std::io::stdout().flush().ok();
        lines.push(line);
    }
    let st = child.wait()?;
    procs::check_interrupted()?;
    ensure!(st.success(), "bench: the engine benchmark failed ({st}); run `{command}` to see why");
    Ok(Engine { command, lines })
}

impl Engine {
    /// The lines worth quoting: each throughput case's heading and rate, the
    /// memory per task, and the churn (with memory after it).
    pub fn quoted(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut after_churn = false;
        for (i, l) in self.lines.iter().enumerate() {
            let t = l.trim_start();
            if l.starts_with("churn:") {
                after_churn = true;
            }
            let keep = l.starts_with("tracer engine benchmark")
                || (l.starts_with("throughput") && self.lines.get(i + 1).is_some_and(|n| n.contains("events/s")))
                || t.contains("events/s on one core")
                || l.starts_with("memory,")
                || t.contains("per task")
                || l.starts_with("churn:")
                || (after_churn && (t.starts_with("engine heap peak") || t.starts_with("after the linger")))
                || t.contains("INVARIANT BROKEN");
            if keep {
                out.push(l.as_str());
            }
        }
        out
    }

    /// The churn lines ("RSS after 1M processes of churn"), for the summary.
    pub fn churn(&self) -> Vec<&str> {
        let Some(i) = self.lines.iter().position(|l| l.starts_with("churn:")) else { return Vec::new() };
        self.lines[i..]
            .iter()
            .take_while(|l| l.starts_with("churn:") || l.starts_with("  "))
            .filter(|l| !l.contains("engine dropped"))
            .map(String::as_str)
            .collect()
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("## Engine (`{}`)\n\n```\n", self.command);
        for l in self.quoted() {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("```\n\n");
        if self.churn().is_empty() {
            out.push_str("(no churn line in its output)\n\n");
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({"command": self.command, "churn": self.churn(), "quoted": self.quoted(), "output": self.lines})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
tracer engine benchmark (tracer's (jemalloc) allocator, glibc build)
throughput, mixed workload: ~3000 live processes, pids wrapping at 32768, stream of 20 k events/s of event time:
  10000000 events in 3.1 s: 3.20 M events/s on one core (312 ns/event)
  mix: fork 1 exec 1 clone 1 thread_exit 1 exit 1 rename 1; held exits 0 (forced 0), stale 0, pid reuses seen 0
  model at the end: 3000 live processes, 9000 threads, 10 exited kept
memory, 10000 live processes x 3 threads (30000 tasks):
  engine heap 12.00 MiB: 1258 B per process, 419 B per task; argv bytes 0.50 MiB; without them 400 B per task
churn: 1000000 short-lived processes (4300000 events, 2.50 M events/s applied, 50.0 s of event time, 3.0 s wall)
  engine heap peak 20.00 MiB during the churn (exited processes kept for the 2 s linger: 40000 at the end)
  after the linger: 12.10 MiB (baseline 12.00 MiB, +0.83%), 10000 live processes, 30000 threads, 0 exited kept
  engine dropped: 0 bytes left
";

    #[test]
    fn engine_quotes() {
        let e = Engine { command: "cargo bench".into(), lines: OUT.lines().map(str::to_owned).collect() };
        let q = e.quoted();
        assert_eq!(q.len(), 8, "{q:#?}");
        assert!(q[1].starts_with("throughput") && q[2].contains("M events/s on one core"));
        assert!(!q.iter().any(|l| l.contains("mix:") || l.contains("engine dropped")));
        let churn = e.churn();
        assert_eq!(churn.len(), 3);
        assert!(churn[0].starts_with("churn: 1000000") && churn[2].contains("after the linger"));
        assert!(e.markdown().contains("after the linger: 12.10 MiB"));
        let none = Engine { command: "x".into(), lines: vec![] };
        assert!(none.churn().is_empty() && none.markdown().contains("no churn line"));
    }

    #[test]
    fn startup_table() {
        let s =
            Startup { tasks: 10_200, threads: 10_000, runs: 3, tracer_ms: vec![90.0, 80.0, 100.0], ps_ms: vec![300.0] };
        let md = s.markdown();
        assert!(md.contains("| 90.0 |") && md.contains("| 300.0 |") && md.contains("10200 tasks"), "{md}");
        assert_eq!(s.json()["tracer_ps_ms_median"], 90.0);
    }
}
