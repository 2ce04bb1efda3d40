//! The workloads, run in a child process (`xtask bench-worker ...`) so that the
//! traced worker's events can be told apart by its pid:
//! - fork: fork(); the child `_exit(0)`s at once; the parent waitpid()s it.
//! - exec: fork(); the child execve()s /bin/true; the parent waitpid()s it.
//! - thread: spawn a thread that returns at once and join it.
//! - burst: spawn 100 threads, then join the 100.
//!
//! The worker runs as `target/bench/bench-worker`, a symlink to xtask: its
//! comm (and that of its forked children and threads) is then one no other
//! process on the host has, so that peers' raw records are told apart even
//! when pids are reused during a run.
//!
//! Pinned runs set the worker's affinity to CPU 0 first (its children inherit
//! it); the tracer under test stays unpinned.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::procs;
use crate::util;

/// The program the exec workload runs.
pub const EXEC_PATH: &str = "/bin/true";
/// The comm of the exec workload's children once they exec'd.
pub fn exec_comm() -> &'static str {
    EXEC_PATH.rsplit('/').next().unwrap_or(EXEC_PATH)
}

/// Threads per burst.
pub const BURST: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Workload {
    Fork,
    Exec,
    Thread,
    Burst,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fork => "fork",
            Workload::Exec => "exec",
            Workload::Thread => "thread",
            Workload::Burst => "burst",
        }
    }

    /// What one op is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::Fork => "fork + _exit + waitpid; an op is a process",
            Workload::Exec => "fork + execve /bin/true + waitpid; an op is a process",
            Workload::Thread => "thread spawn + join; an op is a thread",
            Workload::Burst => "bursts of 100 thread spawns, then 100 joins; an op is a thread",
        }
    }

    /// The tracer's event kinds one op makes (one each).
    pub fn tracer_kinds(self) -> &'static [&'static str] {
        match self {
            Workload::Fork => &["fork", "exit"],
            Workload::Exec => &["fork", "exec", "exit"],
            Workload::Thread | Workload::Burst => &["clone", "thread_exit"],
        }
    }

    /// Events one op makes (the same count in every tracer: one per tracepoint hit).
    pub fn events_per_op(self) -> u64 {
        self.tracer_kinds().len() as u64
    }

    /// Whether the tracer reports the op's events under the worker's pid (its
    /// threads) rather than as its children (`ppid`).
    pub fn by_tgid(self) -> bool {
        matches!(self, Workload::Thread | Workload::Burst)
    }
}

/// Where the worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pinning {
    Unpinned,
    /// The worker (and its children) on CPU 0 only.
    Cpu0,
}

impl Pinning {
    pub const ALL: [Pinning; 2] = [Pinning::Unpinned, Pinning::Cpu0];

    pub fn name(self) -> &'static str {
        match self {
            Pinning::Unpinned => "unpinned",
            Pinning::Cpu0 => "pinned to CPU 0",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Pinning::Unpinned => "unpinned",
            Pinning::Cpu0 => "cpu0",
        }
    }

    fn cpu(self) -> Option<usize> {
        match self {
            Pinning::Unpinned => None,
            Pinning::Cpu0 => Some(0),
        }
    }
}

// ----------------------------------------------------------- in the worker ----

/// The hidden `bench-worker` task: runs the workload for `secs` seconds (on
/// `cpu` only, if given) and prints one JSON line
/// `{"workload","pid","comm","ops","secs"}`.
pub fn worker(workload: Workload, secs: f64, cpu: Option<usize>) -> Result<()> {
    ensure!(secs.is_finite() && secs > 0.0, "bench-worker: --secs must be > 0");
    if let Some(cpu) = cpu {
        pin_to(cpu)?;
    }
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut ops: u64 = 0;
    match workload {
        Workload::Fork => {
            while start.elapsed() < dur {
                fork_and_reap(None)?;
                ops += 1;
            }
        }
        Workload::Exec => {
            let prog = Exec::new(EXEC_PATH)?;
            while start.elapsed() < dur {
                fork_and_reap(Some(&prog))?;
                ops += 1;
            }
        }
        Workload::Thread => {
            while start.elapsed() < dur {
                thread::spawn(|| {}).join().map_err(|_| anyhow::anyhow!("thread storm: a spawned thread panicked"))?;
                ops += 1;
            }
        }
        Workload::Burst => {
            let mut handles = Vec::with_capacity(BURST);
            while start.elapsed() < dur {
                for _ in 0..BURST {
                    handles.push(
                        thread::Builder::new()
                            .stack_size(64 << 10)
                            .spawn(|| {})
                            .context("thread bursts: spawning a thread failed (thread limit? check `ulimit -u`)")?,
                    );
                }
                for h in handles.drain(..) {
                    h.join().map_err(|_| anyhow::anyhow!("thread bursts: a spawned thread panicked"))?;
                }
                ops += BURST as u64;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let line = serde_json::json!({
        "workload": workload.name(),
        "pid": std::process::id(),
        "comm": comm.trim(),
        "ops": ops,
        "secs": elapsed,
    });
    println!("{line}");
    std::io::stdout().flush().ok();
    Ok(())
}

fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads `size_of` bytes of it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("bench-worker: pinning to CPU {cpu} (sched_setaffinity) failed"));
    }
    Ok(())
}

/// An execve's arguments, made before forking (the child may only call
/// async-signal-safe functions).
struct Exec {
    path: CString,
    argv: Vec<CString>,
}

impl Exec {
    fn new(path: &str) -> Result<Self> {
        ensure!(std::path::Path::new(path).is_file(), "exec storm: {path} does not exist (coreutils)");
        let name = path.rsplit('/').next().unwrap_or(path);
        Ok(Exec { path: CString::new(path)?, argv: vec![CString::new(name)?] })
    }
}

fn fork_and_reap(exec: Option<&Exec>) -> Result<()> {
    // Pointer arrays built before the fork: the child only calls execve and _exit.
    let argv: Vec<*const libc::c_char> =
        exec.map(|e| e.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect()).unwrap_or_default();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the worker is single-threaded here (these storms spawn no
    // threads), and the child only calls execve and _exit, which are
    // async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error())
            .context("fork storm: fork() failed (pid limit? check `ulimit -u` and pid_max)"),
        0 => {
            if let Some(e) = exec {
                // SAFETY: path, argv and envp are NUL-terminated and outlive the call.
                unsafe { libc::execve(e.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            }
            // SAFETY: in the child: leave at once without running anything.
            unsafe { libc::_exit(if exec.is_some() { 127 } else { 0 }) }
        }
        child => loop {
            let mut status = 0;
            // SAFETY: waiting for our own child, status points to a local.
            let r = unsafe { libc::waitpid(child, &mut status, 0) };
            if r == child {
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    return Ok(());
                }
                bail!(
                    "fork storm: a child ended with wait status {status:#x}{}",
                    if exec.is_some() { format!(" (execve {EXEC_PATH} failed?)") } else { String::new() }
                );
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("fork storm: waitpid() failed");
            }
        },
    }
}

// ------------------------------------------------------------ in the bench ----

/// The worker's executable name, hence its comm.
pub const WORKER_NAME: &str = "bench-worker";

static WORKER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes `dir/bench-worker`, the symlink to xtask the workers run as.
pub fn prepare(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("bench: finding the xtask binary to re-exec")?;
    let link = dir.join(WORKER_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("bench: making the symlink {} -> {}", link.display(), exe.display()))?;
    let _ = WORKER_EXE.set(link);
    Ok(())
}

/// What a worker run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerResult {
    pub pid: u32,
    pub comm: String,
    pub ops: u64,
    pub secs: f64,
}

impl WorkerResult {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// Reads the worker's JSON line (the last non-empty line of its stdout).
pub fn parse_worker_line(stdout: &str) -> Result<WorkerResult> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("bench: parsing the worker's JSON line {line:?}"))?;
    let field =
        |name: &str| v.get(name).cloned().with_context(|| format!("bench: worker line {line:?} lacks {name:?}"));
    Ok(WorkerResult {
        pid: field("pid")?.as_u64().context("bench: worker pid")? as u32,
        comm: field("comm")?.as_str().unwrap_or("").to_owned(),
        ops: field("ops")?.as_u64().context("bench: worker ops")?,
        secs: field("secs")?.as_f64().context("bench: worker secs")?,
    })
}

/// Runs one workload in a child process (its own process group, so that a
/// Ctrl-C reaches the bench alone, which then stops everything in order).
pub fn run_worker(workload: Workload, secs: f64, pinning: Pinning) -> Result<WorkerResult> {
    let exe = match WORKER_EXE.get() {
        Some(link) => link.clone(),
        None => std::env::current_exe().context("bench: finding the xtask binary to re-exec")?,
    };
    let mut cmd = Command::new(&exe);
    cmd.args(["bench-worker", workload.name(), "--secs", &secs.to_string()]);
    if let Some(cpu) = pinning.cpu() {
        cmd.args(["--cpu", &cpu.to_string()]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    procs::own_group_and_die_with_us(&mut cmd);
    let out = cmd.output().with_context(|| format!("bench: starting the {} worker", workload.name()))?;
    procs::check_interrupted()?;
    ensure!(
        out.status.success(),
        "bench: the {} worker failed ({}); run `{}` to see why",
        workload.name(),
        out.status,
        util::display(&cmd)
    );
    parse_worker_line(&String::from_utf8_lossy(&out.stdout))
}

/// The hidden `hold-threads` task: `n` idle threads until stdin closes.
pub fn hold_threads(n: usize) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_line() {
        let w = parse_worker_line(
            "noise\n{\"workload\":\"fork\",\"pid\":42,\"comm\":\"xtask\",\"ops\":1000,\"secs\":2.0}\n\n",
        )
        .unwrap();
        assert_eq!(w, WorkerResult { pid: 42, comm: "xtask".into(), ops: 1000, secs: 2.0 });
        assert_eq!(w.rate(), 500.0);
        assert!(parse_worker_line("{\"pid\":1}").is_err());
        assert!(parse_worker_line("").is_err());
    }

    #[test]
    fn events_per_op() {
        assert_eq!(Workload::Fork.events_per_op(), 2);
        assert_eq!(Workload::Exec.events_per_op(), 3);
        assert_eq!(Workload::Burst.events_per_op(), 2);
        assert!(Workload::Thread.by_tgid() && !Workload::Exec.by_tgid());
    }
}
