//! Builders of synthetic events for tests (engine and render).

use bytes::Bytes;

use super::EngineConfig;
use crate::events::{Argv, Body, Comm, Event, ExitStatus, ProcRef, TaskInfo};

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// A task: process start = pid * 1000, thread start = tid * 1000, parent start =
/// ppid * 1000 unless changed.
pub fn tk(pid: u32, tid: u32, ppid: u32) -> TaskInfo {
    TaskInfo {
        pid,
        tid,
        ppid,
        ns_pid: pid,
        ns_tid: tid,
        uid: 1000,
        gid: 1000,
        start_ns: tid as u64 * 1000,
        proc_start_ns: pid as u64 * 1000,
        parent_start_ns: ppid as u64 * 1000,
        cgroup_id: 7,
        pidns: 4026531836,
        mntns: 4026531841,
        comm: Comm::from_str_lossy("sh"),
        kthread: false,
        exiting: false,
    }
}

pub fn pr(pid: u32) -> ProcRef {
    ProcRef { pid, start_ns: pid as u64 * 1000 }
}

pub fn ev(ts_ns: u64, task: TaskInfo, body: Body) -> Event {
    Event { ts_ns, cpu: 0, task, body }
}

pub fn argv(args: &[&str]) -> Argv {
    let mut raw = Vec::new();
    for a in args {
        raw.extend_from_slice(a.as_bytes());
        raw.push(0);
    }
    Argv { real_len: raw.len() as u32, raw: Bytes::from(raw), truncated: false, unreadable: false }
}

pub fn fork(ts: u64, t: TaskInfo) -> Event {
    ev(ts, t, Body::Fork { creator_tid: t.ppid })
}

pub fn clone(ts: u64, t: TaskInfo) -> Event {
    ev(ts, t, Body::Clone { creator_tid: t.pid })
}

pub fn exec(ts: u64, t: TaskInfo, old_tid: u32, file: &str, args: &[&str]) -> Event {
    let body = Body::Exec { old_tid, filename: file.into(), filename_truncated: false, argv: argv(args) };
    ev(ts, t, body)
}

pub fn texit(ts: u64, t: TaskInfo) -> Event {
    ev(ts, t, Body::ThreadExit { status: ExitStatus { raw: 0 } })
}

pub fn pexit(ts: u64, t: TaskInfo, code: u32, reaper: Option<ProcRef>) -> Event {
    ev(ts, t, Body::ProcessExit { status: ExitStatus { raw: code << 8 }, reaper })
}

/// A process exit by signal `sig`.
pub fn pexit_signal(ts: u64, t: TaskInfo, sig: u32) -> Event {
    ev(ts, t, Body::ProcessExit { status: ExitStatus { raw: sig }, reaper: None })
}

pub fn rename(ts: u64, t: TaskInfo, new: &str) -> Event {
    ev(ts, t, Body::Rename { new_comm: Comm::from_str_lossy(new) })
}

/// `t` moved to cgroup `cgroup_id` (the whole process).
pub fn attach(ts: u64, mut t: TaskInfo, cgroup_id: u64) -> Event {
    t.cgroup_id = cgroup_id;
    ev(ts, t, Body::CgroupAttach { threadgroup: true, path: None })
}

pub fn snap(ts: u64, t: TaskInfo, exe: &str, args: &[&str]) -> Event {
    let body = Body::Snapshot {
        utime_ns: 3 * MS,
        stime_ns: MS,
        rss_pages: 100,
        exe: exe.into(),
        argv: argv(args),
        zombie: false,
    };
    ev(ts, t, body)
}

pub fn zombie(ts: u64, mut t: TaskInfo) -> Event {
    t.exiting = true;
    let body = Body::Snapshot {
        utime_ns: 0,
        stime_ns: 0,
        rss_pages: 0,
        exe: String::new(),
        argv: Argv::default(),
        zombie: true,
    };
    ev(ts, t, body)
}

pub fn cfg() -> EngineConfig {
    EngineConfig { linger_ns: 2 * SEC, exit_hold_ns: 50 * MS, passwd: None, max_exited: 100_000 }
}
