//! A `tracer daemon` started by a test on a socket of its own, queried over the socket
//! directly from the test process (no client processes), and a subscription to it.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{TempDir, procfs::task_children, tracer::TRACER};

/// How long a daemon may take to say it serves, and to stop after SIGTERM.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one request may take to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What the daemon prints on stderr once it serves.
const READY_LINE: &str = "tracer: daemon tracing; serving ";

#[derive(Default)]
struct Output {
    text: String,
    ended: bool,
}

/// Lines of a child's stream, collected by a thread as they come.
#[derive(Clone, Default)]
struct Collected(Arc<(Mutex<Output>, Condvar)>);

impl Collected {
    fn lock(&self) -> MutexGuard<'_, Output> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        me.lock().text.push_str(&String::from_utf8_lossy(&line));
                        me.0.1.notify_all();
                    }
                }
            }
            me.lock().ended = true;
            me.0.1.notify_all();
        })
    }

    /// Waits until the text contains `needle` (true), the stream ends, or `until`.
    fn wait_for(&self, needle: &str, until: Instant) -> bool {
        let mut out = self.lock();
        loop {
            if out.text.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if out.ended || now >= until {
                return false;
            }
            out = self.0.1.wait_timeout(out, until - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// A running daemon. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Daemon {
    child: Option<Child>,
    /// The daemon's pid: the child's, or (under a wrapper such as strace) the wrapper's child.
    pid: u32,
    socket: PathBuf,
    stderr: Collected,
    reader: Option<JoinHandle<()>>,
    desc: String,
    _dir: Option<TempDir>,
}

impl Daemon {
    /// `tracer daemon --socket TMP/tracer.sock EXTRA...`, once it serves.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(&[], extra)
    }

    /// Like [`Daemon::start`], with the daemon run as `WRAPPER... tracer daemon ...`
    /// (e.g. under strace); the wrapper must run the daemon as its only child.
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Daemon {
        let dir = TempDir::new("tree-daemon");
        let socket = dir.path().join("tracer.sock");
        Daemon::launch(wrapper, extra, &[], socket, Some(dir))
    }

    /// Like [`Daemon::start`], on a socket path of the caller's (which keeps its
    /// directory: a daemon started there again after a crash finds the old socket).
    pub fn start_at(socket: &std::path::Path, extra: &[&str]) -> Daemon {
        Daemon::launch(&[], extra, &[], socket.to_path_buf(), None)
    }

    /// Like [`Daemon::start`], with environment variables set (e.g. `RUST_LOG`).
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new("tree-daemon");
        let socket = dir.path().join("tracer.sock");
        Daemon::launch(&[], extra, envs, socket, Some(dir))
    }

    fn launch(
        wrapper: &[&str],
        extra: &[&str],
        envs: &[(&str, &str)],
        socket: PathBuf,
        dir: Option<TempDir>,
    ) -> Daemon {
        let mut argv: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        argv.push(TRACER.to_string());
        argv.extend(["daemon".to_string(), "--socket".to_string(), socket.display().to_string()]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        let desc = argv.join(" ");
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
        let stderr = Collected::default();
        let reader = stderr.spawn(child.stderr.take().expect("stderr is piped"));
        let pid = child.id();
        let mut d = Daemon { child: Some(child), pid, socket, stderr, reader: Some(reader), desc, _dir: dir };
        let ready = d.stderr.wait_for(READY_LINE, Instant::now() + READY_TIMEOUT);
        if !ready {
            let status = d.kill();
            panic!(
                "`{}` did not say it serves within {READY_TIMEOUT:?} ({}); stderr:\n{}",
                d.desc,
                status.map_or("killed".to_string(), |s| s.to_string()),
                d.stderr()
            );
        }
        if !wrapper.is_empty() {
            d.pid = only_child(pid).unwrap_or_else(|| panic!("`{}`: the wrapper has no single child", d.desc));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The socket it serves.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// SIGKILL, as a crash would end it; waits for the end.
    pub fn sigkill(mut self) {
        signal(self.pid, libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// The daemon's stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().text.clone()
    }

    /// Sends one request line and returns the answer line, parsed. Panics (with the
    /// daemon's stderr) if it does not answer in time or the answer is not `ok`.
    pub fn request(&self, request: &Value) -> Value {
        let mut conn = self.connect();
        let mut line = serde_json::to_vec(request).expect("serialize request");
        line.push(b'\n');
        conn.write_all(&line).unwrap_or_else(|e| panic!("writing to {}: {e}", self.socket.display()));
        let mut r = BufReader::with_capacity(1 << 20, conn);
        let mut answer = Vec::new();
        if let Err(e) = r.read_until(b'\n', &mut answer) {
            panic!("no answer to {request} from the daemon: {e}; stderr:\n{}", self.stderr());
        }
        let v: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!("answer to {request} is not JSON ({e}): {:?}", String::from_utf8_lossy(&answer))
        });
        assert_eq!(v.get("ok"), Some(&Value::Bool(true)), "request {request} failed: {v}");
        v
    }

    fn connect(&self) -> UnixStream {
        let conn = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}; stderr:\n{}", self.socket.display(), self.stderr()));
        conn.set_read_timeout(Some(REQUEST_TIMEOUT)).expect("set_read_timeout");
        conn.set_write_timeout(Some(REQUEST_TIMEOUT)).expect("set_write_timeout");
        conn
    }

    /// The live tree (`{"degraded","lost","processes"}`), or the subtree of `pid`.
    pub fn snapshot(&self, pid: Option<u32>) -> Value {
        let mut req = serde_json::json!({"verb": "snapshot", "format": "json"});
        if let Some(pid) = pid {
            req["filter"] = serde_json::json!({ "pid": pid });
        }
        let mut v = self.request(&req);
        let snap = v["snapshot"].take();
        assert!(snap["processes"].is_array(), "snapshot without a `processes` array: {snap}");
        snap
    }

    /// The containers it sees (the `containers` verb's list).
    pub fn containers(&self) -> Vec<Value> {
        self.request(&serde_json::json!({"verb": "containers"}))["containers"].as_array().cloned().unwrap_or_default()
    }

    /// The daemon's counters.
    pub fn stats(&self) -> Value {
        self.request(&serde_json::json!({"verb": "stats"}))["stats"].take()
    }

    /// Subscribes to all events; returns once the first snapshot came (so events of
    /// anything started after this call are on the way).
    pub fn subscribe(&self) -> Subscription {
        let mut conn = self.connect();
        conn.write_all(b"{\"verb\":\"subscribe\",\"format\":\"json\"}\n").expect("write subscribe");
        conn.set_read_timeout(None).expect("set_read_timeout");
        let sub = Subscription::new(conn);
        let first = sub.wait_for_within("the subscription's first snapshot", REQUEST_TIMEOUT, |st| st.first.is_some());
        assert!(first, "no first snapshot on the subscription; stderr:\n{}", self.stderr());
        sub
    }

    /// SIGTERM; waits for the end. Returns its stderr. Panics if it
    /// does not end in time, ends unsuccessfully or leaves its socket behind.
    pub fn stop(mut self) -> String {
        signal(self.pid, libc::SIGTERM);
        let mut child = self.child.take().expect("daemon is running");
        let status = wait_until(&mut child, Instant::now() + STOP_TIMEOUT);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr();
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{}` did not end within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{stderr}", self.desc);
        };
        assert!(status.success(), "`{}` ended with {status} after SIGTERM; stderr:\n{stderr}", self.desc);
        assert!(!self.socket.exists(), "the daemon left its socket {} behind", self.socket.display());
        stderr
    }

    /// Stops the daemon however it goes; the exit status if it ended by itself.
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(self.pid, libc::SIGTERM);
        let status = wait_until(&mut child, Instant::now() + STOP_TIMEOUT);
        if status.is_none() {
            signal(self.pid, libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill with a pid we started and a valid signal number.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn wait_until(child: &mut Child, until: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// The only child of `pid` (from /proc; the test may read /proc, the daemon may not).
fn only_child(pid: u32) -> Option<u32> {
    let kids = task_children(pid);
    (kids.len() == 1).then(|| kids[0])
}

/// What a subscription received so far.
#[derive(Default)]
pub struct SubState {
    /// The first line's snapshot.
    pub first: Option<Value>,
    /// The `event` objects, in order.
    pub events: Vec<Value>,
    /// Lines that are neither (missed-lines notices, errors), for messages.
    pub other: Vec<String>,
    pub ended: bool,
}

/// An open subscription, read by a thread. Dropping it closes the connection.
pub struct Subscription {
    conn: UnixStream,
    shared: Arc<(Mutex<SubState>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    fn new(conn: UnixStream) -> Subscription {
        let shared: Arc<(Mutex<SubState>, Condvar)> = Arc::default();
        let read = conn.try_clone().expect("clone the subscription stream");
        let sh = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, read);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let v: Option<Value> = serde_json::from_slice(&line).ok();
                let mut st = sh.0.lock().unwrap_or_else(|e| e.into_inner());
                match v {
                    Some(mut v) if v.get("event").is_some() => st.events.push(v["event"].take()),
                    Some(mut v) if st.first.is_none() && v.get("ok") == Some(&Value::Bool(true)) => {
                        st.first = Some(v["snapshot"].take())
                    }
                    _ => {
                        let text = String::from_utf8_lossy(&line);
                        st.other.push(text.chars().take(300).collect())
                    }
                }
                drop(st);
                sh.1.notify_all();
            }
            sh.0.lock().unwrap_or_else(|e| e.into_inner()).ended = true;
            sh.1.notify_all();
        });
        Subscription { conn, shared, reader: Some(reader) }
    }

    pub fn lock(&self) -> MutexGuard<'_, SubState> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `cond` holds (true) or `timeout` passes (false, said on stderr).
    pub fn wait_for_within(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&SubState) -> bool) -> bool {
        let until = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if cond(&st) {
                return true;
            }
            let now = Instant::now();
            if st.ended || now >= until {
                eprintln!("waited {timeout:?} for {what} on the subscription: not seen (ended: {})", st.ended);
                return false;
            }
            st = self.shared.1.wait_timeout(st, until - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
