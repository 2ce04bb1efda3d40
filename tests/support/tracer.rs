//! Running the tracer binary: a `tracer events --json` with its events collected as they
//! come, and the summary it prints when it stops; one writing to a file (container
//! stories, or one container's events); a one-shot command's output.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    TempDir,
    event::{Event, has_exit},
};

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
/// How long [`StoryWatch::wait_for`] waits for a story (or event) to be told.
const STORY_TIMEOUT: Duration = Duration::from_secs(30);

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

    #[allow(dead_code)] // no test uses it today
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("tracer is running").id()
    }

    /// A copy of the events so far.
    #[allow(dead_code)] // no test uses it today
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

/// Runs `tracer ARGS`, which must succeed; its stdout.
pub fn tracer_out<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = super::run(Command::new(TRACER).args(args), Duration::from_secs(60));
    assert!(out.status.success(), "tracer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tracer events --containers --json` running beside a test; its stories are read
/// from the file its stdout goes to.
pub struct StoryWatch {
    child: Option<Child>,
    dir: TempDir,
}

impl StoryWatch {
    /// Starts it with `args` (`--socket S` through a daemon, or `--standalone`) and
    /// waits until it traces.
    pub fn start(args: &[&str]) -> StoryWatch {
        StoryWatch::events(&[&["--containers"], args].concat())
    }

    /// `tracer events --json ARGS` (plain events, or stories with `--containers`).
    pub fn events(args: &[&str]) -> StoryWatch {
        let dir = TempDir::new("stories");
        let child = Command::new(TRACER)
            .args(["events", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out")).expect("stories file"))
            .stderr(std::fs::File::create(dir.path().join("err")).expect("stderr file"))
            .spawn()
            .expect("start tracer events --containers");
        let w = StoryWatch { child: Some(child), dir };
        let t = Instant::now();
        while !w.stderr().contains("tracing") {
            assert!(t.elapsed() < Duration::from_secs(30), "tracer events --containers did not start: {}", w.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("err")).unwrap_or_default()
    }

    pub fn stories(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("out")).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("story line is not JSON ({e}): {l}")))
            .collect()
    }

    /// The story of `kind` about container `id`, waiting for it.
    pub fn wait_for(&self, kind: &str, id: &str, what: &str) -> Value {
        let t = Instant::now();
        loop {
            let all = self.stories();
            if let Some(s) = all.iter().find(|s| s["kind"] == kind && s["container"]["id"] == id) {
                return s.clone();
            }
            assert!(
                t.elapsed() < STORY_TIMEOUT,
                "no {kind} story for {what} ({id}) after {STORY_TIMEOUT:?}; stories:\n{}\nstderr: {}",
                all.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGINT, then its exit; its stderr (the summary).
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("tracer events --containers did not end on SIGINT: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "tracer events --containers ended with {status}: {}", self.stderr());
        self.stderr()
    }
}

impl Drop for StoryWatch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
