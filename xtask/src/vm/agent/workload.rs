//! The workloads of the cases, run as `vm-worker MODE ARGS` in a child process (this
//! binary re-executed), so that their events can be told apart by pid and the VMs need
//! no compiler or extra programs:
//!
//! - `threads N [MAX_SECS]`: creates and joins N threads, in batches; prints `done N`.
//! - `forks N [MAX_SECS]`: forks N children that `_exit(0)` at once, in batches, and
//!   reaps them; prints `done N`.
//! - `hold N`: starts N idle threads, prints `ready`, and holds them until stdin closes.
//! - `sleep SECS`: prints `ready` and sleeps.
//! - `subreaper [MAX_SECS]`: becomes a child subreaper, forks a child that forks a
//!   grandchild and exits at once; prints `child=C grandchild=G`, then `orphaned` once
//!   the child is reaped, then `done` once the grandchild (which waits for stdin to
//!   close, at most MAX_SECS) ended too.
//! - `exit CODE`: exits with CODE.
//!
//! The storms stop early once MAX_SECS passed, so that a slow (emulated) machine does
//! fewer rounds rather than miss the case's deadline; they print how many they made.
//! The workers are single-threaded when they fork, so the children may allocate.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Threads or children alive at once in a storm.
const BATCH: u64 = 50;
/// Stack of the workers' threads: they do nothing, and a VM has 1 GiB for everything.
const STACK: usize = 64 << 10;

/// Runs the workload `args` names.
pub fn run(args: &[String]) -> Result<()> {
    let (mode, rest) = args.split_first().context("vm-worker: no mode given")?;
    let arg = |i: usize, default: Option<u64>| -> Result<u64> {
        match rest.get(i) {
            Some(s) => s.parse().with_context(|| format!("vm-worker {mode}: {s:?} is not a number")),
            None => default.with_context(|| format!("vm-worker {mode}: argument {} missing", i + 1)),
        }
    };
    match mode.as_str() {
        "threads" => threads(arg(0, None)?, limit(arg(1, Some(0))?)),
        "forks" => forks(arg(0, None)?, limit(arg(1, Some(0))?)),
        "hold" => hold(arg(0, None)?),
        "sleep" => {
            say("ready")?;
            std::thread::sleep(Duration::from_secs(arg(0, None)?));
            Ok(())
        }
        "subreaper" => subreaper(arg(0, Some(120))?),
        "exit" => std::process::exit(i32::try_from(arg(0, None)?).context("vm-worker exit: code too large")?),
        other => bail!("vm-worker: unknown mode {other:?} (threads, forks, hold, sleep, subreaper, exit)"),
    }
}

/// The end of a storm: MAX_SECS from now (0: no limit).
fn limit(secs: u64) -> Option<Instant> {
    (secs > 0).then(|| Instant::now() + Duration::from_secs(secs))
}

/// One line on stdout, flushed (the agent waits for it).
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("vm-worker: writing to stdout")
}

/// Creates and joins `n` threads, `BATCH` at a time.
fn threads(n: u64, until: Option<Instant>) -> Result<()> {
    let mut done = 0;
    while done < n && until.is_none_or(|u| Instant::now() < u) {
        let batch = (n - done).min(BATCH);
        let handles = (0..batch)
            .map(|_| std::thread::Builder::new().stack_size(STACK).spawn(|| {}))
            .collect::<std::io::Result<Vec<_>>>()
            .context("vm-worker threads: creating a thread")?;
        for h in handles {
            h.join().map_err(|_| anyhow!("vm-worker threads: a thread panicked"))?;
        }
        done += batch;
    }
    say(&format!("done {done}"))
}

/// Forks and reaps `n` children that exit at once, `BATCH` at a time.
fn forks(n: u64, until: Option<Instant>) -> Result<()> {
    let mut done = 0;
    while done < n && until.is_none_or(|u| Instant::now() < u) {
        let batch = (n - done).min(BATCH);
        let pids = (0..batch).map(|_| fork(|| {})).collect::<Result<Vec<_>>>()?;
        for pid in pids {
            reap(pid)?;
        }
        done += batch;
    }
    say(&format!("done {done}"))
}

/// Starts `n` threads that wait, says `ready`, and ends them once stdin closes.
fn hold(n: u64) -> Result<()> {
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                // Never sent to: returns when the sender is dropped.
                let _ = rx.recv();
            })
            .context("vm-worker hold: creating a thread")?;
        senders.push(tx);
        handles.push(h);
    }
    say("ready")?;
    wait_stdin_eof(None);
    drop(senders);
    for h in handles {
        h.join().map_err(|_| anyhow!("vm-worker hold: a thread panicked"))?;
    }
    Ok(())
}

/// The orphan story: see the module doc.
fn subreaper(max_secs: u64) -> Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("vm-worker subreaper: PR_SET_CHILD_SUBREAPER");
    }
    let until = Instant::now() + Duration::from_secs(max_secs);
    let child = fork(|| {
        let grandchild = fork(|| wait_stdin_eof(Some(until)));
        if let Ok(gc) = grandchild {
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() };
            let _ = say(&format!("child={me} grandchild={gc}"));
        }
    })?;
    reap(child)?;
    say("orphaned")?;
    // The grandchild is ours now: reap it (and anything else) until none is left.
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the int we pass.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => break,
                _ => return Err(e).context("vm-worker subreaper: waitpid"),
            }
        }
    }
    say("done")
}

/// Forks; the child runs `in_child` and `_exit(0)`s. Returns the child's pid.
fn fork(in_child: impl FnOnce()) -> Result<libc::pid_t> {
    std::io::stdout().flush().ok();
    // SAFETY: the workers fork only while single-threaded, so the child's copy of the
    // process is consistent (locks included); it leaves through _exit, never returning.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("vm-worker: fork"),
        0 => {
            in_child();
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

/// Waits for child `pid` to end.
fn reap(pid: libc::pid_t) -> Result<()> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the int we pass.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e).with_context(|| format!("vm-worker: waiting for child {pid}"));
        }
    }
}

/// Reads stdin (fd 0, directly: a forked child must not rely on std's buffered handle)
/// until it ends, or until `until` if given.
fn wait_stdin_eof(until: Option<Instant>) {
    let mut buf = [0u8; 256];
    loop {
        let timeout_ms = match until {
            None => -1,
            Some(u) => match u.checked_duration_since(Instant::now()) {
                Some(d) if !d.is_zero() => i32::try_from(d.as_millis()).unwrap_or(i32::MAX),
                _ => return,
            },
        };
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r <= 0 {
            return;
        }
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
    }
}
