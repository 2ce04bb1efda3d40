//! The tracers compared, each started, made ready, measured around one worker
//! run, and stopped:
//! - `tracer daemon --socket S` with one subscriber, `tracer events --json
//!   --socket S` writing to a file;
//! - `tracer events --json --standalone` writing to a file;
//! - bpftrace printing one line per hit of the three sched tracepoints;
//! - `perf record` of the same tracepoints (`-a`), counted with `perf script`.
//!
//! "Ready" means the hooks are live: the tracer's `tracing` line (printed
//! once its programs are attached), bpftrace's programs all having run
//! (bpf_stats are on; the bench pokes them with /bin/true), perf's `ack` of
//! `enable` on its control fifo (it starts with events disabled).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::count::{self, Delivery};
use super::kernel::{self, ProgStat};
use super::procs::{self, Spawned};
use super::worker::{self, Pinning, WorkerResult, Workload};

/// Time a tracer gets to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time bpftrace gets to compile, load and attach its programs.
const BPFTRACE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a tracer gets to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the output to stop growing after the worker ends.
const SETTLE_MAX: Duration = Duration::from_secs(10);
/// The output and CPU time are sampled this often while settling.
const SETTLE_STEP: Duration = Duration::from_millis(200);
/// The tracepoints bpftrace and perf attach to (the tracer's hooks are the
/// same events: BTF tracepoints on fork, exec, exit).
pub const TRACEPOINTS: &str = "sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Column {
    Untraced,
    Daemon,
    Standalone,
    Bpftrace,
    Perf,
}

impl Column {
    pub const ALL: [Column; 5] = [Column::Untraced, Column::Daemon, Column::Standalone, Column::Bpftrace, Column::Perf];

    pub fn key(self) -> &'static str {
        match self {
            Column::Untraced => "untraced",
            Column::Daemon => "daemon",
            Column::Standalone => "standalone",
            Column::Bpftrace => "bpftrace",
            Column::Perf => "perf",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Column::Untraced => "untraced",
            Column::Daemon => "tracer daemon + 1 subscriber",
            Column::Standalone => "tracer events --standalone",
            Column::Bpftrace => "bpftrace",
            Column::Perf => "perf record",
        }
    }

    /// Whether its kernel side is BPF programs (perf's is not).
    pub fn uses_bpf(self) -> bool {
        matches!(self, Column::Daemon | Column::Standalone | Column::Bpftrace)
    }

    /// The program it needs on PATH, for the peers.
    pub fn program(self) -> Option<&'static str> {
        match self {
            Column::Bpftrace => Some("bpftrace"),
            Column::Perf => Some("perf"),
            _ => None,
        }
    }
}

/// What every run needs.
pub struct Ctx {
    pub tracer: PathBuf,
    pub dir: PathBuf,
    pub secs: f64,
}

/// Everything measured in one traced run.
#[derive(Debug, Default)]
pub struct Measured {
    pub delivery: Delivery,
    /// What the tracer says it lost (tracer: its summary or stats; peers:
    /// what their output says).
    pub lost: Option<u64>,
    /// Growth of each of the tracer's BPF programs' counters over the run
    /// (`None`: no BPF).
    pub progs: Option<Vec<ProgStat>>,
    /// CPU time (user + system) over the run by process role, ns.
    pub cpu: Vec<(&'static str, u64)>,
    /// The daemon's `stats.latency` at the end of the run.
    pub latency: Option<Value>,
    /// Anything odd (non-zero exit, output still growing...).
    pub notes: Vec<String>,
}

/// Why a traced run failed: at start (the tracer never became ready), or later.
pub struct Failure {
    pub at_start: bool,
    pub error: anyhow::Error,
}

/// One traced run: start `column`, run the worker, measure, stop.
pub fn measure(
    column: Column,
    ctx: &Ctx,
    workload: Workload,
    pinning: Pinning,
) -> Result<(WorkerResult, Measured), Failure> {
    let mut s = start(column, ctx).map_err(|error| Failure { at_start: true, error })?;
    let later = |error| Failure { at_start: false, error };
    let bpf_pids = s.bpf_pids();
    let mut ids: BTreeSet<u32> = kernel::held_programs(&bpf_pids).into_keys().collect();
    let before = if column.uses_bpf() { Some(kernel::bpftool_snapshot().map_err(later)?) } else { None };
    let cpu0 = s.cpu().map_err(later)?;
    let worker = worker::run_worker(workload, ctx.secs, pinning).map_err(later)?;
    let mut m = Measured::default();
    if let Some(note) = s.settle().map_err(later)? {
        m.notes.push(note);
    }
    if let Some(before) = before {
        ids.extend(kernel::held_programs(&bpf_pids).into_keys());
        let after = kernel::bpftool_snapshot().map_err(later)?;
        m.progs = Some(kernel::diff(&before, &after, &ids));
    }
    let cpu1 = s.cpu().map_err(later)?;
    m.cpu = cpu1.iter().zip(&cpu0).map(|((role, b), (_, a))| (*role, b.saturating_sub(*a))).collect();
    s.finish(ctx, workload, &worker, &mut m).map_err(later)?;
    Ok((worker, m))
}

/// A started tracer: its processes by role, and the file its events go to.
struct Started {
    column: Column,
    procs: Vec<(&'static str, Spawned)>,
    output: PathBuf,
    socket: Option<PathBuf>,
}

fn output_file(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// The daemon's socket: under the bench directory unless that path is too
/// long for a Unix socket.
pub(super) fn socket_path(dir: &Path) -> PathBuf {
    let p = dir.join("daemon.sock");
    if p.as_os_str().len() < 100 {
        p
    } else {
        std::env::temp_dir().join(format!("tracer-bench-{}.sock", std::process::id()))
    }
}

fn start(column: Column, ctx: &Ctx) -> Result<Started> {
    let dir = &ctx.dir;
    match column {
        Column::Untraced => bail!("untraced runs start no tracer"),
        Column::Daemon => {
            let socket = socket_path(dir);
            let mut cmd = Command::new(&ctx.tracer);
            cmd.args(["daemon", "--socket"]).arg(&socket);
            let mut daemon = Spawned::start("tracer daemon", cmd, Stdio::null())?;
            daemon.wait_stderr("tracing", READY_TIMEOUT)?;
            let output = dir.join("daemon-subscriber.jsonl");
            let mut cmd = Command::new(&ctx.tracer);
            cmd.args(["events", "--json", "--socket"]).arg(&socket);
            let mut sub = Spawned::start("tracer events (subscriber)", cmd, output_file(&output)?.into())?;
            let line = sub.wait_stderr("tracing", READY_TIMEOUT)?;
            ensure!(line.contains("daemon"), "the subscriber did not use the daemon at {}: {line}", socket.display());
            Ok(Started { column, procs: vec![("daemon", daemon), ("subscriber", sub)], output, socket: Some(socket) })
        }
        Column::Standalone => {
            let output = dir.join("standalone.jsonl");
            let mut cmd = Command::new(&ctx.tracer);
            cmd.args(["events", "--json", "--standalone"]);
            let mut t = Spawned::start("tracer events --standalone", cmd, output_file(&output)?.into())?;
            t.wait_stderr("tracing", READY_TIMEOUT)?;
            Ok(Started { column, procs: vec![("tracer", t)], output, socket: None })
        }
        Column::Bpftrace => {
            let script = dir.join("bpftrace.bt");
            fs::write(&script, count::BPFTRACE_SCRIPT).with_context(|| format!("writing {}", script.display()))?;
            let output = dir.join("bpftrace.txt");
            let mut cmd = Command::new("bpftrace");
            cmd.arg(&script);
            let mut b = Spawned::start("bpftrace", cmd, output_file(&output)?.into())?;
            bpftrace_ready(&mut b)?;
            Ok(Started { column, procs: vec![("bpftrace", b)], output, socket: None })
        }
        Column::Perf => {
            let output = dir.join("perf.data");
            // Else perf renames the last one to perf.data.old.
            let _ = fs::remove_file(&output);
            let (ctl, ack) = (dir.join("perf.ctl"), dir.join("perf.ack"));
            for fifo in [&ctl, &ack] {
                mkfifo(fifo)?;
            }
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-D", "-1", "--control"])
                .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
                .args(["-e", TRACEPOINTS, "-a", "-o"])
                .arg(&output);
            let mut p = Spawned::start("perf record", cmd, Stdio::null())?;
            perf_enable(&mut p, &ctl, &ack)?;
            Ok(Started { column, procs: vec![("perf", p)], output, socket: None })
        }
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("mkfifo {}", path.display()));
    }
    Ok(())
}

/// bpftrace is ready when each of its programs has run once: /bin/true is
/// run until they have (fork, exec and exit each fire for it).
fn bpftrace_ready(b: &mut Spawned) -> Result<()> {
    let deadline = Instant::now() + BPFTRACE_READY_TIMEOUT;
    loop {
        b.ensure_running()?;
        b.drain_stderr();
        let progs = kernel::held_programs(&[b.pid()]);
        if progs.len() >= 3 && progs.values().all(|c| c.is_some_and(|c| c > 0)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "bpftrace did not attach its 3 programs within {} s ({} loaded; stderr: {})",
                BPFTRACE_READY_TIMEOUT.as_secs(),
                progs.len(),
                b.stderr_tail(3)
            );
        }
        if !progs.is_empty() {
            Command::new(worker::EXEC_PATH).status().ok();
        }
        procs::sleep(Duration::from_millis(50))?;
    }
}

/// Sends `enable` on perf's control fifo and waits for its `ack`.
fn perf_enable(p: &mut Spawned, ctl: &Path, ack: &Path) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    // Read-write, non-blocking: opening cannot block, and reads poll.
    let mut ack_r = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ack)
        .with_context(|| format!("opening {}", ack.display()))?;
    // The control fifo opens once perf has it open for reading.
    let mut ctl_w = loop {
        p.ensure_running()?;
        match fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(ctl) {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                procs::sleep(Duration::from_millis(20))?;
            }
            Err(e) => return Err(e).with_context(|| format!("perf never opened its control fifo {}", ctl.display())),
        }
    };
    ctl_w.write_all(b"enable\n").context("writing `enable` to perf's control fifo")?;
    let mut got = Vec::new();
    loop {
        p.ensure_running()?;
        let mut buf = [0u8; 64];
        match ack_r.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("reading perf's ack fifo"),
        }
        if got.windows(3).any(|w| w == b"ack") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "perf record did not ack `enable` within {} s (stderr: {})",
                READY_TIMEOUT.as_secs(),
                p.stderr_tail(3)
            );
        }
        procs::sleep(Duration::from_millis(10))?;
    }
}

impl Started {
    /// The processes whose BPF programs are the tracer's.
    fn bpf_pids(&self) -> Vec<u32> {
        match self.column {
            Column::Daemon | Column::Standalone | Column::Bpftrace => {
                self.procs.iter().filter(|(role, _)| *role != "subscriber").map(|(_, p)| p.pid()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// CPU time so far of each process, by role.
    fn cpu(&mut self) -> Result<Vec<(&'static str, u64)>> {
        let mut v = Vec::new();
        for (role, p) in &mut self.procs {
            p.ensure_running()?;
            v.push((*role, kernel::cpu_ns(p.pid())?));
        }
        Ok(v)
    }

    /// Waits until the output stops growing and the processes stop using CPU
    /// (the events in flight when the worker ended are processed); a note if
    /// they never did.
    fn settle(&mut self) -> Result<Option<String>> {
        let tick = 1_000_000_000 / kernel::clock_ticks_per_s();
        let slack = tick * self.procs.len() as u64;
        let sample = |s: &mut Started| -> Result<(u64, u64)> {
            let len = fs::metadata(&s.output).map(|m| m.len()).unwrap_or(0);
            Ok((len, s.cpu()?.iter().map(|(_, ns)| ns).sum()))
        };
        let start = Instant::now();
        let mut last = sample(self)?;
        loop {
            procs::sleep(SETTLE_STEP)?;
            let now = sample(self)?;
            if now.0 == last.0 && now.1 <= last.1 + slack {
                return Ok(None);
            }
            if start.elapsed() >= SETTLE_MAX {
                return Ok(Some(format!(
                    "{} still busy {} s after the worker ended (stopped anyway)",
                    self.column.label(),
                    SETTLE_MAX.as_secs()
                )));
            }
            last = now;
        }
    }

    /// Reads what the tracer says, stops it, counts the worker's events.
    fn finish(mut self, ctx: &Ctx, workload: Workload, worker: &WorkerResult, m: &mut Measured) -> Result<()> {
        let mut daemon_lost = None;
        if let Some(socket) = &self.socket {
            let stats = daemon_stats(&ctx.tracer, socket)?;
            m.latency = stats.get("latency").cloned();
            if m.latency.is_none() {
                m.notes.push("the daemon's stats have no `latency`".into());
            }
            daemon_lost = stats.get("lost").and_then(Value::as_u64);
        }
        // Subscriber first, so that the daemon is still there while it ends.
        for (role, p) in self.procs.iter_mut().rev() {
            let status = p.stop(STOP_TIMEOUT)?;
            // perf ends by re-raising the SIGINT it handled.
            let sigint = std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT);
            if !(status.success() || *role == "perf" && sigint) {
                m.notes.push(format!("{} exited with {status} after SIGINT (stderr: {})", p.name, p.stderr_tail(2)));
            }
        }
        match self.column {
            Column::Untraced => {}
            Column::Daemon => {
                m.delivery = count::tracer_file(&self.output, workload, worker.pid)?;
                m.lost = daemon_lost.or(m.delivery.lost);
            }
            Column::Standalone => {
                m.delivery = count::tracer_file(&self.output, workload, worker.pid)?;
                m.lost = count::summary_lost(&self.procs[0].1.stderr).or(m.delivery.lost);
            }
            Column::Bpftrace => {
                m.delivery = count::peer_file(&self.output, count::bpftrace_line, workload, worker.pid, &worker.comm)?;
                // Its `Lost N events` lines go to stdout (the file), or stderr.
                let on_stderr: u64 = self.procs[0]
                    .1
                    .stderr
                    .iter()
                    .filter_map(|l| match count::bpftrace_line(l) {
                        count::Line::Lost(n) => Some(n),
                        _ => None,
                    })
                    .sum();
                m.lost = Some(m.delivery.lost.unwrap_or(0) + on_stderr);
            }
            Column::Perf => {
                let text = ctx.dir.join("perf.txt");
                let mut cmd = Command::new("perf");
                cmd.args(["script", "-i"]).arg(&self.output).args([
                    "-F",
                    "comm,pid,tid,event,trace",
                    "--show-lost-events",
                ]);
                let out = procs::output(cmd, Duration::from_secs(600)).context("perf script")?;
                ensure!(
                    out.status.success(),
                    "`perf script` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
                );
                fs::write(&text, &out.stdout).with_context(|| format!("writing {}", text.display()))?;
                m.delivery = count::peer_file(&text, count::perf_line, workload, worker.pid, &worker.comm)?;
                m.lost = Some(m.delivery.lost.unwrap_or(0));
                let stderr = String::from_utf8_lossy(&out.stderr);
                if let Some(chunks) = stderr.lines().find(|l| l.contains("lost") && l.contains("chunks")) {
                    m.notes.push(format!("perf script: {}", chunks.trim()));
                }
            }
        }
        Ok(())
    }
}

/// `tracer stats --json --socket S`: the daemon's stats object.
pub(super) fn daemon_stats(tracer: &Path, socket: &Path) -> Result<Value> {
    let mut cmd = Command::new(tracer);
    cmd.args(["stats", "--json", "--socket"]).arg(socket);
    let out = procs::output(cmd, Duration::from_secs(30)).context("tracer stats --json")?;
    ensure!(
        out.status.success(),
        "`tracer stats --json --socket {}` failed ({}): {}",
        socket.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_stats(&String::from_utf8_lossy(&out.stdout))
}

/// The stats object of `tracer stats --json` (printed bare, or under `stats`).
pub fn parse_stats(text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text).context("`tracer stats --json` printed no JSON")?;
    let stats = v.get("stats").cloned().unwrap_or(v);
    ensure!(stats.is_object(), "`tracer stats --json` printed no object");
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let bare = r#"{"lost": 2, "latency": {"tree": {"p50_ms": 0.5, "p99_ms": 2.0}, "socket": {"p50_ms": 0.7, "p99_ms": 3.1}}}"#;
        let s = parse_stats(bare).unwrap();
        assert_eq!(s.pointer("/latency/socket/p99_ms").and_then(Value::as_f64), Some(3.1));
        let wrapped = format!(r#"{{"ok": true, "stats": {bare}}}"#);
        assert_eq!(parse_stats(&wrapped).unwrap(), s);
        assert!(parse_stats("[]").is_err());
        assert!(parse_stats("error").is_err());
    }

    #[test]
    fn columns() {
        assert!(Column::Bpftrace.uses_bpf() && !Column::Perf.uses_bpf() && !Column::Untraced.uses_bpf());
        assert_eq!(Column::Perf.program(), Some("perf"));
        assert_eq!(socket_path(Path::new("/t")), PathBuf::from("/t/daemon.sock"));
        assert!(socket_path(&PathBuf::from("/x".repeat(60))).starts_with(std::env::temp_dir()));
    }
}
