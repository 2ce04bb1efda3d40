//! Processes the agent starts: each in a process group of its own (so that it and
//! whatever it forked can be killed together), its stdout and stderr collected line
//! by line by threads as they come, so that every wait can have a deadline.
//!
//! Dropping a [`Child`] kills its group: a case that fails half-way, or panics,
//! leaves nothing running behind it. The groups alive are also kept in a registry,
//! for the watchdog to end the processes of a case that hangs ([`kill_all`]).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{self, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Process groups of the children alive.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn groups() -> MutexGuard<'static, BTreeSet<i32>> {
    GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SIGKILLs every group a child started and not yet dropped.
pub fn kill_all() {
    for pgid in groups().iter() {
        signal(-pgid, libc::SIGKILL);
    }
}

/// Sends `sig` to `pid` (a negative pid: a process group).
pub fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// What a stream said so far.
#[derive(Debug, Default)]
pub struct Text {
    pub lines: Vec<String>,
    /// The stream is closed (the process and every holder of the pipe are gone).
    pub ended: bool,
}

/// The lines of one stream, appended by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Text>, Condvar)>);

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Text> {
        self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `stream` on a thread of its own until it ends.
    fn follow(&self, stream: impl Read + Send + 'static) -> Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("child-reader".into())
            .spawn(move || {
                let mut r = BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned();
                            me.lock().lines.push(line);
                            me.0.1.notify_all();
                        }
                    }
                }
                me.lock().ended = true;
                me.0.1.notify_all();
            })
            .context("starting a thread to read a child's output")?;
        Ok(())
    }

    /// Waits until `cond` holds (true), or the stream ends or `deadline` passes without
    /// it holding (false).
    pub fn wait(&self, deadline: Instant, mut cond: impl FnMut(&Text) -> bool) -> bool {
        let mut t = self.lock();
        loop {
            if cond(&t) {
                return true;
            }
            let now = Instant::now();
            if t.ended || now >= deadline {
                return false;
            }
            t = match self.0.1.wait_timeout(t, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// The lines from index `from` on.
    pub fn since(&self, from: usize) -> Vec<String> {
        self.lock().lines.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// Everything so far, one line each.
    pub fn text(&self) -> String {
        self.lock().lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The last `n` lines, joined with " | ", for messages.
    pub fn tail(&self, n: usize) -> String {
        let t = self.lock();
        let start = t.lines.len().saturating_sub(n);
        t.lines[start..].join(" | ")
    }
}

/// A running child process with its output collected. Dropping it kills its group.
pub struct Child {
    name: String,
    proc: process::Child,
    stdin: Option<ChildStdin>,
    out: Lines,
    err: Lines,
    /// Index of the next stdout line [`Child::next_line`] returns.
    next: usize,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd` (stdin a pipe when `with_stdin`, else /dev/null) as `name`.
    pub fn spawn(name: &str, cmd: &mut Command, with_stdin: bool) -> Result<Child> {
        cmd.stdin(if with_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut proc = cmd.spawn().with_context(|| format!("starting {name}"))?;
        groups().insert(proc.id() as i32);
        let (out, err) = (Lines::default(), Lines::default());
        let stdin = proc.stdin.take();
        let stdout = proc.stdout.take().context("stdout is piped")?;
        let stderr = proc.stderr.take().context("stderr is piped")?;
        let child = Child { name: name.to_string(), proc, stdin, out, err, next: 0, status: None };
        child.out.follow(stdout)?;
        child.err.follow(stderr)?;
        Ok(child)
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn out(&self) -> &Lines {
        &self.out
    }

    pub fn err(&self) -> &Lines {
        &self.err
    }

    /// Closes its stdin: workloads that hold until EOF go on.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` to the process (not its group), unless it was reaped already.
    pub fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            signal(self.pid() as i32, sig);
        }
    }

    /// The next stdout line not returned yet.
    pub fn next_line(&mut self, deadline: Instant) -> Result<String> {
        let want = self.next;
        if !self.out.wait(deadline, |t| t.lines.len() > want) {
            bail!("{}: no output line within the time left (stderr: {})", self.name, self.err.tail(5));
        }
        self.next += 1;
        self.out.since(want).into_iter().next().with_context(|| format!("{}: its output line went missing", self.name))
    }

    /// Waits for the next stdout line and checks it is `want`.
    pub fn expect_line(&mut self, want: &str, deadline: Instant) -> Result<()> {
        let line = self.next_line(deadline)?;
        if line.trim() != want {
            bail!("{}: expected the line {want:?}, saw {line:?}", self.name);
        }
        Ok(())
    }

    /// Waits for it to end, at most until `deadline`; then gives its output streams a
    /// moment to be read to their end.
    pub fn wait_until(&mut self, deadline: Instant) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let status = loop {
            match self.proc.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => bail!("{} did not end in the time left (stderr: {})", self.name, self.err.tail(5)),
                Err(e) => return Err(e).with_context(|| format!("waiting for {}", self.name)),
            }
        };
        self.status = Some(status);
        // A grandchild may still hold the pipes: do not wait for it long.
        let drain = Instant::now() + Duration::from_secs(2);
        self.out.wait(drain, |t| t.ended);
        self.err.wait(drain, |t| t.ended);
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let pgid = self.proc.id() as i32;
        signal(-pgid, libc::SIGKILL);
        if self.status.is_none() {
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
        groups().remove(&pgid);
    }
}

/// What a command that ran to its end printed.
#[derive(Debug)]
pub struct Captured {
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end (killed at `deadline`) and returns what it printed.
pub fn capture(name: &str, cmd: &mut Command, deadline: Instant) -> Result<Captured> {
    let mut c = Child::spawn(name, cmd, false)?;
    let status = c.wait_until(deadline)?;
    Ok(Captured { pid: c.pid(), status, stdout: c.out.text(), stderr: c.err.text() })
}
