//! The `tracer` commands the cases drive, and how their output is read: `events
//! --json` as a live stream of JSON objects, `ps --json`, `stats --json`, `daemon`,
//! and `check --json`.
//!
//! Field names are those of `tracer/src/output.rs` (events), `tracer/src/render`
//! (`ps --json`) and `tracer/src/daemon/server.rs` (`stats`).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::child::{Child, capture};

/// How long a tracer may take to load its programs and say so (a start-up walk of
/// every task under emulation is slow), and to end after SIGINT or SIGTERM.
const ATTACH: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(30);
/// What `tracer daemon` prints on stderr once it serves.
const DAEMON_READY: &str = "daemon tracing; serving ";

/// A running `tracer events --json ARGS`, its events parsed as they come.
pub struct EventStream {
    child: Child,
    events: Vec<Value>,
    /// stdout lines read so far, and those of them that were not JSON objects.
    read: usize,
    bad: Vec<String>,
}

/// What a stopped `tracer events` printed.
pub struct Stopped {
    pub events: Vec<Value>,
    pub stderr: String,
}

impl EventStream {
    /// Starts it and waits until it says it is tracing.
    pub fn start(tracer: &Path, args: &[&str], deadline: Instant) -> Result<EventStream> {
        let mut cmd = Command::new(tracer);
        cmd.args(["events", "--json"]).args(args);
        let name = format!("tracer events --json {}", args.join(" "));
        let child = Child::spawn(&name, &mut cmd, false)?;
        let attached =
            child.err().wait(deadline.min(Instant::now() + ATTACH), |t| t.lines.iter().any(|l| l.contains("tracing")));
        ensure!(attached, "{name} did not say it was tracing (stderr: {})", child.err().tail(5));
        Ok(EventStream { child, events: Vec::new(), read: 0, bad: Vec::new() })
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.child.err().text()
    }

    /// Parses the lines that came since the last call.
    fn pull(&mut self) {
        for line in self.child.out().since(self.read) {
            self.read += 1;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.is_object() => self.events.push(v),
                _ => self.bad.push(line),
            }
        }
    }

    /// Waits until `cond` holds for the events so far (true), or `deadline` passes or
    /// the tracer ends (false).
    pub fn wait_for(&mut self, deadline: Instant, mut cond: impl FnMut(&[Value]) -> bool) -> bool {
        loop {
            self.pull();
            if cond(&self.events) {
                return true;
            }
            let read = self.read;
            if !self.child.out().wait(deadline, |t| t.lines.len() > read) {
                self.pull();
                return cond(&self.events);
            }
        }
    }

    /// SIGINT; waits for its end and returns what it printed. Fails if it does not end
    /// in time, ends unsuccessfully, or printed lines that are not JSON objects.
    pub fn stop(mut self, deadline: Instant) -> Result<Stopped> {
        self.child.signal(libc::SIGINT);
        let status = self.child.wait_until(deadline.min(Instant::now() + STOP))?;
        self.pull();
        let stderr = self.stderr();
        ensure!(status.success(), "{} ended with {status} after SIGINT (stderr: {})", self.child.name(), tail(&stderr));
        ensure!(
            self.bad.is_empty(),
            "{} printed {} stdout lines that are not JSON objects, e.g. {:?}",
            self.child.name(),
            self.bad.len(),
            self.bad.first()
        );
        Ok(Stopped { events: std::mem::take(&mut self.events), stderr })
    }
}

impl Stopped {
    /// The closing summary line on stderr.
    pub fn summary(&self) -> Result<Summary> {
        Summary::parse(&self.stderr).with_context(|| format!("no summary line on stderr: {}", tail(&self.stderr)))
    }
}

/// `tracer: 8 events (exec 2, exit 2, fork 4); lost 0; repairs 0; malformed 0`.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub lost: u64,
    pub malformed: u64,
}

impl Summary {
    /// Parses the last summary line of `stderr`.
    pub fn parse(stderr: &str) -> Option<Summary> {
        let line = stderr.lines().rev().find(|l| l.starts_with("tracer: ") && l.contains(" events ("))?;
        let (total, rest) = line.strip_prefix("tracer: ")?.split_once(" events (")?;
        let (_, counters) = rest.split_once(')')?;
        let counter = |name: &str| -> Option<u64> {
            counters.split(';').map(str::trim).find_map(|p| p.strip_prefix(name)?.trim().parse().ok())
        };
        Some(Summary { total: total.parse().ok()?, lost: counter("lost ")?, malformed: counter("malformed ")? })
    }
}

/// Runs `tracer ps --json ARGS`; its stdout and pid (the tracer sees itself).
pub fn ps_json(tracer: &Path, args: &[&str], deadline: Instant) -> Result<(String, u32)> {
    let mut cmd = Command::new(tracer);
    cmd.args(["ps", "--json"]).args(args);
    let name = format!("tracer ps --json {}", args.join(" "));
    let out = capture(&name, &mut cmd, deadline)?;
    ensure!(out.status.success(), "{name} ended with {} (stderr: {})", out.status, tail(&out.stderr));
    Ok((out.stdout, out.pid))
}

/// `tracer stats --json --socket SOCKET`, parsed.
pub fn stats(tracer: &Path, socket: &Path, deadline: Instant) -> Result<Value> {
    let mut cmd = Command::new(tracer);
    cmd.args(["stats", "--json", "--socket"]).arg(socket);
    let out = capture("tracer stats --json", &mut cmd, deadline)?;
    ensure!(out.status.success(), "tracer stats ended with {} (stderr: {})", out.status, tail(&out.stderr));
    serde_json::from_str(&out.stdout).with_context(|| format!("tracer stats printed no JSON: {}", tail(&out.stdout)))
}

/// A running `tracer daemon --socket SOCKET`.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts it and waits until it says it serves and its socket accepts.
    pub fn start(tracer: &Path, socket: &Path, deadline: Instant) -> Result<Daemon> {
        let mut cmd = Command::new(tracer);
        cmd.args(["daemon", "--socket"]).arg(socket);
        let child = Child::spawn("tracer daemon", &mut cmd, false)?;
        let until = deadline.min(Instant::now() + ATTACH);
        let ready = child.err().wait(until, |t| t.lines.iter().any(|l| l.contains(DAEMON_READY)));
        ensure!(ready, "tracer daemon did not say it serves (stderr: {})", child.err().tail(5));
        while UnixStream::connect(socket).is_err() {
            ensure!(Instant::now() < until, "tracer daemon's socket {} does not accept", socket.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Daemon { child, socket: socket.to_path_buf() })
    }

    /// SIGTERM; waits for its end. Fails unless it ends successfully; a socket left
    /// behind is removed and said so in the returned note.
    pub fn stop(mut self, deadline: Instant) -> Result<String> {
        self.child.signal(libc::SIGTERM);
        let status = self.child.wait_until(deadline.min(Instant::now() + STOP))?;
        let mut note = String::new();
        if self.socket.exists() {
            let _ = std::fs::remove_file(&self.socket);
            note = format!("the daemon left its socket {} behind (removed)", self.socket.display());
        }
        ensure!(
            status.success(),
            "tracer daemon ended with {status} after SIGTERM (stderr: {})",
            self.child.err().tail(5)
        );
        Ok(note)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Killed by the child's own drop; only the socket is ours to clean.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What `tracer check --json` said.
pub struct Check {
    /// The JSON on one line, or `{"error": ...}`.
    pub line: String,
    /// `NAME: REASON` of a degraded argv feature, if there is one.
    pub argv_degraded: Option<String>,
}

/// Runs `tracer check --json`. Its JSON counts even with a failure exit (it may say
/// what is missing that way); without JSON, the line is an error.
pub fn check(tracer: &Path) -> Check {
    let mut cmd = Command::new(tracer);
    cmd.args(["check", "--json"]);
    let failed = |why: String| Check { line: json!({ "error": why }).to_string(), argv_degraded: None };
    let out = match capture("tracer check --json", &mut cmd, Instant::now() + ATTACH) {
        Ok(out) => out,
        Err(e) => return failed(format!("{e:#}")),
    };
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) if v.is_object() => Check { line: v.to_string(), argv_degraded: argv_degraded(&v) },
        _ => failed(format!("tracer check --json ended with {}: {}", out.status, tail(&out.stderr))),
    }
}

/// The degraded feature whose name holds "argv", with its reason. Features are a list
/// of `{"name", "status", ...}` objects (or a map from name to such an object).
fn argv_degraded(check: &Value) -> Option<String> {
    let features: Vec<(&str, &Value)> = match check.get("features")? {
        Value::Array(list) => list.iter().filter_map(|f| Some((f.get("name")?.as_str()?, f))).collect(),
        Value::Object(map) => map.iter().map(|(k, f)| (k.as_str(), f)).collect(),
        _ => return None,
    };
    let degraded: Vec<(&str, &Value)> = features
        .into_iter()
        .filter(|(name, f)| {
            name.contains("argv") && f.get("status").and_then(Value::as_str).or_else(|| f.as_str()) == Some("degraded")
        })
        .collect();
    // The start-up one ("start-up argv") is the one about processes found at start.
    let (name, f) = degraded.iter().find(|(name, _)| name.contains("start")).or(degraded.first())?;
    let reason = ["why", "reason", "detail", "note", "message"]
        .iter()
        .find_map(|k| f.get(*k).and_then(Value::as_str))
        .unwrap_or("no reason given");
    Some(format!("{name}: {reason}"))
}

/// The last lines of `text`, for messages.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

// ---------------------------------------------------------------------------------
// Reading events

/// The events of `kind` of process `pid`, in the order printed.
pub fn of<'a>(events: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind && e["pid"] == pid).collect()
}

/// An event's `argv`, as strings.
pub fn argv(event: &Value) -> Vec<String> {
    event["argv"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

/// Whether `pid`'s process exit is among `events`.
pub fn exited(events: &[Value], pid: u32) -> bool {
    events.iter().any(|e| e["kind"] == "exit" && e["pid"] == pid)
}

/// A short form of events for messages: kind, pid and the fields that tell them apart.
pub fn show(events: &[&Value]) -> String {
    let shown: Vec<String> = events
        .iter()
        .take(12)
        .map(|e| {
            let mut s = format!("{} pid {} tid {} ppid {}", e["kind"], e["pid"], e["tid"], e["ppid"]);
            for k in ["argv", "status", "old_ppid", "cgroup_id", "cgroup_path"] {
                if let Some(v) = e.get(k) {
                    s.push_str(&format!(" {k} {v}"));
                }
            }
            s
        })
        .collect();
    let more = events.len().saturating_sub(12);
    let mut s = shown.join("; ");
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    if events.is_empty() { "(none)".into() } else { s }
}

/// Fails naming `what` if `events` does not hold exactly one event; returns it.
pub fn one<'a>(events: &[&'a Value], what: &str) -> Result<&'a Value> {
    match events {
        [e] => Ok(e),
        _ => bail!("{what}: expected exactly one event, saw {}: {}", events.len(), show(events)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_parses() {
        let s = Summary::parse("x\ntracer: 8 events (exec 2, fork 6); lost 1; repairs 0; malformed 3\n");
        assert_eq!(s, Some(Summary { total: 8, lost: 1, malformed: 3 }));
        let s = Summary::parse("tracer: 0 events (none); lost 0; repairs 0; malformed 0");
        assert_eq!(s, Some(Summary { total: 0, lost: 0, malformed: 0 }));
        assert!(Summary::parse("tracer: tracing process lifecycle events (Ctrl-C to stop)").is_none());
    }

    #[test]
    fn argv_feature_found_in_a_list_or_a_map() {
        let list = json!({"mode": "x", "features": [
            {"name": "exec", "status": "full"},
            {"name": "startup_argv", "status": "degraded", "reason": "no sleepable iterators"}]});
        assert_eq!(argv_degraded(&list).as_deref(), Some("startup_argv: no sleepable iterators"));
        let map = json!({"features": {"startup_argv": {"status": "degraded"}}});
        assert_eq!(argv_degraded(&map).as_deref(), Some("startup_argv: no reason given"));
        let full = json!({"features": [{"name": "startup_argv", "status": "full"}]});
        assert_eq!(argv_degraded(&full), None);
    }
}
