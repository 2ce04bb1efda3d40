//! The processes the bench starts (tracers, peers, workers), and Ctrl-C.
//!
//! Every long-lived child is a [`Spawned`]: in its own process group (a
//! terminal's Ctrl-C reaches the bench alone, which then stops things in
//! order), killed with SIGKILL if the bench dies (PR_SET_PDEATHSIG), and
//! killed and reaped when dropped, on every path out.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From here on, SIGINT, SIGTERM and SIGHUP set a flag that the bench checks
/// between steps (so that guards run: tracers stopped, sysctl restored).
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only stores to an atomic
        // (async-signal-safe); the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!(
            "bench: interrupted; the tracers and peers it started were stopped and kernel.bpf_stats_enabled restored; \
             rerun `cargo xtask bench` (--only/--tracers for a subset)"
        );
    }
    Ok(())
}

/// Sleeps `d`, waking early (with an error) on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Puts the child in a process group of its own and has the kernel SIGKILL
/// it if the bench dies.
pub fn own_group_and_die_with_us(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running child with its stderr collected line by line by a thread.
pub struct Spawned {
    /// What it is, for messages (`tracer daemon`, `bpftrace`...).
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Its stderr lines read so far.
    pub stderr: Vec<String>,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` with stdin closed, stdout to `stdout`, stderr collected.
    pub fn start(name: &str, mut cmd: Command, stdout: Stdio) -> Result<Self> {
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
        own_group_and_die_with_us(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("could not start `{}`", crate::util::display(&cmd)))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Spawned { name: name.to_owned(), child, lines: rx, reader: Some(reader), stderr: Vec::new(), status: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last stderr lines, for messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let len = self.stderr.len();
        self.stderr[len.saturating_sub(n)..].join(" | ")
    }

    /// Takes the stderr lines that arrived so far.
    pub fn drain_stderr(&mut self) {
        self.stderr.extend(self.lines.try_iter());
    }

    /// Whether it has exited (then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for a stderr line containing `marker`; returns it.
    pub fn wait_stderr(&mut self, marker: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} printed no line containing {marker:?} within {} s (stderr: {})",
                    self.name,
                    timeout.as_secs(),
                    self.stderr_tail(3)
                );
            }
            match self.lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    let ready = line.contains(marker);
                    self.stderr.push(line.clone());
                    if ready {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    self.status = status;
                    bail!(
                        "{} exited ({}) before it was ready: {}",
                        self.name,
                        status.map_or("unknown status".into(), |s| s.to_string()),
                        self.stderr_tail(3)
                    );
                }
            }
        }
    }

    /// Fails if it has exited already (it should be running).
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.exited() {
            self.drain_stderr();
            bail!("{} exited ({status}) while it should be running: {}", self.name, self.stderr_tail(3));
        }
        Ok(())
    }

    /// SIGINTs it and waits up to `timeout` for it to exit (then SIGKILLs it);
    /// collects the rest of its stderr.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if self.status.is_none() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not exit within {} s of SIGINT (killed it)", self.name, timeout.as_secs());
            }
            thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().ok();
        }
        self.drain_stderr();
        Ok(status)
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            self.child.kill().ok();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to completion (stdout and stderr captured) within `timeout`,
/// killing it on timeout or Ctrl-C.
pub fn output(mut cmd: Command, timeout: Duration) -> Result<std::process::Output> {
    let line = crate::util::display(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    own_group_and_die_with_us(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("could not run `{line}`"))?;
    // Readers so that a full pipe cannot stall the child.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for `{line}`"))? {
            break status;
        }
        if interrupted() || Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            check_interrupted()?;
            bail!("`{line}` did not finish within {} s (killed it)", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ready_and_stop() {
        let dir = std::env::temp_dir().join(format!("xtask-procs-test-{}", std::process::id()));
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
        let file = fs::File::create(&out).unwrap();
        let mut t = Spawned::start("fake", Command::new(&fake), file.into()).unwrap();
        let line = t.wait_stderr("tracing", Duration::from_secs(10)).unwrap();
        assert_eq!(line, "tracing: attached");
        t.ensure_running().unwrap();
        let status = t.stop(Duration::from_secs(10)).unwrap();
        assert!(status.success());
        assert_eq!(t.stderr.last().map(String::as_str), Some("summary: lost 4"));
        assert_eq!(fs::read_to_string(&out).unwrap(), "{\"kind\":\"exec\"}\n");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn early_exit_and_timeout() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'no BTF here' >&2; exit 3"]);
        let mut t = Spawned::start("fake", cmd, Stdio::null()).unwrap();
        let err = t.wait_stderr("tracing", Duration::from_secs(10)).unwrap_err().to_string();
        assert!(err.contains("exited") && err.contains("no BTF here"), "{err}");

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let err = output(cmd, Duration::from_millis(100)).unwrap_err().to_string();
        assert!(err.contains("did not finish"), "{err}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let o = output(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!((o.stdout.as_slice(), o.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    }
}
