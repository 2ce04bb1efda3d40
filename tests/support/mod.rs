//! The integration tests' fixtures and harness, kept apart from the tests: each test
//! module imports what it needs from here, and no test module from another.
//!
//! This file holds what is generic: prerequisites (a missing one skips a test with a
//! one-line reason, or fails it under `CI=true`), running a command with a timeout,
//! polling, timing, temporary directories. The fixtures are one module per concern.

/// Apache httpd on the host: a configuration of the test's own, a free port.
pub mod apache;
/// The BPF programs and links the kernel holds (bpftool): what a tracer left attached.
pub mod bpf;
/// Test cgroups (v2, or a v1 controller's), a container's cgroup id.
pub mod cgroup;
/// `tracer daemon` on a socket of the test's own: requests, subscriptions.
pub mod daemon;
/// A private dockerd and the images it runs (busybox, Apache).
pub mod docker;
/// Events of `tracer events --json`, parsed, and filters for assertions.
pub mod event;
/// The daemon's tree compared with /proc (with its own unit tests).
pub mod oracle;
/// /proc readers: processes, threads, children, a container's processes.
pub mod procfs;
/// Root filesystems: busybox, and Apache's made by debootstrap and cached.
pub mod rootfs;
/// Plain runc containers in bundles of their own.
pub mod runc;
/// A fork, exec and thread storm that runs until told to stop.
pub mod storm;
/// A tiny tmpfs to fill up.
pub mod tmpfs;
/// tmux: a terminal for `tracer watch`, its screen captured.
pub mod tmux;
/// Running the tracer binary: `tracer events`, its summary, stories, one-shot commands.
pub mod tracer;
/// Workload processes, process groups, C programs built for a test.
pub mod workload;

use std::{
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

// ---------------------------------------------------------------------------------------
// Prerequisites

/// Whether this runs under CI, where a missing prerequisite is an error, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Skips (returns false, with one line on stderr) or, under CI, fails.
pub fn missing(what: &str, ci_message: &str) -> bool {
    if under_ci() {
        panic!("{ci_message}");
    }
    eprintln!("skipping: {what}");
    false
}

/// True when running as root. Otherwise skips, or fails under `CI=true`.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    missing("not root", "integration tests need root and BPF; CI runs them as root")
}

/// Where `name` is found on PATH, if it is.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// True when the program `name` is on PATH. Otherwise skips, or fails under `CI=true`.
pub fn require_tool(name: &str) -> bool {
    if which(name).is_some() {
        return true;
    }
    missing(
        &format!("`{name}` not found on PATH"),
        &format!("integration tests need `{name}` on PATH; install it on the CI runner"),
    )
}

// ---------------------------------------------------------------------------------------
// Commands

/// Runs `cmd` to its end with stdout and stderr captured, killing it (and panicking with
/// what it printed) after `timeout`. stdin is /dev/null.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = t_out.join().unwrap_or_default();
                let stderr = t_err.join().unwrap_or_default();
                panic!(
                    "{desc} did not end within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() }
}

/// The inode number of a namespace of this process, e.g. `ns_inode("pid")` from
/// `/proc/self/ns/pid` -> `pid:[4026531836]`.
pub fn ns_inode(ns: &str) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("readlink /proc/self/ns");
    let s = link.to_string_lossy();
    s.strip_prefix(&format!("{ns}:["))
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/self/ns/{ns} link: {s}"))
}

/// The calling thread's tid.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// The last `lines` lines of `text`, for messages.
pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Waiting and timing

/// Polls `f` every 20 ms until it gives `Some`, at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Says how long a test took when it ends (passed or not).
pub struct Timed(&'static str, Instant);

impl Timed {
    pub fn start(name: &'static str) -> Timed {
        Timed(name, Instant::now())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        eprintln!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------
// Temporary files

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let name = format!(
                "tracer-it-{prefix}-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                nanos.subsec_nanos()
            );
            let path = base.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
