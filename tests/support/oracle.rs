//! The oracle: the daemon's tree compared with /proc.
//!
//! One comparison reads a daemon snapshot, then /proc, then a second snapshot. A
//! process or thread is identified by its id and its start time (`start_ns` of the
//! tracer in the 10 ms ticks of /proc's `starttime`), so a reused pid is another
//! task. A task in /proc and in neither snapshot, or in both snapshots and not in
//! /proc, is a mismatch; a task in one snapshot only came or went during the
//! comparison ("racing") and is left out, as is a field that differs between the two
//! snapshots. The racing tasks must be few. The whole comparison is tried up to
//! [`ATTEMPTS`] times, a short pause apart, to ride out bursts of unrelated activity.
//!
//! Documented exceptions:
//! - PID 1 (the sandbox agent of these VMs) and its threads are hidden from BPF: its
//!   presence, comm and thread count are compared, not its argv or thread ids; and a
//!   child it forked that has not exec'd yet (comm still one of PID 1's) may be missing.
//! - A zombie (whole group dead, not reaped) in /proc must not be alive in the tracer.
//! - Kernel threads' /proc comm may be longer than the 15 bytes of `task->comm`
//!   (kthread names, workqueue descriptions): the tracer's must be its prefix.
//! - argv is not compared where /proc's cmdline is empty because the task is exiting.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::Duration,
};

use serde_json::Value;

use super::{
    daemon::Daemon,
    procfs::{NS_PER_TICK, PF_EXITING, ProcTask, ProcThread, proc_subtree, read_proc},
};

#[cfg(test)]
mod tests;

/// Whole comparisons tried before failing.
pub const ATTEMPTS: usize = 3;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(700);
/// Pause between reading /proc and the second snapshot: the daemon drains the ring
/// buffer every 10 ms, so events of changes made before the /proc read reach it.
const SETTLE: Duration = Duration::from_millis(60);
/// Racing tasks allowed: fewer than this many, and under 5% of all.
const MAX_RACING: usize = 50;
/// Mismatch lines shown per attempt.
const MAX_LINES: usize = 150;

/// Which part of the tree to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every process.
    All,
    /// This process and its descendants (/proc's by ppid; the daemon's `filter.pid`).
    Subtree(u32),
}

/// One thread in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapThread {
    pub comm: String,
    pub start_ns: u64,
}

/// One process in a snapshot.
#[derive(Clone, Debug)]
pub struct SnapProc {
    pub pid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub comm: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub argv_unreadable: bool,
    pub nlwp: u64,
    pub kthread: bool,
    pub state: String,
    pub threads: BTreeMap<u32, SnapThread>,
}

fn field<'a>(p: &'a Value, k: &str) -> &'a Value {
    p.get(k).unwrap_or_else(|| panic!("snapshot process without `{k}`: {p}"))
}

fn num(p: &Value, k: &str) -> u64 {
    field(p, k).as_u64().unwrap_or_else(|| panic!("snapshot field `{k}` is not a number: {p}"))
}

fn flag(p: &Value, k: &str) -> bool {
    field(p, k).as_bool().unwrap_or_else(|| panic!("snapshot field `{k}` is not a boolean: {p}"))
}

fn text(p: &Value, k: &str) -> String {
    field(p, k).as_str().unwrap_or_else(|| panic!("snapshot field `{k}` is not a string: {p}")).to_string()
}

impl SnapProc {
    pub fn from_json(p: &Value) -> SnapProc {
        let threads = field(p, "threads").as_array().unwrap_or_else(|| panic!("`threads` is not an array: {p}"));
        let argv = field(p, "argv").as_array().unwrap_or_else(|| panic!("`argv` is not an array: {p}"));
        SnapProc {
            pid: num(p, "pid") as u32,
            ppid: num(p, "ppid") as u32,
            start_ns: num(p, "start_ns"),
            comm: text(p, "comm"),
            argv: argv.iter().map(|a| a.as_str().unwrap_or("<not a string>").to_string()).collect(),
            argv_truncated: flag(p, "argv_truncated"),
            argv_unreadable: flag(p, "argv_unreadable"),
            nlwp: num(p, "nlwp"),
            kthread: flag(p, "kthread"),
            state: text(p, "state"),
            threads: threads
                .iter()
                .map(|t| (num(t, "tid") as u32, SnapThread { comm: text(t, "comm"), start_ns: num(t, "start_ns") }))
                .collect(),
        }
    }

    pub fn start_tick(&self) -> u64 {
        self.start_ns / NS_PER_TICK
    }
}

/// A snapshot's processes by (pid, start tick).
pub fn snap_procs(snapshot: &Value) -> BTreeMap<(u32, u64), SnapProc> {
    let list = snapshot["processes"].as_array().unwrap_or_else(|| panic!("snapshot without processes: {snapshot}"));
    list.iter().map(SnapProc::from_json).map(|p| ((p.pid, p.start_tick()), p)).collect()
}

/// The snapshot's entry of `pid`, if it lists it.
pub fn snap_find(snapshot: &Value, pid: u32) -> Option<SnapProc> {
    snap_procs(snapshot).into_values().find(|p| p.pid == pid)
}

/// Whether the tracer's comm matches /proc's: equal, or for a kernel thread a
/// prefix (/proc shows the full kthread name and workqueue descriptions).
pub fn comm_matches(proc_comm: &str, tracer_comm: &str, kthread: bool) -> bool {
    if proc_comm == tracer_comm {
        return true;
    }
    kthread
        && !tracer_comm.is_empty()
        && proc_comm.starts_with(tracer_comm)
        && (tracer_comm.len() >= 15 || matches!(proc_comm.as_bytes()[tracer_comm.len()], b'-' | b'+'))
}

/// Whether the tracer's argv matches /proc's: equal, or when the tracer cut it, a
/// prefix of it (the last element may be cut inside).
pub fn argv_matches(proc_argv: &[String], tracer: &[String], truncated: bool) -> bool {
    if !truncated {
        return proc_argv == tracer;
    }
    let Some((last, head)) = tracer.split_last() else { return true };
    proc_argv.len() >= tracer.len()
        && proc_argv[..head.len()] == *head
        && proc_argv[head.len()].starts_with(last.as_str())
}

/// The result of one comparison.
#[derive(Debug, Default)]
pub struct Outcome {
    pub mismatches: Vec<String>,
    /// Tolerated differences (documented exceptions), for the log.
    pub tolerated: Vec<String>,
    pub racing_procs: usize,
    pub racing_threads: usize,
    pub racing_fields: usize,
    pub total_tasks: usize,
    pub procs_compared: usize,
    pub threads_compared: usize,
    pub degraded: bool,
}

impl Outcome {
    pub fn racing(&self) -> usize {
        self.racing_procs + self.racing_threads
    }

    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.racing() < MAX_RACING && self.racing() * 20 <= self.total_tasks
    }

    pub fn summary(&self) -> String {
        format!(
            "{} processes and {} threads in all three compared; racing {} processes, {} threads \
             ({} of {} tasks), {} fields; {} mismatches; degraded {}",
            self.procs_compared,
            self.threads_compared,
            self.racing_procs,
            self.racing_threads,
            self.racing(),
            self.total_tasks,
            self.racing_fields,
            self.mismatches.len(),
            self.degraded
        )
    }

    pub fn report(&self) -> String {
        let mut s = format!("  {}\n", self.summary());
        if !self.passed() && self.mismatches.is_empty() {
            let _ = writeln!(s, "  too many racing tasks (allowed: < {MAX_RACING} and <= 5%)");
        }
        for m in self.mismatches.iter().take(MAX_LINES) {
            let _ = writeln!(s, "  {m}");
        }
        if self.mismatches.len() > MAX_LINES {
            let _ = writeln!(s, "  ... and {} more", self.mismatches.len() - MAX_LINES);
        }
        for t in self.tolerated.iter().take(20) {
            let _ = writeln!(s, "  (tolerated) {t}");
        }
        s
    }
}

fn show_proc(p: &ProcTask) -> String {
    format!(
        "ppid {} comm {:?} state {} start_tick {} argv {:?} tids {:?}",
        p.ppid,
        p.comm,
        p.state,
        p.start_tick,
        p.argv,
        p.threads.keys().collect::<Vec<_>>()
    )
}

fn show_snap(p: &SnapProc) -> String {
    format!(
        "ppid {} comm {:?} state {} start_ns {} (tick {}) argv {:?} nlwp {} tids {:?}",
        p.ppid,
        p.comm,
        p.state,
        p.start_ns,
        p.start_tick(),
        p.argv,
        p.nlwp,
        p.threads.keys().collect::<Vec<_>>()
    )
}

/// Presence of one task in (first snapshot, second snapshot).
enum Presence {
    Both,
    Neither,
    Racing,
}

fn presence(a: bool, b: bool) -> Presence {
    match (a, b) {
        (true, true) => Presence::Both,
        (false, false) => Presence::Neither,
        _ => Presence::Racing,
    }
}

/// Compares one field seen in two snapshots with /proc's: `Some(mismatch)` when both
/// snapshots agree and differ from /proc; counts it racing when they disagree.
fn same<T: PartialEq + std::fmt::Debug>(
    out: &mut Outcome,
    what: &str,
    expected: &T,
    a: &T,
    b: &T,
    ok: impl Fn(&T, &T) -> bool,
) -> Option<String> {
    if a != b {
        out.racing_fields += 1;
        return None;
    }
    (!ok(expected, a)).then(|| format!("{what}: expected (/proc) {expected:?}, seen (tracer) {a:?}"))
}

/// Compares the daemon's tree with /proc once.
pub fn compare_once(d: &Daemon, scope: Scope) -> Outcome {
    let filter = match scope {
        Scope::All => None,
        Scope::Subtree(p) => Some(p),
    };
    let s1 = d.snapshot(filter);
    let all = read_proc();
    std::thread::sleep(SETTLE);
    let s2 = d.snapshot(filter);
    compare(&s1, &all, &s2, scope)
}

/// Compares /proc (`all`, read between the two snapshots) with snapshots `s1`, `s2`.
pub fn compare(s1: &Value, all: &BTreeMap<u32, ProcTask>, s2: &Value, scope: Scope) -> Outcome {
    let mut out = Outcome { degraded: s2["degraded"].as_bool().unwrap_or(true), ..Outcome::default() };
    let (m1, m2) = (snap_procs(s1), snap_procs(s2));
    let in_scope: BTreeSet<u32> = match scope {
        Scope::All => all.keys().copied().collect(),
        Scope::Subtree(root) => proc_subtree(all, root),
    };
    let proc_by_key: BTreeMap<(u32, u64), &ProcTask> =
        all.values().filter(|p| in_scope.contains(&p.pid)).map(|p| ((p.pid, p.start_tick), p)).collect();
    // Comms of PID 1's threads: a child it forked keeps one until it execs.
    let init_comms: BTreeSet<&str> =
        all.get(&1).map(|p| p.threads.values().map(|t| t.comm.as_str()).collect()).unwrap_or_default();

    let keys: BTreeSet<(u32, u64)> = m1.keys().chain(m2.keys()).chain(proc_by_key.keys()).copied().collect();
    for key in keys {
        let (pid, _) = key;
        let p = proc_by_key.get(&key).copied();
        let (a, b) = (m1.get(&key), m2.get(&key));
        out.total_tasks += 1 + p.map_or(0, |p| p.threads.len().saturating_sub(1));
        match presence(a.is_some(), b.is_some()) {
            Presence::Racing => out.racing_procs += 1,
            Presence::Neither => {
                let Some(p) = p else { continue };
                if p.zombie() {
                    continue;
                }
                if p.ppid == 1 && init_comms.contains(p.comm.as_str()) {
                    out.tolerated.push(format!("pid {pid}: a child of PID 1 that has not exec'd; {}", show_proc(p)));
                    continue;
                }
                let other = m2.values().find(|s| s.pid == pid).or_else(|| m1.values().find(|s| s.pid == pid));
                let hint = match other {
                    Some(s) => format!("; the tracer has pid {pid} with another start: {}", show_snap(s)),
                    None => String::new(),
                };
                out.mismatches.push(format!("pid {pid}: in /proc, missing from the tracer: {}{hint}", show_proc(p)));
            }
            Presence::Both => {
                let (a, b) = (a.expect("both"), b.expect("both"));
                match p {
                    None => {
                        let hint = match all.get(&pid) {
                            Some(p) => format!("; /proc has pid {pid} as: {}", show_proc(p)),
                            None => String::new(),
                        };
                        out.mismatches
                            .push(format!("pid {pid}: alive in the tracer, not in /proc: {}{hint}", show_snap(a)));
                    }
                    Some(p) if p.zombie() => out.mismatches.push(format!(
                        "pid {pid}: exited (a zombie in /proc: {}) but alive in the tracer: {}",
                        show_proc(p),
                        show_snap(a)
                    )),
                    Some(p) => compare_process(&mut out, p, a, b),
                }
            }
        }
    }
    out
}

/// Field by field, for a process in both snapshots and /proc.
fn compare_process(out: &mut Outcome, p: &ProcTask, a: &SnapProc, b: &SnapProc) {
    out.procs_compared += 1;
    let pid = p.pid;
    let mut bad: Vec<String> = Vec::new();
    bad.extend(same(out, "ppid", &p.ppid, &a.ppid, &b.ppid, |x, y| x == y));
    bad.extend(same(out, "kthread", &p.kthread(), &a.kthread, &b.kthread, |x, y| x == y));
    let kthread = p.kthread();
    bad.extend(same(out, "comm", &p.comm, &a.comm, &b.comm, |x, y| comm_matches(x, y, kthread)));
    for s in [a, b] {
        if s.nlwp != s.threads.len() as u64 {
            bad.push(format!("nlwp {} but {} threads listed: {:?}", s.nlwp, s.threads.len(), s.threads.keys()));
        }
    }

    // argv.
    let unreadable = a.argv_unreadable || b.argv_unreadable;
    if pid == 1 {
        // Hidden from BPF: argv not compared.
    } else if unreadable {
        bad.push(format!("argv_unreadable (only PID 1 may be): /proc argv {:?}", p.argv));
    } else if p.argv.is_empty() && !kthread && (matches!(p.state, 'Z' | 'X') || p.flags & PF_EXITING != 0) {
        // Exiting: its memory (and so cmdline) is gone.
    } else if a.argv != b.argv || a.argv_truncated != b.argv_truncated {
        out.racing_fields += 1;
    } else if !argv_matches(&p.argv, &a.argv, a.argv_truncated) {
        bad.push(format!(
            "argv: expected (/proc) {:?}, seen (tracer) {:?}{}",
            p.argv,
            a.argv,
            if a.argv_truncated { " (truncated)" } else { "" }
        ));
    }

    // Threads.
    let live: BTreeMap<u32, &ProcThread> = p.live_threads().map(|(t, th)| (*t, th)).collect();
    let zombie_tids: BTreeSet<u32> = p.threads.keys().filter(|t| !live.contains_key(t)).copied().collect();
    if pid == 1 {
        // Hidden from BPF: the count only.
        bad.extend(same(out, "thread count", &(live.len() as u64), &a.nlwp, &b.nlwp, |x, y| x == y));
    } else {
        let key = |tid: u32, ns: u64| (tid, ns / NS_PER_TICK);
        let t1: BTreeMap<(u32, u64), &SnapThread> = a
            .threads
            .iter()
            .filter(|(t, _)| !zombie_tids.contains(t))
            .map(|(t, th)| (key(*t, th.start_ns), th))
            .collect();
        let t2: BTreeMap<(u32, u64), &SnapThread> = b
            .threads
            .iter()
            .filter(|(t, _)| !zombie_tids.contains(t))
            .map(|(t, th)| (key(*t, th.start_ns), th))
            .collect();
        let tp: BTreeMap<(u32, u64), &ProcThread> = live.iter().map(|(t, th)| ((*t, th.start_tick), *th)).collect();
        let tkeys: BTreeSet<(u32, u64)> = t1.keys().chain(t2.keys()).chain(tp.keys()).copied().collect();
        let (mut missing, mut extra) = (Vec::new(), Vec::new());
        for k in tkeys {
            match (presence(t1.contains_key(&k), t2.contains_key(&k)), tp.get(&k)) {
                (Presence::Racing, _) => out.racing_threads += 1,
                (Presence::Neither, Some(_)) => missing.push(k),
                (Presence::Neither, None) => {}
                (Presence::Both, None) => extra.push(k),
                (Presence::Both, Some(th)) => {
                    out.threads_compared += 1;
                    let (x, y) = (t1[&k], t2[&k]);
                    let what = format!("thread {} comm", k.0);
                    bad.extend(same(out, &what, &th.comm, &x.comm, &y.comm, |e, s| comm_matches(e, s, kthread)));
                }
            }
        }
        if !missing.is_empty() || !extra.is_empty() {
            bad.push(format!(
                "threads (tid, start tick): in /proc, missing from the tracer {missing:?}; in the tracer, \
                 not in /proc {extra:?}; /proc tids {:?}, tracer tids {:?}",
                live.keys().collect::<Vec<_>>(),
                a.threads.keys().collect::<Vec<_>>()
            ));
        }
    }
    for m in bad {
        out.mismatches.push(format!("pid {pid} ({}): {m}", p.comm));
    }
}

/// Compares up to [`ATTEMPTS`] times; panics with every attempt's report if none
/// passes. Returns the passing outcome.
pub fn assert_matches_proc(d: &Daemon, scope: Scope, what: &str) -> Outcome {
    let mut reports = String::new();
    for attempt in 1..=ATTEMPTS {
        let out = compare_once(d, scope);
        if out.passed() {
            eprintln!("{what}: the tracer's tree equals /proc ({scope:?}, attempt {attempt}): {}", out.summary());
            for t in &out.tolerated {
                eprintln!("  (tolerated) {t}");
            }
            return out;
        }
        let _ = writeln!(reports, "attempt {attempt}:\n{}", out.report());
        if attempt < ATTEMPTS {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    panic!("{what}: the tracer's tree ({scope:?}) differs from /proc in all {ATTEMPTS} attempts:\n{reports}");
}

/// Compares until a comparison passes on a tree the daemon does not call degraded,
/// for at most `budget` (after a loss, while the daemon repairs). Panics with the
/// reports of the attempts if none passes.
pub fn assert_matches_proc_within(d: &Daemon, scope: Scope, what: &str, budget: Duration) -> Outcome {
    let until = std::time::Instant::now() + budget;
    let mut reports: Vec<String> = Vec::new();
    let mut degraded_polls = 0;
    for attempt in 1.. {
        let out = compare_once(d, scope);
        if out.passed() && !out.degraded {
            eprintln!("{what}: the tracer's tree equals /proc ({scope:?}, attempt {attempt}): {}", out.summary());
            if !reports.is_empty() {
                eprintln!("{what}: earlier attempts:\n{}", reports.join(""));
            }
            return out;
        }
        if out.degraded && out.passed() {
            degraded_polls += 1;
        } else {
            reports.push(format!("attempt {attempt} (degraded {}):\n{}", out.degraded, out.report()));
        }
        if std::time::Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let shown = reports.len().saturating_sub(6);
    panic!(
        "{what}: no comparison passed on a tree not degraded within {budget:?} ({} failed, {degraded_polls} \
         passed but degraded); daemon stats now: {}\nthe first failed:\n{}the last failed:\n{}",
        reports.len(),
        d.stats(),
        reports.first().map_or("", String::as_str),
        reports[shown..].join("")
    );
}

/// Like [`assert_matches_proc`] for the whole tree, with each snapshot taken by
/// `snapshot` (e.g. `tracer ps --json` through a daemon) instead of a request.
pub fn assert_snapshots_match_proc(what: &str, mut snapshot: impl FnMut() -> Value) -> Outcome {
    let mut reports = String::new();
    for attempt in 1..=ATTEMPTS {
        let s1 = snapshot();
        let all = read_proc();
        std::thread::sleep(SETTLE);
        let s2 = snapshot();
        let out = compare(&s1, &all, &s2, Scope::All);
        if out.passed() {
            eprintln!("{what}: the tracer's tree equals /proc (attempt {attempt}): {}", out.summary());
            return out;
        }
        let _ = writeln!(reports, "attempt {attempt}:\n{}", out.report());
        if attempt < ATTEMPTS {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    panic!("{what}: the tracer's tree differs from /proc in all {ATTEMPTS} attempts:\n{reports}");
}
