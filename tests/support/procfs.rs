//! What /proc says: the oracle's side of every comparison (processes, threads, their
//! parents and states, a container's processes by cgroup). The tracer never reads it;
//! the tests do.

use std::collections::{BTreeMap, BTreeSet};

/// nanoseconds per /proc clock tick (USER_HZ is 100).
pub const NS_PER_TICK: u64 = 10_000_000;
/// task flags (/proc/PID/stat field 9).
pub const PF_EXITING: u64 = 0x4;
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// One thread in /proc.
#[derive(Clone, Debug)]
pub struct ProcThread {
    pub comm: String,
    pub state: char,
    pub start_tick: u64,
}

/// One process in /proc.
#[derive(Clone, Debug)]
pub struct ProcTask {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub state: char,
    pub flags: u64,
    pub start_tick: u64,
    pub argv: Vec<String>,
    pub threads: BTreeMap<u32, ProcThread>,
}

impl ProcTask {
    pub fn kthread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// The whole thread group is dead, the process not reaped yet.
    pub fn zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X') && self.live_threads().next().is_none()
    }

    /// Threads that are not zombies (a leader that exited before the others stays
    /// listed as a zombie while they run).
    pub fn live_threads(&self) -> impl Iterator<Item = (&u32, &ProcThread)> {
        self.threads.iter().filter(|(_, t)| !matches!(t.state, 'Z' | 'X'))
    }
}

/// Fields of /proc/PID/stat (or task/TID/stat) we use.
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u64,
    pub start_tick: u64,
}

/// Parses a stat line: `pid (comm) S ppid ...`; comm may hold spaces and parens, so
/// it ends at the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        start_tick: f.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(path: &str) -> Option<Stat> {
    let bytes = std::fs::read(path).ok()?;
    parse_stat(&String::from_utf8_lossy(&bytes))
}

/// /proc/PID/cmdline split on NUL (empty for kernel threads and exiting processes).
pub fn read_cmdline(pid: u32) -> Vec<String> {
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return Vec::new() };
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<u32> = rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    v.sort_unstable();
    v
}

/// One process from /proc, if it is still there.
pub fn read_proc_task(pid: u32) -> Option<ProcTask> {
    let st = read_stat(&format!("/proc/{pid}/stat"))?;
    let argv = read_cmdline(pid);
    let mut threads = BTreeMap::new();
    for tid in numeric_entries(&format!("/proc/{pid}/task")) {
        if let Some(t) = read_stat(&format!("/proc/{pid}/task/{tid}/stat")) {
            threads.insert(tid, ProcThread { comm: t.comm, state: t.state, start_tick: t.start_tick });
        }
    }
    Some(ProcTask {
        pid,
        ppid: st.ppid,
        comm: st.comm,
        state: st.state,
        flags: st.flags,
        start_tick: st.start_tick,
        argv,
        threads,
    })
}

/// Every process in /proc.
pub fn read_proc() -> BTreeMap<u32, ProcTask> {
    numeric_entries("/proc").into_iter().filter_map(|pid| Some((pid, read_proc_task(pid)?))).collect()
}

/// `root` and its descendants in `all` (by ppid).
pub fn proc_subtree(all: &BTreeMap<u32, ProcTask>, root: u32) -> BTreeSet<u32> {
    let mut kids: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in all.values() {
        kids.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if all.contains_key(&p) && out.insert(p) {
            stack.extend(kids.get(&p).into_iter().flatten().copied());
        }
    }
    out
}

/// The children of `pid` in /proc.
pub fn proc_children(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = numeric_entries("/proc")
        .into_iter()
        .filter(|&p| read_stat(&format!("/proc/{p}/stat")).is_some_and(|s| s.ppid == pid))
        .collect();
    v.sort_unstable();
    v
}

/// The field after `) ` in /proc/PID/stat, by its number (3: state, 4: ppid).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_string)
}

/// Live children of `parent` (zombies left out) and the parent, with their thread counts.
pub fn proc_threads(parent: u32) -> BTreeMap<u32, usize> {
    let tasks = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).ok();
    let mut m = BTreeMap::new();
    if let Some(n) = tasks(parent) {
        m.insert(parent, n);
    }
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if stat_field(pid, 4).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        if stat_field(pid, 3).as_deref() == Some("Z") {
            continue;
        }
        if let Some(n) = tasks(pid) {
            m.insert(pid, n);
        }
    }
    m
}

/// The children of `pid` as its main thread lists them (/proc/PID/task/PID/children).
pub fn task_children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Processes whose command line contains `needle`: (pid, command line).
pub fn processes_naming(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

/// Pids whose /proc cgroup (the v2 line) is the cgroup `/.../<id>` (the oracle).
pub fn proc_pids_in(id: &str) -> BTreeSet<u32> {
    let leaf = format!("/{id}");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.starts_with("0::") && l.ends_with(&leaf)))
        {
            out.insert(pid);
        }
    }
    out
}

/// What /proc says of one process.
#[derive(Debug)]
pub struct ProcInfo {
    pub ppid: u32,
    /// Real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// All four uids (real, effective, saved, fs).
    pub uids: Vec<u32>,
    pub threads: usize,
    pub cmdline: String,
}

pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default()
    };
    let uids = field("Uid:");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(ProcInfo {
        ppid: *field("PPid:").first()?,
        uid: *uids.first()?,
        gid: *field("Gid:").first()?,
        uids,
        threads: std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count(),
        cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string(),
    })
}

/// A container's processes as /proc sees them, for comparisons and messages.
pub fn proc_oracle(id: &str) -> BTreeMap<u32, ProcInfo> {
    proc_pids_in(id).into_iter().filter_map(|p| Some((p, proc_info(p)?))).collect()
}

pub fn show_oracle(o: &BTreeMap<u32, ProcInfo>) -> String {
    o.iter()
        .map(|(pid, i)| format!("    {pid} ppid {} uids {:?} threads {} {}\n", i.ppid, i.uids, i.threads, i.cmdline))
        .collect()
}

/// The last field of `NSpid:` in /proc/PID/status: the pid in its own namespace.
pub fn proc_ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
}
