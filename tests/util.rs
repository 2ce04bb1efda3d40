//! Shared harness of the integration tests: prerequisites, a running `tracer events --json`
//! with its events collected as they come, helpers to run commands with a timeout and to
//! build small C workloads.
//!
//! Not every module uses every helper.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fmt,
    io::{BufRead, BufReader, Read},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The tracer binary under test.
pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer");

/// How long the tracer may take to attach, and to stop after SIGINT.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time [`Tracer::wait_for`] waits for a condition.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time given to stray (unexpected) events to arrive before stopping the tracer, so that
/// "exactly one" assertions can see a second one.
pub const SETTLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Prerequisites

/// Whether this runs under CI, where a missing prerequisite is an error, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Skips (returns false, with one line on stderr) or, under CI, fails.
fn missing(what: &str, ci_message: &str) -> bool {
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

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid hosts), from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4).map(Into::into))?
    })
}

/// A cgroup of the test's own on the v2 hierarchy, `tracer-it-<what>-<test pid>`.
/// On drop, what is still in it goes back to its parent and it is removed.
pub struct TestCgroup {
    pub path: PathBuf,
    pub name: String,
}

impl TestCgroup {
    /// Makes it; None (a skip, or a failure under CI) without a cgroup2 hierarchy.
    pub fn new(what: &str) -> Option<TestCgroup> {
        let Some(mount) = cgroup2_mount() else {
            missing("no cgroup2 hierarchy mounted", "integration tests need a cgroup2 hierarchy");
            return None;
        };
        let name = format!("tracer-it-{what}-{}", std::process::id());
        let path = mount.join(&name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Some(TestCgroup { path, name })
    }

    /// One named `name` on the v1 `controller` hierarchy, when this host has it.
    pub fn v1(controller: &str, name: &str) -> Option<TestCgroup> {
        let path = Path::new("/sys/fs/cgroup").join(controller).join(name);
        std::fs::create_dir(&path).ok().map(|()| TestCgroup { path, name: name.to_string() })
    }

    /// Moves process `pid` into it.
    pub fn enter(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} to {}: {e}", self.path.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().map(|p| p.join("cgroup.procs"));
        let t = Instant::now();
        while self.path.exists() && std::fs::remove_dir(&self.path).is_err() {
            if let (Ok(procs), Some(parent)) = (std::fs::read_to_string(self.path.join("cgroup.procs")), &parent) {
                for pid in procs.lines() {
                    let _ = std::fs::write(parent, pid);
                }
            }
            if t.elapsed() > Duration::from_secs(10) {
                eprintln!("warning: could not remove {}", self.path.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Events

/// One JSON line of `tracer events --json`, parsed, with the line itself for messages.
#[derive(Clone, Debug)]
pub struct Event {
    pub v: Value,
    pub line: String,
}

impl Event {
    /// A field, or a panic naming the field and showing the line.
    pub fn get(&self, key: &str) -> &Value {
        self.v.get(key).unwrap_or_else(|| panic!("event has no field `{key}`: {}", self.line))
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.get(key).as_u64().unwrap_or_else(|| panic!("field `{key}` is not an unsigned integer: {}", self.line))
    }

    pub fn u32(&self, key: &str) -> u32 {
        u32::try_from(self.u64(key)).unwrap_or_else(|_| panic!("field `{key}` is over u32: {}", self.line))
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key).as_bool().unwrap_or_else(|| panic!("field `{key}` is not a boolean: {}", self.line))
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key).as_str().unwrap_or_else(|| panic!("field `{key}` is not a string: {}", self.line))
    }

    pub fn kind(&self) -> &str {
        self.str("kind")
    }

    pub fn pid(&self) -> u32 {
        self.u32("pid")
    }

    pub fn tid(&self) -> u32 {
        self.u32("tid")
    }

    pub fn ppid(&self) -> u32 {
        self.u32("ppid")
    }

    pub fn ts(&self) -> u64 {
        self.u64("ts_ns")
    }

    /// `argv` of an exec event.
    pub fn argv(&self) -> Vec<String> {
        let a = self.get("argv").as_array().unwrap_or_else(|| panic!("`argv` is not an array: {}", self.line));
        a.iter()
            .map(|s| s.as_str().unwrap_or_else(|| panic!("`argv` holds a non-string: {}", self.line)).to_string())
            .collect()
    }

    /// `status` of an exit or thread_exit event.
    pub fn status(&self) -> &Value {
        let s = self.get("status");
        assert!(s.is_object(), "`status` is not an object: {}", self.line);
        s
    }

    /// `status.code`: Some(code) after exit(), None when killed by a signal.
    pub fn exit_code(&self) -> Option<i64> {
        let c = self.status().get("code").unwrap_or_else(|| panic!("`status` has no `code`: {}", self.line));
        if c.is_null() { None } else { Some(c.as_i64().unwrap_or_else(|| panic!("bad `status.code`: {}", self.line))) }
    }

    /// `status.signal`, e.g. "SIGKILL", or None.
    pub fn exit_signal(&self) -> Option<String> {
        let s = self.status().get("signal").unwrap_or_else(|| panic!("`status` has no `signal`: {}", self.line));
        if s.is_null() {
            None
        } else {
            Some(s.as_str().unwrap_or_else(|| panic!("bad `status.signal`: {}", self.line)).to_string())
        }
    }

    pub fn is(&self, kind: &str) -> bool {
        self.v.get("kind").and_then(Value::as_str) == Some(kind)
    }

    /// Whether this event is about process `pid` (lost records have no pid).
    pub fn of(&self, pid: u32) -> bool {
        self.v.get("pid").and_then(Value::as_u64) == Some(u64::from(pid))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// The events of process `pid`, ordered by ts_ns.
pub fn of_pid(events: &[Event], pid: u32) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().filter(|e| e.of(pid)).collect();
    v.sort_by_key(|e| e.ts());
    v
}

/// The events of any of `pids`, ordered by ts_ns.
pub fn of_pids<'a>(events: &'a [Event], pids: &[u32]) -> Vec<&'a Event> {
    let mut v: Vec<&Event> = events.iter().filter(|e| pids.iter().any(|p| e.of(*p))).collect();
    v.sort_by_key(|e| e.ts());
    v
}

/// Those of `events` of this kind.
pub fn kind<'a>(events: &[&'a Event], kind: &str) -> Vec<&'a Event> {
    events.iter().copied().filter(|e| e.is(kind)).collect()
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[&Event]) -> Vec<String> {
    events.iter().map(|e| e.kind().to_string()).collect()
}

/// Events as their JSON lines, one per line, for assertion messages (the first 400).
pub fn dump<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    const MAX: usize = 400;
    let mut s = String::new();
    let mut n = 0;
    for e in events {
        if n < MAX {
            s.push_str("    ");
            s.push_str(&e.line);
            s.push('\n');
        }
        n += 1;
    }
    if n > MAX {
        s.push_str(&format!("    ... and {} more\n", n - MAX));
    }
    if n == 0 {
        s.push_str("    (no events)\n");
    }
    s
}

/// Whether a process exit of `pid` is among `events`.
pub fn has_exit(events: &[Event], pid: u32) -> bool {
    events.iter().any(|e| e.is("exit") && e.of(pid))
}

/// Whether an exec of `pid` is among `events`.
pub fn has_exec(events: &[Event], pid: u32) -> bool {
    events.iter().any(|e| e.is("exec") && e.of(pid))
}

// ---------------------------------------------------------------------------------------
// The tracer

#[derive(Default)]
struct State {
    events: Vec<Event>,
    /// stdout lines that are not JSON objects.
    bad_lines: Vec<String>,
    stderr: String,
    /// Bumped on every line read, so waiters know when to look again.
    generation: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most `max`) until a line arrives after `seen` was the generation.
    fn wait_newer(&self, seen: u64, max: Duration) {
        let st = self.lock();
        let _ = self.changed.wait_timeout_while(st, max, |st| st.generation == seen);
    }
}

/// A running `tracer events --json [args]`. Dropping it kills the tracer.
pub struct Tracer {
    child: Option<Child>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    args: Vec<String>,
}

/// What a stopped tracer printed.
#[derive(Debug)]
pub struct Stopped {
    pub events: Vec<Event>,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Stopped {
    /// The final summary line, parsed.
    pub fn summary(&self) -> Summary {
        Summary::parse(&self.stderr)
            .unwrap_or_else(|| panic!("no summary line on the tracer's stderr:\n{}", self.stderr))
    }
}

/// `tracer: 8 events (exec 2, exit 2, fork 2, rename 2); lost 0; repairs 0; malformed 0`:
/// the total, the counts per kind, and the `; name N` counters after them (`lost` and
/// `malformed` must be there; others, like `repairs`, are kept in `counters`).
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub lost: u64,
    pub malformed: u64,
    pub counters: BTreeMap<String, u64>,
}

impl Summary {
    /// Parses the last summary line of `stderr`.
    pub fn parse(stderr: &str) -> Option<Summary> {
        let line = stderr.lines().rev().find(|l| l.starts_with("tracer: ") && l.contains(" events ("))?;
        let rest = line.strip_prefix("tracer: ")?;
        let (total, rest) = rest.split_once(" events (")?;
        let (inner, rest) = rest.split_once(')')?;
        let mut by_kind = BTreeMap::new();
        if inner != "none" {
            for part in inner.split(", ") {
                let (k, n) = part.rsplit_once(' ')?;
                by_kind.insert(k.to_string(), n.parse().ok()?);
            }
        }
        let mut counters = BTreeMap::new();
        for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, n) = part.rsplit_once(' ')?;
            counters.insert(k.to_string(), n.parse().ok()?);
        }
        Some(Summary {
            total: total.parse().ok()?,
            by_kind,
            lost: *counters.get("lost")?,
            malformed: *counters.get("malformed")?,
            counters,
        })
    }
}

#[test]
fn summary_parses() {
    let s = Summary::parse("x\ntracer: 8 events (exec 2, exit 2, fork 4); lost 1; repairs 0; malformed 3\n").unwrap();
    assert_eq!((s.total, s.lost, s.malformed), (8, 1, 3));
    assert_eq!(s.by_kind.get("fork"), Some(&4));
    assert_eq!(s.counters.get("repairs"), Some(&0));
    let s = Summary::parse("tracer: 0 events (none); lost 0; malformed 0").unwrap();
    assert!(s.by_kind.is_empty() && s.total == 0);
    assert!(Summary::parse("tracer: tracing process lifecycle events (Ctrl-C to stop)").is_none());
}

fn spawn_line_reader(
    stream: impl Read + Send + 'static,
    shared: Arc<Shared>,
    on_line: fn(&mut State, String),
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned();
                    let mut st = shared.lock();
                    on_line(&mut st, line);
                    st.generation += 1;
                    drop(st);
                    shared.changed.notify_all();
                }
            }
        }
        shared.changed.notify_all();
    })
}

fn on_stdout_line(st: &mut State, line: String) {
    match serde_json::from_str::<Value>(&line) {
        Ok(v) if v.is_object() => st.events.push(Event { v, line }),
        _ => st.bad_lines.push(line),
    }
}

fn on_stderr_line(st: &mut State, line: String) {
    st.stderr.push_str(&line);
    st.stderr.push('\n');
}

impl Tracer {
    /// Starts `tracer events --json` with `extra` arguments and waits until it has attached
    /// (its stderr says `tracing`). Panics with its stderr if it exits or times out first.
    pub fn start(extra: &[&str]) -> Tracer {
        Tracer::start_env(extra, &[])
    }

    /// [`Tracer::start`] with environment variables set.
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Tracer {
        let mut args = vec!["events".to_string(), "--json".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(TRACER)
            .args(&args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {TRACER}: {e}"));
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            spawn_line_reader(stdout, shared.clone(), on_stdout_line),
            spawn_line_reader(stderr, shared.clone(), on_stderr_line),
        ];
        let mut t = Tracer { child: Some(child), shared, readers, args };
        t.wait_attached();
        t
    }

    fn wait_attached(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let st = self.shared.lock();
            if st.stderr.contains("tracing") {
                return;
            }
            let (stderr, seen) = (st.stderr.clone(), st.generation);
            drop(st);
            if let Ok(Some(status)) = self.child_mut().try_wait() {
                // Let the reader catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                let stderr = self.stderr();
                panic!("tracer {:?} exited ({status}) before attaching; stderr:\n{stderr}", self.args);
            }
            if Instant::now() >= deadline {
                panic!("tracer {:?} did not attach within {START_TIMEOUT:?}; stderr so far:\n{stderr}", self.args);
            }
            self.shared.wait_newer(seen, Duration::from_millis(50));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("tracer is running")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("tracer is running").id()
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.clone()
    }

    /// The stderr text so far.
    pub fn stderr(&self) -> String {
        self.shared.lock().stderr.clone()
    }

    /// Waits until `cond` holds for the events so far (polled as they arrive), at most
    /// `timeout`. Returns whether it held; on a timeout says so on stderr, so that the
    /// assertions that follow show what was seen. Panics if the tracer died.
    pub fn wait_for_within(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut(&[Event]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = {
                let st = self.shared.lock();
                if cond(&st.events) {
                    return true;
                }
                st.generation
            };
            if let Ok(Some(status)) = self.child_mut().try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("tracer exited ({status}) while waiting for {what}; stderr:\n{}", self.stderr());
            }
            if Instant::now() >= deadline {
                eprintln!("timed out after {timeout:?} waiting for {what}");
                return false;
            }
            self.shared.wait_newer(seen, Duration::from_millis(20));
        }
    }

    /// [`Tracer::wait_for_within`] with [`WAIT_TIMEOUT`].
    pub fn wait_for(&mut self, what: &str, cond: impl FnMut(&[Event]) -> bool) -> bool {
        self.wait_for_within(what, WAIT_TIMEOUT, cond)
    }

    /// Waits for the process exit of `pid`, then [`SETTLE`]s.
    pub fn wait_exit(&mut self, pid: u32) -> bool {
        let ok = self.wait_for(&format!("the exit of pid {pid}"), |evs| has_exit(evs, pid));
        std::thread::sleep(SETTLE);
        ok
    }

    /// Sends SIGINT, waits for the tracer to end, and returns what it printed. Panics if it
    /// does not end in time, ends unsuccessfully, or printed stdout lines that are not JSON.
    pub fn stop(self) -> Stopped {
        let args = self.args.clone();
        let out = self.interrupt();
        assert!(
            out.status.success(),
            "tracer {args:?} ended with {} after SIGINT; stderr:\n{}",
            out.status,
            out.stderr
        );
        out
    }

    /// Like [`Tracer::stop`], but leaves checking the exit status to the caller.
    pub fn interrupt(mut self) -> Stopped {
        let mut child = self.child.take().expect("tracer is running");
        // SAFETY: kill with a valid pid of our own child and a valid signal.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.join_readers();
                    panic!(
                        "tracer {:?} did not end within {STOP_TIMEOUT:?} of SIGINT; stderr:\n{}",
                        self.args,
                        self.stderr()
                    );
                }
                Err(e) => panic!("waiting for the tracer: {e}"),
            }
        };
        self.join_readers();
        let st = std::mem::take(&mut *self.shared.lock());
        assert!(
            st.bad_lines.is_empty(),
            "tracer printed {} stdout lines that are not JSON objects, e.g.:\n{}\nstderr:\n{}",
            st.bad_lines.len(),
            st.bad_lines.iter().take(10).map(|l| format!("    {l}\n")).collect::<String>(),
            st.stderr
        );
        Stopped { events: st.events, stderr: st.stderr, status }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }
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

// ---------------------------------------------------------------------------------------
// Temporary files and C workloads

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

/// A C program built for a test, in its own temporary directory.
pub struct CProgram {
    _dir: TempDir,
    pub path: PathBuf,
}

/// Builds `source` with `cc -O2 -Wall -Werror -pthread` into an executable named `name`
/// (so its comm is `name`, cut to 15 bytes). Panics with the compiler's output on failure.
/// Callers check [`require_tool`]`("cc")` first.
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

// ---------------------------------------------------------------------------------------
// Apache httpd

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A minimal Apache httpd configuration in `dir` (logs, pid file, `htdocs`): mpm_event
/// with small children (StartServers 1, ThreadsPerChild 4, ServerLimit 16), on
/// 127.0.0.1:`port` only, so that a load grows and shrinks the child set quickly.
pub fn apache_conf(dir: &std::path::Path, port: u16) -> String {
    let d = dir.display();
    let (user, group) = if std::fs::read_to_string("/etc/passwd").is_ok_and(|s| s.contains("\nwww-data:")) {
        ("www-data", "www-data")
    } else {
        ("nobody", "nogroup")
    };
    format!(
        "ServerRoot /etc/apache2
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel info
DefaultRuntimeDir {d}
Mutex file:{d} default
User {user}
Group {group}
Timeout 5
StartServers 1
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 12
ServerLimit 16
MaxRequestWorkers 64
DocumentRoot {d}/htdocs
DirectoryIndex index.html
<Directory {d}/htdocs>
  Require all granted
</Directory>
"
    )
}
