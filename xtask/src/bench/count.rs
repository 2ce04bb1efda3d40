//! Counting the worker's events in each tracer's output, and what each one
//! says it lost.
//!
//! - tracer (`events --json`): one JSON object per line; the worker's are
//!   `fork`/`exec`/`exit` with `ppid` = the worker (its children), or
//!   `clone`/`thread_exit` with `pid` = the worker (its threads).
//! - bpftrace: our script's lines `fork PID TID CHILD COMM`, `exec PID TID
//!   COMM`, `exit PID TID COMM`, and its own `Lost N events`.
//! - perf: `perf script` lines `COMM PID/TID sched:sched_process_X: ...`, and
//!   `PERF_RECORD_LOST ... lost N` records (`--show-lost-events`).
//!
//! The peers' records are the raw tracepoints: the worker's are the forks it
//! made (`pid` = the worker), and the execs and exits of the tasks those forks
//! made (their tid among the forks' `child_pid`s, with the worker's comm or
//! the exec'd program's, and at most as often as the worker made that pid, so
//! that a pid reused by another process during the run is not counted).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::worker::Workload;

/// The worker's events found in one output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The worker's events by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Lines (or records) read.
    pub lines: u64,
    /// Lines that could not be read as records.
    pub unparsed: u64,
    /// What the output itself says was lost (tracer `lost` lines, bpftrace's
    /// `Lost N events`, perf's LOST records).
    pub lost: Option<u64>,
    /// Events the daemon did not deliver to this subscriber (`missed` lines).
    pub missed: u64,
}

impl Delivery {
    pub fn delivered(&self) -> u64 {
        self.by_kind.values().sum()
    }

    fn add_lost(&mut self, n: u64) {
        self.lost = Some(self.lost.unwrap_or(0) + n);
    }
}

// ----------------------------------------------------------------- tracer ----

/// Integer value of a JSON field (a number, or a string of digits).
fn num(v: &Value, field: &str) -> Option<u64> {
    match v.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Counts the worker's events in `tracer events --json` output.
pub fn tracer_json(lines: impl Iterator<Item = String>, workload: Workload, worker: u32) -> Delivery {
    let kinds = workload.tracer_kinds();
    let pid = u64::from(worker);
    let mut d = Delivery::default();
    for line in lines {
        d.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            d.unparsed += 1;
            continue;
        };
        let Some(kind) = v.get("kind").and_then(Value::as_str) else {
            d.unparsed += 1;
            continue;
        };
        match kind {
            "lost" => d.add_lost(num(&v, "lost").unwrap_or(0)),
            "missed" => d.missed += num(&v, "missed").unwrap_or(0),
            _ => {}
        }
        let ours = if workload.by_tgid() { num(&v, "pid") == Some(pid) } else { num(&v, "ppid") == Some(pid) };
        if ours && kinds.contains(&kind) {
            *d.by_kind.entry(kind.to_owned()).or_default() += 1;
        }
    }
    d
}

pub fn tracer_file(path: &Path, workload: Workload, worker: u32) -> Result<Delivery> {
    Ok(tracer_json(read_lines(path)?, workload, worker))
}

fn read_lines(path: &Path) -> Result<impl Iterator<Item = String>> {
    let file = File::open(path).with_context(|| format!("bench: opening {}", path.display()))?;
    Ok(BufReader::new(file).lines().map_while(|l| l.ok()))
}

// ------------------------------------------------------------------ peers ----

/// One raw tracepoint hit, as a peer printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// The current task's process (tgid).
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fork { child: u32 },
    Exec,
    Exit,
}

/// A line of a peer's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Record(Record),
    Lost(u64),
    Other,
}

/// The bpftrace script: the three tracepoints, one line each, comm last (it
/// may hold spaces).
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:sched:sched_process_fork { printf(\"fork %d %d %d %s\\n\", pid, tid, args->child_pid, comm); }
tracepoint:sched:sched_process_exec { printf(\"exec %d %d %s\\n\", pid, tid, comm); }
tracepoint:sched:sched_process_exit { printf(\"exit %d %d %s\\n\", pid, tid, comm); }
";

pub fn bpftrace_line(line: &str) -> Line {
    let mut it = line.splitn(2, ' ');
    let (Some(word), Some(rest)) = (it.next(), it.next()) else { return Line::Other };
    if word == "Lost" {
        // `Lost 123 events`
        return rest.split_whitespace().next().and_then(|n| n.parse().ok()).map_or(Line::Other, Line::Lost);
    }
    let n_nums = match word {
        "fork" => 3,
        "exec" | "exit" => 2,
        _ => return Line::Other,
    };
    let mut fields = rest.splitn(n_nums + 1, ' ');
    let mut nums = [0u32; 3];
    for slot in nums.iter_mut().take(n_nums) {
        match fields.next().and_then(|f| f.parse().ok()) {
            Some(n) => *slot = n,
            None => return Line::Other,
        }
    }
    let comm = fields.next().unwrap_or("").to_owned();
    let kind = match word {
        "fork" => Kind::Fork { child: nums[2] },
        "exec" => Kind::Exec,
        _ => Kind::Exit,
    };
    Line::Record(Record { kind, pid: nums[0], tid: nums[1], comm })
}

/// A line of `perf script -F comm,pid,tid,event,trace --show-lost-events`.
pub fn perf_line(line: &str) -> Line {
    if line.contains("PERF_RECORD_LOST") {
        // `... PERF_RECORD_LOST lost 123` (or LOST_SAMPLES): the number after the last `lost`.
        let words: Vec<&str> = line.split_whitespace().collect();
        return words
            .iter()
            .rposition(|w| *w == "lost")
            .and_then(|i| words.get(i + 1))
            .and_then(|n| n.parse().ok())
            .map_or(Line::Other, Line::Lost);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(ev) = words.iter().position(|w| w.starts_with("sched:sched_process_") && w.ends_with(':')) else {
        return Line::Other;
    };
    let Some((pid, tid)) = ev.checked_sub(1).and_then(|i| words[i].split_once('/')) else { return Line::Other };
    let (Ok(pid), Ok(tid)) = (pid.parse(), tid.parse()) else { return Line::Other };
    // The comm is what precedes "PID/TID" (it may hold spaces).
    let comm = line.split(&format!(" {}", words[ev - 1])).next().unwrap_or("").trim().to_owned();
    let kind = match words[ev].trim_start_matches("sched:sched_process_").trim_end_matches(':') {
        "fork" => {
            let Some(child) = words[ev + 1..].iter().find_map(|w| w.strip_prefix("child_pid=")?.parse().ok()) else {
                return Line::Other;
            };
            Kind::Fork { child }
        }
        "exec" => Kind::Exec,
        "exit" => Kind::Exit,
        _ => return Line::Other,
    };
    Line::Record(Record { kind, pid, tid, comm })
}

/// Counts the worker's events among a peer's lines (see the module doc).
/// `worker_comm`: the worker's comm (its forked children's and threads' too).
pub fn peer(
    lines: impl Iterator<Item = String>,
    parse: fn(&str) -> Line,
    workload: Workload,
    worker: u32,
    worker_comm: &str,
) -> Delivery {
    let mut d = Delivery::default();
    let mut records = Vec::new();
    for line in lines {
        d.lines += 1;
        match parse(&line) {
            Line::Record(r) => records.push(r),
            Line::Lost(n) => d.add_lost(n),
            Line::Other => d.unparsed += 1,
        }
    }
    // Forks first, in a pass of their own: a child's exit may be printed before
    // its fork (other CPU, other buffer). A child's exec and exit count at most
    // as many times as the worker made that pid (pids are reused, fast on a
    // busy host: a burst run wraps pid_max several times).
    let mut children: HashMap<u32, u64> = HashMap::new();
    let mut forks = 0;
    for r in &records {
        if let Kind::Fork { child } = r.kind
            && r.pid == worker
        {
            *children.entry(child).or_default() += 1;
            forks += 1;
        }
    }
    // The exec'd children's exec and exit bear the program's name; the forked
    // children and the threads the worker's. perf names a task it has no comm
    // for `:TID`.
    let comm = if workload == Workload::Exec { super::worker::exec_comm() } else { worker_comm };
    let ours = |r: &Record| children.contains_key(&r.tid) && (r.comm == comm || r.comm.starts_with(':'));
    let capped = |kind: Kind| -> u64 {
        let mut per_child: HashMap<u32, u64> = HashMap::new();
        for r in records.iter().filter(|r| r.kind == kind && ours(r)) {
            *per_child.entry(r.tid).or_default() += 1;
        }
        per_child.iter().map(|(tid, n)| (*n).min(children[tid])).sum()
    };
    let execs = if workload == Workload::Exec { capped(Kind::Exec) } else { 0 };
    for (name, n) in [("fork", forks), ("exec", execs), ("exit", capped(Kind::Exit))] {
        if n > 0 {
            d.by_kind.insert(name.to_owned(), n);
        }
    }
    d
}

pub fn peer_file(
    path: &Path,
    parse: fn(&str) -> Line,
    workload: Workload,
    worker: u32,
    worker_comm: &str,
) -> Result<Delivery> {
    Ok(peer(read_lines(path)?, parse, workload, worker, worker_comm))
}

/// The number after the last `lost` in the tracer's stderr summary
/// (`...; lost 3; repairs 0; ...`).
pub fn summary_lost(lines: &[String]) -> Option<u64> {
    lines.iter().rev().find_map(|line| {
        line.rmatch_indices("lost").find_map(|(i, _)| {
            let rest =
                line[i + 4..].trim_start_matches(|c: char| c == '"' || c == ':' || c == '=' || c.is_whitespace());
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> impl Iterator<Item = String> + '_ {
        text.lines().map(str::to_owned)
    }

    #[test]
    fn tracer_counts() {
        let out = [
            r#"{"kind":"fork","pid":101,"tid":101,"ppid":100}"#,
            r#"{"kind":"exec","pid":101,"tid":101,"ppid":100}"#,
            r#"{"kind":"exit","pid":101,"tid":101,"ppid":100}"#,
            r#"{"kind":"fork","pid":201,"tid":201,"ppid":200}"#,
            r#"{"kind":"clone","pid":100,"tid":102,"ppid":1}"#,
            r#"{"kind":"thread_exit","pid":100,"tid":102,"ppid":1}"#,
            r#"{"kind":"lost","lost":7,"total":7}"#,
            r#"{"kind":"missed","missed":3}"#,
            r#"{"kind":"missed","missed":2}"#,
            "not json",
        ]
        .join("\n");
        let f = tracer_json(lines(&out), Workload::Fork, 100);
        assert_eq!(f.by_kind, BTreeMap::from([("fork".into(), 1), ("exit".into(), 1)]));
        assert_eq!((f.lines, f.unparsed, f.lost, f.missed), (10, 1, Some(7), 5));
        let e = tracer_json(lines(&out), Workload::Exec, 100);
        assert_eq!(e.delivered(), 3);
        let t = tracer_json(lines(&out), Workload::Burst, 100);
        assert_eq!(t.by_kind, BTreeMap::from([("clone".into(), 1), ("thread_exit".into(), 1)]));
        assert_eq!(tracer_json(lines(""), Workload::Fork, 100).lost, None);
    }

    #[test]
    fn bpftrace_lines() {
        assert_eq!(
            bpftrace_line("fork 100 100 101 xtask"),
            Line::Record(Record { kind: Kind::Fork { child: 101 }, pid: 100, tid: 100, comm: "xtask".into() })
        );
        assert_eq!(
            bpftrace_line("exit 5 6 tokio worker 1"),
            Line::Record(Record { kind: Kind::Exit, pid: 5, tid: 6, comm: "tokio worker 1".into() })
        );
        assert_eq!(bpftrace_line("Lost 1234 events"), Line::Lost(1234));
        assert_eq!(bpftrace_line("Attaching 3 probes..."), Line::Other);
        assert_eq!(bpftrace_line("fork 1 x 3 c"), Line::Other);
        assert_eq!(bpftrace_line(""), Line::Other);
    }

    #[test]
    fn perf_lines() {
        assert_eq!(
            perf_line(
                "            bash  4131/4131  sched:sched_process_fork: comm=bash pid=4131 child_comm=bash child_pid=4132"
            ),
            Line::Record(Record { kind: Kind::Fork { child: 4132 }, pid: 4131, tid: 4131, comm: "bash".into() })
        );
        assert_eq!(
            perf_line(
                "  Web Content   77/80  sched:sched_process_exit: comm=Web Content pid=80 prio=120 group_dead=false"
            ),
            Line::Record(Record { kind: Kind::Exit, pid: 77, tid: 80, comm: "Web Content".into() })
        );
        assert_eq!(
            perf_line(
                "            true  4200/4200  sched:sched_process_exec: filename=/bin/true pid=4200 old_pid=4200"
            ),
            Line::Record(Record { kind: Kind::Exec, pid: 4200, tid: 4200, comm: "true".into() })
        );
        assert_eq!(perf_line("           perf     0 [000]     0.000000: PERF_RECORD_LOST lost 42"), Line::Lost(42));
        assert_eq!(perf_line("PERF_RECORD_LOST_SAMPLES lost 9"), Line::Lost(9));
        assert_eq!(perf_line("'trace' not valid for hardware events. Ignoring."), Line::Other);
    }

    #[test]
    fn peer_counts() {
        // Worker 100 forks 101 and 102, which exec; 102's exit comes before its
        // fork; 103 is someone else's child; 101 reused by another program, and
        // by another `true`, exits too.
        let text = "\
exit 102 102 true
fork 100 100 101 bench-worker
exec 101 101 true
exit 101 101 true
fork 100 100 102 bench-worker
exec 102 102 true
fork 50 50 103 bash
exit 103 103 bash
exec 101 101 sshd
exec 101 101 true
exit 101 101 true
Lost 5 events
Attaching 3 probes...";
        let d = peer(lines(text), bpftrace_line, Workload::Exec, 100, "bench-worker");
        assert_eq!(d.by_kind, BTreeMap::from([("fork".into(), 2), ("exec".into(), 2), ("exit".into(), 2)]));
        assert_eq!((d.lost, d.lines, d.unparsed), (Some(5), 13, 1));
        // Forked children exit under the worker's comm.
        let d = peer(lines(text), bpftrace_line, Workload::Fork, 100, "bench-worker");
        assert_eq!(d.by_kind, BTreeMap::from([("fork".into(), 2)]));
        let text = "fork 100 100 101 bench-worker\nexit 101 101 bench-worker\nexit 101 101 bench-worker\n";
        let d = peer(lines(text), bpftrace_line, Workload::Fork, 100, "bench-worker");
        assert_eq!(d.by_kind, BTreeMap::from([("fork".into(), 1), ("exit".into(), 1)]));
        // Threads: clone as fork by the worker, exit of the thread (tid) in the
        // worker (pid); a `true` that got a thread's tid after it is not counted,
        // neither its exec nor its exit; perf's `:TID` comm is.
        let text = "fork 100 100 110 bench-worker\nexit 100 110 bench-worker\nexit 100 100 bench-worker\n\
                    fork 100 100 111 bench-worker\nexit 100 111 :111\nexec 110 110 true\nexit 110 110 true\n";
        let d = peer(lines(text), bpftrace_line, Workload::Burst, 100, "bench-worker");
        assert_eq!(d.by_kind, BTreeMap::from([("fork".into(), 2), ("exit".into(), 2)]));
        assert_eq!(d.lost, None);
    }

    #[test]
    fn lost_in_summary() {
        let l = |s: &str| summary_lost(&[s.to_owned()]);
        assert_eq!(l("tracer: 10 events (exec 7, exit 3); lost 3; repairs 0; malformed 0"), Some(3));
        assert_eq!(l(r#"{"events":10,"lost":7}"#), Some(7));
        assert_eq!(l("nothing lost"), None);
        assert_eq!(summary_lost(&["lost 1".into(), "final: lost 2".into(), "bye".into()]), Some(2));
    }
}
