//! `tracer daemon` against hostile conditions. It drops its privileges once it
//! serves: every thread keeps only CAP_BPF (effective and permitted; nothing
//! inheritable or ambient) and has no_new_privs, as /proc/<pid>/task/*/status
//! tells; with that alone a repair walk after lost events still works, and so
//! does `tracer ps`. Out of file descriptors, it keeps serving once they free up.

use std::{os::unix::net::UnixStream, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{
    self, Timed,
    daemon::Daemon,
    poll,
    tracer::TRACER,
    workload::{Workload, compile_c},
};

const CHURN_C: &str = include_str!("workloads/tree_churn.c");
const CAP_BPF: u64 = 1 << 39;

/// One `Name:\tvalue` field of a status file.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in status:\n{status}"))
}

fn hex(status: &str, name: &str) -> u64 {
    u64::from_str_radix(field(status, name), 16).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks every thread of `pid`: the capability sets and no_new_privs.
fn assert_dropped(pid: u32, when: &str) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    let mut seen = 0;
    for t in tasks {
        let t = t.expect("task entry");
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        let tid = t.file_name().to_string_lossy().into_owned();
        for set in ["CapEff", "CapPrm"] {
            assert_eq!(hex(&status, set), CAP_BPF, "{when}: thread {tid} {set} is not CAP_BPF alone:\n{status}");
        }
        for set in ["CapInh", "CapAmb"] {
            assert_eq!(hex(&status, set), 0, "{when}: thread {tid} {set} is not empty:\n{status}");
        }
        assert_eq!(field(&status, "NoNewPrivs"), "1", "{when}: thread {tid} lacks no_new_privs");
        seen += 1;
    }
    assert!(seen >= 2, "{when}: only {seen} threads read (a multi-threaded daemon has more)");
}

fn stat_u64(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("stats without a numeric `{key}`: {stats}"))
}

#[test]
fn daemon_keeps_only_cap_bpf_and_still_repairs() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("daemon_keeps_only_cap_bpf_and_still_repairs");
    let churn = compile_c("tree_churn", CHURN_C);
    // The smallest ring buffer: a storm loses events and the daemon walks again.
    let d = Daemon::start(&["--ringbuf-size", "4096"]);
    assert_dropped(d.pid(), "once serving");

    let mut lost = 0;
    for _ in 0..3 {
        let mut storm = vec![
            Workload::spawn("storm procs", Command::new(&churn.path).args(["procs", "5000", "200", "0"])),
            Workload::spawn("storm threads", Command::new(&churn.path).args(["threads", "5000", "200", "0"])),
        ];
        for w in &mut storm {
            w.wait_ok(Duration::from_secs(60));
        }
        lost = stat_u64(&d.stats(), "lost");
        if lost > 0 {
            break;
        }
    }
    assert!(lost > 0, "a 4096-byte ring buffer lost nothing in 3 storms: {}", d.stats());
    let repaired = poll(Duration::from_secs(10), || {
        let s = d.stats();
        (s["degraded"] == false && stat_u64(&s, "walks") >= 2).then_some(s)
    });
    assert!(repaired.is_some(), "no repair walk with CAP_BPF alone; stats {}\nstderr:\n{}", d.stats(), d.stderr());
    // Threads started since (the runtime's) dropped theirs as they started.
    assert_dropped(d.pid(), "after the repair walk");

    let me = std::process::id().to_string();
    let socket = d.socket().display().to_string();
    let out = support::run(
        Command::new(TRACER).args(["ps", "--json", "--socket", &socket, "--pid", &me]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "tracer ps: {}", String::from_utf8_lossy(&out.stderr));
    let ps: Value = serde_json::from_slice(&out.stdout).expect("tracer ps --json prints JSON");
    let text = ps.to_string();
    assert!(text.contains(&format!("\"pid\":{me}")), "tracer ps does not show this test ({me}): {text}");
    assert!(!d.stderr().contains("ERROR"), "errors on the daemon's stderr:\n{}", d.stderr());
    d.stop();
}

/// Sets the daemon's soft limit on open files (the hard one stays: raising it
/// back would need CAP_SYS_RESOURCE); returns the old soft limit.
fn set_nofile(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit fills `old`, ours.
    let r = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(r, 0, "reading the daemon's limit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: prlimit reads `new`, ours.
    let r = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "setting the daemon's limit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn daemon_out_of_descriptors_keeps_serving() {
    if !support::require_root() {
        return;
    }
    let _t = Timed::start("daemon_out_of_descriptors_keeps_serving");
    let d = Daemon::start(&["--max-clients", "1000"]);
    // The oracle: how many descriptors it has open now; room for four more.
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid())).expect("the daemon's fds").count() as u64;
    let old = set_nofile(d.pid(), open + 4);
    // Fifty clients wait in the listener's backlog while accept fails (EMFILE).
    let flood: Vec<UnixStream> = (0..50).map(|_| UnixStream::connect(d.socket()).expect("connect")).collect();
    let hit = poll(Duration::from_secs(10), || d.stderr().contains("pausing new connections").then_some(()));
    assert!(hit.is_some(), "the daemon never ran out of descriptors; stderr:\n{}", d.stderr());
    drop(flood);
    set_nofile(d.pid(), old);
    // It still serves: the accept loop went on.
    assert_eq!(d.request(&serde_json::json!({"verb": "version"}))["ok"], true);
    assert!(stat_u64(&d.stats(), "processes") > 1);
    d.stop();
}
