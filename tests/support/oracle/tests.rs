//! The oracle's own tests, on made-up snapshots and /proc views (no root needed).

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::support::procfs::parse_stat;

/// A snapshot process as the daemon renders it (the fields the oracle reads).
fn snap_json(pid: u32, ppid: u32, start_ns: u64, comm: &str, argv: &[&str], tids: &[u32]) -> Value {
    serde_json::json!({
        "pid": pid, "ppid": ppid, "start_ns": start_ns, "comm": comm, "argv": argv,
        "argv_truncated": false, "argv_unreadable": false, "nlwp": tids.len(), "kthread": false,
        "state": "alive",
        "threads": tids.iter().map(|t| serde_json::json!({"tid": t, "comm": comm, "start_ns": start_ns})).collect::<Vec<_>>(),
    })
}

fn proc_task(pid: u32, ppid: u32, start_tick: u64, comm: &str, argv: &[&str], tids: &[u32]) -> ProcTask {
    let th = |_| ProcThread { comm: comm.to_string(), state: 'S', start_tick };
    ProcTask {
        pid,
        ppid,
        comm: comm.to_string(),
        state: 'S',
        flags: 0,
        start_tick,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        threads: tids.iter().map(|t| (*t, th(t))).collect(),
    }
}

/// The comparison finds what differs, and leaves out what raced.
#[test]
fn comparison_finds_differences() {
    let snap = |ps: Vec<Value>| serde_json::json!({"degraded": false, "lost": 0, "processes": ps});
    let t = |n: u64| n * NS_PER_TICK + 123;
    let base = || {
        vec![
            snap_json(10, 1, t(5), "sh", &["sh", "-c", "x"], &[10]),
            snap_json(20, 10, t(6), "app", &["app"], &[20, 21, 22]),
            snap_json(30, 10, t(7), "gone", &["gone"], &[30]),
        ]
    };
    let proc_ok: BTreeMap<u32, ProcTask> = [
        proc_task(10, 1, 5, "sh", &["sh", "-c", "x"], &[10]),
        proc_task(20, 10, 6, "app", &["app"], &[20, 21, 22]),
        proc_task(30, 10, 7, "gone", &["gone"], &[30]),
    ]
    .into_iter()
    .map(|p| (p.pid, p))
    .collect();
    let out = compare(&snap(base()), &proc_ok, &snap(base()), Scope::All);
    assert!(out.passed() && out.procs_compared == 3 && out.threads_compared == 5, "{}", out.report());

    // Every kind of difference, seen in both snapshots.
    let mut proc_bad = proc_ok.clone();
    proc_bad.remove(&30); // exited: the tracer still has it
    proc_bad.insert(40, proc_task(40, 10, 9, "new", &["new"], &[40])); // the tracer missed it
    let p20 = proc_bad.get_mut(&20).expect("20");
    p20.ppid = 1; // reparented
    p20.threads.remove(&22); // a thread ended
    p20.threads.insert(23, ProcThread { comm: "app".into(), state: 'S', start_tick: 6 }); // and one began
    p20.argv = vec!["app".into(), "--flag".into()];
    proc_bad.get_mut(&10).expect("10").comm = "bash".into();
    let out = compare(&snap(base()), &proc_bad, &snap(base()), Scope::All);
    let text = out.report();
    assert!(!out.passed(), "{text}");
    for needle in [
        "pid 30: alive in the tracer, not in /proc",
        "pid 40: in /proc, missing from the tracer",
        "pid 20 (app): ppid: expected (/proc) 1, seen (tracer) 10",
        "pid 20 (app): argv",
        "missing from the tracer [(23, 6)]",
        "not in /proc [(22, 6)]",
        "pid 10 (bash): comm",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert_eq!(out.mismatches.len(), 6, "{text}");

    // A pid reused with another start time is another process.
    let mut reused = proc_ok.clone();
    reused.insert(30, proc_task(30, 10, 8, "gone", &["gone"], &[30]));
    let out = compare(&snap(base()), &reused, &snap(base()), Scope::All);
    assert!(!out.passed() && out.mismatches.len() == 2, "{}", out.report());

    // Only in the second snapshot (started during the comparison): racing, not a mismatch.
    let mut later = base();
    later.push(snap_json(50, 10, t(9), "late", &["late"], &[50]));
    let out = compare(&snap(base()), &proc_ok, &snap(later), Scope::All);
    assert!(out.mismatches.is_empty() && out.racing_procs == 1, "{}", out.report());

    // A subtree: only 20's; 30 is outside it in /proc but inside in the tracer.
    let sub = vec![snap_json(20, 10, t(6), "app", &["app"], &[20, 21, 22])];
    let out = compare(&snap(sub.clone()), &proc_ok, &snap(sub), Scope::Subtree(20));
    assert!(out.passed() && out.procs_compared == 1, "{}", out.report());

    // A zombie in /proc must not be alive in the tracer; absent, it is fine.
    let mut zombie = proc_ok.clone();
    let z = zombie.get_mut(&30).expect("30");
    z.state = 'Z';
    z.argv.clear();
    z.threads.values_mut().for_each(|t| t.state = 'Z');
    let out = compare(&snap(base()), &zombie, &snap(base()), Scope::All);
    assert!(out.report().contains("pid 30: exited (a zombie in /proc"), "{}", out.report());
    let no30 = || base().into_iter().filter(|p| p["pid"] != 30).collect::<Vec<_>>();
    let out = compare(&snap(no30()), &zombie, &snap(no30()), Scope::All);
    assert!(out.passed(), "{}", out.report());
}

#[test]
fn stat_lines_parse() {
    let s = parse_stat("42 (a (b) c) S 7 42 42 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 3 0 1234 99 5").expect("parses");
    assert_eq!((s.comm.as_str(), s.state, s.ppid, s.flags, s.start_tick), ("a (b) c", 'S', 7, 4194560, 1234));
    assert!(parse_stat("42 (x) S 7").is_none());
}

#[test]
fn comms_and_argvs_match() {
    assert!(comm_matches("bash", "bash", false));
    assert!(!comm_matches("bash", "bas", false));
    assert!(comm_matches("kworker/0:1-virtio_vsock", "kworker/0:1", true));
    assert!(comm_matches("pool_workqueue_release", "pool_workqueue_", true));
    assert!(!comm_matches("kworker/0:10", "kworker/0:1", true));
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(argv_matches(&v(&["a", "bcd"]), &v(&["a", "bcd"]), false));
    assert!(!argv_matches(&v(&["a", "bcd"]), &v(&["a", "bc"]), false));
    assert!(argv_matches(&v(&["a", "bcd", "e"]), &v(&["a", "bc"]), true));
    assert!(!argv_matches(&v(&["a", "xcd"]), &v(&["a", "bc"]), true));
}
