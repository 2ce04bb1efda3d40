//! `cargo xtask bench`: how much does tracing cost a process-churning
//! workload, and does every event get through?
//!
//! Two workloads run in a child process (`xtask bench-worker ...`) so that
//! the traced worker's events can be told apart by its pid:
//! - fork: fork(); the child `_exit(0)`s at once; the parent waitpid()s it.
//! - thread: spawn a thread that returns at once and join it.
//!
//! Rounds interleave an untraced run and a run traced by
//! `tracer events --json`, whose output goes to a file under target/bench/
//! (the honest form of `> /dev/null`: every event is still serialized).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::util::cargo;
use crate::util::{self, is_root};

// ---- The tracer's output schema, in one place (it is being written now). ----

/// JSON field holding the event kind (a string).
const FIELD_KIND: &str = "kind";
/// JSON fields that may hold the thread-group id (process id); the first
/// present one is used (`tgid` if the schema has it, else `pid`).
const FIELD_TGID: &[&str] = &["tgid", "pid"];
/// JSON field holding the parent's process id.
const FIELD_PPID: &str = "ppid";
/// Kind of a new process (fork); `ppid` is its parent.
const KIND_FORK: &str = "fork";
/// Kind of a process exit; `ppid` is its parent.
const KIND_EXIT: &str = "exit";
/// Kind of a new thread in an existing process; `tgid` is the process.
const KIND_CLONE: &str = "clone";
/// Kind of a thread exit (not the last thread); `tgid` is the process.
const KIND_THREAD_EXIT: &str = "thread_exit";
/// Substring of the stderr line the tracer prints once it is attached.
const READY_MARKER: &str = "tracing";
/// Word before the lost-event count in the tracer's final stderr summary
/// (`lost N`, `lost=N`, `lost: N` or `"lost":N`).
const LOST_MARKER: &str = "lost";
/// Time the tracer gets to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Time the tracer gets to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Fork,
    Thread,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Fork => "fork",
            Workload::Thread => "thread",
        }
    }

    /// The two event kinds one op makes.
    fn kinds(self) -> [&'static str; 2] {
        match self {
            Workload::Fork => [KIND_FORK, KIND_EXIT],
            Workload::Thread => [KIND_CLONE, KIND_THREAD_EXIT],
        }
    }
}

// ---------------------------------------------------------------- worker ----

/// The hidden `bench-worker` task: runs the workload for `secs` seconds and
/// prints `{"workload":..,"pid":..,"ops":..,"secs":..}`.
pub fn worker(workload: Workload, secs: f64) -> Result<()> {
    ensure!(secs.is_finite() && secs > 0.0, "bench-worker: --secs must be > 0");
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut ops: u64 = 0;
    match workload {
        Workload::Fork => {
            while start.elapsed() < dur {
                fork_and_reap()?;
                ops += 1;
            }
        }
        Workload::Thread => {
            while start.elapsed() < dur {
                thread::spawn(|| {}).join().map_err(|_| anyhow::anyhow!("thread storm: a spawned thread panicked"))?;
                ops += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "workload": workload.name(),
        "pid": std::process::id(),
        "ops": ops,
        "secs": elapsed,
    });
    println!("{line}");
    Ok(())
}

fn fork_and_reap() -> Result<()> {
    // SAFETY: the worker is single-threaded here (the fork storm spawns no
    // threads), and the child only calls _exit, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error())
            .context("fork storm: fork() failed (pid limit? check `ulimit -u` and pid_max)"),
        0 => {
            // SAFETY: in the child: leave at once without running anything.
            unsafe { libc::_exit(0) }
        }
        child => loop {
            let mut status = 0;
            // SAFETY: waiting for our own child, status points to a local.
            let r = unsafe { libc::waitpid(child, &mut status, 0) };
            if r == child {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("fork storm: waitpid() failed");
            }
        },
    }
}

#[derive(Debug)]
struct WorkerResult {
    pid: u32,
    ops: u64,
    secs: f64,
}

impl WorkerResult {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn run_worker(workload: Workload, secs: f64) -> Result<WorkerResult> {
    let exe = std::env::current_exe().context("bench: finding the xtask binary to re-exec")?;
    let mut cmd = Command::new(&exe);
    cmd.args(["bench-worker", workload.name(), "--secs", &secs.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("bench: starting the {} worker", workload.name()))?;
    ensure!(
        out.status.success(),
        "bench: the {} worker failed ({}); run `{}` to see why",
        workload.name(),
        out.status,
        util::display(&cmd)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("bench: parsing the worker's JSON line {line:?}"))?;
    let field =
        |name: &str| v.get(name).cloned().with_context(|| format!("bench: worker line {line:?} lacks {name:?}"));
    Ok(WorkerResult {
        pid: field("pid")?.as_u64().context("bench: worker pid")? as u32,
        ops: field("ops")?.as_u64().context("bench: worker ops")?,
        secs: field("secs")?.as_f64().context("bench: worker secs")?,
    })
}

// ---------------------------------------------------------------- tracer ----

/// Events of the traced worker found in the tracer's output.
#[derive(Debug, Default)]
struct Counts {
    /// Per kind of `Workload::kinds`.
    by_kind: [u64; 2],
    /// All lines of the output file.
    lines: u64,
    /// Lines that were not JSON objects.
    unparsed: u64,
}

impl Counts {
    fn delivered(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

#[derive(Debug)]
struct TracedRound {
    worker: WorkerResult,
    counts: Counts,
    lost: Option<u64>,
    output: PathBuf,
}

/// A running `tracer events --json` with its stderr collected by a thread.
struct Tracer {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    stderr: Vec<String>,
}

impl Tracer {
    fn start(bin: &Path, output: &Path) -> Result<Self> {
        let out = File::create(output).with_context(|| format!("bench: creating {}", output.display()))?;
        let mut child = Command::new(bin)
            .args(["events", "--json"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("bench: starting {} events --json", bin.display()))?;
        let stderr = child.stderr.take().context("bench: tracer stderr pipe")?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Tracer { child, lines: rx, reader: Some(reader), stderr: Vec::new() })
    }

    fn stderr_tail(&self) -> String {
        let n = self.stderr.len();
        self.stderr[n.saturating_sub(20)..].join("\n")
    }

    /// Waits for the ready line on stderr.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains(READY_MARKER);
                    self.stderr.push(line);
                    if ready {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    bail!(
                        "bench: the tracer printed no stderr line containing {READY_MARKER:?} within {} s; \
                         its stderr so far:\n{}",
                        READY_TIMEOUT.as_secs(),
                        self.stderr_tail()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!(
                        "bench: the tracer exited ({}) before printing a line containing {READY_MARKER:?}; \
                         run `target/release/tracer events --json` as root to see why; its stderr:\n{}",
                        status.map_or("unknown status".into(), |s| s.to_string()),
                        self.stderr_tail()
                    );
                }
            }
        }
    }

    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// SIGINTs the tracer, waits for it, collects the rest of its stderr.
    fn stop(&mut self) -> Result<ExitStatus> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("bench: waiting for the tracer")? {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "bench: the tracer did not exit within {} s of SIGINT (killed it); it must stop on SIGINT",
                    STOP_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().ok();
        }
        self.stderr.extend(self.lines.try_iter());
        Ok(status)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Integer value of a JSON field (a number, or a string of digits).
fn num(v: &Value, field: &str) -> Option<u64> {
    match v.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn tgid(v: &Value) -> Option<u64> {
    FIELD_TGID.iter().find_map(|f| num(v, f))
}

/// Counts the traced worker's events in the tracer's JSON output.
fn count_events(path: &Path, workload: Workload, worker_pid: u32) -> Result<Counts> {
    let file = File::open(path).with_context(|| format!("bench: opening {}", path.display()))?;
    let kinds = workload.kinds();
    let pid = u64::from(worker_pid);
    let mut counts = Counts::default();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("bench: reading {}", path.display()))?;
        counts.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            counts.unparsed += 1;
            continue;
        };
        if !v.is_object() {
            counts.unparsed += 1;
            continue;
        }
        let ours = match workload {
            Workload::Fork => num(&v, FIELD_PPID) == Some(pid),
            Workload::Thread => tgid(&v) == Some(pid),
        };
        if !ours {
            continue;
        }
        let Some(kind) = v.get(FIELD_KIND).and_then(Value::as_str) else {
            continue;
        };
        if let Some(i) = kinds.iter().position(|k| *k == kind) {
            counts.by_kind[i] += 1;
        }
    }
    Ok(counts)
}

/// The number after the last `lost` in the tracer's stderr.
fn parse_lost(lines: &[String]) -> Option<u64> {
    lines.iter().rev().find_map(|line| {
        line.rmatch_indices(LOST_MARKER).find_map(|(i, _)| {
            let rest = line[i + LOST_MARKER.len()..]
                .trim_start_matches(|c: char| c == '"' || c == ':' || c == '=' || c.is_whitespace());
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    })
}

fn traced_round(tracer_bin: &Path, dir: &Path, workload: Workload, secs: f64, round: u32) -> Result<TracedRound> {
    let output = dir.join(format!("{}-round{round}.jsonl", workload.name()));
    let mut tracer = Tracer::start(tracer_bin, &output)?;
    tracer.wait_ready()?;
    let worker = run_worker(workload, secs);
    let stopped = tracer.stop();
    let stderr_log = output.with_extension("stderr.log");
    fs::write(&stderr_log, tracer.stderr.join("\n") + "\n")
        .with_context(|| format!("bench: writing {}", stderr_log.display()))?;
    let worker = worker?;
    let status = stopped?;
    if !status.success() {
        println!(
            "warning: the tracer exited with {status} after SIGINT (expected 0); its stderr is in {}",
            stderr_log.display()
        );
    }
    let lost = parse_lost(&tracer.stderr);
    let counts = count_events(&output, workload, worker.pid)?;
    Ok(TracedRound { worker, counts, lost, output })
}

// ----------------------------------------------------------------- bench ----

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

struct Row {
    workload: Workload,
    untraced: f64,
    traced: f64,
    delivered: u64,
    made: u64,
    lost: Option<u64>,
}

pub fn bench(secs: f64, rounds: u32) -> Result<()> {
    ensure!(secs.is_finite() && secs > 0.0, "bench: --secs must be > 0");
    ensure!(rounds >= 1, "bench: --rounds must be at least 1");
    if !is_root() {
        bail!("bench: the traced runs load BPF programs, which needs root; run `cargo xtask bench` as root");
    }
    crate::setup::setup()?;
    let tracer = crate::build(false)?;
    let dir = util::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("bench: creating {}", dir.display()))?;
    println!(
        "bench: {rounds} rounds x {secs} s per workload; traced runs write `tracer events --json` to {}/<workload>-round<N>.jsonl \
         (a file, not /dev/null: every event is serialized, and the worker's events are counted there)",
        dir.display()
    );

    let mut rows = Vec::new();
    for workload in [Workload::Fork, Workload::Thread] {
        let [k0, k1] = workload.kinds();
        let mut untraced = Vec::new();
        let mut traced = Vec::new();
        let (mut delivered, mut made, mut lost) = (0u64, 0u64, None::<u64>);
        for round in 1..=rounds {
            let plain = run_worker(workload, secs)?;
            let t = traced_round(&tracer, &dir, workload, secs, round)?;
            let this_made = 2 * t.worker.ops;
            println!(
                "{} round {round}/{rounds}: untraced {:.0} ops/s; traced {:.0} ops/s (worker pid {}), \
                 events {}/{} ({k0} {}, {k1} {}), lost {}; {} lines in {}{}",
                workload.name(),
                plain.rate(),
                t.worker.rate(),
                t.worker.pid,
                t.counts.delivered(),
                this_made,
                t.counts.by_kind[0],
                t.counts.by_kind[1],
                t.lost.map_or("?".into(), |n| n.to_string()),
                t.counts.lines,
                t.output.display(),
                if t.counts.unparsed > 0 { format!(" ({} not JSON)", t.counts.unparsed) } else { String::new() },
            );
            std::io::stdout().flush().ok();
            untraced.push(plain.rate());
            traced.push(t.worker.rate());
            delivered += t.counts.delivered();
            made += this_made;
            if let Some(n) = t.lost {
                lost = Some(lost.unwrap_or(0) + n);
            }
        }
        rows.push(Row {
            workload,
            untraced: median(&mut untraced),
            traced: median(&mut traced),
            delivered,
            made,
            lost,
        });
    }

    println!();
    println!(
        "{:<8} {:>18} {:>18} {:>7} {:>28} {:>8}",
        "workload", "untraced ops/s", "traced ops/s", "ratio", "events delivered/made", "lost"
    );
    for r in &rows {
        let pct = if r.made > 0 { 100.0 * r.delivered as f64 / r.made as f64 } else { f64::NAN };
        println!(
            "{:<8} {:>18.0} {:>18.0} {:>7.3} {:>28} {:>8}",
            r.workload.name(),
            r.untraced,
            r.traced,
            r.traced / r.untraced,
            format!("{}/{} ({pct:.2}%)", r.delivered, r.made),
            r.lost.map_or("?".into(), |n| n.to_string()),
        );
    }
    println!(
        "(medians over {rounds} rounds; ratio = traced/untraced; lost = sum of the tracer's \
         final `lost` figures, from its stderr)"
    );

    startup(&tracer, STARTUP_THREADS, rounds.max(3))?;
    engine()?;
    Ok(())
}

/// Threads kept alive while start-up is timed.
const STARTUP_THREADS: usize = 10_000;

/// The hidden `hold-threads` task: `n` idle threads until stdin closes.
pub fn hold_threads(n: usize) -> Result<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let rx = rx.clone();
        let h = thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                // Every thread waits on the same lock; none ever gets a message.
                let _ = rx.lock().map(|r| r.recv());
            })
            .context("hold-threads: spawning a thread")?;
        handles.push(h);
    }
    println!("ready");
    std::io::stdout().flush().ok();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(tx);
    std::process::exit(0);
}

/// Times a consistent start-up tree (`tracer ps --standalone -L`: load, attach,
/// walk, merge, print) against `ps -eLf`, with `threads` extra threads alive.
fn startup(tracer: &Path, threads: usize, runs: u32) -> Result<()> {
    let exe = std::env::current_exe().context("bench: locating xtask")?;
    let mut holder = Command::new(exe)
        .args(["hold-threads", &threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("bench: starting the thread holder")?;
    let mut line = String::new();
    BufReader::new(holder.stdout.take().context("holder stdout")?).read_line(&mut line)?;
    ensure!(line.trim() == "ready", "bench: the thread holder did not start its threads");
    let time = |cmd: &mut Command| -> Result<f64> {
        let t = Instant::now();
        let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        ensure!(st.success(), "bench: {cmd:?} failed: {st}");
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(time(Command::new(tracer).args(["ps", "--standalone", "-L"]))?);
        theirs.push(time(Command::new("ps").arg("-eLf"))?);
    }
    let tasks = String::from_utf8_lossy(&Command::new("ps").arg("-eLf").output()?.stdout).lines().count() - 1;
    drop(holder.stdin.take());
    let _ = holder.wait();
    println!();
    println!(
        "start-up with {tasks} tasks alive ({threads} of them one process's idle threads), median of {runs} runs:"
    );
    println!(
        "  tracer ps --standalone -L   {:>8.1} ms  (load + attach programs, task iterator walk, merge, print)",
        median(&mut ours)
    );
    println!("  ps -eLf                     {:>8.1} ms", median(&mut theirs));
    Ok(())
}

/// The engine's own benchmark (events applied per second, memory per task).
fn engine() -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "tracer", "--bench", "engine"]);
    println!();
    println!("==> {}", util::display(&cmd));
    let st = cmd.status().context("bench: running the engine benchmark")?;
    ensure!(st.success(), "bench: the engine benchmark failed: {st}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_forms() {
        let l = |s: &str| parse_lost(&[s.to_owned()]);
        assert_eq!(l("summary: 10 events, lost 3"), Some(3));
        assert_eq!(l(r#"{"events":10,"lost":7}"#), Some(7));
        assert_eq!(l("lost=0 dropped"), Some(0));
        assert_eq!(l("lost: 12 events"), Some(12));
        assert_eq!(l("nothing lost"), None);
        assert_eq!(parse_lost(&["lost 1".into(), "final: lost 2".into(), "bye".into()]), Some(2));
    }

    #[test]
    fn tracer_ready_and_stop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-tracer-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-tracer");
        fs::write(
            &fake,
            // The event line goes out before the ready line, so that stopping right
            // after ready cannot race it.
            "#!/bin/sh\necho starting >&2\ntrap 'echo \"summary: lost 4\" >&2; exit 0' INT\n\
             echo '{\"kind\":\"exec\"}'\necho 'tracing: attached' >&2\nwhile :; do sleep 0.05; done\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.join("out.jsonl");
        let mut t = Tracer::start(&fake, &out).unwrap();
        t.wait_ready().unwrap();
        let status = t.stop().unwrap();
        assert!(status.success());
        assert_eq!(parse_lost(&t.stderr), Some(4));
        assert_eq!(fs::read_to_string(&out).unwrap(), "{\"kind\":\"exec\"}\n");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn counts_worker_events() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        fs::write(
            &path,
            [
                r#"{"kind":"fork","pid":101,"tid":101,"ppid":100}"#,
                r#"{"kind":"exit","pid":101,"tid":101,"ppid":100}"#,
                r#"{"kind":"fork","pid":201,"tid":201,"ppid":200}"#,
                r#"{"kind":"clone","pid":100,"tid":102,"ppid":1}"#,
                r#"{"kind":"thread_exit","pid":100,"tid":102,"ppid":1}"#,
                "not json",
            ]
            .join("\n"),
        )
        .unwrap();
        let f = count_events(&path, Workload::Fork, 100).unwrap();
        assert_eq!(f.by_kind, [1, 1]);
        assert_eq!(f.unparsed, 1);
        let t = count_events(&path, Workload::Thread, 100).unwrap();
        assert_eq!(t.by_kind, [1, 1]);
        fs::remove_dir_all(&dir).ok();
    }
}
