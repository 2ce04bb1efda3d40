//! The test agent of `cargo xtask vm-test`: runs inside each VM of the kernel matrix
//! (and on the host, as its "host" column) and checks the `tracer` binary against the
//! kernel it runs on, with /proc as the oracle.
//!
//! It prints, on stdout, one `TRACER-VM-CHECK {json}` line (what `tracer check --json`
//! says of this kernel), one `TRACER-VM-CASE {"case","status","detail"}` line per case,
//! and `TRACER-VM-DONE` at the end. The host parses those lines out of the serial
//! console, so nothing else goes to stdout; diagnostics go to stderr.
//!
//! Each case runs on a thread of its own under a deadline: a case that fails, panics or
//! hangs is reported and its processes are killed, and the next case runs. Workloads
//! are this same binary re-executed as `vm-worker MODE ...` (see [`workload`]), since
//! the VMs hold nothing but busybox, the tracer and this agent.

mod child;
mod events;
mod oracle;
mod tracer;
mod tree;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;

/// Prefixes of the lines the host parses (see `vm::Column::parse`).
const CASE_PREFIX: &str = "TRACER-VM-CASE ";
const CHECK_PREFIX: &str = "TRACER-VM-CHECK ";
const DONE_LINE: &str = "TRACER-VM-DONE";

/// Time a case may overrun its deadline before the watchdog gives up on it: its own
/// waits end at the deadline, so only a wait that ignores it gets here.
const WATCHDOG_GRACE: Duration = Duration::from_secs(20);
/// Longest detail printed: one line of the host's table, not a log.
const MAX_DETAIL: usize = 700;
/// Time given to stray events to arrive before a tracer is stopped, so that "exactly
/// one" checks can see a second one (generous: the VMs are emulated, ~20x slower).
pub const SETTLE: Duration = Duration::from_millis(700);

/// One case: its name, its time budget, and the check itself.
struct Case {
    name: &'static str,
    budget: Duration,
    check: fn(&Ctx) -> Result<Outcome>,
}

/// Every case, in the order they run. The budgets hold under TCG (1-2 emulated vCPUs);
/// on a real machine each case takes seconds.
const CASES: &[Case] = &[
    Case { name: "events", budget: Duration::from_secs(90), check: events::events },
    Case { name: "ps", budget: Duration::from_secs(90), check: tree::ps },
    Case { name: "storm", budget: Duration::from_secs(120), check: tree::storm },
    Case { name: "reparent", budget: Duration::from_secs(90), check: events::reparent },
    Case { name: "cgroup", budget: Duration::from_secs(90), check: events::cgroup },
];

/// What a case is given: the tracer, its deadline, and what `tracer check` said.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub tracer: PathBuf,
    pub deadline: Instant,
    /// Why `tracer check` calls the start-up argv feature degraded, if it does.
    pub argv_degraded: Option<String>,
    /// Multiplier of storm sizes (see [`scale`]).
    pub scale: f64,
}

impl Ctx {
    /// `max` from now, or the case's deadline if that comes first.
    pub fn within(&self, max: Duration) -> Instant {
        (Instant::now() + max).min(self.deadline)
    }

    /// `n` scaled to this machine, at least `min`.
    pub fn scaled(&self, n: u64, min: u64) -> u64 {
        ((n as f64 * self.scale).round() as u64).max(min)
    }
}

/// A case that passed: `ok`, or `degraded` with the reason.
#[derive(Debug)]
pub struct Outcome {
    pub degraded: Option<String>,
    pub summary: String,
}

impl Outcome {
    pub fn ok(summary: String) -> Outcome {
        Outcome { degraded: None, summary }
    }
}

/// Runs the cases (all, or those named in `only`) and prints their lines. Never fails:
/// what goes wrong is a case's `fail` line.
pub fn run(tracer: &Path, only: &[String]) -> Result<()> {
    let check = tracer::check(tracer);
    emit(&format!("{CHECK_PREFIX}{}", check.line));
    let scale = scale();
    eprintln!("vm-agent: tracer {}, storm scale {scale}", tracer.display());
    for name in only.iter().filter(|n| !CASES.iter().any(|c| c.name == n.as_str())) {
        let known: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        print_case(name, "fail", &format!("unknown case; the cases are {}", known.join(", ")));
    }
    for case in CASES.iter().filter(|c| only.is_empty() || only.iter().any(|n| n == c.name)) {
        let ctx = Ctx {
            tracer: tracer.to_path_buf(),
            deadline: Instant::now() + case.budget,
            argv_degraded: check.argv_degraded.clone(),
            scale,
        };
        let started = Instant::now();
        let (status, detail) = run_case(case, ctx);
        eprintln!("vm-agent: {} {status} in {:.1} s", case.name, started.elapsed().as_secs_f64());
        print_case(case.name, status, &detail);
    }
    emit(DONE_LINE);
    Ok(())
}

/// The hidden `vm-worker` subcommand: one workload (see [`workload`]).
pub fn worker(args: &[String]) -> Result<()> {
    workload::run(args)
}

/// Runs one case on its own thread; its status and detail.
fn run_case(case: &Case, ctx: Ctx) -> (&'static str, String) {
    let (tx, rx) = mpsc::channel();
    let check = case.check;
    let spawned = std::thread::Builder::new().name(format!("case-{}", case.name)).spawn(move || {
        let r = std::panic::catch_unwind(|| check(&ctx));
        let _ = tx.send(r);
    });
    if let Err(e) = spawned {
        return ("fail", format!("cannot start the case's thread: {e}"));
    }
    match rx.recv_timeout(case.budget + WATCHDOG_GRACE) {
        Ok(Ok(Ok(o))) => match o.degraded {
            Some(why) => ("degraded", format!("{why}; {}", o.summary)),
            None => ("ok", o.summary),
        },
        Ok(Ok(Err(e))) => ("fail", format!("{e:#}")),
        Ok(Err(panic)) => ("fail", format!("panicked: {}", panic_message(panic.as_ref()))),
        Err(_) => {
            // The case's thread is stuck: end what it started so the next case runs on
            // a quiet machine (the thread is left behind).
            child::kill_all();
            ("fail", format!("did not finish within {} s (killed its processes)", case.budget.as_secs()))
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

fn print_case(name: &str, status: &str, detail: &str) {
    let line = json!({"case": name, "status": status, "detail": shorten(detail, MAX_DETAIL)});
    emit(&format!("{CASE_PREFIX}{line}"));
}

/// One line on stdout, flushed at once (the serial console is read as it comes).
/// Errors are ignored: there is nowhere else to report them.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [...]", &s[..end])
}

/// Storm sizes relative to the host's: `TRACER_VM_SCALE` if the harness sets it, else
/// a quarter on a single CPU (an emulated VM), else 1. The storms also stop at a time
/// limit, so a slow machine does fewer rounds rather than miss its deadline.
fn scale() -> f64 {
    if let Some(s) = std::env::var("TRACER_VM_SCALE").ok().and_then(|s| s.trim().parse::<f64>().ok())
        && s.is_finite()
        && s > 0.0
    {
        return s.clamp(0.01, 10.0);
    }
    match std::thread::available_parallelism() {
        Ok(n) if n.get() > 1 => 1.0,
        _ => 0.25,
    }
}

/// A string no other process on the machine has in its argv.
pub fn marker(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("vmtest-{tag}-{}-{nanos}", std::process::id())
}

/// A `vm-worker MODE ARGS` command: this binary, re-executed.
pub fn worker_cmd(args: &[&str]) -> Result<Command> {
    let exe = std::env::current_exe().context("locating the agent's own binary for a workload")?;
    let mut cmd = Command::new(exe);
    cmd.arg("vm-worker").args(args);
    Ok(cmd)
}

/// The POSIX shell (busybox's in the VMs, where /init installs its applets in /bin).
pub fn shell() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/bin", "/usr/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("sh"))
        .find(|p| p.is_file())
        .context("no `sh` in /bin, /usr/bin or on PATH")
}

/// A fresh directory under the temp dir (`/tmp`, a tmpfs in the VMs), removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(marker(tag));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_on_char_boundaries() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc [...]");
        assert_eq!(shorten("aé", 2), "a [...]");
    }
}
