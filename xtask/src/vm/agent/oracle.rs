//! The oracle: /proc read just before and just after one `tracer ps --json`, and the
//! rules by which the tracer's tree must agree with it.
//!
//! A process (or thread) is identified by its id and its start time in /proc's clock
//! ticks (the tracer's `start_ns` / 10 ms), so a reused pid is another task. A process
//! in /proc before and after (same start, not a zombie) must be in the tracer's list
//! with the same ppid, uid, comm and threads; the tracer must list no live pid that
//! /proc had neither before nor after. What changed between the two reads raced with
//! the tracer and is left out.
//!
//! Exceptions (as the integration tests have them, see tests/support/oracle.rs): PID 1 may
//! be hidden from BPF (some sandboxed VMs), so its threads are compared by count only,
//! and a child it forked that has not exec'd yet may be missing; a kernel thread's /proc
//! comm may be longer than the 15 bytes of `task->comm`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

/// Nanoseconds per /proc clock tick (USER_HZ is 100).
const NS_PER_TICK: u64 = 10_000_000;
/// Task flag of kernel threads (/proc/PID/stat field 9).
const PF_KTHREAD: u64 = 0x0020_0000;
/// Mismatch lines kept per comparison.
const MAX_MISMATCHES: usize = 8;

/// A thread by (tid, start tick).
pub type TaskKey = (u32, u64);

/// One process in /proc.
#[derive(Clone, Debug)]
pub struct ProcTask {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub state: char,
    pub flags: u64,
    pub tick: u64,
    pub uid: Option<u32>,
    /// Threads that are not zombies.
    pub live: BTreeSet<TaskKey>,
    /// Their comms, by tid.
    pub comms: BTreeMap<u32, String>,
}

impl ProcTask {
    pub fn kthread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// The whole thread group is dead and not reaped yet.
    pub fn zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X') && self.live.is_empty()
    }
}

/// Fields of a stat line: `pid (comm) S ppid ...` (comm ends at the last ')').
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u64,
    pub tick: u64,
}

pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    Some(Stat {
        comm: text.get(open + 1..close)?.to_string(),
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        tick: f.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(path: &str) -> Option<Stat> {
    parse_stat(&String::from_utf8_lossy(&std::fs::read(path).ok()?))
}

/// /proc/PID/cmdline split at NULs.
pub fn cmdline(pid: u32) -> Result<Vec<String>> {
    let bytes =
        std::fs::read(format!("/proc/{pid}/cmdline")).with_context(|| format!("reading /proc/{pid}/cmdline"))?;
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(bytes.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// The real uid, from /proc/PID/status (the tracer reports `cred->uid`).
fn read_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// One process from /proc, if it is still there.
pub fn read_task(pid: u32) -> Option<ProcTask> {
    let st = read_stat(&format!("/proc/{pid}/stat"))?;
    let (mut live, mut comms) = (BTreeSet::new(), BTreeMap::new());
    for tid in numeric_entries(&format!("/proc/{pid}/task")) {
        if let Some(t) = read_stat(&format!("/proc/{pid}/task/{tid}/stat"))
            && !matches!(t.state, 'Z' | 'X')
        {
            live.insert((tid, t.tick));
            comms.insert(tid, t.comm);
        }
    }
    let uid = read_uid(pid);
    Some(ProcTask {
        pid,
        ppid: st.ppid,
        comm: st.comm,
        state: st.state,
        flags: st.flags,
        tick: st.tick,
        uid,
        live,
        comms,
    })
}

/// Every process in /proc.
pub fn read_proc() -> BTreeMap<u32, ProcTask> {
    numeric_entries("/proc").into_iter().filter_map(|pid| Some((pid, read_task(pid)?))).collect()
}

/// One process as `tracer ps --json` lists it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub pid: u32,
    pub ppid: u32,
    pub tick: u64,
    pub uid: u32,
    pub comm: String,
    pub argv: Vec<String>,
    pub argv_unreadable: bool,
    pub nlwp: u64,
    pub threads: BTreeSet<TaskKey>,
}

fn num(p: &Value, k: &str) -> Result<u64> {
    p.get(k).and_then(Value::as_u64).with_context(|| format!("ps process without a numeric `{k}`: {p}"))
}

impl Listed {
    fn from_json(p: &Value) -> Result<Listed> {
        let threads = p.get("threads").and_then(Value::as_array).with_context(|| format!("no `threads`: {p}"))?;
        let threads = threads.iter().map(|t| Ok((num(t, "tid")? as u32, num(t, "start_ns")? / NS_PER_TICK)));
        Ok(Listed {
            pid: num(p, "pid")? as u32,
            ppid: num(p, "ppid")? as u32,
            tick: num(p, "start_ns")? / NS_PER_TICK,
            uid: num(p, "uid")? as u32,
            comm: p.get("comm").and_then(Value::as_str).unwrap_or_default().to_string(),
            argv: p["argv"].as_array().into_iter().flatten().map(|a| a.as_str().unwrap_or("?").to_string()).collect(),
            argv_unreadable: p["argv_unreadable"].as_bool().unwrap_or(false),
            nlwp: num(p, "nlwp")?,
            threads: threads.collect::<Result<_>>()?,
        })
    }
}

/// The processes of a `tracer ps --json` output.
pub fn parse_ps(text: &str) -> Result<Vec<Listed>> {
    let v: Value = serde_json::from_str(text).context("tracer ps --json printed no JSON")?;
    let list = v.get("processes").and_then(Value::as_array).context("tracer ps --json has no `processes` array")?;
    list.iter().map(Listed::from_json).collect()
}

/// Whether the tracer's comm is /proc's: equal, or for a kernel thread its prefix.
fn comm_matches(proc_comm: &str, tracer_comm: &str, kthread: bool) -> bool {
    proc_comm == tracer_comm || (kthread && !tracer_comm.is_empty() && proc_comm.starts_with(tracer_comm))
}

/// Processes the comparison leaves out.
#[derive(Debug, Default)]
pub struct Exempt {
    /// Not compared at all (the tracer run that made the list: it came and went).
    pub pids: BTreeSet<u32>,
    /// Threads not compared (the agent: its reader threads come and go with children).
    pub threads_of: BTreeSet<u32>,
}

/// The result of one comparison.
#[derive(Debug, Default)]
pub struct Comparison {
    pub mismatches: Vec<String>,
    pub mismatch_count: usize,
    pub procs: usize,
    pub threads: usize,
    pub racing: usize,
    pub tolerated: usize,
}

impl Comparison {
    fn mismatch(&mut self, m: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_MISMATCHES {
            self.mismatches.push(m);
        }
    }

    pub fn passed(&self) -> bool {
        self.mismatch_count == 0
    }

    pub fn summary(&self) -> String {
        format!(
            "{} processes and {} threads compared, {} racing, {} tolerated, {} mismatches",
            self.procs, self.threads, self.racing, self.tolerated, self.mismatch_count
        )
    }
}

/// Compares the tracer's `listed` processes with /proc read `before` and `after`.
pub fn compare(
    before: &BTreeMap<u32, ProcTask>,
    listed: &[Listed],
    after: &BTreeMap<u32, ProcTask>,
    exempt: &Exempt,
) -> Comparison {
    let mut out = Comparison::default();
    let exempt_pids = with_descendants(&exempt.pids, listed);
    let mut by_pid: BTreeMap<u32, &Listed> = BTreeMap::new();
    for l in listed {
        if by_pid.insert(l.pid, l).is_some() {
            out.mismatch(format!("pid {}: listed twice as alive", l.pid));
        }
    }
    // Comms of PID 1's threads: a child it forked keeps one of them until it execs.
    let init_comms: BTreeSet<&str> =
        before.get(&1).map(|p| p.comms.values().map(String::as_str).collect()).unwrap_or_default();
    for (pid, b) in before {
        if exempt_pids.contains(pid) {
            continue;
        }
        let Some(a) = after.get(pid).filter(|a| a.tick == b.tick) else {
            out.racing += 1;
            continue;
        };
        match by_pid.get(pid) {
            None if b.zombie() || a.zombie() => {}
            None if b.ppid == 1 && init_comms.contains(b.comm.as_str()) => out.tolerated += 1,
            None => {
                out.mismatch(format!("pid {pid} ({}): in /proc before and after, not listed by the tracer", b.comm))
            }
            Some(l) if b.zombie() && a.zombie() => {
                out.mismatch(format!("pid {pid} ({}): a zombie in /proc, alive in the tracer", l.comm))
            }
            Some(l) => compare_process(&mut out, b, a, l, exempt.threads_of.contains(pid)),
        }
    }
    out.racing += after.keys().filter(|p| !before.contains_key(p) && !exempt_pids.contains(p)).count();
    for l in listed {
        if !exempt_pids.contains(&l.pid) && !before.contains_key(&l.pid) && !after.contains_key(&l.pid) {
            out.mismatch(format!(
                "pid {} ({}): listed alive by the tracer, in /proc neither before nor after",
                l.pid, l.comm
            ));
        }
    }
    out
}

/// `pids` and their descendants among `listed` (a wrapped tracer's helpers came and
/// went with it).
fn with_descendants(pids: &BTreeSet<u32>, listed: &[Listed]) -> BTreeSet<u32> {
    let mut all = pids.clone();
    loop {
        let before = all.len();
        all.extend(listed.iter().filter(|l| all.contains(&l.ppid)).map(|l| l.pid).collect::<Vec<_>>());
        if all.len() == before {
            return all;
        }
    }
}

/// Field by field, for a process in /proc before and after and in the tracer's list.
fn compare_process(out: &mut Comparison, b: &ProcTask, a: &ProcTask, l: &Listed, skip_threads: bool) {
    out.procs += 1;
    let pid = b.pid;
    let mut bad = Vec::new();
    if l.tick != b.tick {
        bad.push(format!("start tick: expected (/proc) {}, seen (tracer) {} (another process?)", b.tick, l.tick));
    }
    if b.ppid == a.ppid && l.ppid != b.ppid {
        bad.push(format!("ppid: expected (/proc) {}, seen (tracer) {}", b.ppid, l.ppid));
    }
    if let (Some(ub), Some(ua)) = (b.uid, a.uid)
        && ub == ua
        && l.uid != ub
    {
        bad.push(format!("uid: expected (/proc) {ub}, seen (tracer) {}", l.uid));
    }
    if b.comm == a.comm && !comm_matches(&b.comm, &l.comm, b.kthread()) {
        bad.push(format!("comm: expected (/proc) {:?}, seen (tracer) {:?}", b.comm, l.comm));
    }
    if l.nlwp != l.threads.len() as u64 {
        bad.push(format!("nlwp {} but {} threads listed", l.nlwp, l.threads.len()));
    }
    if pid == 1 {
        // Possibly hidden from BPF: its thread count only (see the module doc).
        let (lo, hi) = (b.live.len().min(a.live.len()) as u64, b.live.len().max(a.live.len()) as u64);
        if !(lo..=hi).contains(&l.nlwp) {
            bad.push(format!("thread count: expected (/proc) {lo}..={hi}, seen (tracer) {}", l.nlwp));
        }
    } else if !skip_threads {
        // Threads in /proc both times must be listed; listed ones must be in /proc once.
        let stable: BTreeSet<TaskKey> = b.live.intersection(&a.live).copied().collect();
        let either: BTreeSet<TaskKey> = b.live.union(&a.live).copied().collect();
        let missing: Vec<&TaskKey> = stable.difference(&l.threads).collect();
        let extra: Vec<&TaskKey> = l.threads.difference(&either).collect();
        out.racing += either.len() - stable.len();
        out.threads += stable.len();
        if !missing.is_empty() || !extra.is_empty() {
            bad.push(format!(
                "threads (tid, start tick): in /proc, not listed {missing:?}; listed, not in /proc {extra:?}"
            ));
        }
    }
    for m in bad {
        out.mismatch(format!("pid {pid} ({}): {m}", b.comm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, ppid: u32, tids: &[u32]) -> ProcTask {
        ProcTask {
            pid,
            ppid,
            comm: "w".into(),
            state: 'S',
            flags: 0,
            tick: 5,
            uid: Some(0),
            live: tids.iter().map(|t| (*t, 5)).collect(),
            comms: tids.iter().map(|t| (*t, "w".to_string())).collect(),
        }
    }

    fn listed(pid: u32, ppid: u32, tids: &[u32]) -> Listed {
        Listed {
            pid,
            ppid,
            tick: 5,
            uid: 0,
            comm: "w".into(),
            argv: Vec::new(),
            argv_unreadable: false,
            nlwp: tids.len() as u64,
            threads: tids.iter().map(|t| (*t, 5)).collect(),
        }
    }

    #[test]
    fn stat_with_parens_in_comm() {
        let s = parse_stat("42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 1 0 1234 0").unwrap();
        assert_eq!((s.comm.as_str(), s.state, s.ppid, s.tick), ("a (b) c", 'S', 7, 1234));
    }

    #[test]
    fn rules() {
        let before: BTreeMap<u32, ProcTask> = [(10, task(10, 1, &[10, 11])), (20, task(20, 10, &[20]))].into();
        let after: BTreeMap<u32, ProcTask> = [(10, task(10, 1, &[10, 11, 12])), (30, task(30, 10, &[30]))].into();
        // 12 came (racing), 20 went and 30 came (racing): fine.
        let ok = compare(&before, &[listed(10, 1, &[10, 11])], &after, &Exempt::default());
        assert!(ok.passed(), "{:?}", ok.mismatches);
        assert_eq!((ok.procs, ok.threads, ok.racing), (1, 2, 3));
        // A stable thread missing, a wrong ppid, a pid /proc never had.
        let bad = compare(&before, &[listed(10, 2, &[10]), listed(99, 1, &[99])], &after, &Exempt::default());
        assert_eq!(bad.mismatch_count, 3, "{:?}", bad.mismatches);
        // The exempt tracer pid may come and go.
        let exempt = Exempt { pids: [99].into(), ..Exempt::default() };
        assert!(compare(&before, &[listed(10, 1, &[10, 11]), listed(99, 1, &[99])], &after, &exempt).passed());
    }
}
