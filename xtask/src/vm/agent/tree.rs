//! The cases on the tree: `tracer ps` in-process against /proc (`ps`), and a daemon
//! through fork and thread storms, then queried and subscribed to over its socket
//! (`storm`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::child::Child;
use super::oracle::{self, Comparison, Exempt, Listed};
use super::tracer::{self, Daemon, EventStream, argv, ps_json};
use super::{Ctx, Outcome, SETTLE, TempDir, marker, shell, worker_cmd};

/// Extra threads of the held worker of the `ps` case.
const HELD_THREADS: u64 = 5;
/// Processes and threads of the storms on a machine of 2 or more CPUs.
const STORM: u64 = 2000;
/// Longest a storm runs: on an emulated machine it stops early with fewer rounds.
const STORM_SECS: u64 = 25;
/// Longest wait for one step (a worker's line, an event) under emulation.
const STEP: Duration = Duration::from_secs(30);
/// Whole comparisons with /proc tried before a case fails, a pause apart: unrelated
/// activity of the machine can race with one.
const ATTEMPTS: usize = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(700);

/// `tracer ps --json -L --standalone` against /proc, and a process of 6 threads that
/// existed before the tracer started: its threads and argv.
pub fn ps(cx: &Ctx) -> Result<Outcome> {
    let n = HELD_THREADS.to_string();
    let mut held = Child::spawn("vm-worker hold", &mut worker_cmd(&["hold", &n])?, true)?;
    held.expect_line("ready", cx.within(STEP))?;
    let pid = held.pid();
    let proc_argv = oracle::cmdline(pid)?;

    let (cmp, listed) = matches_proc(cx, |deadline| ps_json(&cx.tracer, &["-L", "--standalone"], deadline))?;
    let p =
        listed.iter().find(|p| p.pid == pid).with_context(|| format!("the held worker (pid {pid}) is not listed"))?;
    let want = HELD_THREADS + 1;
    ensure!(
        p.nlwp == want && p.threads.len() as u64 == want,
        "held worker (pid {pid}): expected {want} threads, seen nlwp {} with {} threads listed",
        p.nlwp,
        p.threads.len()
    );
    let degraded = check_argv(cx, p, &proc_argv)?;
    held.close_stdin();
    let status = held.wait_until(cx.within(STEP))?;
    ensure!(status.success(), "the held worker ended with {status}");
    let argv_note = if degraded.is_some() { "argv flagged unreadable" } else { "argv as /proc" };
    let summary = format!("{}; held worker: {want} threads, {argv_note}", cmp.summary());
    Ok(Outcome { degraded, summary })
}

/// The held worker's argv: /proc's, or, when `tracer check` calls start-up argv
/// degraded, flagged unreadable (then the case is degraded, with the check's reason).
fn check_argv(cx: &Ctx, p: &Listed, proc_argv: &[String]) -> Result<Option<String>> {
    match &cx.argv_degraded {
        None => {
            ensure!(
                !p.argv_unreadable && p.argv == proc_argv,
                "held worker (pid {}): argv: expected (/proc) {proc_argv:?}, seen (tracer) {:?} (unreadable {})",
                p.pid,
                p.argv,
                p.argv_unreadable
            );
            Ok(None)
        }
        Some(reason) => {
            ensure!(
                p.argv_unreadable,
                "held worker (pid {}): tracer check says start-up argv is degraded ({reason}), yet its argv {:?} \
                 is not flagged unreadable",
                p.pid,
                p.argv
            );
            Ok(Some(reason.clone()))
        }
    }
}

/// Compares `tracer ps` (run by `ps`, which returns its output and pid) with /proc read
/// just before and after, up to [`ATTEMPTS`] times; the passing comparison and the list.
fn matches_proc(cx: &Ctx, mut ps: impl FnMut(Instant) -> Result<(String, u32)>) -> Result<(Comparison, Vec<Listed>)> {
    let mut failures = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let before = oracle::read_proc();
        let (text, tracer_pid) = ps(cx.within(Duration::from_secs(60)))?;
        let after = oracle::read_proc();
        let listed = oracle::parse_ps(&text)?;
        let exempt = Exempt { pids: [tracer_pid].into(), threads_of: [std::process::id()].into() };
        let cmp = oracle::compare(&before, &listed, &after, &exempt);
        if cmp.passed() {
            return Ok((cmp, listed));
        }
        eprintln!("vm-agent: comparison {attempt} with /proc failed: {:#?}", cmp.mismatches);
        failures.push(format!("attempt {attempt}: {}: {}", cmp.summary(), cmp.mismatches.join("; ")));
        if attempt < ATTEMPTS && Instant::now() + RETRY_PAUSE < cx.deadline {
            std::thread::sleep(RETRY_PAUSE);
        } else {
            break;
        }
    }
    bail!("the tracer's tree differs from /proc: {}", failures.last().map_or("", String::as_str))
}

/// A daemon through fork and thread storms: nothing lost, its tree equal to /proc
/// after, and a client subscribed over its socket gets a new exec.
pub fn storm(cx: &Ctx) -> Result<Outcome> {
    let dir = TempDir::new("storm")?;
    let socket = dir.path.join("tracer.sock");
    let daemon = Daemon::start(&cx.tracer, &socket, cx.deadline)?;

    let n = cx.scaled(STORM, 100).to_string();
    let secs = STORM_SECS.to_string();
    let mut forks = Child::spawn("vm-worker forks", &mut worker_cmd(&["forks", &n, &secs])?, false)?;
    let mut threads = Child::spawn("vm-worker threads", &mut worker_cmd(&["threads", &n, &secs])?, false)?;
    let storm_end = cx.within(Duration::from_secs(STORM_SECS + 20));
    let made_forks = storm_done(&mut forks, storm_end)?;
    let made_threads = storm_done(&mut threads, storm_end)?;
    std::thread::sleep(SETTLE);

    let stats = tracer::stats(&cx.tracer, &socket, cx.within(STEP))?;
    let lost = stats.get("lost").and_then(serde_json::Value::as_u64).context("tracer stats has no numeric `lost`")?;
    ensure!(
        lost == 0,
        "the daemon lost {lost} events in the storms ({made_forks} forks, {made_threads} threads): {stats}"
    );

    let sock = socket.display().to_string();
    let (cmp, _) = matches_proc(cx, |deadline| ps_json(&cx.tracer, &["-L", "--socket", &sock], deadline))
        .context("tracer ps through the daemon, after the storms")?;
    subscriber_sees_exec(cx, &socket)?;
    let note = daemon.stop(cx.within(STEP))?;
    // `events_total` counts by kind.
    let events_total: u64 = match stats.get("events_total") {
        Some(serde_json::Value::Object(by_kind)) => by_kind.values().filter_map(serde_json::Value::as_u64).sum(),
        other => other.and_then(serde_json::Value::as_u64).unwrap_or(0),
    };
    let mut summary = format!(
        "{made_forks} forks and {made_threads} threads, lost 0 of {events_total} events; \
         daemon's tree: {}; a subscriber saw an exec",
        cmp.summary()
    );
    if !note.is_empty() {
        summary.push_str("; ");
        summary.push_str(&note);
    }
    Ok(Outcome::ok(summary))
}

/// Waits for a storm worker and returns how many it made (`done N`).
fn storm_done(w: &mut Child, deadline: Instant) -> Result<u64> {
    let status = w.wait_until(deadline)?;
    ensure!(status.success(), "{} ended with {status} (stderr: {})", w.name(), w.err().tail(3));
    let line = w.next_line(deadline)?;
    line.strip_prefix("done ").and_then(|n| n.parse().ok()).with_context(|| format!("{} printed {line:?}", w.name()))
}

/// `tracer events --json --socket S` (a client of the daemon, not an engine of its
/// own) receives the exec of a marked `sh`.
fn subscriber_sees_exec(cx: &Ctx, socket: &Path) -> Result<()> {
    let sock = socket.display().to_string();
    let mut sub = EventStream::start(&cx.tracer, &["--socket", &sock], cx.deadline)?;
    ensure!(
        sub.stderr().contains("through the daemon"),
        "tracer events --socket {sock} did not go through the daemon (stderr: {})",
        tracer::tail(&sub.stderr())
    );
    let mark = marker("sub");
    let mut sh = Child::spawn("sh -c 'exit 0'", Command::new(shell()?).args(["-c", "exit 0", &mark]), false)?;
    let pid = sh.pid();
    sh.wait_until(cx.within(STEP))?;
    let seen = sub.wait_for(cx.within(STEP), |evs| {
        evs.iter().any(|e| e["kind"] == "exec" && e["pid"] == pid && argv(e).contains(&mark))
    });
    let out = sub.stop(cx.within(STEP))?;
    ensure!(
        seen,
        "the subscriber through the daemon got no exec of pid {pid} with {mark} in its argv ({} events received)",
        out.events.len()
    );
    Ok(())
}
