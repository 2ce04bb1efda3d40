//! Workloads: a process started by a test, its stdout read line by line with timeouts,
//! its stdin held open (so it can be told to go on or to end), killed on drop; a process
//! group, stopped as a group; and small C programs built for a test.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{TempDir, run};

/// A process started by a test (see the module's doc).
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    name: String,
    /// Kill its whole process group on drop (it leads one).
    group: bool,
    done: Option<ExitStatus>,
}

impl Workload {
    /// Spawns `cmd` with stdin and stdout piped (stderr inherited).
    pub fn spawn(name: &str, cmd: &mut Command) -> Workload {
        Workload::spawn_inner(name, cmd, false)
    }

    /// Like [`Workload::spawn`], as the leader of a new process group, killed as a group.
    pub fn spawn_group(name: &str, cmd: &mut Command) -> Workload {
        Workload::spawn_inner(name, cmd.process_group(0), true)
    }

    fn spawn_inner(name: &str, cmd: &mut Command, group: bool) -> Workload {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Workload { child, stdin, lines, name: name.to_string(), group, done: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line; panics if none comes within `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{} (pid {}) printed no line within {timeout:?} ({e}); exit status: {status:?}",
                    self.name,
                    self.pid()
                )
            }
        }
    }

    /// Writes a line to its stdin.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap_or_else(|| panic!("{}: stdin already closed", self.name));
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("writing to {}'s stdin: {e}", self.name));
    }

    /// Closes its stdin (EOF tells the workloads of these tests to end).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.done.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for its end; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.done {
            return s;
        }
        let until = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.done = Some(s);
                    return s;
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!("{} (pid {}) did not end within {timeout:?}", self.name, self.pid()),
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }

    /// Waits for its end and asserts it exited 0.
    pub fn wait_ok(&mut self, timeout: Duration) {
        let s = self.wait(timeout);
        assert!(s.success(), "{} (pid {}) ended with {s}", self.name, self.pid());
    }

    /// Sends `sig` to it (or to its group).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill with our child's pid (or its group) and a valid signal number.
        unsafe { libc::kill(if self.group { -pid } else { pid }, sig) };
    }

    /// Everything else it prints until its stdout closes (at most `timeout`).
    pub fn rest(&mut self, timeout: Duration) -> Vec<String> {
        let until = Instant::now() + timeout;
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
            v.push(l);
        }
        v
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stdin = None;
        if self.group {
            self.signal(libc::SIGKILL);
        }
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A process group (`setsid`), sent SIGTERM then SIGKILL on drop.
pub struct Group {
    child: Child,
    name: &'static str,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Group {
        Group::spawn_as(name, cmd.process_group(0))
    }

    /// Spawns `cmd`, which makes its own group (`setsid PROG`: setsid(1) execs in
    /// place only when it does not lead a group already).
    pub fn spawn_as(name: &'static str, cmd: &mut Command) -> Group {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Group { child, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        if let Ok(Some(_)) = self.child.try_wait() {
            // The leader is gone; anything left in its group still goes.
            // SAFETY: kill with a process group id we created and a valid signal.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return;
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                // SAFETY: as above.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} (pid {pgid}) ignored SIGTERM for 10 s: killing its group", self.name);
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A C program built for a test, in its own temporary directory.
pub struct CProgram {
    _dir: TempDir,
    pub path: PathBuf,
}

/// Builds `source` with `cc -O2 -Wall -Werror -pthread` into an executable named `name`
/// (so its comm is `name`, cut to 15 bytes). Panics with the compiler's output on failure.
/// Callers check [`require_tool`](super::require_tool)`("cc")` first.
pub fn compile_c(name: &str, source: &str) -> CProgram {
    let dir = TempDir::new(name);
    let src = dir.path().join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write C source");
    let path = dir.path().join(name);
    let out = run(
        Command::new("cc").args(["-O2", "-Wall", "-Werror", "-pthread", "-o"]).arg(&path).arg(&src),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "cc failed to build {name} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    CProgram { _dir: dir, path }
}
